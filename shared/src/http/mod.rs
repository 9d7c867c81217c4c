//! The HTTP edge shared by every function: the contract's error format, request ids, authentication
//! and JSON extraction. Service errors become HTTP statuses here, once.

mod auth;
mod client;
mod errors;
mod json;
pub mod openapi;
mod rejections;
mod request_id;
pub mod sockets;

pub use auth::{AdminAuth, AdminKey, TenantAuth};
pub use client::{client_ip, origin};
pub use errors::ApiError;
pub use json::{ApiJson, MAX_JSON_BODY, parse as parse_json};
pub use rejections::contract_rejections;
pub use request_id::{
    REQUEST_ID_HEADER, current_request_id, in_request, request_context, spawn_in_request,
    within_request,
};

use axum::Router;

/// The standard layers every function's router gets: request ids and tracing spans, a JSON 404 for
/// unknown routes, the error shape for the framework's own rejections. Call it last, on the finished
/// router.
pub fn finish(router: Router) -> Router {
    router
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .layer(axum::middleware::from_fn(rejections::contract_rejections))
        .layer(axum::middleware::from_fn(request_context))
}

/// [`finish`], with the tenant error log (`crate::errorlog`) recording every 4xx/5xx a tenant or a
/// site can be named for.
pub fn finish_logged(router: Router, platform: std::sync::Arc<crate::Platform>) -> Router {
    router
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .layer(axum::middleware::from_fn(rejections::contract_rejections))
        .layer(axum::middleware::from_fn_with_state(
            platform,
            crate::errorlog::layer,
        ))
        .layer(axum::middleware::from_fn(request_context))
}
