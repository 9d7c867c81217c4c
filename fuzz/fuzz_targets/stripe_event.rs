//! A Stripe event body as the webhook reads it once its signature checks out: the envelope, the fields
//! of the object Kotoba acts on, and the dates it turns them into (a tenant past due since the event,
//! its billing view and its standing a week later).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::billing::BillingView;
use shared::billing::events::{StripeEvent, SubscriptionSnapshot};
use shared::tenants::Tenant;

const GRACE: std::time::Duration = std::time::Duration::from_secs(7 * 86_400);

fuzz_target!(|data: &[u8]| {
    let Ok(event) = StripeEvent::parse(data) else {
        return;
    };
    let _ = (
        event.customer(),
        event.metadata_tenant(),
        event.client_reference_id(),
        event.subscription(),
        event.object_id(),
    );
    let snapshot = SubscriptionSnapshot::from_object(&event.data.object).ok();
    // The dates an event can write onto a tenant: past_due_since (the event's creation), the period's
    // end and the trial's end (the subscription's). Every view of that tenant must survive them.
    let date = |unix: i64| shared::billing::accounts::unix_rfc3339(unix);
    let tenant = serde_json::json!({
        "tenant_id": "ten_01m8rd3y9yef4sbccqv56kp7ex",
        "name": "Fuzz",
        "plan": "pro",
        "subscription_status": "past_due",
        "created_at": "2026-01-01T00:00:00Z",
        "past_due_since": date(event.created),
        "current_period_end": snapshot.as_ref().and_then(|s| s.current_period_end).map(date),
        "trial_ends_at": snapshot.as_ref().and_then(|s| s.trial_end).map(date),
    });
    let tenant: Tenant = serde_json::from_value(tenant).expect("a tenant row");
    let _ = BillingView::of(&tenant, GRACE);
    let now = time::OffsetDateTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
    let _ = tenant.standing(now, GRACE);
});
