//! The local AWS emulator (moto server) that `make test` starts, and SDK configuration pointing at it.

use std::collections::HashMap;

/// The emulator's base URL. `make test` (through `infra/dev/with-moto`) sets it.
pub fn endpoint() -> String {
    std::env::var("KOTOBA_TEST_AWS_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "KOTOBA_TEST_AWS_ENDPOINT is not set: run the AWS-family tests through `make test` \
             or `infra/dev/with-moto cargo test …`, which start a moto server"
        )
    })
}

/// SDK configuration for the emulator: its endpoint, a fixed region and dummy static credentials.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "kotoba-tests",
        ))
        .load()
        .await
}

/// A table, bucket, training queue and dead-letter queue of one test's own on the emulator.
pub struct Resources {
    pub table: String,
    pub bucket: String,
    pub queue_url: String,
    pub dlq_url: String,
}

impl Resources {
    pub async fn create() -> Resources {
        let sdk = sdk_config().await;
        let table = crate::unique_name("kotoba");
        let bucket = crate::unique_name("kotoba");
        shared::store::dynamo::create_table(&aws_sdk_dynamodb::Client::new(&sdk), &table)
            .await
            .expect("table created");
        let s3 = shared::blobs::s3::s3_client(
            &sdk,
            &shared::blobs::S3Settings {
                force_path_style: true,
                checksums_when_required: true,
            },
        );
        shared::blobs::s3::create_bucket(&s3, &bucket)
            .await
            .expect("bucket created");
        let (queue_url, dlq_url) = shared::queue::sqs::create_queue_with_dlq(
            &aws_sdk_sqs::Client::new(&sdk),
            &crate::unique_name("train"),
            shared::platform::TRAIN_MAX_RECEIVES,
            std::time::Duration::from_secs(30),
        )
        .await
        .expect("queues created");
        shared::mail::ses::verify_sender(
            &aws_sdk_sesv2::Client::new(&sdk),
            "no-reply@kotoba.example",
        )
        .await
        .expect("sender verified");
        Resources {
            table,
            bucket,
            queue_url,
            dlq_url,
        }
    }

    /// The settings that switch the runner to these resources.
    pub fn vars(&self) -> HashMap<String, String> {
        [
            ("KOTOBA_TABLE", self.table.clone()),
            ("KOTOBA_BUCKET", self.bucket.clone()),
            ("KOTOBA_TRAIN_QUEUE_URL", self.queue_url.clone()),
            ("KOTOBA_TRAIN_DLQ_URL", self.dlq_url.clone()),
            ("KOTOBA_MAIL_FROM", "no-reply@kotoba.example".to_string()),
            ("KOTOBA_S3_FORCE_PATH_STYLE", "true".to_string()),
            ("AWS_ENDPOINT_URL", endpoint()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}
