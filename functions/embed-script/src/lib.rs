//! The embed script: `GET /api/embed/script?site_id=…` returns the chat widget loader for a site that
//! exists, is embed-enabled and is ready (an index is serving).
//!
//! The body is the widget (`widget/widget.js`, compiled in) called with the site's public widget config.
//! It is deterministic for a given config, so its hash is a strong ETag and browsers revalidate cheaply.
//! Failures are never JSON here: a `<script>` tag ignores bodies of failed loads, and anyone reading the
//! URL by hand gets a one-line JavaScript comment saying why; the host page is never broken.

/// The secret variables this function's code reads (it serves public widget config: no secret); shared::secrets fetches exactly
/// these at start-up, and tests/deploy_template.rs checks the templates grant exactly these.
pub const SECRETS: &[&str] = &[];

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use shared::Platform;
use shared::ids::SiteId;
use shared::sites::widget::WidgetConfig;
use shared::sites::{Site, SiteStatus};

/// The widget's source: one function expression taking the site's config.
pub const WIDGET_JS: &str = include_str!("../widget/widget.js");

/// Browsers and CDNs may reuse the script for five minutes, then must revalidate (a 304 when the
/// config is unchanged), so widget changes reach visitors within minutes.
pub const CACHE_CONTROL: &str = "public, max-age=300, must-revalidate";

/// Refusals must not be cached: a site becoming ready should show its widget on the next page view.
const NO_STORE: &str = "no-store";

pub const CONTENT_TYPE: &str = "application/javascript; charset=utf-8";

/// The variable that tells the embed script the widget's streaming endpoint (see `Config`).
pub const STREAM_URL_VARIABLE: &str = "KOTOBA_CHAT_STREAM_URL";

/// The routes, without the shared edge layers (the local runner merges several functions' routes): the
/// widget loader and the API's OpenAPI document, both public and static for a deployment.
pub fn routes(platform: Arc<Platform>) -> Router {
    let document: Arc<str> = openapi_json().into();
    Router::new()
        .route("/api/embed/script", get(script))
        .route(
            OPENAPI_PATH,
            get(move || openapi_document(document.clone())),
        )
        .with_state(platform)
}

/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/api/openapi.json";

/// This function's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(script, openapi_document))]
pub struct ApiDoc;

/// The whole HTTP API as OpenAPI 3.1, assembled from every function's annotated handlers and types.
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi;
    let mut doc = ApiDoc::openapi();
    doc.info = utoipa::openapi::InfoBuilder::new()
        .title("Kotoba API")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "The Kotoba platform's HTTP API: tenants and keys (admin), sites, training, chat, the \
             embeddable widget, usage, the phone receptionist, the tenant's profile and billing, and Stripe's \
             webhook. Every error is \
             `{\"error\": {\"code\", \"message\", \"field\"?, \"request_id\"?}}`.",
        ))
        .build();
    doc.merge(management::ApiDoc::openapi());
    doc.merge(train::ApiDoc::openapi());
    doc.merge(chat::ApiDoc::openapi());
    doc.merge(usage::ApiDoc::openapi());
    doc.merge(credits::ApiDoc::openapi());
    doc.merge(billing::ApiDoc::openapi());
    doc.merge(webhook::ApiDoc::openapi());
    shared::http::openapi::finish_document(&mut doc);
    doc
}

/// The document as served (pretty JSON, built once per process).
pub fn openapi_json() -> String {
    openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| unreachable!("the OpenAPI document always serialises: {e}"))
}

#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "meta",
    responses((status = 200, description = "This document (OpenAPI 3.1)", content_type = "application/json", body = Object))
)]
async fn openapi_document(document: Arc<str>) -> Response {
    let mut response = document.to_string().into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CACHE_CONTROL),
    );
    response
}

/// The function as deployed: the route plus the shared edge (request ids, JSON 404s elsewhere).
pub fn app(platform: Arc<Platform>) -> Router {
    shared::http::finish_logged(routes(platform.clone()), platform)
}

#[derive(Deserialize)]
struct ScriptQuery {
    site_id: Option<String>,
}

/// What the widget is told about its site: the id it chats with and its look. Nothing else (no
/// tenant, allowed domains or prompt) reaches the browser.
#[derive(Serialize)]
struct PublicConfig<'a> {
    site_id: &'a SiteId,
    /// Where the widget streams answers, when that is not the API the script came from (deployed:
    /// API Gateway buffers responses, so answers stream through the CloudFront-fronted function URL).
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_url: Option<&'a str>,
    #[serde(flatten)]
    widget: &'a WidgetConfig,
}

/// Why no widget was served; each reason is one status and one fixed line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    MissingSiteId,
    NotFound,
    Disabled,
    NotReady,
    Unavailable,
}

impl Refusal {
    pub fn status(self) -> StatusCode {
        match self {
            Self::MissingSiteId => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Disabled => StatusCode::FORBIDDEN,
            Self::NotReady => StatusCode::CONFLICT,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A fixed sentence: never interpolates input, so it can never close the comment it sits in.
    pub fn reason(self) -> &'static str {
        match self {
            Self::MissingSiteId => "the site_id query parameter is missing or malformed",
            Self::NotFound => "no such site",
            Self::Disabled => "the chat widget is not enabled for this site",
            Self::NotReady => "the site has not finished training yet",
            Self::Unavailable => "the service is temporarily unavailable; try again later",
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        tracing::info!(
            status = self.status().as_u16(),
            reason = self.reason(),
            "embed script refused"
        );
        let body = format!("/* Kotoba chat widget: {} */\n", self.reason());
        let mut response = (self.status(), body).into_response();
        let h = response.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static(NO_STORE));
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        response
    }
}

/// Whether a site may have its widget served, and why not.
pub fn check(site: Option<&Site>) -> Result<&Site, Refusal> {
    let site = site.ok_or(Refusal::NotFound)?;
    if !site.is_embed_enabled {
        return Err(Refusal::Disabled);
    }
    if site.status != SiteStatus::Ready || site.index_version.is_none() {
        return Err(Refusal::NotReady);
    }
    Ok(site)
}

#[utoipa::path(
    get,
    path = "/api/embed/script",
    tag = "widget",
    params(("site_id" = Option<String>, Query, description = "The site (`site_…`)")),
    responses(
        (status = 200, description = "The widget loader (ETag; 304 on `If-None-Match`)", content_type = "application/javascript", body = String),
        (status = 304, description = "Not modified"),
        (status = 400, description = "site_id missing or malformed (a JavaScript comment says why)", content_type = "application/javascript", body = String),
        (status = 403, description = "The widget is not enabled for the site", content_type = "application/javascript", body = String),
        (status = 404, description = "No such site", content_type = "application/javascript", body = String),
        (status = 409, description = "The site has not finished training", content_type = "application/javascript", body = String),
        (status = 503, description = "Temporarily unavailable", content_type = "application/javascript", body = String)
    )
)]
#[tracing::instrument(skip_all, fields(site_id))]
async fn script(
    State(platform): State<Arc<Platform>>,
    query: Result<Query<ScriptQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let raw = query.ok().and_then(|Query(q)| q.site_id);
    let Some(site_id) = raw.as_deref().and_then(|s| SiteId::parse(s).ok()) else {
        return Refusal::MissingSiteId.into_response();
    };
    tracing::Span::current().record("site_id", site_id.as_str());
    let site = match shared::sites::find_site(platform.store.as_ref(), &site_id).await {
        Ok(site) => site,
        Err(e) => {
            tracing::warn!(error = %e, "reading the site failed");
            return Refusal::Unavailable.into_response();
        }
    };
    match check(site.as_ref()) {
        Ok(site) => serve(
            render(site, platform.config.chat_stream_url.as_ref()),
            &headers,
        ),
        Err(refusal) => refusal.into_response(),
    }
}

/// The served script for a site: the widget called with its public config and, when the deployment
/// has one, its streaming endpoint.
pub fn render(site: &Site, stream_url: Option<&url::Url>) -> String {
    let stream_url = stream_url.map(|u| u.as_str().trim_end_matches('/'));
    let config = PublicConfig {
        site_id: &site.site_id,
        stream_url,
        widget: &site.widget,
    };
    // Serialising plain strings, enums and integers cannot fail; `null` would only disable the widget.
    let json = serde_json::to_string(&config).unwrap_or_else(|_| "null".into());
    let widget = WIDGET_JS.trim_end().trim_end_matches(';');
    format!(
        "/*! Kotoba chat widget */\n({widget})({config});\n",
        config = escape_json_for_script(&json)
    )
}

/// Makes JSON safe to sit inside JavaScript source that may itself end up inside an HTML `<script>`:
/// `<`, `>` and `&` cannot form `</script>` or `<!--`, and U+2028/U+2029 (line terminators in older
/// JavaScript) cannot break a string literal. These characters only ever occur inside JSON strings,
/// where the `\uXXXX` escapes mean the same text.
pub fn escape_json_for_script(json: &str) -> String {
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// A strong validator: the body's SHA-256, which changes exactly when the bytes do.
pub fn etag(body: &str) -> String {
    let digest = Sha256::digest(body.as_bytes());
    format!("\"{}\"", hex::encode(&digest[..16]))
}

/// Whether `If-None-Match` names this ETag (`*` included). Per RFC 9110 the comparison is weak, so a
/// `W/` prefix a proxy may have added still matches.
pub fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
}

fn serve(body: String, request: &HeaderMap) -> Response {
    let tag = etag(&body);
    let mut response = if not_modified(request, &tag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, body).into_response()
    };
    let h = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, value);
    }
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CACHE_CONTROL),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Pages that isolate themselves (COEP: require-corp) may still load the widget.
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("cross-origin"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_escaped_for_script_context() {
        let json = serde_json::to_string("</script><!-- & \u{2028}\u{2029}").unwrap();
        let escaped = escape_json_for_script(&json);
        for bad in ['<', '>', '&', '\u{2028}', '\u{2029}'] {
            assert!(!escaped.contains(bad), "{bad:?} in {escaped}");
        }
        let back: String = serde_json::from_str(&escaped).unwrap();
        assert_eq!(back, "</script><!-- & \u{2028}\u{2029}");
    }

    #[test]
    fn if_none_match_is_compared_weakly_and_accepts_lists() {
        let tag = etag("body");
        let mut h = HeaderMap::new();
        assert!(!not_modified(&h, &tag));
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"x\", W/{tag}")).unwrap(),
        );
        assert!(not_modified(&h, &tag));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(not_modified(&h, &tag));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert!(!not_modified(&h, &tag));
    }

    #[test]
    fn the_widget_never_parses_html_or_evaluates_strings() {
        assert!(
            WIDGET_JS.contains("(config) => {"),
            "one function expression"
        );
        for banned in [
            ".innerHTML",
            ".outerHTML",
            "insertAdjacentHTML(",
            "document.write",
            "eval(",
            "new Function",
            "srcdoc",
        ] {
            assert!(!WIDGET_JS.contains(banned), "the widget uses {banned}");
        }
    }
}
