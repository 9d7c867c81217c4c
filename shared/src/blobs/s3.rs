//! Blobs on S3: one bucket, keys as given.

use std::time::Duration;

use anyhow::Context;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
use futures::future::BoxFuture;

use super::{
    Blob, BlobEntry, BlobError, BlobStore, DEFAULT_CONTENT_TYPE, check_key, normalize_content_type,
};

/// How the S3 client talks to its endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct S3Settings {
    /// `https://endpoint/bucket/key` instead of `https://bucket.endpoint/key`: emulators on a bare
    /// host and port cannot serve bucket subdomains.
    pub force_path_style: bool,
    /// Send and check the newer flexible checksums only when an operation requires them: emulators
    /// do not all understand them. Real S3 works either way.
    pub checksums_when_required: bool,
}

impl S3Settings {
    /// What an emulator (moto, MinIO) needs.
    pub fn emulator() -> Self {
        Self {
            force_path_style: true,
            checksums_when_required: true,
        }
    }
}

/// An S3 client from shared SDK configuration, with `settings` applied.
pub fn s3_client(sdk: &aws_config::SdkConfig, settings: &S3Settings) -> Client {
    let mut config =
        aws_sdk_s3::config::Builder::from(sdk).force_path_style(settings.force_path_style);
    if settings.checksums_when_required {
        config = config
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    }
    Client::from_conf(config.build())
}

/// Creates `bucket` unless this account already owns it (tests and the local runner's AWS mode).
pub async fn create_bucket(client: &Client, bucket: &str) -> anyhow::Result<()> {
    let mut request = client.create_bucket().bucket(bucket);
    // us-east-1 is the default location and refuses being named as a constraint; others need it.
    if let Some(region) = client.config().region().map(|r| r.as_ref().to_string())
        && region != "us-east-1"
    {
        request = request.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(region.as_str()))
                .build(),
        );
    }
    match request.send().await {
        Ok(_) => Ok(()),
        Err(SdkError::ServiceError(e)) if e.err().is_bucket_already_owned_by_you() => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating bucket {bucket}")),
    }
}

/// A [`BlobStore`] on one S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Blobs {
    client: Client,
    bucket: String,
    page_size: Option<i32>,
}

impl S3Blobs {
    /// The store on `bucket` (which must exist; see [`create_bucket`]).
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
            page_size: None,
        }
    }

    /// Lists at most `n` keys per ListObjectsV2 request (S3's default is 1000); tests use a small page
    /// to exercise continuation.
    pub fn with_list_page_size(mut self, n: i32) -> Self {
        self.page_size = Some(n);
        self
    }

    /// The bucket the objects live in.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn put_object(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> Result<(), BlobError> {
        check_key(key)?;
        let content_type = normalize_content_type(content_type)?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .with_context(|| format!("putting s3://{}/{key}", self.bucket))?;
        Ok(())
    }

    async fn get_object(&self, key: &str) -> Result<Option<Blob>, BlobError> {
        check_key(key)?;
        let output = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(output) => output,
            Err(SdkError::ServiceError(e))
                if e.err().is_no_such_key() || e.raw().status().as_u16() == 404 =>
            {
                return Ok(None);
            }
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("getting s3://{}/{key}", self.bucket))
                    .into());
            }
        };
        let content_type = output
            .content_type()
            .unwrap_or(DEFAULT_CONTENT_TYPE)
            .to_string();
        let bytes = output
            .body
            .collect()
            .await
            .with_context(|| format!("reading the body of s3://{}/{key}", self.bucket))?
            .into_bytes()
            .to_vec();
        Ok(Some(Blob {
            bytes,
            content_type,
        }))
    }

    async fn list_objects(&self, prefix: &str) -> Result<Vec<BlobEntry>, BlobError> {
        let mut entries = Vec::new();
        let mut continuation: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_max_keys(self.page_size)
                .set_continuation_token(continuation.take())
                .send()
                .await
                .with_context(|| format!("listing s3://{}/{prefix}", self.bucket))?;
            for object in page.contents() {
                let key = object.key().context("listed object without a key")?;
                let size = u64::try_from(object.size().unwrap_or(0))
                    .context("listed object with a negative size")?;
                entries.push(BlobEntry {
                    key: key.to_string(),
                    size,
                });
            }
            // S3 returns keys in UTF-8 byte order across pages, which is the order the port promises.
            match page.next_continuation_token() {
                Some(token) if page.is_truncated() == Some(true) => {
                    continuation = Some(token.to_string())
                }
                _ => return Ok(entries),
            }
        }
    }

    async fn delete_object(&self, key: &str) -> Result<(), BlobError> {
        check_key(key)?;
        // S3 answers 204 for a missing key too, which is the port's contract.
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .with_context(|| format!("deleting s3://{}/{key}", self.bucket))?;
        Ok(())
    }

    async fn presign(&self, key: &str, expires_in: Duration) -> Result<String, BlobError> {
        check_key(key)?;
        let config =
            PresigningConfig::expires_in(expires_in).context("presigning configuration")?;
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(config)
            .await
            .with_context(|| format!("presigning s3://{}/{key}", self.bucket))?;
        Ok(request.uri().to_string())
    }
}

impl BlobStore for S3Blobs {
    fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> BoxFuture<'_, Result<(), BlobError>> {
        let (key, content_type) = (key.to_string(), content_type.to_string());
        Box::pin(async move { self.put_object(&key, bytes, &content_type).await })
    }

    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<Blob>, BlobError>> {
        let key = key.to_string();
        Box::pin(async move { self.get_object(&key).await })
    }

    fn list(&self, prefix: &str) -> BoxFuture<'_, Result<Vec<BlobEntry>, BlobError>> {
        let prefix = prefix.to_string();
        Box::pin(async move { self.list_objects(&prefix).await })
    }

    fn delete(&self, key: &str) -> BoxFuture<'_, Result<(), BlobError>> {
        let key = key.to_string();
        Box::pin(async move { self.delete_object(&key).await })
    }

    fn presign_get(
        &self,
        key: &str,
        expires_in: Duration,
    ) -> BoxFuture<'_, Result<String, BlobError>> {
        let key = key.to_string();
        Box::pin(async move { self.presign(&key, expires_in).await })
    }
}
