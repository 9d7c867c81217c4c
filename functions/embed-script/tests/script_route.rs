//! `GET /api/embed/script` against the embedded adapters: who gets a widget, the caching headers, and
//! the config escaped so tenant text can never break out of the script.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use tower::ServiceExt;

use shared::Platform;
use shared::clock::SystemClock;
use shared::config::{Config, Mode};
use shared::ids::{RandomIds, SiteId};
use shared::sites::widget::WidgetPatch;
use shared::sites::{self, NewSite, SiteName, SitePatch, SiteStatus};
use shared::tenants::{self, Plan, TenantName};

struct Fixture {
    platform: Arc<Platform>,
    tenant: shared::ids::TenantId,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let vars = [("KOTOBA_DATA_DIR", dir.path().to_str().unwrap())]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let config = Config::from_vars(&vars, Mode::Deployed).unwrap();
        let platform =
            Platform::embedded(config, Arc::new(SystemClock), Arc::new(RandomIds)).unwrap();
        let tenant = tenants::create_tenant(
            platform.store.as_ref(),
            platform.ids.as_ref(),
            platform.clock.as_ref(),
            TenantName::parse("Widget Co").unwrap(),
            Plan::Starter,
        )
        .await
        .unwrap()
        .tenant_id;
        Fixture {
            platform,
            tenant,
            _dir: dir,
        }
    }

    /// A site with the given embed flag, optionally marked as trained, with a widget patch applied.
    async fn site(&self, enabled: bool, ready: bool, widget: Option<WidgetPatch>) -> SiteId {
        let p = &self.platform;
        let site = sites::create_site(
            p.store.as_ref(),
            p.ids.as_ref(),
            p.clock.as_ref(),
            &self.tenant,
            NewSite {
                name: SiteName::parse("Shop").unwrap(),
                allowed_domains: vec!["shop.example.com".into()],
            },
        )
        .await
        .unwrap();
        let patch = SitePatch {
            is_embed_enabled: Some(enabled),
            widget,
            ..SitePatch::default()
        };
        sites::patch_site(
            p.store.as_ref(),
            p.clock.as_ref(),
            &self.tenant,
            &site.site_id,
            patch,
        )
        .await
        .unwrap();
        if ready {
            sites::update_site_internal(
                p.store.as_ref(),
                p.clock.as_ref(),
                &site.site_id,
                |s| {
                    s.status = SiteStatus::Ready;
                    s.index_version = Some(1);
                },
                Vec::new(),
            )
            .await
            .unwrap();
        }
        site.site_id
    }

    async fn get(
        &self,
        uri: &str,
        if_none_match: Option<&str>,
    ) -> (StatusCode, header::HeaderMap, String) {
        let mut request = Request::get(uri);
        if let Some(tag) = if_none_match {
            request = request.header(header::IF_NONE_MATCH, tag);
        }
        let response = embed_script::app(self.platform.clone())
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
    }
}

fn uri(site: &SiteId) -> String {
    format!("/api/embed/script?site_id={site}")
}

#[tokio::test]
async fn ready_embed_enabled_sites_get_the_widget_with_revalidating_caching() {
    let f = Fixture::new().await;
    {
        let site = f.site(true, true, None).await;
        let (status, headers, body) = f.get(&uri(&site), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            headers[header::CONTENT_TYPE],
            "application/javascript; charset=utf-8"
        );
        let cache = headers[header::CACHE_CONTROL].to_str().unwrap();
        assert!(
            cache.contains("max-age=300") && cache.contains("must-revalidate"),
            "{cache}"
        );
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        let etag = headers[header::ETAG].to_str().unwrap().to_string();
        assert!(
            etag.starts_with('"') && etag.ends_with('"') && !etag.starts_with("W/"),
            "strong: {etag}"
        );
        assert!(body.starts_with("/*! Kotoba chat widget */\n("));
        assert!(body.contains("(config) => {") && body.ends_with(");\n"));
        assert!(body.contains(&format!("\"site_id\":\"{site}\"")));
        assert!(body.contains("\"color_primary\":\"#2563eb\""));
        assert!(
            !body.contains("tenant")
                && !body.contains("allowed_domains")
                && !body.contains("shop.example.com"),
            "nothing but the public widget config reaches the browser"
        );

        // The same bytes every time: a stable ETag, and 304 without a body on revalidation.
        let (_, again, body_again) = f.get(&uri(&site), None).await;
        assert_eq!(
            (again[header::ETAG].to_str().unwrap(), &body_again),
            (etag.as_str(), &body)
        );
        let (status, headers, body) = f.get(&uri(&site), Some(&etag)).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED);
        assert!(body.is_empty());
        assert_eq!(headers[header::ETAG].to_str().unwrap(), etag);
        assert!(
            headers[header::CACHE_CONTROL]
                .to_str()
                .unwrap()
                .contains("max-age=300")
        );
        let (status, _, _) = f.get(&uri(&site), Some("\"stale\"")).await;
        assert_eq!(status, StatusCode::OK);
    }
}

#[tokio::test]
async fn a_config_change_changes_the_etag_and_tenant_text_is_escaped() {
    let f = Fixture::new().await;
    {
        let site = f.site(true, true, None).await;
        let (_, before, _) = f.get(&uri(&site), None).await;
        let hostile = "</script><script>alert(1)</script><!-- & \u{2028}\u{2029} 'quotes' \"dq\"";
        let patch = WidgetPatch {
            welcome_message: Some(shared::sites::widget::WelcomeMessage::parse(hostile).unwrap()),
            ..WidgetPatch::default()
        };
        let p = &f.platform;
        sites::patch_site(
            p.store.as_ref(),
            p.clock.as_ref(),
            &f.tenant,
            &site,
            SitePatch {
                widget: Some(patch),
                ..SitePatch::default()
            },
        )
        .await
        .unwrap();
        let (status, after, body) = f.get(&uri(&site), None).await;
        assert_eq!(status, StatusCode::OK);
        assert_ne!(before[header::ETAG], after[header::ETAG]);
        let config = &body[body.rfind(")({").unwrap() + 2..];
        for bad in ['<', '>', '&', '\u{2028}', '\u{2029}'] {
            assert!(!config.contains(bad), "{bad:?} unescaped in {config}");
        }
        assert!(config.contains("\\u003c/script\\u003e"));
        let json = config.trim_end().trim_end_matches(");");
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(value["welcome_message"], hostile);
    }
}

#[tokio::test]
async fn other_sites_get_a_one_line_comment_and_an_error_status() {
    let f = Fixture::new().await;
    {
        let disabled = f.site(false, true, None).await;
        let pending = f.site(true, false, None).await;
        let unknown = SiteId::generate(&RandomIds);
        let cases = [
            ("/api/embed/script".to_string(), StatusCode::BAD_REQUEST),
            (
                "/api/embed/script?site_id=".to_string(),
                StatusCode::BAD_REQUEST,
            ),
            (
                "/api/embed/script?site_id=*/alert(1)/*".to_string(),
                StatusCode::BAD_REQUEST,
            ),
            (
                "/api/embed/script?site_id=a&site_id=b".to_string(),
                StatusCode::BAD_REQUEST,
            ),
            (uri(&unknown), StatusCode::NOT_FOUND),
            (uri(&disabled), StatusCode::FORBIDDEN),
            (uri(&pending), StatusCode::CONFLICT),
        ];
        for (path, expected) in cases {
            let (status, headers, body) = f.get(&path, None).await;
            assert_eq!(status, expected, "{path}: {body}");
            assert_eq!(
                headers[header::CONTENT_TYPE],
                "application/javascript; charset=utf-8"
            );
            assert_eq!(headers[header::CACHE_CONTROL], "no-store");
            assert!(headers.get(header::ETAG).is_none());
            assert!(
                body.starts_with("/* ") && body.ends_with(" */\n"),
                "{body:?}"
            );
            assert_eq!(body.lines().count(), 1, "{body:?}");
            assert_eq!(body.matches("*/").count(), 1, "{body:?}");
            assert!(!body.contains("alert"), "input is never echoed: {body:?}");
        }
    }
}
