//! Reading stored records leniently.
//!
//! Records are validated when they are written: API input parses into the validating types before any
//! write. A row written under an older, looser rule must still read back, or tightening a rule would
//! turn existing rows into 500s. So fields whose types validate are read through [`lenient`] (and its
//! `Vec`/`Option` forms), which take the stored text as it is; and listings read their rows through
//! [`readable`], which logs and skips a row that no longer reads at all instead of failing the page.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::Item;

/// A validating string newtype that can also hold text stored under an older rule.
pub trait FromStored: Sized {
    /// The stored text, as it is: no validation (it was validated when written).
    fn from_stored(raw: String) -> Self;
}

/// `#[serde(deserialize_with = "…")]` for a validating field of a stored record.
pub fn lenient<'de, D: Deserializer<'de>, T: FromStored>(d: D) -> Result<T, D::Error> {
    String::deserialize(d).map(T::from_stored)
}

/// [`lenient`] for a list.
pub fn lenient_vec<'de, D: Deserializer<'de>, T: FromStored>(d: D) -> Result<Vec<T>, D::Error> {
    Vec::<String>::deserialize(d).map(|raw| raw.into_iter().map(T::from_stored).collect())
}

/// [`lenient`] for an optional field.
pub fn lenient_option<'de, D: Deserializer<'de>, T: FromStored>(
    d: D,
) -> Result<Option<T>, D::Error> {
    Option::<String>::deserialize(d).map(|raw| raw.map(T::from_stored))
}

/// An RFC 3339 time of a stored record (`#[serde(deserialize_with = "…")]`). Text that does not
/// parse (written by hand, or by an older rule) reads as the Unix epoch, logged: a time long past, which
/// every caller treats as "due", never as a 500.
pub fn lenient_time<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
    let raw = String::deserialize(d)?;
    Ok(parse_time(&raw).unwrap_or(OffsetDateTime::UNIX_EPOCH))
}

/// [`lenient_time`] for an optional field: text that does not parse reads as absent, logged.
pub fn lenient_time_option<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<OffsetDateTime>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.and_then(|raw| parse_time(&raw)))
}

fn parse_time(raw: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(raw, &Rfc3339)
        .inspect_err(
            |e| tracing::warn!(stored = raw, error = %e, "a stored time that does not parse"),
        )
        .ok()
}

/// The records of a listing's items. A row that no longer reads as a record is logged and left out:
/// one bad row must not hide all its neighbours behind a 500.
pub fn readable<T: DeserializeOwned>(items: &[Item]) -> Vec<T> {
    items
        .iter()
        .filter_map(|item| match item.to_record() {
            Ok(record) => Some(record),
            Err(e) => {
                tracing::warn!(pk = %item.key.pk, sk = %item.key.sk, error = %e, "skipping a stored row that does not read");
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::Key;

    #[derive(Debug, PartialEq)]
    struct Shouty(String);

    impl FromStored for Shouty {
        fn from_stored(raw: String) -> Self {
            Self(raw)
        }
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Record {
        #[serde(deserialize_with = "lenient")]
        name: Shouty,
        #[serde(deserialize_with = "lenient_vec")]
        tags: Vec<Shouty>,
        #[serde(default, deserialize_with = "lenient_option")]
        note: Option<Shouty>,
    }

    #[test]
    fn listings_skip_rows_that_do_not_read_and_keep_the_rest() {
        let row = |sk: &str, value: serde_json::Value| {
            let mut item = Item::new(Key::new("p", sk));
            item.attributes = value.as_object().unwrap().clone();
            item
        };
        let items = [
            row("1", json!({"name": "a", "tags": ["x"], "note": null})),
            row("2", json!({"name": 42, "tags": []})),
            row("3", json!({"name": "c", "tags": []})),
        ];
        let records: Vec<Record> = readable(&items);
        assert_eq!(
            records,
            [
                Record {
                    name: Shouty("a".into()),
                    tags: vec![Shouty("x".into())],
                    note: None
                },
                Record {
                    name: Shouty("c".into()),
                    tags: vec![],
                    note: None
                },
            ]
        );
    }
}
