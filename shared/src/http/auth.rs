//! Who is calling: a tenant by API key, or the operator by the admin key.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use axum::http::{Method, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ApiError;
use crate::ids::TenantId;
use crate::platform::Platform;
use crate::tenants::api_keys::{self, ApiKey, Caller};
use crate::tenants::roles::{self, Role};
use crate::tenants::sessions::{self, SessionToken};

/// The operator's key, kept only as a digest and compared in constant time.
#[derive(Clone)]
pub struct AdminKey([u8; 32]);

impl std::fmt::Debug for AdminKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminKey(…)")
    }
}

impl AdminKey {
    pub fn new(key: &str) -> Self {
        Self(Sha256::digest(key.as_bytes()).into())
    }

    /// Hashing first makes the comparison constant-time in the length of the presented key too.
    pub fn verify(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.0.ct_eq(&digest).into()
    }
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::Unauthorized("missing Authorization: Bearer <key>".into()))?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::Unauthorized("malformed Authorization header".into()))?;
    let (scheme, token) = value.trim().split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::Unauthorized(
            "expected Authorization: Bearer <key>".into(),
        ));
    }
    Ok(token.trim())
}

/// A request authenticated by a tenant API key whose role covers the route (see
/// [`roles::required`]); the caller's key and role ride along in the request's extensions.
#[derive(Debug, Clone)]
pub struct TenantAuth(pub TenantId);

impl<S> FromRequestParts<S> for TenantAuth
where
    Arc<Platform>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let platform = Arc::<Platform>::from_ref(state);
        let caller = match session_cookie(parts) {
            // A key, when one is presented, wins: API clients never depend on cookies.
            Some(token) if !parts.headers.contains_key(header::AUTHORIZATION) => {
                session_caller(parts, &platform, &token).await?
            }
            _ => key_caller(parts, &platform).await?,
        };
        tracing::Span::current().record("tenant_id", tracing::field::display(&caller.tenant_id));
        // The route's template (`/api/sites/{site_id}`), as the router matched it. Without one (a
        // handler called outside a router) only an owner passes.
        let required = parts
            .extensions
            .get::<MatchedPath>()
            .map_or(Role::Owner, |route| {
                roles::required(&parts.method, route.as_str())
            });
        if !caller.role.allows(required) {
            return Err(ApiError::ForbiddenRole {
                role: caller.role.as_str(),
                required: required.as_str(),
            });
        }
        let tenant = caller.tenant_id.clone();
        // For the audit log (who acted) and the error log (whose request failed).
        parts.extensions.insert(crate::audit::Actor::ApiKey {
            key_id: caller.key_id.clone(),
        });
        crate::errorlog::attribute_tenant(&tenant);
        parts.extensions.insert(caller);
        Ok(TenantAuth(tenant))
    }
}

/// The caller a bearer API key speaks for.
async fn key_caller(parts: &Parts, platform: &Platform) -> Result<Caller, ApiError> {
    let token = bearer(parts)?;
    let key = ApiKey::parse(token).map_err(|_| ApiError::Unauthorized("invalid API key".into()))?;
    api_keys::authenticate(platform.store.as_ref(), &key)
        .await?
        .ok_or_else(|| ApiError::Unauthorized("invalid API key".into()))
}

/// The console session token in the request's cookies, if any.
fn session_cookie(parts: &Parts) -> Option<SessionToken> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(sessions::token_in_cookies)
}

/// The caller a console session speaks for. A request that changes something must also carry the
/// session's CSRF token: a page on another site can make the browser send the cookie (SameSite aside)
/// but cannot read the token.
async fn session_caller(
    parts: &mut Parts,
    platform: &Platform,
    token: &SessionToken,
) -> Result<Caller, ApiError> {
    let session = sessions::find(platform.store.as_ref(), platform.clock.as_ref(), token)
        .await?
        .ok_or_else(|| {
            ApiError::Unauthorized("the console session has ended; sign in again".into())
        })?;
    let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe {
        let presented = parts
            .headers
            .get(sessions::CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !session.csrf_matches(presented) {
            return Err(ApiError::Forbidden(
                "a change made with the console session needs its X-CSRF-Token header".into(),
            ));
        }
    }
    let caller = session.caller.clone();
    parts.extensions.insert(session);
    Ok(caller)
}

/// A request authenticated by the operator's admin key.
#[derive(Debug, Clone, Copy)]
pub struct AdminAuth;

impl<S> FromRequestParts<S> for AdminAuth
where
    Arc<Platform>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        let platform = Arc::<Platform>::from_ref(state);
        match &platform.admin_key {
            Some(admin) if admin.verify(token) => {
                parts.extensions.insert(crate::audit::Actor::Admin);
                Ok(AdminAuth)
            }
            Some(_) => Err(ApiError::Unauthorized("invalid admin key".into())),
            None => Err(ApiError::Unauthorized(
                "admin routes are disabled: KOTOBA_ADMIN_KEY is not set".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_keys_verify_exactly() {
        let key = AdminKey::new("correct horse battery staple");
        assert!(key.verify("correct horse battery staple"));
        assert!(!key.verify("correct horse battery stapl"));
        assert!(!key.verify(""));
    }
}
