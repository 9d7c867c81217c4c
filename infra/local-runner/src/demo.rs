//! `GET /demo`: a page with the demo site's chat widget on it, served from the runner's own origin
//! (`localhost` and `127.0.0.1` are the demo site's allowed domains).

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse};
use axum::routing::get;

use shared::ids::SiteId;

/// The demo page's route.
pub fn routes(site: &SiteId) -> Router {
    let page = page(site);
    Router::new().route(
        "/demo",
        get(move || {
            let page = page.clone();
            async move {
                let mut response = Html(page).into_response();
                response
                    .headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                response
            }
        }),
    )
}

/// The page. A `SiteId` is lowercase letters, digits and `_` only (checked when parsed), so it is safe
/// in both the attribute and the text as it is.
pub fn page(site: &SiteId) -> String {
    DEMO_PAGE.replace("{site_id}", site.as_str())
}

const DEMO_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Kotoba demo</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 42rem; margin: 3rem auto; padding: 0 1rem; line-height: 1.6; color: #1f2937; }
  code, pre { background: #f3f4f6; border-radius: 4px; padding: 0.1rem 0.3rem; }
  pre { padding: 0.75rem; overflow-x: auto; }
</style>
</head>
<body>
<h1>Kotoba demo page</h1>
<p>This page embeds the demo site's chat widget with one tag, exactly as a tenant would:</p>
<pre>&lt;script src="/api/embed/script?site_id={site_id}" async&gt;&lt;/script&gt;</pre>
<p>The demo site is trained on the runner's own <a href="/demo/site/">sample site</a>: the FAQ of Hotel
Kamome-tei, a fictional seaside hotel, in English and Japanese. Open the bubble in the corner and ask, for
example, <q>What time is check-in?</q>, <q>Is there parking?</q> or <q lang="ja">温泉は何時まで入れますか？</q>
The answer lists the pages it came from.</p>
<p>Answers are extractive (quoted from the trained pages) unless <code>KOTOBA_CHAT_MODEL</code> names a
model on an OpenAI-compatible API (<code>OPENAI_BASE_URL</code>, <code>OPENAI_API_KEY</code>). If the bubble
does not appear, the demo site is not trained: the runner's start-up banner (<code>demo index:</code>) says
why.</p>
<p lang="ja">日本語・한국어: ウィジェットの表示言語はブラウザの言語設定に従います。위젯 언어는 브라우저 언어를 따릅니다.</p>
<script src="/api/embed/script?site_id={site_id}" async></script>
</body>
</html>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_embeds_the_site_widget() {
        let site = SiteId::parse("site_abc123").unwrap();
        let html = page(&site);
        assert!(
            html.contains(r#"<script src="/api/embed/script?site_id=site_abc123" async></script>"#)
        );
        assert!(!html.contains("{site_id}"));
    }
}
