//! The deadline job's Lambda: EventBridge Scheduler invokes it daily at 00:00 UTC (09:00 JST) with
//! the scheduled time, and it runs `shared::deadlines` for that day, catching up missed days.
//!
//! The day comes from the schedule, not from the clock at invocation, so a retried or delayed
//! invocation still works on the day it was scheduled for (a second run for a day does nothing).

use std::sync::Arc;

use serde::Deserialize;

use shared::Platform;
use shared::deadlines::{DeadlineError, DeadlineJob, RunReport};

/// This function reads no secrets.
pub const SECRETS: &[&str] = &[];

/// The job on the platform, the credit ledger's monthly grants and reservation sweep included.
pub fn job(platform: Arc<Platform>) -> DeadlineJob {
    DeadlineJob::new(platform)
}

/// The schedule's input (`template.yaml`): `{"scheduled_time": "<aws.scheduler.scheduled-time>"}`;
/// a classic EventBridge scheduled event's `time` works too, and `date` (`YYYY-MM-DD`) asks for a day
/// explicitly (a manual invoke with `cargo lambda invoke --data-file events/deadline-cron-schedule.json`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ScheduleEvent {
    #[serde(default, alias = "time")]
    pub scheduled_time: Option<String>,
    #[serde(default)]
    pub date: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CronError {
    #[error("the event names no usable day: {0}")]
    BadEvent(String),
    #[error(transparent)]
    Job(#[from] DeadlineError),
    /// Some items failed; the report is logged and they are retried by the next run (failing the
    /// invocation shows in the function's error metric and lets the schedule's retry policy try soon).
    #[error("{failed} deadline item(s) failed on {date}; they are retried by the next run")]
    ItemsFailed { date: String, failed: usize },
}

impl ScheduleEvent {
    /// The day to run for: `date`, else the scheduled time's UTC day, else today. A scheduled time a
    /// little ahead of this host's clock is today.
    fn day(&self, job: &DeadlineJob) -> Result<time::Date, CronError> {
        if let Some(date) = &self.date {
            return Ok(job.date_of(Some(date))?);
        }
        let Some(at) = &self.scheduled_time else {
            return Ok(job.today());
        };
        let at = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
            .map_err(|e| CronError::BadEvent(format!("scheduled_time {at:?}: {e}")))?;
        let day = at.to_offset(time::UtcOffset::UTC).date();
        Ok(day.min(job.today()))
    }
}

/// Runs the job for the event's day and returns the report.
pub async fn handle(job: &DeadlineJob, event: ScheduleEvent) -> Result<RunReport, CronError> {
    let day = event.day(job)?;
    let report = job.run(day).await?;
    tracing::info!(report = %serde_json::to_string(&report).unwrap_or_default(), "deadline job report");
    if !report.errors.is_empty() {
        return Err(CronError::ItemsFailed {
            date: report.date.clone(),
            failed: report.errors.len(),
        });
    }
    Ok(report)
}

/// How a failed run shows in the Lambda response (and CloudWatch): the variant and the message.
impl From<CronError> for lambda_runtime::Diagnostic {
    fn from(e: CronError) -> Self {
        let error_type = match &e {
            CronError::BadEvent(_) => "BadEvent",
            CronError::Job(_) => "DeadlineJob",
            CronError::ItemsFailed { .. } => "ItemsFailed",
        };
        lambda_runtime::Diagnostic {
            error_type: error_type.into(),
            error_message: e.to_string(),
        }
    }
}
