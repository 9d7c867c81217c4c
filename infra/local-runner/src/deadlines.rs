//! The local stand-in for the EventBridge schedule: runs the deadline job at 00:00 UTC every day (the
//! same code as the `deadline-cron` function; `POST /api/admin/cron/run` runs it on demand).

use std::sync::Arc;
use std::time::Duration;

use shared::Platform;
use shared::deadlines::DeadlineJob;

/// How long from `now` until the next 00:00 UTC.
pub fn until_next_midnight(now: time::OffsetDateTime) -> Duration {
    let next = now
        .date()
        .next_day()
        .unwrap_or(now.date())
        .midnight()
        .assume_utc();
    Duration::try_from(next - now).unwrap_or(Duration::from_secs(60))
}

/// Sleeps until each midnight and runs the job for the day that starts then.
pub async fn daily(platform: Arc<Platform>) {
    let job = DeadlineJob::new(platform.clone());
    loop {
        tokio::time::sleep(until_next_midnight(platform.clock.now())).await;
        // A second past midnight by now: the day that just began.
        match job.run(job.today()).await {
            Ok(report) => tracing::info!(
                date = report.date,
                acted = report.acted(),
                errors = report.errors.len(),
                "scheduled deadline run"
            ),
            Err(e) => tracing::error!(error = %e, "scheduled deadline run failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timer_aims_at_the_next_utc_midnight() {
        let now = time::macros::datetime!(2026-03-09 23:59:30 UTC);
        assert_eq!(until_next_midnight(now), Duration::from_secs(30));
        let jst = time::macros::datetime!(2026-03-09 09:00 +09:00);
        assert_eq!(until_next_midnight(jst), Duration::from_secs(24 * 3600));
    }
}
