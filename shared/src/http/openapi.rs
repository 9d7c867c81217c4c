//! What every function's part of the OpenAPI document shares: the contract's error body, the security
//! schemes, and the responses each kind of route can give. The document itself is assembled by the
//! embed-script function (`GET /api/openapi.json`) from every function's `ApiDoc`.

use serde::Deserialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, ToSchema};

/// Security scheme names, as operations name them in `security(...)`.
pub const TENANT_KEY: &str = "tenant_key";
pub const ADMIN_KEY: &str = "admin_key";
/// Stripe's webhook signature (`Stripe-Signature: t=…,v1=…`, an HMAC of the raw body).
pub const STRIPE_SIGNATURE: &str = "stripe_signature";
/// The console's session cookie (`kotoba_session`), from `POST /api/console/session`.
pub const CONSOLE_SESSION: &str = "console_session";

/// The body of every error response: `{"error": {"code", "message", …}}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    pub error: ErrorObject,
}

/// The `error` object. `code` says what kind of failure (one per HTTP status); the optional members
/// appear with the kinds that carry them.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorObject {
    pub code: ErrorCode,
    /// For people: what went wrong and, where it helps, what to do.
    pub message: String,
    /// The request field at fault (`invalid_input`).
    pub field: Option<String>,
    /// The id of this request (also the `x-request-id` header), to quote to support.
    pub request_id: Option<String>,
    /// The tenant's plan (`quota_exceeded`).
    pub plan: Option<String>,
    /// What would lift the limit (`quota_exceeded`).
    pub upgrade_hint: Option<String>,
    /// Facts about the conflict, e.g. the running job's id (`conflict`).
    pub details: Option<serde_json::Value>,
    /// Seconds to wait (`rate_limited`; also the `Retry-After` header).
    pub retry_after_seconds: Option<u64>,
    /// Where the subscription stands (`subscription_inactive`): `canceled`, `unpaid`, `past_due`, ….
    pub subscription_status: Option<String>,
    /// Stripe's own error code (`stripe_error`), e.g. `card_declined`.
    pub stripe_code: Option<String>,
    /// Why the card issuer declined (`stripe_error`, for card errors).
    pub decline_code: Option<String>,
    /// The key's role (`forbidden_role`).
    pub role: Option<String>,
    /// The role the route needs (`forbidden_role`).
    pub required_role: Option<String>,
    /// Credits available now (`credits_exhausted`).
    pub balance: Option<i64>,
    /// Credits the action would have reserved (`credits_exhausted`).
    pub needed: Option<i64>,
    /// Where more credits come from (`credits_exhausted`).
    pub purchase_hint: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidInput,
    Unauthorized,
    Forbidden,
    ForbiddenRole,
    NotFound,
    QuotaExceeded,
    CreditsExhausted,
    SuspiciousActivity,
    SubscriptionInactive,
    StripeError,
    Conflict,
    NotReady,
    TooLarge,
    RateLimited,
    Unavailable,
    Internal,
}

/// Adds the security schemes: a tenant's API key (`kt_…`) and the operator's admin key (bearer), and
/// Stripe's webhook signature header.
pub struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |description: &str| {
            let mut http = Http::new(HttpAuthScheme::Bearer);
            http.description = Some(description.to_string());
            SecurityScheme::Http(http)
        };
        components.add_security_scheme(
            TENANT_KEY,
            bearer(
                "A tenant's API key (POST /api/keys issues more): `Authorization: Bearer <key>`.",
            ),
        );
        components.add_security_scheme(
            ADMIN_KEY,
            bearer("The operator's admin key (KOTOBA_ADMIN_KEY): `Authorization: Bearer <key>`."),
        );
        components.add_security_scheme(
            CONSOLE_SESSION,
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "kotoba_session",
                "The console's session (POST /api/console/session); changes also need the \
                 session's `X-CSRF-Token` header. Tenant routes accept it in place of a key.",
            ))),
        );
        components.add_security_scheme(
            STRIPE_SIGNATURE,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Stripe-Signature",
                "Stripe's signature of the raw body with the endpoint's signing secret \
                 (STRIPE_WEBHOOK_SECRET): `t=<unix time>,v1=<hex HMAC-SHA256 of \"t.body\">`.",
            ))),
        );
    }
}

/// Completes the assembled document: every operation documents the errors any route of its kind can
/// give (401 behind a key, 400/413 with a body) and a `default` for the rest, all in the error shape.
pub fn finish_document(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    let error = |description: &str| -> RefOr<utoipa::openapi::Response> {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .into()
    };
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            let secured = operation
                .security
                .as_ref()
                .is_some_and(|requirements| !requirements.is_empty());
            let has_body = operation.request_body.is_some();
            let responses = &mut operation.responses.responses;
            if secured {
                responses
                    .entry("401".into())
                    .or_insert_with(|| error("No key, or a key that is not valid here"));
            }
            if has_body {
                responses.entry("400".into()).or_insert_with(|| {
                    error(
                        "The body is not the JSON this operation takes (`field` names the culprit)",
                    )
                });
                responses
                    .entry("413".into())
                    .or_insert_with(|| error("The body is too large"));
            }
            responses
                .entry("default".into())
                .or_insert_with(|| error("Any other failure, in the contract's error shape"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::ApiError;

    /// The documented error shape is the one `ApiError` writes, for every kind.
    #[test]
    fn every_error_body_matches_the_documented_shape() {
        let errors = [
            ApiError::invalid("url", "bad"),
            ApiError::InvalidInput {
                field: None,
                message: "bad".into(),
            },
            ApiError::Unauthorized("no key".into()),
            ApiError::Forbidden("no".into()),
            ApiError::NotFound("gone".into()),
            ApiError::PaymentRequired {
                message: "out".into(),
                plan: "starter".into(),
                upgrade_hint: "upgrade".into(),
            },
            ApiError::ForbiddenRole {
                role: "viewer",
                required: "manager",
            },
            ApiError::CreditsExhausted {
                message: "out of credits".into(),
                balance: 3,
                needed: 40,
                purchase_hint: "next month's grant".into(),
            },
            ApiError::Suspicious {
                retry_after_secs: 3600,
            },
            ApiError::SubscriptionInactive { status: "canceled" },
            ApiError::Stripe {
                status: axum::http::StatusCode::PAYMENT_REQUIRED,
                stripe_code: "card_declined".into(),
                decline_code: Some("insufficient_funds".into()),
                message: "declined".into(),
            },
            ApiError::Conflict {
                message: "busy".into(),
                details: Some(serde_json::json!({ "job_id": "job_1" })),
            },
            ApiError::NotReady("training".into()),
            ApiError::TooLarge("big".into()),
            ApiError::RateLimited {
                retry_after_secs: 3,
            },
            ApiError::Unavailable("down".into()),
            ApiError::Internal(anyhow::anyhow!("boom")),
        ];
        for e in errors {
            let body: ErrorBody = serde_json::from_value(e.body())
                .unwrap_or_else(|err| panic!("{} body {}: {err}", e.code(), e.body()));
            let code = serde_json::to_value(e.code()).unwrap();
            let documented: ErrorCode = serde_json::from_value(code).unwrap();
            assert_eq!(
                format!("{documented:?}").to_lowercase(),
                e.code().replace('_', "")
            );
            assert_eq!(format!("{:?}", body.error.code), format!("{documented:?}"));
        }
    }
}
