//! A visitor's feedback on an answer, from the widget: accepted only from an origin the site allows,
//! and only on a message answered in the same site and session.

use super::logs::{self, Feedback, FeedbackError, MessageId, Rating};
use super::origin_allowed;
use crate::clock::Clock;
use crate::ids::{SessionId, SiteId};
use crate::store::ItemStore;

/// The longest comment kept, in characters (the rest is cut, not refused).
pub const MAX_COMMENT_CHARS: usize = 2_000;

/// The widget's feedback request. The session and message ids stay raw until the origin is known to be
/// allowed, so a refused origin learns nothing about its input.
#[derive(Debug, Clone)]
pub struct VisitorFeedback {
    pub site_id: SiteId,
    pub session_id: String,
    pub message_id: String,
    pub rating: Rating,
    pub comment: Option<String>,
}

/// Records the feedback; returns the message it was recorded on.
pub async fn record(
    store: &dyn ItemStore,
    clock: &dyn Clock,
    origin: Option<&str>,
    request: VisitorFeedback,
) -> Result<MessageId, FeedbackError> {
    let site = crate::sites::find_site(store, &request.site_id)
        .await?
        .ok_or(FeedbackError::SiteNotFound)?;
    if !site.is_embed_enabled || !origin_allowed(&site, origin) {
        return Err(FeedbackError::OriginNotAllowed);
    }
    let message = MessageId::parse(&request.message_id).map_err(FeedbackError::InvalidMessageId)?;
    // A malformed session answered nothing: no message is found in it.
    let session = SessionId::parse(&request.session_id).map_err(|_| FeedbackError::NotFound)?;
    let comment = request
        .comment
        .map(|c| c.trim().chars().take(MAX_COMMENT_CHARS).collect::<String>())
        .filter(|c| !c.is_empty());
    let feedback = Feedback {
        rating: request.rating,
        comment,
        at: clock.now(),
    };
    logs::record_feedback(store, &request.site_id, &session, &message, feedback).await?;
    Ok(message)
}

/// [`record`], then `feedback.created` queued for the site's tenant's webhooks.
pub async fn record_and_tell(
    platform: &crate::Platform,
    origin: Option<&str>,
    request: VisitorFeedback,
) -> Result<MessageId, FeedbackError> {
    let (site_id, session, rating, comment) = (
        request.site_id.clone(),
        request.session_id.clone(),
        request.rating,
        request.comment.clone(),
    );
    let message = record(
        platform.store.as_ref(),
        platform.clock.as_ref(),
        origin,
        request,
    )
    .await?;
    if let Ok(Some(site)) = crate::sites::find_site(platform.store.as_ref(), &site_id).await {
        let rating = serde_json::to_value(rating)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let comment = comment
            .map(|c| c.trim().chars().take(MAX_COMMENT_CHARS).collect::<String>())
            .filter(|c| !c.is_empty());
        let event = crate::webhooks::Event::feedback_created(
            platform.clock.now(),
            site_id.as_str(),
            &session,
            message.as_str(),
            &rating,
            comment.as_deref(),
        );
        crate::webhooks::emit(platform, &site.tenant_id, event).await;
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::clock::ManualClock;
    use crate::embedded_db::EmbeddedDb;
    use crate::ids::SequentialIds;
    use crate::sites;
    use crate::store::EmbeddedStore;
    use crate::tenants::Plan;

    struct Fixture {
        store: EmbeddedStore,
        clock: ManualClock,
        site: SiteId,
        message: MessageId,
    }

    async fn fixture(embed_enabled: bool) -> Fixture {
        let clock = ManualClock::at(crate::fixtures::START);
        let store =
            EmbeddedStore::new(EmbeddedDb::in_memory().unwrap(), Arc::new(clock.clone())).unwrap();
        let ids = SequentialIds::default();
        let (tenant, site) =
            crate::fixtures::tenant_with_site(&store, &ids, &clock, Plan::Pro, &["shop.test"])
                .await;
        sites::update_site_internal(
            &store,
            &clock,
            &site.site_id,
            |s| s.is_embed_enabled = embed_enabled,
            vec![],
        )
        .await
        .unwrap();
        let message = MessageId::generate(&ids);
        let log: logs::UsageLog = serde_json::from_value(json!({
            "message_id": message, "tenant_id": tenant.tenant_id, "site_id": site.site_id,
            "session_id": "sess_1", "channel": "embed", "model": "extractive", "outcome": "answered",
            "chat_input_tokens": 0, "chat_output_tokens": 0, "embedding_tokens": 0, "latency_ms": 1,
            "cost": 0, "prices": {"chat_input_per_1k": 0, "chat_output_per_1k": 0, "embedding_per_1k": 0},
            "ip_hash": null, "user_agent": null, "request_id": null, "error": null,
            "created_at": "2026-05-01T09:00:00Z"
        }))
        .unwrap();
        logs::write(&store, &log, clock.now().unix_timestamp())
            .await
            .unwrap();
        Fixture {
            store,
            clock,
            site: site.site_id,
            message,
        }
    }

    fn request(f: &Fixture, session: &str, message: &str) -> VisitorFeedback {
        VisitorFeedback {
            site_id: f.site.clone(),
            session_id: session.into(),
            message_id: message.into(),
            rating: Rating::Down,
            comment: Some(format!("  {}  ", "遅い".repeat(1_500))),
        }
    }

    #[tokio::test]
    async fn feedback_from_an_allowed_origin_is_stored_trimmed_and_dated() {
        let f = fixture(true).await;
        let id = f.message.to_string();
        let recorded = record(
            &f.store,
            &f.clock,
            Some("https://shop.test"),
            request(&f, "sess_1", &id),
        )
        .await
        .unwrap();
        assert_eq!(recorded, f.message);
        let log = logs::read(&f.store, &f.message).await.unwrap().unwrap();
        let stored = log.feedback.unwrap();
        assert_eq!(stored.rating, Rating::Down);
        assert_eq!(stored.comment.unwrap().chars().count(), MAX_COMMENT_CHARS);
        assert_eq!(stored.at, time::macros::datetime!(2026-05-01 09:00 UTC));
    }

    #[tokio::test]
    async fn the_origin_is_checked_before_anything_else() {
        let f = fixture(true).await;
        let refused = |origin| record(&f.store, &f.clock, origin, request(&f, "sess_1", "garbage"));
        for origin in [
            None,
            Some("https://elsewhere.test"),
            Some("http://shop.test"),
        ] {
            assert!(
                matches!(refused(origin).await, Err(FeedbackError::OriginNotAllowed)),
                "{origin:?}"
            );
        }
        // An allowed origin with a malformed id hears about the id.
        assert!(matches!(
            refused(Some("https://shop.test")).await,
            Err(FeedbackError::InvalidMessageId(_))
        ));
        let off = fixture(false).await;
        let id = off.message.to_string();
        assert!(matches!(
            record(
                &off.store,
                &off.clock,
                Some("https://shop.test"),
                request(&off, "sess_1", &id)
            )
            .await,
            Err(FeedbackError::OriginNotAllowed)
        ));
    }

    #[tokio::test]
    async fn only_the_session_that_was_answered_may_rate_it() {
        let f = fixture(true).await;
        let id = f.message.to_string();
        let other = record(
            &f.store,
            &f.clock,
            Some("https://shop.test"),
            request(&f, "sess_2", &id),
        )
        .await;
        assert!(matches!(other, Err(FeedbackError::NotFound)), "{other:?}");
        let mut unknown_site = request(&f, "sess_1", &id);
        unknown_site.site_id = SiteId::parse("site_unknown").unwrap();
        assert!(matches!(
            record(&f.store, &f.clock, Some("https://shop.test"), unknown_site).await,
            Err(FeedbackError::SiteNotFound)
        ));
        assert_eq!(
            logs::read(&f.store, &f.message)
                .await
                .unwrap()
                .unwrap()
                .feedback,
            None
        );
    }
}
