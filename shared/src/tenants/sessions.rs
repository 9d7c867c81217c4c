//! Console sessions: the web console trades an API key for a session once, so no key sits in the
//! browser. The browser holds the session token in an `HttpOnly; Secure; SameSite=Strict` cookie; the
//! store keeps only the token's SHA-256 (as for API keys), the key's tenant and role, the CSRF token
//! (useless without the cookie; the page reads it again after a reload) and the expiry. A token is 32 random bytes: it cannot be guessed or forged, it expires (the
//! record says when, and the store's TTL removes it), and signing out deletes it at once — which a
//! stateless signed cookie could not do, and no signing key has to be shared by every function.
//! State-changing requests made with the cookie must also carry the session's CSRF token in
//! `X-CSRF-Token`, which a cross-site page cannot read.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use super::api_keys::{self, ApiKey, Caller};
use super::roles::Role;
use crate::clock::Clock;
use crate::ids::{IdGenerator, KeyId, TenantId};
use crate::store::{Condition, Item, ItemStore, StoreError, keys};

/// The cookie's name.
pub const COOKIE: &str = "kotoba_session";
/// The request header that carries the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts: a working day.
pub const LIFETIME: time::Duration = time::Duration::hours(8);

const TOKEN_PREFIX: &str = "ks_";

/// A session token as presented in the cookie. Only its shape is checked here.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionToken(…)")
    }
}

impl SessionToken {
    pub fn parse(raw: &str) -> Option<Self> {
        let body = raw.strip_prefix(TOKEN_PREFIX)?;
        let ok = body.len() == 43
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| Self(raw.to_string()))
    }

    fn generate(ids: &dyn IdGenerator) -> Self {
        Self(format!(
            "{TOKEN_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(ids.secret_bytes(32))
        ))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    fn hash(&self) -> String {
        digest(&self.0)
    }
}

fn digest(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SessionRecord {
    tenant_id: TenantId,
    key_id: KeyId,
    role: Role,
    csrf_token: String,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    /// (`ends_at`: the store reserves `expires_at` for its own TTL.)
    #[serde(with = "time::serde::rfc3339")]
    ends_at: OffsetDateTime,
}

/// A session just opened: the token goes into the cookie, the CSRF token to the page.
#[derive(Debug, Clone)]
pub struct OpenedSession {
    pub token: SessionToken,
    pub csrf_token: String,
    pub caller: Caller,
    pub expires_at: OffsetDateTime,
}

/// A live session, as a request presents it.
#[derive(Debug, Clone)]
pub struct Session {
    pub caller: Caller,
    pub expires_at: OffsetDateTime,
    /// What changes made with this session must carry in `X-CSRF-Token`.
    pub csrf_token: String,
}

impl Session {
    /// Whether `presented` is this session's CSRF token (compared in constant time).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        presented
            .as_bytes()
            .ct_eq(self.csrf_token.as_bytes())
            .into()
    }
}

/// Opens a session for a valid key; `None` for an unknown or revoked key.
pub async fn open(
    store: &dyn ItemStore,
    ids: &dyn IdGenerator,
    clock: &dyn Clock,
    key: &ApiKey,
) -> Result<Option<OpenedSession>, StoreError> {
    let Some(caller) = api_keys::authenticate(store, key).await? else {
        return Ok(None);
    };
    let token = SessionToken::generate(ids);
    let csrf_token = URL_SAFE_NO_PAD.encode(ids.secret_bytes(24));
    let now = clock.now();
    let expires_at = now + LIFETIME;
    let record = SessionRecord {
        tenant_id: caller.tenant_id.clone(),
        key_id: caller.key_id.clone(),
        role: caller.role,
        csrf_token: csrf_token.clone(),
        created_at: now,
        ends_at: expires_at,
    };
    let item = Item::from_record(keys::console_session(token.hash()), &record)?
        .expiring_at(expires_at.unix_timestamp());
    store.put(item, Condition::IfAbsent).await?;
    Ok(Some(OpenedSession {
        token,
        csrf_token,
        caller,
        expires_at,
    }))
}

/// The live session a token names: `None` when unknown, signed out or expired. The key it was opened
/// with must still exist: revoking the key ends its sessions too.
pub async fn find(
    store: &dyn ItemStore,
    clock: &dyn Clock,
    token: &SessionToken,
) -> Result<Option<Session>, StoreError> {
    let Some(item) = store.get(&keys::console_session(token.hash())).await? else {
        return Ok(None);
    };
    let record: SessionRecord = item.to_record()?;
    if clock.now() >= record.ends_at {
        return Ok(None);
    }
    let key_exists = store
        .get(&keys::api_key_record(&record.tenant_id, &record.key_id))
        .await?
        .is_some();
    if !key_exists {
        return Ok(None);
    }
    Ok(Some(Session {
        caller: Caller {
            tenant_id: record.tenant_id,
            key_id: record.key_id,
            role: record.role,
        },
        expires_at: record.ends_at,
        csrf_token: record.csrf_token,
    }))
}

/// Signs out: the token stops working at once.
pub async fn close(store: &dyn ItemStore, token: &SessionToken) -> Result<(), StoreError> {
    store
        .delete(&keys::console_session(token.hash()), Condition::None)
        .await
}

/// The token in a `Cookie` header, if it carries a well-formed one.
pub fn token_in_cookies(header: &str) -> Option<SessionToken> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .and_then(|(_, value)| SessionToken::parse(value.trim()))
}

/// The `Set-Cookie` value that stores a session in the browser (or, with `None`, removes it).
pub fn set_cookie(opened: Option<&OpenedSession>) -> String {
    match opened {
        Some(s) => format!(
            "{COOKIE}={}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={}",
            s.token.expose(),
            LIFETIME.whole_seconds()
        ),
        None => format!("{COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;
    use crate::embedded_db::EmbeddedDb;
    use crate::ids::RandomIds;
    use crate::store::EmbeddedStore;
    use crate::tenants::api_keys::NewKey;

    #[tokio::test]
    async fn a_session_lives_until_it_expires_is_closed_or_its_key_is_revoked() {
        let clock = ManualClock::at(time::macros::datetime!(2026-12-01 09:00 UTC));
        let store =
            EmbeddedStore::new(EmbeddedDb::in_memory().unwrap(), Arc::new(clock.clone())).unwrap();
        let ids = RandomIds;
        let tenant = TenantId::parse("ten_1").unwrap();
        let new = NewKey {
            role: Role::Viewer,
            name: None,
        };
        let issued = api_keys::issue(&store, &ids, &clock, &tenant, new)
            .await
            .unwrap();

        let unknown = ApiKey::generate(&ids);
        assert!(
            open(&store, &ids, &clock, &unknown)
                .await
                .unwrap()
                .is_none()
        );

        let opened = open(&store, &ids, &clock, &issued.key)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(opened.caller.role, Role::Viewer);
        let cookie = set_cookie(Some(&opened));
        assert!(cookie.contains("HttpOnly; Secure; SameSite=Strict"));
        let token = token_in_cookies(&format!(
            "theme=dark; {}",
            cookie.split(';').next().unwrap()
        ))
        .expect("the cookie carries the token");
        let session = find(&store, &clock, &token).await.unwrap().unwrap();
        assert_eq!(session.caller.tenant_id, tenant);
        assert!(session.csrf_matches(&opened.csrf_token));
        assert!(!session.csrf_matches("guess"));

        // Expiry.
        clock.advance(std::time::Duration::from_secs(8 * 3600));
        assert!(find(&store, &clock, &token).await.unwrap().is_none());

        // Sign-out (a session opened later, which the expiry above does not touch).
        let opened = open(&store, &ids, &clock, &issued.key)
            .await
            .unwrap()
            .unwrap();
        assert!(find(&store, &clock, &opened.token).await.unwrap().is_some());
        close(&store, &opened.token).await.unwrap();
        assert!(find(&store, &clock, &opened.token).await.unwrap().is_none());

        // Revoking the key ends its sessions.
        let opened = open(&store, &ids, &clock, &issued.key)
            .await
            .unwrap()
            .unwrap();
        api_keys::revoke(&store, &tenant, &issued.record.key_id)
            .await
            .unwrap();
        assert!(find(&store, &clock, &opened.token).await.unwrap().is_none());

        // Malformed tokens are not looked up at all.
        assert!(token_in_cookies("kotoba_session=ks_short").is_none());
        assert!(token_in_cookies("other=1").is_none());
    }
}
