//! Identity policies as IAM evaluates them: an explicit Deny wins, else any Allow whose action and
//! resource patterns match (`*` and `?` wildcards; actions case-insensitive, resources not), else the
//! implicit deny. Conditions the harness does not understand never grant (fail closed).

use serde_json::Value as Json;

/// One request IAM authorizes: an action on a resource ARN.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Access {
    pub action: String,
    pub resource: String,
}

impl Access {
    pub fn new(action: impl Into<String>, resource: impl Into<String>) -> Self {
        Self {
            action: action.into(),
            resource: resource.into(),
        }
    }
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} on {}", self.action, self.resource)
    }
}

#[derive(Debug, Clone)]
enum Patterns {
    Listed(Vec<String>),
    AllBut(Vec<String>),
}

impl Patterns {
    fn matches(&self, value: &str, case_insensitive: bool) -> bool {
        match self {
            Patterns::Listed(p) => p.iter().any(|p| glob(p, value, case_insensitive)),
            Patterns::AllBut(p) => !p.iter().any(|p| glob(p, value, case_insensitive)),
        }
    }
}

/// One statement of a role's policies.
#[derive(Debug, Clone)]
pub struct Statement {
    pub sid: Option<String>,
    pub allow: bool,
    actions: Patterns,
    resources: Patterns,
    condition: Option<Json>,
}

impl Statement {
    pub fn parse(statement: &Json) -> Self {
        let list = |name: &str| -> Option<Vec<String>> {
            statement.get(name).map(|v| match v {
                Json::String(s) => vec![s.clone()],
                Json::Array(all) => all
                    .iter()
                    .map(|a| a.as_str().expect("a string").to_string())
                    .collect(),
                other => panic!("{name}: {other}"),
            })
        };
        let actions = match (list("Action"), list("NotAction")) {
            (Some(a), None) => Patterns::Listed(a),
            (None, Some(a)) => Patterns::AllBut(a),
            _ => panic!("a statement needs Action or NotAction: {statement}"),
        };
        let resources = match (list("Resource"), list("NotResource")) {
            (Some(r), None) => Patterns::Listed(r),
            (None, Some(r)) => Patterns::AllBut(r),
            _ => panic!("an identity policy statement needs Resource: {statement}"),
        };
        Self {
            sid: statement
                .get("Sid")
                .and_then(Json::as_str)
                .map(str::to_string),
            allow: match statement.get("Effect").and_then(Json::as_str) {
                Some("Allow") => true,
                Some("Deny") => false,
                other => panic!("Effect {other:?}"),
            },
            actions,
            resources,
            condition: statement.get("Condition").cloned(),
        }
    }

    fn applies(&self, access: &Access) -> bool {
        self.actions.matches(&access.action, true)
            && self.resources.matches(&access.resource, false)
            && self.condition_holds(access)
    }

    /// The request context the harness knows: requests reach AWS over TLS.
    fn condition_holds(&self, _access: &Access) -> bool {
        let Some(condition) = &self.condition else {
            return true;
        };
        let known = |key: &str| match key {
            "aws:SecureTransport" => Some("true"),
            _ => None,
        };
        let Some(operators) = condition.as_object() else {
            return false;
        };
        operators.iter().all(|(operator, keys)| {
            keys.as_object().is_some_and(|keys| {
                keys.iter().all(|(key, expected)| {
                    let Some(actual) = known(key) else {
                        // An unknown key never matches: it neither grants nor denies.
                        return false;
                    };
                    let expected: Vec<&str> = match expected {
                        Json::String(s) => vec![s.as_str()],
                        Json::Array(a) => a.iter().filter_map(Json::as_str).collect(),
                        _ => return false,
                    };
                    match operator.as_str() {
                        "Bool" | "StringEquals" => expected.contains(&actual),
                        "StringLike" | "ArnLike" => expected.iter().any(|e| glob(e, actual, false)),
                        other => panic!("the IAM harness cannot evaluate condition {other}"),
                    }
                })
            })
        })
    }

    /// The grants of an Allow statement, one per listed action and resource pattern (for the
    /// unused-grant report).
    pub fn grants(&self) -> Vec<(String, String)> {
        match (&self.actions, &self.resources, self.allow) {
            (Patterns::Listed(actions), Patterns::Listed(resources), true) => actions
                .iter()
                .flat_map(|a| resources.iter().map(move |r| (a.clone(), r.clone())))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Whether `access` is covered by the grant (`action`, `resource`) of this statement.
    pub fn grant_covers(&self, grant: &(String, String), access: &Access) -> bool {
        glob(&grant.0, &access.action, true)
            && glob(&grant.1, &access.resource, false)
            && self.condition_holds(access)
    }
}

/// What IAM decides for one access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed { statement: usize },
    ExplicitDeny { statement: usize },
    ImplicitDeny,
}

/// All the identity policies of one principal, as one list of statements.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub statements: Vec<Statement>,
}

impl Policy {
    /// From policy documents (`{"Version": …, "Statement": [...]}` or one statement object).
    pub fn from_documents(documents: &[Json]) -> Self {
        let mut statements = Vec::new();
        for document in documents {
            match document.get("Statement") {
                Some(Json::Array(all)) => statements.extend(all.iter().map(Statement::parse)),
                Some(one @ Json::Object(_)) => statements.push(Statement::parse(one)),
                other => panic!("a policy document without statements: {other:?}"),
            }
        }
        Self { statements }
    }

    pub fn decide(&self, access: &Access) -> Decision {
        let mut allowed = None;
        for (i, statement) in self.statements.iter().enumerate() {
            if statement.applies(access) {
                if !statement.allow {
                    return Decision::ExplicitDeny { statement: i };
                }
                allowed.get_or_insert(i);
            }
        }
        match allowed {
            Some(statement) => Decision::Allowed { statement },
            None => Decision::ImplicitDeny,
        }
    }

    /// The same policy without `action` (matched exactly, case-insensitively) anywhere: what a role
    /// looks like with one grant taken away.
    pub fn without_action(&self, action: &str) -> Policy {
        let mut out = self.clone();
        for statement in &mut out.statements {
            if let Patterns::Listed(actions) = &mut statement.actions {
                actions.retain(|a| !a.eq_ignore_ascii_case(action));
            }
        }
        out
    }
}

/// IAM's wildcard match: `*` any run of characters, `?` one character.
pub fn glob(pattern: &str, text: &str, case_insensitive: bool) -> bool {
    let fold = |s: &str| {
        if case_insensitive {
            s.to_ascii_lowercase()
        } else {
            s.to_string()
        }
    };
    let (p, t) = (fold(pattern), fold(text));
    let (p, t): (Vec<char>, Vec<char>) = (p.chars().collect(), t.chars().collect());
    // Iterative matching with backtracking to the last `*`.
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deny_wins_then_any_allow_then_nothing() {
        let policy = Policy::from_documents(&[json!({"Statement": [
            {"Effect": "Allow", "Action": ["dynamodb:GetItem", "sqs:Send*"],
             "Resource": ["arn:aws:dynamodb:r:1:table/t", "arn:aws:sqs:r:1:q"]},
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/sites/*"},
            {"Effect": "Deny", "Action": "s3:*", "Resource": "arn:aws:s3:::b/sites/secret"},
        ]})]);
        let decide = |a: &str, r: &str| policy.decide(&Access::new(a, r));
        assert_eq!(
            decide("dynamodb:getitem", "arn:aws:dynamodb:r:1:table/t"),
            Decision::Allowed { statement: 0 }
        );
        assert_eq!(
            decide("dynamodb:GetItem", "arn:aws:dynamodb:r:1:table/t/index/x"),
            Decision::ImplicitDeny
        );
        assert_eq!(
            decide("sqs:SendMessage", "arn:aws:sqs:r:1:q"),
            Decision::Allowed { statement: 0 }
        );
        assert_eq!(
            decide("s3:GetObject", "arn:aws:s3:::b/sites/a/index.bin"),
            Decision::Allowed { statement: 1 }
        );
        assert_eq!(
            decide("s3:GetObject", "arn:aws:s3:::b/sites/secret"),
            Decision::ExplicitDeny { statement: 2 }
        );
        assert_eq!(
            decide("s3:GetObject", "arn:aws:s3:::b/other"),
            Decision::ImplicitDeny
        );
        let fewer = policy.without_action("dynamodb:GetItem");
        assert_eq!(
            fewer.decide(&Access::new(
                "dynamodb:GetItem",
                "arn:aws:dynamodb:r:1:table/t"
            )),
            Decision::ImplicitDeny
        );
        assert!(glob("a*b?c", "aXXbYc", false));
        assert!(!glob("a*b?c", "aXXbc", false));
    }
}
