//! Shared harness for the workspace integration tests.

pub mod app;
pub mod aws;
pub mod faults;
pub mod iam;
pub mod lambda;
pub mod peer;
pub mod realtime_peer;
pub mod site;
pub mod stripe;
pub mod telemetry;
pub mod twilio;

pub use app::{Backend, Reply, TEST_TWILIO_AUTH_TOKEN, TestApp};

/// A name no other test in this run uses: every test gets its own table, bucket and queue, so tests can
/// share one emulator in parallel without resetting it.
pub fn unique_name(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..12])
}
