//! The tenant's own profile: display name, billing email, language and time zone (`GET/PATCH /api/tenant`).

use serde::Deserialize;
use serde_json::Value;

use super::{Language, Tenant, TenantError, TenantName, tenant_key};
use crate::ids::TenantId;
use crate::mail::EmailAddress;
use crate::store::{Condition, ItemStore, StoreError, Update};

/// An IANA time zone name that the bundled time zone database knows (`Asia/Tokyo`, `UTC`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeZoneName(String);

impl TimeZoneName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let name = raw.trim();
        if name.is_empty() || name.len() > 64 {
            return Err("must be an IANA time zone name such as Asia/Tokyo".into());
        }
        jiff::tz::TimeZone::get(name)
            .map(|_| Self(name.to_string()))
            .map_err(|_| {
                format!("{name:?} is not a known time zone (e.g. Asia/Tokyo, Asia/Seoul, UTC)")
            })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A change to the profile; absent fields stay as they are, `billing_email: null` clears it.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfilePatch {
    #[serde(default)]
    pub name: Option<TenantName>,
    /// Where Stripe sends receipts; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub billing_email: Option<Option<String>>,
    /// `ja`, `en` or `ko`.
    #[serde(default)]
    pub language: Option<String>,
    /// An IANA time zone name (`Asia/Tokyo`).
    #[serde(default)]
    pub timezone: Option<String>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// A patch field that does not parse, named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ProfileFieldError {
    pub field: &'static str,
    pub message: String,
}

/// Applies a patch (all fields checked before anything is written) and returns the tenant as stored.
pub async fn update_profile(
    store: &dyn ItemStore,
    tenant: &TenantId,
    patch: ProfilePatch,
) -> Result<Result<Tenant, ProfileFieldError>, TenantError> {
    let mut update = Update::new(tenant_key(tenant)).when(Condition::IfExists);
    if let Some(name) = patch.name {
        update = update.set("name", String::from(name));
    }
    match patch.billing_email {
        Some(Some(raw)) => match EmailAddress::parse(&raw) {
            Ok(email) => update = update.set("billing_email", email.as_str().to_string()),
            Err(message) => {
                return Ok(Err(ProfileFieldError {
                    field: "billing_email",
                    message,
                }));
            }
        },
        Some(None) => update = update.remove("billing_email"),
        None => {}
    }
    if let Some(raw) = patch.language {
        match Language::parse(&raw) {
            Ok(language) => {
                update = update.set(
                    "language",
                    serde_json::to_value(language).unwrap_or(Value::Null),
                )
            }
            Err(message) => {
                return Ok(Err(ProfileFieldError {
                    field: "language",
                    message,
                }));
            }
        }
    }
    if let Some(raw) = patch.timezone {
        match TimeZoneName::parse(&raw) {
            Ok(tz) => update = update.set("timezone", tz.as_str().to_string()),
            Err(message) => {
                return Ok(Err(ProfileFieldError {
                    field: "timezone",
                    message,
                }));
            }
        }
    }
    if update.set.is_empty() && update.remove.is_empty() {
        return Ok(Ok(super::get_tenant(store, tenant).await?));
    }
    match store.update(update).await {
        Ok(item) => Ok(Ok(item.to_record()?)),
        Err(StoreError::ConditionFailed) => Err(TenantError::NotFound(tenant.clone())),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_zones_come_from_the_database() {
        assert_eq!(
            TimeZoneName::parse(" Asia/Tokyo ").unwrap().as_str(),
            "Asia/Tokyo"
        );
        assert!(TimeZoneName::parse("Asia/Seoul").is_ok());
        assert!(TimeZoneName::parse("UTC").is_ok());
        assert!(TimeZoneName::parse("Asia/Tokio").is_err());
        assert!(TimeZoneName::parse("").is_err());
        assert!(TimeZoneName::parse("../../etc/passwd").is_err());
    }
}
