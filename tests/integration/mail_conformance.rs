//! The mailer conformance suite on the outbox (read back by parsing the `.eml` files) and on SES
//! (against the emulator, read back from its record of sent mail).

use std::sync::Arc;

use kotoba_tests::{aws, unique_name};
use mail_parser::{MessageParser, MimeHeaders};
use shared::mail::conformance::{MailHarness, SentBody, SentMail};
use shared::mail::ses::verify_sender;
use shared::mail::{EmailAddress, Outbox, SesMailer};

/// An outbox in a temporary directory; a message is read back by parsing its file.
async fn outbox_harness() -> MailHarness {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Arc::new(Outbox::new(dir.path().join("outbox")).unwrap());
    let reader = Arc::clone(&outbox);
    MailHarness {
        mailer: outbox,
        from: EmailAddress::parse("noreply@kotoba.example").unwrap(),
        read_back: Box::new(move |id| {
            let path = reader
                .find(&id)
                .unwrap()
                .unwrap_or_else(|| panic!("no outbox file for {id}"));
            Box::pin(async move { parse_eml(&std::fs::read(path).unwrap()) })
        }),
        keep: Box::new(dir),
    }
}

fn parse_eml(raw: &[u8]) -> SentMail {
    let message = MessageParser::default()
        .parse(raw)
        .expect("a parsable message");
    let addresses = |a: Option<&mail_parser::Address>| {
        a.map(|a| {
            a.iter()
                .map(|addr| addr.address().unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
    };
    let is_html = |p: &&mail_parser::MessagePart| {
        p.content_type()
            .is_some_and(|ct| ct.ctype() == "text" && ct.subtype() == Some("html"))
    };
    // mail-parser offers every text part as an HTML body too (and the reverse): pick by content type.
    let text = message
        .text_bodies()
        .find(|p| !is_html(p))
        .and_then(|p| p.text_contents())
        .expect("a text part");
    let html = message
        .html_bodies()
        .find(is_html)
        .and_then(|p| p.text_contents())
        .map(str::to_string);
    SentMail {
        from: addresses(message.from()).remove(0),
        to: addresses(message.to()),
        subject: message.subject().unwrap_or_default().to_string(),
        body: SentBody::Parts {
            text: text.to_string(),
            html,
        },
    }
}

/// SES on the emulator, with a freshly registered sender; a message is read back from moto's record of
/// sent mail (`/moto-api/data.json`, `ses` → `Message`), which keeps one body: the HTML if any.
async fn ses_harness() -> MailHarness {
    let sdk = aws::sdk_config().await;
    let client = aws_sdk_sesv2::Client::new(&sdk);
    let from = EmailAddress::parse(&format!("{}@kotoba.example", unique_name("noreply"))).unwrap();
    verify_sender(&client, from.as_str()).await.unwrap();
    verify_sender(&client, from.as_str()).await.unwrap();
    MailHarness {
        mailer: Arc::new(SesMailer::new(client)),
        from,
        read_back: Box::new(|id| Box::pin(read_back_from_moto(id))),
        keep: Box::new(()),
    }
}

async fn read_back_from_moto(id: String) -> SentMail {
    let url = format!("{}/moto-api/data.json?service=ses", aws::endpoint());
    let data: serde_json::Value = reqwest::get(&url)
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    let messages = data["ses"]["Message"]
        .as_array()
        .expect("moto's data.json has ses.Message");
    let message = messages
        .iter()
        .find(|m| m["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not among {messages:?}"));
    let strings = |v: &serde_json::Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    SentMail {
        from: message["source"].as_str().unwrap().to_string(),
        to: strings(&message["destinations"]["ToAddresses"]),
        subject: message["subject"].as_str().unwrap().to_string(),
        body: SentBody::Single(message["body"].as_str().unwrap().to_string()),
    }
}

shared::mail_conformance_tests!(outbox, outbox_harness());
shared::mail_conformance_tests!(ses, ses_harness());
