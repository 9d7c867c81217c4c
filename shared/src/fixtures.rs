//! What the unit tests of several services start from: an embedded platform on a manual clock and
//! sequential ids, and a tenant with one site.

use std::collections::HashMap;
use std::sync::Arc;

use crate::Platform;
use crate::clock::{Clock, ManualClock};
use crate::config::{Config, Mode};
use crate::ids::{IdGenerator, SequentialIds};
use crate::sites::{self, NewSite, Site, SiteName};
use crate::store::ItemStore;
use crate::tenants::{self, Plan, Tenant, TenantName};

/// The instant every fixture's clock starts at.
pub const START: time::OffsetDateTime = time::macros::datetime!(2026-05-01 09:00 UTC);

/// An embedded platform in `dir`, its clock at [`START`], its ids sequential.
pub fn embedded_platform(dir: &tempfile::TempDir) -> Arc<Platform> {
    let vars = HashMap::from([(
        "KOTOBA_DATA_DIR".to_string(),
        dir.path().display().to_string(),
    )]);
    let config = Config::from_vars(&vars, Mode::Local).unwrap();
    Platform::embedded(
        config,
        Arc::new(ManualClock::at(START)),
        Arc::new(SequentialIds::default()),
    )
    .unwrap()
}

/// A tenant on `plan` with one site allowing `domains`.
pub async fn tenant_with_site(
    store: &dyn ItemStore,
    ids: &dyn IdGenerator,
    clock: &dyn Clock,
    plan: Plan,
    domains: &[&str],
) -> (Tenant, Site) {
    let tenant =
        tenants::create_tenant(store, ids, clock, TenantName::parse("Hotel").unwrap(), plan)
            .await
            .unwrap();
    let site = sites::create_site(
        store,
        ids,
        clock,
        &tenant.tenant_id,
        NewSite {
            name: SiteName::parse("Hotel site").unwrap(),
            allowed_domains: domains.iter().map(|d| d.to_string()).collect(),
        },
    )
    .await
    .unwrap();
    (tenant, site)
}
