//! A site's search index: one immutable, versioned blob holding every chunk (text, URL, title, heading
//! path), its vector (int8) when the site has an embedding model, and BM25 postings.
//!
//! Training writes a new version completely, then switches the site's `index_version` in one atomic
//! store update; chat loads the version the site points at and keeps it in memory until it changes.

mod layout;
pub mod lexical;
pub mod search;
pub mod vectors;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::ids::SiteId;
pub use vectors::QuantizedVectors;

/// BM25F field weights (see [`IndexBuilder::add`]): an occurrence in the page title counts as
/// `TITLE_WEIGHT` occurrences in the text, one in a heading above the chunk as `HEADING_WEIGHT`.
/// Chosen on the answer-quality evaluation (BENCHMARKS.md): every chunk of a page repeats its title,
/// so a larger title weight mostly decides *which page*, the heading weight *which section*.
pub const TITLE_WEIGHT: u32 = 2;
pub const HEADING_WEIGHT: u32 = 2;
pub const BODY_WEIGHT: u32 = 1;

/// Bumped whenever the encoding changes. 2: columns that load without per-value decoding
/// (`layout`). Blobs of format 1 (one postcard document) still load, more slowly, until the site is
/// trained again; any other format is refused with an error that says to re-train.
pub const FORMAT: u32 = 2;
/// The first format: the whole [`SiteIndex`] as one postcard document.
const FORMAT_POSTCARD: u32 = 1;
const MAGIC: &[u8; 4] = b"KTIX";

/// What is embedded for a chunk: its page title and heading path above its text. An FAQ's answer
/// rarely repeats its question, which is the heading; without it the answer's vector is far from the
/// question's. The chunk's `content_hash` is the hash of this text, so a vector is reused only for
/// the same title, headings and text.
pub fn passage_text(title: &str, heading_path: &[String], text: &str) -> String {
    let mut out = String::with_capacity(title.len() + text.len() + 64);
    out.push_str(title);
    out.push('\n');
    out.push_str(&heading_path.join(" > "));
    out.push_str("\n\n");
    out.push_str(text);
    out
}

/// One retrievable passage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexedChunk {
    /// The document's canonical URL (what sources link to).
    pub url: String,
    pub title: String,
    pub heading_path: Vec<String>,
    pub text: String,
    /// SHA-256 of its [`passage_text`] (whitespace-normalised): the key under which its vector is
    /// reused by the next training.
    pub content_hash: String,
    pub token_count: u32,
}

/// BM25 statistics: postings per term (chunk number, term frequency) and chunk lengths in terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct LexicalIndex {
    pub chunk_lengths: Vec<u32>,
    pub average_length: f32,
    /// Sorted by term.
    pub postings: Vec<(String, Vec<(u32, u32)>)>,
}

/// A whole index version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteIndex {
    pub site_id: String,
    pub version: u64,
    pub built_at: String,
    /// The model the vectors came from (queries must be embedded by the same one).
    pub embedding_model: Option<String>,
    pub chunks: Vec<IndexedChunk>,
    /// Parallel to `chunks` when present.
    pub vectors: Option<QuantizedVectors>,
    pub lexical: LexicalIndex,
}

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("not an index blob (bad magic)")]
    NotAnIndex,
    #[error(
        "index format {0} is not supported (this version reads {FORMAT_POSTCARD} and {FORMAT}); re-train the site"
    )]
    Format(u32),
    #[error("index blob is corrupt: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Invalid(String),
}

/// Where a version lives in blobs. Zero-padded so listings sort by version.
pub fn blob_key(site: &SiteId, version: u64) -> String {
    format!("sites/{site}/index/{version:020}.ktix")
}

/// The folder of a site's index versions (for pruning old ones).
pub fn blob_prefix(site: &SiteId) -> String {
    format!("sites/{site}/index/")
}

impl SiteIndex {
    /// The blob, in the current [`FORMAT`].
    pub fn encode(&self) -> Result<Vec<u8>, IndexError> {
        let mut out = Vec::with_capacity(64 + self.chunks.len() * 512);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT.to_le_bytes());
        layout::encode(self, &mut out)?;
        Ok(out)
    }

    /// A blob of format 1 (kept for the tests of the upgrade path).
    pub fn encode_format_1(&self) -> Result<Vec<u8>, IndexError> {
        let mut out = Vec::with_capacity(64 + self.chunks.len() * 512);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_POSTCARD.to_le_bytes());
        let body =
            postcard::to_stdvec(self).map_err(|e| IndexError::Corrupt(format!("encoding: {e}")))?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<SiteIndex, IndexError> {
        if bytes.len() < 8 || &bytes[..4] != MAGIC {
            return Err(IndexError::NotAnIndex);
        }
        let format = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        let index: SiteIndex = match format {
            FORMAT => layout::decode(&bytes[8..])?,
            FORMAT_POSTCARD => {
                postcard::from_bytes(&bytes[8..]).map_err(|e| IndexError::Corrupt(e.to_string()))?
            }
            other => return Err(IndexError::Format(other)),
        };
        index.check()?;
        Ok(index)
    }

    /// The format a blob was written in (after checking its magic).
    pub fn format_of(bytes: &[u8]) -> Result<u32, IndexError> {
        if bytes.len() < 8 || &bytes[..4] != MAGIC {
            return Err(IndexError::NotAnIndex);
        }
        Ok(u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]))
    }

    /// Internal consistency, so a reader can index without bounds surprises.
    fn check(&self) -> Result<(), IndexError> {
        let n = self.chunks.len();
        if self.lexical.chunk_lengths.len() != n {
            return Err(IndexError::Corrupt(
                "chunk lengths do not match chunks".into(),
            ));
        }
        if let Some(v) = &self.vectors
            && (v.len() != n || v.data.len() != n * v.dims as usize)
        {
            return Err(IndexError::Corrupt("vectors do not match chunks".into()));
        }
        if self
            .lexical
            .postings
            .iter()
            .any(|(_, p)| p.iter().any(|&(c, _)| c as usize >= n))
        {
            return Err(IndexError::Corrupt(
                "a posting points past the last chunk".into(),
            ));
        }
        Ok(())
    }
}

/// Builds an index chunk by chunk.
#[derive(Debug)]
pub struct IndexBuilder {
    embedding_model: Option<String>,
    chunks: Vec<IndexedChunk>,
    vectors: Option<QuantizedVectors>,
    postings: HashMap<String, Vec<(u32, u32)>>,
    lengths: Vec<u32>,
    /// The last chunk's title and heading path with their analysed terms (see [`IndexBuilder::add`]).
    title_terms: (String, (HashMap<String, u32>, u32)),
    heading_terms: (String, (HashMap<String, u32>, u32)),
}

impl IndexBuilder {
    /// `embedding`: the model and its dimensions when chunks come with vectors; `None` for lexical only.
    pub fn new(embedding: Option<(String, usize)>) -> Self {
        let (embedding_model, vectors) = match embedding {
            Some((model, dims)) => (Some(model), Some(QuantizedVectors::new(dims))),
            None => (None, None),
        };
        Self {
            embedding_model,
            chunks: Vec::new(),
            vectors,
            postings: HashMap::new(),
            lengths: Vec::new(),
            title_terms: Default::default(),
            heading_terms: Default::default(),
        }
    }

    /// Adds a chunk, with its vector when the index has vectors (and only then).
    pub fn add(&mut self, chunk: IndexedChunk, vector: Option<&[f32]>) -> Result<(), IndexError> {
        match (&mut self.vectors, vector) {
            (Some(store), Some(v)) => store.push(v).map_err(IndexError::Invalid)?,
            (None, None) => {}
            (Some(_), None) => {
                return Err(IndexError::Invalid(
                    "this index needs a vector for every chunk".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(IndexError::Invalid("this index is lexical only".into()));
            }
        }
        let id = self.chunks.len() as u32;
        // BM25F with the field weights folded into the term frequency at build time: a question
        // often names the page or the section rather than repeating the passage's words.
        let (mut tf, body_len) = lexical::term_frequencies(&chunk.text);
        for n in tf.values_mut() {
            *n *= BODY_WEIGHT;
        }
        // A page's chunks share its title and often a heading path: analyse each once.
        if self.title_terms.0 != chunk.title {
            self.title_terms = (chunk.title.clone(), lexical::term_frequencies(&chunk.title));
        }
        let headings = chunk.heading_path.join("\n");
        if self.heading_terms.0 != headings {
            let terms = lexical::term_frequencies(&headings);
            self.heading_terms = (headings, terms);
        }
        let (title_tf, title_len) = &self.title_terms.1;
        for (term, n) in title_tf {
            *tf.entry(term.clone()).or_insert(0) += n * TITLE_WEIGHT;
        }
        let (heading_tf, heading_len) = &self.heading_terms.1;
        for (term, n) in heading_tf {
            *tf.entry(term.clone()).or_insert(0) += n * HEADING_WEIGHT;
        }
        let (title_len, heading_len) = (*title_len, *heading_len);
        let len = body_len * BODY_WEIGHT + title_len * TITLE_WEIGHT + heading_len * HEADING_WEIGHT;
        for (term, n) in tf {
            self.postings.entry(term).or_default().push((id, n));
        }
        self.lengths.push(len);
        self.chunks.push(chunk);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    pub fn finish(self, site: &SiteId, version: u64, built_at: String) -> SiteIndex {
        let total: u64 = self.lengths.iter().map(|&l| l as u64).sum();
        let average_length = if self.lengths.is_empty() {
            0.0
        } else {
            total as f32 / self.lengths.len() as f32
        };
        let mut postings: Vec<(String, Vec<(u32, u32)>)> = self.postings.into_iter().collect();
        postings.sort_by(|a, b| a.0.cmp(&b.0));
        SiteIndex {
            site_id: site.to_string(),
            version,
            built_at,
            embedding_model: self.embedding_model,
            chunks: self.chunks,
            vectors: self.vectors,
            lexical: LexicalIndex {
                chunk_lengths: self.lengths,
                average_length,
                postings,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(url: &str, text: &str) -> IndexedChunk {
        IndexedChunk {
            url: url.into(),
            title: "Title".into(),
            heading_path: vec!["Section".into()],
            text: text.into(),
            content_hash: crate::index::tests::hash(text),
            token_count: 3,
        }
    }

    pub(crate) fn hash(text: &str) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(text.as_bytes()))
    }

    #[test]
    fn round_trips_and_checks_magic_and_format() {
        let site = SiteId::parse("site_abc").unwrap();
        let mut b = IndexBuilder::new(Some(("m".into(), 3)));
        b.add(
            chunk("https://a/1", "営業時間は9時から"),
            Some(&[1.0, 0.0, 0.0]),
        )
        .unwrap();
        b.add(
            chunk("https://a/2", "opening hours"),
            Some(&[0.0, 1.0, 0.0]),
        )
        .unwrap();
        assert!(
            b.add(chunk("https://a/3", "x"), None).is_err(),
            "a vector index needs vectors"
        );
        let index = b.finish(&site, 7, "2026-11-21T00:00:00Z".into());
        let bytes = index.encode().unwrap();
        let back = SiteIndex::decode(&bytes).unwrap();
        assert_eq!(back, index);
        assert_eq!(back.chunks.len(), 2);
        assert!(
            back.lexical
                .postings
                .iter()
                .any(|(t, p)| t == "時間" && p == &vec![(0, 1)])
        );
        assert!(matches!(
            SiteIndex::decode(b"nope nope"),
            Err(IndexError::NotAnIndex)
        ));
        let mut future = bytes.clone();
        future[4] = 99;
        assert!(matches!(
            SiteIndex::decode(&future),
            Err(IndexError::Format(99))
        ));
        assert!(
            SiteIndex::decode(&bytes[..bytes.len() / 2]).is_err(),
            "truncated blobs are refused"
        );
        assert_eq!(
            blob_key(&site, 7),
            "sites/site_abc/index/00000000000000000007.ktix"
        );
    }

    fn sample(vectors: bool) -> SiteIndex {
        let site = SiteId::parse("site_abc").unwrap();
        let mut b = IndexBuilder::new(vectors.then(|| ("m".to_string(), 5)));
        let texts = [
            ("https://a/1", "営業時間は9時から。土日も営業しています。"),
            ("https://a/2", "opening hours are nine to five"),
            ("https://a/3", ""),
            ("https://a/3", "영업시간은 평일 오전 9시부터"),
        ];
        for (i, (url, text)) in texts.iter().enumerate() {
            let mut c = chunk(url, text);
            c.heading_path = (0..i).map(|h| format!("見出し {h}")).collect();
            let v: Vec<f32> = (0..5).map(|d| (d * 7 + i * 3) as f32 - 9.0).collect();
            b.add(c, vectors.then_some(&v[..])).unwrap();
        }
        b.finish(&site, 3, "2026-12-01T00:00:00Z".into())
    }

    #[test]
    fn both_formats_round_trip_and_the_current_one_is_written() {
        for vectors in [true, false] {
            let index = sample(vectors);
            let current = index.encode().unwrap();
            assert_eq!(SiteIndex::format_of(&current).unwrap(), FORMAT);
            assert_eq!(SiteIndex::decode(&current).unwrap(), index);
            // An index trained before format 2 still loads (until the next training rewrites it).
            let old = index.encode_format_1().unwrap();
            assert_eq!(SiteIndex::format_of(&old).unwrap(), 1);
            assert_eq!(SiteIndex::decode(&old).unwrap(), index);
        }
        let mut unknown = sample(false).encode().unwrap();
        unknown[4..8].copy_from_slice(&3u32.to_le_bytes());
        let e = SiteIndex::decode(&unknown).unwrap_err();
        assert!(matches!(e, IndexError::Format(3)));
        assert!(e.to_string().contains("re-train the site"), "{e}");
    }

    #[test]
    fn every_truncation_and_many_corruptions_are_errors_not_panics() {
        let bytes = sample(true).encode().unwrap();
        for len in 0..bytes.len() {
            assert!(
                SiteIndex::decode(&bytes[..len]).is_err(),
                "truncated at {len}"
            );
        }
        let mut extended = bytes.clone();
        extended.push(0);
        assert!(SiteIndex::decode(&extended).is_err(), "trailing bytes");
        // Every single byte flipped: either an error or a consistent index, never a panic.
        for i in 8..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0xA5;
            if let Ok(index) = SiteIndex::decode(&flipped) {
                assert_eq!(index.chunks.len(), index.lexical.chunk_lengths.len());
            }
        }
    }
}
