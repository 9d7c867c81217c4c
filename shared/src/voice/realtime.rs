//! The OpenAI Realtime API's GA interface, as much of it as the bridge speaks: the client events it sends
//! and the server events it reads (unknown types are kept as [`ServerEvent::Other`] and ignored).
//!
//! Audio is G.711 μ-law both ways (`audio/pcmu`), the format Twilio streams, so base64 payloads pass
//! through untouched.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::receptionist::ReceptionistSettings;

/// What the receptionist hears with (a speech-to-text model for the caller's side of the transcript).
pub const DEFAULT_TRANSCRIPTION_MODEL: &str = "gpt-4o-mini-transcribe";

/// A server event. Only the fields the bridge uses are read.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type")]
pub enum ServerEvent {
    #[serde(rename = "session.created")]
    SessionCreated,
    #[serde(rename = "session.updated")]
    SessionUpdated,
    #[serde(rename = "input_audio_buffer.speech_started")]
    SpeechStarted {
        #[serde(default)]
        item_id: Option<String>,
        #[serde(default)]
        audio_start_ms: Option<u64>,
    },
    #[serde(rename = "input_audio_buffer.speech_stopped")]
    SpeechStopped,
    #[serde(rename = "response.created")]
    ResponseCreated,
    #[serde(rename = "response.output_audio.delta")]
    AudioDelta { item_id: String, delta: String },
    #[serde(rename = "response.output_audio_transcript.done")]
    AudioTranscriptDone { item_id: String, transcript: String },
    #[serde(rename = "conversation.item.input_audio_transcription.completed")]
    InputTranscriptionCompleted { item_id: String, transcript: String },
    #[serde(rename = "response.done")]
    ResponseDone { response: DoneResponse },
    #[serde(rename = "error")]
    Error { error: ErrorDetail },
    #[serde(other)]
    Other,
}

/// The `response` of `response.done`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct DoneResponse {
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub usage: Option<Usage>,
}

/// Token usage of one response.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct Usage {
    #[serde(default)]
    pub total_tokens: u64,
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub input_token_details: Option<TokenDetails>,
    #[serde(default)]
    pub output_token_details: Option<TokenDetails>,
}

/// The text/audio split of a token count.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct TokenDetails {
    #[serde(default)]
    pub text_tokens: u64,
    #[serde(default)]
    pub audio_tokens: u64,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct ErrorDetail {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

impl ServerEvent {
    /// Parses one text frame. Anything that is not a JSON object with a known shape is `None`.
    pub fn parse(text: &str) -> Option<ServerEvent> {
        serde_json::from_str(text).ok()
    }
}

/// `session.update`: the tenant's instructions and voice, μ-law in and out, server VAD, and input
/// transcription in the receptionist's language.
pub fn session_update(settings: &ReceptionistSettings, transcription_model: &str) -> Value {
    json!({
        "type": "session.update",
        "session": {
            "type": "realtime",
            "instructions": settings.system_prompt.as_str(),
            "output_modalities": ["audio"],
            "audio": {
                "input": {
                    "format": { "type": "audio/pcmu" },
                    "turn_detection": {
                        "type": "server_vad",
                        "threshold": 0.5,
                        "prefix_padding_ms": 300,
                        "silence_duration_ms": 500,
                    },
                    "transcription": {
                        "model": transcription_model,
                        "language": settings.language.code(),
                    },
                },
                "output": {
                    "format": { "type": "audio/pcmu" },
                    "voice": settings.voice.as_str(),
                },
            },
        },
    })
}

/// The greeting: a system item telling the model what to say first (followed by [`response_create`]).
pub fn greeting_item(settings: &ReceptionistSettings) -> Value {
    json!({
        "type": "conversation.item.create",
        "item": {
            "type": "message",
            "role": "system",
            "content": [{
                "type": "input_text",
                "text": format!(
                    "The call has just connected. Greet the caller with exactly: {}",
                    settings.greeting.as_str()
                ),
            }],
        },
    })
}

/// A keypad press, noted for the model (no response is asked for: the caller may press more keys).
pub fn dtmf_item(digit: &str) -> Value {
    json!({
        "type": "conversation.item.create",
        "item": {
            "type": "message",
            "role": "user",
            "content": [{ "type": "input_text", "text": format!("[The caller pressed {digit} on the keypad.]") }],
        },
    })
}

pub fn response_create() -> Value {
    json!({ "type": "response.create" })
}

pub fn response_cancel() -> Value {
    json!({ "type": "response.cancel" })
}

/// Cuts the assistant's item at what the caller actually heard, so the model's memory of what it said
/// matches the caller's.
pub fn truncate(item_id: &str, audio_end_ms: u64) -> Value {
    json!({
        "type": "conversation.item.truncate",
        "item_id": item_id,
        "content_index": 0,
        "audio_end_ms": audio_end_ms,
    })
}

/// `input_audio_buffer.append` with the caller's base64 μ-law exactly as Twilio sent it. Written by hand:
/// this is the hot path, and a base64 string needs no JSON escaping.
pub fn append_audio(base64_payload: &str) -> String {
    let mut s = String::with_capacity(base64_payload.len() + 48);
    s.push_str(r#"{"type":"input_audio_buffer.append","audio":""#);
    s.push_str(base64_payload);
    s.push_str(r#""}"#);
    s
}

/// Whether a string is plausibly base64 (the alphabet and padding only), so it can be spliced into JSON
/// without escaping.
pub fn is_base64_text(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
}

/// The decoded length of base64 text, without decoding it.
pub fn base64_decoded_len(s: &str) -> u64 {
    let n = s.len() as u64;
    let padding = s.bytes().rev().take(2).filter(|&b| b == b'=').count() as u64;
    (n / 4 * 3).saturating_sub(padding)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_events_parse_and_unknown_ones_are_other() {
        let e = ServerEvent::parse(
            r#"{"type":"response.output_audio.delta","event_id":"e1","response_id":"r1","item_id":"i1","output_index":0,"content_index":0,"delta":"//8="}"#,
        );
        assert_eq!(
            e,
            Some(ServerEvent::AudioDelta {
                item_id: "i1".into(),
                delta: "//8=".into()
            })
        );
        assert_eq!(
            ServerEvent::parse(r#"{"type":"rate_limits.updated","rate_limits":[]}"#),
            Some(ServerEvent::Other)
        );
        assert_eq!(ServerEvent::parse("not json"), None);
        assert_eq!(ServerEvent::parse(r#"{"no":"type"}"#), None);
        let done = ServerEvent::parse(
            r#"{"type":"response.done","response":{"id":"r1","status":"completed","usage":{"total_tokens":10,"input_tokens":4,"output_tokens":6}}}"#,
        );
        let Some(ServerEvent::ResponseDone { response }) = done else {
            panic!("{done:?}")
        };
        assert_eq!(response.usage.unwrap().output_tokens, 6);
    }

    #[test]
    fn the_session_is_mulaw_both_ways_with_the_tenants_voice() {
        let settings = ReceptionistSettings::initial();
        let update = session_update(&settings, DEFAULT_TRANSCRIPTION_MODEL);
        assert_eq!(update["session"]["type"], "realtime");
        assert_eq!(
            update["session"]["audio"]["input"]["format"]["type"],
            "audio/pcmu"
        );
        assert_eq!(
            update["session"]["audio"]["output"]["format"]["type"],
            "audio/pcmu"
        );
        assert_eq!(update["session"]["audio"]["output"]["voice"], "marin");
        assert_eq!(
            update["session"]["instructions"],
            settings.system_prompt.as_str()
        );
    }

    #[test]
    fn appends_splice_the_payload_untouched() {
        let payload = "f39/fw==";
        let v: Value = serde_json::from_str(&append_audio(payload)).unwrap();
        assert_eq!(v["type"], "input_audio_buffer.append");
        assert_eq!(v["audio"], payload);
        assert!(is_base64_text(payload));
        assert!(!is_base64_text("ab\"cd"));
        assert_eq!(base64_decoded_len("f39/fw=="), 4);
        assert_eq!(base64_decoded_len("f39/f38="), 5);
        assert_eq!(base64_decoded_len("f39/f39/"), 6);
        assert_eq!(base64_decoded_len(""), 0);
    }
}
