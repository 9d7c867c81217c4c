//! Rate limits for the public widget routes: fixed windows counted in the store, so every Lambda
//! instance shares them, each hit one atomic "add unless over the limit", written in the chat
//! reservation's transaction.

use crate::store::{Add, Item, keys};

/// A limit: at most `max` hits per `window_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub max: i64,
    pub window_secs: i64,
}

/// Per visitor IP: a person typing cannot reach it; a script can.
pub const PER_IP: RateLimit = RateLimit {
    max: 30,
    window_secs: 60,
};
/// Per chat session.
pub const PER_SESSION: RateLimit = RateLimit {
    max: 12,
    window_secs: 60,
};

/// The rate-limit scope of a visitor's address: the IPv4 address, or the IPv6 /64 (one subscriber gets a
/// whole /64, so the full address would give one visitor 2^64 buckets). `None` when there is no usable
/// address: such a request is refused rather than pooled with every other address-less request.
pub fn ip_scope(ip: &str) -> Option<String> {
    let ip: std::net::IpAddr = ip.trim().parse().ok()?;
    let bucket = match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    };
    Some(format!("ip:{}", super::logs::hash_ip(&bucket)))
}

/// One hit of `scope` in the current window: the add that counts it (refused past the limit), for a
/// caller that writes it in a transaction of its own, and when to retry if it is refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub add: Add,
    pub retry_after_secs: u64,
    max: i64,
}

impl Window {
    pub fn of(scope: &str, limit: RateLimit, now_unix: i64) -> Self {
        let window = now_unix.div_euclid(limit.window_secs) * limit.window_secs;
        let window_end = window + limit.window_secs;
        let key = keys::rate_window(scope, window);
        Self {
            add: Add::new(key, HITS, 1)
                .up_to(limit.max)
                .expiring_at(window_end + 60),
            retry_after_secs: (window_end - now_unix).max(1) as u64,
            max: limit.max,
        }
    }

    /// Whether the window as read (`None`: no hit yet) has no room for one more hit.
    pub fn refuses(&self, item: Option<&Item>) -> bool {
        item.map_or(0, |i| i.count(HITS)) >= self.max
    }
}

const HITS: &str = "hits";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_visitors_share_a_bucket_per_64() {
        let a = ip_scope("2001:db8:1:2:aaaa:bbbb:cccc:dddd").unwrap();
        let b = ip_scope("2001:db8:1:2::1").unwrap();
        let other = ip_scope("2001:db8:1:3::1").unwrap();
        assert_eq!(a, b, "one /64 is one visitor");
        assert_ne!(a, other, "another /64 is another visitor");
        // IPv4 keeps its full address, and an IPv4-mapped IPv6 address is the IPv4 address.
        assert_ne!(ip_scope("192.0.2.1"), ip_scope("192.0.2.2"));
        assert_eq!(ip_scope("::ffff:192.0.2.1"), ip_scope("192.0.2.1"));
    }

    #[test]
    fn a_missing_or_unreadable_ip_has_no_bucket() {
        assert_eq!(ip_scope(""), None);
        assert_eq!(ip_scope("unknown"), None);
    }
}
