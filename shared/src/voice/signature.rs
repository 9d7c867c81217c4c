//! Twilio's webhook signature (`X-Twilio-Signature`): base64 of HMAC-SHA1, keyed by the account's auth
//! token, over the URL Twilio requested followed by every POST parameter (sorted by name, then value)
//! as `name` + `value` with no delimiters.
//!
//! The URL is always built from the configured public base URL, never from `Host` or `X-Forwarded-*`
//! (which a caller controls). Like Twilio's own validators, the URL is tried both without a port and with
//! the scheme's default port, because Twilio's signing is inconsistent about it. Identical repeated pairs
//! count once, as in the official `twilio` package's `RequestValidator`, which the tests check against.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use url::Url;

type HmacSha1 = Hmac<Sha1>;

/// The header Twilio signs its webhooks in.
pub const SIGNATURE_HEADER: &str = "x-twilio-signature";

/// Validates webhook signatures with the account's auth token.
#[derive(Clone)]
pub struct TwilioValidator {
    auth_token: Vec<u8>,
}

impl std::fmt::Debug for TwilioValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TwilioValidator(…)")
    }
}

impl TwilioValidator {
    pub fn new(auth_token: &str) -> Self {
        Self {
            auth_token: auth_token.as_bytes().to_vec(),
        }
    }

    fn mac(&self, url: &str, params: &[(String, String)]) -> HmacSha1 {
        let mut pairs: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        // Byte order of UTF-8 is code point order, which is how Twilio (and Python's sorted) orders names.
        pairs.sort_unstable();
        pairs.dedup();
        // Any key length is valid for HMAC, so this cannot fail.
        let mut mac = HmacSha1::new_from_slice(&self.auth_token)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(url.as_bytes());
        for (name, value) in pairs {
            mac.update(name.as_bytes());
            mac.update(value.as_bytes());
        }
        mac
    }

    /// The signature Twilio would send for this exact URL text and these parameters.
    pub fn compute(&self, url: &str, params: &[(String, String)]) -> String {
        STANDARD.encode(self.mac(url, params).finalize().into_bytes())
    }

    /// Whether `signature` signs `url` (in either port form) and `params`. Constant time in the MAC.
    pub fn validate(&self, url: &Url, params: &[(String, String)], signature: &str) -> bool {
        let Ok(presented) = STANDARD.decode(signature.trim()) else {
            return false;
        };
        let (without_port, with_port) = port_forms(url);
        // Both forms are always checked, so timing does not tell which one matched.
        let a = self
            .mac(&without_port, params)
            .verify_slice(&presented)
            .is_ok();
        let b = self
            .mac(&with_port, params)
            .verify_slice(&presented)
            .is_ok();
        a | b
    }
}

/// The URL's text without any port and with its port (the scheme's default when none is given), path
/// and query kept exactly.
pub fn port_forms(url: &Url) -> (String, String) {
    let scheme = url.scheme();
    let host = url.host_str().unwrap_or_default();
    let userinfo = match (url.username(), url.password()) {
        ("", None) => String::new(),
        (user, None) => format!("{user}@"),
        (user, Some(password)) => format!("{user}:{password}@"),
    };
    let rest = &url[url::Position::BeforePath..];
    let without = format!("{scheme}://{userinfo}{host}{rest}");
    let with = match url.port_or_known_default() {
        Some(port) => format!("{scheme}://{userinfo}{host}:{port}{rest}"),
        None => without.clone(),
    };
    (without, with)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Twilio's documented example (also in the official helper libraries' tests).
    #[test]
    fn the_known_vector_validates() {
        let validator = TwilioValidator::new("12345");
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let p = params(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ]);
        assert_eq!(validator.compute(url, &p), "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
        let parsed = Url::parse(url).unwrap();
        assert!(validator.validate(&parsed, &p, "RSOYDt4T1cUTdK1PDd93/VVr8B8="));
        // Order of arrival does not matter; content does.
        let mut shuffled = p.clone();
        shuffled.reverse();
        assert!(validator.validate(&parsed, &shuffled, "RSOYDt4T1cUTdK1PDd93/VVr8B8="));
        let mut tampered = p.clone();
        tampered[2].1 = "1235".into();
        assert!(!validator.validate(&parsed, &tampered, "RSOYDt4T1cUTdK1PDd93/VVr8B8="));
        let mut extra = p.clone();
        extra.push(("Extra".into(), "x".into()));
        assert!(!validator.validate(&parsed, &extra, "RSOYDt4T1cUTdK1PDd93/VVr8B8="));
        assert!(!TwilioValidator::new("12346").validate(
            &parsed,
            &p,
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
    }

    #[test]
    fn both_port_forms_are_accepted() {
        let validator = TwilioValidator::new("secret");
        let p = params(&[("To", "+18005551212")]);
        let url = Url::parse("https://bridge.example.com/incoming-call-realtime").unwrap();
        let with_port =
            validator.compute("https://bridge.example.com:443/incoming-call-realtime", &p);
        let without_port =
            validator.compute("https://bridge.example.com/incoming-call-realtime", &p);
        assert!(validator.validate(&url, &p, &with_port));
        assert!(validator.validate(&url, &p, &without_port));
        let other_port =
            validator.compute("https://bridge.example.com:8443/incoming-call-realtime", &p);
        assert!(!validator.validate(&url, &p, &other_port));
        let http = Url::parse("http://127.0.0.1/x?y=1").unwrap();
        assert_eq!(
            port_forms(&http),
            (
                "http://127.0.0.1/x?y=1".into(),
                "http://127.0.0.1:80/x?y=1".into()
            )
        );
    }

    #[test]
    fn repeated_keys_sort_by_value_and_keep_each() {
        let validator = TwilioValidator::new("secret");
        let a = params(&[("Tag", "b"), ("Tag", "a"), ("A", "1")]);
        let b = params(&[("A", "1"), ("Tag", "a"), ("Tag", "b")]);
        assert_eq!(
            validator.compute("https://x/", &a),
            validator.compute("https://x/", &b)
        );
        // Equivalent to signing the concatenation explicitly.
        let mut mac = HmacSha1::new_from_slice(b"secret").unwrap();
        mac.update(b"https://x/A1TagaTagb");
        assert_eq!(
            validator.compute("https://x/", &a),
            STANDARD.encode(mac.finalize().into_bytes())
        );
    }

    #[test]
    fn garbage_signatures_are_refused() {
        let validator = TwilioValidator::new("secret");
        let url = Url::parse("https://x/").unwrap();
        for bad in ["", "not base64!", "AAAA", &"A".repeat(10_000)] {
            assert!(!validator.validate(&url, &[], bad));
        }
    }
}
