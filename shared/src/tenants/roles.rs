//! What an API key may do: every key has a role, and every tenant route requires one.
//!
//! | role      | may                                                                         |
//! |-----------|-----------------------------------------------------------------------------|
//! | `owner`   | everything: billing, credits purchases and settings, keys, the tenant profile |
//! | `manager` | sites, training, prompts, chat, voice and numbers, webhooks; reads but billing and keys |
//! | `viewer`  | reads only, but not billing, keys or the audit log                          |
//!
//! Every role may sign out of its console session.
//!
//! The rule is one function of the method and the route template ([`required`]), applied by the
//! `TenantAuth` extractor to every tenant route, so a new route is covered the day it is mounted.
//! Keys stored before roles existed read as owners (they could do everything then).

use axum::http::Method;
use serde::{Deserialize, Serialize};

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Manager,
    #[default]
    Owner,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Owner, Role::Manager, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Manager => "manager",
            Role::Viewer => "viewer",
        }
    }

    /// Whether this role covers what `required` names (owner ⊇ manager ⊇ viewer).
    pub fn allows(self, required: Role) -> bool {
        self >= required
    }
}

/// Route prefixes only an owner may use at all, reads included: money and credentials.
const OWNER_ONLY: [&str; 3] = ["/api/keys", "/api/billing", "/api/audit"];

/// Route prefixes an owner alone may change (a manager and a viewer may read them).
const OWNER_WRITES: [&str; 2] = ["/api/credits", "/api/tenant"];

/// The least role a request to `route` (the router's template, `/api/sites/{site_id}`) with `method`
/// needs.
pub fn required(method: &Method, route: &str) -> Role {
    let under = |prefix: &&str| {
        route == *prefix
            || route
                .strip_prefix(*prefix)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    // Every role may read its own console session and sign out.
    if under(&"/api/console") {
        return Role::Viewer;
    }
    if OWNER_ONLY.iter().any(under) {
        return Role::Owner;
    }
    let reads = *method == Method::GET || *method == Method::HEAD || *method == Method::OPTIONS;
    match (reads, OWNER_WRITES.iter().any(under)) {
        (true, _) => Role::Viewer,
        (false, true) => Role::Owner,
        (false, false) => Role::Manager,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_nest() {
        assert!(Role::Owner.allows(Role::Manager) && Role::Owner.allows(Role::Viewer));
        assert!(Role::Manager.allows(Role::Viewer) && !Role::Manager.allows(Role::Owner));
        assert!(!Role::Viewer.allows(Role::Manager));
    }

    #[test]
    fn the_table() {
        use Role::*;
        let cases = [
            (Method::GET, "/api/sites", Viewer),
            (Method::POST, "/api/sites", Manager),
            (Method::PATCH, "/api/sites/{site_id}", Manager),
            (Method::POST, "/api/train/url", Manager),
            (Method::POST, "/api/chat", Manager),
            (Method::GET, "/api/usage", Viewer),
            (Method::GET, "/api/keys", Owner),
            (Method::POST, "/api/keys", Owner),
            (Method::DELETE, "/api/keys/{key_id}", Owner),
            (Method::GET, "/api/billing", Owner),
            (Method::POST, "/api/billing/checkout", Owner),
            (Method::GET, "/api/credits/balance", Viewer),
            (Method::POST, "/api/credits/purchase", Owner),
            (Method::PUT, "/api/credits/auto-top-up", Owner),
            (Method::PATCH, "/api/tenant", Owner),
            (Method::GET, "/api/tenant", Viewer),
            (Method::GET, "/api/audit", Owner),
            (Method::POST, "/api/webhooks", Manager),
            (Method::POST, "/api/ai/execute", Manager),
            (Method::DELETE, "/api/console/session", Viewer),
            // A prefix is a path segment, not a string prefix.
            (Method::POST, "/api/tenants-like", Manager),
            (Method::GET, "/api/keystone", Viewer),
        ];
        for (method, route, role) in cases {
            assert_eq!(required(&method, route), role, "{method} {route}");
        }
    }
}
