//! The daily deadline job: finds what falls due on a day and acts on it, exactly once per item per day.
//!
//! What falls due is found through the by-due index, one partition per day (`DUE#YYYY-MM-DD`), never a
//! table scan. Due records are written when the fact behind them changes: a subscription's trial end,
//! period end or past-due date (the Stripe webhook, [`due::schedule_billing`]), a document's
//! `valid_until` (training), a training job's deadline (its creation), a credit account's cycle date
//! ([`due::schedule_monthly_grant`]). A due record says only "look at this on that day": the action
//! re-reads the current state then, so a record made stale by a later change does nothing.
//!
//! Each action is one unit ([`actions`]) with its own due records and its own put-if-absent markers
//! (`DEADLINE#<day>` / `<action>#<subject>`, [`marker`]): a re-run, a retry after a crash halfway or
//! two overlapping runs act on an item at most once. Mail is claimed first ("sending", with a lease),
//! marked done only after the mailer accepted it, and released when it failed, so a failed send is
//! retried by the next run and a sent one is never sent again.
//!
//! Days missed (the job did not run) are caught up: a cursor remembers the first day not finished
//! cleanly, and a run works through every day from there to its own date ([`run::DeadlineJob`]).

pub mod actions;
pub mod due;
pub mod marker;
pub mod notices;
pub mod run;

pub use actions::credits::CreditCycle;
pub use run::{DeadlineError, DeadlineJob, RunReport};

use time::{Date, OffsetDateTime};

/// A calendar day (UTC) as the job's keys and reports write it: `YYYY-MM-DD`.
pub fn day_text(day: Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        day.year(),
        u8::from(day.month()),
        day.day()
    )
}

/// Parses `YYYY-MM-DD`.
pub fn parse_day(raw: &str) -> Result<Date, String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(raw.trim(), format).map_err(|_| format!("{raw:?} is not a date (YYYY-MM-DD)"))
}

/// The first midnight (UTC) at or after `t`: the day a daily run first sees that `t` has passed.
pub(crate) fn first_run_day_after(t: OffsetDateTime) -> Date {
    let day = t.date();
    if t.time() == time::Time::MIDNIGHT {
        day
    } else {
        day.next_day().unwrap_or(day)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    #[test]
    fn days_read_and_write_as_iso_dates() {
        assert_eq!(day_text(date!(2026 - 03 - 09)), "2026-03-09");
        assert_eq!(parse_day(" 2026-12-04 ").unwrap(), date!(2026 - 12 - 04));
        assert!(parse_day("2026-13-01").is_err());
        assert!(parse_day("04/12/2026").is_err());
        assert!(parse_day("").is_err());
    }

    #[test]
    fn a_run_sees_an_instant_on_the_next_midnight() {
        assert_eq!(
            first_run_day_after(datetime!(2026-03-09 00:00 UTC)),
            date!(2026 - 03 - 09)
        );
        assert_eq!(
            first_run_day_after(datetime!(2026-03-09 00:00:01 UTC)),
            date!(2026 - 03 - 10)
        );
    }
}
