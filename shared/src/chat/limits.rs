//! Rate limits for the public widget routes: fixed windows counted in the store, so every Lambda
//! instance shares them, each hit one atomic "add unless over the limit".

use crate::store::{Add, ItemStore, Key, StoreError};

/// A limit: at most `max` hits per `window_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub max: i64,
    pub window_secs: i64,
}

/// Per visitor IP: a person typing cannot reach it; a script can.
pub const PER_IP: RateLimit = RateLimit {
    max: 30,
    window_secs: 60,
};
/// Per chat session.
pub const PER_SESSION: RateLimit = RateLimit {
    max: 12,
    window_secs: 60,
};

#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("rate limited; retry in {retry_after_secs}s")]
    Limited { retry_after_secs: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Counts one hit for `scope` (e.g. `ip:<hash>`) and refuses it past the limit.
pub async fn hit(
    store: &dyn ItemStore,
    scope: &str,
    limit: RateLimit,
    now_unix: i64,
) -> Result<(), LimitError> {
    let window = now_unix.div_euclid(limit.window_secs) * limit.window_secs;
    let window_end = window + limit.window_secs;
    let key = Key::new(format!("RATE#{scope}"), format!("W#{window}"));
    let add = Add::new(key, "hits", 1)
        .up_to(limit.max)
        .expiring_at(window_end + 60);
    match store.add(add).await {
        Ok(_) => Ok(()),
        Err(StoreError::ConditionFailed) => Err(LimitError::Limited {
            retry_after_secs: (window_end - now_unix).max(1) as u64,
        }),
        Err(e) => Err(e.into()),
    }
}
