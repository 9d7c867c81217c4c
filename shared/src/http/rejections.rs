//! axum's own rejections (a query string or a path segment an extractor cannot read) answer in plain
//! text, but the contract promises its error shape on every failure. This layer rewrites them once, at
//! the edge; responses the handlers made are left alone.

use axum::extract::Request;
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// The longest rejection text kept (axum's are one line).
const MAX_REJECTION_TEXT: usize = 1024;

pub async fn contract_rejections(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let plain_text = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/plain"));
    if !(status.is_client_error() || status.is_server_error()) || !plain_text {
        return response;
    }
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let text: String = String::from_utf8_lossy(&body)
        .chars()
        .take(MAX_REJECTION_TEXT)
        .collect();
    let error = if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::TooLarge(text)
    } else if status.is_server_error() {
        ApiError::Internal(anyhow::anyhow!("framework rejection {status}: {text}"))
    } else {
        ApiError::InvalidInput {
            field: None,
            message: text,
        }
    };
    error.into_response()
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::extract::{Path, Query};
    use axum::http::{Request, StatusCode};
    use axum::routing::get;
    use serde::Deserialize;
    use tower::ServiceExt;

    #[derive(Deserialize)]
    struct Page {
        #[allow(dead_code)]
        limit: Option<u32>,
    }

    async fn body_of(router: Router, uri: &str) -> (StatusCode, String, serde_json::Value) {
        let response = router
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let ct = response.headers()[axum::http::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_string();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (
            status,
            ct,
            serde_json::from_slice(&bytes).unwrap_or_default(),
        )
    }

    /// Found by schemathesis: `GET /api/calls?limit=abc` and a path segment that is not UTF-8 were
    /// answered in plain text, outside the contract's error shape.
    #[tokio::test]
    async fn extractor_rejections_use_the_error_shape() {
        let router = crate::http::finish(
            Router::new()
                .route("/q", get(|Query(_): Query<Page>| async { "ok" }))
                .route("/p/{id}", get(|Path(id): Path<String>| async move { id })),
        );
        for uri in ["/q?limit=abc", "/q?limit=-1", "/p/%FF"] {
            let (status, ct, body) = body_of(router.clone(), uri).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
            assert!(ct.starts_with("application/json"), "{uri}: {ct}");
            assert_eq!(body["error"]["code"], "invalid_input", "{uri}: {body}");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty())
            );
        }
        // Handlers' own plain-text successes are untouched.
        let (status, ct, _) = body_of(router, "/q?limit=3").await;
        assert_eq!(status, StatusCode::OK);
        assert!(ct.starts_with("text/plain"));
    }
}
