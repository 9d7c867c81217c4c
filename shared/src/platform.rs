//! The platform a handler runs on: one adapter behind each port, plus clock and ids, built once in
//! `main` (or by the local runner, or a test) from the configuration.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::blobs::{self, BlobStore, DirBlobs, PresignKey, S3Blobs, S3Settings};
use crate::clock::{Clock, SystemClock};
use crate::config::{AwsSettings, Backend, Config};
use crate::embedded_db::EmbeddedDb;
use crate::http::AdminKey;
use crate::ids::{IdGenerator, RandomIds};
use crate::mail::{EmailAddress, Mailer, Outbox, SesMailer};
use crate::queue::{JobQueue, LocalQueue, SqsQueue};
use crate::store::{DynamoStore, EmbeddedStore, ItemStore};
use crate::webhooks::secret::SealingKey;

/// How many times a training message is delivered before it is dead-lettered (local queue; the SAM
/// template's redrive policy says the same for SQS).
pub const TRAIN_MAX_RECEIVES: u32 = 3;
/// How many times a webhook message is received before it is dead-lettered. High: a delivery waiting
/// out its backoff is looked at once per 12 hours at most, and every look counts as a receive.
pub const WEBHOOK_MAX_RECEIVES: u32 = 100;

/// Every port's adapter, shared by all handlers of a process.
pub struct Platform {
    pub store: Arc<dyn ItemStore>,
    pub blobs: Arc<dyn BlobStore>,
    /// The blob directory in embedded mode, whose presigned URLs the local runner serves.
    pub dir_blobs: Option<Arc<DirBlobs>>,
    pub train_queue: Arc<dyn JobQueue>,
    /// Outbound webhook events and delivery attempts (`webhooks`).
    pub webhook_queue: Arc<dyn JobQueue>,
    /// Seals webhook signing secrets; `None` when `KOTOBA_WEBHOOK_KEY` is not configured.
    pub webhook_key: Option<SealingKey>,
    pub mail: Arc<dyn Mailer>,
    pub mail_from: EmailAddress,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn IdGenerator>,
    pub admin_key: Option<AdminKey>,
    pub config: Config,
}

impl std::fmt::Debug for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Platform")
            .field("backend", &self.config.backend)
            .finish_non_exhaustive()
    }
}

impl Platform {
    /// Builds the adapters the configuration names: embedded under the data directory, or AWS with the
    /// SDK's usual environment (region, credentials, `AWS_ENDPOINT_URL` for an emulator).
    pub async fn from_config(config: Config) -> anyhow::Result<Arc<Platform>> {
        Self::from_config_with(config, None).await
    }

    /// As [`from_config`](Self::from_config), with a given SDK configuration for AWS (tests pass one
    /// pointing at the emulator instead of changing the process environment).
    pub async fn from_config_with(
        config: Config,
        sdk: Option<aws_config::SdkConfig>,
    ) -> anyhow::Result<Arc<Platform>> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let ids: Arc<dyn IdGenerator> = Arc::new(RandomIds);
        match config.backend.clone() {
            Backend::Embedded => Self::embedded(config, clock, ids),
            Backend::Aws(aws) => {
                let sdk = match sdk {
                    Some(sdk) => sdk,
                    None => aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await,
                };
                Self::aws(config, &aws, &sdk, clock, ids)
            }
        }
    }

    /// SQLite store and queue, a blob directory served by the local runner, an outbox of `.eml` files.
    pub fn embedded(
        config: Config,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGenerator>,
    ) -> anyhow::Result<Arc<Platform>> {
        let dir = &config.data_dir;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating data directory {}", dir.display()))?;
        let db = EmbeddedDb::open(&dir.join("kotoba.sqlite3"))?;
        let store = EmbeddedStore::new(db.clone(), clock.clone())
            .context("preparing the embedded store")?;
        let queue = LocalQueue::new(db.clone(), "train", TRAIN_MAX_RECEIVES, clock.clone())
            .context("preparing the local queue")?;
        let webhook_queue = LocalQueue::new(db, "webhooks", WEBHOOK_MAX_RECEIVES, clock.clone())
            .context("preparing the local webhook queue")?;
        let presign_key = PresignKey::load_or_create(&dir.join("blob-signing.key"))?;
        let blobs = DirBlobs::new(
            dir.join("blobs"),
            config.public_url.clone(),
            presign_key,
            clock.clone(),
        )
        .context("preparing the blob directory")?;
        let blobs = Arc::new(blobs);
        let outbox = Outbox::new(dir.join("outbox")).context("preparing the mail outbox")?;
        Ok(Arc::new(Platform {
            store: Arc::new(store),
            blobs: blobs.clone(),
            dir_blobs: Some(blobs),
            train_queue: Arc::new(queue),
            webhook_queue: Arc::new(webhook_queue),
            webhook_key: webhook_key(&config)?,
            mail: Arc::new(outbox),
            mail_from: EmailAddress::parse("no-reply@kotoba.localhost")
                .map_err(anyhow::Error::msg)?,
            clock,
            ids,
            admin_key: config.admin_key.as_ref().map(|k| AdminKey::new(k.expose())),
            config,
        }))
    }

    /// DynamoDB, S3, SQS and SESv2 clients from one SDK configuration.
    pub fn aws(
        config: Config,
        aws: &AwsSettings,
        sdk: &aws_config::SdkConfig,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGenerator>,
    ) -> anyhow::Result<Arc<Platform>> {
        let store = DynamoStore::new(
            aws_sdk_dynamodb::Client::new(sdk),
            aws.table.clone(),
            clock.clone(),
        );
        let s3 = blobs::s3::s3_client(
            sdk,
            &S3Settings {
                force_path_style: aws.s3_force_path_style,
                checksums_when_required: aws.s3_force_path_style,
            },
        );
        let queue = SqsQueue::new(
            aws_sdk_sqs::Client::new(sdk),
            aws.train_queue_url.clone(),
            aws.dead_letter_queue_url.clone(),
            aws.max_receives,
        );
        let webhook_queue = SqsQueue::new(
            aws_sdk_sqs::Client::new(sdk),
            aws.webhook_queue_url.clone(),
            aws.webhook_dead_letter_queue_url.clone(),
            WEBHOOK_MAX_RECEIVES,
        );
        let mail_from = EmailAddress::parse(&aws.mail_from)
            .map_err(|e| anyhow::anyhow!("KOTOBA_MAIL_FROM: {e}"))?;
        Ok(Arc::new(Platform {
            store: Arc::new(store),
            blobs: Arc::new(S3Blobs::new(s3, aws.bucket.clone())),
            dir_blobs: None,
            train_queue: Arc::new(queue),
            webhook_queue: Arc::new(webhook_queue),
            webhook_key: webhook_key(&config)?,
            mail: Arc::new(SesMailer::new(aws_sdk_sesv2::Client::new(sdk))),
            mail_from,
            clock,
            ids,
            admin_key: config.admin_key.as_ref().map(|k| AdminKey::new(k.expose())),
            config,
        }))
    }

    /// The guard every webhook URL passes (the crawler's settings: loopback only in local mode).
    pub fn webhook_guard(&self) -> crate::webhooks::target::TargetGuard {
        crate::webhooks::target::TargetGuard::new(
            crate::webhooks::target::TargetPolicy {
                allow_loopback: self.config.fetch_allow_loopback,
                allowed_ports: self.config.fetch_allowed_ports.clone(),
            },
            Arc::new(crate::crawl::guard::SystemResolver),
        )
    }

    /// How long a presigned URL handed to a client stays valid.
    pub const PRESIGN_TTL: Duration = Duration::from_secs(15 * 60);
}

fn webhook_key(config: &Config) -> anyhow::Result<Option<SealingKey>> {
    config
        .webhook_key
        .as_ref()
        .map(|k| SealingKey::parse(k.expose()))
        .transpose()
        .context("KOTOBA_WEBHOOK_KEY")
}
