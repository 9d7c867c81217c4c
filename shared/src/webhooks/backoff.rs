//! When a failed delivery is tried again: exponential steps with jitter, for at most three days.

use std::time::Duration;

use time::OffsetDateTime;

/// The nominal wait before attempt n+1 after attempt n failed (n = 1, 2, …); the last step repeats.
pub const SCHEDULE: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(14 * 3600),
];

/// How long a delivery (and an endpoint) may keep failing before we give up on it.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(3 * 24 * 3600);

/// The wait after `failed_attempts` failures, scaled by `jitter` (a factor drawn from 0.9..1.1, so
/// retries of many deliveries that failed together spread out instead of arriving together).
pub fn delay(failed_attempts: u32, jitter: f64) -> Duration {
    let step = (failed_attempts.max(1) as usize - 1).min(SCHEDULE.len() - 1);
    SCHEDULE[step].mul_f64(jitter.clamp(0.9, 1.1))
}

/// A random jitter factor in 0.9..1.1.
pub fn jitter() -> f64 {
    use rand::Rng;
    rand::rng().random_range(0.9..1.1)
}

/// The next attempt's time, or `None` once [`GIVE_UP_AFTER`] has passed since the delivery's first
/// attempt: the delivery has failed for good. The last attempt falls exactly at that mark, so an
/// endpoint that never answers has then been failing for the full three days.
pub fn next_attempt(
    first_attempt: OffsetDateTime,
    now: OffsetDateTime,
    failed_attempts: u32,
    jitter: f64,
) -> Option<OffsetDateTime> {
    let deadline = first_attempt + GIVE_UP_AFTER;
    (now < deadline).then(|| (now + delay(failed_attempts, jitter)).min(deadline))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_schedule_then_repeats_the_last_step() {
        let secs = |n| delay(n, 1.0).as_secs();
        assert_eq!(
            (1..=9).map(secs).collect::<Vec<_>>(),
            [5, 300, 1800, 7200, 18000, 36000, 50400, 50400, 50400]
        );
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        assert_eq!(delay(2, 0.9), Duration::from_secs(270));
        assert_eq!(delay(2, 1.1), Duration::from_secs(330));
        // Out-of-range factors are clamped rather than trusted.
        assert_eq!(delay(2, 5.0), Duration::from_secs(330));
        for _ in 0..100 {
            let j = jitter();
            assert!((0.9..1.1).contains(&j), "{j}");
        }
    }

    #[test]
    fn gives_up_after_three_days() {
        let start = OffsetDateTime::UNIX_EPOCH;
        let mut now = start;
        let mut attempts = 1;
        while let Some(next) = next_attempt(start, now, attempts, 1.0) {
            now = next;
            attempts += 1;
        }
        // 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 14 h, 14 h, then the last at the three-day mark.
        assert_eq!(attempts, 11);
        assert_eq!(now - start, time::Duration::days(3));
    }
}
