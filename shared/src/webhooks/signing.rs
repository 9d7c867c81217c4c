//! Standard Webhooks signatures: `webhook-signature: v1,<base64 HMAC-SHA256("{id}.{timestamp}.{body}")>`,
//! several space-separated while a rotated-out secret still signs.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::secret::SigningSecret;

pub const ID_HEADER: &str = "webhook-id";
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
pub const SIGNATURE_HEADER: &str = "webhook-signature";

/// One `v1,<base64>` signature.
pub fn sign(secret: &SigningSecret, id: &str, timestamp: i64, body: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.key_bytes()).expect("HMAC takes any key length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body.as_bytes());
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}

/// The header value: one signature per secret, space-separated (current first).
pub fn signature_header(secrets: &[SigningSecret], id: &str, timestamp: i64, body: &str) -> String {
    secrets
        .iter()
        .map(|s| sign(s, id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether any `v1` signature of the header matches (for our own tests and tools; receivers use their
/// Standard Webhooks library).
pub fn verify(secret: &SigningSecret, id: &str, timestamp: i64, body: &str, header: &str) -> bool {
    let expected = sign(secret, id, timestamp, body);
    header.split(' ').any(|candidate| {
        use subtle::ConstantTimeEq;
        candidate.len() == expected.len()
            && bool::from(candidate.as_bytes().ct_eq(expected.as_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_specification_example() {
        // The example of the Standard Webhooks specification (and its reference libraries' tests).
        let secret = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn rotation_signs_with_every_secret_and_each_verifies() {
        let old = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let new = SigningSecret::parse("whsec_dGhpcyBpcyBhIHRlc3Qgc2VjcmV0IGtleSEh").unwrap();
        let header = signature_header(&[new.clone(), old.clone()], "msg_1", 10, "{}");
        assert_eq!(header.split(' ').count(), 2);
        assert!(verify(&new, "msg_1", 10, "{}", &header));
        assert!(verify(&old, "msg_1", 10, "{}", &header));
        assert!(!verify(&old, "msg_2", 10, "{}", &header));
        assert!(!verify(&old, "msg_1", 11, "{}", &header));
    }
}
