//! The deadline job (shared/src/deadlines) on both adapter families: a trial reminder set up through a
//! signed Stripe webhook, sent once in Japanese (read back from the outbox and from moto's SES), never
//! again on re-runs, retried after a failed send, caught up after a missed day; stale content re-trained
//! once; a stuck job failed and its site unlocked; daily usage summaries. Time is a `ManualClock`.
//! `POST /api/admin/cron/run` is driven over HTTP through the local runner.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use futures::future::BoxFuture;
use mail_parser::MessageParser;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::datetime;
use tower::ServiceExt;

use kotoba_tests::{Backend, TestApp, aws, stripe, unique_name};
use shared::Platform;
use shared::clock::{Clock, ManualClock};
use shared::config::{Backend as StoreBackend, Config, Mode};
use shared::deadlines::{DeadlineJob, RunReport};
use shared::ids::{RandomIds, SiteId, TenantId};
use shared::mail::{Mail, MailError, Mailer, Outbox};
use shared::store::{Index, Query, keys};
use shared::tenants::{self, Plan, Tenant, TenantName};

const WEBHOOK_SECRET: &str = "whsec_deadline_tests_0123456789";

struct World {
    backend: Backend,
    clock: ManualClock,
    platform: Arc<Platform>,
    _dir: tempfile::TempDir,
}

async fn world(backend: Backend, start: OffsetDateTime) -> World {
    let dir = tempfile::tempdir().unwrap();
    let mut vars: std::collections::HashMap<String, String> = [
        ("KOTOBA_DATA_DIR", dir.path().display().to_string()),
        ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET.to_string()),
        ("STRIPE_SECRET_KEY", "sk_test_deadlines".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let clock = ManualClock::at(start);
    let platform = match backend {
        Backend::Embedded => {
            let config = Config::from_vars(&vars, Mode::Local).unwrap();
            Platform::embedded(config, Arc::new(clock.clone()), Arc::new(RandomIds)).unwrap()
        }
        Backend::Aws => {
            let resources = aws::Resources::create().await;
            vars.extend(resources.vars());
            let config = Config::from_vars(&vars, Mode::Local).unwrap();
            let StoreBackend::Aws(settings) = config.backend.clone() else {
                panic!("AWS settings expected")
            };
            let sdk = aws::sdk_config().await;
            Platform::aws(
                config,
                &settings,
                &sdk,
                Arc::new(clock.clone()),
                Arc::new(RandomIds),
            )
            .unwrap()
        }
    };
    World {
        backend,
        clock,
        platform,
        _dir: dir,
    }
}

impl World {
    fn job(&self) -> DeadlineJob {
        DeadlineJob::new(self.platform.clone())
    }

    /// Runs the job for today (the clock's day), as the schedule does.
    async fn run_today(&self) -> RunReport {
        let job = self.job();
        job.run(job.today()).await.unwrap()
    }

    /// A tenant with a billing email of its own (so moto's shared record of mail can be filtered).
    async fn tenant(&self, language: &str) -> (Tenant, String) {
        let store = self.platform.store.as_ref();
        let tenant = tenants::create_tenant(
            store,
            self.platform.ids.as_ref(),
            self.platform.clock.as_ref(),
            TenantName::parse("ホテル海風").unwrap(),
            Plan::Starter,
        )
        .await
        .unwrap();
        let email = format!("{}@umikaze.example.jp", unique_name("keiri"));
        let patch: tenants::profile::ProfilePatch = serde_json::from_value(json!({
            "billing_email": email, "language": language, "timezone": "Asia/Tokyo"
        }))
        .unwrap();
        let tenant = tenants::profile::update_profile(store, &tenant.tenant_id, patch)
            .await
            .unwrap()
            .unwrap();
        (tenant, email)
    }

    /// A signed `customer.subscription.updated` event through the webhook function, as Stripe sends it.
    async fn subscription_event(&self, object: Value) {
        let created = self.clock.unix_seconds();
        let body = stripe::event(
            &stripe::new_event_id(),
            "customer.subscription.updated",
            created,
            object,
        );
        let request = axum::http::Request::post("/api/webhooks/stripe")
            .header("content-type", "application/json")
            .header(
                "stripe-signature",
                stripe::sign(WEBHOOK_SECRET, created, &body),
            )
            .body(Body::from(body))
            .unwrap();
        let response = webhook::routes(self.platform.clone())
            .oneshot(request)
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
        let reply: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(reply["outcome"], "applied", "{reply}");
    }

    async fn start_trial(&self, tenant: &TenantId, trial_end: OffsetDateTime) {
        let mut object = stripe::subscription(
            &format!("sub_{}", uuid::Uuid::new_v4().simple()),
            &format!("cus_{}", uuid::Uuid::new_v4().simple()),
            tenant.as_str(),
            "trialing",
            "price_unknown",
            trial_end.unix_timestamp(),
        );
        object["trial_end"] = json!(trial_end.unix_timestamp());
        self.subscription_event(object).await;
    }

    /// The trial converts: an active subscription renewing on `period_end`.
    async fn activate(&self, tenant: &TenantId, period_end: OffsetDateTime) {
        let object = stripe::subscription(
            &format!("sub_{}", uuid::Uuid::new_v4().simple()),
            &format!("cus_{}", uuid::Uuid::new_v4().simple()),
            tenant.as_str(),
            "active",
            "price_unknown",
            period_end.unix_timestamp(),
        );
        self.subscription_event(object).await;
    }

    /// The mails recorded as sent to the tenant (the markers listed under it), read back from the
    /// mailer's own record: the outbox's files, or moto's record of SES.
    async fn mails(&self, tenant: &TenantId) -> Vec<Sent> {
        let page = self
            .platform
            .store
            .query(
                Query::on(Index::ByTenant, keys::tenant_partition(tenant))
                    .prefix(keys::prefix::MAIL)
                    .limit(100),
            )
            .await
            .unwrap();
        let mut sent = Vec::new();
        for item in page.items {
            let id = item.attributes["message_id"].as_str().unwrap().to_string();
            let to = item.attributes["to"].as_str().unwrap().to_string();
            sent.push(self.read_back(&id, &to).await);
        }
        sent
    }

    async fn read_back(&self, id: &str, to: &str) -> Sent {
        match self.backend {
            Backend::Embedded => {
                let outbox = Outbox::new(self.platform.config.data_dir.join("outbox")).unwrap();
                let path = outbox
                    .find(id)
                    .unwrap()
                    .expect("the message is in the outbox");
                let raw = std::fs::read(path).unwrap();
                let head = &raw[..raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap()];
                assert!(head.is_ascii(), "headers are encoded");
                let message = MessageParser::default().parse(&raw).unwrap();
                let text = message.body_text(0).unwrap().to_string();
                Sent {
                    to: message
                        .to()
                        .and_then(|a| a.first())
                        .and_then(|a| a.address())
                        .unwrap()
                        .to_string(),
                    subject: message.subject().unwrap().to_string(),
                    text,
                    html: message.body_html(0).map(|h| h.to_string()),
                    unsubscribe: message
                        .header_raw("List-Unsubscribe")
                        .map(|v| v.trim().to_string()),
                }
            }
            Backend::Aws => {
                let message = moto_messages()
                    .await
                    .into_iter()
                    .find(|m| m["id"] == id)
                    .unwrap_or_else(|| panic!("{id} not in moto's record"));
                let destinations = &message["destinations"]["ToAddresses"];
                assert_eq!(destinations[0], to);
                Sent {
                    to: to.to_string(),
                    subject: message["subject"].as_str().unwrap().to_string(),
                    // moto keeps one body: the HTML when there is one.
                    text: message["body"].as_str().unwrap().to_string(),
                    html: message["body"].as_str().map(str::to_string),
                    unsubscribe: None,
                }
            }
        }
    }

    /// Every message actually handed to the mailer for `to` (duplicates included).
    async fn delivered_to(&self, to: &str) -> usize {
        match self.backend {
            Backend::Embedded => {
                let outbox = Outbox::new(self.platform.config.data_dir.join("outbox")).unwrap();
                outbox
                    .list()
                    .unwrap()
                    .iter()
                    .filter(|p| {
                        let raw = std::fs::read(p).unwrap();
                        let m = MessageParser::default().parse(&raw).unwrap();
                        m.to().and_then(|a| a.first()).and_then(|a| a.address()) == Some(to)
                    })
                    .count()
            }
            Backend::Aws => moto_messages()
                .await
                .iter()
                .filter(|m| m["destinations"]["ToAddresses"][0] == to)
                .count(),
        }
    }

    /// The same platform with another mailer (everything else shared).
    fn with_mailer(&self, mail: Arc<dyn Mailer>) -> Arc<Platform> {
        let p = &self.platform;
        Arc::new(Platform {
            store: p.store.clone(),
            blobs: p.blobs.clone(),
            dir_blobs: p.dir_blobs.clone(),
            train_queue: p.train_queue.clone(),
            webhook_queue: p.webhook_queue.clone(),
            webhook_key: p.webhook_key.clone(),
            mail,
            mail_from: p.mail_from.clone(),
            clock: p.clock.clone(),
            ids: p.ids.clone(),
            admin_key: None,
            config: p.config.clone(),
        })
    }
}

#[derive(Debug)]
struct Sent {
    to: String,
    subject: String,
    text: String,
    html: Option<String>,
    unsubscribe: Option<String>,
}

async fn moto_messages() -> Vec<Value> {
    let url = format!("{}/moto-api/data.json?service=ses", aws::endpoint());
    let data: Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
    data["ses"]["Message"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// A mailer that refuses mail to one address (a provider outage for that send) and passes the rest on.
struct FailingFor {
    inner: Arc<dyn Mailer>,
    refuse: String,
    refused: Mutex<u32>,
}

impl Mailer for FailingFor {
    fn send(&self, mail: Mail) -> BoxFuture<'_, Result<String, MailError>> {
        Box::pin(async move {
            if mail.to.iter().any(|a| a.as_str() == self.refuse) {
                *self.refused.lock().unwrap() += 1;
                return Err(MailError::Backend(anyhow::anyhow!("throttled")));
            }
            self.inner.send(mail).await
        })
    }
}

fn day(d: time::Date) -> OffsetDateTime {
    d.with_hms(0, 0, 5).unwrap().assume_utc()
}

async fn trial_reminders(backend: Backend) {
    let w = world(backend, datetime!(2026-03-08 00:00:05 UTC)).await;
    let (a, a_mail) = w.tenant("ja").await;
    // Trial ends on the 12th (09:00 UTC = 18:00 JST): the 3-day reminder is due on the 9th.
    w.start_trial(&a.tenant_id, datetime!(2026-03-12 09:00 UTC))
        .await;
    let first = w.run_today().await;
    assert_eq!(first.days, ["2026-03-08"]);
    assert_eq!(first.acted(), 0, "{first:?}");

    w.clock.set(day(time::macros::date!(2026 - 03 - 09)));
    let run = w.run_today().await;
    assert_eq!(run.actions["trial_ending"], 1, "{run:?}");
    assert!(run.errors.is_empty(), "{run:?}");
    let mails = w.mails(&a.tenant_id).await;
    assert_eq!(mails.len(), 1, "{mails:?}");
    let mail = &mails[0];
    assert_eq!(mail.to, a_mail);
    assert_eq!(mail.subject, "【Kotoba】無料トライアル終了まであと3日です");
    assert!(
        mail.text.contains("2026年3月12日に終了します"),
        "{}",
        mail.text
    );
    assert!(mail.html.as_deref().unwrap().contains("ホテル海風 様"));
    if backend == Backend::Embedded {
        let unsubscribe = mail.unsubscribe.as_deref().expect("List-Unsubscribe");
        assert!(unsubscribe.starts_with("<mailto:"), "{unsubscribe}");
    }
    // Three more runs that day: nothing more.
    for _ in 0..3 {
        let again = w.run_today().await;
        assert_eq!(again.acted(), 0, "{again:?}");
        // The reminder, and the day's sweep of credit reservations.
        assert_eq!(again.already_done, 2, "{again:?}");
    }
    assert_eq!(w.delivered_to(&a_mail).await, 1);

    // Two tenants due on the 10th; the provider refuses one send (a crash halfway, as far as that
    // tenant is concerned): the other is sent, the failed one reported, and the re-run sends only it.
    let (b, b_mail) = w.tenant("en").await;
    let (c, c_mail) = w.tenant("ko").await;
    w.start_trial(&b.tenant_id, datetime!(2026-03-13 01:00 UTC))
        .await;
    w.start_trial(&c.tenant_id, datetime!(2026-03-13 01:00 UTC))
        .await;
    w.clock.set(day(time::macros::date!(2026 - 03 - 10)));
    let flaky = Arc::new(FailingFor {
        inner: w.platform.mail.clone(),
        refuse: c_mail.clone(),
        refused: Mutex::new(0),
    });
    let broken = DeadlineJob::new(w.with_mailer(flaky.clone()));
    let partial = broken.run(broken.today()).await.unwrap();
    assert_eq!(partial.actions["trial_ending"], 1, "{partial:?}");
    assert_eq!(partial.errors.len(), 1, "{partial:?}");
    assert_eq!(partial.errors[0].subject, c.tenant_id.as_str());
    assert_eq!(*flaky.refused.lock().unwrap(), 1);
    let retry = w.run_today().await;
    assert_eq!(retry.actions["trial_ending"], 1, "{retry:?}");
    // The mail that went out, and the day's sweep of credit reservations.
    assert_eq!(retry.already_done, 2, "{retry:?}");
    assert!(retry.errors.is_empty());
    assert_eq!(w.delivered_to(&b_mail).await, 1);
    assert_eq!(w.delivered_to(&c_mail).await, 1);
    let english = w.mails(&b.tenant_id).await;
    assert_eq!(english[0].subject, "Your Kotoba trial ends in 3 days");
    let korean = w.mails(&c.tenant_id).await;
    assert_eq!(
        korean[0].subject,
        "[Kotoba] 무료 체험 종료까지 3일 남았습니다"
    );

    // A missed day: D's 3-day reminder falls on the 11th, the job next runs on the 12th and catches up
    // (with A's 1-day reminder of the 11th and B's of the 12th). C converted meanwhile: its 1-day
    // reminder record finds an active subscription and sends nothing.
    let (d, d_mail) = w.tenant("ja").await;
    w.start_trial(&d.tenant_id, datetime!(2026-03-14 03:00 UTC))
        .await;
    w.clock
        .set(day(time::macros::date!(2026 - 03 - 11)) - time::Duration::hours(2));
    w.activate(&c.tenant_id, datetime!(2026-05-13 01:00 UTC))
        .await;
    w.clock.set(day(time::macros::date!(2026 - 03 - 12)));
    let caught_up = w.run_today().await;
    assert_eq!(
        caught_up.days,
        ["2026-03-11", "2026-03-12"],
        "{caught_up:?}"
    );
    assert_eq!(caught_up.actions["trial_ending"], 3, "{caught_up:?}");
    assert!(caught_up.errors.is_empty(), "{caught_up:?}");
    assert_eq!(w.delivered_to(&d_mail).await, 1);
    assert_eq!(w.delivered_to(&a_mail).await, 2);
    assert_eq!(w.delivered_to(&b_mail).await, 2);
    assert_eq!(w.delivered_to(&c_mail).await, 1);
    let subjects: Vec<String> = w
        .mails(&a.tenant_id)
        .await
        .into_iter()
        .map(|m| m.subject)
        .collect();
    assert!(
        subjects.contains(&"【Kotoba】無料トライアル終了まであと1日です".to_string()),
        "{subjects:?}"
    );
    // And a repeat of the catch-up does nothing.
    assert_eq!(w.run_today().await.acted(), 0);
}

#[tokio::test]
async fn trial_reminders_embedded() {
    trial_reminders(Backend::Embedded).await;
}

#[tokio::test]
async fn trial_reminders_aws() {
    trial_reminders(Backend::Aws).await;
}

/// A trained site: a succeeded job for `url` and one document valid until `valid_until`.
async fn trained_site(w: &World, tenant: &TenantId, interval: u32, valid_until: &str) -> SiteId {
    let store = w.platform.store.as_ref();
    let site = shared::sites::create_site(
        store,
        w.platform.ids.as_ref(),
        w.platform.clock.as_ref(),
        tenant,
        serde_json::from_value(json!({"name": "本店", "allowed_domains": ["127.0.0.1"]})).unwrap(),
    )
    .await
    .unwrap();
    shared::sites::patch_site(
        store,
        w.platform.clock.as_ref(),
        tenant,
        &site.site_id,
        serde_json::from_value(json!({ "retrain_interval_days": interval })).unwrap(),
    )
    .await
    .unwrap();
    let job = shared::training::jobs::create_job(
        store,
        w.platform.ids.as_ref(),
        w.platform.clock.as_ref(),
        tenant,
        &site.site_id,
        shared::training::jobs::JobRequest {
            url: "http://127.0.0.1:9/ja/".into(),
            force_retrain: true,
            max_pages: 20,
            max_depth: 3,
            scope: Default::default(),
        },
        Plan::Starter,
    )
    .await
    .unwrap();
    let mut fields = serde_json::Map::new();
    fields.insert("status".into(), json!("succeeded"));
    fields.insert("finished_at".into(), json!("2026-03-08T00:00:10Z"));
    store
        .update(shared::training::jobs::job_update(&job.job_id, fields))
        .await
        .unwrap();
    store
        .delete(
            &shared::training::jobs::lock_key(&site.site_id),
            shared::store::Condition::None,
        )
        .await
        .unwrap();
    shared::training::jobs::release_slot(store, &job).await;
    let doc: shared::training::documents::DocumentRecord = serde_json::from_value(json!({
        "url": "http://127.0.0.1:9/ja/", "canonical_url": "http://127.0.0.1:9/ja/",
        "title": "トップ", "content_hash": "00", "etag": null, "last_modified": null, "version": 1,
        "valid_until": valid_until, "chunk_count": 1, "embedding_tokens": 0, "embedding_model": null,
        "status": "active", "seen_job": job.job_id, "changed_job": job.job_id, "removed_job": null,
        "updated_at": "2026-03-08T00:00:10Z"
    }))
    .unwrap();
    shared::training::documents::save(store, &site.site_id, &doc)
        .await
        .unwrap();
    site.site_id
}

async fn jobs_of(w: &World, site: &SiteId) -> Vec<shared::training::jobs::TrainingJob> {
    let page = w
        .platform
        .store
        .query(Query::on(Index::BySite, keys::site_partition(site)).prefix(keys::prefix::JOB))
        .await
        .unwrap();
    page.items.iter().map(|i| i.to_record().unwrap()).collect()
}

async fn content_and_jobs(backend: Backend) {
    let w = world(backend, datetime!(2026-03-09 00:00:05 UTC)).await;
    let (owner, _) = w.tenant("ja").await;
    let (other, _) = w.tenant("en").await;
    let (third, third_mail) = w.tenant("ja").await;
    // Weekly site stale on the 10th; a site that re-trains never; both with pages past valid_until.
    let stale = trained_site(&w, &owner.tenant_id, 1, "2026-03-10T00:00:06Z").await;
    let never = trained_site(&w, &other.tenant_id, 0, "2026-03-10T00:00:06Z").await;
    // A job queued at 00:00 on the 9th that never ran: its deadline passes at 06:00, so the run on
    // the 10th finds it stuck.
    let stuck_site = shared::sites::create_site(
        w.platform.store.as_ref(),
        w.platform.ids.as_ref(),
        w.platform.clock.as_ref(),
        &third.tenant_id,
        serde_json::from_value(json!({"name": "支店", "allowed_domains": []})).unwrap(),
    )
    .await
    .unwrap();
    let stuck = shared::training::jobs::create_job(
        w.platform.store.as_ref(),
        w.platform.ids.as_ref(),
        w.platform.clock.as_ref(),
        &third.tenant_id,
        &stuck_site.site_id,
        shared::training::jobs::JobRequest {
            url: "http://127.0.0.1:9/".into(),
            force_retrain: false,
            max_pages: 5,
            max_depth: 2,
            scope: Default::default(),
        },
        Plan::Starter,
    )
    .await
    .unwrap();
    // Drain the queue of anything earlier (none expected).
    let first = w.run_today().await;
    assert_eq!(first.actions["stale_content_retrain"], 0, "{first:?}");
    assert_eq!(first.actions["stuck_job_failed"], 0, "{first:?}");

    w.clock.set(day(time::macros::date!(2026 - 03 - 10)));
    let run = w.run_today().await;
    assert!(run.errors.is_empty(), "{run:?}");
    assert_eq!(run.actions["stale_content_retrain"], 1, "{run:?}");
    assert_eq!(run.actions["stuck_job_failed"], 1, "{run:?}");
    // Exactly one differential re-train of the weekly site, with its last training's request.
    let jobs = jobs_of(&w, &stale).await;
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    let queued: Vec<_> = jobs
        .iter()
        .filter(|j| j.status == shared::training::jobs::JobStatus::Queued)
        .collect();
    assert_eq!(queued.len(), 1);
    assert!(!queued[0].request.force_retrain, "differential");
    assert_eq!(queued[0].request.url, "http://127.0.0.1:9/ja/");
    assert_eq!(queued[0].request.max_pages, 20);
    let messages = w
        .platform
        .train_queue
        .receive(10, Duration::from_secs(30), Duration::from_millis(100))
        .await
        .unwrap();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(messages[0].body.contains(queued[0].job_id.as_str()));
    assert_eq!(jobs_of(&w, &never).await.len(), 1, "interval 0: never");
    // The stuck job failed with a reason, its site unlocked, its tenant told.
    let failed = shared::training::jobs::load_job(w.platform.store.as_ref(), &stuck.job_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failed.status, shared::training::jobs::JobStatus::Failed);
    assert!(failed.error.unwrap().contains("deadline"));
    assert_eq!(
        shared::training::jobs::running_job(w.platform.store.as_ref(), &stuck_site.site_id)
            .await
            .unwrap(),
        None
    );
    let told = w.mails(&third.tenant_id).await;
    assert_eq!(told.len(), 1);
    assert_eq!(
        told[0].subject,
        "【Kotoba】サイト「支店」の学習を中止しました"
    );
    // The site is free to train again.
    let again = shared::training::jobs::create_job(
        w.platform.store.as_ref(),
        w.platform.ids.as_ref(),
        w.platform.clock.as_ref(),
        &third.tenant_id,
        &stuck_site.site_id,
        stuck.request.clone(),
        Plan::Starter,
    )
    .await;
    assert!(again.is_ok(), "{again:?}");

    // Re-runs: nothing more queued, nothing more mailed.
    for _ in 0..2 {
        let rerun = w.run_today().await;
        assert_eq!(rerun.acted(), 0, "{rerun:?}");
    }
    assert_eq!(jobs_of(&w, &stale).await.len(), 2);
    assert_eq!(w.delivered_to(&third_mail).await, 1);
}

#[tokio::test]
async fn stale_content_and_stuck_jobs_embedded() {
    content_and_jobs(Backend::Embedded).await;
}

#[tokio::test]
async fn stale_content_and_stuck_jobs_aws() {
    content_and_jobs(Backend::Aws).await;
}

async fn summaries(backend: Backend) {
    let w = world(backend, datetime!(2026-03-09 10:00 UTC)).await;
    let (t, _) = w.tenant("en").await;
    let (quiet, _) = w.tenant("en").await;
    let sites = ["site_aaaaaaaa", "site_bbbbbbbb"];
    for n in 0..20u64 {
        let log: shared::chat::logs::UsageLog = serde_json::from_value(json!({
            "message_id": format!("msg_{n:08}"), "tenant_id": t.tenant_id, "site_id": sites[(n % 2) as usize],
            "session_id": "sess_1", "channel": "embed", "model": "m",
            "outcome": if n == 7 { "failed" } else { "answered" },
            "chat_input_tokens": 100, "chat_output_tokens": 10, "embedding_tokens": 5,
            "latency_ms": (n + 1) * 10, "cost": 3,
            "prices": {"chat_input_per_1k": 0, "chat_output_per_1k": 0, "embedding_per_1k": 0},
            "ip_hash": null, "user_agent": null, "request_id": null, "error": null,
            "created_at": format!("2026-03-09T10:{n:02}:00Z"),
        }))
        .unwrap();
        shared::chat::logs::write(w.platform.store.as_ref(), &log, w.clock.unix_seconds())
            .await
            .unwrap();
    }
    w.clock.set(day(time::macros::date!(2026 - 03 - 10)));
    let run = w.run_today().await;
    assert_eq!(run.actions["usage_summary"], 1, "{run:?}");
    let row = shared::deadlines::actions::summary::read(
        w.platform.store.as_ref(),
        &t.tenant_id,
        "2026-03-09",
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        (row.calls, row.answered, row.errors, row.cost_micros),
        (20, 19, 1, 60)
    );
    assert_eq!(row.chat_input_tokens, 2_000);
    assert_eq!(row.p95_latency_ms, 190);
    let site = w
        .platform
        .store
        .get(&keys::site_summary("site_aaaaaaaa", "2026-03-09"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(site.attributes["calls"], 10);
    assert!(
        shared::deadlines::actions::summary::read(
            w.platform.store.as_ref(),
            &quiet.tenant_id,
            "2026-03-09"
        )
        .await
        .unwrap()
        .is_none()
    );
    assert_eq!(w.run_today().await.acted(), 0);
}

#[tokio::test]
async fn daily_summaries_embedded() {
    summaries(Backend::Embedded).await;
}

#[tokio::test]
async fn daily_summaries_aws() {
    summaries(Backend::Aws).await;
}

#[tokio::test]
async fn the_admin_route_runs_the_job_once_per_day() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let admin = app.admin_key.clone();
    let r = app.post("/api/admin/cron/run", &admin, json!({})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let today = OffsetDateTime::now_utc().date();
    assert_eq!(r.body["date"], shared::deadlines::day_text(today));
    assert!(r.body["actions"]["trial_ending"].is_u64(), "{:?}", r.body);
    assert_eq!(r.body["errors"], json!([]));
    // A second run for the same date does nothing.
    let again = app.post("/api/admin/cron/run", &admin, json!({})).await;
    let acted: u64 = again.body["actions"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(acted, 0, "{:?}", again.body);
    // An earlier day is allowed (catch-up); a future one, a malformed one or an unknown field is not.
    let yesterday = shared::deadlines::day_text(today.previous_day().unwrap());
    let r = app
        .post("/api/admin/cron/run", &admin, json!({ "date": yesterday }))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let tomorrow = shared::deadlines::day_text(today.next_day().unwrap());
    for body in [
        json!({ "date": tomorrow }),
        json!({ "date": "2026-02-30" }),
        json!({ "when": "today" }),
    ] {
        let r = app.post("/api/admin/cron/run", &admin, body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {:?}", r.body);
        assert_eq!(r.error_code(), "invalid_input", "{body}");
    }
    // An empty body is today; a tenant key or none is refused.
    let r = app
        .client
        .post(app.url("/api/admin/cron/run"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, tenant_key) = app.create_tenant("starter").await;
    let r = app
        .post("/api/admin/cron/run", &tenant_key, json!({}))
        .await;
    assert!(r.status == 401 || r.status == 403, "{:?}", r.status);
    let r = app
        .client
        .post(app.url("/api/admin/cron/run"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn retrain_interval_is_a_site_setting() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let (_, key) = app.create_tenant("starter").await;
    let site = app.create_site(&key, &["example.jp"]).await;
    assert_eq!(site["retrain_interval_days"], 7, "{site}");
    let path = format!("/api/sites/{}", site["site_id"].as_str().unwrap());
    let r = app
        .patch(&path, &key, json!({ "retrain_interval_days": 1 }))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["retrain_interval_days"], 1);
    let r = app
        .patch(&path, &key, json!({ "retrain_interval_days": 0 }))
        .await;
    assert_eq!(r.body["retrain_interval_days"], 0);
    for bad in [json!(366), json!(-1), json!("7")] {
        let r = app
            .patch(&path, &key, json!({ "retrain_interval_days": bad }))
            .await;
        assert_eq!(r.status, 400, "{bad}: {:?}", r.body);
    }
    assert_eq!(app.get(&path, &key).await.body["retrain_interval_days"], 0);
}

/// Month boundary: on the account's cycle date the job expires what is left of last month's granted
/// credits and grants the plan's free credits, once; the ledger shows both and still sums to the
/// balance; a re-run does nothing; a missed month is caught up on the next run.
async fn monthly_credit_grants(backend: Backend) {
    use shared::credits::{self, TransactionType};
    let w = world(backend, datetime!(2026-03-20 09:00 UTC)).await;
    let (tenant, _) = w.tenant("ja").await;
    let (store, id) = (w.platform.store.as_ref(), &tenant.tenant_id);
    credits::account::open(store, id, Plan::Starter, w.clock.now())
        .await
        .unwrap();
    let free = credits::pricing::monthly_free_credits(Plan::Starter);
    assert!(free.0 > 0);
    let kinds = |entries: &[credits::LedgerEntry]| {
        entries
            .iter()
            .map(|e| (e.kind, e.credits.0))
            .collect::<Vec<_>>()
    };

    // Nothing falls due before the first of the next month.
    w.clock.set(day(time::macros::date!(2026 - 03 - 31)));
    let report = w.run_today().await;
    assert_eq!(report.actions["monthly_credit_grant"], 0, "{report:?}");

    w.clock.set(day(time::macros::date!(2026 - 04 - 01)));
    let report = w.run_today().await;
    assert_eq!(report.actions["monthly_credit_grant"], 1, "{report:?}");
    let entries = credits::ledger::all(store, id).await.unwrap();
    assert_eq!(
        kinds(&entries),
        [
            (TransactionType::MonthlyGrant, free.0),
            (TransactionType::Expiry, -free.0),
            (TransactionType::MonthlyGrant, free.0),
        ]
    );
    credits::ledger::check_books(store, id).await.unwrap();
    let balance = credits::account::balance(store, id).await.unwrap();
    assert_eq!((balance.granted, balance.balance), (free, free));

    // Three more runs that day: nothing more.
    for _ in 0..3 {
        let again = w.run_today().await;
        assert_eq!(again.actions["monthly_credit_grant"], 0, "{again:?}");
    }
    assert_eq!(credits::ledger::all(store, id).await.unwrap().len(), 3);

    // May's first run is missed; the run of 3 May catches it up: one grant, one expiry.
    w.clock.set(day(time::macros::date!(2026 - 05 - 03)));
    let report = w.run_today().await;
    assert_eq!(report.days.first().map(String::as_str), Some("2026-04-02"));
    assert_eq!(report.actions["monthly_credit_grant"], 1, "{report:?}");
    let entries = credits::ledger::all(store, id).await.unwrap();
    assert_eq!(
        kinds(&entries)[3..],
        [
            (TransactionType::Expiry, -free.0),
            (TransactionType::MonthlyGrant, free.0),
        ]
    );
    credits::ledger::check_books(store, id).await.unwrap();
    assert_eq!(
        credits::account::balance(store, id).await.unwrap().balance,
        free
    );
}

#[tokio::test]
async fn monthly_credit_grants_embedded() {
    monthly_credit_grants(Backend::Embedded).await;
}

#[tokio::test]
async fn monthly_credit_grants_aws() {
    monthly_credit_grants(Backend::Aws).await;
}

/// The low-balance digest: a settle that takes the balance below the threshold books it for the next
/// day; it mails once a day (in the tenant's language, with the days left at the recent burn) while
/// the balance stays low, and stops when it is back above.
async fn low_balance_digest(backend: Backend) {
    use shared::credits::{self, Credits, Meter, MeteredFunction};
    let w = world(backend, datetime!(2026-03-20 09:00 UTC)).await;
    let (tenant, email) = w.tenant("ko").await;
    let (store, id) = (w.platform.store.as_ref(), &tenant.tenant_id);
    credits::account::open(store, id, Plan::Starter, w.clock.now())
        .await
        .unwrap();
    let free = credits::pricing::monthly_free_credits(Plan::Starter).0;
    // No threshold of its own: a fifth of the plan's free credits.
    let threshold = free / 5;
    let meter = Meter::of(&w.platform);
    let spend = free - threshold + 50;
    let hold = meter
        .reserve(id, MeteredFunction::Chat, Credits(spend), None)
        .await
        .unwrap();
    meter.settle(hold, Credits(spend), None).await.unwrap();
    let balance = free - spend;
    assert!(balance < threshold);

    let digests = |report: &RunReport| report.actions.get("low_balance").copied().unwrap_or(0);
    assert_eq!(
        digests(&w.run_today().await),
        0,
        "not on the day it happened"
    );
    w.clock.set(day(time::macros::date!(2026 - 03 - 21)));
    assert_eq!(digests(&w.run_today().await), 1);
    assert_eq!(digests(&w.run_today().await), 0, "once a day");
    let sent = w.mails(id).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to, email);
    assert_eq!(
        sent[0].subject,
        "[Kotoba] AI 크레딧 잔액이 얼마 남지 않았습니다"
    );
    let days_left = balance * 14 / spend;
    assert!(
        sent[0].text.contains(&format!("약 {days_left}일")),
        "{}",
        sent[0].text
    );
    if w.backend == Backend::Embedded {
        // moto's record of a sent mail keeps no headers.
        assert!(
            sent[0].unsubscribe.is_some(),
            "a reminder can be unsubscribed from"
        );
    }

    // Still low the next day: another digest.
    w.clock.set(day(time::macros::date!(2026 - 03 - 22)));
    assert_eq!(digests(&w.run_today().await), 1);
    // Back above the threshold: the series ends.
    credits::account::adjust(
        store,
        id,
        Credits(free),
        "test: top up",
        None,
        w.clock.now(),
    )
    .await
    .unwrap();
    for d in [
        time::macros::date!(2026 - 03 - 23),
        time::macros::date!(2026 - 03 - 24),
    ] {
        w.clock.set(day(d));
        assert_eq!(digests(&w.run_today().await), 0);
    }
    assert_eq!(w.mails(id).await.len(), 2);
    credits::ledger::check_books(store, id).await.unwrap();
}

#[tokio::test]
async fn low_balance_digest_embedded() {
    low_balance_digest(Backend::Embedded).await;
}

#[tokio::test]
async fn low_balance_digest_aws() {
    low_balance_digest(Backend::Aws).await;
}
