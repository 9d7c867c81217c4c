//! Time, behind a trait so tests can hold it still or move it forward.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use time::OffsetDateTime;

pub trait Clock: Send + Sync + 'static {
    /// The current instant, UTC.
    fn now(&self) -> OffsetDateTime;

    fn unix_seconds(&self) -> i64 {
        self.now().unix_timestamp()
    }

    fn unix_millis(&self) -> i64 {
        (self.now().unix_timestamp_nanos() / 1_000_000) as i64
    }
}

/// The machine's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that only moves when told to. Clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    millis: Arc<AtomicI64>,
}

impl ManualClock {
    pub fn at(start: OffsetDateTime) -> Self {
        Self {
            millis: Arc::new(AtomicI64::new(
                (start.unix_timestamp_nanos() / 1_000_000) as i64,
            )),
        }
    }

    pub fn advance(&self, by: std::time::Duration) {
        self.millis
            .fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }

    pub fn set(&self, to: OffsetDateTime) {
        self.millis.store(
            (to.unix_timestamp_nanos() / 1_000_000) as i64,
            Ordering::SeqCst,
        );
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        let ms = self.millis.load(Ordering::SeqCst);
        OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
            .expect("manual clock in range")
    }
}

/// RFC 3339 text for an instant (what the API and the store show).
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::at(time::macros::datetime!(2026-01-01 00:00 UTC));
        let shared = clock.clone();
        assert_eq!(clock.unix_seconds(), 1_767_225_600);
        shared.advance(std::time::Duration::from_secs(90));
        assert_eq!(clock.unix_seconds(), 1_767_225_690);
        assert_eq!(rfc3339(clock.now()), "2026-01-01T00:01:30Z");
    }
}
