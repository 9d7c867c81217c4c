//! A Twilio Media Streams message as the call bridge reads it off the socket, and what the bridge does
//! with a media frame (checks the payload is base64 and splices it into the model's JSON).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::voice::media_streams::TwilioInbound;
use shared::voice::realtime;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match TwilioInbound::parse(text) {
        Some(TwilioInbound::Media { media }) => {
            if realtime::is_base64_text(&media.payload) {
                let json = realtime::append_audio(&media.payload);
                // Spliced text must stay valid JSON.
                serde_json::from_str::<serde_json::Value>(&json).expect("append_audio makes JSON");
                let _ = realtime::base64_decoded_len(&media.payload);
            }
        }
        Some(TwilioInbound::Start { start, .. }) => {
            let _ = start;
        }
        Some(TwilioInbound::Dtmf { dtmf }) => {
            let _ = shared::voice::media_streams::is_dtmf_digit(&dtmf.digit);
        }
        _ => {}
    }
});
