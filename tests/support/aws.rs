//! The local AWS emulator (moto server) that `make test` starts, and SDK configuration pointing at it.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, anyhow};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TableStatus, TimeToLiveSpecification, TimeToLiveStatus,
};
use shared::store::Index;

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

/// Creates a store table on the emulator as `template.yaml` defines it (on-demand billing, `pk`/`sk`,
/// a GSI per [`Index`], TTL on `expires_at`) and waits until it is active. Does nothing to a table that
/// already exists but finish enabling TTL on it. (Deployed tables come from the template, never from code.)
pub async fn create_table(client: &Client, table: &str) -> anyhow::Result<()> {
    let string_attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .context("building an attribute definition")
    };
    let key_element = |name: &str, key_type: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(key_type)
            .build()
            .context("building a key schema")
    };
    let mut attributes = vec![string_attribute("pk")?, string_attribute("sk")?];
    let mut indexes = Vec::new();
    for index in Index::ALL {
        attributes.push(string_attribute(index.pk_attribute())?);
        attributes.push(string_attribute(index.sk_attribute())?);
        indexes.push(
            GlobalSecondaryIndex::builder()
                .index_name(index.name())
                .key_schema(key_element(index.pk_attribute(), KeyType::Hash)?)
                .key_schema(key_element(index.sk_attribute(), KeyType::Range)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .context("building a GSI definition")?,
        );
    }
    let created = client
        .create_table()
        .table_name(table)
        .set_attribute_definitions(Some(attributes))
        .key_schema(key_element("pk", KeyType::Hash)?)
        .key_schema(key_element("sk", KeyType::Range)?)
        .set_global_secondary_indexes(Some(indexes))
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) => {}
        Err(e) => {
            return Err(anyhow!(
                "creating table {table}: {}",
                DisplayErrorContext(&e)
            ));
        }
    }

    let mut active = false;
    for _ in 0..300 {
        let described = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| anyhow!("describing table {table}: {}", DisplayErrorContext(&e)))?;
        if described.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            active = true;
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await; // poll: until the table is ACTIVE
    }
    anyhow::ensure!(active, "table {table} did not become active");

    let ttl = client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(|e| {
            anyhow!(
                "reading the TTL setting of {table}: {}",
                DisplayErrorContext(&e)
            )
        })?;
    let status = ttl
        .time_to_live_description()
        .and_then(|d| d.time_to_live_status());
    // DynamoDB refuses to enable TTL twice, so only ask when it is off.
    if !matches!(
        status,
        Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
    ) {
        client
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name("expires_at")
                    .enabled(true)
                    .build()
                    .context("building the TTL specification")?,
            )
            .send()
            .await
            .map_err(|e| anyhow!("enabling TTL on {table}: {}", DisplayErrorContext(&e)))?;
    }
    Ok(())
}

/// A table, bucket, training queue and dead-letter queue of one test's own on the emulator.
pub struct Resources {
    pub table: String,
    pub bucket: String,
    pub queue_url: String,
    pub dlq_url: String,
    pub webhook_queue_url: String,
    pub webhook_dlq_url: String,
}

impl Resources {
    pub async fn create() -> Resources {
        let sdk = sdk_config().await;
        let table = crate::unique_name("kotoba");
        let bucket = crate::unique_name("kotoba");
        create_table(&Client::new(&sdk), &table)
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
        let (webhook_queue_url, webhook_dlq_url) = shared::queue::sqs::create_queue_with_dlq(
            &aws_sdk_sqs::Client::new(&sdk),
            &crate::unique_name("webhooks"),
            shared::platform::WEBHOOK_MAX_RECEIVES,
            std::time::Duration::from_secs(60),
        )
        .await
        .expect("webhook queues created");
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
            webhook_queue_url,
            webhook_dlq_url,
        }
    }

    /// The settings that switch the runner to these resources.
    pub fn vars(&self) -> HashMap<String, String> {
        [
            ("KOTOBA_TABLE", self.table.clone()),
            ("KOTOBA_BUCKET", self.bucket.clone()),
            ("KOTOBA_TRAIN_QUEUE_URL", self.queue_url.clone()),
            ("KOTOBA_TRAIN_DLQ_URL", self.dlq_url.clone()),
            ("KOTOBA_WEBHOOK_QUEUE_URL", self.webhook_queue_url.clone()),
            ("KOTOBA_WEBHOOK_DLQ_URL", self.webhook_dlq_url.clone()),
            ("KOTOBA_MAIL_FROM", "no-reply@kotoba.example".to_string()),
            ("KOTOBA_S3_FORCE_PATH_STYLE", "true".to_string()),
            ("AWS_ENDPOINT_URL", endpoint()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}
