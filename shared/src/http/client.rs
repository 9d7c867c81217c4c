//! Facts about the client that only the edge knows: its IP and its Origin.

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::http::request::Parts;

/// The visitor's IP: API Gateway's `sourceIp` in Lambda, the socket's peer address in the local runner.
/// `X-Forwarded-For` is trusted only behind CloudFront: the streaming function URL takes IAM-signed
/// requests, which only the stack's CloudFront distribution can make, and CloudFront appends the
/// address it saw as the header's last entry (earlier entries are the visitor's to invent).
pub fn client_ip(parts: &Parts) -> Option<String> {
    if let Some(lambda_http::request::RequestContext::ApiGatewayV2(ctx)) =
        parts
            .extensions
            .get::<lambda_http::request::RequestContext>()
    {
        let signed = ctx.authorizer.as_ref().is_some_and(|a| a.iam.is_some());
        if signed && let Some(ip) = forwarded_by_cloudfront(parts, ctx.http.source_ip.as_deref()) {
            return Some(ip);
        }
        if let Some(ip) = &ctx.http.source_ip {
            return Some(ip.clone());
        }
    }
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string())
}

/// The address CloudFront appended to `X-Forwarded-For`: the last entry that is not CloudFront's own
/// (`source_ip`, which may have been appended after it).
fn forwarded_by_cloudfront(parts: &Parts, source_ip: Option<&str>) -> Option<String> {
    let header = parts.headers.get("x-forwarded-for")?.to_str().ok()?;
    let last = header
        .rsplit(',')
        .map(str::trim)
        .find(|entry| Some(*entry) != source_ip)?;
    last.parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| ip.to_string())
}

/// The `Origin` header, when it is present and readable.
pub fn origin(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get(http::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(event: &str) -> Parts {
        let request: lambda_http::request::LambdaRequest = serde_json::from_str(event).unwrap();
        let request: lambda_http::Request = request.into();
        request.into_parts().0
    }

    #[test]
    fn behind_cloudfront_the_visitor_is_the_address_cloudfront_forwarded() {
        let event = include_str!("../../../events/chat-stream-function-url.json");
        assert_eq!(client_ip(&parts(event)).as_deref(), Some("203.0.113.9"));
        // Whatever the visitor put in front is ignored.
        let spoofed = event.replace("203.0.113.9, 130.176.0.1", "198.51.100.1, 203.0.113.9");
        assert_eq!(client_ip(&parts(&spoofed)).as_deref(), Some("203.0.113.9"));
    }

    #[test]
    fn through_api_gateway_the_header_is_never_trusted() {
        let event = include_str!("../../../events/embed-chat.json").replace(
            "\"origin\"",
            "\"x-forwarded-for\": \"198.51.100.1\", \"origin\"",
        );
        assert_eq!(client_ip(&parts(&event)).as_deref(), Some("203.0.113.7"));
    }
}
