//! A cap on media sockets that have not shown a valid stream token yet.
//!
//! Anyone can open `GET /twilio-media`; the token arrives only with Twilio's `start` message, up to
//! [`crate::START_TIMEOUT`] later. Without a cap, a client could hold thousands of such sockets open for
//! free. Each pending socket holds a [`PendingPermit`] until its token is checked (or it goes away); past
//! the per-address or the total limit, the upgrade is refused with 429.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// An address bucket: an IPv4 address, or an IPv6 /64 (one subscriber's allocation).
fn bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & (u128::MAX << 64);
                IpAddr::V6(bits.into())
            }
        },
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

/// The pending sockets, counted in total and per address bucket.
#[derive(Debug)]
pub struct PendingSockets {
    max_total: usize,
    max_per_ip: usize,
    counts: Mutex<Counts>,
}

/// One pending socket's place; dropping it frees the place.
#[derive(Debug)]
pub struct PendingPermit {
    owner: Arc<PendingSockets>,
    bucket: IpAddr,
}

impl PendingSockets {
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total,
            max_per_ip,
            counts: Mutex::new(Counts::default()),
        })
    }

    /// A place for a socket from `ip`, or `None` when its address or the bridge is at the limit.
    pub fn try_admit(self: &Arc<Self>, ip: IpAddr) -> Option<PendingPermit> {
        let bucket = bucket(ip);
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let mine = counts.by_ip.get(&bucket).copied().unwrap_or(0);
        if counts.total >= self.max_total || mine >= self.max_per_ip {
            return None;
        }
        counts.total += 1;
        counts.by_ip.insert(bucket, mine + 1);
        Some(PendingPermit {
            owner: self.clone(),
            bucket,
        })
    }

    /// Sockets pending now.
    pub fn pending(&self) -> usize {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).total
    }
}

impl Drop for PendingPermit {
    fn drop(&mut self) {
        let mut counts = self.owner.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.by_ip.get_mut(&self.bucket) {
            *n -= 1;
            if *n == 0 {
                counts.by_ip.remove(&self.bucket);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn limits_hold_per_address_and_in_total() {
        let pending = PendingSockets::new(3, 2);
        let a1 = pending.try_admit(ip("192.0.2.1")).expect("first");
        let _a2 = pending.try_admit(ip("192.0.2.1")).expect("second");
        assert!(pending.try_admit(ip("192.0.2.1")).is_none(), "per address");
        // One /64 is one address.
        let _b1 = pending
            .try_admit(ip("2001:db8::1"))
            .expect("another address");
        assert!(pending.try_admit(ip("2001:db8::2")).is_none(), "in total");
        assert_eq!(pending.pending(), 3);
        drop(a1);
        let again = pending.try_admit(ip("2001:db8::ffff:1"));
        assert!(again.is_some(), "freed");
        assert_eq!(pending.pending(), 3, "{pending:?}");
        drop(again);
        assert_eq!(
            pending.pending(),
            2,
            "a dropped permit gives its place back"
        );
    }

    #[test]
    fn ipv6_addresses_bucket_by_64() {
        let pending = PendingSockets::new(100, 1);
        let _held = pending.try_admit(ip("2001:db8:1:2::1")).unwrap();
        assert!(pending.try_admit(ip("2001:db8:1:2:ffff::9")).is_none());
        assert!(pending.try_admit(ip("2001:db8:1:3::1")).is_some());
    }
}
