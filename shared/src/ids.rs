//! Identifiers: generated behind a trait (so tests can predict them) and parsed into newtypes
//! (so a malformed id never travels past the edge).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rand::RngCore;

/// Makes new ids and secrets.
pub trait IdGenerator: Send + Sync + 'static {
    /// A new unique id: 26 lowercase base32 characters, time-ordered (UUIDv7 underneath).
    fn new_id(&self) -> String;
    /// `n` bytes of secret randomness (API keys, signing secrets).
    fn secret_bytes(&self, n: usize) -> Vec<u8>;

    /// `n` bytes of secret randomness as lowercase hex.
    fn secret_hex(&self, n: usize) -> String {
        hex::encode(self.secret_bytes(n))
    }
}

/// Random, time-ordered ids from the OS's random source.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomIds;

impl IdGenerator for RandomIds {
    fn new_id(&self) -> String {
        encode_base32(uuid::Uuid::now_v7().as_bytes())
    }

    fn secret_bytes(&self, n: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; n];
        rand::rng().fill_bytes(&mut bytes);
        bytes
    }
}

/// Predictable ids for tests: `00000000000000000000000001`, `…2`, … and secrets of repeated counters.
#[derive(Debug, Clone, Default)]
pub struct SequentialIds {
    next: Arc<AtomicU64>,
}

impl IdGenerator for SequentialIds {
    fn new_id(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::SeqCst) + 1;
        format!("{n:026}")
    }

    fn secret_bytes(&self, n: usize) -> Vec<u8> {
        let seed = self.next.fetch_add(1, Ordering::SeqCst) + 1;
        (0..n).map(|i| (seed as u8).wrapping_add(i as u8)).collect()
    }
}

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// Crockford base32 (lowercase) of 16 bytes: 26 characters that sort like the bytes.
fn encode_base32(bytes: &[u8; 16]) -> String {
    let value = u128::from_be_bytes(*bytes);
    (0..26)
        .rev()
        .map(|i| ALPHABET[((value >> (i * 5)) & 31) as usize] as char)
        .collect()
}

/// A time-ordered id body (UUIDv7): for records listed in creation order.
fn time_ordered(ids: &dyn IdGenerator) -> String {
    ids.new_id()
}

/// An id body of 128 random bits: for ids that act as bearer references (a chat session, a message a
/// visitor may rate), where a time-ordered id would let one guess its neighbours.
fn unguessable(ids: &dyn IdGenerator) -> String {
    let mut bytes = [0u8; 16];
    for (b, r) in bytes.iter_mut().zip(ids.secret_bytes(16)) {
        *b = r;
    }
    encode_base32(&bytes)
}

/// Declares a validated string newtype. The type writes its rule by hand, as
/// `impl T { pub fn parse(raw: &str) -> Result<Self, String> }`; this adds what every such type needs
/// and would otherwise copy: serde through `parse`, `TryFrom<String>`, `FromStr`, `From<T> for String`,
/// `Display`, `as_str`, and reading stored rows as they are (`store::stored::FromStored`: a rule may
/// tighten after a row was written).
macro_rules! string_newtype {
    // A plain string in the OpenAPI document (attributes such as `#[schema(examples(…))]` pass through).
    ($(#[$doc:meta])* $vis:vis $name:ident) => {
        string_newtype!(@derive [utoipa::ToSchema] $(#[$doc])* $vis $name);
    };
    // The type writes its own schema (ids: a pattern with their prefix).
    (@derive [$($derive:path),*] $(#[$doc:meta])* $vis:vis $name:ident) => {
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize $(, $derive)*)]
        #[serde(try_from = "String", into = "String")]
        $(#[$doc])*
        $vis struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                Self::parse(&s)
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                Self::parse(s)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl $crate::store::stored::FromStored for $name {
            fn from_stored(raw: String) -> Self {
                Self(raw)
            }
        }
    };
}
pub(crate) use string_newtype;

/// Declares an id newtype that only parsing can build: a fixed prefix and a body of id characters.
macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        id_type!($(#[$doc])* $name, $prefix, time_ordered);
    };
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $body:ident) => {
        string_newtype!(@derive [] $(#[$doc])* pub $name);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A new id from the generator.
            pub fn generate(ids: &dyn IdGenerator) -> Self {
                Self(format!("{}{}", $prefix, $body(ids)))
            }

            pub fn parse(raw: &str) -> Result<Self, String> {
                let body = raw.strip_prefix($prefix).ok_or_else(|| {
                    format!("{raw:?} is not a {} (expected the prefix {:?})", stringify!($name), $prefix)
                })?;
                let ok = (1..=64).contains(&body.len())
                    && body.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
                if ok { Ok(Self(raw.to_string())) } else { Err(format!("{raw:?} is not a valid {}", stringify!($name))) }
            }
        }

        /// In the OpenAPI document: a string with the id's prefix, as `parse` accepts.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .pattern(Some(concat!("^", $prefix, "[a-z0-9]{1,64}$")))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

id_type!(
    /// A tenant: one business.
    TenantId, "ten_"
);
id_type!(
    /// A site a tenant trains and embeds.
    SiteId, "site_"
);
id_type!(
    /// An API key's public id (what `DELETE /api/keys/{key_id}` takes); never the secret.
    KeyId, "key_"
);
id_type!(
    /// A training job.
    JobId, "job_"
);

id_type!(
    /// A chat session (the widget keeps it in `sessionStorage`). Random: it is all a visitor shows.
    SessionId, "sess_", unguessable
);
id_type!(
    /// An outbound webhook endpoint of a tenant.
    WebhookId, "wh_"
);
id_type!(
    /// One event on its way to one endpoint: the Standard Webhooks `webhook-id`, the same on every retry.
    DeliveryId, "msg_"
);
id_type!(
    /// A domain event, before it fans out to a tenant's endpoints.
    EventId, "evt_"
);
id_type!(
    /// An audit log entry.
    AuditId, "aud_"
);
id_type!(
    /// One answer: returned with it, named by feedback and the usage log. Random, like sessions.
    MessageId, "msg_", unguessable
);
id_type!(
    /// A credit package the operator sells.
    PackageId, "pkg_"
);
id_type!(
    /// One attempt to buy a credit package: the Stripe PaymentIntent's idempotency key and metadata.
    PurchaseId, "pur_"
);

/// Shared handle to an id generator.
pub type Ids = Arc<dyn IdGenerator>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_are_26_sortable_characters() {
        let a = RandomIds.new_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = RandomIds.new_id();
        assert_eq!(a.len(), 26);
        assert!(a < b, "{a} then {b}");
        assert!(a.bytes().all(|c| ALPHABET.contains(&c)));
    }

    #[test]
    fn id_types_parse_their_own_shape_only() {
        let site = SiteId::generate(&RandomIds);
        assert_eq!(SiteId::parse(site.as_str()).unwrap(), site);
        assert!(SiteId::parse("ten_abc").is_err());
        assert!(SiteId::parse("site_").is_err());
        assert!(SiteId::parse("site_ABC").is_err());
        assert!(SiteId::parse("site_a/b").is_err());
        assert_eq!(
            TenantId::parse("ten_00000000000000000000000001")
                .unwrap()
                .as_str(),
            "ten_00000000000000000000000001"
        );
    }

    #[test]
    fn session_and_message_ids_are_not_time_ordered() {
        // Ids minted within the same instant must not share a guessable prefix or sort in mint order:
        // knowing one visitor's id must say nothing about the next one.
        let sessions: Vec<String> = (0..64)
            .map(|_| SessionId::generate(&RandomIds).to_string())
            .collect();
        let messages: Vec<String> = (0..64)
            .map(|_| MessageId::generate(&RandomIds).to_string())
            .collect();
        for ids in [&sessions, &messages] {
            assert!(
                !ids.windows(2).all(|w| w[0] < w[1]),
                "64 ids came out in mint order: {ids:?}"
            );
            let prefix = |s: &String| s[..s.len() - 16].to_string();
            let mut prefixes: Vec<String> = ids.iter().map(prefix).collect();
            prefixes.dedup();
            assert!(
                prefixes.len() > 32,
                "ids share their leading characters: {ids:?}"
            );
            for id in ids.iter() {
                assert!(SessionId::parse(id).is_ok() || MessageId::parse(id).is_ok());
            }
        }
    }

    #[test]
    fn sequential_ids_are_predictable() {
        let ids = SequentialIds::default();
        assert_eq!(ids.new_id(), "00000000000000000000000001");
        assert_eq!(ids.new_id(), "00000000000000000000000002");
    }

    string_newtype!(
        /// A lowercase word, for the macro's test: `parse` normalises and refuses.
        Word
    );

    impl Word {
        fn parse(raw: &str) -> Result<Self, String> {
            let s = raw.trim().to_lowercase();
            if !s.is_empty() && s.chars().all(char::is_alphabetic) {
                Ok(Self(s))
            } else {
                Err(format!("{raw:?} is not a word"))
            }
        }
    }

    #[test]
    fn string_newtypes_go_through_parse_everywhere_but_stored_rows() {
        use crate::store::stored::FromStored;

        let word: Word = " Kotoba ".parse().unwrap();
        assert_eq!(word.as_str(), "kotoba");
        assert_eq!(word.to_string(), "kotoba");
        assert_eq!(String::from(word.clone()), "kotoba");
        assert_eq!(Word::try_from("KOTOBA".to_string()).unwrap(), word);
        assert!("two words".parse::<Word>().is_err());
        assert!(Word::try_from(String::new()).is_err());

        // serde: in through `parse`, out as the plain string.
        assert_eq!(serde_json::to_string(&word).unwrap(), r#""kotoba""#);
        assert_eq!(serde_json::from_str::<Word>(r#""Kotoba""#).unwrap(), word);
        let refused = serde_json::from_str::<Word>(r#""k2""#).unwrap_err();
        assert!(refused.to_string().contains("is not a word"), "{refused}");

        // A stored row written under an older rule reads back as it is.
        assert_eq!(Word::from_stored("k2".into()).as_str(), "k2");
    }
}
