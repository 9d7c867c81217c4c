//! Signing secrets: generated as `whsec_` + base64 of 32 random bytes, shown to the tenant once, and kept
//! encrypted with AES-256-GCM under the platform's webhook key.
//!
//! Why encrypted rather than hashed: an HMAC signature needs the secret itself on every delivery, so a
//! one-way hash (as for API keys) cannot sign. The ciphertext is bound to its tenant and endpoint
//! (associated data), so a row copied to another endpoint does not decrypt.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::ids::{IdGenerator, TenantId, WebhookId};

/// The prefix every Standard Webhooks secret carries.
pub const SECRET_PREFIX: &str = "whsec_";
/// Random bytes in a secret (the Standard Webhooks spec asks for 24 to 64).
pub const SECRET_BYTES: usize = 32;
/// The version tag of the sealed form, so the scheme can change without ambiguity.
const SEALED_PREFIX: &str = "v1:";

/// A signing secret in the clear: only ever held in memory, shown once, never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret(Vec<u8>);

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(…)")
    }
}

impl SigningSecret {
    pub fn generate(ids: &dyn IdGenerator) -> Self {
        Self(ids.secret_bytes(SECRET_BYTES))
    }

    /// Reads the `whsec_…` form.
    pub fn parse(raw: &str) -> Result<Self, SecretError> {
        let body = raw.strip_prefix(SECRET_PREFIX).unwrap_or(raw);
        let bytes = B64.decode(body).map_err(|_| SecretError::Malformed)?;
        if !(24..=64).contains(&bytes.len()) {
            return Err(SecretError::Malformed);
        }
        Ok(Self(bytes))
    }

    /// The `whsec_…` form the tenant configures in their verifier.
    pub fn expose(&self) -> String {
        format!("{SECRET_PREFIX}{}", B64.encode(&self.0))
    }

    pub fn key_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// The platform key that seals secrets: 32 bytes, from `KOTOBA_WEBHOOK_KEY` (base64).
#[derive(Clone)]
pub struct SealingKey(Aes256Gcm);

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey(…)")
    }
}

impl SealingKey {
    /// Reads the key: base64 of exactly 32 bytes (as the local runner generates), or any secret of at
    /// least 32 characters (as Secrets Manager generates: 64 random alphanumerics), whose SHA-256 is
    /// the key.
    pub fn parse(raw: &str) -> Result<Self, SecretError> {
        let raw = raw.trim();
        let key: [u8; 32] = match B64
            .decode(raw)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
        {
            Some(key) => key,
            None if raw.len() >= 32 => {
                use sha2::Digest;
                sha2::Sha256::digest(raw.as_bytes()).into()
            }
            None => return Err(SecretError::BadKey),
        };
        Ok(Self(Aes256Gcm::new(&key.into())))
    }

    /// A fresh key in the form [`parse`](Self::parse) reads (local mode keeps one in the data directory).
    pub fn generate_encoded(ids: &dyn IdGenerator) -> String {
        B64.encode(ids.secret_bytes(32))
    }

    fn aad(tenant: &TenantId, webhook: &WebhookId) -> Vec<u8> {
        format!("kotoba-webhook:{tenant}:{webhook}").into_bytes()
    }

    pub fn seal(
        &self,
        ids: &dyn IdGenerator,
        tenant: &TenantId,
        webhook: &WebhookId,
        secret: &SigningSecret,
    ) -> Result<SealedSecret, SecretError> {
        let nonce_bytes = ids.secret_bytes(12);
        let nonce = Nonce::from_slice(&nonce_bytes);
        let aad = Self::aad(tenant, webhook);
        let sealed = self
            .0
            .encrypt(
                nonce,
                Payload {
                    msg: &secret.0,
                    aad: &aad,
                },
            )
            .map_err(|_| SecretError::Seal)?;
        let mut out = nonce_bytes;
        out.extend_from_slice(&sealed);
        Ok(SealedSecret(format!("{SEALED_PREFIX}{}", B64.encode(out))))
    }

    pub fn open(
        &self,
        tenant: &TenantId,
        webhook: &WebhookId,
        sealed: &SealedSecret,
    ) -> Result<SigningSecret, SecretError> {
        let body = sealed
            .0
            .strip_prefix(SEALED_PREFIX)
            .ok_or(SecretError::Open)?;
        let bytes = B64.decode(body).map_err(|_| SecretError::Open)?;
        if bytes.len() < 12 + 16 {
            return Err(SecretError::Open);
        }
        let (nonce, ciphertext) = bytes.split_at(12);
        let aad = Self::aad(tenant, webhook);
        let plain = self
            .0
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| SecretError::Open)?;
        Ok(SigningSecret(plain))
    }
}

/// A secret as stored: nonce and ciphertext, base64, behind a version tag.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SealedSecret(String);

impl std::fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealedSecret(…)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("not a whsec_ secret of 24 to 64 base64 bytes")]
    Malformed,
    #[error("KOTOBA_WEBHOOK_KEY must be 32 bytes in base64, or a secret of at least 32 characters")]
    BadKey,
    #[error("sealing the signing secret failed")]
    Seal,
    /// Wrong key, another endpoint's row, or a damaged row.
    #[error("the stored signing secret does not open with this key")]
    Open,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::RandomIds;

    fn ids() -> (TenantId, WebhookId, WebhookId) {
        (
            TenantId::parse("ten_a").unwrap(),
            WebhookId::parse("wh_a").unwrap(),
            WebhookId::parse("wh_b").unwrap(),
        )
    }

    #[test]
    fn secrets_have_the_standard_form_and_round_trip() {
        let s = SigningSecret::generate(&RandomIds);
        let shown = s.expose();
        assert!(shown.starts_with("whsec_"), "{shown}");
        assert_eq!(SigningSecret::parse(&shown).unwrap(), s);
        assert_eq!(s.key_bytes().len(), 32);
        assert_eq!(
            SigningSecret::parse("whsec_c2hvcnQ="),
            Err(SecretError::Malformed)
        );
        assert!(!format!("{s:?}").contains(&shown[6..]));
    }

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_endpoint() {
        let (tenant, wh, other) = ids();
        let key = SealingKey::parse(&SealingKey::generate_encoded(&RandomIds)).unwrap();
        let wrong = SealingKey::parse(&SealingKey::generate_encoded(&RandomIds)).unwrap();
        let secret = SigningSecret::generate(&RandomIds);
        let sealed = key.seal(&RandomIds, &tenant, &wh, &secret).unwrap();
        assert!(!sealed.0.contains(&secret.expose()[6..]));
        assert_eq!(key.open(&tenant, &wh, &sealed).unwrap(), secret);
        assert_eq!(key.open(&tenant, &other, &sealed), Err(SecretError::Open));
        assert_eq!(wrong.open(&tenant, &wh, &sealed), Err(SecretError::Open));
        assert_eq!(
            key.open(&tenant, &wh, &SealedSecret("v1:AAAA".into())),
            Err(SecretError::Open)
        );
        assert!(matches!(
            SealingKey::parse("c2hvcnQ="),
            Err(SecretError::BadKey)
        ));
    }
}
