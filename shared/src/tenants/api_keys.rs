//! Tenant API keys: 32 random bytes behind a readable prefix, shown once, stored only as a SHA-256 hash.
//!
//! Two items per key, written together: the lookup item keyed by the hash (authentication is one get,
//! never a scan) and the tenant's record keyed by the public key id (listing and revocation).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::clock::Clock;
use crate::ids::{IdGenerator, KeyId, TenantId};
use crate::store::{Condition, Item, ItemStore, Key, Query, StoreError, Write, keys};

/// What every key starts with, so a leaked key is recognisable (secret scanners, logs).
pub const KEY_PREFIX: &str = "kt_";

/// A raw API key as presented by a client. Only its shape is checked here; it proves nothing until looked up.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a secret, even in debug output.
        write!(f, "ApiKey({}…)", &self.0[..KEY_PREFIX.len() + 4])
    }
}

impl ApiKey {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let body = raw.strip_prefix(KEY_PREFIX).ok_or("not a Kotoba API key")?;
        let ok = body.len() == 43
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(raw.to_string()))
        } else {
            Err("not a Kotoba API key".into())
        }
    }

    /// A fresh key from 32 random bytes.
    pub fn generate(ids: &dyn IdGenerator) -> Self {
        Self(format!(
            "{KEY_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(ids.secret_bytes(32))
        ))
    }

    /// The secret itself: shown once, to the caller who created it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Hex SHA-256 of the key: what the store keeps.
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }

    /// The first characters, safe to show in listings so a tenant can tell keys apart.
    pub fn hint(&self) -> String {
        format!("{}…", &self.0[..KEY_PREFIX.len() + 6])
    }
}

/// A key as listed to its tenant: never the secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub key_id: KeyId,
    pub tenant_id: TenantId,
    pub hint: String,
    pub key_hash: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// A key just issued: the record plus the secret, which is never retrievable again.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    pub record: KeyRecord,
    pub key: ApiKey,
}

fn lookup_key(hash: &str) -> Key {
    keys::api_key_lookup(hash)
}

fn record_key(tenant: &TenantId, key_id: &KeyId) -> Key {
    keys::api_key_record(tenant, key_id)
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("no such API key")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Issues a new random key for a tenant.
pub async fn issue(
    store: &dyn ItemStore,
    ids: &dyn IdGenerator,
    clock: &dyn Clock,
    tenant: &TenantId,
) -> Result<IssuedKey, KeyError> {
    let key = ApiKey::generate(ids);
    let record = register(store, ids, clock, tenant, &key).await?;
    Ok(IssuedKey { record, key })
}

/// Stores a given key for a tenant (issue uses it; fixtures use it to install a known key).
pub async fn register(
    store: &dyn ItemStore,
    ids: &dyn IdGenerator,
    clock: &dyn Clock,
    tenant: &TenantId,
    key: &ApiKey,
) -> Result<KeyRecord, KeyError> {
    let record = KeyRecord {
        key_id: KeyId::generate(ids),
        tenant_id: tenant.clone(),
        hint: key.hint(),
        key_hash: key.hash(),
        created_at: clock.now(),
    };
    let lookup = Item::from_record(lookup_key(&record.key_hash), &record)?;
    let listing = Item::from_record(record_key(tenant, &record.key_id), &record)?;
    store
        .transact(vec![
            Write::Put(lookup, Condition::IfAbsent),
            Write::Put(listing, Condition::IfAbsent),
        ])
        .await?;
    Ok(record)
}

/// The tenant a presented key belongs to, or `None` for an unknown or revoked key. One store read.
pub async fn authenticate(
    store: &dyn ItemStore,
    key: &ApiKey,
) -> Result<Option<TenantId>, StoreError> {
    Ok(authenticate_record(store, key).await?.map(|r| r.tenant_id))
}

/// As [`authenticate`], with the key's record (its id names the actor in the audit log).
pub async fn authenticate_record(
    store: &dyn ItemStore,
    key: &ApiKey,
) -> Result<Option<KeyRecord>, StoreError> {
    let Some(item) = store.get(&lookup_key(&key.hash())).await? else {
        return Ok(None);
    };
    Ok(Some(item.to_record()?))
}

/// The tenant's keys, oldest first.
pub async fn list(store: &dyn ItemStore, tenant: &TenantId) -> Result<Vec<KeyRecord>, StoreError> {
    let mut keys = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .query(
                Query::partition(keys::tenant_partition(tenant))
                    .prefix(keys::prefix::KEY)
                    .after(cursor),
            )
            .await?;
        keys.extend(crate::store::stored::readable::<KeyRecord>(&page.items));
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(keys),
        }
    }
}

/// Revokes one of the tenant's keys. Another tenant's key id is simply not found.
pub async fn revoke(
    store: &dyn ItemStore,
    tenant: &TenantId,
    key_id: &KeyId,
) -> Result<(), KeyError> {
    let listing = record_key(tenant, key_id);
    let Some(item) = store.get(&listing).await? else {
        return Err(KeyError::NotFound);
    };
    let record: KeyRecord = item.to_record()?;
    let writes = vec![
        Write::Delete(listing, Condition::IfExists),
        Write::Delete(lookup_key(&record.key_hash), Condition::None),
    ];
    match store.transact(writes).await {
        Ok(()) => Ok(()),
        // Revoked concurrently: it is gone either way.
        Err(StoreError::ConditionFailed) => Err(KeyError::NotFound),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::RandomIds;

    #[test]
    fn a_stored_key_record_reads_typed_and_writes_back_unchanged() {
        let row = serde_json::json!({
            "key_id": "key_1", "tenant_id": "ten_1", "hint": "kt_live_…abcd",
            "key_hash": "00ff", "created_at": "2026-05-01T09:00:00.123456789Z"
        });
        let record: KeyRecord = serde_json::from_value(row.clone()).unwrap();
        assert_eq!(
            record.created_at,
            time::macros::datetime!(2026-05-01 09:00:00.123456789 UTC)
        );
        assert_eq!(serde_json::to_value(&record).unwrap(), row);
    }

    #[test]
    fn keys_have_a_prefix_and_43_url_safe_characters() {
        let key = ApiKey::generate(&RandomIds);
        assert!(key.expose().starts_with("kt_"));
        assert_eq!(key.expose().len(), 3 + 43);
        assert_eq!(ApiKey::parse(key.expose()).unwrap(), key);
        assert_eq!(key.hash().len(), 64);
        assert!(
            !format!("{key:?}").contains(&key.expose()[10..]),
            "debug output leaks the key"
        );
    }

    #[test]
    fn malformed_keys_are_refused_before_any_lookup() {
        for bad in [
            "",
            "kt_",
            "sk_live_abc",
            &format!("kt_{}", "a".repeat(42)),
            &format!("kt_{}!", "a".repeat(42)),
        ] {
            assert!(ApiKey::parse(bad).is_err(), "{bad}");
        }
    }
}
