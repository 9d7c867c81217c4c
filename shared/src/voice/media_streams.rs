//! Twilio Media Streams: the JSON text frames of a bidirectional `<Connect><Stream>` WebSocket.
//!
//! In: `connected`, `start`, `media`, `mark` (echoed once the audio before it has played), `dtmf`,
//! `stop`. Out: `media`, `mark`, `clear`. Audio is base64 μ-law at 8 kHz: 160 bytes per 20 ms frame.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// The biggest inbound frame the bridge reads (a 20 ms media frame is about 400 bytes of JSON).
pub const MAX_INBOUND_MESSAGE: usize = 64 * 1024;

/// μ-law at 8 kHz: 8 bytes per millisecond.
pub const MULAW_BYTES_PER_MS: u64 = 8;

/// An inbound message. Unknown events are [`TwilioInbound::Other`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum TwilioInbound {
    Connected,
    Start {
        #[serde(rename = "streamSid")]
        stream_sid: String,
        start: StartInfo,
    },
    Media {
        media: MediaInfo,
    },
    Mark {
        mark: MarkInfo,
    },
    Dtmf {
        dtmf: DtmfInfo,
    },
    Stop,
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartInfo {
    #[serde(default)]
    pub account_sid: String,
    pub call_sid: String,
    #[serde(default)]
    pub tracks: Vec<String>,
    #[serde(default)]
    pub custom_parameters: HashMap<String, String>,
    #[serde(default)]
    pub media_format: Option<MediaFormat>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaFormat {
    pub encoding: String,
    pub sample_rate: u32,
    pub channels: u32,
}

impl MediaFormat {
    /// The only format the bridge relays untouched: μ-law, 8 kHz, mono.
    pub fn is_mulaw_8k_mono(&self) -> bool {
        self.encoding == "audio/x-mulaw" && self.sample_rate == 8000 && self.channels == 1
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MediaInfo {
    #[serde(default)]
    pub track: Option<String>,
    pub payload: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MarkInfo {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DtmfInfo {
    pub digit: String,
}

impl TwilioInbound {
    pub fn parse(text: &str) -> Option<TwilioInbound> {
        serde_json::from_str(text).ok()
    }
}

/// An outbound message.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum TwilioOutbound<'a> {
    Media {
        #[serde(rename = "streamSid")]
        stream_sid: &'a str,
        media: OutMedia<'a>,
    },
    Mark {
        #[serde(rename = "streamSid")]
        stream_sid: &'a str,
        mark: OutMark<'a>,
    },
    Clear {
        #[serde(rename = "streamSid")]
        stream_sid: &'a str,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutMedia<'a> {
    pub payload: &'a str,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutMark<'a> {
    pub name: &'a str,
}

impl TwilioOutbound<'_> {
    pub fn to_json(&self) -> String {
        // A struct of strings always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A keypad digit Twilio reports: 0-9, `*` or `#`.
pub fn is_dtmf_digit(digit: &str) -> bool {
    matches!(digit.as_bytes(), [b'0'..=b'9' | b'*' | b'#'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbound_events_parse() {
        let start = TwilioInbound::parse(
            r#"{"event":"start","sequenceNumber":"1","start":{"accountSid":"AC1","streamSid":"MZ1","callSid":"CA1","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1},"customParameters":{"token":"t"}},"streamSid":"MZ1"}"#,
        )
        .unwrap();
        let TwilioInbound::Start { stream_sid, start } = start else {
            panic!()
        };
        assert_eq!(stream_sid, "MZ1");
        assert_eq!(start.custom_parameters["token"], "t");
        assert!(start.media_format.unwrap().is_mulaw_8k_mono());
        let media = TwilioInbound::parse(
            r#"{"event":"media","sequenceNumber":"3","media":{"track":"inbound","chunk":"1","timestamp":"5","payload":"//8="},"streamSid":"MZ1"}"#,
        );
        assert!(matches!(media, Some(TwilioInbound::Media { media }) if media.payload == "//8="));
        assert_eq!(
            TwilioInbound::parse(r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#),
            Some(TwilioInbound::Connected)
        );
        assert_eq!(
            TwilioInbound::parse(r#"{"event":"stop","streamSid":"MZ1","stop":{"callSid":"CA1"}}"#),
            Some(TwilioInbound::Stop)
        );
        assert_eq!(
            TwilioInbound::parse(r#"{"event":"new-thing"}"#),
            Some(TwilioInbound::Other)
        );
        assert_eq!(TwilioInbound::parse(r#"{"event":"media"}"#), None);
        assert_eq!(TwilioInbound::parse("[]"), None);
    }

    #[test]
    fn outbound_events_have_twilios_shape() {
        assert_eq!(
            TwilioOutbound::Clear { stream_sid: "MZ1" }.to_json(),
            r#"{"event":"clear","streamSid":"MZ1"}"#
        );
        assert_eq!(
            TwilioOutbound::Mark {
                stream_sid: "MZ1",
                mark: OutMark { name: "m1" }
            }
            .to_json(),
            r#"{"event":"mark","streamSid":"MZ1","mark":{"name":"m1"}}"#
        );
        assert!(is_dtmf_digit("5") && is_dtmf_digit("#") && !is_dtmf_digit("55"));
    }
}
