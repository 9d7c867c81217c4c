//! Deadline job benchmark: N trialing tenants whose 3-day trial reminder falls due on one day, on the
//! embedded store (SQLite) with the outbox mailer (one `.eml` file per mail, fsynced), run once with
//! the job's bounded concurrency (ours) and once one item at a time (baseline), each on a fresh data
//! directory; then the same day again (every item already done: what a re-run or an overlapping run costs).
//!
//!   cargo run -p kotoba-tests --example deadlines_bench [-- N ...]      (default 2000)
//!
//! Items are due tenants mailed; the run also walks every tenant for the daily usage summary. Time is
//! the wall time of `DeadlineJob::run`; items/s = mailed / time; "100k" extrapolates linearly
//! (the job pages through due records, so its work grows with the items, not with the table).

use std::sync::Arc;
use std::time::{Duration, Instant};

use time::macros::datetime;

use shared::Platform;
use shared::clock::{Clock, ManualClock};
use shared::config::{Config, Mode};
use shared::deadlines::{DeadlineJob, due};
use shared::ids::RandomIds;
use shared::store::{Update, keys};
use shared::tenants::{self, Plan, TenantName};

async fn setup(n: usize) -> (tempfile::TempDir, Arc<Platform>, ManualClock) {
    let dir = tempfile::tempdir().unwrap();
    let vars = [("KOTOBA_DATA_DIR", dir.path().display().to_string())]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let config = Config::from_vars(&vars, Mode::Local).unwrap();
    let clock = ManualClock::at(datetime!(2026-03-08 00:00:05 UTC));
    let platform =
        Platform::embedded(config, Arc::new(clock.clone()), Arc::new(RandomIds)).unwrap();
    let store = platform.store.as_ref();
    let grace = platform.config.billing.past_due_grace;
    for i in 0..n {
        let tenant = tenants::create_tenant(
            store,
            platform.ids.as_ref(),
            platform.clock.as_ref(),
            TenantName::parse(&format!("テナント{i}")).unwrap(),
            Plan::Starter,
        )
        .await
        .unwrap();
        let item = store
            .update(
                Update::new(keys::tenant(&tenant.tenant_id))
                    .set("trial_ends_at", "2026-03-12T09:00:00Z")
                    .set("billing_email", format!("owner{i}@example.jp"))
                    .set("language", if i % 2 == 0 { "ja" } else { "en" }),
            )
            .await
            .unwrap();
        let tenant: tenants::Tenant = item.to_record().unwrap();
        due::schedule_billing(store, &tenant, grace, clock.now().date())
            .await
            .unwrap();
    }
    clock.set(datetime!(2026-03-09 00:00:05 UTC));
    (dir, platform, clock)
}

async fn timed(job: &DeadlineJob) -> (Duration, shared::deadlines::RunReport) {
    let started = Instant::now();
    let report = job.run(job.today()).await.unwrap();
    (started.elapsed(), report)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() { vec![2000] } else { sizes };
    println!(
        "| tenants due | run | concurrency | time (s) | mailed | items/s | 100k tenants (min) | re-run, all done (s) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for n in sizes {
        for (name, concurrency) in [
            ("baseline", 1),
            ("ours", shared::deadlines::run::DEFAULT_CONCURRENCY),
        ] {
            let (_dir, platform, _clock) = setup(n).await;
            let job = DeadlineJob::new(platform.clone()).with_concurrency(concurrency);
            let (took, report) = timed(&job).await;
            let mailed = report.actions["trial_ending"];
            assert_eq!(mailed as usize, n, "{report:?}");
            assert!(report.errors.is_empty(), "{:?}", report.errors);
            let (again, rerun) = timed(&job).await;
            assert_eq!(rerun.acted(), 0);
            let per_s = mailed as f64 / took.as_secs_f64();
            println!(
                "| {n} | {name} | {concurrency} | {:.2} | {mailed} | {per_s:.0} | {:.1} | {:.2} |",
                took.as_secs_f64(),
                100_000.0 / per_s / 60.0,
                again.as_secs_f64()
            );
        }
    }
}
