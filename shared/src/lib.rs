//! Kotoba's shared crate: the domain (tenants, sites, plans, money), the ports every outside system sits
//! behind (store, blobs, queue, mail) with their AWS and embedded adapters, and the services the functions
//! call. Functions speak HTTP and call into here; services speak ports; adapters speak SDKs.

pub mod audit;
pub mod billing;
pub mod blobs;
pub mod chat;
pub mod chunk;
pub mod clock;
pub mod config;
pub mod crawl;
pub mod credits;
pub mod deadlines;
pub mod embedded_db;
pub mod errorlog;
pub mod execute;
pub mod extract;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod http;
pub mod ids;
pub mod index;
pub mod mail;
pub mod models;
pub mod money;
pub mod platform;
pub mod queue;
pub mod secrets;
pub mod sites;
pub mod store;
pub mod telemetry;
pub mod tenants;
pub mod training;
pub mod usage;
pub mod voice;
pub mod webhooks;

pub use platform::Platform;
