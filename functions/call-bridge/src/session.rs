//! One call's media socket, from `start` to its log.
//!
//! 1. Admission again, on the socket: the first message must be `start` carrying a valid token for this
//!    call sid; the stream is claimed (single use) and the call's first minute reserved atomically. Any
//!    failure closes the socket before a model session is opened.
//! 2. The model session: `session.update` (instructions, voice, μ-law both ways, transcription), then the
//!    greeting once the session is updated.
//! 3. The relay: audio both ways untouched, marks after each chunk of assistant audio, barge-in, DTMF.
//! 4. The end (Twilio `stop`, either socket closing, the maximum length, or shutdown): both sockets closed,
//!    minutes settled, summary, cost, one call log, a metrics line.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame as AxumCloseFrame, Message as TwilioMessage, WebSocket};
use std::panic::AssertUnwindSafe;

use futures::{FutureExt, SinkExt, StreamExt};
use time::OffsetDateTime;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame as ModelCloseFrame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message as ModelMessage};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::Instrument;

use shared::credits::{CreditError, Credits, Hold, Meter, MeteredFunction};
use shared::models::{ModelKind, ModelPolicy};
use shared::tenants;
use shared::voice::calls::{self, CallMetrics};
use shared::voice::media_streams::{
    OutMark, OutMedia, TwilioInbound, TwilioOutbound, is_dtmf_digit,
};
use shared::voice::metering::{self, CallReservation};
use shared::voice::playback::Playback;
use shared::voice::pricing::RealtimeUsage;
use shared::voice::realtime::{self, ServerEvent};
use shared::voice::settlement::{self, EndedCall};
use shared::voice::token::StreamClaims;
use shared::voice::transcript::TranscriptBuilder;
use shared::voice::{EndReason, ReceptionistSettings, receptionist};

use crate::metrics::Samples;
use crate::tracker::CallGuard;
use crate::{Bridge, MODEL_CONNECT_TIMEOUT, START_TIMEOUT};

type ModelSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Model messages can be large (session objects, long transcripts); a cap still bounds memory.
const MAX_MODEL_MESSAGE: usize = 4 * 1024 * 1024;
/// How long closing a socket may take before it is simply dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The tracing target of every message the relay sends, on either socket, in the order sent (one
/// ordered record of both sinks: what a barge-in's clear-then-truncate is checked against).
pub const OUTBOUND: &str = "call_bridge::outbound";

/// Why a media socket was closed before any model session.
#[derive(Debug, thiserror::Error)]
enum StreamRefused {
    #[error("no start message in time")]
    NoStart,
    #[error("the socket sent {0} before start")]
    UnexpectedBeforeStart(&'static str),
    #[error("no stream token")]
    MissingToken,
    #[error("stream token refused: {0}")]
    BadToken(#[from] shared::voice::token::TokenError),
    #[error("the token is for another call")]
    WrongCall,
    #[error("the media format is not 8 kHz mono μ-law")]
    WrongFormat,
    #[error("a stream for this call was already started")]
    Replayed,
    #[error("the tenant is not in good standing")]
    NotSubscribed,
    #[error("the tenant's call minutes are exhausted")]
    MinutesExhausted,
    #[error("the realtime model is not available on the tenant's plan: {0}")]
    ModelNotAllowed(String),
    #[error("the bridge cannot verify tokens (TWILIO_AUTH_TOKEN is not set)")]
    NoKey,
    #[error("admission check failed: {0:#}")]
    CheckFailed(#[from] anyhow::Error),
}

/// Everything a call needs once admitted.
struct CallSetup {
    claims: StreamClaims,
    stream_sid: String,
    settings: ReceptionistSettings,
    reservation: CallReservation,
    policy: ModelPolicy,
    started_at: OffsetDateTime,
    started: Instant,
    max_length: Duration,
    /// The call's credits: a minute ahead, extended every minute, settled at the end.
    meter: Meter,
    hold: tokio::sync::Mutex<Hold>,
}

/// Runs one media socket to the end.
pub(crate) async fn run(
    bridge: Arc<Bridge>,
    socket: WebSocket,
    guard: CallGuard,
    pending: crate::pending::PendingPermit,
) {
    let span = tracing::info_span!(
        "call",
        call_sid = tracing::field::Empty,
        tenant_id = tracing::field::Empty,
        stream_sid = tracing::field::Empty,
    );
    async move {
        // A panic in this call (a bug) ends this call only: it is caught here, logged, and the call is
        // closed and settled as far as it got; every other call runs on its own task and goes on.
        let mut twilio = socket;
        let admitted = AssertUnwindSafe(admit_stream(&bridge, &mut twilio))
            .catch_unwind()
            .await;
        // Token checked (or the socket refused): it no longer counts as pending.
        drop(pending);
        let setup = match admitted {
            Ok(Ok(setup)) => setup,
            Ok(Err(refused)) => {
                tracing::warn!(reason = %refused, "media stream refused; no model session opened");
                close_twilio(&mut twilio, 1008, "refused").await;
                return;
            }
            Err(panic) => {
                tracing::error!(panic = %panic_text(&*panic), "admitting the call panicked; this call ends, the others go on");
                close_twilio(&mut twilio, 1011, "internal error").await;
                return;
            }
        };
        let outcome = match AssertUnwindSafe(relay(&bridge, &setup, &mut twilio))
            .catch_unwind()
            .await
        {
            Ok(outcome) => outcome,
            Err(panic) => {
                tracing::error!(panic = %panic_text(&*panic), "the call's relay panicked; this call ends, the others go on");
                close_twilio(&mut twilio, 1011, "internal error").await;
                RelayOutcome::ended(EndReason::BridgeError)
            }
        };
        if let Err(panic) = AssertUnwindSafe(finish(&bridge, setup, outcome))
            .catch_unwind()
            .await
        {
            tracing::error!(panic = %panic_text(&*panic), "settling the call panicked; the sweeper releases its hold");
        }
        drop(guard);
    }
    .instrument(span)
    .await
}

async fn admit_stream(bridge: &Bridge, twilio: &mut WebSocket) -> Result<CallSetup, StreamRefused> {
    let (stream_sid, start) = tokio::time::timeout(START_TIMEOUT, async {
        loop {
            match twilio.recv().await {
                Some(Ok(TwilioMessage::Text(text))) => match TwilioInbound::parse(text.as_str()) {
                    Some(TwilioInbound::Connected) => continue,
                    Some(TwilioInbound::Start { stream_sid, start }) => {
                        return Ok((stream_sid, start));
                    }
                    Some(_) => return Err(StreamRefused::UnexpectedBeforeStart("another event")),
                    None => return Err(StreamRefused::UnexpectedBeforeStart("malformed JSON")),
                },
                Some(Ok(TwilioMessage::Ping(_) | TwilioMessage::Pong(_))) => continue,
                Some(Ok(TwilioMessage::Binary(_))) => {
                    return Err(StreamRefused::UnexpectedBeforeStart("binary data"));
                }
                Some(Ok(TwilioMessage::Close(_))) | Some(Err(_)) | None => {
                    return Err(StreamRefused::UnexpectedBeforeStart("a close"));
                }
            }
        }
    })
    .await
    .map_err(|_| StreamRefused::NoStart)??;
    let started = Instant::now();

    // The token first: nothing below (store reads, model sockets) happens for an unauthenticated socket.
    let key = bridge
        .settings
        .token_key
        .as_ref()
        .ok_or(StreamRefused::NoKey)?;
    let token = start
        .custom_parameters
        .get("token")
        .ok_or(StreamRefused::MissingToken)?;
    let p = &bridge.platform;
    let claims = key.verify(token, p.clock.unix_seconds())?;
    if claims.call_sid.as_str() != start.call_sid {
        return Err(StreamRefused::WrongCall);
    }
    let span = tracing::Span::current();
    span.record("call_sid", tracing::field::display(&claims.call_sid));
    span.record("tenant_id", tracing::field::display(&claims.tenant_id));
    span.record("stream_sid", tracing::field::display(&stream_sid));
    if let Some(format) = &start.media_format
        && !format.is_mulaw_8k_mono()
    {
        return Err(StreamRefused::WrongFormat);
    }

    let store = p.store.as_ref();
    let now = p.clock.now();
    if !calls::claim_stream(store, &claims.call_sid, now.unix_timestamp())
        .await
        .map_err(anyhow::Error::from)?
    {
        return Err(StreamRefused::Replayed);
    }
    let tenant = tenants::get_tenant(store, &claims.tenant_id)
        .await
        .map_err(anyhow::Error::from)?;
    if tenant
        .standing(now, p.config.billing.past_due_grace)
        .is_err()
    {
        return Err(StreamRefused::NotSubscribed);
    }
    let policy = bridge
        .settings
        .prices
        .resolve(
            ModelKind::Realtime,
            &bridge.settings.realtime_model,
            tenant.plan,
            now,
        )
        .map_err(|e| StreamRefused::ModelNotAllowed(e.to_string()))?
        .clone();
    let settings = receptionist::get(store, &claims.tenant_id)
        .await
        .map_err(anyhow::Error::from)?;
    let reservation = metering::reserve(store, &claims.tenant_id, tenant.plan, now)
        .await
        .map_err(anyhow::Error::from)?
        .ok_or(StreamRefused::MinutesExhausted)?;
    let meter = Meter::of(p);
    let minute = Credits(meter.settings().call_minute_credits);
    let hold = match meter
        .reserve(
            &claims.tenant_id,
            MeteredFunction::Call,
            minute,
            Some(claims.call_sid.as_str()),
        )
        .await
    {
        Ok(hold) => hold,
        Err(e) => {
            // The minutes go back; the caller hears the same goodbye as for exhausted minutes.
            if let Err(e) = metering::settle(store, &reservation, 0, now).await {
                tracing::error!(error = %e, "giving back call minutes failed");
            }
            return Err(match e {
                CreditError::Store(e) => StreamRefused::CheckFailed(e.into()),
                other => {
                    tracing::info!(error = %other, "no credits for the call");
                    StreamRefused::MinutesExhausted
                }
            });
        }
    };
    let max_length = bridge
        .settings
        .max_call
        .min(Duration::from_secs(reservation.allowed_secs));
    tracing::info!(max_length_s = max_length.as_secs(), "media stream admitted");
    Ok(CallSetup {
        claims,
        stream_sid,
        settings,
        reservation,
        policy,
        started_at: now,
        started,
        max_length,
        meter,
        hold: tokio::sync::Mutex::new(hold),
    })
}

async fn connect_model(bridge: &Bridge) -> anyhow::Result<ModelSocket> {
    let mut request = bridge
        .settings
        .realtime_url
        .as_str()
        .into_client_request()
        .map_err(|e| anyhow::anyhow!("the realtime URL: {e}"))?;
    if let Some(key) = &bridge.settings.api_key {
        let value = format!("Bearer {}", key.expose())
            .parse()
            .map_err(|_| anyhow::anyhow!("the API key is not a valid header value"))?;
        request
            .headers_mut()
            .insert(http::header::AUTHORIZATION, value);
    }
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MODEL_MESSAGE))
        .max_frame_size(Some(MAX_MODEL_MESSAGE));
    let (socket, _) = tokio::time::timeout(
        MODEL_CONNECT_TIMEOUT,
        tokio_tungstenite::connect_async_with_config(request, Some(config), true),
    )
    .await
    .map_err(|_| anyhow::anyhow!("no connection within {MODEL_CONNECT_TIMEOUT:?}"))?
    .map_err(|e| anyhow::anyhow!("connecting: {e}"))?;
    Ok(socket)
}

/// What the relay leaves for the call log.
struct RelayOutcome {
    reason: EndReason,
    transcript: TranscriptBuilder,
    usage: RealtimeUsage,
    metrics: CallMetrics,
    inbound: Samples,
    outbound: Samples,
}

impl RelayOutcome {
    /// A call that ended for `reason` with nothing recorded (its relay failed).
    fn ended(reason: EndReason) -> Self {
        Self {
            reason,
            transcript: TranscriptBuilder::new(),
            usage: RealtimeUsage::default(),
            metrics: CallMetrics::default(),
            inbound: Samples::default(),
            outbound: Samples::default(),
        }
    }
}

/// A panic's message, for the log.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// The relay's state.
struct Relay<'a> {
    setup: &'a CallSetup,
    transcription_model: &'a str,
    playback: Playback,
    transcript: TranscriptBuilder,
    usage: RealtimeUsage,
    metrics: CallMetrics,
    inbound: Samples,
    outbound: Samples,
    response_in_progress: bool,
    greeted: bool,
}

impl Relay<'_> {
    fn offset_ms(&self) -> u64 {
        u64::try_from(self.setup.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    async fn to_model(&self, model: &mut ModelSocket, text: String) -> Result<(), EndReason> {
        tracing::trace!(target: OUTBOUND, sink = "model", message = %text);
        model
            .send(ModelMessage::Text(text.into()))
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "sending to the model failed");
                EndReason::ModelDisconnected
            })
    }

    async fn to_twilio(
        &self,
        twilio: &mut WebSocket,
        event: TwilioOutbound<'_>,
    ) -> Result<(), EndReason> {
        let text = event.to_json();
        tracing::trace!(target: OUTBOUND, sink = "twilio", message = %text);
        twilio
            .send(TwilioMessage::Text(text.into()))
            .await
            .map_err(|_| EndReason::CallerDisconnected)
    }

    async fn on_twilio(
        &mut self,
        message: Option<Result<TwilioMessage, axum::Error>>,
        model: &mut ModelSocket,
    ) -> Result<(), EndReason> {
        let received = Instant::now();
        let text = match message {
            Some(Ok(TwilioMessage::Text(text))) => text,
            Some(Ok(TwilioMessage::Close(_))) | Some(Err(_)) | None => {
                return Err(EndReason::CallerDisconnected);
            }
            Some(Ok(_)) => return Ok(()),
        };
        match TwilioInbound::parse(text.as_str()) {
            Some(TwilioInbound::Media { media }) => {
                // Only the caller's side is relayed, and only as base64 (it is spliced into JSON as is).
                let inbound = media.track.as_deref().is_none_or(|t| t == "inbound");
                if inbound && realtime::is_base64_text(&media.payload) {
                    self.to_model(model, realtime::append_audio(&media.payload))
                        .await?;
                    self.metrics.frames_in += 1;
                    self.inbound.record(received.elapsed());
                }
            }
            Some(TwilioInbound::Mark { mark }) => {
                self.playback.acknowledged(&mark.name);
            }
            Some(TwilioInbound::Dtmf { dtmf }) => {
                if is_dtmf_digit(&dtmf.digit) {
                    let now = self.offset_ms();
                    self.transcript.keypad(&dtmf.digit, now);
                    self.to_model(model, realtime::dtmf_item(&dtmf.digit).to_string())
                        .await?;
                }
            }
            Some(TwilioInbound::Stop) => return Err(EndReason::Stopped),
            Some(TwilioInbound::Connected | TwilioInbound::Start { .. } | TwilioInbound::Other) => {
            }
            None => tracing::debug!("ignoring a malformed Twilio message"),
        }
        Ok(())
    }

    async fn on_model(
        &mut self,
        message: Option<Result<ModelMessage, tungstenite::Error>>,
        model: &mut ModelSocket,
        twilio: &mut WebSocket,
    ) -> Result<(), EndReason> {
        let received = Instant::now();
        let text = match message {
            Some(Ok(ModelMessage::Text(text))) => text,
            Some(Ok(ModelMessage::Close(frame))) => {
                tracing::info!(?frame, "the model closed the session");
                return Err(EndReason::ModelDisconnected);
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "the model socket failed");
                return Err(EndReason::ModelDisconnected);
            }
            None => return Err(EndReason::ModelDisconnected),
            Some(Ok(_)) => return Ok(()),
        };
        let Some(event) = ServerEvent::parse(text.as_str()) else {
            tracing::debug!("ignoring a malformed model event");
            return Ok(());
        };
        let stream_sid = self.setup.stream_sid.as_str();
        match event {
            ServerEvent::AudioDelta { item_id, delta } => {
                // Late audio of an item the caller talked over must not play after the `clear`.
                if self.playback.is_truncated(&item_id) || !realtime::is_base64_text(&delta) {
                    return Ok(());
                }
                let now = self.offset_ms();
                self.transcript.item_started(&item_id, now);
                let media = TwilioOutbound::Media {
                    stream_sid,
                    media: OutMedia { payload: &delta },
                };
                self.to_twilio(twilio, media).await?;
                self.outbound.record(received.elapsed());
                self.metrics.frames_out += 1;
                if self.metrics.first_audio_ms.is_none() {
                    self.metrics.first_audio_ms = Some(now);
                }
                let name = self
                    .playback
                    .generated(&item_id, realtime::base64_decoded_len(&delta));
                let mark = TwilioOutbound::Mark {
                    stream_sid,
                    mark: OutMark { name: &name },
                };
                self.to_twilio(twilio, mark).await?;
            }
            ServerEvent::SpeechStarted { item_id, .. } => {
                let now = self.offset_ms();
                if let Some(item) = &item_id {
                    self.transcript.item_started(item, now);
                }
                if let Some(cut) = self.playback.barge_in() {
                    // Clear first, so the caller stops hearing the assistant at once; then tell the model
                    // where the caller stopped hearing it.
                    self.to_twilio(twilio, TwilioOutbound::Clear { stream_sid })
                        .await?;
                    let clear_us =
                        u64::try_from(received.elapsed().as_micros()).unwrap_or(u64::MAX);
                    self.to_model(
                        model,
                        realtime::truncate(&cut.item_id, cut.audio_end_ms).to_string(),
                    )
                    .await?;
                    self.transcript.interrupted(&cut.item_id);
                    let m = &mut self.metrics;
                    m.barge_ins += 1;
                    m.clear_latency_us_max =
                        Some(m.clear_latency_us_max.unwrap_or(0).max(clear_us));
                    m.truncation_error_ms_max = Some(
                        m.truncation_error_ms_max
                            .unwrap_or(0)
                            .max(cut.error_bound_ms),
                    );
                    tracing::info!(item_id = %cut.item_id, audio_end_ms = cut.audio_end_ms, "barge-in");
                }
                if self.response_in_progress {
                    self.to_model(model, realtime::response_cancel().to_string())
                        .await?;
                    self.response_in_progress = false;
                }
            }
            ServerEvent::SessionUpdated => {
                if !self.greeted {
                    self.greeted = true;
                    self.to_model(
                        model,
                        realtime::greeting_item(&self.setup.settings).to_string(),
                    )
                    .await?;
                    self.to_model(model, realtime::response_create().to_string())
                        .await?;
                }
            }
            ServerEvent::ResponseCreated => self.response_in_progress = true,
            ServerEvent::ResponseDone { response } => {
                self.response_in_progress = false;
                if let Some(usage) = &response.usage {
                    self.usage.add(usage);
                }
            }
            ServerEvent::AudioTranscriptDone {
                item_id,
                transcript,
            } => {
                let now = self.offset_ms();
                self.transcript.assistant_said(&item_id, &transcript, now);
            }
            ServerEvent::InputTranscriptionCompleted {
                item_id,
                transcript,
            } => {
                let now = self.offset_ms();
                self.transcript.caller_said(&item_id, &transcript, now);
            }
            ServerEvent::Error { error } => tracing::warn!(
                code = error.code.as_deref().unwrap_or(""),
                message = error.message.as_deref().unwrap_or(""),
                "the model reported an error"
            ),
            ServerEvent::SessionCreated | ServerEvent::SpeechStopped | ServerEvent::Other => {}
        }
        Ok(())
    }
}

/// Connects the model and relays until the call ends.
async fn relay(bridge: &Bridge, setup: &CallSetup, twilio: &mut WebSocket) -> RelayOutcome {
    let mut relay = Relay {
        setup,
        transcription_model: &bridge.settings.transcription_model,
        playback: Playback::new(),
        transcript: TranscriptBuilder::new(),
        usage: RealtimeUsage::default(),
        metrics: CallMetrics::default(),
        inbound: Samples::default(),
        outbound: Samples::default(),
        response_in_progress: false,
        greeted: false,
    };
    let reason = match connect_model(bridge).await {
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "cannot reach the realtime model");
            close_twilio(twilio, 1011, "model unavailable").await;
            EndReason::ModelUnavailable
        }
        Ok(mut model) => {
            let reason = relay.run(bridge, &mut model, twilio).await;
            // On `stop` the model socket is closed at once; a call cut at its maximum length or by
            // shutdown says "going away".
            let code = match reason {
                EndReason::MaxLength | EndReason::Shutdown => 1001,
                EndReason::BridgeError => 1011,
                _ => 1000,
            };
            close_model(&mut model, code).await;
            if reason != EndReason::CallerDisconnected {
                close_twilio(twilio, code, "call ended").await;
            }
            reason
        }
    };
    RelayOutcome {
        reason,
        transcript: relay.transcript,
        usage: relay.usage,
        metrics: relay.metrics,
        inbound: relay.inbound,
        outbound: relay.outbound,
    }
}

impl Relay<'_> {
    async fn run(
        &mut self,
        bridge: &Bridge,
        model: &mut ModelSocket,
        twilio: &mut WebSocket,
    ) -> EndReason {
        let update = realtime::session_update(&self.setup.settings, self.transcription_model);
        if let Err(reason) = self.to_model(model, update.to_string()).await {
            return reason;
        }
        let deadline =
            tokio::time::sleep_until((self.setup.started + self.setup.max_length).into());
        tokio::pin!(deadline);
        let ended = bridge.calls.ended();
        tokio::pin!(ended);
        // Every minute the call reserves the next one; a refusal ends it as its time limit does.
        let mut next_minute = tokio::time::interval_at(
            tokio::time::Instant::from_std(self.setup.started + CREDIT_BLOCK),
            CREDIT_BLOCK,
        );
        loop {
            let flow = tokio::select! {
                () = &mut deadline => Err(EndReason::MaxLength),
                _ = next_minute.tick() => self.extend_credits().await,
                () = &mut ended => Err(EndReason::Shutdown),
                message = twilio.recv() => self.on_twilio(message, model).await,
                message = model.next() => self.on_model(message, model, twilio).await,
            };
            if let Err(reason) = flow {
                return reason;
            }
        }
    }
}

impl Relay<'_> {
    /// Reserves the call's next minute of credits; refused, the call ends.
    async fn extend_credits(&mut self) -> Result<(), EndReason> {
        let setup = self.setup;
        let minute = Credits(setup.meter.settings().call_minute_credits);
        let mut hold = setup.hold.lock().await;
        match setup.meter.extend(&mut hold, minute).await {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::info!(error = %e, "no credits for another minute; ending the call");
                Err(EndReason::MaxLength)
            }
        }
    }
}

/// The block of call time reserved ahead in credits.
const CREDIT_BLOCK: Duration = Duration::from_secs(60);

async fn close_twilio(twilio: &mut WebSocket, code: u16, reason: &'static str) {
    let frame = AxumCloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = tokio::time::timeout(
        CLOSE_TIMEOUT,
        twilio.send(TwilioMessage::Close(Some(frame))),
    )
    .await;
}

async fn close_model(model: &mut ModelSocket, code: u16) {
    let frame = ModelCloseFrame {
        code: CloseCode::from(code),
        reason: "call ended".into(),
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, model.close(Some(frame))).await;
}

/// Settles the call (`shared::voice::settlement`) and emits the metrics line. Runs whatever ended the call.
async fn finish(bridge: &Bridge, setup: CallSetup, mut outcome: RelayOutcome) {
    let p = &bridge.platform;
    let m = &mut outcome.metrics;
    m.inbound_p50_us = outcome.inbound.quantile(0.5);
    m.inbound_p99_us = outcome.inbound.quantile(0.99);
    m.outbound_p50_us = outcome.outbound.quantile(0.5);
    m.outbound_p99_us = outcome.outbound.quantile(0.99);
    let duration_ms = u64::try_from(setup.started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let hold = setup.hold.into_inner();
    let credits = setup.meter.settings().call_credits(duration_ms);
    if let Err(e) = setup
        .meter
        .settle(hold, credits, Some(setup.claims.call_sid.as_str()))
        .await
    {
        tracing::error!(error = %e, "settling call credits failed; the sweeper releases the hold");
    }
    let call = EndedCall {
        claims: setup.claims,
        reservation: setup.reservation,
        policy: setup.policy,
        started_at: setup.started_at,
        duration_ms: u64::try_from(setup.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        reason: outcome.reason,
        transcript: outcome.transcript.finish(),
        usage: outcome.usage,
        metrics: outcome.metrics,
    };
    let log = settlement::settle(
        p.store.as_ref(),
        p.clock.as_ref(),
        bridge.settings.summarizer.as_ref(),
        call,
    )
    .await;
    shared::webhooks::emit(p, &log.tenant_id, settlement::completed_event(&log)).await;
    let m = &log.metrics;
    tracing::info!(
        end_reason = ?log.end_reason,
        duration_s = log.duration_seconds,
        first_audio_ms = m.first_audio_ms,
        inbound_p50_us = m.inbound_p50_us,
        inbound_p99_us = m.inbound_p99_us,
        outbound_p50_us = m.outbound_p50_us,
        outbound_p99_us = m.outbound_p99_us,
        frames_in = m.frames_in,
        frames_out = m.frames_out,
        barge_ins = m.barge_ins,
        clear_latency_us_max = m.clear_latency_us_max,
        truncation_error_ms_max = m.truncation_error_ms_max,
        input_tokens = log.usage.input_tokens(),
        output_tokens = log.usage.output_tokens(),
        cost_micros = log.cost_micros.0,
        "call metrics"
    );
}
