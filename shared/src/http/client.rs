//! Facts about the client that only the edge knows: its IP and its Origin.

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::http::request::Parts;

/// The visitor's IP: API Gateway's `sourceIp` in Lambda, the socket's peer address in the local runner.
/// `X-Forwarded-For` is never trusted: anyone can send it.
pub fn client_ip(parts: &Parts) -> Option<String> {
    if let Some(lambda_http::request::RequestContext::ApiGatewayV2(ctx)) =
        parts
            .extensions
            .get::<lambda_http::request::RequestContext>()
        && let Some(ip) = &ctx.http.source_ip
    {
        return Some(ip.clone());
    }
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string())
}

/// The `Origin` header, when it is present and readable.
pub fn origin(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get(http::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}
