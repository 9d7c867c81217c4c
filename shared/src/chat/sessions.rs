//! Chat sessions: the last few turns of a conversation, kept for a day after the last message.

use serde::{Deserialize, Serialize};

use crate::ids::SiteId;
use crate::models::chat::{Message, Role};
use crate::store::{Condition, Item, ItemStore, Key, StoreError};

/// Turns (user + assistant messages) kept per session.
pub const MAX_TURNS: usize = 6;
/// Idle sessions expire after a day.
pub const SESSION_TTL_SECS: i64 = 24 * 3600;

pub use crate::ids::SessionId;

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
