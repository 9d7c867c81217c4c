//! The embed script and the demo page through the local runner, as a browser fetches them: the demo
//! site's widget is refused with a JavaScript comment until the site is ready, then served with
//! revalidating caching. Runs on both adapter families.

use kotoba_tests::{Backend, TestApp};
use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};

use shared::sites::{self, SiteStatus};

async fn embed_script(app: TestApp) {
    let site = app.demo.site_id.clone();
    let script_url = app.url(&format!("/api/embed/script?site_id={site}"));

    // The demo page embeds the demo site's widget with one tag, from an allowed origin.
    let page = app.client.get(app.url("/demo")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    assert!(
        html.contains(&format!(
            r#"<script src="/api/embed/script?site_id={site}""#
        )),
        "{html}"
    );

    // Embed-enabled but never trained: a comment and a refusal, never a broken page.
    let refused = app.client.get(&script_url).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    assert_eq!(
        refused.headers()[CONTENT_TYPE],
        "application/javascript; charset=utf-8"
    );
    let body = refused.text().await.unwrap();
    assert!(
        body.starts_with("/* ") && body.trim_end().ends_with("*/"),
        "{body}"
    );

    // Once an index is serving, the widget is served and revalidates with a 304.
    sites::update_site_internal(
        app.platform.store.as_ref(),
        app.platform.clock.as_ref(),
        &site,
        |s| {
            s.status = SiteStatus::Ready;
            s.index_version = Some(1);
        },
        Vec::new(),
    )
    .await
    .unwrap();
    let served = app.client.get(&script_url).send().await.unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    let etag = served.headers()[ETAG].clone();
    assert!(
        served.headers()[CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("must-revalidate")
    );
    let script = served.text().await.unwrap();
    assert!(script.contains(site.as_str()));
    let again = app
        .client
        .get(&script_url)
        .header(IF_NONE_MATCH, etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);

    // Turning the widget off takes effect on the next load.
    let off = app
        .patch(
            &format!("/api/sites/{site}"),
            &app.demo.api_key,
            serde_json::json!({"is_embed_enabled": false}),
        )
        .await;
    assert_eq!(off.status, StatusCode::OK, "{:?}", off.body);
    let disabled = app.client.get(&script_url).send().await.unwrap();
    assert_eq!(disabled.status(), StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread")]
async fn embed_script_on_embedded_adapters() {
    embed_script(TestApp::spawn(Backend::Embedded).await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn embed_script_on_aws_adapters() {
    embed_script(TestApp::spawn(Backend::Aws).await).await;
}
