//! Phone numbers in E.164, and which tenant answers on each.
//!
//! A number lives at `PHONE#<number>`, so the bridge finds the tenant for a dialled number with one read.
//! Only the operator provisions numbers (`/api/admin/phone-numbers`), into a pool or straight to a
//! tenant; a tenant picks from the pool with a conditional write, so two tenants picking the same number
//! concurrently cannot both win, and gives numbers back to the pool.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::VoiceError;
use super::receptionist::Language;
use crate::clock::Clock;
use crate::ids::{TenantId, string_newtype};
use crate::store::{Condition, Index, Item, ItemStore, Key, Query, StoreError, keys};

string_newtype!(
    /// A phone number in E.164: `+`, then 7 to 15 digits, the first not zero.
    ///
    /// Parsing accepts the usual human formatting (spaces, dashes, dots, parentheses) and keeps only the
    /// canonical form, which is what Twilio sends in `To` and `From`.
    #[schema(examples("+15005550006"))]
    pub PhoneNumber
);

impl PhoneNumber {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let s = raw.trim();
        let Some(rest) = s.strip_prefix('+') else {
            return Err(format!(
                "{s:?} is not an E.164 number (it must start with + and the country code)"
            ));
        };
        let mut digits = String::with_capacity(15);
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => return Err(format!("{s:?} is not an E.164 number")),
            }
        }
        if !(7..=15).contains(&digits.len()) || digits.starts_with('0') {
            return Err(format!(
                "{s:?} is not an E.164 number (7 to 15 digits after +, not starting with 0)"
            ));
        }
        Ok(Self(format!("+{digits}")))
    }

    /// The language a caller of this number most likely speaks, from its country code (used only when the
    /// number belongs to no tenant, so there is no configured language to use).
    pub fn likely_language(&self) -> Language {
        if self.0.starts_with("+81") {
            Language::Ja
        } else if self.0.starts_with("+82") {
            Language::Ko
        } else {
            Language::En
        }
    }
}

/// Where a number stands: in the operator's pool, or answering for a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PhoneStatus {
    Available,
    Assigned,
}

/// A number the operator provisioned (bought from the carrier and pointed at the bridge). Tenants never
/// declare numbers: they pick one from the pool, or the operator assigns one to them, so a tenant can
/// never take over a number bought for someone else and receive its callers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PhoneAssignment {
    #[serde(deserialize_with = "crate::store::stored::lenient")]
    pub number: PhoneNumber,
    pub status: PhoneStatus,
    pub tenant_id: Option<TenantId>,
    #[serde(with = "time::serde::rfc3339")]
    pub provisioned_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub claimed_at: Option<OffsetDateTime>,
}

fn number_key(number: &PhoneNumber) -> Key {
    keys::phone_number(number)
}

const POOL: &str = keys::PHONE_POOL;
const CATALOGUE: &str = keys::PHONE_CATALOGUE;

fn item(record: &PhoneAssignment) -> Result<Item, StoreError> {
    let owner = match &record.tenant_id {
        Some(tenant) => keys::tenant_partition(tenant),
        None => POOL.to_string(),
    };
    let sort = keys::phone_listing_sort(&record.number);
    Ok(Item::from_record(number_key(&record.number), record)?
        .with_index(Index::ByTenant, owner, sort.clone())
        .with_index(Index::BySite, CATALOGUE, sort))
}

/// The operator adds a number: to the pool, or straight to a tenant. A number already provisioned is
/// [`VoiceError::NumberExists`].
pub async fn provision(
    store: &dyn ItemStore,
    clock: &dyn Clock,
    number: PhoneNumber,
    tenant: Option<&TenantId>,
) -> Result<PhoneAssignment, VoiceError> {
    let now = clock.now();
    let record = PhoneAssignment {
        number,
        status: if tenant.is_some() {
            PhoneStatus::Assigned
        } else {
            PhoneStatus::Available
        },
        tenant_id: tenant.cloned(),
        provisioned_at: now,
        claimed_at: tenant.map(|_| now),
    };
    match store.put(item(&record)?, Condition::IfAbsent).await {
        Ok(()) => Ok(record),
        Err(StoreError::ConditionFailed) => Err(VoiceError::NumberExists(record.number)),
        Err(e) => Err(e.into()),
    }
}

/// A tenant takes a number from the pool. One nobody provisioned is [`VoiceError::NumberNotFound`];
/// one already held (by anyone) is [`VoiceError::NumberTaken`].
pub async fn claim(
    store: &dyn ItemStore,
    clock: &dyn Clock,
    tenant: &TenantId,
    number: PhoneNumber,
) -> Result<PhoneAssignment, VoiceError> {
    let Some(current) = get(store, &number).await? else {
        return Err(VoiceError::NumberNotFound);
    };
    if current.status != PhoneStatus::Available {
        return Err(VoiceError::NumberTaken(number));
    }
    let record = PhoneAssignment {
        status: PhoneStatus::Assigned,
        tenant_id: Some(tenant.clone()),
        claimed_at: Some(clock.now()),
        ..current
    };
    // The condition makes "still in the pool?" and the take one atomic step: two tenants picking the
    // same number concurrently cannot both win.
    let available = Condition::AttributeEquals("status".into(), "available".into());
    match store.put(item(&record)?, available).await {
        Ok(()) => Ok(record),
        Err(StoreError::ConditionFailed) => match get(store, &number).await? {
            Some(_) => Err(VoiceError::NumberTaken(number)),
            None => Err(VoiceError::NumberNotFound),
        },
        Err(e) => Err(e.into()),
    }
}

/// A tenant gives a number back to the pool. Someone else's number, or one never provisioned, is
/// [`VoiceError::NumberNotFound`].
pub async fn release(
    store: &dyn ItemStore,
    tenant: &TenantId,
    number: &PhoneNumber,
) -> Result<(), VoiceError> {
    let current = get(store, number).await?;
    let Some(current) = current.filter(|c| c.tenant_id.as_ref() == Some(tenant)) else {
        return Err(VoiceError::NumberNotFound);
    };
    let record = PhoneAssignment {
        status: PhoneStatus::Available,
        tenant_id: None,
        claimed_at: None,
        ..current
    };
    // The condition makes "is it still mine?" and the release one atomic step.
    let mine = Condition::AttributeEquals("tenant_id".into(), tenant.as_str().into());
    match store.put(item(&record)?, mine).await {
        Ok(()) => Ok(()),
        Err(StoreError::ConditionFailed) => Err(VoiceError::NumberNotFound),
        Err(e) => Err(e.into()),
    }
}

/// The operator withdraws a number from the platform (whoever held it stops receiving its calls).
pub async fn withdraw(store: &dyn ItemStore, number: &PhoneNumber) -> Result<(), VoiceError> {
    match store.delete(&number_key(number), Condition::IfExists).await {
        Ok(()) => Ok(()),
        Err(StoreError::ConditionFailed) => Err(VoiceError::NumberNotFound),
        Err(e) => Err(e.into()),
    }
}

async fn get(
    store: &dyn ItemStore,
    number: &PhoneNumber,
) -> Result<Option<PhoneAssignment>, StoreError> {
    match store.get(&number_key(number)).await? {
        Some(item) => Ok(Some(item.to_record()?)),
        None => Ok(None),
    }
}

/// The tenant a dialled number belongs to, if any (a number in the pool belongs to no one). One read.
pub async fn tenant_for(
    store: &dyn ItemStore,
    number: &PhoneNumber,
) -> Result<Option<TenantId>, StoreError> {
    Ok(get(store, number).await?.and_then(|r| r.tenant_id))
}

async fn list_partition(
    store: &dyn ItemStore,
    index: Index,
    partition: String,
) -> Result<Vec<PhoneAssignment>, StoreError> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .query(
                Query::on(index, partition.clone())
                    .prefix(keys::prefix::PHONE)
                    .after(cursor),
            )
            .await?;
        out.extend(crate::store::stored::readable::<PhoneAssignment>(
            &page.items,
        ));
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(out),
        }
    }
}

/// The tenant's numbers, in number order.
pub async fn list(
    store: &dyn ItemStore,
    tenant: &TenantId,
) -> Result<Vec<PhoneAssignment>, StoreError> {
    list_partition(store, Index::ByTenant, keys::tenant_partition(tenant)).await
}

/// The numbers in the pool, in number order.
pub async fn available(store: &dyn ItemStore) -> Result<Vec<PhoneAssignment>, StoreError> {
    list_partition(store, Index::ByTenant, POOL.to_string()).await
}

/// Every provisioned number, in number order (the operator's view).
pub async fn list_all(store: &dyn ItemStore) -> Result<Vec<PhoneAssignment>, StoreError> {
    list_partition(store, Index::BySite, CATALOGUE.to_string()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_assignments_read_typed_and_write_back_unchanged() {
        let claimed = serde_json::json!({
            "number": "+81312345678", "status": "assigned", "tenant_id": "ten_1",
            "provisioned_at": "2026-05-01T09:00:00.5Z", "claimed_at": "2026-05-02T10:30:00.123456Z"
        });
        let record: PhoneAssignment = serde_json::from_value(claimed.clone()).unwrap();
        assert_eq!(
            record.claimed_at,
            Some(time::macros::datetime!(2026-05-02 10:30:00.123456 UTC))
        );
        assert_eq!(serde_json::to_value(&record).unwrap(), claimed);

        let pooled = serde_json::json!({
            "number": "+81312345678", "status": "available", "tenant_id": null,
            "provisioned_at": "2026-05-01T09:00:00Z", "claimed_at": null
        });
        let record: PhoneAssignment = serde_json::from_value(pooled.clone()).unwrap();
        assert_eq!(serde_json::to_value(&record).unwrap(), pooled);
        // A row written without the field at all still reads.
        let mut bare = pooled.clone();
        bare.as_object_mut().unwrap().remove("claimed_at");
        let record: PhoneAssignment = serde_json::from_value(bare).unwrap();
        assert_eq!(record.claimed_at, None);
    }

    #[test]
    fn numbers_parse_to_e164() {
        assert_eq!(
            PhoneNumber::parse(" +1 (415) 867-5309 ").unwrap().as_str(),
            "+14158675309"
        );
        assert_eq!(
            PhoneNumber::parse("+81.3.1234.5678").unwrap().as_str(),
            "+81312345678"
        );
        for bad in [
            "",
            "+",
            "14158675309",
            "+0123456789",
            "+1234",
            "+1234567890123456",
            "+1415867530x",
            "+1 415\n8675309",
            "++14158675309",
        ] {
            assert!(PhoneNumber::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn country_codes_suggest_a_language() {
        let ja = PhoneNumber::parse("+81312345678").unwrap();
        let ko = PhoneNumber::parse("+82212345678").unwrap();
        let us = PhoneNumber::parse("+14158675309").unwrap();
        assert_eq!(
            (
                ja.likely_language(),
                ko.likely_language(),
                us.likely_language()
            ),
            (Language::Ja, Language::Ko, Language::En)
        );
    }
}
