//! The workspace integration tests, one binary (one link of the SDKs and SQLite): port conformance on
//! every adapter, the HTTP API through the local runner, the deployed entry points, the template.
//! `TEST_LOG=1` shows the logs (filtered by `RUST_LOG`); run one module with `cargo test --test integration api_chat::`.

mod api_billing;
mod api_chat;
mod api_console;
mod api_contract;
mod api_credit_analytics;
mod api_credit_purchases;
mod api_credits;
mod api_deadlines;
mod api_embed_script;
mod api_hardening;
mod api_logs;
mod api_roles;
mod api_sites;
mod api_train;
mod api_webhooks;
mod blobs_conformance;
mod call_bridge;
mod chat_round_trips;
mod deploy_iam;
mod deploy_secrets;
mod deploy_template;
mod lambda_events;
mod lambda_fixtures;
mod mail_conformance;
mod newcomer;
mod queue_conformance;
mod store_conformance;
mod train_slices;
