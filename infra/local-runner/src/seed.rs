//! The demo tenant and site a newcomer gets on first start, so the widget and the API work at once.

use std::sync::Arc;

use anyhow::Context;
use serde_json::json;

use shared::Platform;
use shared::ids::{SiteId, TenantId};
use shared::sites::{self, NewSite, SiteName, SitePatch};
use shared::store::{Condition, Item, Key};
use shared::tenants::{self, Plan, SubscriptionStatus, TenantName, api_keys};

/// What the banner prints and the demo page uses.
#[derive(Debug, Clone)]
pub struct Demo {
    pub tenant_id: TenantId,
    pub site_id: SiteId,
    /// Kept in the data directory (local mode only) so it can be printed on every start.
    pub api_key: String,
}

fn marker() -> Key {
    shared::store::keys::demo_seed()
}

/// Creates the demo tenant, key and site once; later starts read them back. The key and the site id are
/// kept in the data directory (`demo-api-key`, `demo-site-id`) so scripts and the README's commands can
/// read them.
pub async fn ensure_demo(platform: &Arc<Platform>) -> anyhow::Result<Demo> {
    let demo = load_or_create(platform).await?;
    crate::write_private(
        &platform.config.data_dir.join("demo-site-id"),
        demo.site_id.as_str(),
    )
    .context("keeping the demo site id")?;
    Ok(demo)
}

async fn load_or_create(platform: &Arc<Platform>) -> anyhow::Result<Demo> {
    let store = platform.store.as_ref();
    let key_file = platform.config.data_dir.join("demo-api-key");
    if let (Some(item), Ok(key)) = (
        store.get(&marker()).await?,
        std::fs::read_to_string(&key_file),
    ) {
        let tenant_id = TenantId::parse(item.attributes["tenant_id"].as_str().unwrap_or_default())
            .map_err(anyhow::Error::msg)?;
        let site_id = SiteId::parse(item.attributes["site_id"].as_str().unwrap_or_default())
            .map_err(anyhow::Error::msg)?;
        return Ok(Demo {
            tenant_id,
            site_id,
            api_key: key.trim().to_string(),
        });
    }

    let (ids, clock) = (platform.ids.as_ref(), platform.clock.as_ref());
    let name = TenantName::parse("Kotoba Demo").map_err(anyhow::Error::msg)?;
    let tenant = tenants::create_tenant(store, ids, clock, name, Plan::Pro).await?;
    tenants::set_subscription_status(store, &tenant.tenant_id, SubscriptionStatus::Active).await?;
    let key = api_keys::issue(
        store,
        ids,
        clock,
        &tenant.tenant_id,
        api_keys::NewKey::default(),
    )
    .await?;
    let site = sites::create_site(
        store,
        ids,
        clock,
        &tenant.tenant_id,
        NewSite {
            name: SiteName::parse("Demo site").map_err(anyhow::Error::msg)?,
            allowed_domains: vec!["localhost".into(), "127.0.0.1".into()],
        },
    )
    .await?;
    let patch = SitePatch {
        is_embed_enabled: Some(true),
        ..SitePatch::default()
    };
    sites::patch_site(store, clock, &tenant.tenant_id, &site.site_id, patch).await?;

    crate::write_private(&key_file, key.key.expose()).context("keeping the demo key")?;
    let item = Item::new(marker())
        .with("tenant_id", json!(tenant.tenant_id))
        .with("site_id", json!(site.site_id));
    store.put(item, Condition::None).await?;
    tracing::info!(tenant_id = %tenant.tenant_id, site_id = %site.site_id, "seeded the demo tenant and site");
    Ok(Demo {
        tenant_id: tenant.tenant_id,
        site_id: site.site_id,
        api_key: key.key.expose().to_string(),
    })
}

/// Where the demo site's training stands after start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DemoTraining {
    /// Trained by an earlier start on the same address and models: nothing to do.
    AlreadyTrained { url: String },
    /// Trained now.
    Trained {
        url: String,
        job_id: String,
        pages: u64,
        chunks: u64,
    },
    /// Not trained (the runner still works; the demo page says why the widget is missing).
    NotTrained { reason: String },
}

impl std::fmt::Display for DemoTraining {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AlreadyTrained { url } => write!(f, "ready (trained earlier on {url})"),
            Self::Trained {
                url, pages, chunks, ..
            } => write!(
                f,
                "ready (trained now on {url}: {pages} pages, {chunks} chunks)"
            ),
            Self::NotTrained { reason } => write!(f, "NOT trained: {reason}"),
        }
    }
}

/// How long start-up waits for the demo training (a few pages on loopback take well under a second
/// lexically; with an embedding model it depends on the model server).
const DEMO_TRAINING_DEADLINE: std::time::Duration = std::time::Duration::from_secs(180);

/// Trains the demo site on the sample site this runner serves (`/demo/site/`), through the public API
/// on the runner's own address, exactly as a tenant trains theirs: `POST /api/train/url`, the queue,
/// the worker, the crawler over HTTP. Skipped when an earlier start already trained it on the same
/// address, with the same embedding model, on the same sample pages (a different port, model or page
/// would leave stale source links, an index without vectors, or old answers). Needs the runner to be serving; failures are reported, not fatal.
pub async fn train_demo(platform: &Arc<Platform>, demo: &Demo, base_url: &str) -> DemoTraining {
    match try_train_demo(platform, demo, base_url).await {
        Ok(done) => done,
        Err(e) => {
            let reason = format!("{e:#}");
            tracing::warn!(reason = %reason, "the demo site was not trained");
            DemoTraining::NotTrained { reason }
        }
    }
}

async fn try_train_demo(
    platform: &Arc<Platform>,
    demo: &Demo,
    base_url: &str,
) -> anyhow::Result<DemoTraining> {
    let store = platform.store.as_ref();
    let url = format!(
        "{}{}",
        base_url.trim_end_matches('/'),
        crate::sample_site::PREFIX
    );
    let embedding_model = platform.config.models.embedding_model.clone();
    let site = sites::get_site(store, &demo.tenant_id, &demo.site_id)
        .await
        .context("reading the demo site")?;
    let marker_item = store.get(&marker()).await?;
    let trained_as = |name: &str| {
        marker_item
            .as_ref()
            .and_then(|item| item.attributes.get(name))
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    };
    if site.status == sites::SiteStatus::Ready
        && trained_as("trained_url") == json!(url)
        && trained_as("trained_embedding_model") == json!(embedding_model)
        && trained_as("trained_sample") == json!(crate::sample_site::fingerprint())
    {
        return Ok(DemoTraining::AlreadyTrained { url });
    }
    if !platform.config.fetch_allow_loopback {
        anyhow::bail!(
            "KOTOBA_FETCH_ALLOW_LOOPBACK is false, so the crawler may not fetch the sample site on {url}"
        );
    }

    let http = shared::http::sockets::client_builder()
        .no_proxy()
        .build()
        .context("building the HTTP client")?;
    let api = base_url.trim_end_matches('/');
    let reply = http
        .post(format!("{api}/api/train/url"))
        .bearer_auth(&demo.api_key)
        .json(&json!({ "site_id": demo.site_id, "url": url }))
        .send()
        .await
        .context("POST /api/train/url")?;
    let status = reply.status();
    let body: serde_json::Value = reply.json().await.context("reading the training reply")?;
    let job_id = match status.as_u16() {
        202 => body["job_id"].as_str(),
        // A job left running by a previous start (its message is redelivered): wait for that one.
        409 => body["error"]["details"]["job_id"].as_str(),
        _ => None,
    }
    .map(str::to_string)
    .ok_or_else(|| anyhow::anyhow!("POST /api/train/url answered {status}: {body}"))?;

    let deadline = tokio::time::Instant::now() + DEMO_TRAINING_DEADLINE;
    let job = loop {
        let job: serde_json::Value = http
            .get(format!("{api}/api/train/jobs/{job_id}"))
            .bearer_auth(&demo.api_key)
            .send()
            .await
            .context("GET /api/train/jobs")?
            .json()
            .await
            .context("reading the training job")?;
        match job["status"].as_str() {
            Some("succeeded") => break job,
            Some("failed") => anyhow::bail!("training job {job_id} failed: {}", job["error"]),
            _ if tokio::time::Instant::now() >= deadline => anyhow::bail!(
                "training job {job_id} did not finish within {}s; see GET /api/train/jobs/{job_id}",
                DEMO_TRAINING_DEADLINE.as_secs()
            ),
            _ => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    };

    let item = Item::new(marker())
        .with("tenant_id", json!(demo.tenant_id))
        .with("site_id", json!(demo.site_id))
        .with("trained_url", json!(url))
        .with("trained_embedding_model", json!(embedding_model))
        .with("trained_sample", json!(crate::sample_site::fingerprint()));
    store.put(item, Condition::None).await?;
    let done = DemoTraining::Trained {
        url,
        job_id,
        pages: job["pages_crawled"].as_u64().unwrap_or(0),
        chunks: job["chunks"].as_u64().unwrap_or(0),
    };
    tracing::info!(site_id = %demo.site_id, "demo site {done}");
    Ok(done)
}
