//! The per-call stream token: what lets a Media Streams socket spend our model key.
//!
//! The webhook (which Twilio signed) issues it in a TwiML `<Parameter>`; the media socket must present it
//! in `start.customParameters` before anything else happens. It is short-lived, bound to the call sid and
//! the tenant (and carries the caller's numbers, so they are authenticated too), and HMAC-SHA256-signed
//! with a key only the bridge holds. Every bridge task derives the same key from the same secret, so a
//! webhook answered by one task and a stream landing on another still verify.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::calls::CallSid;
use super::phone::PhoneNumber;
use crate::ids::TenantId;

type HmacSha256 = Hmac<Sha256>;

const VERSION: &str = "v1";
/// Longer than this is not a token we issued (and is not worth parsing).
pub const MAX_TOKEN_LEN: usize = 2048;

/// What a token vouches for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamClaims {
    pub call_sid: CallSid,
    pub tenant_id: TenantId,
    /// The caller as Twilio reported it (may be `anonymous` or a short code, hence not an E.164 type).
    pub from: String,
    pub to: PhoneNumber,
    /// Unix seconds after which the token is refused.
    pub expires_at: i64,
}

/// Why a token was refused. Deliberately coarse in what the bridge logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the stream token is malformed")]
    Malformed,
    #[error("the stream token's signature is wrong")]
    BadSignature,
    #[error("the stream token has expired")]
    Expired,
}

/// The bridge's signing key.
#[derive(Clone)]
pub struct StreamTokenKey([u8; 32]);

impl std::fmt::Debug for StreamTokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamTokenKey(…)")
    }
}

impl StreamTokenKey {
    /// Derives the key from a deployment secret (the Twilio auth token), with a purpose label so the
    /// same secret never signs two kinds of thing.
    pub fn derive(secret: &str) -> Self {
        let mut mac = HmacSha256::new_from_slice(secret.as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(b"kotoba call-bridge stream token v1");
        Self(mac.finalize().into_bytes().into())
    }

    fn mac(&self, signed: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(signed);
        mac
    }

    /// `v1.<claims as base64url JSON>.<base64url HMAC over "v1.<claims>">`.
    pub fn sign(&self, claims: &StreamClaims) -> String {
        // Serialising a struct of strings and an integer cannot fail.
        let json = serde_json::to_vec(claims).unwrap_or_default();
        let signed = format!("{VERSION}.{}", URL_SAFE_NO_PAD.encode(json));
        let tag = URL_SAFE_NO_PAD.encode(self.mac(signed.as_bytes()).finalize().into_bytes());
        format!("{signed}.{tag}")
    }

    /// The claims of a token this key signed that has not expired at `now_unix`.
    /// The signature is checked (in constant time) before the claims are even parsed.
    pub fn verify(&self, token: &str, now_unix: i64) -> Result<StreamClaims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let (signed, tag) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let payload = signed
            .strip_prefix(VERSION)
            .and_then(|rest| rest.strip_prefix('.'))
            .ok_or(TokenError::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| TokenError::Malformed)?;
        self.mac(signed.as_bytes())
            .verify_slice(&tag)
            .map_err(|_| TokenError::BadSignature)?;
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Malformed)?;
        let claims: StreamClaims =
            serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
        if now_unix >= claims.expires_at {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> StreamClaims {
        StreamClaims {
            call_sid: CallSid::parse("CA0123456789abcdef0123456789abcdef").unwrap(),
            tenant_id: TenantId::parse("ten_abc").unwrap(),
            from: "+14158675309".into(),
            to: PhoneNumber::parse("+18005551212").unwrap(),
            expires_at: 1_000,
        }
    }

    #[test]
    fn tokens_round_trip_until_they_expire() {
        let key = StreamTokenKey::derive("twilio-auth-token");
        let token = key.sign(&claims());
        assert_eq!(key.verify(&token, 999).unwrap(), claims());
        assert_eq!(key.verify(&token, 1_000), Err(TokenError::Expired));
    }

    #[test]
    fn forged_or_altered_tokens_are_refused() {
        let key = StreamTokenKey::derive("twilio-auth-token");
        let token = key.sign(&claims());
        let other = StreamTokenKey::derive("another-secret");
        assert_eq!(other.verify(&token, 0), Err(TokenError::BadSignature));

        // Re-signing changed claims without the key: the tag no longer matches.
        let (_, tag) = token.rsplit_once('.').unwrap();
        let mut changed = claims();
        changed.tenant_id = TenantId::parse("ten_evil").unwrap();
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&changed).unwrap());
        let forged = format!("v1.{forged_payload}.{tag}");
        assert_eq!(key.verify(&forged, 0), Err(TokenError::BadSignature));

        for bad in [
            "",
            "v1",
            "v1..",
            "v2.abc.def",
            "v1.abc.!!!",
            &"v1.".repeat(1000),
            &token[..token.len() - 1],
        ] {
            assert!(key.verify(bad, 0).is_err(), "{bad:?} verified");
        }
    }
}
