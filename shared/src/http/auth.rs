//! Who is calling: a tenant by API key, or the operator by the admin key.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ApiError;
use crate::ids::TenantId;
use crate::platform::Platform;
use crate::tenants::api_keys::{self, ApiKey};

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

/// A request authenticated by a tenant API key.
#[derive(Debug, Clone)]
pub struct TenantAuth(pub TenantId);

impl<S> FromRequestParts<S> for TenantAuth
where
    Arc<Platform>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        let key =
            ApiKey::parse(token).map_err(|_| ApiError::Unauthorized("invalid API key".into()))?;
        let platform = Arc::<Platform>::from_ref(state);
        match api_keys::authenticate_record(platform.store.as_ref(), &key).await? {
            Some(record) => {
                let tenant = record.tenant_id;
                tracing::Span::current().record("tenant_id", tracing::field::display(&tenant));
                // For the audit log (who acted) and the error log (whose request failed).
                parts.extensions.insert(crate::audit::Actor::ApiKey {
                    key_id: record.key_id,
                });
                crate::errorlog::attribute_tenant(&tenant);
                Ok(TenantAuth(tenant))
            }
            None => Err(ApiError::Unauthorized("invalid API key".into())),
        }
    }
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
