//! A training job between invocations. A job bigger than one invocation (a Lambda runs at most 15
//! minutes) works to a time budget; when it runs out, the crawl is suspended, and its frontier, the URLs
//! it saw and the job's running totals are saved here, as one blob per job, before the job continues
//! in a follow-up message. The next slice (or a redelivery that takes over a killed one) resumes from
//! the latest checkpoint. Pages finished after it are not lost either: their document records and
//! chunks are saved as they are produced, so a page fetched again is recognised and never embedded
//! twice.

use serde::{Deserialize, Serialize};

use crate::blobs::{BlobError, BlobStore};
use crate::crawl::CrawlState;
use crate::ids::{JobId, SiteId};

/// Live totals of a job's run, carried from slice to slice (the final counts of pages and chunks are
/// recounted from document records; `skipped` has no record, so it is carried exactly here).
#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Progress {
    pub crawled: u64,
    pub changed: u64,
    pub removed: u64,
    pub skipped: u64,
    /// Distinct URLs found outside the crawl's scope.
    #[serde(default)]
    pub out_of_scope: u64,
    pub chunks: u64,
    pub embedding_tokens: u64,
}

/// Where a suspended job continues from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The slice that continues from here.
    pub slice: u32,
    pub crawl: CrawlState,
    pub progress: Progress,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint storage: {0}")]
    Blob(#[from] BlobError),
    #[error("checkpoint {key} is unreadable: {source}")]
    Corrupt {
        key: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The checkpoint's blob (under the site's prefix, which the worker may write).
pub fn blob_key(site: &SiteId, job: &JobId) -> String {
    format!("sites/{site}/jobs/{job}/checkpoint.json")
}

pub async fn save(
    blobs: &dyn BlobStore,
    site: &SiteId,
    job: &JobId,
    checkpoint: &Checkpoint,
) -> Result<(), CheckpointError> {
    let key = blob_key(site, job);
    let bytes = serde_json::to_vec(checkpoint).map_err(|source| CheckpointError::Corrupt {
        key: key.clone(),
        source,
    })?;
    blobs.put(&key, bytes, "application/json").await?;
    Ok(())
}

pub async fn load(
    blobs: &dyn BlobStore,
    site: &SiteId,
    job: &JobId,
) -> Result<Option<Checkpoint>, CheckpointError> {
    let key = blob_key(site, job);
    let Some(blob) = blobs.get(&key).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&blob.bytes)
        .map(Some)
        .map_err(|source| CheckpointError::Corrupt { key, source })
}

pub async fn delete(blobs: &dyn BlobStore, site: &SiteId, job: &JobId) -> Result<(), BlobError> {
    blobs.delete(&blob_key(site, job)).await
}
