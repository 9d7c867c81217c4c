//! A visitor's or tenant's chat message, parsed at the edge: trimmed, not empty, not too long.

use super::{ChatError, MAX_MESSAGE_CHARS};

/// A message the chat service can answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage(String);

impl ChatMessage {
    pub fn parse(raw: &str) -> Result<Self, ChatError> {
        let message = raw.trim();
        if message.is_empty() {
            return Err(ChatError::InvalidMessage(
                "message must not be empty".into(),
            ));
        }
        if message.chars().count() > MAX_MESSAGE_CHARS {
            return Err(ChatError::MessageTooLong);
        }
        Ok(Self(message.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_trimmed_and_bounded() {
        assert_eq!(
            ChatMessage::parse("  営業時間は？\n").unwrap().as_str(),
            "営業時間は？"
        );
        assert!(matches!(
            ChatMessage::parse(" \n\t "),
            Err(ChatError::InvalidMessage(_))
        ));
        let longest = "あ".repeat(MAX_MESSAGE_CHARS);
        assert!(ChatMessage::parse(&longest).is_ok());
        assert!(matches!(
            ChatMessage::parse(&format!("{longest}い")),
            Err(ChatError::MessageTooLong)
        ));
    }
}
