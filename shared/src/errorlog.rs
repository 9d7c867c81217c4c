//! The error log: every 4xx/5xx a tenant's or a site's routes answer, recorded with its status, code,
//! message, request id, site and time (never a request body), kept 30 days (store TTL), listed by
//! `GET /api/errors`.
//!
//! The layer opens a scope per request; `TenantAuth` (and site-keyed routes, through
//! [`attribute_site`]) say whose request it is; `ApiError` leaves its code and message on the response.
//! Requests nobody can be attributed to (no key, a bad key) are not any tenant's to see.

use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use crate::clock::rfc3339;
use crate::ids::{SiteId, TenantId};
use crate::platform::Platform;
use crate::store::{Condition, Index, Item, ItemStore, Query, StoreError, keys};

/// How long errors are kept.
pub const RETENTION: time::Duration = time::Duration::days(30);
/// Entries per page.
pub const PAGE_SIZE: usize = 50;

/// What `ApiError` leaves on its response for this layer.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorSummary {
    pub code: &'static str,
    pub message: String,
}

#[derive(Debug, Default)]
struct Attribution {
    tenant: Option<TenantId>,
    site: Option<SiteId>,
}

tokio::task_local! {
    static SCOPE: Arc<Mutex<Attribution>>;
}

/// The request being served belongs to this tenant.
pub fn attribute_tenant(tenant: &TenantId) {
    let _ = SCOPE.try_with(|s| {
        if let Ok(mut a) = s.lock() {
            a.tenant = Some(tenant.clone());
        }
    });
}

/// The request being served is about this site (a site-keyed public route knows no tenant key; the
/// site says whose it is).
pub fn attribute_site(site: &SiteId) {
    let _ = SCOPE.try_with(|s| {
        if let Ok(mut a) = s.lock() {
            a.site = Some(site.clone());
        }
    });
}

/// One recorded error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorEntry {
    pub error_id: String,
    pub status: u16,
    pub code: String,
    pub message: String,
    pub request_id: Option<String>,
    pub site_id: Option<SiteId>,
    pub method: String,
    /// The path only: no query string, no body.
    pub path: String,
    /// RFC 3339.
    pub occurred_at: String,
}

/// The site a path or query names (`/api/sites/{id}…`, `?site_id=`), when it parses.
fn site_of(request: &Request) -> Option<SiteId> {
    let path = request.uri().path();
    if let Some(rest) = path.strip_prefix("/api/sites/")
        && let Ok(site) = SiteId::parse(rest.split('/').next().unwrap_or(""))
    {
        return Some(site);
    }
    request.uri().query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "site_id")
            .and_then(|(_, v)| SiteId::parse(&v).ok())
    })
}

/// The middleware (install with `axum::middleware::from_fn_with_state(platform, errorlog::layer)`,
/// inside the request-id layer and outside the rejection rewriter).
pub async fn layer(
    State(platform): State<Arc<Platform>>,
    request: Request,
    next: Next,
) -> Response {
    let scope = Arc::new(Mutex::new(Attribution {
        tenant: None,
        site: site_of(&request),
    }));
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let response = SCOPE.scope(scope.clone(), next.run(request)).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (tenant, site) = match scope.lock() {
        Ok(mut a) => (a.tenant.take(), a.site.take()),
        Err(_) => return response,
    };
    let summary = response.extensions().get::<ErrorSummary>().cloned();
    let store = platform.store.as_ref();
    let tenant = match (tenant, &site) {
        (Some(t), _) => Some(t),
        (None, Some(site)) => site_owner(store, site).await,
        (None, None) => None,
    };
    let Some(tenant) = tenant else {
        return response;
    };
    // A site another tenant names is not theirs to see in this tenant's log, nor this one's.
    let site = match site {
        Some(s) if site_owner(store, &s).await.as_ref() == Some(&tenant) => Some(s),
        _ => None,
    };
    let (code, message) = summary.map_or_else(
        || {
            (
                status
                    .canonical_reason()
                    .unwrap_or("error")
                    .to_lowercase()
                    .replace(' ', "_"),
                String::new(),
            )
        },
        |s| (s.code.to_string(), s.message),
    );
    let entry = ErrorEntry {
        error_id: platform.ids.new_id(),
        status: status.as_u16(),
        code,
        message: message.chars().take(512).collect(),
        request_id: crate::http::current_request_id(),
        site_id: site,
        method,
        path,
        occurred_at: rfc3339(platform.clock.now()),
    };
    if let Err(e) = record(store, &tenant, &entry, platform.clock.now()).await {
        tracing::warn!(error = %e, "recording an error in the error log failed");
    }
    response
}

async fn site_owner(store: &dyn ItemStore, site: &SiteId) -> Option<TenantId> {
    let item = store.get(&keys::site(site)).await.ok()??;
    item.attributes
        .get("tenant_id")
        .and_then(|v| v.as_str())
        .and_then(|t| TenantId::parse(t).ok())
}

/// Writes one entry, expiring after [`RETENTION`].
pub async fn record(
    store: &dyn ItemStore,
    tenant: &TenantId,
    entry: &ErrorEntry,
    now: time::OffsetDateTime,
) -> Result<(), StoreError> {
    let mut item = Item::from_record(keys::error_entry(tenant, &entry.error_id), entry)?
        .expiring_at((now + RETENTION).unix_timestamp());
    if let Some(site) = &entry.site_id {
        let (pk, sk) = keys::error_site_listing(site, &entry.error_id);
        item = item.with_index(Index::BySite, pk, sk);
    }
    store.put(item, Condition::IfAbsent).await
}

/// A tenant's errors, newest first; with `site`, that site's only (the caller checks it is theirs).
pub async fn list(
    store: &dyn ItemStore,
    tenant: &TenantId,
    site: Option<&SiteId>,
    cursor: Option<String>,
) -> Result<(Vec<ErrorEntry>, Option<String>), StoreError> {
    let query = match site {
        Some(site) => Query::on(Index::BySite, keys::error_site_listing(site, "").0),
        None => Query::partition(keys::errors_partition(tenant)),
    };
    let page = store
        .query(
            query
                .prefix(keys::prefix::ERROR)
                .descending()
                .limit(PAGE_SIZE)
                .after(cursor),
        )
        .await?;
    let entries = page
        .items
        .iter()
        .map(Item::to_record)
        .collect::<Result<Vec<ErrorEntry>, _>>()?;
    Ok((entries, page.next))
}
