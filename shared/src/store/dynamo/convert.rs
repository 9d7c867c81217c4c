//! JSON values ⇄ DynamoDB attribute values.
//!
//! Strings → S, numbers → N, booleans → BOOL, null → NULL, arrays → L, objects → M. N holds decimal
//! text, so integers come back as integers; a float with an integral value (`2.0`) comes back as the
//! integer `2`, since DynamoDB keeps no difference between the two.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Map, Number, Value};

use super::{Attributes, EXPIRES_AT, PK, SK};
use crate::store::{Index, Item, Key, RESERVED_ATTRIBUTES, StoreError};

pub(super) fn to_attribute(value: &Value) -> AttributeValue {
    match value {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::String(s) => AttributeValue::S(s.clone()),
        Value::Array(values) => AttributeValue::L(values.iter().map(to_attribute).collect()),
        Value::Object(map) => AttributeValue::M(
            map.iter()
                .map(|(k, v)| (k.clone(), to_attribute(v)))
                .collect(),
        ),
    }
}

pub(super) fn from_attribute(value: &AttributeValue) -> Result<Value, String> {
    Ok(match value {
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::N(n) => Value::Number(number(n)?),
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::L(values) => Value::Array(
            values
                .iter()
                .map(from_attribute)
                .collect::<Result<_, _>>()?,
        ),
        AttributeValue::M(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), from_attribute(v)?)))
                .collect::<Result<Map<_, _>, String>>()?,
        ),
        other => return Err(format!("unsupported attribute type {other:?}")),
    })
}

fn number(text: &str) -> Result<Number, String> {
    if let Ok(i) = text.parse::<i64>() {
        return Ok(i.into());
    }
    if let Ok(u) = text.parse::<u64>() {
        return Ok(u.into());
    }
    text.parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .ok_or_else(|| format!("unreadable number {text:?}"))
}

pub(super) fn item_to_dynamo(item: &Item) -> Attributes {
    let mut attributes: Attributes = item
        .attributes
        .iter()
        .map(|(name, value)| (name.clone(), to_attribute(value)))
        .collect();
    attributes.insert(PK.into(), AttributeValue::S(item.key.pk.clone()));
    attributes.insert(SK.into(), AttributeValue::S(item.key.sk.clone()));
    if let Some(expires_at) = item.expires_at {
        attributes.insert(EXPIRES_AT.into(), AttributeValue::N(expires_at.to_string()));
    }
    for (index, key) in &item.index_keys {
        attributes.insert(
            index.pk_attribute().into(),
            AttributeValue::S(key.pk.clone()),
        );
        attributes.insert(
            index.sk_attribute().into(),
            AttributeValue::S(key.sk.clone()),
        );
    }
    attributes
}

pub(super) fn item_from_dynamo(stored: &Attributes) -> Result<Item, StoreError> {
    let text = |name: &str| match stored.get(name) {
        Some(AttributeValue::S(s)) => Some(s.clone()),
        _ => None,
    };
    let (Some(pk), Some(sk)) = (text(PK), text(SK)) else {
        return Err(StoreError::Corrupt(format!(
            "a stored item has no string key: {:?}",
            stored.get(PK)
        )));
    };
    let key = Key::new(pk, sk);
    let corrupt = |what: String| StoreError::Corrupt(format!("item {}/{}: {what}", key.pk, key.sk));
    let expires_at = match stored.get(EXPIRES_AT) {
        None => None,
        Some(AttributeValue::N(n)) => Some(
            n.parse::<i64>()
                .map_err(|_| corrupt(format!("expires_at {n:?}")))?,
        ),
        Some(other) => return Err(corrupt(format!("expires_at is {other:?}"))),
    };
    let mut index_keys = BTreeMap::new();
    for index in Index::ALL {
        if let (Some(pk), Some(sk)) = (text(index.pk_attribute()), text(index.sk_attribute())) {
            index_keys.insert(index, Key::new(pk, sk));
        }
    }
    let mut attributes = Map::new();
    for (name, value) in stored {
        if RESERVED_ATTRIBUTES.contains(&name.as_str()) {
            continue;
        }
        attributes.insert(
            name.clone(),
            from_attribute(value).map_err(|e| corrupt(format!("{name}: {e}")))?,
        );
    }
    Ok(Item {
        key,
        attributes,
        index_keys,
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn json_round_trips_through_attribute_values() {
        let value = json!({
            "text": "日本語と한국어", "empty": "", "int": 42, "negative": -7, "max": i64::MAX, "min": i64::MIN,
            "huge": u64::MAX, "float": 3.25, "tiny": -0.001, "yes": true, "no": false, "null": null,
            "list": [1, "two", [3.5], {"four": null}], "map": {"nested": {"deeper": []}}, "empty_map": {}
        });
        let back = from_attribute(&to_attribute(&value)).unwrap();
        assert_eq!(back, value);
        assert!(back["int"].is_i64() && back["huge"].is_u64() && back["float"].is_f64());
    }

    #[test]
    fn numbers_read_as_dynamodb_writes_them() {
        assert_eq!(
            from_attribute(&AttributeValue::N("2".into())).unwrap(),
            json!(2)
        );
        assert_eq!(
            from_attribute(&AttributeValue::N("1E+2".into())).unwrap(),
            json!(100.0)
        );
        assert!(from_attribute(&AttributeValue::N("abc".into())).is_err());
        assert!(from_attribute(&AttributeValue::Ss(vec!["a".into()])).is_err());
    }

    #[test]
    fn items_round_trip_and_keep_store_attributes_apart() {
        let item = Item::new(Key::new("tenant#1", "site#2"))
            .with("name", "札幌")
            .with_index(Index::BySite, "site#2", "meta")
            .expiring_at(1_767_225_600);
        let stored = item_to_dynamo(&item);
        assert_eq!(stored["by_site_pk"], AttributeValue::S("site#2".into()));
        assert_eq!(stored["expires_at"], AttributeValue::N("1767225600".into()));
        assert_eq!(item_from_dynamo(&stored).unwrap(), item);
        assert!(matches!(
            item_from_dynamo(&Attributes::new()),
            Err(StoreError::Corrupt(_))
        ));
    }
}
