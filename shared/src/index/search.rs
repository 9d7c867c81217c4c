//! Retrieval over a loaded index: BM25 over the lexical postings, cosine over the int8 vectors, the two
//! fused by reciprocal rank, at most a couple of chunks per page.

use std::collections::HashMap;

use super::{SiteIndex, lexical, vectors};

/// BM25 parameters (the usual defaults).
const K1: f32 = 1.2;
const B: f32 = 0.75;
/// Reciprocal-rank fusion: a chunk scores `LEXICAL_WEIGHT / (RRF_K + lexical rank)` plus
/// `DENSE_WEIGHT / (RRF_K + dense rank)` (ranks from 1; a ranking that misses it adds nothing). Fusing
/// ranks, not scores, needs no calibration between BM25 and cosine. `RRF_K` = 60 is the usual
/// constant: it damps the difference between the very first ranks, so a chunk both rankings place
/// fairly high beats one that only one ranking places first. The weights are equal: measured on the
/// answer-quality evaluation (BENCHMARKS.md) with multilingual-e5-small, equal weights lift Japanese
/// hit@3 from 0.941 (lexical) to 0.961 once passages are embedded with their title and headings; other
/// weightings were not measured (each hybrid run re-embeds the corpus on CPU).
pub const RRF_K: f32 = 60.0;
pub const LEXICAL_WEIGHT: f32 = 1.0;
pub const DENSE_WEIGHT: f32 = 1.0;
/// How deep each ranking goes before fusion.
const CANDIDATES: usize = 50;

/// An index ready to search: the postings reachable by term.
#[derive(Debug)]
pub struct LoadedIndex {
    pub index: SiteIndex,
    terms: HashMap<String, u32>,
    idf: Vec<f32>,
    /// Per chunk, BM25's length normalisation `K1 · (1 − B + B · len / avg)`, computed once.
    length_norm: Vec<f32>,
}

/// One result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub chunk: usize,
    /// The fused score (higher is better); comparable within one query only.
    pub score: f32,
    pub lexical_rank: Option<usize>,
    pub dense_rank: Option<usize>,
}

/// What to retrieve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchOptions {
    pub top_k: usize,
    /// At most this many chunks from one URL, so sources are varied.
    pub per_page: usize,
}

impl Default for SearchOptions {
    fn default() -> Self {
        Self {
            top_k: 5,
            per_page: 2,
        }
    }
}

impl LoadedIndex {
    pub fn new(index: SiteIndex) -> Self {
        let n = index.chunks.len() as f32;
        let mut terms = HashMap::with_capacity(index.lexical.postings.len());
        let mut idf = Vec::with_capacity(index.lexical.postings.len());
        for (i, (term, postings)) in index.lexical.postings.iter().enumerate() {
            terms.insert(term.clone(), i as u32);
            let df = postings.len() as f32;
            idf.push((1.0 + (n - df + 0.5) / (df + 0.5)).ln());
        }
        let lex = &index.lexical;
        let avg = if lex.average_length > 0.0 {
            lex.average_length
        } else {
            1.0
        };
        let length_norm = lex
            .chunk_lengths
            .iter()
            .map(|&len| K1 * (1.0 - B + B * len as f32 / avg))
            .collect();
        Self {
            index,
            terms,
            idf,
            length_norm,
        }
    }

    pub fn has_vectors(&self) -> bool {
        self.index.vectors.as_ref().is_some_and(|v| !v.is_empty())
    }

    /// BM25 ranking of chunks for a query: (chunk, score), best first, at most `limit`.
    pub fn lexical(&self, query: &str, limit: usize) -> Vec<(usize, f32)> {
        let lex = &self.index.lexical;
        let query_terms = lexical::query_terms(query);
        // Scores accumulate in an array indexed by chunk (a common term's postings cover most of the
        // index: a hash map per posting cost more than the arithmetic), `touched` lists the chunks
        // scored, in first-seen order.
        let mut scores = vec![0.0f32; self.length_norm.len()];
        let mut touched: Vec<u32> = Vec::new();
        for (term, weight) in &query_terms {
            let Some(&t) = self.terms.get(term) else {
                continue;
            };
            let idf = self.idf[t as usize] * weight;
            if idf <= 0.0 {
                continue; // adds nothing (and a zero score must keep meaning "not touched")
            }
            for &(chunk, tf) in &lex.postings[t as usize].1 {
                let tf = tf as f32;
                let score = idf * tf * (K1 + 1.0) / (tf + self.length_norm[chunk as usize]);
                let slot = &mut scores[chunk as usize];
                if *slot == 0.0 {
                    touched.push(chunk);
                }
                *slot += score;
            }
        }
        let mut best = TopK::new(limit);
        for chunk in touched {
            best.offer(chunk as usize, scores[chunk as usize]);
        }
        best.into_sorted()
    }

    /// Cosine ranking against a query vector: (chunk, similarity), best first, at most `limit`.
    pub fn dense(&self, query_vector: &[f32], limit: usize) -> Vec<(usize, f32)> {
        let Some(store) = &self.index.vectors else {
            return Vec::new();
        };
        if query_vector.len() != store.dims as usize {
            return Vec::new();
        }
        let (q, scale) = vectors::quantize(query_vector);
        let mut best = TopK::new(limit);
        store.scan(&q, scale, |i, similarity| best.offer(i, similarity));
        best.into_sorted()
    }

    /// Hybrid retrieval: BM25 and (when a query vector is given) cosine, fused by reciprocal rank.
    pub fn search(
        &self,
        query: &str,
        query_vector: Option<&[f32]>,
        options: SearchOptions,
    ) -> Vec<Hit> {
        let lexical = self.lexical(query, CANDIDATES);
        let dense = query_vector
            .map(|v| self.dense(v, CANDIDATES))
            .unwrap_or_default();
        let mut fused: HashMap<usize, Hit> = HashMap::new();
        for (rank, (chunk, _)) in lexical.iter().enumerate() {
            let hit = fused.entry(*chunk).or_insert(Hit {
                chunk: *chunk,
                score: 0.0,
                lexical_rank: None,
                dense_rank: None,
            });
            hit.score += LEXICAL_WEIGHT / (RRF_K + rank as f32 + 1.0);
            hit.lexical_rank = Some(rank);
        }
        for (rank, (chunk, _)) in dense.iter().enumerate() {
            let hit = fused.entry(*chunk).or_insert(Hit {
                chunk: *chunk,
                score: 0.0,
                lexical_rank: None,
                dense_rank: None,
            });
            hit.score += DENSE_WEIGHT / (RRF_K + rank as f32 + 1.0);
            hit.dense_rank = Some(rank);
        }
        let mut hits: Vec<Hit> = fused.into_values().collect();
        // Ties broken by chunk number so results are deterministic.
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.chunk.cmp(&b.chunk)));
        self.diversify(hits, options)
    }

    /// The first `top_k` of ranked hits, at most `per_page` from one URL.
    pub fn diversify(&self, hits: Vec<Hit>, options: SearchOptions) -> Vec<Hit> {
        let mut per_url: HashMap<&str, usize> = HashMap::new();
        hits.into_iter()
            .filter(|hit| {
                let count = per_url
                    .entry(self.index.chunks[hit.chunk].url.as_str())
                    .or_insert(0);
                *count += 1;
                *count <= options.per_page
            })
            .take(options.top_k)
            .collect()
    }
}

/// A (chunk, score) pair ordered worst first: lower score, then higher chunk number.
#[derive(Debug, Clone, Copy)]
struct Ranked(usize, f32);

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // "Greater" is worse, so a max-heap keeps the worst kept candidate on top.
        other.1.total_cmp(&self.1).then(self.0.cmp(&other.0))
    }
}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Ranked {}

/// The `limit` best (chunk, score) pairs of a stream, in O(limit) memory: best first, ties by chunk
/// number (what sorting every pair would give). Most candidates cost one comparison with the worst
/// one kept.
struct TopK {
    limit: usize,
    heap: std::collections::BinaryHeap<Ranked>,
}

impl TopK {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            heap: std::collections::BinaryHeap::with_capacity(limit.saturating_add(1).min(1024)),
        }
    }

    fn offer(&mut self, chunk: usize, score: f32) {
        let candidate = Ranked(chunk, score);
        if self.heap.len() < self.limit {
            self.heap.push(candidate);
        } else if let Some(mut worst) = self.heap.peek_mut()
            && candidate < *worst
        {
            *worst = candidate;
        }
    }

    fn into_sorted(self) -> Vec<(usize, f32)> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|Ranked(chunk, score)| (chunk, score))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::SiteId;
    use crate::index::{IndexBuilder, IndexedChunk};

    fn chunk(url: &str, title: &str, text: &str) -> IndexedChunk {
        IndexedChunk {
            url: url.into(),
            title: title.into(),
            heading_path: vec![],
            text: text.into(),
            content_hash: String::new(),
            token_count: 10,
        }
    }

    fn index(vectors: bool) -> LoadedIndex {
        let docs = [
            (
                "https://x/hours",
                "Opening hours",
                "We are open from 9am to 6pm on weekdays.",
            ),
            (
                "https://x/access",
                "Access",
                "Our shop is a five minute walk from Shibuya station.",
            ),
            (
                "https://x/ja/hours",
                "営業時間",
                "営業時間は平日の午前9時から午後6時までです。",
            ),
            (
                "https://x/ko/hours",
                "영업시간",
                "영업시간은 평일 오전 9시부터 오후 6시까지입니다.",
            ),
            (
                "https://x/menu",
                "Menu",
                "Coffee, tea and cakes. Our coffee beans are roasted in house.",
            ),
            (
                "https://x/menu",
                "Menu",
                "Coffee refills are free. Coffee coffee coffee.",
            ),
            (
                "https://x/menu",
                "Menu",
                "Seasonal coffee specials every month.",
            ),
        ];
        let mut b = IndexBuilder::new(vectors.then(|| ("m".to_string(), 4)));
        for (i, (url, title, text)) in docs.iter().enumerate() {
            let mut v = [0.0f32; 4];
            v[i % 4] = 1.0;
            b.add(chunk(url, title, text), vectors.then_some(&v[..]))
                .unwrap();
        }
        LoadedIndex::new(b.finish(&SiteId::parse("site_t").unwrap(), 1, String::new()))
    }

    #[test]
    fn english_japanese_and_korean_questions_find_their_page() {
        let idx = index(false);
        let first = |q: &str| {
            idx.index.chunks[idx.search(q, None, SearchOptions::default())[0].chunk]
                .url
                .clone()
        };
        assert_eq!(first("what are your opening hours?"), "https://x/hours");
        assert_eq!(
            first("how do I get there from Shibuya station"),
            "https://x/access"
        );
        assert_eq!(first("営業時間を教えてください"), "https://x/ja/hours");
        assert_eq!(first("영업시간이 어떻게 되나요?"), "https://x/ko/hours");
    }

    #[test]
    fn particles_and_endings_do_not_outrank_content_words() {
        let mut b = IndexBuilder::new(None);
        b.add(
            chunk(
                "https://x/hold",
                "パッケージの保留",
                "dpkg でパッケージを保留 (hold) します。",
            ),
            None,
        )
        .unwrap();
        b.add(
            chunk(
                "https://x/chatter",
                "よくある質問",
                "どうすればいいですか？そのようにするにはどうすればいいですかと聞かれます。",
            ),
            None,
        )
        .unwrap();
        let idx = LoadedIndex::new(b.finish(&SiteId::parse("site_t").unwrap(), 1, String::new()));
        let hits = idx.search(
            "パッケージを保留するにはどうすればいいですか",
            None,
            SearchOptions::default(),
        );
        assert_eq!(idx.index.chunks[hits[0].chunk].url, "https://x/hold");
    }

    #[test]
    fn at_most_two_chunks_per_page() {
        let idx = index(false);
        let hits = idx.search(
            "coffee",
            None,
            SearchOptions {
                top_k: 5,
                per_page: 2,
            },
        );
        let menu = hits
            .iter()
            .filter(|h| idx.index.chunks[h.chunk].url == "https://x/menu")
            .count();
        assert_eq!(menu, 2);
    }

    #[test]
    fn dense_results_fuse_with_lexical() {
        let idx = index(true);
        // A query vector pointing at chunk 1 (access) lifts it even for a lexically unrelated query.
        let hits = idx.search(
            "zzz unrelated",
            Some(&[0.0, 1.0, 0.0, 0.0]),
            SearchOptions::default(),
        );
        assert_eq!(idx.index.chunks[hits[0].chunk].url, "https://x/access");
        assert_eq!(hits[0].dense_rank, Some(0));
        assert!(
            idx.dense(&[1.0, 0.0], 3).is_empty(),
            "wrong dimensions give no dense results"
        );
    }

    /// BM25 as it was computed before scores moved into an array: a hash map per posting, sorted.
    fn lexical_reference(idx: &LoadedIndex, query: &str, limit: usize) -> Vec<(usize, f32)> {
        let lex = &idx.index.lexical;
        let avg = if lex.average_length > 0.0 {
            lex.average_length
        } else {
            1.0
        };
        let mut scores: HashMap<u32, f32> = HashMap::new();
        for (term, weight) in &lexical::query_terms(query) {
            let Some(&t) = idx.terms.get(term) else {
                continue;
            };
            let idf = idx.idf[t as usize] * weight;
            for &(chunk, tf) in &lex.postings[t as usize].1 {
                let len = lex.chunk_lengths[chunk as usize] as f32;
                let tf = tf as f32;
                *scores.entry(chunk).or_insert(0.0) +=
                    idf * tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * len / avg));
            }
        }
        let mut all: Vec<(usize, f32)> = scores.into_iter().map(|(c, s)| (c as usize, s)).collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        all.truncate(limit);
        all
    }

    #[test]
    fn lexical_scores_and_order_are_those_of_the_hash_map_computation() {
        let idx = index(false);
        for q in [
            "coffee",
            "what are your opening hours?",
            "Coffee beans roasted in house, refills",
            "営業時間を教えてください",
            "영업시간이 어떻게 되나요?",
            "the of and to",
            "nothing matches zzz",
        ] {
            for limit in [1, 3, 50] {
                assert_eq!(
                    idx.lexical(q, limit),
                    lexical_reference(&idx, q, limit),
                    "{q}"
                );
            }
        }
    }

    #[test]
    fn top_k_keeps_what_a_full_sort_would_in_the_same_order() {
        let mut seed = 11u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for limit in [0, 1, 5, 50, 500] {
            // Few distinct scores, so ties are common and their order (by chunk) is checked too.
            let scored: Vec<(usize, f32)> = (0..300).map(|i| (i, (next() % 23) as f32)).collect();
            let mut best = TopK::new(limit);
            for &(c, s) in &scored {
                best.offer(c, s);
            }
            let mut sorted = scored.clone();
            sorted.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            sorted.truncate(limit);
            assert_eq!(best.into_sorted(), sorted, "limit {limit}");
        }
    }

    #[test]
    fn dense_ranking_is_the_exact_cosine_order() {
        let mut b = IndexBuilder::new(Some(("m".to_string(), 48)));
        let mut seed = 5u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % 2001) as f32 / 1000.0 - 1.0
        };
        for i in 0..200 {
            let v: Vec<f32> = (0..48).map(|_| next()).collect();
            b.add(chunk(&format!("https://x/{i}"), "t", "text"), Some(&v))
                .unwrap();
        }
        let idx = LoadedIndex::new(b.finish(&SiteId::parse("site_d").unwrap(), 1, String::new()));
        let q: Vec<f32> = (0..48).map(|_| next()).collect();
        let (qq, qs) = vectors::quantize(&q);
        let store = idx.index.vectors.as_ref().unwrap();
        let mut all: Vec<(usize, f32)> = (0..200).map(|i| (i, store.cosine(i, &qq, qs))).collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        all.truncate(10);
        assert_eq!(idx.dense(&q, 10), all);
    }

    #[test]
    fn an_empty_query_or_index_finds_nothing() {
        let idx = index(false);
        assert!(idx.search("", None, SearchOptions::default()).is_empty());
        let empty = LoadedIndex::new(IndexBuilder::new(None).finish(
            &SiteId::parse("site_e").unwrap(),
            1,
            String::new(),
        ));
        assert!(
            empty
                .search("anything", None, SearchOptions::default())
                .is_empty()
        );
    }
}
