//! The contract's error format: `{"error": {"code", "message", …}}` with one status per kind.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::request_id::current_request_id;
use crate::billing::{BillingError, StripeError, WebhookError};
use crate::chat::ChatError;
use crate::chat::logs::FeedbackError;
use crate::credits::CreditError;
use crate::credits::purchases::PurchaseError;
use crate::deadlines::DeadlineError;
use crate::sites::SiteError;
use crate::store::StoreError;
use crate::tenants::api_keys::KeyError;
use crate::tenants::{Inactive, Plan, TenantError};
use crate::training::jobs::JobError;
use crate::training::submit::SubmitError;
use crate::voice::VoiceError;

/// Every way a request can fail, as a client sees it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400, naming the offending field when there is one.
    #[error("{message}")]
    InvalidInput {
        field: Option<String>,
        message: String,
    },
    /// 401: no key, or a key we do not know.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: known caller, not allowed (origin, plan, model).
    #[error("{0}")]
    Forbidden(String),
    /// 403: the key's role does not cover the route (a viewer writing, a manager at billing).
    #[error("this {role} key cannot do this: it needs the {required} role")]
    ForbiddenRole {
        role: &'static str,
        required: &'static str,
    },
    #[error("{0}")]
    NotFound(String),
    /// 402: quota or credits exhausted; says which plan and what to upgrade to.
    #[error("{message}")]
    PaymentRequired {
        message: String,
        plan: String,
        upgrade_hint: String,
    },
    /// 402 `credits_exhausted`: the action needs more credits than are available; carries the balance
    /// and where to buy more.
    #[error("{message}")]
    CreditsExhausted {
        message: String,
        balance: i64,
        needed: i64,
        purchase_hint: String,
    },
    /// 403 `suspicious_activity`: AI actions suspended after anomalous usage (Retry-After says when).
    #[error("AI actions are suspended after unusual activity; retry in {retry_after_secs}s")]
    Suspicious { retry_after_secs: u64 },
    /// 402: the subscription does not allow spending (canceled, unpaid, past due beyond the grace period).
    #[error("the subscription is {status}: update the payment method or choose a plan in billing")]
    SubscriptionInactive { status: &'static str },
    /// Stripe refused (400, or 402 for a card) or failed (502); carries Stripe's own error code.
    #[error("{message}")]
    Stripe {
        status: StatusCode,
        stripe_code: String,
        decline_code: Option<String>,
        message: String,
    },
    /// 409, with details such as the id of the thing in the way.
    #[error("{message}")]
    Conflict {
        message: String,
        details: Option<Value>,
    },
    /// 409: the thing exists but cannot serve yet (a site still training); its own code, so clients can
    /// tell "wait" from "not allowed".
    #[error("{0}")]
    NotReady(String),
    /// 413
    #[error("{0}")]
    TooLarge(String),
    /// 429 with Retry-After.
    #[error("rate limited; retry in {retry_after_secs}s")]
    RateLimited { retry_after_secs: u64 },
    /// 503: a dependency is down; the request may be retried. The message is fixed text for clients:
    /// the dependency's own words are logged where the error is mapped, never put here.
    #[error("{0}")]
    Unavailable(String),
    /// 500: our fault. The chain is logged with the request id; the client sees only the id.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidInput {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidInput { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::ForbiddenRole { .. } => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::PaymentRequired { .. }
            | Self::SubscriptionInactive { .. }
            | Self::CreditsExhausted { .. } => StatusCode::PAYMENT_REQUIRED,
            Self::Suspicious { .. } => StatusCode::FORBIDDEN,
            Self::Stripe { status, .. } => *status,
            Self::Conflict { .. } | Self::NotReady(_) => StatusCode::CONFLICT,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The machine-readable code in the body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidInput { .. } => "invalid_input",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::ForbiddenRole { .. } => "forbidden_role",
            Self::NotFound(_) => "not_found",
            Self::PaymentRequired { .. } => "quota_exceeded",
            Self::CreditsExhausted { .. } => "credits_exhausted",
            Self::Suspicious { .. } => "suspicious_activity",
            Self::SubscriptionInactive { .. } => "subscription_inactive",
            Self::Stripe { .. } => "stripe_error",
            Self::Conflict { .. } => "conflict",
            Self::NotReady(_) => "not_ready",
            Self::TooLarge(_) => "too_large",
            Self::RateLimited { .. } => "rate_limited",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }

    /// The `error` object of the body.
    pub fn body(&self) -> Value {
        let mut error = json!({ "code": self.code(), "message": self.to_string() });
        let obj = error.as_object_mut().expect("object literal");
        match self {
            Self::InvalidInput {
                field: Some(field), ..
            } => {
                obj.insert("field".into(), field.clone().into());
            }
            Self::ForbiddenRole { role, required } => {
                obj.insert("role".into(), (*role).into());
                obj.insert("required_role".into(), (*required).into());
            }
            Self::PaymentRequired {
                plan, upgrade_hint, ..
            } => {
                obj.insert("plan".into(), plan.clone().into());
                obj.insert("upgrade_hint".into(), upgrade_hint.clone().into());
            }
            Self::Conflict {
                details: Some(details),
                ..
            } => {
                obj.insert("details".into(), details.clone());
            }
            Self::RateLimited { retry_after_secs } | Self::Suspicious { retry_after_secs } => {
                obj.insert("retry_after_seconds".into(), (*retry_after_secs).into());
            }
            Self::CreditsExhausted {
                balance,
                needed,
                purchase_hint,
                ..
            } => {
                obj.insert("balance".into(), (*balance).into());
                obj.insert("needed".into(), (*needed).into());
                obj.insert("purchase_hint".into(), purchase_hint.clone().into());
            }
            Self::SubscriptionInactive { status } => {
                obj.insert("subscription_status".into(), (*status).into());
            }
            Self::Stripe {
                stripe_code,
                decline_code,
                ..
            } => {
                obj.insert("stripe_code".into(), stripe_code.clone().into());
                if let Some(d) = decline_code {
                    obj.insert("decline_code".into(), d.clone().into());
                }
            }
            _ => {}
        }
        if let Some(id) = current_request_id() {
            obj.insert("request_id".into(), id.into());
        }
        json!({ "error": error })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            Self::Internal(e) => tracing::error!(
                status = status.as_u16(),
                error = format!("{e:#}"),
                "request failed"
            ),
            Self::Unavailable(_) => {
                tracing::warn!(status = status.as_u16(), error = %self, "request failed")
            }
            _ => tracing::info!(
                status = status.as_u16(),
                code = self.code(),
                "request refused: {self}"
            ),
        }
        let mut response = (status, axum::Json(self.body())).into_response();
        // For the error log (crate::errorlog), which records code and message but never bodies.
        response
            .extensions_mut()
            .insert(crate::errorlog::ErrorSummary {
                code: self.code(),
                message: self.to_string(),
            });
        if let Self::RateLimited { retry_after_secs } | Self::Suspicious { retry_after_secs } = self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            // A condition reaching the edge unhandled means two writers raced; the client may retry.
            StoreError::ConditionFailed => Self::Conflict {
                message: "the resource changed concurrently; try again".into(),
                details: None,
            },
            // The backend's text names endpoints, tables and item keys: it goes to the log (with the
            // request id), the client gets a fixed message and the id.
            // Found by schemathesis: `?cursor=` with anything but a `next_cursor` was a 500.
            StoreError::BadCursor(why) => Self::invalid(
                "cursor",
                format!(
                    "not a cursor this listing handed out ({why}); pass the previous page's next_cursor"
                ),
            ),
            StoreError::Backend(e) => {
                tracing::warn!(
                    request_id = current_request_id().unwrap_or_default(),
                    error = format!("{e:#}"),
                    "storage unavailable"
                );
                Self::Unavailable("storage is temporarily unavailable; try again".into())
            }
            other => Self::Internal(other.into()),
        }
    }
}

impl From<DeadlineError> for ApiError {
    fn from(e: DeadlineError) -> Self {
        match e {
            DeadlineError::FutureDate(..) | DeadlineError::BadDate(_) => {
                let message = e.to_string();
                Self::invalid("date", message.trim_start_matches("date: ").to_string())
            }
            DeadlineError::Store(e) => e.into(),
        }
    }
}

impl From<SiteError> for ApiError {
    fn from(e: SiteError) -> Self {
        match e {
            SiteError::NotFound => Self::NotFound("site not found".into()),
            SiteError::VersionNotFound(v) => {
                Self::NotFound(format!("prompt version {v} not found"))
            }
            SiteError::Invalid { field, message } => Self::invalid(field, message),
            SiteError::Conflict => Self::Conflict {
                message: e.to_string(),
                details: None,
            },
            // Handlers that know the plan say which one; this is the plan-less fallback.
            SiteError::LimitReached(max) => Self::PaymentRequired {
                message: format!("the plan allows {max} sites"),
                plan: String::new(),
                upgrade_hint: "upgrade the plan for more sites".into(),
            },
            SiteError::Store(e) => e.into(),
        }
    }
}

impl From<crate::webhooks::WebhookError> for ApiError {
    fn from(e: crate::webhooks::WebhookError) -> Self {
        use crate::webhooks::WebhookError as W;
        match e {
            W::NotFound | W::DeliveryNotFound => Self::NotFound(e.to_string()),
            W::Invalid { field, message } => Self::invalid(field, message),
            W::TooMany => Self::Conflict {
                message: e.to_string(),
                details: None,
            },
            W::NotConfigured => Self::Unavailable(e.to_string()),
            W::Queue(q) => {
                tracing::warn!(error = %q, "webhook queue unavailable");
                Self::Unavailable("the webhook queue is temporarily unavailable; try again".into())
            }
            W::Secret(s) => Self::Internal(s.into()),
            W::Store(s) => s.into(),
        }
    }
}

impl From<TenantError> for ApiError {
    fn from(e: TenantError) -> Self {
        match e {
            TenantError::NotFound(id) => Self::NotFound(format!("tenant {id} not found")),
            TenantError::Store(e) => e.into(),
        }
    }
}

impl From<Inactive> for ApiError {
    fn from(Inactive(status): Inactive) -> Self {
        Self::SubscriptionInactive {
            status: status.as_str(),
        }
    }
}

impl From<StripeError> for ApiError {
    fn from(e: StripeError) -> Self {
        let refused_input = e.is_client_error();
        match e {
            StripeError::NotConfigured => {
                Self::Unavailable(BillingError::NotConfigured.to_string())
            }
            StripeError::Api {
                status,
                code,
                message,
                decline_code,
            } if refused_input => Self::Stripe {
                // A card Stripe declined is the caller's to fix: 402, as Stripe says it.
                status: if status == 402 {
                    StatusCode::PAYMENT_REQUIRED
                } else {
                    StatusCode::BAD_REQUEST
                },
                stripe_code: code,
                decline_code,
                message: if message.is_empty() {
                    "Stripe refused the request".into()
                } else {
                    message
                },
            },
            other => {
                tracing::error!(error = %other, "Stripe failed");
                Self::Stripe {
                    status: StatusCode::BAD_GATEWAY,
                    stripe_code: match &other {
                        StripeError::Api { code, .. } => code.clone(),
                        _ => "unreachable".into(),
                    },
                    decline_code: None,
                    message: "Stripe could not complete the request; try again".into(),
                }
            }
        }
    }
}

impl From<BillingError> for ApiError {
    fn from(e: BillingError) -> Self {
        match e {
            BillingError::NotConfigured | BillingError::NoPublishableKey => {
                Self::Unavailable(e.to_string())
            }
            BillingError::PlanNotSold(_) => Self::invalid("plan", e.to_string()),
            BillingError::NoCustomer => Self::Conflict {
                message: e.to_string(),
                details: None,
            },
            BillingError::Invalid(message) => Self::InvalidInput {
                field: None,
                message,
            },
            BillingError::Stripe(e) => e.into(),
            BillingError::Tenant(e) => e.into(),
            BillingError::Credits(e) => e.into(),
        }
    }
}

impl From<PurchaseError> for ApiError {
    fn from(e: PurchaseError) -> Self {
        match e {
            PurchaseError::UnknownPackage(_) => Self::NotFound(e.to_string()),
            PurchaseError::NotOnSale(_) => Self::Conflict {
                message: e.to_string(),
                details: None,
            },
            PurchaseError::Invalid(message) => {
                // "field: why" names the field.
                match message.split_once(": ") {
                    Some((field, why))
                        if !field.is_empty()
                            && field.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') =>
                    {
                        Self::invalid(field, why)
                    }
                    _ => Self::InvalidInput {
                        field: None,
                        message,
                    },
                }
            }
            PurchaseError::Refused(e) => e.into(),
            PurchaseError::Billing(e) => e.into(),
            PurchaseError::Store(e) => e.into(),
        }
    }
}

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::NotConfigured => Self::Unavailable(e.to_string()),
            WebhookError::Signature(_) | WebhookError::Malformed(_) => Self::InvalidInput {
                field: None,
                message: e.to_string(),
            },
            WebhookError::InProgress(_) => Self::Conflict {
                message: e.to_string(),
                details: None,
            },
            // Any failure to apply is answered 5xx, so Stripe delivers the event again.
            WebhookError::Apply(BillingError::Tenant(TenantError::Store(e))) => e.into(),
            WebhookError::Apply(e) => {
                Self::Internal(anyhow::Error::new(e).context("applying a Stripe event"))
            }
        }
    }
}

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::NotFound => Self::NotFound("API key not found".into()),
            KeyError::Store(e) => e.into(),
        }
    }
}

/// "Upgrade to …" for a plan that has a bigger one, else an offer to raise the limits by hand.
fn upgrade_hint(plan: Plan, what: &str) -> String {
    match plan.upgrade() {
        Some(next) => format!("upgrade to the {} plan{what}", next.as_str()),
        None => "contact us to raise your limits".into(),
    }
}

impl From<CreditError> for ApiError {
    fn from(e: CreditError) -> Self {
        match e {
            CreditError::Exhausted { available, needed } => Self::CreditsExhausted {
                message: format!(
                    "credits exhausted: this action needs up to {} credits and {} are available",
                    needed.0, available.0
                ),
                balance: available.0,
                needed: needed.0,
                // Only what exists today: packages are listed but not yet sold through the API.
                purchase_hint:
                    "more credits come with the plan's monthly grant (on the 1st), a plan \
                     upgrade (POST /api/billing/checkout) or from the operator; GET \
                     /api/credits/packages lists the packages on sale"
                        .into(),
            },
            CreditError::RateLimited {
                retry_after_secs, ..
            } => Self::RateLimited { retry_after_secs },
            CreditError::Suspended { retry_after_secs } => Self::Suspicious { retry_after_secs },
            CreditError::Invalid(m) => Self::invalid("credits", m),
            CreditError::Contended(_) => {
                Self::Unavailable("the credit account is busy; try again".into())
            }
            CreditError::Store(e) => e.into(),
        }
    }
}

impl From<ChatError> for ApiError {
    fn from(e: ChatError) -> Self {
        match e {
            ChatError::InvalidMessage(m) => Self::invalid("message", m),
            ChatError::MessageTooLong => Self::TooLarge(e.to_string()),
            ChatError::SiteNotFound => Self::NotFound("site not found".into()),
            ChatError::NotAvailable(m) => Self::Forbidden(m),
            ChatError::OriginNotAllowed => Self::Forbidden(e.to_string()),
            ChatError::NotTrained => Self::NotReady(e.to_string()),
            ChatError::ModelNotAllowed(m) => Self::Forbidden(m),
            ChatError::UnknownModel(m) => Self::invalid("model", m),
            ChatError::Subscription(status) => Self::SubscriptionInactive {
                status: status.as_str(),
            },
            ChatError::QuotaExhausted { plan, ref what } => Self::PaymentRequired {
                message: format!("{what} exhausted"),
                plan: plan.as_str().into(),
                upgrade_hint: upgrade_hint(plan, " for more"),
            },
            ChatError::RateLimited(secs) => Self::RateLimited {
                retry_after_secs: secs,
            },
            // The provider's message may name its endpoint or echo the request: logged, not answered.
            ChatError::ModelFailed(_) => {
                tracing::warn!(
                    request_id = current_request_id().unwrap_or_default(),
                    error = format!("{:#}", anyhow::Error::new(e)),
                    "the chat model failed"
                );
                Self::Unavailable("the assistant cannot answer right now; try again".into())
            }
            ChatError::Credits(e) => e.into(),
            ChatError::Store(e) => e.into(),
            ChatError::Index(_) => Self::Internal(e.into()),
        }
    }
}

impl From<crate::execute::ExecuteError> for ApiError {
    fn from(e: crate::execute::ExecuteError) -> Self {
        use crate::execute::ExecuteError as E;
        match e {
            E::Invalid { field, message } => Self::invalid(field, message),
            // A setting of the deployment, not an outage: retrying will not help.
            E::NoModel => Self::Forbidden(
                "direct AI calls are not available: no chat model is configured on this \
                 deployment (KOTOBA_CHAT_MODEL)"
                    .into(),
            ),
            E::ModelNotAllowed(m) => Self::Forbidden(m),
            E::UnknownModel(m) => Self::invalid("model", m),
            E::Subscription(status) => Self::SubscriptionInactive {
                status: status.as_str(),
            },
            // The provider's message may name its endpoint or echo the input: logged, not answered.
            E::ModelFailed(_) => {
                tracing::warn!(
                    request_id = current_request_id().unwrap_or_default(),
                    error = format!("{:#}", anyhow::Error::new(e)),
                    "the model failed an execution"
                );
                Self::Unavailable("the model cannot answer right now; try again".into())
            }
            E::Credits(e) => e.into(),
            E::Store(e) => e.into(),
        }
    }
}

impl From<JobError> for ApiError {
    fn from(e: JobError) -> Self {
        match e {
            JobError::AlreadyTraining(job) => Self::Conflict {
                message: format!("the site is already training (job {job})"),
                details: Some(json!({ "job_id": job })),
            },
            JobError::TooManyJobs { max, plan } => Self::Conflict {
                message: format!(
                    "the {} plan trains {max} site(s) at a time; wait for a running job to finish{}",
                    plan.as_str(),
                    match plan.upgrade() {
                        Some(next) => format!(" or upgrade to the {} plan", next.as_str()),
                        None => String::new(),
                    }
                ),
                details: Some(json!({ "max_concurrent_jobs": max })),
            },
            JobError::NotFound => Self::NotFound("training job not found".into()),
            JobError::Store(e) => e.into(),
        }
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::Site(e) => e.into(),
            SubmitError::Tenant(e) => e.into(),
            SubmitError::Inactive(e) => e.into(),
            // The refusal's detail is logged where it was found; the tenant hears only this.
            SubmitError::Unfetchable(_) => Self::invalid(
                "url",
                "this URL cannot be fetched: give a public http(s) address of the website",
            ),
            SubmitError::Job(e) => e.into(),
            SubmitError::Queue(_) => {
                Self::Unavailable("the training queue is unavailable; try again".into())
            }
            SubmitError::Encode(_) => Self::Internal(e.into()),
        }
    }
}

impl From<FeedbackError> for ApiError {
    fn from(e: FeedbackError) -> Self {
        match e {
            FeedbackError::NotFound => Self::NotFound("message not found in this session".into()),
            FeedbackError::SiteNotFound => Self::NotFound("site not found".into()),
            FeedbackError::OriginNotAllowed => Self::Forbidden(e.to_string()),
            FeedbackError::InvalidMessageId(message) => Self::invalid("message_id", message),
            FeedbackError::Store(e) => e.into(),
        }
    }
}

impl From<VoiceError> for ApiError {
    fn from(e: VoiceError) -> Self {
        match e {
            VoiceError::NumberTaken(number) => Self::Conflict {
                message: format!("the number {number} is already assigned"),
                details: Some(json!({ "number": number })),
            },
            VoiceError::NumberExists(number) => Self::Conflict {
                message: format!("the number {number} is already provisioned"),
                details: Some(json!({ "number": number })),
            },
            VoiceError::NumberNotFound => Self::NotFound("phone number not found".into()),
            VoiceError::CallNotFound => Self::NotFound("call not found".into()),
            VoiceError::VersionNotFound(v) => {
                Self::NotFound(format!("receptionist settings version {v} not found"))
            }
            VoiceError::Conflict => Self::Conflict {
                message: e.to_string(),
                details: None,
            },
            VoiceError::Store(e) => e.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_follow_the_contract() {
        let e = ApiError::invalid("widget.color_primary", "\"red\" is not a colour");
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        let body = e.body();
        assert_eq!(body["error"]["code"], "invalid_input");
        assert_eq!(body["error"]["field"], "widget.color_primary");
        let e = ApiError::PaymentRequired {
            message: "quota".into(),
            plan: "starter".into(),
            upgrade_hint: "pro".into(),
        };
        assert_eq!(e.status(), StatusCode::PAYMENT_REQUIRED);
        assert_eq!(e.body()["error"]["plan"], "starter");
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let e = ApiError::Internal(anyhow::anyhow!("database password is hunter2"));
        assert!(!e.body().to_string().contains("hunter2"));
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn storage_failures_hide_their_cause() {
        let e: ApiError = StoreError::Backend(anyhow::anyhow!(
            "dispatch failure: http://10.1.2.3:8000/ table kotoba-prod item SITE#site_abc"
        ))
        .into();
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = e.body().to_string();
        for detail in ["10.1.2.3", "kotoba-prod", "SITE#", "dispatch"] {
            assert!(!body.contains(detail), "{detail:?} leaked: {body}");
        }
    }

    #[test]
    fn chat_failures_keep_their_cause_for_the_log_only() {
        let e: ApiError = ChatError::Index(
            anyhow::anyhow!("blob store down at 10.0.0.9").context("reading sites/s/index"),
        )
        .into();
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let ApiError::Internal(cause) = &e else {
            panic!("{e:?}")
        };
        // The whole chain reaches the log line; none of it reaches the client.
        let chain = format!("{cause:#}");
        assert!(
            chain.contains("index could not be loaded") && chain.contains("10.0.0.9"),
            "{chain}"
        );
        assert!(!e.body().to_string().contains("10.0.0.9"));

        let provider = crate::models::chat::ProviderError::Rejected {
            status: 400,
            message: "key sk-secret at https://llm.internal".into(),
        };
        let failed = ChatError::ModelFailed(provider);
        assert!(std::error::Error::source(&failed).is_some());
        let e: ApiError = failed.into();
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(!e.body().to_string().contains("sk-secret"));

        let e: ApiError = ChatError::QuotaExhausted {
            plan: Plan::Starter,
            what: "monthly chats".into(),
        }
        .into();
        assert_eq!(e.status(), StatusCode::PAYMENT_REQUIRED);
        assert_eq!(e.body()["error"]["plan"], "starter");
        assert_eq!(
            e.body()["error"]["upgrade_hint"],
            "upgrade to the pro plan for more"
        );
    }

    #[test]
    fn training_and_feedback_failures_map_once() {
        let e: ApiError = JobError::TooManyJobs {
            max: 1,
            plan: Plan::Starter,
        }
        .into();
        assert_eq!(e.status(), StatusCode::CONFLICT);
        let body = e.body();
        assert_eq!(body["error"]["details"]["max_concurrent_jobs"], 1);
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("the starter plan trains 1 site(s)")
                && message.contains("upgrade to the pro plan"),
            "{message}"
        );
        let e: ApiError = JobError::NotFound.into();
        assert_eq!(e.status(), StatusCode::NOT_FOUND);
        let e: ApiError = FeedbackError::NotFound.into();
        assert_eq!(e.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            e.body()["error"]["message"],
            "message not found in this session"
        );
        let e: ApiError = FeedbackError::Store(StoreError::Backend(anyhow::anyhow!("down"))).into();
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn rate_limits_carry_retry_after() {
        let response = ApiError::RateLimited {
            retry_after_secs: 7,
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
    }
}
