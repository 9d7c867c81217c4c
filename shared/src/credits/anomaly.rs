//! Anomaly detection: this hour's AI actions of a tenant against its trailing hourly baseline.
//!
//! - Over `alert_multiple` (3×) the baseline: a security event in the audit log
//!   (`security.unusual_usage`) and an alert (a `warn` log line with `alert = true`), once per hour.
//! - Over `critical_multiple` (10× by default, `KOTOBA_ANOMALY_CRITICAL_MULTIPLE`): AI actions are
//!   suspended for an hour — the `keys::ai_suspension` item, which every reservation checks in its
//!   own transaction (403 `suspicious_activity`) — audited as `security.ai_suspended`, alerted, and
//!   told to the tenant's webhooks as `limit.reached` (`limit: "unusual_usage"`).
//!
//! What is counted: the reservations of watched functions (chat, call, execute) in the hour counter
//! the reservation already writes (`keys::credit_hour`). Training is not watched: a re-train embeds in
//! many batches at once by design, bounded by the plan's page limit and concurrent jobs.
//!
//! Cost: nothing before the model call. After it, [`Watch::observe`] adds one to the hour's
//! `settled` count (one atomic add, which returns the new count, on an item of its own,
//! `keys::credit_watch`, so it never contends with reservations' transactions), and only when that
//! count reaches a checkpoint — never below `alert_multiple × min_baseline`, then 16 per doubling —
//! it reads the trailing hours (two queries at once: the counts and the flags) and judges. The baseline is the mean over `baseline_hours` (hours
//! without actions count as zero, hours already flagged are left out so an attack does not raise its
//! own bar), and never less than `min_baseline`, so a new tenant's first busy hour is not flagged.

use std::sync::Arc;

use serde_json::json;

use crate::audit;
use crate::clock::Clock;
use crate::ids::{IdGenerator, TenantId};
use crate::queue::JobQueue;
use crate::store::{Add, Condition, Item, ItemStore, Query, StoreError, keys};

use super::{Hold, MeteredFunction};

/// The functions whose actions are watched.
pub const WATCHED: [MeteredFunction; 3] = [
    MeteredFunction::Chat,
    MeteredFunction::Call,
    MeteredFunction::Execute,
];

/// The watch item's attribute counting settled watched actions (the checkpoint trigger).
pub const SETTLED: &str = "settled";
/// The watch item's attribute marking an hour already flagged (at most 1).
pub const FLAGGED: &str = "flagged";

/// How hour counters are kept (as the reservation keeps them).
const HOUR_RETENTION_SECS: i64 = 40 * 86_400;

/// The detector's settings (`CreditSettings::anomaly`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnomalySettings {
    /// Over this multiple of the baseline: a security event and an alert.
    pub alert_multiple: i64,
    /// Over this multiple: AI actions suspended for `suspend_secs` (`KOTOBA_ANOMALY_CRITICAL_MULTIPLE`).
    pub critical_multiple: i64,
    /// The least baseline, in watched actions per hour (`KOTOBA_ANOMALY_MIN_BASELINE`).
    pub min_baseline: i64,
    /// The trailing hours the baseline is the mean of.
    pub baseline_hours: i64,
    /// How long a suspension lasts.
    pub suspend_secs: i64,
}

impl Default for AnomalySettings {
    fn default() -> Self {
        Self {
            alert_multiple: 3,
            critical_multiple: 10,
            min_baseline: 20,
            baseline_hours: 24,
            suspend_secs: 3600,
        }
    }
}

impl AnomalySettings {
    /// Whether the `n`th settled action of an hour is one to judge at: none below the smallest count
    /// that can be unusual, then at most 16 per doubling of the count (so a busy hour is judged a
    /// few dozen times, and a burst is seen within a sixteenth of its size).
    pub fn is_checkpoint(&self, n: i64) -> bool {
        let first = (self.alert_multiple.max(1))
            .saturating_mul(self.min_baseline.max(1))
            .saturating_add(1);
        if n < first {
            return false;
        }
        let step = 1i64 << (63 - n.leading_zeros() as i64 - 4).max(0);
        n == first || n % step == 0
    }

    /// Judges an hour's count against the trailing hours' total (`baseline_sum` over
    /// `baseline_hours`), in integers: `current > multiple × max(sum / hours, min_baseline)`.
    pub fn judge(&self, current: i64, baseline_sum: i64) -> Verdict {
        let hours = self.baseline_hours.max(1);
        let over = |multiple: i64| {
            current as i128 * hours as i128 > multiple as i128 * baseline_sum as i128
                && current > multiple.saturating_mul(self.min_baseline)
        };
        if over(self.critical_multiple) {
            Verdict::Critical
        } else if over(self.alert_multiple) {
            Verdict::Unusual
        } else {
            Verdict::Normal
        }
    }

    /// The baseline (actions per hour) as reported: the mean, at least the minimum.
    pub fn baseline(&self, baseline_sum: i64) -> f64 {
        (baseline_sum as f64 / self.baseline_hours.max(1) as f64).max(self.min_baseline as f64)
    }
}

/// What an hour's usage looks like against the baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Normal,
    /// Over the alert multiple.
    Unusual,
    /// Over the critical multiple: suspend.
    Critical,
}

/// What a judgement found and did (returned for tests and logs).
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub verdict: Verdict,
    /// Watched actions reserved this hour.
    pub current: i64,
    /// Actions per hour the hour was judged against.
    pub baseline: f64,
    /// Whether this judgement raised the alert or the suspension (another one may have first).
    pub acted: bool,
}

/// The detector, as the meter holds it.
#[derive(Clone)]
pub struct Watch {
    store: Arc<dyn ItemStore>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
    settings: AnomalySettings,
    /// The webhook queue, to tell the tenant of a suspension (absent in unit tests).
    events: Option<Arc<dyn JobQueue>>,
}

impl Watch {
    pub fn new(
        store: Arc<dyn ItemStore>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGenerator>,
        settings: AnomalySettings,
    ) -> Self {
        Self {
            store,
            clock,
            ids,
            settings,
            events: None,
        }
    }

    /// Tells tenants' webhooks of suspensions through this queue.
    pub fn with_events(mut self, queue: Arc<dyn JobQueue>) -> Self {
        self.events = Some(queue);
        self
    }

    /// Called as an action settles (after its model call): counts it, and at a checkpoint judges the
    /// hour. Never fails the settle: a store failure here is logged.
    pub async fn observe(&self, hold: &Hold) {
        if !WATCHED.contains(&hold.function) {
            return;
        }
        match self.count_and_judge(&hold.tenant).await {
            Ok(Some(finding)) if finding.verdict != Verdict::Normal => {
                tracing::debug!(?finding, tenant = %hold.tenant, "usage judged");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(tenant = %hold.tenant, error = %e, "anomaly detection skipped an action")
            }
        }
    }

    /// Counts one settled action; at a checkpoint, judges the hour and acts.
    pub async fn count_and_judge(&self, tenant: &TenantId) -> Result<Option<Finding>, StoreError> {
        let hour = self.clock.unix_seconds().div_euclid(3600);
        let settled = self
            .store
            .add(
                Add::new(keys::credit_watch(tenant, hour), SETTLED, 1)
                    .expiring_at((hour + 1) * 3600 + HOUR_RETENTION_SECS),
            )
            .await?;
        if !self.settings.is_checkpoint(settled) {
            return Ok(None);
        }
        self.judge_hour(tenant, hour).await.map(Some)
    }

    /// Reads this hour and the trailing hours (one query), judges, and acts on the verdict.
    pub async fn judge_hour(&self, tenant: &TenantId, hour: i64) -> Result<Finding, StoreError> {
        let hours = self.settings.baseline_hours.max(1);
        let newest = |prefix: &'static str| {
            self.store.query(
                Query::partition(keys::credit_partition(tenant))
                    .prefix(prefix)
                    .descending()
                    .limit((hours as usize + 1).min(1000)),
            )
        };
        let (counts, watches) = tokio::join!(
            newest(keys::prefix::CREDIT_HOUR),
            newest(keys::prefix::CREDIT_WATCH)
        );
        let hour_of = |item: &Item, prefix: &str| {
            item.key
                .sk
                .strip_prefix(prefix)
                .and_then(|n| n.parse::<i64>().ok())
        };
        let flagged: std::collections::HashSet<i64> = watches?
            .items
            .iter()
            .filter(|item| item.count(FLAGGED) > 0)
            .filter_map(|item| hour_of(item, keys::prefix::CREDIT_WATCH))
            .collect();
        let watched = |item: &Item| -> i64 { WATCHED.iter().map(|f| item.count(f.as_str())).sum() };
        let (mut current, mut baseline_sum) = (0i64, 0i64);
        for item in &counts?.items {
            let Some(h) = hour_of(item, keys::prefix::CREDIT_HOUR) else {
                continue;
            };
            if h == hour {
                current = watched(item);
            } else if (hour - hours..hour).contains(&h) && !flagged.contains(&h) {
                baseline_sum += watched(item);
            }
        }
        let verdict = self.settings.judge(current, baseline_sum);
        let baseline = self.settings.baseline(baseline_sum);
        let mut finding = Finding {
            verdict,
            current,
            baseline,
            acted: false,
        };
        if verdict == Verdict::Normal {
            return Ok(finding);
        }
        let first_flag = self.flag(tenant, hour).await?;
        finding.acted = match verdict {
            Verdict::Critical => self.suspend(tenant, &finding).await?,
            _ => first_flag,
        };
        if first_flag {
            self.record(tenant, "security.unusual_usage", &finding)
                .await;
        }
        Ok(finding)
    }

    /// Marks the hour flagged; true for the one caller that marked it first.
    async fn flag(&self, tenant: &TenantId, hour: i64) -> Result<bool, StoreError> {
        let add = Add::new(keys::credit_watch(tenant, hour), FLAGGED, 1)
            .up_to(1)
            .expiring_at((hour + 1) * 3600 + HOUR_RETENTION_SECS);
        match self.store.add(add).await {
            Ok(_) => Ok(true),
            Err(StoreError::ConditionFailed) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Suspends AI actions for `suspend_secs`; true for the one caller whose suspension landed.
    async fn suspend(&self, tenant: &TenantId, finding: &Finding) -> Result<bool, StoreError> {
        let now = self.clock.unix_seconds();
        let until = now + self.settings.suspend_secs;
        let item = Item::new(keys::ai_suspension(tenant))
            .with("since", now)
            .with("actions_this_hour", finding.current)
            .with("baseline_per_hour", finding.baseline)
            .expiring_at(until);
        match self.store.put(item, Condition::IfAbsent).await {
            Ok(()) => {}
            Err(StoreError::ConditionFailed) => return Ok(false),
            Err(e) => return Err(e),
        }
        self.record(tenant, "security.ai_suspended", finding).await;
        if let Some(queue) = &self.events {
            let plan = match crate::tenants::get_tenant(self.store.as_ref(), tenant).await {
                Ok(t) => t.plan.as_str(),
                Err(_) => "unknown",
            };
            let event = crate::webhooks::Event::limit_reached(
                self.clock.now(),
                "unusual_usage",
                plan,
                None,
            );
            if let Err(e) =
                crate::webhooks::emit_to(queue.as_ref(), self.ids.as_ref(), tenant, event).await
            {
                tracing::warn!(tenant = %tenant, error = %e, "queueing the suspension's webhook event failed");
            }
        }
        Ok(true)
    }

    /// The security event: an audit entry and an alert line.
    async fn record(&self, tenant: &TenantId, action: &str, finding: &Finding) {
        let suspended_for =
            (action == "security.ai_suspended").then_some(self.settings.suspend_secs);
        tracing::warn!(
            alert = true,
            tenant = %tenant,
            action,
            actions_this_hour = finding.current,
            baseline_per_hour = finding.baseline,
            suspended_for_secs = suspended_for,
            "unusual AI usage"
        );
        let entry = audit::Entry::new(
            tenant,
            &audit::Context::system("anomaly_detection"),
            action,
            tenant,
        )
        .created(json!({
            "actions_this_hour": finding.current,
            "baseline_per_hour": finding.baseline,
            "multiple": if finding.verdict == Verdict::Critical {
                self.settings.critical_multiple
            } else {
                self.settings.alert_multiple
            },
            "suspended_for_secs": suspended_for,
        }));
        audit::record_or_log(
            self.store.as_ref(),
            self.ids.as_ref(),
            self.clock.as_ref(),
            entry,
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::embedded_db::EmbeddedDb;
    use crate::ids::RandomIds;
    use crate::store::EmbeddedStore;
    use time::macros::datetime;

    #[test]
    fn checkpoints_start_where_usage_can_be_unusual_and_thin_out() {
        let s = AnomalySettings::default(); // first: 3 × 20 + 1 = 61
        let points: Vec<i64> = (1..=300).filter(|&n| s.is_checkpoint(n)).collect();
        assert_eq!(points[0], 61);
        assert!(!s.is_checkpoint(60));
        // 64..128 every 4, 128..256 every 8.
        assert!(points.contains(&64) && points.contains(&68) && !points.contains(&66));
        assert!(points.contains(&136) && !points.contains(&132));
        // At most 16 per doubling, however busy the hour.
        let busy = (1 << 20..1 << 21).filter(|&n| s.is_checkpoint(n)).count();
        assert_eq!(busy, 16);
    }

    #[test]
    fn verdicts_compare_with_the_mean_or_the_minimum() {
        let s = AnomalySettings::default();
        // A new tenant: no history, the minimum (20/h) is the baseline.
        assert_eq!(s.judge(60, 0), Verdict::Normal);
        assert_eq!(s.judge(61, 0), Verdict::Unusual);
        assert_eq!(s.judge(200, 0), Verdict::Unusual);
        assert_eq!(s.judge(201, 0), Verdict::Critical);
        // A busy tenant: 100/h over 24 h. 3× is 300, 10× is 1000.
        let sum = 100 * 24;
        assert_eq!(s.judge(300, sum), Verdict::Normal);
        assert_eq!(s.judge(301, sum), Verdict::Unusual);
        assert_eq!(s.judge(1001, sum), Verdict::Critical);
        assert_eq!(s.baseline(sum), 100.0);
        assert_eq!(s.baseline(24), 20.0);
    }

    struct World {
        store: Arc<dyn ItemStore>,
        clock: ManualClock,
        watch: Watch,
        events: Arc<dyn JobQueue>,
        tenant: TenantId,
    }

    fn world() -> World {
        let clock = ManualClock::at(datetime!(2026-05-10 09:30 UTC));
        let db = EmbeddedDb::in_memory().unwrap();
        let store: Arc<dyn ItemStore> =
            Arc::new(EmbeddedStore::new(db.clone(), Arc::new(clock.clone())).unwrap());
        let events: Arc<dyn JobQueue> = Arc::new(
            crate::queue::LocalQueue::new(db, "webhooks", 3, Arc::new(clock.clone())).unwrap(),
        );
        let watch = Watch::new(
            store.clone(),
            Arc::new(clock.clone()),
            Arc::new(RandomIds),
            AnomalySettings::default(),
        )
        .with_events(events.clone());
        World {
            store,
            clock,
            watch,
            events,
            tenant: TenantId::parse("ten_anomaly").unwrap(),
        }
    }

    impl World {
        fn hour(&self) -> i64 {
            self.clock.unix_seconds().div_euclid(3600)
        }

        /// What a reservation writes: `n` actions of `function` in `hour`.
        async fn reserved(&self, hour: i64, function: MeteredFunction, n: i64) {
            self.store
                .add(Add::new(
                    keys::credit_hour(&self.tenant, hour),
                    function.as_str(),
                    n,
                ))
                .await
                .unwrap();
        }

        /// `n` actions of `function` reserved and settled now.
        async fn act(&self, function: MeteredFunction, n: i64) {
            for _ in 0..n {
                self.reserved(self.hour(), function, 1).await;
                let hold = Hold {
                    hold_id: "hold_x".into(),
                    tenant: self.tenant.clone(),
                    function,
                    credits: crate::credits::Credits(1),
                    due: 0,
                    request_id: None,
                };
                self.watch.observe(&hold).await;
            }
        }

        async fn suspended(&self) -> bool {
            self.store
                .get(&keys::ai_suspension(&self.tenant))
                .await
                .unwrap()
                .is_some()
        }

        async fn audit_actions(&self) -> Vec<String> {
            let (entries, _) = audit::list(self.store.as_ref(), &self.tenant, None)
                .await
                .unwrap();
            entries.into_iter().rev().map(|e| e.action).collect()
        }
    }

    #[tokio::test]
    async fn a_new_tenants_first_busy_hour_is_not_flagged() {
        let w = world();
        w.act(MeteredFunction::Chat, 60).await;
        assert!(!w.suspended().await);
        assert!(w.audit_actions().await.is_empty());
    }

    #[tokio::test]
    async fn three_times_the_baseline_alerts_once_and_ten_times_suspends_for_an_hour() {
        let w = world();
        // A steady 30 chats an hour for the last day.
        for back in 1..=24 {
            w.reserved(w.hour() - back, MeteredFunction::Chat, 30).await;
        }
        // 90 is 3×: nothing yet; past it, one alert however many checkpoints follow.
        w.act(MeteredFunction::Chat, 90).await;
        assert!(w.audit_actions().await.is_empty());
        w.act(MeteredFunction::Execute, 60).await;
        assert_eq!(w.audit_actions().await, ["security.unusual_usage"]);
        assert!(!w.suspended().await);
        // Past 10× (300): suspended, once.
        w.act(MeteredFunction::Execute, 200).await;
        assert!(w.suspended().await);
        assert_eq!(
            w.audit_actions().await,
            ["security.unusual_usage", "security.ai_suspended"]
        );
        let item = w
            .store
            .get(&keys::ai_suspension(&w.tenant))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(item.expires_at, Some(w.clock.unix_seconds() + 3600));
        // The tenant's webhooks hear of the suspension as `limit.reached`; of the alert, nothing.
        let queued = w
            .events
            .receive(
                10,
                std::time::Duration::from_secs(30),
                std::time::Duration::ZERO,
            )
            .await
            .unwrap();
        assert_eq!(queued.len(), 1);
        let message: crate::webhooks::events::Message =
            serde_json::from_str(&queued[0].body).unwrap();
        let crate::webhooks::events::Message::Event { event, .. } = message else {
            panic!("not an event: {message:?}");
        };
        assert_eq!(event.event_type, crate::webhooks::EventType::LimitReached);
        assert_eq!(event.data["limit"], "unusual_usage");
        // An hour later the suspension has lapsed; the flagged hour does not raise the baseline.
        w.clock.advance(std::time::Duration::from_secs(3600));
        assert!(!w.suspended().await);
        let finding = w.watch.judge_hour(&w.tenant, w.hour()).await.unwrap();
        assert_eq!(finding.baseline, 30.0 * 23.0 / 24.0);
    }

    #[tokio::test]
    async fn training_batches_are_not_watched() {
        let w = world();
        w.act(MeteredFunction::Training, 500).await;
        let hour = w
            .store
            .get(&keys::credit_watch(&w.tenant, w.hour()))
            .await
            .unwrap();
        assert_eq!(hour, None, "no settle counted");
        assert!(!w.suspended().await);
    }
}
