//! The local runner's mailer: each message becomes an RFC 5322 `.eml` file in an outbox directory,
//! which any mail client opens. Names are `<UTC timestamp>-<id>.eml`, so they sort by sending time.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use futures::future::BoxFuture;
use mail_builder::MessageBuilder;
use time::macros::format_description;

use super::{Mail, MailError, Mailer, check_mail};
use crate::clock::{Clock, SystemClock};

/// The domain of the Message-IDs the outbox makes up.
const MESSAGE_ID_DOMAIN: &str = "outbox.kotoba.local";

/// A [`Mailer`] writing `.eml` files to a directory.
pub struct Outbox {
    dir: PathBuf,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").field("dir", &self.dir).finish()
    }
}

impl Outbox {
    /// An outbox in `dir` (created if missing), dating messages by the system clock.
    pub fn new(dir: impl Into<PathBuf>) -> anyhow::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating outbox {}", dir.display()))?;
        Ok(Self {
            dir,
            clock: Arc::new(SystemClock),
        })
    }

    /// Dates messages (and names their files) by `clock` instead.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The directory the `.eml` files are written to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The messages sent so far, oldest first.
    pub fn list(&self) -> anyhow::Result<Vec<PathBuf>> {
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(&self.dir)
            .with_context(|| format!("listing {}", self.dir.display()))?
        {
            let path = entry
                .with_context(|| format!("listing {}", self.dir.display()))?
                .path();
            // Half-written messages end in `.eml.tmp` and are skipped.
            if path.extension().is_some_and(|e| e == "eml") && path.is_file() {
                paths.push(path);
            }
        }
        paths.sort();
        Ok(paths)
    }

    /// The file of the message `send` returned `id` for, if it is still there.
    pub fn find(&self, id: &str) -> anyhow::Result<Option<PathBuf>> {
        let suffix = format!("-{id}.eml");
        Ok(self.list()?.into_iter().find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(&suffix))
        }))
    }

    /// The message as RFC 5322 bytes, with its id and file name.
    fn render(&self, mail: &Mail) -> anyhow::Result<(String, String, Vec<u8>)> {
        let id = uuid::Uuid::now_v7().simple().to_string();
        let now = self.clock.now();
        let stamp = now
            .format(format_description!(
                "[year][month][day]T[hour][minute][second].[subsecond digits:3]Z"
            ))
            .context("formatting the message timestamp")?;
        let mut builder = MessageBuilder::new()
            .message_id(format!("{id}@{MESSAGE_ID_DOMAIN}"))
            .date(now.unix_timestamp())
            .from(mail.from.as_str())
            .to(mail.to.iter().map(|a| a.as_str()).collect::<Vec<_>>())
            // mail-builder writes non-ASCII headers as RFC 2047 encoded words and bodies as UTF-8 with a
            // transfer encoding, so Japanese survives any mail client.
            .subject(mail.subject.as_str())
            .text_body(mail.text.as_str());
        if let Some(html) = &mail.html {
            builder = builder.html_body(html.as_str());
        }
        for (name, value) in &mail.headers {
            builder = builder.header(
                name.as_str(),
                mail_builder::headers::raw::Raw::new(value.as_str()),
            );
        }
        let bytes = builder.write_to_vec().context("building the message")?;
        let name = format!("{stamp}-{id}.eml");
        Ok((id, name, bytes))
    }
}

/// Writes `dir/name` through a temporary file and a rename, so a reader never sees half a message.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let written = (|| -> anyhow::Result<()> {
        let mut file = std::fs::File::create_new(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        file.write_all(bytes).context("writing the message")?;
        file.sync_all().context("flushing the message to disk")?;
        std::fs::rename(&tmp, &path).with_context(|| format!("renaming into {}", path.display()))
    })();
    if written.is_err() {
        // Best effort: a leftover `.eml.tmp` is never listed.
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

impl Mailer for Outbox {
    fn send(&self, mail: Mail) -> BoxFuture<'_, Result<String, MailError>> {
        Box::pin(async move {
            check_mail(&mail)?;
            let (id, name, bytes) = self.render(&mail)?;
            let dir = self.dir.clone();
            let file = name.clone();
            tokio::task::spawn_blocking(move || write_atomically(&dir, &file, &bytes))
                .await
                .context("outbox write task failed")?
                .context("writing to the outbox")?;
            tracing::info!(
                file = name,
                recipients = mail.to.len(),
                "mail written to the outbox"
            );
            Ok(id)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::mail::EmailAddress;

    fn mail() -> Mail {
        Mail {
            from: EmailAddress::parse("noreply@kotoba.example").unwrap(),
            to: vec![EmailAddress::parse("owner@example.co.jp").unwrap()],
            subject: "ご予約の確認".into(),
            text: "本文：明日の10時です。".into(),
            html: None,
            headers: Vec::new(),
        }
    }

    #[tokio::test]
    async fn writes_dated_eml_files_that_parse_back() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::at(time::macros::datetime!(2026-03-04 05:06:07.089 UTC));
        let outbox = Outbox::new(dir.path().join("outbox"))
            .unwrap()
            .with_clock(Arc::new(clock.clone()));
        let first = outbox.send(mail()).await.unwrap();
        clock.advance(std::time::Duration::from_secs(1));
        let second = outbox.send(mail()).await.unwrap();

        let paths = outbox.list().unwrap();
        let names: Vec<_> = paths
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
            .collect();
        assert_eq!(
            names,
            [
                format!("20260304T050607.089Z-{first}.eml"),
                format!("20260304T050608.089Z-{second}.eml")
            ]
        );
        assert_eq!(outbox.find(&second).unwrap().as_ref(), Some(&paths[1]));

        let raw = std::fs::read(&paths[0]).unwrap();
        // Headers stay ASCII: the Japanese subject is encoded.
        let head = &raw[..raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap()];
        assert!(head.is_ascii(), "{}", String::from_utf8_lossy(head));
        let parsed = mail_parser::MessageParser::default().parse(&raw).unwrap();
        assert_eq!(parsed.subject(), Some("ご予約の確認"));
        assert_eq!(
            parsed.body_text(0).as_deref(),
            Some("本文：明日の10時です。")
        );
        assert_eq!(
            parsed.message_id(),
            Some(format!("{first}@{MESSAGE_ID_DOMAIN}").as_str())
        );
        assert_eq!(
            parsed.date().map(|d| d.to_timestamp()),
            Some(clock.unix_seconds() - 1)
        );
    }

    #[tokio::test]
    async fn temp_files_are_not_listed() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::new(dir.path()).unwrap();
        std::fs::write(dir.path().join("x.eml.tmp"), b"half").unwrap();
        assert!(outbox.list().unwrap().is_empty());
    }
}
