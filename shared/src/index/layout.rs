//! The index blob's layout since format 2: a small header, then length-prefixed little-endian arrays
//! (columns), so loading is bounds-checked slicing and bulk copies — one UTF-8 check per string arena,
//! no per-value parsing. Format 1 (one postcard document) decoded every string, varint and vector
//! component one by one: ~0.4 s for 100k chunks in an optimised build, most of a cold start.
//!
//! ```text
//! "KTIX" | format: u32 = 2 | header length: u32 | header (postcard)
//! then, each as u64 byte length + bytes:
//!   strings          UTF-8: per chunk its url, title, text, content hash, then its headings
//!   string_ends      u32 per string: end offset in `strings`
//!   heading_counts   u32 per chunk
//!   token_counts     u32 per chunk
//!   chunk_lengths    u32 per chunk (BM25F lengths)
//!   scales           f32 per chunk (empty without vectors)
//!   vectors          i8, chunks × dims (empty without vectors)
//!   terms            UTF-8, sorted terms back to back
//!   term_ends        u32 per term: end offset in `terms`
//!   posting_ends     u32 per term: end index in the two posting columns
//!   posting_chunks   u32 per posting
//!   posting_tfs      u32 per posting
//! ```

use serde::{Deserialize, Serialize};

use super::{IndexError, IndexedChunk, LexicalIndex, QuantizedVectors, SiteIndex};

/// The fields that are not columns.
#[derive(Serialize, Deserialize)]
struct Header {
    site_id: String,
    version: u64,
    built_at: String,
    embedding_model: Option<String>,
    chunks: u32,
    /// Vector dimensions; `None` for a lexical-only index.
    dims: Option<u32>,
    average_length: f32,
    terms: u32,
}

fn corrupt(what: impl Into<String>) -> IndexError {
    IndexError::Corrupt(what.into())
}

fn count(n: usize, what: &str) -> Result<u32, IndexError> {
    u32::try_from(n).map_err(|_| IndexError::Invalid(format!("too many {what} for one index")))
}

/// Appends one column: its byte length, then its bytes.
fn section(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn u32_column(values: impl Iterator<Item = u32>) -> Vec<u8> {
    values.flat_map(u32::to_le_bytes).collect()
}

/// A string arena and the end offset of each string in it.
#[derive(Default)]
struct Arena {
    bytes: Vec<u8>,
    ends: Vec<u32>,
}

impl Arena {
    fn push(&mut self, s: &str) -> Result<(), IndexError> {
        self.bytes.extend_from_slice(s.as_bytes());
        self.ends.push(count(self.bytes.len(), "bytes of text")?);
        Ok(())
    }
}

/// The body after magic and format.
pub(super) fn encode(index: &SiteIndex, out: &mut Vec<u8>) -> Result<(), IndexError> {
    let header = Header {
        site_id: index.site_id.clone(),
        version: index.version,
        built_at: index.built_at.clone(),
        embedding_model: index.embedding_model.clone(),
        chunks: count(index.chunks.len(), "chunks")?,
        dims: index.vectors.as_ref().map(|v| v.dims),
        average_length: index.lexical.average_length,
        terms: count(index.lexical.postings.len(), "terms")?,
    };
    let header =
        postcard::to_stdvec(&header).map_err(|e| corrupt(format!("encoding the header: {e}")))?;
    out.extend_from_slice(&count(header.len(), "header bytes")?.to_le_bytes());
    out.extend_from_slice(&header);

    let mut strings = Arena::default();
    for c in &index.chunks {
        for s in [&c.url, &c.title, &c.text, &c.content_hash] {
            strings.push(s)?;
        }
        for h in &c.heading_path {
            strings.push(h)?;
        }
    }
    section(out, &strings.bytes);
    section(out, &u32_column(strings.ends.into_iter()));
    let headings = index
        .chunks
        .iter()
        .map(|c| count(c.heading_path.len(), "headings"))
        .collect::<Result<Vec<u32>, _>>()?;
    section(out, &u32_column(headings.into_iter()));
    section(out, &u32_column(index.chunks.iter().map(|c| c.token_count)));
    section(
        out,
        &u32_column(index.lexical.chunk_lengths.iter().copied()),
    );
    match &index.vectors {
        Some(v) => {
            let scales: Vec<u8> = v.scales.iter().flat_map(|s| s.to_le_bytes()).collect();
            section(out, &scales);
            let data: Vec<u8> = v.data.iter().map(|&x| x as u8).collect();
            section(out, &data);
        }
        None => {
            section(out, &[]);
            section(out, &[]);
        }
    }
    let mut terms = Arena::default();
    let mut posting_ends = Vec::with_capacity(index.lexical.postings.len());
    let mut total = 0usize;
    for (term, postings) in &index.lexical.postings {
        terms.push(term)?;
        total += postings.len();
        posting_ends.push(count(total, "postings")?);
    }
    section(out, &terms.bytes);
    section(out, &u32_column(terms.ends.into_iter()));
    section(out, &u32_column(posting_ends.into_iter()));
    let all = || index.lexical.postings.iter().flat_map(|(_, p)| p.iter());
    section(out, &u32_column(all().map(|&(chunk, _)| chunk)));
    section(out, &u32_column(all().map(|&(_, tf)| tf)));
    Ok(())
}

/// Reads columns off the body, every length checked against what is left.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], IndexError> {
        if n > self.bytes.len() {
            return Err(corrupt(format!("{what} runs past the end of the blob")));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn section(&mut self, what: &str) -> Result<&'a [u8], IndexError> {
        let len = self.take(8, what)?;
        let len = u64::from_le_bytes(len.try_into().expect("8 bytes"));
        let len = usize::try_from(len).map_err(|_| corrupt(format!("{what} is too long")))?;
        self.take(len, what)
    }

    fn u32s(&mut self, what: &str, expected: Option<usize>) -> Result<Vec<u32>, IndexError> {
        let bytes = self.section(what)?;
        if bytes.len() % 4 != 0 {
            return Err(corrupt(format!("{what} is not a whole number of u32s")));
        }
        let values: Vec<u32> = bytes
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        if let Some(n) = expected
            && values.len() != n
        {
            return Err(corrupt(format!(
                "{what}: {} values, expected {n}",
                values.len()
            )));
        }
        Ok(values)
    }

    fn text(&mut self, what: &str) -> Result<&'a str, IndexError> {
        std::str::from_utf8(self.section(what)?)
            .map_err(|_| corrupt(format!("{what} is not UTF-8")))
    }
}

/// The strings of an arena in order, each checked to lie in it on character boundaries.
struct Strings<'a> {
    arena: &'a str,
    ends: std::slice::Iter<'a, u32>,
    start: usize,
}

impl<'a> Strings<'a> {
    fn next(&mut self, what: &str) -> Result<&'a str, IndexError> {
        let end = *self
            .ends
            .next()
            .ok_or_else(|| corrupt(format!("fewer strings than {what} need")))?
            as usize;
        let s = self
            .arena
            .get(self.start..end)
            .ok_or_else(|| corrupt(format!("a string offset of {what} is out of place")))?;
        self.start = end;
        Ok(s)
    }
}

/// The body after magic and format.
pub(super) fn decode(body: &[u8]) -> Result<SiteIndex, IndexError> {
    let mut r = Reader { bytes: body };
    let header_len = r.take(4, "the header length")?;
    let header_len = u32::from_le_bytes(header_len.try_into().expect("4 bytes")) as usize;
    let header: Header = postcard::from_bytes(r.take(header_len, "the header")?)
        .map_err(|e| corrupt(format!("the header: {e}")))?;
    let n = header.chunks as usize;

    let arena = r.text("the chunk strings")?;
    let ends = r.u32s("the string offsets", None)?;
    let heading_counts = r.u32s("the heading counts", Some(n))?;
    let token_counts = r.u32s("the token counts", Some(n))?;
    let chunk_lengths = r.u32s("the chunk lengths", Some(n))?;
    let mut strings = Strings {
        arena,
        ends: ends.iter(),
        start: 0,
    };
    let mut chunks = Vec::with_capacity(n);
    for (i, &headings) in heading_counts.iter().enumerate() {
        let (url, title, text, content_hash) = (
            strings.next("the chunks")?,
            strings.next("the chunks")?,
            strings.next("the chunks")?,
            strings.next("the chunks")?,
        );
        let heading_path = (0..headings)
            .map(|_| strings.next("the headings").map(str::to_string))
            .collect::<Result<Vec<_>, _>>()?;
        chunks.push(IndexedChunk {
            url: url.to_string(),
            title: title.to_string(),
            heading_path,
            text: text.to_string(),
            content_hash: content_hash.to_string(),
            token_count: token_counts[i],
        });
    }
    if strings.ends.next().is_some() {
        return Err(corrupt("more strings than chunks"));
    }

    let scales = r.section("the vector scales")?;
    let data = r.section("the vectors")?;
    let vectors = match header.dims {
        Some(dims) => {
            if scales.len() != n * 4 || Some(data.len()) != n.checked_mul(dims as usize) {
                return Err(corrupt("vectors do not match chunks"));
            }
            Some(QuantizedVectors {
                dims,
                data: data.iter().map(|&b| b as i8).collect(),
                scales: scales
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
                    .collect(),
            })
        }
        None if scales.is_empty() && data.is_empty() => None,
        None => return Err(corrupt("vectors in a lexical-only index")),
    };

    let t = header.terms as usize;
    let term_arena = r.text("the terms")?;
    let term_ends = r.u32s("the term offsets", Some(t))?;
    let posting_ends = r.u32s("the posting offsets", Some(t))?;
    let posting_chunks = r.u32s("the posting chunks", None)?;
    let posting_tfs = r.u32s("the posting frequencies", Some(posting_chunks.len()))?;
    if !r.bytes.is_empty() {
        return Err(corrupt("bytes after the last column"));
    }
    let mut terms = Strings {
        arena: term_arena,
        ends: term_ends.iter(),
        start: 0,
    };
    let mut postings = Vec::with_capacity(t);
    let mut start = 0usize;
    for &end in &posting_ends {
        let end = end as usize;
        if end < start || end > posting_chunks.len() {
            return Err(corrupt("a posting offset is out of place"));
        }
        let term = terms.next("the terms")?.to_string();
        let list = posting_chunks[start..end]
            .iter()
            .copied()
            .zip(posting_tfs[start..end].iter().copied())
            .collect();
        postings.push((term, list));
        start = end;
    }
    if start != posting_chunks.len() {
        return Err(corrupt("postings that no term owns"));
    }

    Ok(SiteIndex {
        site_id: header.site_id,
        version: header.version,
        built_at: header.built_at,
        embedding_model: header.embedding_model,
        chunks,
        vectors,
        lexical: LexicalIndex {
            chunk_lengths,
            average_length: header.average_length,
            postings,
        },
    })
}
