//! Phone numbers in E.164, and which tenant answers on each.
//!
//! A number lives at `PHONE#<number>`, so the bridge finds the tenant for a dialled number with one read,
//! and a claim is a put-if-absent: two tenants claiming the same number concurrently cannot both win.

use serde::{Deserialize, Serialize};

use super::VoiceError;
use super::receptionist::Language;
use crate::clock::{Clock, rfc3339};
use crate::ids::TenantId;
use crate::store::{Condition, Index, Item, ItemStore, Key, Query, StoreError};

/// A phone number in E.164: `+`, then 7 to 15 digits, the first not zero.
///
/// Parsing accepts the usual human formatting (spaces, dashes, dots, parentheses) and keeps only the
/// canonical form, which is what Twilio sends in `To` and `From`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber(String);

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

    pub fn as_str(&self) -> &str {
        &self.0
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

impl std::str::FromStr for PhoneNumber {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl From<PhoneNumber> for String {
    fn from(n: PhoneNumber) -> String {
        n.0
    }
}

impl std::fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A number assigned to a tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhoneAssignment {
    pub number: PhoneNumber,
    pub tenant_id: TenantId,
    pub claimed_at: String,
}

fn number_key(number: &PhoneNumber) -> Key {
    Key::new(format!("PHONE#{number}"), "PHONE")
}

/// Assigns a number to a tenant. A number already assigned (to anyone) is [`VoiceError::NumberTaken`].
pub async fn claim(
    store: &dyn ItemStore,
    clock: &dyn Clock,
    tenant: &TenantId,
    number: PhoneNumber,
) -> Result<PhoneAssignment, VoiceError> {
    let assignment = PhoneAssignment {
        number,
        tenant_id: tenant.clone(),
        claimed_at: rfc3339(clock.now()),
    };
    let item = Item::from_record(number_key(&assignment.number), &assignment)?.with_index(
        Index::ByTenant,
        format!("TENANT#{tenant}"),
        format!("PHONE#{}", assignment.number),
    );
    match store.put(item, Condition::IfAbsent).await {
        Ok(()) => Ok(assignment),
        Err(StoreError::ConditionFailed) => Err(VoiceError::NumberTaken(assignment.number)),
        Err(e) => Err(e.into()),
    }
}

/// Gives a number up. Someone else's number, or one never claimed, is [`VoiceError::NumberNotFound`].
pub async fn release(
    store: &dyn ItemStore,
    tenant: &TenantId,
    number: &PhoneNumber,
) -> Result<(), VoiceError> {
    // The condition makes "is it mine?" and the delete one atomic step.
    let mine = Condition::AttributeEquals("tenant_id".into(), tenant.as_str().into());
    match store.delete(&number_key(number), mine).await {
        Ok(()) => Ok(()),
        Err(StoreError::ConditionFailed) => Err(VoiceError::NumberNotFound),
        Err(e) => Err(e.into()),
    }
}

/// The tenant a dialled number belongs to, if any. One read.
pub async fn tenant_for(
    store: &dyn ItemStore,
    number: &PhoneNumber,
) -> Result<Option<TenantId>, StoreError> {
    match store.get(&number_key(number)).await? {
        Some(item) => Ok(Some(item.to_record::<PhoneAssignment>()?.tenant_id)),
        None => Ok(None),
    }
}

/// The tenant's numbers, in number order.
pub async fn list(
    store: &dyn ItemStore,
    tenant: &TenantId,
) -> Result<Vec<PhoneAssignment>, StoreError> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .query(
                Query::on(Index::ByTenant, format!("TENANT#{tenant}"))
                    .prefix("PHONE#")
                    .after(cursor),
            )
            .await?;
        for item in &page.items {
            out.push(item.to_record()?);
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
