//! The mailer conformance suite: the same cases against every [`Mailer`] adapter.
//!
//! An adapter's test file calls [`mail_conformance_tests!`](crate::mail_conformance_tests) with a module
//! name and an async expression building a [`MailHarness`], which includes a way to read a sent message
//! back from wherever the adapter put it (the outbox file, the emulator's record of sent mail).

use std::any::Any;
use std::sync::Arc;

use futures::future::BoxFuture;

use super::{EmailAddress, Mail, MailError, Mailer};

/// A sent message as the backend recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct SentMail {
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    pub body: SentBody,
}

/// The body parts a backend recorded.
#[derive(Debug, Clone, PartialEq)]
pub enum SentBody {
    /// Every part as sent (a parsed `.eml`).
    Parts { text: String, html: Option<String> },
    /// A single body: the HTML part when the mail had one, else the text. Moto's SES keeps no more.
    Single(String),
}

/// One adapter under test, fresh for each case.
pub struct MailHarness {
    pub mailer: Arc<dyn Mailer>,
    /// A sender the backend accepts (registered with SES).
    pub from: EmailAddress,
    /// Reads back the message `send` returned this id for.
    pub read_back: Box<dyn Fn(String) -> BoxFuture<'static, SentMail> + Send + Sync>,
    /// Whatever the setup started that must live as long as the case.
    pub keep: Box<dyn Any + Send>,
}

impl MailHarness {
    fn mail(&self, to: &[&str], subject: &str, text: &str, html: Option<&str>) -> Mail {
        Mail {
            from: self.from.clone(),
            to: to.iter().map(|a| EmailAddress::parse(a).unwrap()).collect(),
            subject: subject.into(),
            text: text.into(),
            html: html.map(Into::into),
            headers: Vec::new(),
        }
    }

    /// Sends `mail`, reads it back and checks every recorded field against what was sent.
    async fn send_and_check(&self, mail: Mail) -> String {
        let id = self.mailer.send(mail.clone()).await.unwrap();
        assert!(!id.is_empty());
        let sent = (self.read_back)(id.clone()).await;
        assert_eq!(sent.from, mail.from.as_str());
        assert_eq!(
            sent.to,
            mail.to
                .iter()
                .map(|a| a.as_str().to_string())
                .collect::<Vec<_>>()
        );
        assert_eq!(sent.subject, mail.subject);
        match sent.body {
            SentBody::Parts { text, html } => {
                assert_eq!(text, mail.text);
                assert_eq!(html, mail.html);
            }
            SentBody::Single(body) => assert_eq!(&body, mail.html.as_ref().unwrap_or(&mail.text)),
        }
        id
    }
}

/// A Japanese subject and body arrive exactly.
pub async fn japanese_subject_and_body(h: MailHarness) {
    let mail = h.mail(
        &["guest@example.jp"],
        "ご予約の確認",
        "本文：明日の10時です。",
        None,
    );
    h.send_and_check(mail).await;
}

/// Long Japanese subjects (folded over several encoded words) and multi-line bodies arrive exactly.
pub async fn long_subject_and_multiline_body(h: MailHarness) {
    let subject =
        "【重要】ご予約の確認：2026年4月1日（水）午前10時00分〜午前11時30分、渋谷店にて承りました";
    let text = "山田様\n\nご予約ありがとうございます。\n日時：明日の10時です。\n".to_string()
        + &"長い行".repeat(200)
        + "\n\n-- \nKotoba";
    let mail = h.mail(&["guest@example.jp"], subject, &text, None);
    h.send_and_check(mail).await;
}

/// Every recipient is addressed, in order; each send gets its own id.
pub async fn multiple_recipients(h: MailHarness) {
    let to = [
        "a@example.com",
        "b.owner@example.co.jp",
        "c+tag@example.org",
    ];
    let first = h
        .send_and_check(h.mail(&to, "お知らせ", "三名様へ", None))
        .await;
    let second = h
        .send_and_check(h.mail(&to[..1], "お知らせ", "一名様へ", None))
        .await;
    assert_ne!(first, second);
}

/// An HTML alternative travels beside the text.
pub async fn html_alternative(h: MailHarness) {
    let mail = h.mail(
        &["guest@example.jp"],
        "ご予約の確認",
        "本文：明日の10時です。",
        Some("<p>本文：<b>明日の10時</b>です。</p>"),
    );
    h.send_and_check(mail).await;
}

/// Messages no adapter may send are refused before reaching the backend.
pub async fn invalid_mail_refused(h: MailHarness) {
    let invalid = |r: Result<String, MailError>| matches!(r, Err(MailError::Invalid(_)));
    let mut no_one = h.mail(&["a@example.com"], "件名", "本文", None);
    no_one.to.clear();
    assert!(invalid(h.mailer.send(no_one).await));
    let injected = h.mail(
        &["a@example.com"],
        "件名\r\nBcc: victim@example.com",
        "本文",
        None,
    );
    assert!(invalid(h.mailer.send(injected).await));
    assert!(invalid(
        h.mailer
            .send(h.mail(&["a@example.com"], "  ", "本文", None))
            .await
    ));
    let crowd: Vec<String> = (0..=super::MAX_RECIPIENTS)
        .map(|n| format!("r{n}@example.com"))
        .collect();
    let crowd: Vec<&str> = crowd.iter().map(String::as_str).collect();
    assert!(invalid(
        h.mailer.send(h.mail(&crowd, "件名", "本文", None)).await
    ));
}

/// Generates one `#[tokio::test]` per case in a module `$module`, each building its own harness with
/// the async expression `$setup` (evaluated inside the module, which sees its parent's items).
#[macro_export]
macro_rules! mail_conformance_tests {
    ($module:ident, $setup:expr) => {
        $crate::mail_conformance_tests!(@cases $module, $setup, [
            japanese_subject_and_body,
            long_subject_and_multiline_body,
            multiple_recipients,
            html_alternative,
            invalid_mail_refused,
        ]);
    };
    (@cases $module:ident, $setup:expr, [$($case:ident),* $(,)?]) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test]
                async fn $case() {
                    let harness = $setup.await;
                    $crate::mail::conformance::$case(harness).await;
                }
            )*
        }
    };
}
