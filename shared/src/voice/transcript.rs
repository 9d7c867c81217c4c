//! The call's transcript: both sides with timestamps (milliseconds from the start of the call), keypad
//! presses, and an extractive summary for when no chat model is configured.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

/// Who said it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Speaker {
    Caller,
    Assistant,
}

/// One line of the transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TranscriptEntry {
    /// Milliseconds from the start of the call.
    pub offset_ms: u64,
    pub speaker: Speaker,
    pub text: String,
    /// The keypad digit, for a keypad press (its text says so in words too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtmf: Option<String>,
    /// The caller spoke over this assistant line; the model's copy was cut where the caller stopped hearing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
}

/// Collects transcript lines as the call's events arrive (out of order: a caller's words are transcribed
/// after they were spoken, so each line is stamped with when its audio started).
#[derive(Debug, Default)]
pub struct TranscriptBuilder {
    entries: Vec<(String, TranscriptEntry)>,
    started: HashMap<String, u64>,
    interrupted: HashSet<String>,
}

/// The longest line kept (a runaway transcription cannot bloat the call log).
const MAX_LINE_CHARS: usize = 4_000;

fn clip(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(max).collect();
        s.push('…');
        s
    }
}

impl TranscriptBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// The audio of an item started at this offset (the caller's speech start, the assistant's first audio).
    pub fn item_started(&mut self, item_id: &str, offset_ms: u64) {
        self.started.entry(item_id.to_string()).or_insert(offset_ms);
    }

    fn push(&mut self, item_id: &str, speaker: Speaker, text: &str, now_ms: u64) {
        let text = clip(text, MAX_LINE_CHARS);
        if text.is_empty() {
            return;
        }
        let offset_ms = self.started.get(item_id).copied().unwrap_or(now_ms);
        self.entries.push((
            item_id.to_string(),
            TranscriptEntry {
                offset_ms,
                speaker,
                text,
                dtmf: None,
                interrupted: false,
            },
        ));
    }

    pub fn caller_said(&mut self, item_id: &str, text: &str, now_ms: u64) {
        self.push(item_id, Speaker::Caller, text, now_ms);
    }

    pub fn assistant_said(&mut self, item_id: &str, text: &str, now_ms: u64) {
        self.push(item_id, Speaker::Assistant, text, now_ms);
    }

    pub fn keypad(&mut self, digit: &str, now_ms: u64) {
        self.entries.push((
            String::new(),
            TranscriptEntry {
                offset_ms: now_ms,
                speaker: Speaker::Caller,
                text: format!("(pressed {digit})"),
                dtmf: Some(digit.to_string()),
                interrupted: false,
            },
        ));
    }

    /// The caller barged in on this assistant item.
    pub fn interrupted(&mut self, item_id: &str) {
        self.interrupted.insert(item_id.to_string());
    }

    /// The lines in time order.
    pub fn finish(self) -> Vec<TranscriptEntry> {
        let interrupted = self.interrupted;
        let mut entries: Vec<TranscriptEntry> = self
            .entries
            .into_iter()
            .map(|(item, mut entry)| {
                entry.interrupted =
                    entry.speaker == Speaker::Assistant && interrupted.contains(&item);
                entry
            })
            .collect();
        entries.sort_by_key(|e| e.offset_ms);
        entries
    }
}

/// A summary made of the transcript's own words: what the caller said first and at most, the keys
/// pressed, and the receptionist's last reply.
pub fn extractive_summary(entries: &[TranscriptEntry]) -> String {
    let caller: Vec<&TranscriptEntry> = entries
        .iter()
        .filter(|e| e.speaker == Speaker::Caller && e.dtmf.is_none())
        .collect();
    let keys: Vec<&str> = entries.iter().filter_map(|e| e.dtmf.as_deref()).collect();
    let last_reply = entries
        .iter()
        .rev()
        .find(|e| e.speaker == Speaker::Assistant);
    let mut parts = Vec::new();
    if let Some(first) = caller.first() {
        parts.push(format!("Caller: \"{}\"", clip(&first.text, 200)));
    }
    if let Some(longest) = caller.iter().skip(1).max_by_key(|e| e.text.chars().count()) {
        parts.push(format!("Also: \"{}\"", clip(&longest.text, 200)));
    }
    if !keys.is_empty() {
        parts.push(format!("Keys pressed: {}", keys.join(" ")));
    }
    if let Some(reply) = last_reply {
        parts.push(format!("Receptionist: \"{}\"", clip(&reply.text, 200)));
    }
    if parts.is_empty() {
        "No conversation was recorded.".into()
    } else {
        parts.join(" | ")
    }
}

/// The transcript as plain text lines (what a chat model is asked to summarise).
pub fn as_text(entries: &[TranscriptEntry]) -> String {
    entries
        .iter()
        .map(|e| {
            let who = match e.speaker {
                Speaker::Caller => "Caller",
                Speaker::Assistant => "Receptionist",
            };
            format!("[{:>4}s] {who}: {}", e.offset_ms / 1000, e.text)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_ordered_by_when_their_audio_started() {
        let mut t = TranscriptBuilder::new();
        t.item_started("a1", 100);
        t.item_started("c1", 2_000);
        t.assistant_said("a1", "Hello, this is AiLuna.", 1_500);
        t.keypad("5", 2_500);
        // Transcribed late, stamped with the speech start.
        t.caller_said("c1", "I'd like a table for two.", 3_000);
        t.caller_said("c2", "   ", 3_100);
        t.interrupted("a1");
        let lines = t.finish();
        assert_eq!(
            lines.iter().map(|l| l.offset_ms).collect::<Vec<_>>(),
            [100, 2_000, 2_500]
        );
        assert!(lines[0].interrupted);
        assert_eq!(lines[2].dtmf.as_deref(), Some("5"));
        let summary = extractive_summary(&lines);
        assert!(summary.contains("I'd like a table for two."), "{summary}");
        assert!(summary.contains("Keys pressed: 5"), "{summary}");
        assert!(summary.contains("AiLuna"), "{summary}");
        assert_eq!(extractive_summary(&[]), "No conversation was recorded.");
        assert!(as_text(&lines).contains("Caller: I'd like"));
    }
}
