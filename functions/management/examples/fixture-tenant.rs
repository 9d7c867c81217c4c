//! Prepares a fresh local store for `cargo lambda invoke` with the fixtures in `events/`: creates a
//! tenant ("Fixture tenant", starter plan) and installs for it the fixed API key every fixture carries
//! (`kt_EventFixtureKeyForLocalInvokesOnly_00000000`). Run it with the same `KOTOBA_DATA_DIR` the
//! functions will use (`cargo lambda watch` passes the shell's environment on):
//!
//! ```sh
//! export KOTOBA_DATA_DIR=$PWD/.kotoba-events KOTOBA_ADMIN_KEY=events-fixture-admin-key-0001
//! cargo run -p management --example fixture-tenant
//! ```
//!
//! Only for a local store: it refuses to run when `KOTOBA_TABLE` points at DynamoDB, and a second run
//! reports the tenant it already set up.

use shared::config::{Backend, Config, Mode};
use shared::tenants::api_keys::{self, ApiKey};
use shared::tenants::{self, Plan, TenantName};

/// The key in every fixture's `Authorization` header.
const FIXTURE_KEY: &str = "kt_EventFixtureKeyForLocalInvokesOnly_00000000";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env(Mode::Local)?;
    if config.backend != Backend::Embedded {
        anyhow::bail!(
            "refusing to install a fixture key outside a local store (KOTOBA_TABLE is set)"
        );
    }
    let data_dir = config.data_dir.clone();
    let platform = shared::Platform::from_config(config).await?;
    let key = ApiKey::parse(FIXTURE_KEY).map_err(anyhow::Error::msg)?;
    if let Some(existing) = api_keys::authenticate(platform.store.as_ref(), &key).await? {
        println!(
            "the fixture key already belongs to tenant {} in {}",
            existing.tenant_id,
            data_dir.display()
        );
        return Ok(());
    }
    let name = TenantName::parse("Fixture tenant").map_err(anyhow::Error::msg)?;
    let tenant = tenants::create_tenant(
        platform.store.as_ref(),
        platform.ids.as_ref(),
        platform.clock.as_ref(),
        name,
        Plan::Starter,
    )
    .await?;
    api_keys::register(
        platform.store.as_ref(),
        platform.ids.as_ref(),
        platform.clock.as_ref(),
        &tenant.tenant_id,
        &key,
        api_keys::NewKey::default(),
    )
    .await?;
    println!(
        "tenant {} holds the fixture key {FIXTURE_KEY} in {}",
        tenant.tenant_id,
        data_dir.display()
    );
    Ok(())
}
