//! A client for `POST /rerank` in the shape Cohere, Jina, Voyage and Hugging Face TEI share: a query
//! and documents in, a relevance score per document index out. Used, when `KOTOBA_RERANK_MODEL` is set,
//! to reorder retrieval's fused candidates before the best few become the answer's sources.
//!
//! Request: `{"model", "query", "documents": [..], "top_n"}` (TEI's native route takes `texts`; both are
//! sent, so one request fits every server). Response: `{"results": [{"index", "relevance_score"}]}`
//! (Cohere, Jina, Voyage as `data`), or TEI's bare `[{"index", "score"}]`.

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use url::Url;

use super::embeddings::endpoint;

#[derive(Debug, thiserror::Error)]
pub enum RerankError {
    #[error("the reranker refused the request ({status}): {message}")]
    Rejected { status: u16, message: String },
    #[error("the reranker is unavailable: {0}")]
    Unavailable(String),
    #[error("the reranker answered something unexpected: {0}")]
    Malformed(String),
}

#[derive(Debug, Clone)]
pub struct RerankClient {
    http: reqwest::Client,
    endpoint: Url,
    api_key: Option<crate::config::Secret>,
    pub model: String,
    timeout: Duration,
}

#[derive(Deserialize)]
struct Scored {
    index: usize,
    #[serde(alias = "score")]
    relevance_score: f32,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Response {
    Results { results: Vec<Scored> },
    Data { data: Vec<Scored> },
    Bare(Vec<Scored>),
}

impl RerankClient {
    pub fn new(
        http: reqwest::Client,
        base_url: &Url,
        api_key: Option<crate::config::Secret>,
        model: String,
    ) -> Result<Self, url::ParseError> {
        Ok(Self {
            http,
            endpoint: endpoint(base_url, "rerank")?,
            api_key,
            model,
            // A reranker sits on the answer's critical path: better no reranking than a slow answer.
            timeout: Duration::from_secs(10),
        })
    }

    /// Document indexes, most relevant first (every document once: ones the server left out keep their
    /// order after the scored ones).
    pub async fn rerank(&self, query: &str, documents: &[&str]) -> Result<Vec<usize>, RerankError> {
        if documents.is_empty() {
            return Ok(Vec::new());
        }
        let body = json!({
            "model": self.model,
            "query": query,
            "documents": documents,
            "texts": documents,
            "top_n": documents.len(),
        });
        let mut request = self
            .http
            .post(self.endpoint.clone())
            .json(&body)
            .timeout(self.timeout);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key.expose());
        }
        let response = request
            .send()
            .await
            .map_err(|e| RerankError::Unavailable(e.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            let message: String = response
                .text()
                .await
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect();
            return Err(if status.is_server_error() || status.as_u16() == 429 {
                RerankError::Unavailable(format!("{status}: {message}"))
            } else {
                RerankError::Rejected {
                    status: status.as_u16(),
                    message,
                }
            });
        }
        let parsed: Response = response
            .json()
            .await
            .map_err(|e| RerankError::Malformed(format!("reading the response: {e}")))?;
        let mut scored = match parsed {
            Response::Results { results } => results,
            Response::Data { data } => data,
            Response::Bare(v) => v,
        };
        if let Some(bad) = scored.iter().find(|s| s.index >= documents.len()) {
            return Err(RerankError::Malformed(format!(
                "index {} for {} documents",
                bad.index,
                documents.len()
            )));
        }
        if scored.iter().any(|s| !s.relevance_score.is_finite()) {
            return Err(RerankError::Malformed("a score is not a number".into()));
        }
        scored.sort_by(|a, b| {
            b.relevance_score
                .total_cmp(&a.relevance_score)
                .then(a.index.cmp(&b.index))
        });
        let mut order: Vec<usize> = Vec::with_capacity(documents.len());
        for s in scored {
            if !order.contains(&s.index) {
                order.push(s.index);
            }
        }
        for i in 0..documents.len() {
            if !order.contains(&i) {
                order.push(i);
            }
        }
        Ok(order)
    }
}

#[cfg(test)]
mod tests {
    use axum::Json;
    use axum::routing::post;
    use serde_json::Value;

    use super::*;

    /// A reranker peer scoring each document by how many of the query's words it contains, answering
    /// in the Cohere shape or TEI's bare one.
    async fn peer(bare: bool) -> Url {
        let app = axum::Router::new().route(
            "/v1/rerank",
            post(move |Json(body): Json<Value>| async move {
                let query = body["query"].as_str().unwrap_or_default().to_lowercase();
                let docs = body["documents"].as_array().cloned().unwrap_or_default();
                let scored: Vec<Value> = docs
                    .iter()
                    .enumerate()
                    .map(|(i, d)| {
                        let d = d.as_str().unwrap_or_default().to_lowercase();
                        let s = query.split_whitespace().filter(|w| d.contains(w)).count();
                        if bare {
                            json!({"index": i, "score": s as f32})
                        } else {
                            json!({"index": i, "relevance_score": s as f32 / 10.0})
                        }
                    })
                    .collect();
                if bare {
                    Json(Value::Array(scored))
                } else {
                    Json(json!({"id": "r", "results": scored, "meta": {}}))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}/v1").parse().unwrap()
    }

    #[tokio::test]
    async fn orders_documents_by_the_servers_scores_in_either_shape() {
        for bare in [false, true] {
            let base = peer(bare).await;
            let client =
                RerankClient::new(reqwest::Client::new(), &base, None, "rerank-m".into()).unwrap();
            let order = client
                .rerank(
                    "opening hours weekend",
                    &["our menu", "weekend opening hours", "opening soon"],
                )
                .await
                .unwrap();
            assert_eq!(order, vec![1, 2, 0], "bare: {bare}");
            assert!(client.rerank("q", &[]).await.unwrap().is_empty());
        }
    }

    #[tokio::test]
    async fn errors_are_told_apart() {
        let app = axum::Router::new()
            .route(
                "/bad/rerank",
                post(|| async { (axum::http::StatusCode::BAD_REQUEST, "no such model") }),
            )
            .route(
                "/down/rerank",
                post(|| async { (axum::http::StatusCode::SERVICE_UNAVAILABLE, "busy") }),
            )
            .route(
                "/odd/rerank",
                post(|| async { Json(json!({"results": [{"index": 7, "relevance_score": 1.0}]})) }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let client = |path: &str| {
            RerankClient::new(
                reqwest::Client::new(),
                &format!("http://{addr}/{path}").parse().unwrap(),
                None,
                "m".into(),
            )
            .unwrap()
        };
        assert!(matches!(
            client("bad").rerank("q", &["a"]).await,
            Err(RerankError::Rejected { status: 400, .. })
        ));
        assert!(matches!(
            client("down").rerank("q", &["a"]).await,
            Err(RerankError::Unavailable(_))
        ));
        assert!(matches!(
            client("odd").rerank("q", &["a"]).await,
            Err(RerankError::Malformed(_))
        ));
    }
}
