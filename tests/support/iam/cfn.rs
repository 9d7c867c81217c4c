//! CloudFormation's intrinsic functions, evaluated against the emulator: a template value (`!Ref`,
//! `!GetAtt`, `!Sub`, `!If`, `Fn::ImportValue` …) becomes the plain JSON it would be once deployed, with
//! every resource a test created standing in for the stack's.

use std::collections::BTreeMap;

use serde_json::{Value as Json, json};
use serde_norway::Value;

/// The emulator's account and region (moto's defaults).
pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";

/// One logical resource as deployed: what `!Ref` gives, and its attributes for `!GetAtt`.
#[derive(Debug, Clone, Default)]
pub struct Deployed {
    pub reference: String,
    pub attributes: BTreeMap<String, String>,
}

impl Deployed {
    pub fn new(reference: impl Into<String>) -> Self {
        Self {
            reference: reference.into(),
            attributes: BTreeMap::new(),
        }
    }

    pub fn with(mut self, attribute: &str, value: impl Into<String>) -> Self {
        self.attributes.insert(attribute.to_string(), value.into());
        self
    }
}

/// A stack as deployed on the emulator: parameter values, resources, and the exports other stacks import.
#[derive(Debug, Clone)]
pub struct Stack {
    pub name: String,
    pub parameters: BTreeMap<String, String>,
    pub resources: BTreeMap<String, Deployed>,
    pub exports: BTreeMap<String, String>,
    /// The template's `Conditions`, evaluated on demand.
    conditions: BTreeMap<String, Value>,
}

impl Stack {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            parameters: BTreeMap::new(),
            resources: BTreeMap::new(),
            exports: BTreeMap::new(),
            conditions: BTreeMap::new(),
        }
    }

    pub fn parameter(mut self, name: &str, value: impl Into<String>) -> Self {
        self.parameters.insert(name.to_string(), value.into());
        self
    }

    pub fn resource(mut self, id: &str, deployed: Deployed) -> Self {
        self.resources.insert(id.to_string(), deployed);
        self
    }

    pub fn export(mut self, name: &str, value: impl Into<String>) -> Self {
        self.exports.insert(name.to_string(), value.into());
        self
    }

    /// Takes the template's parameter defaults (for those not set) and its conditions.
    pub fn for_template(mut self, template: &Value) -> Self {
        if let Some(parameters) = template.get("Parameters").and_then(Value::as_mapping) {
            for (name, definition) in parameters {
                let name = name.as_str().expect("parameter name").to_string();
                if self.parameters.contains_key(&name) {
                    continue;
                }
                let default = match definition.get("Default") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    Some(Value::Bool(b)) => b.to_string(),
                    _ => continue,
                };
                self.parameters.insert(name, default);
            }
        }
        if let Some(conditions) = template.get("Conditions").and_then(Value::as_mapping) {
            for (name, condition) in conditions {
                self.conditions
                    .insert(name.as_str().unwrap().to_string(), condition.clone());
            }
        }
        self
    }

    fn pseudo(&self, name: &str) -> Option<String> {
        Some(match name {
            "AWS::Region" => REGION.to_string(),
            "AWS::AccountId" => ACCOUNT.to_string(),
            "AWS::Partition" => "aws".to_string(),
            "AWS::URLSuffix" => "amazonaws.com".to_string(),
            "AWS::StackName" => self.name.clone(),
            _ => return None,
        })
    }

    fn reference(&self, name: &str) -> Option<Json> {
        if name == "AWS::NoValue" {
            return None;
        }
        if let Some(value) = self.pseudo(name) {
            return Some(Json::String(value));
        }
        if let Some(value) = self.parameters.get(name) {
            return Some(Json::String(value.clone()));
        }
        let deployed = self.resources.get(name).unwrap_or_else(|| {
            panic!(
                "the IAM harness does not know what {name} is on the emulator: \
                 add it to the stack in tests/support/iam/mod.rs"
            )
        });
        Some(Json::String(deployed.reference.clone()))
    }

    fn attribute(&self, id: &str, attribute: &str) -> String {
        self.resources
            .get(id)
            .and_then(|d| d.attributes.get(attribute))
            .cloned()
            .unwrap_or_else(|| {
                panic!(
                    "the IAM harness does not know {id}.{attribute} on the emulator: \
                     add it to the stack in tests/support/iam/mod.rs"
                )
            })
    }

    /// Whether the named condition holds.
    pub fn condition(&self, name: &str) -> bool {
        let condition = self
            .conditions
            .get(name)
            .unwrap_or_else(|| panic!("no condition {name}"))
            .clone();
        self.truth(&condition)
    }

    fn truth(&self, value: &Value) -> bool {
        match self.eval(value) {
            Some(Json::Bool(b)) => b,
            other => panic!("a condition evaluated to {other:?}"),
        }
    }

    /// The deployed form of a template value (`None`: `AWS::NoValue`, the value is left out).
    pub fn eval(&self, value: &Value) -> Option<Json> {
        match value {
            Value::Null => Some(Json::Null),
            Value::Bool(b) => Some(Json::Bool(*b)),
            Value::Number(n) => Some(serde_json::to_value(n).expect("a number")),
            Value::String(s) => Some(Json::String(s.clone())),
            Value::Sequence(items) => Some(Json::Array(
                items.iter().filter_map(|v| self.eval(v)).collect(),
            )),
            Value::Mapping(mapping) => {
                if mapping.len() == 1 {
                    let (key, argument) = mapping.iter().next().unwrap();
                    if let Some(name) = key.as_str().and_then(long_form) {
                        return self.function(name, argument);
                    }
                }
                let mut out = serde_json::Map::new();
                for (key, v) in mapping {
                    if let Some(v) = self.eval(v) {
                        out.insert(key.as_str().expect("string keys").to_string(), v);
                    }
                }
                Some(Json::Object(out))
            }
            Value::Tagged(tagged) => {
                let tag = tagged.tag.to_string();
                self.function(tag.trim_start_matches('!'), &tagged.value)
            }
        }
    }

    fn text(&self, value: &Value) -> String {
        match self.eval(value) {
            Some(Json::String(s)) => s,
            Some(Json::Number(n)) => n.to_string(),
            other => panic!("expected a string, got {other:?} from {value:?}"),
        }
    }

    fn function(&self, name: &str, argument: &Value) -> Option<Json> {
        let list = || {
            argument
                .as_sequence()
                .unwrap_or_else(|| panic!("{name} takes a list"))
        };
        match name {
            "Ref" => self.reference(argument.as_str().expect("!Ref of a name")),
            "GetAtt" => {
                let (id, attribute) = match argument {
                    Value::String(s) => s.split_once('.').expect("!GetAtt X.Attribute"),
                    Value::Sequence(parts) => (
                        parts[0].as_str().expect("logical id"),
                        parts[1].as_str().expect("attribute"),
                    ),
                    other => panic!("!GetAtt {other:?}"),
                };
                Some(Json::String(self.attribute(id, attribute)))
            }
            "Sub" => {
                let (text, variables) = match argument {
                    Value::String(s) => (s.clone(), BTreeMap::new()),
                    Value::Sequence(parts) => {
                        let text = parts[0].as_str().expect("!Sub text").to_string();
                        let mut variables = BTreeMap::new();
                        for (k, v) in parts[1].as_mapping().expect("!Sub variables") {
                            variables.insert(k.as_str().unwrap().to_string(), self.text(v));
                        }
                        (text, variables)
                    }
                    other => panic!("!Sub {other:?}"),
                };
                Some(Json::String(self.substitute(&text, &variables)))
            }
            "If" => {
                let parts = list();
                let branch = if self.condition(parts[0].as_str().expect("condition name")) {
                    &parts[1]
                } else {
                    &parts[2]
                };
                self.eval(branch)
            }
            "Equals" => {
                let parts = list();
                Some(Json::Bool(self.eval(&parts[0]) == self.eval(&parts[1])))
            }
            "Not" => Some(Json::Bool(!self.truth(&list()[0]))),
            "And" => Some(Json::Bool(list().iter().all(|c| self.truth(c)))),
            "Or" => Some(Json::Bool(list().iter().any(|c| self.truth(c)))),
            "Condition" => Some(Json::Bool(
                self.condition(argument.as_str().expect("condition name")),
            )),
            "ImportValue" => {
                let export = self.text(argument);
                Some(Json::String(
                    self.exports
                        .get(&export)
                        .cloned()
                        .unwrap_or_else(|| panic!("the IAM harness has no export {export}")),
                ))
            }
            "Join" => {
                let parts = list();
                let separator = parts[0].as_str().expect("separator");
                let items = match self.eval(&parts[1]) {
                    Some(Json::Array(items)) => items,
                    other => panic!("!Join of {other:?}"),
                };
                Some(Json::String(
                    items
                        .iter()
                        .map(|i| i.as_str().expect("strings").to_string())
                        .collect::<Vec<_>>()
                        .join(separator),
                ))
            }
            "Select" => {
                let parts = list();
                let index = self.text(&parts[0]).parse::<usize>().expect("an index");
                match self.eval(&parts[1]) {
                    Some(Json::Array(items)) => items.get(index).cloned(),
                    other => panic!("!Select from {other:?}"),
                }
            }
            "Split" => {
                let parts = list();
                let separator = parts[0].as_str().expect("separator");
                let text = self.text(&parts[1]);
                Some(json!(text.split(separator).collect::<Vec<_>>()))
            }
            other => panic!("the IAM harness cannot evaluate {other}"),
        }
    }

    fn substitute(&self, text: &str, variables: &BTreeMap<String, String>) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find('}').expect("an unterminated ${");
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let Some(value) = variables.get(name) {
                out.push_str(value);
            } else if let Some((id, attribute)) = name.split_once('.') {
                out.push_str(&self.attribute(id, attribute));
            } else {
                match self.reference(name) {
                    Some(Json::String(s)) => out.push_str(&s),
                    other => panic!("${{{name}}} is {other:?}"),
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }
}

/// `Fn::X` (and `Ref`, `Condition`) in a one-key mapping is the long form of `!X`.
fn long_form(key: &str) -> Option<&str> {
    match key {
        "Ref" | "Condition" => Some(key),
        _ => key.strip_prefix("Fn::"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intrinsics_evaluate_against_the_emulators_resources() {
        let template: Value = serde_norway::from_str(
            r#"
Parameters:
  Key: { Type: String, Default: "" }
  Stage: { Type: String, Default: prod }
Conditions:
  HasKey: !Not [!Equals [!Ref Key, ""]]
"#,
        )
        .unwrap();
        let stack = Stack::new("s")
            .resource(
                "Table",
                Deployed::new("t1").with("Arn", "arn:aws:dynamodb:us-east-1:123456789012:table/t1"),
            )
            .export("app-TableName", "t1")
            .for_template(&template);
        let value: Value = serde_norway::from_str(
            r#"
a: !Sub "${Table.Arn}/index/*"
b: !If [HasKey, !Ref Key, !Ref "AWS::NoValue"]
c: !Sub
  - "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${T}"
  - T: { "Fn::ImportValue": !Sub "app-TableName" }
d: [!Ref Stage, !Ref "AWS::NoValue"]
"#,
        )
        .unwrap();
        let out = stack.eval(&value).unwrap();
        assert_eq!(
            out,
            json!({
                "a": "arn:aws:dynamodb:us-east-1:123456789012:table/t1/index/*",
                "c": "arn:aws:dynamodb:us-east-1:123456789012:table/t1",
                "d": ["prod"],
            })
        );
        let with_key = Stack::new("s")
            .parameter("Key", "arn:k")
            .for_template(&template);
        assert_eq!(with_key.eval(&value["b"]), Some(json!("arn:k")));
    }
}
