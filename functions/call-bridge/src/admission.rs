//! `POST /incoming-call-realtime`: Twilio's voice webhook.
//!
//! The signature is checked over every received field against the configured public URL (403 otherwise).
//! Admission fails closed: an unknown number, a tenant not in good standing, exhausted minutes, or any
//! error while checking answers `<Say>` + `<Hangup/>`, and no model session is ever opened. Otherwise the
//! call is connected to our media stream with a short-lived token only this bridge can sign.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use shared::http::ApiError;
use shared::ids::TenantId;
use shared::tenants;
use shared::voice::token::StreamClaims;
use shared::voice::{CallSid, Language, PhoneNumber, metering, phone, receptionist, twiml};

use crate::{Bridge, TOKEN_TTL_SECS};

/// Why a call was refused (logged; the caller only hears that the number is unavailable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    MalformedRequest,
    UnknownNumber,
    NotSubscribed,
    MinutesExhausted,
    CheckFailed,
}

impl Refusal {
    fn as_str(self) -> &'static str {
        match self {
            Refusal::MalformedRequest => "malformed_request",
            Refusal::UnknownNumber => "unknown_number",
            Refusal::NotSubscribed => "not_subscribed",
            Refusal::MinutesExhausted => "minutes_exhausted",
            Refusal::CheckFailed => "check_failed",
        }
    }
}

fn twiml(xml: String) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        xml,
    )
        .into_response()
}

fn field<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

pub(crate) async fn incoming_call(
    State(bridge): State<Arc<Bridge>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params: Vec<(String, String)> = url::form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let Some(validator) = &bridge.settings.validator else {
        tracing::error!("refusing a webhook: TWILIO_AUTH_TOKEN is not configured");
        return ApiError::Forbidden("webhook signatures cannot be checked".into()).into_response();
    };
    // The signed URL is the configured one plus the query Twilio called it with; Host is never trusted.
    let mut signed_url = bridge.settings.webhook_url.clone();
    signed_url.set_query(uri.query());
    let signature = headers
        .get(shared::voice::signature::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if signature.is_empty() || !validator.validate(&signed_url, &params, signature) {
        tracing::warn!(url = %signed_url, "refusing a webhook with a missing or invalid signature");
        return ApiError::Forbidden("invalid Twilio signature".into()).into_response();
    }

    let call_sid = field(&params, "CallSid").unwrap_or_default().to_string();
    let span = tracing::info_span!("call", call_sid = %call_sid, tenant_id = tracing::field::Empty);
    async move {
        match admit(&bridge, &params).await {
            Ok(admitted) => {
                tracing::info!(to = %admitted.claims.to, "call admitted");
                twiml(admitted.twiml)
            }
            Err((refusal, language)) => {
                tracing::info!(reason = refusal.as_str(), "call refused");
                twiml(twiml::say_and_hangup(
                    twiml::unavailable_message(language),
                    language,
                ))
            }
        }
    }
    .instrument(span)
    .await
}

struct Admitted {
    claims: StreamClaims,
    twiml: String,
}

/// The admission decision. Every path that is not a clear yes is a refusal, in the best language known.
async fn admit(
    bridge: &Bridge,
    params: &[(String, String)],
) -> Result<Admitted, (Refusal, Language)> {
    let refuse_en = |r| (r, Language::En);
    let call_sid = CallSid::parse(field(params, "CallSid").unwrap_or_default())
        .map_err(|_| refuse_en(Refusal::MalformedRequest))?;
    let to = PhoneNumber::parse(field(params, "To").unwrap_or_default())
        .map_err(|_| refuse_en(Refusal::MalformedRequest))?;
    let from: String = field(params, "From")
        .unwrap_or("unknown")
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    let guess = to.likely_language();
    let Some(key) = &bridge.settings.token_key else {
        return Err((Refusal::CheckFailed, guess));
    };

    let p = &bridge.platform;
    let store = p.store.as_ref();
    let tenant_id: TenantId = match phone::tenant_for(store, &to).await {
        Ok(Some(t)) => t,
        Ok(None) => return Err((Refusal::UnknownNumber, guess)),
        Err(e) => {
            tracing::error!(error = %e, "number lookup failed");
            return Err((Refusal::CheckFailed, guess));
        }
    };
    tracing::Span::current().record("tenant_id", tracing::field::display(&tenant_id));
    let check = async {
        let settings = receptionist::get(store, &tenant_id).await?;
        let tenant = tenants::get_tenant(store, &tenant_id).await?;
        let has_minutes =
            metering::has_minutes(store, &tenant_id, tenant.plan, p.clock.now()).await?;
        // And credits for the first minute (reserved when the stream starts).
        let credits = shared::credits::account::balance(store, &tenant_id).await?;
        let has_minutes =
            has_minutes && credits.available.0 >= p.config.credits.call_minute_credits;
        anyhow::Ok((settings.language, tenant, has_minutes))
    };
    let (language, tenant, has_minutes) = check.await.map_err(|e| {
        tracing::error!(error = format!("{e:#}"), "admission check failed");
        (Refusal::CheckFailed, guess)
    })?;
    if tenant
        .standing(p.clock.now(), p.config.billing.past_due_grace)
        .is_err()
    {
        return Err((Refusal::NotSubscribed, language));
    }
    if !has_minutes {
        return Err((Refusal::MinutesExhausted, language));
    }
    let claims = StreamClaims {
        call_sid,
        tenant_id,
        from,
        to,
        expires_at: p.clock.unix_seconds() + TOKEN_TTL_SECS,
    };
    let token = key.sign(&claims);
    let twiml = twiml::connect_stream(
        &bridge.settings.stream_url,
        &[("call_sid", claims.call_sid.as_str()), ("token", &token)],
    );
    Ok(Admitted { claims, twiml })
}
