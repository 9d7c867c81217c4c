//! Document records: one per canonical URL of a site, carrying what differential re-training needs
//! (content hash, ETag, Last-Modified) and which job last saw, changed or removed it.
//!
//! Counting a job's outcome from these records (rather than from counters bumped along the way) is what
//! keeps the numbers exact when a job is killed mid-run and redelivered.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use time::OffsetDateTime;

use crate::ids::{JobId, SiteId};
use crate::index::IndexedChunk;
use crate::store::{Condition, Index, Item, ItemStore, Key, Query, StoreError, keys};

/// Most links kept per document (a link farm must not bloat the record).
pub const MAX_LINKS: usize = 500;

/// How long a document stays valid when its site has turned automatic re-training off (interval 0):
/// its due record then only lets the deadline job look, and the job leaves such sites alone.
pub const VALIDITY_DAYS: i64 = 30;

/// The days a document trained now stays valid: the site's re-train interval, or [`VALIDITY_DAYS`]
/// when the site re-trains never (0).
pub fn validity_days(retrain_interval_days: u32) -> i64 {
    match retrain_interval_days {
        0 => VALIDITY_DAYS,
        days => i64::from(days),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentStatus {
    Active,
    /// Gone (404/410) or no longer linked; kept as a tombstone so the removing job can count it.
    Removed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentRecord {
    /// The URL the page was fetched at.
    pub url: String,
    /// The canonical URL (the document's identity).
    pub canonical_url: String,
    pub title: String,
    pub content_hash: String,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// Increments every time the content changes.
    pub version: u32,
    #[serde(
        serialize_with = "time::serde::rfc3339::serialize",
        deserialize_with = "crate::store::stored::lenient_time"
    )]
    pub valid_until: OffsetDateTime,
    pub chunk_count: u32,
    /// Link distance from the start URL when last crawled (known pages are re-queued at it).
    #[serde(default)]
    pub depth: u32,
    /// Its in-scope links when last fetched: followed again when it answers 304 next time.
    #[serde(default)]
    pub links: Vec<String>,
    /// Tokens spent embedding this version (0 when every vector was reused).
    pub embedding_tokens: u64,
    /// The embedding model of its stored chunks (None: lexical only).
    pub embedding_model: Option<String>,
    pub status: DocumentStatus,
    pub seen_job: Option<JobId>,
    pub changed_job: Option<JobId>,
    pub removed_job: Option<JobId>,
    #[serde(
        serialize_with = "time::serde::rfc3339::serialize",
        deserialize_with = "crate::store::stored::lenient_time"
    )]
    pub updated_at: OffsetDateTime,
}

/// A stable, store-safe key for a canonical URL.
pub fn doc_id(canonical_url: &str) -> String {
    hex::encode(&Sha256::digest(canonical_url.as_bytes())[..20])
}

pub fn doc_key(site: &SiteId, canonical_url: &str) -> Key {
    keys::document(site, doc_id(canonical_url))
}

/// The stored item, with its place in the by-due index (the deadline job finds expired documents by day).
pub fn doc_item(site: &SiteId, doc: &DocumentRecord) -> Result<Item, StoreError> {
    let item = Item::from_record(doc_key(site, &doc.canonical_url), doc)?;
    Ok(match doc.status {
        DocumentStatus::Active => {
            let day = doc.valid_until.date();
            let (pk, sk) = keys::document_due(day, site, doc_id(&doc.canonical_url));
            item.with_index(Index::ByDue, pk, sk)
        }
        DocumentStatus::Removed => item,
    })
}

/// Every document record of a site (active and tombstones).
pub async fn load_all(
    store: &dyn ItemStore,
    site: &SiteId,
) -> Result<Vec<DocumentRecord>, StoreError> {
    let mut docs = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .query(
                Query::partition(keys::site_partition(site))
                    .prefix(keys::prefix::DOC)
                    .limit(500)
                    .after(cursor),
            )
            .await?;
        for item in &page.items {
            docs.push(item.to_record()?);
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(docs),
        }
    }
}

/// Writes a document record as it is (one job at a time holds the site, so the last write wins).
pub async fn save(
    store: &dyn ItemStore,
    site: &SiteId,
    doc: &DocumentRecord,
) -> Result<(), StoreError> {
    store.put(doc_item(site, doc)?, Condition::None).await
}

impl DocumentRecord {
    /// The record as `job` found it unchanged: seen now, valid for another `validity_days`.
    pub fn seen_by(mut self, job: &JobId, now: OffsetDateTime, validity_days: i64) -> Self {
        self.seen_job = Some(job.clone());
        self.valid_until = now + time::Duration::days(validity_days);
        self.updated_at = now;
        self
    }

    /// The record as `job` removed it (a tombstone the job counts), or `None` when it already was one.
    pub fn removed_by(mut self, job: &JobId, now: OffsetDateTime) -> Option<Self> {
        if self.status == DocumentStatus::Removed {
            return None;
        }
        self.status = DocumentStatus::Removed;
        self.removed_job = Some(job.clone());
        self.seen_job = Some(job.clone());
        self.updated_at = now;
        Some(self)
    }
}

/// The chunks of one document version, with vectors when the site embeds: stored as a blob keyed by
/// content hash and model, so an unchanged page never needs embedding again and a redelivered job
/// finds the work of its previous attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredChunks {
    pub chunks: Vec<IndexedChunk>,
    pub vectors: Option<Vec<Vec<f32>>>,
}

pub fn chunks_blob_key(
    site: &SiteId,
    canonical_url: &str,
    content_hash: &str,
    model: Option<&str>,
) -> String {
    let model = model.map_or_else(
        || "lexical".to_string(),
        |m| m.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_"),
    );
    format!(
        "sites/{site}/docs/{}/{content_hash}.{model}.chunks",
        doc_id(canonical_url)
    )
}

impl StoredChunks {
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        postcard::to_stdvec(self).map_err(|e| e.to_string())
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        postcard::from_bytes(bytes).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_safe() {
        let site = SiteId::parse("site_abc").unwrap();
        let a = doc_key(&site, "https://example.jp/会社概要?x=1");
        assert_eq!(a, doc_key(&site, "https://example.jp/会社概要?x=1"));
        assert_eq!(a.sk.len(), "DOC#".len() + 40);
        let blob = chunks_blob_key(
            &site,
            "https://example.jp/",
            "abcd",
            Some("text-embedding-3-small"),
        );
        assert!(
            blob.ends_with("/abcd.text-embedding-3-small.chunks"),
            "{blob}"
        );
        assert!(crate::blobs::check_key(&blob).is_ok());
    }

    fn record(url: &str) -> DocumentRecord {
        DocumentRecord {
            url: url.into(),
            canonical_url: url.into(),
            title: "Access".into(),
            content_hash: "abcd".into(),
            etag: None,
            last_modified: None,
            version: 1,
            valid_until: time::macros::datetime!(2026-05-01 00:00 UTC),
            chunk_count: 2,
            depth: 1,
            links: Vec::new(),
            embedding_tokens: 0,
            embedding_model: None,
            status: DocumentStatus::Active,
            seen_job: None,
            changed_job: None,
            removed_job: None,
            updated_at: time::macros::datetime!(2026-04-01 00:00 UTC),
        }
    }

    #[test]
    fn seen_and_removed_records_name_their_job() {
        let job = JobId::parse("job_2").unwrap();
        let now = time::macros::datetime!(2026-05-01 09:00 UTC);
        let seen = record("https://example.jp/").seen_by(&job, now, VALIDITY_DAYS);
        assert_eq!(seen.seen_job.as_ref(), Some(&job));
        assert_eq!(
            seen.valid_until,
            time::macros::datetime!(2026-05-31 09:00 UTC)
        );
        assert_eq!(seen.updated_at, now);
        let removed = seen.clone().removed_by(&job, now).unwrap();
        assert_eq!(removed.status, DocumentStatus::Removed);
        assert_eq!(removed.removed_job.as_ref(), Some(&job));
        // A tombstone is not removed twice (the job would count it twice).
        assert_eq!(removed.removed_by(&job, now), None);
    }

    #[tokio::test]
    async fn saved_records_load_back_and_only_active_ones_fall_due() {
        let clock = crate::clock::ManualClock::at(time::macros::datetime!(2026-05-01 09:00 UTC));
        let store = crate::store::EmbeddedStore::new(
            crate::embedded_db::EmbeddedDb::in_memory().unwrap(),
            std::sync::Arc::new(clock),
        )
        .unwrap();
        let site = SiteId::parse("site_abc").unwrap();
        let job = JobId::parse("job_1").unwrap();
        let now = time::macros::datetime!(2026-05-01 09:00 UTC);
        let active = record("https://example.jp/a").seen_by(&job, now, VALIDITY_DAYS);
        let gone = record("https://example.jp/b")
            .removed_by(&job, now)
            .unwrap();
        save(&store, &site, &active).await.unwrap();
        save(&store, &site, &gone).await.unwrap();
        let mut loaded = load_all(&store, &site).await.unwrap();
        loaded.sort_by(|a, b| a.url.cmp(&b.url));
        assert_eq!(loaded, [active.clone(), gone.clone()]);
        let due = store
            .query(Query::on(
                Index::ByDue,
                keys::document_due("2026-05-31", &site, "").0,
            ))
            .await
            .unwrap();
        assert_eq!(due.items.len(), 1);
        assert_eq!(due.items[0].key, doc_key(&site, &active.canonical_url));
    }
}
