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
    Key::new("SEED#DEMO", "SEED")
}

/// Creates the demo tenant, key and site once; later starts read them back.
pub async fn ensure_demo(platform: &Arc<Platform>) -> anyhow::Result<Demo> {
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
    let key = api_keys::issue(store, ids, clock, &tenant.tenant_id).await?;
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
