//! The mailer port: transactional mail to tenants (deadline reminders, receipts).
//!
//! Production sends through SESv2; the local runner writes RFC 5322 `.eml` files to an outbox directory
//! (UTF-8 throughout, so Japanese subjects and bodies arrive intact). Both pass `mail::conformance`.

pub mod outbox;
pub mod ses;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

use futures::future::BoxFuture;

use crate::ids::string_newtype;

pub use outbox::Outbox;
pub use ses::SesMailer;

/// The most recipients one message may have (SES's limit, kept by the outbox too).
pub const MAX_RECIPIENTS: usize = 50;

/// Refuses a message no adapter should send: no recipients, too many, or a subject that is empty or
/// holds control characters (a line break there would inject headers).
pub(crate) fn check_mail(mail: &Mail) -> Result<(), MailError> {
    if mail.to.is_empty() {
        return Err(MailError::Invalid(
            "a message needs at least one recipient".into(),
        ));
    }
    if mail.to.len() > MAX_RECIPIENTS {
        return Err(MailError::Invalid(format!(
            "{} recipients exceed {MAX_RECIPIENTS}",
            mail.to.len()
        )));
    }
    if mail.subject.trim().is_empty() {
        return Err(MailError::Invalid("a message needs a subject".into()));
    }
    if mail.subject.chars().any(char::is_control) {
        return Err(MailError::Invalid(
            "the subject contains control characters".into(),
        ));
    }
    for (name, value) in &mail.headers {
        let token = |c: char| c.is_ascii_alphanumeric() || c == '-';
        if name.is_empty() || !name.chars().all(token) {
            return Err(MailError::Invalid(format!("{name:?} is not a header name")));
        }
        // Extra headers are ASCII (URLs, mailto:) and one line: anything else would inject headers.
        if !value.is_ascii() || value.chars().any(|c| c.is_ascii_control()) {
            return Err(MailError::Invalid(format!(
                "header {name} must be one line of ASCII"
            )));
        }
    }
    Ok(())
}

/// A message to send. Text is required; HTML is an optional alternative part.
#[derive(Debug, Clone, PartialEq)]
pub struct Mail {
    pub from: EmailAddress,
    pub to: Vec<EmailAddress>,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    /// Extra headers (`List-Unsubscribe`, `List-Unsubscribe-Post` on reminders): ASCII, one line each.
    pub headers: Vec<(String, String)>,
}

string_newtype!(
    /// An email address that has been checked for shape (one `@`, a dotted domain, no spaces or angle brackets).
    pub EmailAddress
);

impl EmailAddress {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let s = raw.trim();
        let (local, domain) = s
            .split_once('@')
            .ok_or_else(|| format!("{raw:?} is not an email address"))?;
        let bad = |c: char| c.is_whitespace() || c.is_control() || "<>()[],;:\\\"@".contains(c);
        if local.is_empty()
            || domain.len() < 3
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
            || local.chars().any(bad)
            || domain.chars().any(bad)
            || s.len() > 254
        {
            return Err(format!("{raw:?} is not an email address"));
        }
        Ok(Self(s.to_string()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("invalid mail: {0}")]
    Invalid(String),
    #[error("mail backend failed: {0:#}")]
    Backend(#[from] anyhow::Error),
}

pub trait Mailer: Send + Sync + 'static {
    /// Sends the message and returns the provider's message id.
    fn send(&self, mail: Mail) -> BoxFuture<'_, Result<String, MailError>>;
}

#[cfg(test)]
mod tests {
    use super::{EmailAddress, Mail, check_mail};

    #[test]
    fn extra_headers_are_one_ascii_line_under_a_token_name() {
        let mail = |name: &str, value: &str| Mail {
            from: EmailAddress::parse("no-reply@kotoba.example").unwrap(),
            to: vec![EmailAddress::parse("a@example.jp").unwrap()],
            subject: "s".into(),
            text: "t".into(),
            html: None,
            headers: vec![(name.into(), value.into())],
        };
        assert!(check_mail(&mail("List-Unsubscribe", "<mailto:u@kotoba.example>")).is_ok());
        assert!(check_mail(&mail("List-Unsubscribe", "<a>\r\nBcc: x@evil.example")).is_err());
        assert!(check_mail(&mail("Bad Name", "v")).is_err());
        assert!(check_mail(&mail("X-Note", "配信停止")).is_err());
        assert!(check_mail(&mail("", "v")).is_err());
    }

    #[test]
    fn email_addresses_parse() {
        assert!(EmailAddress::parse("owner@example.co.jp").is_ok());
        for bad in [
            "",
            "a",
            "a@b",
            "@example.com",
            "a b@example.com",
            "a@example.com>",
            "a@.com",
            "a@@b.com",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad}");
        }
    }
}
