//! Sites: what a tenant trains, embeds and chats with; their widget look and versioned prompt profile.
//!
//! A site lives at `SITE#<id>` (so public routes find it by id alone) and is listed through the
//! by-tenant index. Every read on behalf of a tenant checks ownership: another tenant's site is simply
//! not found. Writes use optimistic concurrency on a revision number, so concurrent PATCHes never lose
//! each other's changes.

pub mod domains;
pub mod prompt;
pub mod widget;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::clock::Clock;
use crate::ids::{IdGenerator, SiteId, TenantId, string_newtype};
use crate::store::{Condition, Index, Item, ItemStore, Key, Query, StoreError, Write, keys};
use domains::AllowedDomain;
use prompt::{PromptPatch, PromptProfile, PromptVersion};
use widget::{WidgetConfig, WidgetPatch};

/// Where a site's training stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SiteStatus {
    /// Never trained.
    Pending,
    Training,
    /// An index is serving.
    Ready,
    /// The first training failed (a failed re-train keeps the site `ready` on its previous index).
    Failed,
}

string_newtype!(
    /// A site's display name: 1 to 100 characters.
    pub SiteName
);

impl SiteName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let s = raw.trim();
        let n = s.chars().count();
        if n == 0 || n > 100 {
            return Err("must be 1 to 100 characters".into());
        }
        if s.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        Ok(Self(s.to_string()))
    }
}

/// A site as stored and shown (the contract's site object). Read back leniently (`store::stored`):
/// its fields were validated when written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Site {
    pub site_id: SiteId,
    pub tenant_id: TenantId,
    #[serde(deserialize_with = "crate::store::stored::lenient")]
    pub name: SiteName,
    #[serde(deserialize_with = "crate::store::stored::lenient_vec")]
    pub allowed_domains: Vec<AllowedDomain>,
    pub is_embed_enabled: bool,
    /// The public id of the site's embed snippet (safe to publish; it grants nothing by itself).
    pub embed_script_id: String,
    pub status: SiteStatus,
    /// The index version serving chat, once trained.
    pub index_version: Option<u64>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_trained_at: Option<OffsetDateTime>,
    /// Why the last training failed (cleared by the next success); a failed re-train keeps the
    /// previous index serving.
    #[serde(default)]
    pub last_training_error: Option<String>,
    /// Days a trained page stays fresh before the deadline job re-trains the site (differentially);
    /// 0 turns the automatic re-train off.
    #[serde(default = "default_retrain_interval")]
    pub retrain_interval_days: u32,
    pub widget: WidgetConfig,
    pub prompt: PromptProfile,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// What a tenant gives to create a site.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSite {
    pub name: SiteName,
    #[serde(default)]
    pub allowed_domains: Vec<String>,
}

/// A partial change (`PATCH /api/sites/{id}`): absent fields stay; `widget` merges; `prompt` makes a version.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SitePatch {
    pub name: Option<SiteName>,
    pub allowed_domains: Option<Vec<String>>,
    pub is_embed_enabled: Option<bool>,
    pub widget: Option<WidgetPatch>,
    pub prompt: Option<PromptPatch>,
    /// Days between automatic re-trains (0 = never, at most 365).
    pub retrain_interval_days: Option<u32>,
}

/// The automatic re-train interval of a site that never chose one: weekly.
pub const DEFAULT_RETRAIN_INTERVAL_DAYS: u32 = 7;
/// The longest re-train interval a site may choose (a year).
pub const MAX_RETRAIN_INTERVAL_DAYS: u32 = 365;

fn default_retrain_interval() -> u32 {
    DEFAULT_RETRAIN_INTERVAL_DAYS
}

#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    /// No such site, or not the caller's (the two are indistinguishable on purpose).
    #[error("site not found")]
    NotFound,
    #[error("prompt version {0} not found")]
    VersionNotFound(u32),
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// Concurrent changes kept winning; the caller may retry.
    #[error("the site changed while it was being updated; try again")]
    Conflict,
    /// The tenant has as many sites as its plan allows.
    #[error("the plan allows {0} sites")]
    LimitReached(u32),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub fn site_key(site: &SiteId) -> Key {
    keys::site(site)
}

fn prompt_version_key(site: &SiteId, version: u32) -> Key {
    keys::prompt_version(site, version)
}

/// The stored item: the site's fields, its revision, and its place in the by-tenant index.
fn site_item(site: &Site, rev: u64) -> Result<Item, StoreError> {
    let (pk, sk) = keys::site_listing(&site.tenant_id, &site.site_id);
    Ok(Item::from_record(site_key(&site.site_id), site)?
        .with("rev", rev)
        .with_index(Index::ByTenant, pk, sk))
}

fn version_item(site: &SiteId, version: &PromptVersion) -> Result<Item, StoreError> {
    Item::from_record(prompt_version_key(site, version.profile.version), version)
}

/// The tenant's count of sites created, the counter the plan's site limit is enforced on.
fn site_count_key(tenant: &TenantId) -> Key {
    keys::site_count(tenant)
}

/// Creates a site with the default widget and prompt version 1.
pub async fn create_site(
    store: &dyn ItemStore,
    ids: &dyn IdGenerator,
    clock: &dyn Clock,
    tenant: &TenantId,
    new: NewSite,
) -> Result<Site, SiteError> {
    create_site_within(store, ids, clock, tenant, new, None).await
}

/// Creates a site unless the tenant already has `max_sites`: the count goes up in the same transaction
/// as the site is written, so concurrent requests cannot overshoot. Past it, [`SiteError::LimitReached`].
pub async fn create_site_within(
    store: &dyn ItemStore,
    ids: &dyn IdGenerator,
    clock: &dyn Clock,
    tenant: &TenantId,
    new: NewSite,
    max_sites: Option<u32>,
) -> Result<Site, SiteError> {
    let allowed_domains =
        domains::parse_domains(&new.allowed_domains).map_err(|message| SiteError::Invalid {
            field: "allowed_domains",
            message,
        })?;
    let now = clock.now();
    let site = Site {
        site_id: SiteId::generate(ids),
        tenant_id: tenant.clone(),
        name: new.name,
        allowed_domains,
        is_embed_enabled: false,
        embed_script_id: format!("emb_{}", ids.new_id()),
        status: SiteStatus::Pending,
        index_version: None,
        last_trained_at: None,
        last_training_error: None,
        retrain_interval_days: DEFAULT_RETRAIN_INTERVAL_DAYS,
        widget: WidgetConfig::default(),
        prompt: PromptProfile::initial(),
        created_at: now,
        updated_at: now,
    };
    let first = PromptVersion {
        profile: site.prompt.clone(),
        created_at: now,
        rolled_back_from: None,
    };
    let mut count = crate::store::Add::new(site_count_key(tenant), "sites", 1);
    if let Some(max) = max_sites {
        count = count.up_to(i64::from(max));
    }
    match store
        .transact(vec![
            Write::Add(count),
            Write::Put(site_item(&site, 1)?, Condition::IfAbsent),
            Write::Put(version_item(&site.site_id, &first)?, Condition::IfAbsent),
        ])
        .await
    {
        Ok(()) => Ok(site),
        // The site's id is new, so a failed condition is the count at its limit.
        Err(StoreError::ConditionFailed) if max_sites.is_some() => {
            Err(SiteError::LimitReached(max_sites.unwrap_or_default()))
        }
        Err(e) => Err(e.into()),
    }
}

/// A site by id alone (public routes: the embed script, embed chat). Ownership is the caller's concern.
pub async fn find_site(store: &dyn ItemStore, site: &SiteId) -> Result<Option<Site>, StoreError> {
    Ok(read_site(store, site).await?.map(|(site, _)| site))
}

async fn read_site(
    store: &dyn ItemStore,
    site: &SiteId,
) -> Result<Option<(Site, u64)>, StoreError> {
    match store.get(&site_key(site)).await? {
        Some(item) => Ok(Some((item.to_record()?, item.count("rev") as u64))),
        None => Ok(None),
    }
}

/// The tenant's site, or `NotFound` (also when it belongs to someone else).
pub async fn get_site(
    store: &dyn ItemStore,
    tenant: &TenantId,
    site: &SiteId,
) -> Result<Site, SiteError> {
    Ok(owned_site(store, tenant, site).await?.0)
}

async fn owned_site(
    store: &dyn ItemStore,
    tenant: &TenantId,
    site: &SiteId,
) -> Result<(Site, u64), SiteError> {
    match read_site(store, site).await? {
        Some((s, rev)) if &s.tenant_id == tenant => Ok((s, rev)),
        _ => Err(SiteError::NotFound),
    }
}

/// A page of the tenant's sites, oldest first.
pub async fn list_sites(
    store: &dyn ItemStore,
    tenant: &TenantId,
    cursor: Option<String>,
) -> Result<(Vec<Site>, Option<String>), SiteError> {
    let page = store
        .query(
            Query::on(Index::ByTenant, keys::tenant_partition(tenant))
                .prefix(keys::prefix::SITE)
                .limit(100)
                .after(cursor),
        )
        .await?;
    let sites = crate::store::stored::readable::<Site>(&page.items);
    Ok((sites, page.next))
}

/// Applies a change with optimistic concurrency, retrying a few times if another writer got there first.
/// `change` returns the new site and, when the prompt changed, the version to record.
async fn change_site<F>(
    store: &dyn ItemStore,
    clock: &dyn Clock,
    tenant: &TenantId,
    site_id: &SiteId,
    change: F,
) -> Result<Site, SiteError>
where
    F: FnMut(&Site) -> Result<(Site, Option<PromptVersion>), SiteError>,
{
    change_site_with(store, clock, Some(tenant), site_id, change, Vec::new()).await
}

/// The general form: an optional owner check, and extra writes that must commit together with the
/// change (training switches the index version, finishes its job and frees the site's lock at once).
async fn change_site_with<F>(
    store: &dyn ItemStore,
    clock: &dyn Clock,
    owner: Option<&TenantId>,
    site_id: &SiteId,
    mut change: F,
    extra: Vec<Write>,
) -> Result<Site, SiteError>
where
    F: FnMut(&Site) -> Result<(Site, Option<PromptVersion>), SiteError>,
{
    for _ in 0..5 {
        let (current, rev) = match owner {
            Some(tenant) => owned_site(store, tenant, site_id).await?,
            None => read_site(store, site_id)
                .await?
                .ok_or(SiteError::NotFound)?,
        };
        let (mut next, version) = change(&current)?;
        next.updated_at = clock.now();
        let mut writes = vec![Write::Put(
            site_item(&next, rev + 1)?,
            Condition::AttributeEquals("rev".into(), rev.into()),
        )];
        if let Some(version) = &version {
            writes.push(Write::Put(
                version_item(site_id, version)?,
                Condition::IfAbsent,
            ));
        }
        writes.extend(extra.iter().cloned());
        match store.transact(writes).await {
            Ok(()) => return Ok(next),
            // Either the site moved on (retry on the new revision) or an extra write's condition failed;
            // the caller learns which by the outcome of the retries.
            Err(StoreError::ConditionFailed) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(SiteError::Conflict)
}

/// Applies a PATCH. A prompt change records a new prompt version in the same transaction.
pub async fn patch_site(
    store: &dyn ItemStore,
    clock: &dyn Clock,
    tenant: &TenantId,
    site_id: &SiteId,
    patch: SitePatch,
) -> Result<Site, SiteError> {
    let allowed_domains = match &patch.allowed_domains {
        Some(raw) => Some(
            domains::parse_domains(raw).map_err(|message| SiteError::Invalid {
                field: "allowed_domains",
                message,
            })?,
        ),
        None => None,
    };
    if let Some(days) = patch.retrain_interval_days
        && days > MAX_RETRAIN_INTERVAL_DAYS
    {
        return Err(SiteError::Invalid {
            field: "retrain_interval_days",
            message: format!("must be 0 (never) to {MAX_RETRAIN_INTERVAL_DAYS} days, not {days}"),
        });
    }
    let now = clock.now();
    change_site(store, clock, tenant, site_id, |current| {
        let mut next = current.clone();
        if let Some(days) = patch.retrain_interval_days {
            next.retrain_interval_days = days;
        }
        if let Some(name) = &patch.name {
            next.name = name.clone();
        }
        if let Some(domains) = &allowed_domains {
            next.allowed_domains = domains.clone();
        }
        if let Some(enabled) = patch.is_embed_enabled {
            next.is_embed_enabled = enabled;
        }
        if let Some(widget) = &patch.widget {
            next.widget = current.widget.merged(widget.clone());
        }
        let version = patch.prompt.as_ref().map(|p| {
            next.prompt = current.prompt.next(p.clone());
            PromptVersion {
                profile: next.prompt.clone(),
                created_at: now,
                rolled_back_from: None,
            }
        });
        Ok((next, version))
    })
    .await
}

/// The site's prompt history, newest first.
pub async fn prompt_versions(
    store: &dyn ItemStore,
    tenant: &TenantId,
    site_id: &SiteId,
    cursor: Option<String>,
) -> Result<(Vec<PromptVersion>, Option<String>), SiteError> {
    owned_site(store, tenant, site_id).await?;
    let page = store
        .query(
            Query::partition(keys::site_partition(site_id))
                .prefix(keys::prefix::PROMPT)
                .descending()
                .after(cursor),
        )
        .await?;
    let versions = crate::store::stored::readable::<PromptVersion>(&page.items);
    Ok((versions, page.next))
}

/// Makes an earlier version current again, as a new version (history is never rewritten).
pub async fn rollback_prompt(
    store: &dyn ItemStore,
    clock: &dyn Clock,
    tenant: &TenantId,
    site_id: &SiteId,
    to_version: u32,
) -> Result<Site, SiteError> {
    owned_site(store, tenant, site_id).await?;
    let Some(item) = store.get(&prompt_version_key(site_id, to_version)).await? else {
        return Err(SiteError::VersionNotFound(to_version));
    };
    let target: PromptVersion = item.to_record()?;
    let now = clock.now();
    change_site(store, clock, tenant, site_id, |current| {
        let mut next = current.clone();
        next.prompt = PromptProfile {
            version: current.prompt.version + 1,
            ..target.profile.clone()
        };
        let version = PromptVersion {
            profile: next.prompt.clone(),
            created_at: now,
            rolled_back_from: Some(to_version),
        };
        Ok((next, Some(version)))
    })
    .await
}

/// Changes a site on the platform's behalf (training), with writes that commit together with it.
/// Concurrent tenant PATCHes are retried around, never lost.
pub async fn update_site_internal(
    store: &dyn ItemStore,
    clock: &dyn Clock,
    site_id: &SiteId,
    mut change: impl FnMut(&mut Site),
    extra: Vec<Write>,
) -> Result<Site, SiteError> {
    change_site_with(
        store,
        clock,
        None,
        site_id,
        |current| {
            let mut next = current.clone();
            change(&mut next);
            Ok((next, None))
        },
        extra,
    )
    .await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::clock::ManualClock;
    use crate::embedded_db::EmbeddedDb;
    use crate::ids::SequentialIds;
    use crate::store::{EmbeddedStore, Update};
    use crate::tenants::Plan;

    /// Site and prompt-version rows as written before their times were typed (nanosecond, millisecond
    /// and whole-second text, as `clock::rfc3339` writes them) read typed and write back unchanged.
    #[tokio::test]
    async fn stored_site_rows_read_typed_and_write_back_unchanged() {
        let clock = ManualClock::at(crate::fixtures::START);
        let store =
            EmbeddedStore::new(EmbeddedDb::in_memory().unwrap(), Arc::new(clock.clone())).unwrap();
        let ids = SequentialIds::default();
        let (_, site) =
            crate::fixtures::tenant_with_site(&store, &ids, &clock, Plan::Pro, &["hotel.test"])
                .await;
        let mut row = serde_json::to_value(&site).unwrap();
        row["created_at"] = json!("2026-05-01T09:00:00.123456789Z");
        row["updated_at"] = json!("2026-05-02T10:00:00.5Z");
        row["last_trained_at"] = json!("2026-05-02T09:59:59Z");
        let read: Site = serde_json::from_value(row.clone()).unwrap();
        assert_eq!(
            read.created_at,
            time::macros::datetime!(2026-05-01 09:00:00.123456789 UTC)
        );
        assert_eq!(
            read.last_trained_at,
            Some(time::macros::datetime!(2026-05-02 09:59:59 UTC))
        );
        assert_eq!(serde_json::to_value(&read).unwrap(), row);

        let mut version = serde_json::to_value(&site.prompt).unwrap();
        version["created_at"] = json!("2026-05-01T09:00:00.25Z");
        let read: PromptVersion = serde_json::from_value(version.clone()).unwrap();
        assert_eq!(serde_json::to_value(&read).unwrap(), version);
    }

    /// A row written under an older, looser rule still reads and lists; a row that does not read at all
    /// is left out of the listing instead of failing it.
    #[tokio::test]
    async fn rows_violating_todays_rules_still_read_and_list() {
        let clock = ManualClock::at(crate::fixtures::START);
        let store =
            EmbeddedStore::new(EmbeddedDb::in_memory().unwrap(), Arc::new(clock.clone())).unwrap();
        let ids = SequentialIds::default();
        let (tenant, old) =
            crate::fixtures::tenant_with_site(&store, &ids, &clock, Plan::Pro, &["hotel.test"])
                .await;
        let broken = create_site(
            &store,
            &ids,
            &clock,
            &tenant.tenant_id,
            NewSite {
                name: SiteName::parse("Broken").unwrap(),
                allowed_domains: vec!["hotel.test".into()],
            },
        )
        .await
        .unwrap();
        // Values no rule of today accepts: a 150-character name, a domain with a path, a colour name.
        let long_name = "長".repeat(150);
        let mut widget = serde_json::to_value(&old.widget).unwrap();
        widget["color_primary"] = json!("red");
        store
            .update(
                Update::new(site_key(&old.site_id))
                    .set("name", long_name.clone())
                    .set("allowed_domains", json!(["hotel.test/path"]))
                    .set("widget", widget),
            )
            .await
            .unwrap();
        assert!(SiteName::parse(&long_name).is_err());
        // And a row that does not read as a site at all.
        store
            .update(Update::new(site_key(&broken.site_id)).set("name", 42))
            .await
            .unwrap();

        let (listed, _) = list_sites(&store, &tenant.tenant_id, None).await.unwrap();
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(listed[0].site_id, old.site_id);
        assert_eq!(String::from(listed[0].name.clone()), long_name);
        assert_eq!(
            serde_json::to_value(&listed[0].allowed_domains).unwrap(),
            json!(["hotel.test/path"])
        );
        let read = get_site(&store, &tenant.tenant_id, &old.site_id)
            .await
            .unwrap();
        assert_eq!(read, listed[0]);
        assert_eq!(
            serde_json::to_value(&read.widget).unwrap()["color_primary"],
            "red"
        );
    }
}
