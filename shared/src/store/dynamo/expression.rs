//! DynamoDB expressions for the store's writes: conditions that treat expired items as absent, and the
//! update and add expressions with their placeholders.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;

use super::{Attributes, EXPIRES_AT, PK, convert};
use crate::store::{Add, Condition, StoreError, Update};

/// Placeholders for one request's expressions. DynamoDB rejects placeholders an expression does not
/// use, so names and values are only registered as the expressions are written.
#[derive(Default)]
pub(super) struct Expr {
    names: BTreeMap<String, String>,
    values: HashMap<String, AttributeValue>,
    now: Option<String>,
}

impl Expr {
    /// The placeholder for an attribute name (so no name ever collides with a reserved word).
    pub(super) fn name(&mut self, attribute: &str) -> String {
        let count = self.names.len();
        self.names
            .entry(attribute.to_owned())
            .or_insert_with(|| format!("#n{count}"))
            .clone()
    }

    pub(super) fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    pub(super) fn now(&mut self, now: i64) -> String {
        if let Some(placeholder) = &self.now {
            return placeholder.clone();
        }
        let placeholder = self.value(AttributeValue::N(now.to_string()));
        self.now = Some(placeholder.clone());
        placeholder
    }

    /// True for a missing item and for a live one (a missing `expires_at` never expires).
    pub(super) fn live(&mut self, now: i64) -> String {
        let (expires, now) = (self.name(EXPIRES_AT), self.now(now));
        format!("(attribute_not_exists({expires}) OR {expires} > {now})")
    }

    /// True for an item that exists but has expired.
    pub(super) fn expired(&mut self, now: i64) -> String {
        let (expires, now) = (self.name(EXPIRES_AT), self.now(now));
        format!("{expires} <= {now}")
    }

    /// True for a live item. Left unparenthesised: DynamoDB rejects `((…))` as redundant parentheses,
    /// and `AND` needs none (every `OR` here carries its own).
    pub(super) fn exists_live(&mut self, now: i64) -> String {
        let pk = self.name(PK);
        let live = self.live(now);
        format!("attribute_exists({pk}) AND {live}")
    }

    /// A [`Condition`] as a condition expression, treating expired items as absent.
    pub(super) fn condition(&mut self, condition: &Condition, now: i64) -> Option<String> {
        match condition {
            Condition::None => None,
            Condition::IfAbsent => {
                let pk = self.name(PK);
                let expired = self.expired(now);
                Some(format!("(attribute_not_exists({pk}) OR {expired})"))
            }
            Condition::IfExists => Some(self.exists_live(now)),
            Condition::AttributeEquals(name, value) => {
                let exists = self.exists_live(now);
                let (name, value) = (self.name(name), self.value(convert::to_attribute(value)));
                Some(format!("{exists} AND {name} = {value}"))
            }
        }
    }

    /// An update's condition: the item exists and is live, and the caller's condition holds.
    pub(super) fn update_condition(&mut self, condition: &Condition, now: i64) -> String {
        match condition {
            Condition::None | Condition::IfExists => self.exists_live(now),
            // Already requires a live item.
            Condition::AttributeEquals(..) => self.condition(condition, now).unwrap_or_default(),
            // Can never hold for an update, but say so in DynamoDB's terms rather than special-casing it.
            Condition::IfAbsent => {
                let exists = self.exists_live(now);
                let absent = self.condition(condition, now).unwrap_or_default();
                format!("{exists} AND {absent}")
            }
        }
    }

    pub(super) fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| {
            self.names
                .iter()
                .map(|(a, p)| (p.clone(), a.clone()))
                .collect()
        })
    }

    pub(super) fn values(&self) -> Option<Attributes> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}

/// The expressions of one `UpdateItem` (a plain update, or an `ADD` to a counter).
pub(super) struct UpdateParts {
    pub(super) update: String,
    pub(super) condition: String,
    pub(super) expr: Expr,
}

impl UpdateParts {
    /// The update and condition expressions of `update`; None when it changes nothing.
    pub(super) fn of(update: &Update, now: i64) -> Option<Self> {
        if update.set.is_empty() && update.remove.is_empty() {
            return None;
        }
        let mut expr = Expr::default();
        let condition = expr.update_condition(&update.condition, now);
        let mut clauses = Vec::new();
        if !update.set.is_empty() {
            let sets: Vec<String> = update
                .set
                .iter()
                .map(|(name, value)| {
                    format!(
                        "{} = {}",
                        expr.name(name),
                        expr.value(convert::to_attribute(value))
                    )
                })
                .collect();
            clauses.push(format!("SET {}", sets.join(", ")));
        }
        if !update.remove.is_empty() {
            let removes: Vec<String> = update.remove.iter().map(|name| expr.name(name)).collect();
            clauses.push(format!("REMOVE {}", removes.join(", ")));
        }
        Some(Self {
            update: clauses.join(" "),
            condition,
            expr,
        })
    }

    /// `ADD` to a live or missing item, within the limit: `current + amount <= limit`, i.e.
    /// `current <= limit - amount`, and above the floor: `current >= floor - amount`, where a missing
    /// attribute counts as 0.
    pub(super) fn of_add(add: &Add, now: i64) -> Result<Self, StoreError> {
        let mut expr = Expr::default();
        let mut condition = expr.live(now);
        let mut adds = Vec::new();
        for (name, amount, limit, floor) in add.counters() {
            if let Some(limit) = limit {
                let attribute = expr.name(name);
                match limit.checked_sub(amount) {
                    Some(max) => {
                        let zero_fits = 0 <= max;
                        let max = expr.value(AttributeValue::N(max.to_string()));
                        // A missing attribute is 0, which is within the limit exactly when 0 <= max.
                        let within = if zero_fits {
                            format!("(attribute_not_exists({attribute}) OR {attribute} <= {max})")
                        } else {
                            format!("(attribute_exists({attribute}) AND {attribute} <= {max})")
                        };
                        condition = format!("{condition} AND {within}");
                    }
                    // limit - amount below i64::MIN: nothing an i64 counter holds is low enough.
                    None if amount > 0 => return Err(StoreError::ConditionFailed),
                    // limit - amount above i64::MAX: every counter is within it.
                    None => {}
                }
            }
            if let Some(floor) = floor {
                let attribute = expr.name(name);
                match floor.checked_sub(amount) {
                    Some(min) => {
                        let zero_fits = 0 >= min;
                        let min = expr.value(AttributeValue::N(min.to_string()));
                        // A missing attribute is 0, which is above the floor exactly when 0 >= min.
                        let within = if zero_fits {
                            format!("(attribute_not_exists({attribute}) OR {attribute} >= {min})")
                        } else {
                            format!("(attribute_exists({attribute}) AND {attribute} >= {min})")
                        };
                        condition = format!("{condition} AND {within}");
                    }
                    // floor - amount above i64::MAX: nothing an i64 counter holds is high enough.
                    None if amount < 0 => return Err(StoreError::ConditionFailed),
                    // floor - amount below i64::MIN: every counter is above it.
                    None => {}
                }
            }
            let (attribute, amount) = (
                expr.name(name),
                expr.value(AttributeValue::N(amount.to_string())),
            );
            adds.push(format!("{attribute} {amount}"));
        }
        let mut update = format!("ADD {}", adds.join(", "));
        if let Some(expires_at) = add.expires_at {
            let expires = expr.name(EXPIRES_AT);
            let value = expr.value(AttributeValue::N(expires_at.to_string()));
            update.push_str(&format!(
                " SET {expires} = if_not_exists({expires}, {value})"
            ));
        }
        Ok(Self {
            update,
            condition,
            expr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Key;

    #[test]
    fn add_conditions_count_a_missing_attribute_as_zero() {
        let add = Add::new(Key::new("p", "s"), "n", 3).up_to(2);
        let parts = UpdateParts::of_add(&add, 100).unwrap();
        assert!(
            parts
                .condition
                .contains("attribute_exists(#n1) AND #n1 <= :v1"),
            "{}",
            parts.condition
        );
        let add = Add::new(Key::new("p", "s"), "n", 1)
            .up_to(2)
            .expiring_at(200);
        let parts = UpdateParts::of_add(&add, 100).unwrap();
        assert!(
            parts
                .condition
                .contains("attribute_not_exists(#n1) OR #n1 <= :v1"),
            "{}",
            parts.condition
        );
        assert_eq!(
            parts.update,
            "ADD #n1 :v2 SET #n0 = if_not_exists(#n0, :v3)"
        );
        assert_eq!(
            parts.expr.values().unwrap()[":v1"],
            AttributeValue::N("1".into())
        );
        assert!(matches!(
            UpdateParts::of_add(&Add::new(Key::new("p", "s"), "n", 5).up_to(i64::MIN), 0),
            Err(StoreError::ConditionFailed)
        ));
    }

    #[test]
    fn floors_count_a_missing_attribute_as_zero() {
        let add = Add::new(Key::new("p", "s"), "n", -3).at_least(0);
        let parts = UpdateParts::of_add(&add, 100).unwrap();
        assert!(
            parts
                .condition
                .contains("attribute_exists(#n1) AND #n1 >= :v1"),
            "{}",
            parts.condition
        );
        assert_eq!(
            parts.expr.values().unwrap()[":v1"],
            AttributeValue::N("3".into())
        );
        let add = Add::new(Key::new("p", "s"), "n", 2).at_least(0);
        let parts = UpdateParts::of_add(&add, 100).unwrap();
        assert!(
            parts
                .condition
                .contains("attribute_not_exists(#n1) OR #n1 >= :v1"),
            "{}",
            parts.condition
        );
        assert!(matches!(
            UpdateParts::of_add(&Add::new(Key::new("p", "s"), "n", -5).at_least(i64::MAX), 0),
            Err(StoreError::ConditionFailed)
        ));
    }

    #[test]
    fn unused_placeholders_are_never_sent() {
        let mut expr = Expr::default();
        assert_eq!(expr.condition(&Condition::None, 1), None);
        assert!(expr.names().is_none() && expr.values().is_none());
        let condition = expr.condition(&Condition::IfAbsent, 1).unwrap();
        assert_eq!(condition, "(attribute_not_exists(#n0) OR #n1 <= :v0)");
        assert_eq!(expr.names().unwrap().len(), 2);
    }
}
