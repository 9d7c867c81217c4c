//! Mail through Amazon SES (v2 API), as simple content: SES builds the MIME message itself.

use anyhow::Context;
use aws_sdk_sesv2::Client;
use aws_sdk_sesv2::error::SdkError;
use aws_sdk_sesv2::operation::create_email_identity::CreateEmailIdentityError;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message, MessageHeader};
use futures::future::BoxFuture;

use super::{Mail, MailError, Mailer, check_mail};

/// Registers `address` as a sending identity (CreateEmailIdentity), succeeding if it already is one.
///
/// On AWS this starts verification (a mail to the address) and sending works once it is confirmed;
/// moto treats the identity as verified at once and refuses unregistered senders.
pub async fn verify_sender(client: &Client, address: &str) -> anyhow::Result<()> {
    match client
        .create_email_identity()
        .email_identity(address)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(SdkError::ServiceError(e))
            if matches!(e.err(), CreateEmailIdentityError::AlreadyExistsException(_)) =>
        {
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("creating the SES identity {address}")),
    }
}

/// A [`Mailer`] on SESv2's SendEmail.
#[derive(Debug, Clone)]
pub struct SesMailer {
    client: Client,
}

impl SesMailer {
    /// A mailer on `client`; senders must be verified identities (see [`verify_sender`]).
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

/// UTF-8 content: SES then encodes non-ASCII subjects and bodies itself.
fn utf8(data: &str) -> anyhow::Result<Content> {
    Content::builder()
        .data(data)
        .charset("UTF-8")
        .build()
        .context("building SES content")
}

impl Mailer for SesMailer {
    fn send(&self, mail: Mail) -> BoxFuture<'_, Result<String, MailError>> {
        Box::pin(async move {
            check_mail(&mail)?;
            let body = Body::builder()
                .text(utf8(&mail.text)?)
                .set_html(mail.html.as_deref().map(utf8).transpose()?)
                .build();
            let mut message = Message::builder().subject(utf8(&mail.subject)?).body(body);
            for (name, value) in &mail.headers {
                message = message.headers(
                    MessageHeader::builder()
                        .name(name)
                        .value(value)
                        .build()
                        .context("building an SES message header")?,
                );
            }
            let message = message.build();
            let destination = Destination::builder()
                .set_to_addresses(Some(
                    mail.to.iter().map(|a| a.as_str().to_string()).collect(),
                ))
                .build();
            let output = self
                .client
                .send_email()
                .from_email_address(mail.from.as_str())
                .destination(destination)
                .content(EmailContent::builder().simple(message).build())
                .send()
                .await
                .with_context(|| format!("sending mail from {} through SES", mail.from))?;
            Ok(output
                .message_id
                .context("SendEmail returned no message id")?)
        })
    }
}
