//! The blob port: whole objects by key (site indexes, crawled pages, call recordings).
//!
//! Production runs on S3; the local runner on a directory whose presigned URLs the runner itself serves
//! (HMAC-signed and expiring, like S3's). Both pass `blobs::conformance`.

pub mod dir;
pub mod s3;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

use std::time::Duration;

use futures::future::BoxFuture;

pub use dir::{DirBlobs, PresignKey};
pub use s3::{S3Blobs, S3Settings};

/// The content type stored when the caller gives none (S3 does the same).
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// Checks a content type and substitutes the default for an empty one, so both adapters store the same.
///
/// Content types travel as HTTP header values, so only printable ASCII is accepted.
pub(crate) fn normalize_content_type(content_type: &str) -> Result<String, BlobError> {
    let ct = content_type.trim();
    if ct.is_empty() {
        return Ok(DEFAULT_CONTENT_TYPE.to_string());
    }
    if ct.len() > 256 || !ct.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(BlobError::Backend(anyhow::anyhow!(
            "content type {ct:?} is not printable ASCII of at most 256 bytes"
        )));
    }
    Ok(ct.to_string())
}

/// An object read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Blob {
    pub bytes: Vec<u8>,
    pub content_type: String,
}

/// An entry of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct BlobEntry {
    pub key: String,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The key is empty, absolute, or climbs out of the store (`..`).
    #[error("invalid blob key {0:?}")]
    InvalidKey(String),
    #[error("blob backend failed: {0:#}")]
    Backend(#[from] anyhow::Error),
}

/// Keys are `/`-separated relative paths of printable characters, never `..` or empty segments.
pub fn check_key(key: &str) -> Result<(), BlobError> {
    let ok = !key.is_empty()
        && key.len() <= 1024
        && !key.starts_with('/')
        && key
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
        && !key.chars().any(|c| c.is_control() || c == '\\');
    if ok {
        Ok(())
    } else {
        Err(BlobError::InvalidKey(key.to_string()))
    }
}

pub trait BlobStore: Send + Sync + 'static {
    /// Writes the whole object, replacing any previous one atomically (readers see old or new, never half).
    fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> BoxFuture<'_, Result<(), BlobError>>;
    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<Blob>, BlobError>>;
    /// Every key under `prefix`, in key order.
    fn list(&self, prefix: &str) -> BoxFuture<'_, Result<Vec<BlobEntry>, BlobError>>;
    /// Deleting a missing key is not an error.
    fn delete(&self, key: &str) -> BoxFuture<'_, Result<(), BlobError>>;
    /// A URL that any plain HTTP client can GET until it expires.
    fn presign_get(
        &self,
        key: &str,
        expires_in: Duration,
    ) -> BoxFuture<'_, Result<String, BlobError>>;
}
