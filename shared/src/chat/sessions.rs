//! Chat sessions: the last few turns of a conversation, kept for a day after the last message.

use serde::{Deserialize, Serialize};

use crate::ids::SiteId;
use crate::models::chat::{Message, Role};
use crate::store::{Condition, Item, ItemStore, Key, StoreError, keys};

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

/// Sessions are keyed by site and id: a visitor of one site who presents another site's session id
/// reaches nothing of it (neither its history nor, see `ChatService`, its rate limit).
pub fn key(site: &SiteId, session: &SessionId) -> Key {
    keys::session(site, session)
}

/// The history in a session item read under [`key`], or `None` when it is another site's.
pub fn turns(site: &SiteId, item: &Item) -> Result<Option<Vec<Message>>, StoreError> {
    let stored: Session = item.to_record()?;
    Ok((stored.site_id.as_ref() == Some(site)).then_some(stored.turns))
}

/// The session's history, or `None` when the site has no such session (never had, expired, or it is
/// another site's): the caller then starts a session of its own under a new id.
pub async fn load(
    store: &dyn ItemStore,
    site: &SiteId,
    session: &SessionId,
) -> Result<Option<Vec<Message>>, StoreError> {
    let Some(item) = store.get(&key(site, session)).await? else {
        return Ok(None);
    };
    turns(site, &item)
}

/// Appends a question and its answer, keeping the last [`MAX_TURNS`] messages.
pub async fn append(
    store: &dyn ItemStore,
    site: &SiteId,
    session: &SessionId,
    history: Vec<Message>,
    question: &str,
    answer: &str,
    now_unix: i64,
) -> Result<(), StoreError> {
    let item = item(site, session, history, question, answer, now_unix)?;
    store.put(item, Condition::None).await
}

/// The session item with a question and its answer appended (the last [`MAX_TURNS`] messages), to
/// write in a transaction of the caller's.
pub fn item(
    site: &SiteId,
    session: &SessionId,
    mut history: Vec<Message>,
    question: &str,
    answer: &str,
    now_unix: i64,
) -> Result<Item, StoreError> {
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
    Ok(Item::from_record(key(site, session), &record)?.expiring_at(now_unix + SESSION_TTL_SECS))
}
