//! The table's key layout, in one place: every key, index key and listing prefix a service uses is built
//! here, so two subjects can never pick overlapping shapes by accident (the test below proves the shapes
//! in [`LAYOUT`] disjoint, and that each builder produces the shape the table names).
//!
//! `{}` is a value without `#` (ids, hashes, timestamps); `{n}` is digits only.
//!
//! | item | pk | sk | index (pk / sk) |
//! | --- | --- | --- | --- |
//! | tenant | `TENANT#{}` | `PROFILE` | by_tenant `TENANTS` / `TENANT#{}` |
//! | tenant's site count | `TENANT#{}` | `SITE_COUNT` | |
//! | training slot | `TENANT#{}` | `TRAINING_SLOT#{n}` | |
//! | tenant usage, month | `TENANT#{}` | `USAGE#{n}-{n}` | |
//! | tenant usage, day | `TENANT#{}` | `USAGE#{n}-{n}-{n}` | |
//! | API key record | `TENANT#{}` | `KEY#{}` | |
//! | receptionist | `TENANT#{}` | `VOICE` | |
//! | receptionist version | `TENANT#{}` | `VOICEVER#{n}` | |
//! | billing watermark | `TENANT#{}` | `BILLING_STATE` | |
//! | billing due record | `TENANT#{}` | `DUE#{n}-{n}-{n}#BILLING` | by_due `DUE#{}` / `BILLING#{}` |
//! | credit grant due record | `TENANT#{}` | `DUE#{n}-{n}-{n}#GRANT` | by_due `DUE#{}` / `GRANT#{}` |
//! | low-balance due record | `TENANT#{}` | `DUE#{n}-{n}-{n}#LOWBAL` | by_due `DUE#{}` / `LOWBAL#{}` |
//! | tenant daily summary | `TENANT#{}` | `SUMMARY#{n}-{n}-{n}` | |
//! | API key lookup | `APIKEY#{}` | `APIKEY` | |
//! | console session | `CONSOLE#{}` | `SESSION` | |
//! | site | `SITE#{}` | `SITE` | by_tenant `TENANT#{}` / `SITE#{}` |
//! | prompt version | `SITE#{}` | `PROMPT#{n}` | |
//! | training lock | `SITE#{}` | `TRAINING` | |
//! | site usage, day | `SITE#{}` | `USAGE#{n}-{n}-{n}` | |
//! | site daily summary | `SITE#{}` | `SUMMARY#{n}-{n}-{n}` | |
//! | document | `SITE#{}` | `DOC#{}` | by_due `DUE#{}` / `DOC#{}#{}` |
//! | training job | `JOB#{}` | `JOB` | by_site `SITE#{}` / `JOB#{}`; by_due `DUE#{}` / `JOB#{}` |
//! | chat session | `SESSION#{}#{}` | `SESSION` | |
//! | rate window | `RATE#{}` | `W#{}` | |
//! | usage log | `MSG#{}` | `MSG` | by_tenant `TENANT#{}` / `LOG#{}#{}` |
//! | execution log (`POST /api/ai/execute`) | `EXEC#{}` | `EXEC` | by_tenant `TENANT#{}` / `EXEC#{}#{}` |
//! | call log | `CALL#{}` | `CALL` | by_tenant `TENANT#{}` / `CALL#{}#{}` |
//! | call stream claim | `CALL#{}` | `STREAM` | |
//! | phone number | `PHONE#{}` | `PHONE` | by_tenant `TENANT#{}` or `PHONE_POOL` / `PHONE#{}`; by_site `PHONES` / `PHONE#{}` |
//! | Stripe customer | `STRIPE_CUSTOMER#{}` | `TENANT` | |
//! | Stripe event | `STRIPE_EVENT#{}` | `EVENT` | |
//! | Stripe payment | `STRIPE_PAYMENT#{}` | `PAYMENT` | |
//! | credit account | `CREDITS#{}` | `ACCOUNT` | |
//! | credits available | `CREDITS#{}` | `AVAILABLE` | |
//! | credit ledger entry | `CREDITS#{}` | `TX#{n}` | |
//! | monthly grant marker | `CREDITS#{}` | `GRANT#{n}-{n}` | |
//! | credit usage, hour | `CREDITS#{}` | `HOUR#{n}` | |
//! | anomaly watch, hour | `CREDITS#{}` | `WATCH#{n}` | |
//! | AI suspension | `CREDITS#{}` | `SUSPENDED` | |
//! | credit purchase | `CREDITS#{}` | `PURCHASE#{}` | |
//! | purchase paid marker | `CREDITS#{}` | `PAID#{}` | |
//! | auto top-up lock | `CREDITS#{}` | `TOPUP_LOCK` | |
//! | auto top-ups, month | `CREDITS#{}` | `TOPUP#{n}-{n}` | |
//! | credit security event | `CREDITS#{}` | `EVENT#{n}#{}` | |
//! | credit package | `PACKAGE#{}` | `PACKAGE` | by_tenant `CREDIT_PACKAGES` / `PACKAGE#{}` |
//! | credit reservation | `HOLD#{}` | `HOLD` | by_due `CREDIT_HOLDS` / `HOLD#{n}#{}` |
//! | webhook endpoint | `TENANT#{}` | `WEBHOOK#{}` | |
//! | limit-reached notice | `TENANT#{}` | `LIMIT_NOTICE#{}#{}` | |
//! | webhook delivery | `WEBHOOK#{}` | `DELIVERY#{}` | |
//! | audit entry | `AUDIT#{}` | `AT#{}` | by_tenant `AUDIT_ALL` / `AT#{}` |
//! | error log entry | `ERRORS#{}` | `ERR#{}` | by_site `ERRORS#{}` / `ERR#{}` |
//! | demo seed marker | `SEED#DEMO` | `SEED` | |
//! | deadline action marker | `DEADLINE#{n}-{n}-{n}` | `{}#{}` | by_tenant `TENANT#{}` / `MAIL#{n}-{n}-{n}#{}` (mails) |
//! | deadline run of a day | `DEADLINE#{n}-{n}-{n}` | `RUN` | |
//! | deadline catch-up cursor | `DEADLINE_CURSOR` | `CURSOR` | |

use std::fmt::Display;

use super::{Index, Key};

/// Sort-key prefixes the listings query by.
pub mod prefix {
    pub const TENANT: &str = "TENANT#";
    pub const SITE: &str = "SITE#";
    pub const PROMPT: &str = "PROMPT#";
    pub const DOC: &str = "DOC#";
    pub const KEY: &str = "KEY#";
    pub const VOICE_VERSION: &str = "VOICEVER#";
    pub const CALL: &str = "CALL#";
    pub const EXECUTION: &str = "EXEC#";
    pub const PHONE: &str = "PHONE#";
    pub const USAGE: &str = "USAGE#";
    pub const LEDGER: &str = "TX#";
    pub const CREDIT_EVENT: &str = "EVENT#";
    pub const CREDIT_HOUR: &str = "HOUR#";
    pub const CREDIT_WATCH: &str = "WATCH#";
    pub const HOLD: &str = "HOLD#";
    pub const MAIL: &str = "MAIL#";
    pub const BILLING_DUE: &str = "BILLING#";
    pub const GRANT_DUE: &str = "GRANT#";
    pub const LOW_BALANCE_DUE: &str = "LOWBAL#";
    pub const JOB: &str = "JOB#";
    pub const WEBHOOK: &str = "WEBHOOK#";
    pub const DELIVERY: &str = "DELIVERY#";
    pub const AUDIT: &str = "AT#";
    pub const ERROR: &str = "ERR#";
}

/// The by-tenant partition listing every tenant's audit entries (operator views only).
pub const ALL_AUDIT: &str = "AUDIT_ALL";

/// The by-tenant partition listing every tenant (operator views only).
pub const ALL_TENANTS: &str = "TENANTS";
/// The by-tenant partition of phone numbers nobody holds yet.
pub const PHONE_POOL: &str = "PHONE_POOL";
/// The by-site partition listing every provisioned number, for the operator.
pub const PHONE_CATALOGUE: &str = "PHONES";

/// A tenant's partition (its profile, counters, keys, receptionist; in the by-tenant index, what it owns).
pub fn tenant_partition(tenant: impl Display) -> String {
    format!("{}{tenant}", prefix::TENANT)
}

/// A site's partition (the site, its prompt versions, documents, counters; in the by-site index, its jobs).
pub fn site_partition(site: impl Display) -> String {
    format!("{}{site}", prefix::SITE)
}

// Tenants.

pub fn tenant(tenant: impl Display) -> Key {
    Key::new(tenant_partition(tenant), "PROFILE")
}

/// The tenant's place in the all-tenants listing.
pub fn tenant_listing(tenant: impl Display) -> (&'static str, String) {
    (ALL_TENANTS, tenant_partition(tenant))
}

/// The tenant's count of sites created, the counter the plan's site limit is enforced on.
pub fn site_count(tenant: impl Display) -> Key {
    Key::new(tenant_partition(tenant), "SITE_COUNT")
}

/// One of the tenant's concurrent training slots.
pub fn training_slot(tenant: impl Display, slot: u32) -> Key {
    Key::new(tenant_partition(tenant), format!("TRAINING_SLOT#{slot}"))
}

/// The tenant's usage counters for a month (`YYYY-MM`).
pub fn tenant_month(tenant: impl Display, month: &str) -> Key {
    Key::new(
        tenant_partition(tenant),
        format!("{}{month}", prefix::USAGE),
    )
}

/// The tenant's usage counters for a day (`YYYY-MM-DD`).
pub fn tenant_day(tenant: impl Display, day: &str) -> Key {
    Key::new(tenant_partition(tenant), format!("{}{day}", prefix::USAGE))
}

/// The sort-key prefix of a tenant's daily counters within a month.
pub fn days_of_month(month: &str) -> String {
    format!("{}{month}-", prefix::USAGE)
}

/// The tenant's record of one API key.
pub fn api_key_record(tenant: impl Display, key_id: impl Display) -> Key {
    Key::new(tenant_partition(tenant), format!("{}{key_id}", prefix::KEY))
}

/// Where a presented API key's hash leads.
pub fn api_key_lookup(hash: impl Display) -> Key {
    Key::new(format!("APIKEY#{hash}"), "APIKEY")
}

/// Where a presented console session token's hash leads.
pub fn console_session(hash: impl Display) -> Key {
    Key::new(format!("CONSOLE#{hash}"), "SESSION")
}

/// The tenant's current receptionist settings.
pub fn receptionist(tenant: impl Display) -> Key {
    Key::new(tenant_partition(tenant), "VOICE")
}

/// One saved version of the receptionist settings (zero-padded: versions sort by number).
pub fn receptionist_version(tenant: impl Display, version: u32) -> Key {
    Key::new(
        tenant_partition(tenant),
        format!("{}{version:010}", prefix::VOICE_VERSION),
    )
}

/// The tenant's billing watermark (the last Stripe change applied).
pub fn billing_state(tenant: impl Display) -> Key {
    Key::new(tenant_partition(tenant), "BILLING_STATE")
}

// Sites.

pub fn site(site: impl Display) -> Key {
    Key::new(site_partition(site), "SITE")
}

/// The site's place in its tenant's listing.
pub fn site_listing(tenant: impl Display, site: impl Display) -> (String, String) {
    (tenant_partition(tenant), site_partition(site))
}

/// One saved prompt version (zero-padded: versions sort by number).
pub fn prompt_version(site: impl Display, version: u32) -> Key {
    Key::new(
        site_partition(site),
        format!("{}{version:010}", prefix::PROMPT),
    )
}

/// The site's training lock (one job at a time).
pub fn training_lock(site: impl Display) -> Key {
    Key::new(site_partition(site), "TRAINING")
}

/// A site's usage counters for a day (`YYYY-MM-DD`).
pub fn site_day(site: impl Display, day: &str) -> Key {
    Key::new(site_partition(site), format!("{}{day}", prefix::USAGE))
}

/// A document of a site, by its document id (a hash of the canonical URL).
pub fn document(site: impl Display, doc_id: impl Display) -> Key {
    Key::new(site_partition(site), format!("{}{doc_id}", prefix::DOC))
}

/// A document's place in the by-due index: the day it falls due.
pub fn document_due(
    day: impl Display,
    site: impl Display,
    doc_id: impl Display,
) -> (String, String) {
    (
        format!("DUE#{day}"),
        format!("{}{site}#{doc_id}", prefix::DOC),
    )
}

// Training jobs.

pub fn job(job: impl Display) -> Key {
    Key::new(format!("JOB#{job}"), "JOB")
}

/// A job's place in its site's listing.
pub fn job_listing(site: impl Display, job: impl Display) -> (String, String) {
    (site_partition(site), format!("JOB#{job}"))
}

// Chat.

/// Sessions are keyed by site and id, so a session id presented to another site reaches nothing.
pub fn session(site: impl Display, session: impl Display) -> Key {
    Key::new(format!("SESSION#{site}#{session}"), "SESSION")
}

/// One rate-limit window of a scope (`ip:<hash>`, …) starting at `window` (unix seconds).
pub fn rate_window(scope: impl Display, window: i64) -> Key {
    Key::new(format!("RATE#{scope}"), format!("W#{window}"))
}

/// A usage log entry, by message id.
pub fn usage_log(message: impl Display) -> Key {
    Key::new(format!("MSG#{message}"), "MSG")
}

/// A usage log entry's place in its tenant's listing: the time in front keeps it chronological.
pub fn usage_log_listing(
    tenant: impl Display,
    created_at: impl Display,
    message: impl Display,
) -> (String, String) {
    (
        tenant_partition(tenant),
        format!("LOG#{created_at}#{message}"),
    )
}

/// An execution log entry (`POST /api/ai/execute`), by execution id.
pub fn execution_log(execution: impl Display) -> Key {
    Key::new(format!("{}{execution}", prefix::EXECUTION), "EXEC")
}

/// An execution log entry's place in its tenant's listing, by time.
pub fn execution_log_listing(
    tenant: impl Display,
    created_at: impl Display,
    execution: impl Display,
) -> (String, String) {
    (
        tenant_partition(tenant),
        format!("{}{created_at}#{execution}", prefix::EXECUTION),
    )
}

// Voice.

pub fn call(call: impl Display) -> Key {
    Key::new(format!("{}{call}", prefix::CALL), "CALL")
}

/// The single-use claim on a call's media stream.
pub fn call_stream(call: impl Display) -> Key {
    Key::new(format!("{}{call}", prefix::CALL), "STREAM")
}

/// A call log's place in its tenant's listing (by start time).
pub fn call_listing(
    tenant: impl Display,
    started_at: impl Display,
    call: impl Display,
) -> (String, String) {
    (
        tenant_partition(tenant),
        format!("{}{started_at}#{call}", prefix::CALL),
    )
}

pub fn phone_number(number: impl Display) -> Key {
    Key::new(format!("{}{number}", prefix::PHONE), "PHONE")
}

/// A number's sort key in the by-tenant (holder or pool) and by-site (catalogue) listings.
pub fn phone_listing_sort(number: impl Display) -> String {
    format!("{}{number}", prefix::PHONE)
}

// Billing.

/// Where a Stripe customer id leads.
pub fn stripe_customer(customer: impl Display) -> Key {
    Key::new(format!("STRIPE_CUSTOMER#{customer}"), "TENANT")
}

/// A Stripe event seen (deliveries are deduplicated on it).
pub fn stripe_event(id: impl Display) -> Key {
    Key::new(format!("STRIPE_EVENT#{id}"), "EVENT")
}

/// A Stripe payment intent seen.
pub fn stripe_payment(payment_intent: impl Display) -> Key {
    Key::new(format!("STRIPE_PAYMENT#{payment_intent}"), "PAYMENT")
}

// Credits.

/// A tenant's credit partition: its account, ledger, grants, hourly usage and security events.
pub fn credit_partition(tenant: impl Display) -> String {
    format!("CREDITS#{tenant}")
}

/// The tenant's credit account: granted and paid credits, the ledger's sequence number.
pub fn credit_account(tenant: impl Display) -> Key {
    Key::new(credit_partition(tenant), "ACCOUNT")
}

/// The credits not held by a reservation: the counter every reservation debits with a floor of 0.
pub fn credits_available(tenant: impl Display) -> Key {
    Key::new(credit_partition(tenant), "AVAILABLE")
}

/// One ledger entry, by its sequence number (zero-padded so the sort key orders them).
pub fn credit_ledger_entry(tenant: impl Display, seq: u64) -> Key {
    Key::new(
        credit_partition(tenant),
        format!("{}{seq:012}", prefix::LEDGER),
    )
}

/// The marker that a month's free credits were granted (`YYYY-MM`): at most once per month.
pub fn monthly_grant(tenant: impl Display, month: &str) -> Key {
    Key::new(credit_partition(tenant), format!("GRANT#{month}"))
}

/// The tenant's AI actions and credits in one hour (unix hour number), per function.
pub fn credit_hour(tenant: impl Display, hour: i64) -> Key {
    Key::new(
        credit_partition(tenant),
        format!("{}{hour}", prefix::CREDIT_HOUR),
    )
}

/// The anomaly detector's count of settled actions in one hour and its flag (apart from
/// [`credit_hour`], which every reservation's transaction writes, so the two never contend).
pub fn credit_watch(tenant: impl Display, hour: i64) -> Key {
    Key::new(
        credit_partition(tenant),
        format!("{}{hour}", prefix::CREDIT_WATCH),
    )
}

/// One attempt to buy credits (a package, a payment intent, its outcome).
pub fn credit_purchase(tenant: impl Display, purchase: impl Display) -> Key {
    Key::new(credit_partition(tenant), format!("PURCHASE#{purchase}"))
}

/// The marker that a payment intent's credits were granted: written in the grant's transaction, so
/// a payment is credited once however often Stripe delivers its success.
pub fn purchase_paid(tenant: impl Display, payment_intent: &str) -> Key {
    Key::new(credit_partition(tenant), format!("PAID#{payment_intent}"))
}

/// Present while an automatic top-up is in flight (or cooling down after a failure): at most one.
pub fn auto_top_up_lock(tenant: impl Display) -> Key {
    Key::new(credit_partition(tenant), "TOPUP_LOCK")
}

/// How many automatic top-ups started in a month (`YYYY-MM`), bounded by the monthly cap.
pub fn auto_top_ups(tenant: impl Display, month: &str) -> Key {
    Key::new(credit_partition(tenant), format!("TOPUP#{month}"))
}

/// Present (and unexpired) while the tenant's AI actions are suspended.
pub fn ai_suspension(tenant: impl Display) -> Key {
    Key::new(credit_partition(tenant), "SUSPENDED")
}

/// A security event of the credit system (anomaly, suspension), by time and id.
pub fn credit_event(tenant: impl Display, unix_millis: i64, event: impl Display) -> Key {
    Key::new(
        credit_partition(tenant),
        format!("{}{unix_millis:015}#{event}", prefix::CREDIT_EVENT),
    )
}

/// A reservation of credits held for one AI action until it settles.
pub fn credit_hold(hold: impl Display) -> Key {
    Key::new(format!("{}{hold}", prefix::HOLD), "HOLD")
}

/// A credit package.
pub fn credit_package(package: impl Display) -> Key {
    Key::new(format!("PACKAGE#{package}"), "PACKAGE")
}

/// The by-tenant partition listing every credit package (the catalogue is not any tenant's).
pub const CREDIT_PACKAGES: &str = "CREDIT_PACKAGES";

/// A package's place in the catalogue.
pub fn credit_package_listing(package: impl Display) -> (&'static str, String) {
    (CREDIT_PACKAGES, format!("PACKAGE#{package}"))
}

/// The by-due partition of reservations, by when they lapse: what the sweeper reads.
pub const CREDIT_HOLDS: &str = "CREDIT_HOLDS";

/// A reservation's place in the sweeper's listing: lapsing at `due_unix`.
pub fn credit_hold_due(due_unix: i64, hold: impl Display) -> (&'static str, String) {
    (
        CREDIT_HOLDS,
        format!("{}{due_unix:012}#{hold}", prefix::HOLD),
    )
}

// Deadlines (shared/src/deadlines): due records found by day in the by-due index, and the job's markers.

/// The by-due partition of a day (`YYYY-MM-DD`): everything that falls due on it.
pub fn due_partition(day: &str) -> String {
    format!("DUE#{day}")
}

/// A tenant's billing due record for a day: the deadline job re-reads the tenant's subscription then.
pub fn billing_due(tenant: impl Display, day: &str) -> Key {
    Key::new(tenant_partition(tenant), format!("DUE#{day}#BILLING"))
}

/// The billing due record's place in the by-due index.
pub fn billing_due_listing(tenant: impl Display, day: &str) -> (String, String) {
    (
        due_partition(day),
        format!("{}{tenant}", prefix::BILLING_DUE),
    )
}

/// A credit account's monthly-grant due record (its cycle date).
pub fn grant_due(tenant: impl Display, day: &str) -> Key {
    Key::new(tenant_partition(tenant), format!("DUE#{day}#GRANT"))
}

/// The grant due record's place in the by-due index.
pub fn grant_due_listing(tenant: impl Display, day: &str) -> (String, String) {
    (due_partition(day), format!("{}{tenant}", prefix::GRANT_DUE))
}

/// A tenant's low-balance digest due record (the day after its balance fell below the threshold,
/// then daily while it stays there).
pub fn low_balance_due(tenant: impl Display, day: &str) -> Key {
    Key::new(tenant_partition(tenant), format!("DUE#{day}#LOWBAL"))
}

/// The low-balance due record's place in the by-due index.
pub fn low_balance_due_listing(tenant: impl Display, day: &str) -> (String, String) {
    (
        due_partition(day),
        format!("{}{tenant}", prefix::LOW_BALANCE_DUE),
    )
}

/// A training job's place in the by-due index: the first day after its deadline.
pub fn job_due_listing(day: &str, job: impl Display) -> (String, String) {
    (due_partition(day), format!("{}{job}", prefix::JOB))
}

/// What the deadline job did about one item on one day (claimed, sent, done).
pub fn deadline_marker(day: &str, action: &str, subject: impl Display) -> Key {
    Key::new(format!("DEADLINE#{day}"), format!("{action}#{subject}"))
}

/// A mail marker's place in its tenant's listing (the record of mails sent).
pub fn deadline_mail_listing(tenant: impl Display, day: &str, action: &str) -> (String, String) {
    (
        tenant_partition(tenant),
        format!("{}{day}#{action}", prefix::MAIL),
    )
}

/// The deadline job's record of a day it has run for.
pub fn deadline_run(day: &str) -> Key {
    Key::new(format!("DEADLINE#{day}"), "RUN")
}

/// The first day the deadline job has not finished cleanly (where a catch-up starts).
pub fn deadline_cursor() -> Key {
    Key::new("DEADLINE_CURSOR", "CURSOR")
}

/// A tenant's usage summary of one day (`YYYY-MM-DD`).
pub fn tenant_summary(tenant: impl Display, day: &str) -> Key {
    Key::new(tenant_partition(tenant), format!("SUMMARY#{day}"))
}

/// A site's usage summary of one day.
pub fn site_summary(site: impl Display, day: &str) -> Key {
    Key::new(site_partition(site), format!("SUMMARY#{day}"))
}

// Webhooks.

/// A tenant's webhook endpoint.
pub fn webhook(tenant: impl Display, webhook: impl Display) -> Key {
    Key::new(
        tenant_partition(tenant),
        format!("{}{webhook}", prefix::WEBHOOK),
    )
}

/// The marker that a `limit.reached` event went out for a limit on a day (`YYYY-MM-DD`): once a day.
pub fn limit_notice(tenant: impl Display, limit: &str, day: &str) -> Key {
    Key::new(
        tenant_partition(tenant),
        format!("LIMIT_NOTICE#{limit}#{day}"),
    )
}

/// An endpoint's partition of deliveries.
pub fn webhook_partition(webhook: impl Display) -> String {
    format!("{}{webhook}", prefix::WEBHOOK)
}

/// One delivery of an event to an endpoint (ids are time-ordered: the log lists newest first).
pub fn delivery(webhook: impl Display, delivery: impl Display) -> Key {
    Key::new(
        webhook_partition(webhook),
        format!("{}{delivery}", prefix::DELIVERY),
    )
}

// Audit and error logs.

/// A tenant's audit log partition.
pub fn audit_partition(tenant: impl Display) -> String {
    format!("AUDIT#{tenant}")
}

/// One audit entry (ids are time-ordered).
pub fn audit_entry(tenant: impl Display, entry: impl Display) -> Key {
    Key::new(audit_partition(tenant), format!("{}{entry}", prefix::AUDIT))
}

/// An audit entry's place in the operator's all-tenants listing.
pub fn audit_listing(entry: impl Display) -> (&'static str, String) {
    (ALL_AUDIT, format!("{}{entry}", prefix::AUDIT))
}

/// A tenant's error log partition.
pub fn errors_partition(tenant: impl Display) -> String {
    format!("ERRORS#{tenant}")
}

/// One recorded error (ids are time-ordered).
pub fn error_entry(tenant: impl Display, entry: impl Display) -> Key {
    Key::new(
        errors_partition(tenant),
        format!("{}{entry}", prefix::ERROR),
    )
}

/// An error's place in its site's listing (by-site index).
pub fn error_site_listing(site: impl Display, entry: impl Display) -> (String, String) {
    (
        format!("ERRORS#{site}"),
        format!("{}{entry}", prefix::ERROR),
    )
}

// Local mode.

/// The marker the local runner leaves once it has seeded its demo tenant.
pub fn demo_seed() -> Key {
    Key::new("SEED#DEMO", "SEED")
}

/// Where a key shape lives: the table itself or one of its indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    Table,
    Index(Index),
}

/// One key shape of [`LAYOUT`]: `{}` a value without `#`, `{n}` digits.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub item: &'static str,
    pub space: Space,
    pub pk: &'static str,
    pub sk: &'static str,
}

const fn table(item: &'static str, pk: &'static str, sk: &'static str) -> Shape {
    Shape {
        item,
        space: Space::Table,
        pk,
        sk,
    }
}

const fn index(item: &'static str, index: Index, pk: &'static str, sk: &'static str) -> Shape {
    Shape {
        item,
        space: Space::Index(index),
        pk,
        sk,
    }
}

/// Every key shape the table holds (the module documentation's table, checked by the tests).
pub const LAYOUT: &[Shape] = &[
    table("tenant", "TENANT#{}", "PROFILE"),
    table("site count", "TENANT#{}", "SITE_COUNT"),
    table("training slot", "TENANT#{}", "TRAINING_SLOT#{n}"),
    table("tenant usage month", "TENANT#{}", "USAGE#{n}-{n}"),
    table("tenant usage day", "TENANT#{}", "USAGE#{n}-{n}-{n}"),
    table("api key record", "TENANT#{}", "KEY#{}"),
    table("receptionist", "TENANT#{}", "VOICE"),
    table("receptionist version", "TENANT#{}", "VOICEVER#{n}"),
    table("billing state", "TENANT#{}", "BILLING_STATE"),
    table("api key lookup", "APIKEY#{}", "APIKEY"),
    table("console session", "CONSOLE#{}", "SESSION"),
    table("site", "SITE#{}", "SITE"),
    table("prompt version", "SITE#{}", "PROMPT#{n}"),
    table("training lock", "SITE#{}", "TRAINING"),
    table("site usage day", "SITE#{}", "USAGE#{n}-{n}-{n}"),
    table("document", "SITE#{}", "DOC#{}"),
    table("job", "JOB#{}", "JOB"),
    table("session", "SESSION#{}#{}", "SESSION"),
    table("rate window", "RATE#{}", "W#{}"),
    table("usage log", "MSG#{}", "MSG"),
    table("execution log", "EXEC#{}", "EXEC"),
    table("call", "CALL#{}", "CALL"),
    table("call stream", "CALL#{}", "STREAM"),
    table("phone number", "PHONE#{}", "PHONE"),
    table("stripe customer", "STRIPE_CUSTOMER#{}", "TENANT"),
    table("stripe event", "STRIPE_EVENT#{}", "EVENT"),
    table("stripe payment", "STRIPE_PAYMENT#{}", "PAYMENT"),
    table("credit account", "CREDITS#{}", "ACCOUNT"),
    table("credits available", "CREDITS#{}", "AVAILABLE"),
    table("credit ledger entry", "CREDITS#{}", "TX#{n}"),
    table("monthly grant", "CREDITS#{}", "GRANT#{n}-{n}"),
    table("credit hour", "CREDITS#{}", "HOUR#{n}"),
    table("anomaly watch", "CREDITS#{}", "WATCH#{n}"),
    table("ai suspension", "CREDITS#{}", "SUSPENDED"),
    table("credit event", "CREDITS#{}", "EVENT#{n}#{}"),
    table("credit purchase", "CREDITS#{}", "PURCHASE#{}"),
    table("purchase paid", "CREDITS#{}", "PAID#{}"),
    table("auto top-up lock", "CREDITS#{}", "TOPUP_LOCK"),
    table("auto top-ups month", "CREDITS#{}", "TOPUP#{n}-{n}"),
    table("credit hold", "HOLD#{}", "HOLD"),
    table("credit package", "PACKAGE#{}", "PACKAGE"),
    table("webhook endpoint", "TENANT#{}", "WEBHOOK#{}"),
    table("limit notice", "TENANT#{}", "LIMIT_NOTICE#{}#{}"),
    table("webhook delivery", "WEBHOOK#{}", "DELIVERY#{}"),
    table("audit entry", "AUDIT#{}", "AT#{}"),
    table("error log entry", "ERRORS#{}", "ERR#{}"),
    table("demo seed", "SEED#DEMO", "SEED"),
    table("billing due", "TENANT#{}", "DUE#{n}-{n}-{n}#BILLING"),
    table("grant due", "TENANT#{}", "DUE#{n}-{n}-{n}#GRANT"),
    table("low balance due", "TENANT#{}", "DUE#{n}-{n}-{n}#LOWBAL"),
    table("tenant summary", "TENANT#{}", "SUMMARY#{n}-{n}-{n}"),
    table("site summary", "SITE#{}", "SUMMARY#{n}-{n}-{n}"),
    table("deadline marker", "DEADLINE#{n}-{n}-{n}", "{}#{}"),
    table("deadline run", "DEADLINE#{n}-{n}-{n}", "RUN"),
    table("deadline cursor", "DEADLINE_CURSOR", "CURSOR"),
    index("tenant listing", Index::ByTenant, "TENANTS", "TENANT#{}"),
    index("site listing", Index::ByTenant, "TENANT#{}", "SITE#{}"),
    index(
        "usage log listing",
        Index::ByTenant,
        "TENANT#{}",
        "LOG#{}#{}",
    ),
    index("call listing", Index::ByTenant, "TENANT#{}", "CALL#{}#{}"),
    index(
        "execution log listing",
        Index::ByTenant,
        "TENANT#{}",
        "EXEC#{}#{}",
    ),
    index("phone listing", Index::ByTenant, "TENANT#{}", "PHONE#{}"),
    index("phone pool", Index::ByTenant, "PHONE_POOL", "PHONE#{}"),
    index("phone catalogue", Index::BySite, "PHONES", "PHONE#{}"),
    index("job listing", Index::BySite, "SITE#{}", "JOB#{}"),
    index("document due", Index::ByDue, "DUE#{}", "DOC#{}#{}"),
    index(
        "credit hold due",
        Index::ByDue,
        "CREDIT_HOLDS",
        "HOLD#{n}#{}",
    ),
    index(
        "credit package listing",
        Index::ByTenant,
        "CREDIT_PACKAGES",
        "PACKAGE#{}",
    ),
    index("billing due listing", Index::ByDue, "DUE#{}", "BILLING#{}"),
    index("grant due listing", Index::ByDue, "DUE#{}", "GRANT#{}"),
    index(
        "low balance due listing",
        Index::ByDue,
        "DUE#{}",
        "LOWBAL#{}",
    ),
    index("job due listing", Index::ByDue, "DUE#{}", "JOB#{}"),
    index(
        "deadline mail listing",
        Index::ByTenant,
        "TENANT#{}",
        "MAIL#{n}-{n}-{n}#{}",
    ),
    index("audit listing", Index::ByTenant, "AUDIT_ALL", "AT#{}"),
    index("error site listing", Index::BySite, "ERRORS#{}", "ERR#{}"),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// One position of a key template.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Token {
        Char(char),
        /// One character of a value (not `#`); `many` when more may follow.
        Value {
            digits: bool,
            many: bool,
        },
    }

    fn tokens(template: &str) -> Vec<Token> {
        let mut out = Vec::new();
        let mut rest = template;
        while !rest.is_empty() {
            for (marker, digits) in [("{}", false), ("{n}", true)] {
                if let Some(after) = rest.strip_prefix(marker) {
                    // A value is one character or more: one, then any number.
                    out.push(Token::Value {
                        digits,
                        many: false,
                    });
                    out.push(Token::Value { digits, many: true });
                    rest = after;
                }
            }
            if let Some(c) = rest.chars().next().filter(|c| *c != '{') {
                out.push(Token::Char(c));
                rest = &rest[c.len_utf8()..];
            }
        }
        out
    }

    fn accepts(token: Token, c: char) -> bool {
        match token {
            Token::Char(t) => t == c,
            Token::Value { digits, .. } => c != '#' && (!digits || c.is_ascii_digit()),
        }
    }

    /// Whether some string matches both templates: a walk over the pairs of positions (the product of
    /// the two patterns), trying every character either template names and one of each value class.
    fn overlap(a: &str, b: &str) -> bool {
        let (a, b) = (tokens(a), tokens(b));
        let mut alphabet: Vec<char> = a
            .iter()
            .chain(&b)
            .filter_map(|t| match t {
                Token::Char(c) => Some(*c),
                Token::Value { .. } => None,
            })
            .collect();
        alphabet.extend(['0', 'x']);
        let skip = |t: &[Token], i: usize| {
            let mut i = i;
            while matches!(t.get(i), Some(Token::Value { many: true, .. })) {
                i += 1;
            }
            i
        };
        let mut seen = std::collections::HashSet::new();
        let mut todo = vec![(0, 0)];
        while let Some((i, j)) = todo.pop() {
            // Optional repeats can be left behind without reading anything.
            for (i, j) in [
                (i, j),
                (skip(&a, i), j),
                (i, skip(&b, j)),
                (skip(&a, i), skip(&b, j)),
            ] {
                if !seen.insert((i, j)) {
                    continue;
                }
                if i == a.len() && j == b.len() {
                    return true;
                }
                let (Some(&ta), Some(&tb)) = (a.get(i), b.get(j)) else {
                    continue;
                };
                for &c in &alphabet {
                    if accepts(ta, c) && accepts(tb, c) {
                        let next = |t: Token, k: usize| match t {
                            Token::Value { many: true, .. } => k,
                            _ => k + 1,
                        };
                        todo.push((next(ta, i), next(tb, j)));
                    }
                }
            }
        }
        false
    }

    fn matches(template: &str, value: &str) -> bool {
        overlap(template, &value.replace('{', "("))
    }

    #[test]
    fn the_overlap_check_sees_shared_and_distinct_shapes() {
        assert!(overlap("TENANT#{}", "TENANT#{}"));
        assert!(overlap("USAGE#{}", "USAGE#{n}-{n}"));
        assert!(overlap("{}", "SITE"));
        assert!(!overlap("TENANT#{}", "TENANTS"));
        assert!(!overlap("VOICE", "VOICEVER#{n}"));
        assert!(!overlap("USAGE#{n}-{n}", "USAGE#{n}-{n}-{n}"));
        assert!(!overlap("SITE#{}", "SESSION#{}#{}"));
        assert!(!overlap("DOC#{}", "DOC#{}#{}"));
        assert!(matches("CALL#{}#{}", "CALL#2026-03-09T10:00:00Z#CA1"));
        assert!(!matches("CALL#{}", "CALL#2026#CA1"));
    }

    #[test]
    fn no_two_key_shapes_collide() {
        for (n, a) in LAYOUT.iter().enumerate() {
            for b in &LAYOUT[n + 1..] {
                let same_space = a.space == b.space;
                assert!(
                    !(same_space && overlap(a.pk, b.pk) && overlap(a.sk, b.sk)),
                    "{} ({}/{}) and {} ({}/{}) can name the same item",
                    a.item,
                    a.pk,
                    a.sk,
                    b.item,
                    b.pk,
                    b.sk
                );
            }
        }
    }

    /// The shapes in [`LAYOUT`] a key matches, by item name.
    fn shapes_of(space: Space, pk: &str, sk: &str) -> Vec<&'static str> {
        LAYOUT
            .iter()
            .filter(|s| s.space == space && matches(s.pk, pk) && matches(s.sk, sk))
            .map(|s| s.item)
            .collect()
    }

    #[test]
    fn every_builder_makes_the_shape_the_layout_names() {
        let (t, s) = ("ten_1", "site_1");
        let keys = [
            ("tenant", tenant(t)),
            ("site count", site_count(t)),
            ("training slot", training_slot(t, 3)),
            ("tenant usage month", tenant_month(t, "2026-03")),
            ("tenant usage day", tenant_day(t, "2026-03-09")),
            ("api key record", api_key_record(t, "key_1")),
            ("receptionist", receptionist(t)),
            ("receptionist version", receptionist_version(t, 12)),
            ("billing state", billing_state(t)),
            ("api key lookup", api_key_lookup("ab12")),
            ("console session", console_session("cd34")),
            ("site", site(s)),
            ("prompt version", prompt_version(s, 2)),
            ("training lock", training_lock(s)),
            ("site usage day", site_day(s, "2026-03-09")),
            ("document", document(s, "0f0f")),
            ("job", job("job_1")),
            ("session", session(s, "ses_1")),
            ("rate window", rate_window("ip:ab", 1_700_000_000)),
            ("usage log", usage_log("msg_1")),
            ("execution log", execution_log("exec_1")),
            ("call", call("CA1")),
            ("call stream", call_stream("CA1")),
            ("phone number", phone_number("+81312345678")),
            ("stripe customer", stripe_customer("cus_1")),
            ("stripe event", stripe_event("evt_1")),
            ("stripe payment", stripe_payment("pi_1")),
            ("credit account", credit_account(t)),
            ("credits available", credits_available(t)),
            ("credit ledger entry", credit_ledger_entry(t, 7)),
            ("monthly grant", monthly_grant(t, "2026-03")),
            ("credit hour", credit_hour(t, 472_222)),
            ("anomaly watch", credit_watch(t, 472_222)),
            ("ai suspension", ai_suspension(t)),
            ("credit event", credit_event(t, 1_700_000_000_000, "evt1")),
            ("credit purchase", credit_purchase(t, "pur_1")),
            ("purchase paid", purchase_paid(t, "pi_1")),
            ("auto top-up lock", auto_top_up_lock(t)),
            ("auto top-ups month", auto_top_ups(t, "2026-03")),
            ("credit hold", credit_hold("hold_1")),
            ("credit package", credit_package("pkg_1")),
            ("demo seed", demo_seed()),
            ("billing due", billing_due(t, "2026-03-09")),
            ("grant due", grant_due(t, "2026-03-09")),
            ("low balance due", low_balance_due(t, "2026-03-09")),
            ("tenant summary", tenant_summary(t, "2026-03-09")),
            ("site summary", site_summary(s, "2026-03-09")),
            (
                "deadline marker",
                deadline_marker("2026-03-09", "trial_ending_3", t),
            ),
            ("deadline run", deadline_run("2026-03-09")),
            ("deadline cursor", deadline_cursor()),
            ("webhook endpoint", webhook(t, "wh_1")),
            (
                "limit notice",
                limit_notice(t, "monthly_chats", "2026-03-09"),
            ),
            ("webhook delivery", delivery("wh_1", "msg_1")),
            ("audit entry", audit_entry(t, "aud_1")),
            ("error log entry", error_entry(t, "err_1")),
        ];
        for (item, key) in keys {
            assert_eq!(shapes_of(Space::Table, &key.pk, &key.sk), [item], "{key:?}");
        }
        let (all, listed) = tenant_listing(t);
        let phone = phone_listing_sort("+81312345678");
        let indexed = [
            ("tenant listing", Index::ByTenant, (all.to_owned(), listed)),
            ("site listing", Index::ByTenant, site_listing(t, s)),
            (
                "usage log listing",
                Index::ByTenant,
                usage_log_listing(t, "2026-03-09T10:00:00Z", "msg_1"),
            ),
            (
                "call listing",
                Index::ByTenant,
                call_listing(t, "2026-03-09T10:00:00Z", "CA1"),
            ),
            (
                "execution log listing",
                Index::ByTenant,
                execution_log_listing(t, "2026-03-09T10:00:00Z", "exec_1"),
            ),
            (
                "phone listing",
                Index::ByTenant,
                (tenant_partition(t), phone.clone()),
            ),
            (
                "phone pool",
                Index::ByTenant,
                (PHONE_POOL.to_owned(), phone.clone()),
            ),
            (
                "phone catalogue",
                Index::BySite,
                (PHONE_CATALOGUE.to_owned(), phone),
            ),
            ("job listing", Index::BySite, job_listing(s, "job_1")),
            (
                "document due",
                Index::ByDue,
                document_due("2026-03-09", s, "0f0f"),
            ),
            ("credit package listing", Index::ByTenant, {
                let (pk, sk) = credit_package_listing("pkg_1");
                (pk.to_owned(), sk)
            }),
            ("credit hold due", Index::ByDue, {
                let (pk, sk) = credit_hold_due(1_700_000_000, "hold_1");
                (pk.to_owned(), sk)
            }),
            (
                "billing due listing",
                Index::ByDue,
                billing_due_listing(t, "2026-03-09"),
            ),
            (
                "grant due listing",
                Index::ByDue,
                grant_due_listing(t, "2026-03-09"),
            ),
            (
                "low balance due listing",
                Index::ByDue,
                low_balance_due_listing(t, "2026-03-09"),
            ),
            (
                "job due listing",
                Index::ByDue,
                job_due_listing("2026-03-09", "job_1"),
            ),
            (
                "deadline mail listing",
                Index::ByTenant,
                deadline_mail_listing(t, "2026-03-09", "trial_ending_3"),
            ),
            ("audit listing", Index::ByTenant, {
                let (pk, sk) = audit_listing("aud_1");
                (pk.to_owned(), sk)
            }),
            (
                "error site listing",
                Index::BySite,
                error_site_listing(s, "err_1"),
            ),
        ];
        for (item, index, (pk, sk)) in indexed {
            assert_eq!(
                shapes_of(Space::Index(index), &pk, &sk),
                [item],
                "{pk}/{sk}"
            );
        }
    }

    #[test]
    fn listing_prefixes_select_only_their_items() {
        // A prefix query over a partition must not pick up a neighbouring shape.
        assert!(!"VOICE".starts_with(prefix::VOICE_VERSION));
        assert!(!"SITE_COUNT".starts_with(prefix::SITE));
        // A tenant's webhooks share its partition with keys, usage and voice.
        for other in [
            "KEY#key_1",
            "VOICE",
            "VOICEVER#0000000001",
            "USAGE#2026-03",
            "PROFILE",
        ] {
            assert!(!other.starts_with(prefix::WEBHOOK), "{other}");
        }
        assert!(days_of_month("2026-03").starts_with(prefix::USAGE));
        assert!(
            !tenant_month("t", "2026-03")
                .sk
                .starts_with(&days_of_month("2026-03"))
        );
        assert!(
            tenant_day("t", "2026-03-09")
                .sk
                .starts_with(&days_of_month("2026-03"))
        );
    }
}
