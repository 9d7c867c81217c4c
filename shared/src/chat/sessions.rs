//! Chat sessions: the last few turns of a conversation, kept for a day after the last message.

use serde::{Deserialize, Serialize};

use crate::ids::{IdGenerator, SiteId};
use crate::models::chat::{Message, Role};
use crate::store::{Condition, Item, ItemStore, Key, StoreError};

/// Turns (user + assistant messages) kept per session.
pub const MAX_TURNS: usize = 6;
/// Idle sessions expire after a day.
pub const SESSION_TTL_SECS: i64 = 24 * 3600;

/// A session id as clients send it back: `sess_` and 16–64 lowercase letters or digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SessionId(String);

impl SessionId {
    pub fn generate(ids: &dyn IdGenerator) -> Self {
        Self(format!("sess_{}", ids.new_id()))
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        let body = raw
            .strip_prefix("sess_")
            .ok_or("a session id starts with sess_")?;
        let ok = (16..=64).contains(&body.len())
            && body
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if ok {
            Ok(Self(raw.to_string()))
        } else {
            Err("not a session id".into())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SessionId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl From<SessionId> for String {
    fn from(s: SessionId) -> String {
        s.0
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Session {
    pub site_id: Option<SiteId>,
    pub turns: Vec<Message>,
}

fn key(session: &SessionId) -> Key {
    Key::new(format!("SESSION#{session}"), "SESSION")
}

/// The session's history, if it exists and belongs to the site (another site's session is a new one).
pub async fn load(
    store: &dyn ItemStore,
    site: &SiteId,
    session: &SessionId,
) -> Result<Vec<Message>, StoreError> {
    let Some(item) = store.get(&key(session)).await? else {
        return Ok(Vec::new());
    };
    let stored: Session = item.to_record()?;
    Ok(if stored.site_id.as_ref() == Some(site) {
        stored.turns
    } else {
        Vec::new()
    })
}

/// Appends a question and its answer, keeping the last [`MAX_TURNS`] messages.
pub async fn append(
    store: &dyn ItemStore,
    site: &SiteId,
    session: &SessionId,
    mut history: Vec<Message>,
    question: &str,
    answer: &str,
    now_unix: i64,
) -> Result<(), StoreError> {
    history.push(Message {
        role: Role::User,
        content: question.to_string(),
    });
    history.push(Message {
        role: Role::Assistant,
        content: answer.to_string(),
    });
    let excess = history.len().saturating_sub(MAX_TURNS);
    history.drain(..excess);
    let record = Session {
        site_id: Some(site.clone()),
        turns: history,
    };
    let item = Item::from_record(key(session), &record)?.expiring_at(now_unix + SESSION_TTL_SECS);
    store.put(item, Condition::None).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_parse() {
        let id = SessionId::generate(&crate::ids::RandomIds);
        assert!(SessionId::parse(id.as_str()).is_ok());
        for bad in [
            "",
            "sess_",
            "sess_SHORT",
            "abc_0123456789abcdef",
            "sess_0123456789abcdef<script>",
        ] {
            assert!(SessionId::parse(bad).is_err(), "{bad}");
        }
    }
}
