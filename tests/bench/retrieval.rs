//! Retrieval benchmark: our index (`LoadedIndex`: BM25 over postings, int8 cosine, reciprocal-rank
//! fusion) against a brute-force baseline in the same run, on synthetic indexes of 1k, 10k and 100k chunks.
//!
//!   cargo run -p kotoba-tests --example retrieval_bench [-- SIZES... [--queries N] [--budget SECS]]
//!   cargo run -p kotoba-tests --example retrieval_bench -- 1000 10000 100000   # ≈ 5 min unoptimised
//!
//! Everything runs on the main thread (no runtime, no worker threads), so each figure is one core's.
//! Dense retrieval alone (top 50 by cosine, what hybrid search asks for) is also compared with a NumPy
//! peer in the same run (`tests/bench/numpy_peer.py`: f32 matrix × query vector, argpartition, one BLAS
//! thread), installed from PyPI into the repo's .venv by `infra/dev/tool numpy`; `--no-numpy` skips it.
//! The baseline re-tokenises every chunk with `lexical::terms` for every query and computes BM25 from
//! scratch (document frequencies and average length included), and for the hybrid case also scores
//! every chunk by f32 cosine against the query vector, then fuses both rankings like ours does. Each
//! method runs the same queries in the same order; a method stops early (at least 3 queries) once it
//! has spent `--budget` seconds on one index size, and the table says how many queries it ran.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use shared::ids::SiteId;
use shared::index::search::{LoadedIndex, SearchOptions};
use shared::index::{IndexBuilder, IndexedChunk, SiteIndex, lexical};

const DIMS: usize = 256;
const K1: f32 = 1.2;
const B: f32 = 0.75;
const RRF_K: f32 = 60.0;
const CANDIDATES: usize = 50;

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Skewed towards small indexes, like word frequencies.
    fn zipfish(&mut self, n: usize) -> usize {
        let u = self.unit();
        ((u * u * u) * n as f32) as usize % n
    }
}

/// A vocabulary: English-like pseudo-words from syllables, and Japanese words from kana and kanji.
struct Vocab {
    english: Vec<String>,
    japanese: Vec<String>,
}

impl Vocab {
    fn new(rng: &mut Rng) -> Vocab {
        let onsets = [
            "b", "c", "d", "f", "g", "h", "l", "m", "n", "p", "r", "s", "t", "w", "st", "pr", "ch",
            "sh", "tr", "",
        ];
        let vowels = ["a", "e", "i", "o", "u", "ea", "ou", "ai"];
        let codas = ["", "n", "r", "s", "t", "ng", "ck", "ll", "nd", "rt"];
        let mut english: Vec<String> = [
            "the", "a", "of", "and", "to", "in", "is", "for", "our", "we", "you", "with", "on",
            "are", "from",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        while english.len() < 600 {
            let syllables = 1 + rng.below(3);
            let mut w = String::new();
            for _ in 0..syllables {
                w.push_str(onsets[rng.below(onsets.len())]);
                w.push_str(vowels[rng.below(vowels.len())]);
                w.push_str(codas[rng.below(codas.len())]);
            }
            if !english.contains(&w) {
                english.push(w);
            }
        }
        let chars: Vec<char> = "営業時間店舗予約配送料金返品交換会員登録注文支払方法住所電話番号駅徒歩分商品在庫季節限定新作珈琲紅茶菓子焼菓子東京京都大阪案内説明保証修理"
            .chars()
            .collect();
        let kana: Vec<char> = "のはがをにでともからまでですますコーヒーケーキカードポイント"
            .chars()
            .collect();
        let mut japanese = Vec::new();
        while japanese.len() < 400 {
            let mut w = String::new();
            for _ in 0..(2 + rng.below(2)) {
                w.push(chars[rng.below(chars.len())]);
            }
            if rng.below(3) == 0 {
                w.push(kana[rng.below(kana.len())]);
            }
            if !japanese.contains(&w) {
                japanese.push(w);
            }
        }
        Vocab { english, japanese }
    }

    fn text(&self, rng: &mut Rng, japanese: bool, words: usize) -> String {
        let mut out = String::new();
        for i in 0..words {
            if japanese {
                out.push_str(&self.japanese[rng.zipfish(self.japanese.len())]);
                if i % 12 == 11 {
                    out.push('。');
                }
            } else {
                if i > 0 {
                    out.push(if i % 14 == 0 { '.' } else { ' ' });
                    if i % 14 == 0 {
                        out.push(' ');
                    }
                }
                out.push_str(&self.english[rng.zipfish(self.english.len())]);
            }
        }
        out
    }
}

fn random_unit(rng: &mut Rng) -> Vec<f32> {
    let mut v: Vec<f32> = (0..DIMS).map(|_| rng.unit() * 2.0 - 1.0).collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

struct Corpus {
    chunks: Vec<IndexedChunk>,
    vectors: Vec<f32>,
    queries: Vec<(String, Vec<f32>)>,
}

fn corpus(n: usize, queries: usize) -> Corpus {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ n as u64);
    let vocab = Vocab::new(&mut Rng(42));
    let mut chunks = Vec::with_capacity(n);
    let mut vectors = Vec::with_capacity(n * DIMS);
    for i in 0..n {
        let japanese = i % 3 == 2;
        let words = 60 + rng.below(61);
        let page = i / 4;
        chunks.push(IndexedChunk {
            url: format!("https://bench.example/page/{page}"),
            title: vocab.text(&mut rng, japanese, 3),
            heading_path: vec![vocab.text(&mut rng, japanese, 2)],
            text: vocab.text(&mut rng, japanese, words),
            content_hash: format!("{i:064x}"),
            token_count: words as u32,
        });
        vectors.extend(random_unit(&mut rng));
    }
    let queries = (0..queries)
        .map(|q| {
            let words = 3 + rng.below(4);
            (
                vocab.text(&mut rng, q % 3 == 2, words),
                random_unit(&mut rng),
            )
        })
        .collect();
    Corpus {
        chunks,
        vectors,
        queries,
    }
}

/// The text the builder indexes for a chunk (title, headings, body).
fn searchable(c: &IndexedChunk) -> String {
    format!("{}\n{}\n{}", c.title, c.heading_path.join("\n"), c.text)
}

fn top(mut scored: Vec<(usize, f32)>, limit: usize) -> Vec<(usize, f32)> {
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored.truncate(limit);
    scored
}

/// Baseline BM25: every chunk re-tokenised, statistics computed from scratch.
fn brute_bm25(chunks: &[IndexedChunk], query: &str) -> Vec<(usize, f32)> {
    let mut q = lexical::terms(query);
    q.sort();
    q.dedup();
    let mut lengths = Vec::with_capacity(chunks.len());
    let mut tfs: Vec<Vec<u32>> = Vec::with_capacity(chunks.len());
    let mut df = vec![0u32; q.len()];
    for c in chunks {
        let terms = lexical::terms(&searchable(c));
        let mut tf = vec![0u32; q.len()];
        for t in &terms {
            if let Ok(i) = q.binary_search(t) {
                tf[i] += 1;
            }
        }
        for (i, &n) in tf.iter().enumerate() {
            if n > 0 {
                df[i] += 1;
            }
        }
        lengths.push(terms.len() as f32);
        tfs.push(tf);
    }
    let n = chunks.len() as f32;
    let avg = (lengths.iter().sum::<f32>() / n).max(1.0);
    let idf: Vec<f32> = df
        .iter()
        .map(|&d| (1.0 + (n - d as f32 + 0.5) / (d as f32 + 0.5)).ln())
        .collect();
    let scored = tfs
        .iter()
        .enumerate()
        .filter_map(|(c, tf)| {
            let mut score = 0.0;
            for (i, &t) in tf.iter().enumerate() {
                if t > 0 {
                    let t = t as f32;
                    score += idf[i] * t * (K1 + 1.0) / (t + K1 * (1.0 - B + B * lengths[c] / avg));
                }
            }
            (score > 0.0).then_some((c, score))
        })
        .collect();
    top(scored, CANDIDATES)
}

/// Baseline dense: f32 cosine (unit vectors, so a dot product) against every chunk.
fn brute_cosine(vectors: &[f32], query: &[f32]) -> Vec<(usize, f32)> {
    let scored = vectors
        .chunks_exact(DIMS)
        .enumerate()
        .map(|(i, v)| (i, v.iter().zip(query).map(|(a, b)| a * b).sum::<f32>()))
        .collect();
    top(scored, CANDIDATES)
}

/// Reciprocal-rank fusion and at most two chunks per page, five results (what `search` returns).
fn fuse(chunks: &[IndexedChunk], rankings: &[Vec<(usize, f32)>]) -> Vec<usize> {
    let mut fused: HashMap<usize, f32> = HashMap::new();
    for ranking in rankings {
        for (rank, (chunk, _)) in ranking.iter().enumerate() {
            *fused.entry(*chunk).or_insert(0.0) += 1.0 / (RRF_K + rank as f32 + 1.0);
        }
    }
    let ranked = top(fused.into_iter().collect(), usize::MAX);
    let mut per_url: HashMap<&str, usize> = HashMap::new();
    ranked
        .into_iter()
        .filter(|(c, _)| {
            let n = per_url.entry(chunks[*c].url.as_str()).or_insert(0);
            *n += 1;
            *n <= 2
        })
        .map(|(c, _)| c)
        .take(5)
        .collect()
}

struct Timing {
    samples: Vec<Duration>,
    /// On-CPU time of this thread per query (CLOCK_THREAD_CPUTIME_ID): wall time minus the time other
    /// processes had the core, which on a shared machine is noise.
    cpu: Vec<Duration>,
    results: Vec<Vec<usize>>,
}

/// Nanoseconds this thread has spent on a CPU. (Not /proc's schedstat: for a running thread it only
/// advances at scheduler ticks, 4 ms here; the clock brings the accounting up to date when read.)
fn thread_cpu_ns() -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0;
    ok.then(|| ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

fn quantile_ms(samples: &[Duration], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut s = samples.to_vec();
    s.sort_unstable();
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1].as_secs_f64() * 1e3
}

impl Timing {
    fn quantile(&self, q: f64) -> f64 {
        quantile_ms(&self.samples, q)
    }

    fn cpu_quantile(&self, q: f64) -> f64 {
        quantile_ms(&self.cpu, q)
    }
}

/// Runs `f` over the queries until done or over budget (at least 3 queries).
fn measure(
    queries: &[(String, Vec<f32>)],
    budget: Duration,
    mut f: impl FnMut(&str, &[f32]) -> Vec<usize>,
) -> Timing {
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut cpu = Vec::new();
    let mut results = Vec::new();
    for (text, vector) in queries {
        let on_cpu = thread_cpu_ns();
        let t = Instant::now();
        let r = f(text, vector);
        samples.push(t.elapsed());
        if let (Some(before), Some(after)) = (on_cpu, thread_cpu_ns()) {
            cpu.push(Duration::from_nanos(after.saturating_sub(before)));
        }
        results.push(std::hint::black_box(r));
        if samples.len() >= 3 && started.elapsed() > budget {
            break;
        }
    }
    Timing {
        samples,
        cpu,
        results,
    }
}

/// Share of the results where both methods found the same top result (a sanity check that the
/// baseline does the same work).
fn agreement(a: &Timing, b: &Timing) -> f64 {
    let n = a.results.len().min(b.results.len());
    let same = (0..n)
        .filter(|&i| a.results[i].first() == b.results[i].first())
        .count();
    same as f64 / n.max(1) as f64
}

/// The NumPy peer's figures for one corpus: per-query times and top rows.
struct NumpyRun {
    timing: Timing,
    version: String,
}

/// Runs `tests/bench/numpy_peer.py` over the corpus's vectors and queries (one BLAS thread).
fn numpy_peer(corpus: &Corpus, k: usize) -> Result<NumpyRun, String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let tool = std::process::Command::new(root.join("infra/dev/tool"))
        .arg("numpy")
        .output()
        .map_err(|e| format!("infra/dev/tool numpy: {e}"))?;
    if !tool.status.success() {
        return Err(format!(
            "infra/dev/tool numpy failed: {}",
            String::from_utf8_lossy(&tool.stderr)
        ));
    }
    let python = String::from_utf8_lossy(&tool.stdout).trim().to_string();
    let dir = std::env::temp_dir().join(format!("kotoba-numpy-peer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let prefix = dir.join("corpus");
    let write = |ext: &str, values: &mut dyn Iterator<Item = f32>| -> Result<(), String> {
        let file = std::fs::File::create(prefix.with_extension(ext)).map_err(|e| e.to_string())?;
        let mut out = std::io::BufWriter::new(file);
        for v in values {
            out.write_all(&v.to_le_bytes()).map_err(|e| e.to_string())?;
        }
        out.flush().map_err(|e| e.to_string())
    };
    write("vectors", &mut corpus.vectors.iter().copied())?;
    write(
        "queries",
        &mut corpus.queries.iter().flat_map(|(_, v)| v.iter().copied()),
    )?;
    let output = std::process::Command::new(python)
        .arg(root.join("tests/bench/numpy_peer.py"))
        .arg(&prefix)
        .arg(DIMS.to_string())
        .arg(k.to_string())
        .env("OPENBLAS_NUM_THREADS", "1")
        .env("OMP_NUM_THREADS", "1")
        .env("MKL_NUM_THREADS", "1")
        .output()
        .map_err(|e| format!("running the NumPy peer: {e}"));
    let _ = std::fs::remove_dir_all(&dir);
    let output = output?;
    if !output.status.success() {
        return Err(format!(
            "the NumPy peer failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&output.stdout).map_err(|e| format!("the peer's output: {e}"))?;
    let samples = v["times_ms"]
        .as_array()
        .ok_or("no times")?
        .iter()
        .map(|t| Duration::from_secs_f64(t.as_f64().unwrap_or(0.0) / 1e3))
        .collect();
    let results = v["top"]
        .as_array()
        .ok_or("no results")?
        .iter()
        .map(|r| {
            r.as_array()
                .map(|r| {
                    r.iter()
                        .filter_map(|c| c.as_u64())
                        .map(|c| c as usize)
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect();
    Ok(NumpyRun {
        timing: Timing {
            samples,
            cpu: Vec::new(),
            results,
        },
        version: v["numpy"].as_str().unwrap_or("?").to_string(),
    })
}

/// Mean share of the first `k` results two methods have in common (recall@k of `a` against `b`).
fn overlap_at(a: &Timing, b: &Timing, k: usize) -> f64 {
    let n = a.results.len().min(b.results.len());
    let mut sum = 0.0;
    for i in 0..n {
        let theirs: Vec<usize> = b.results[i].iter().take(k).copied().collect();
        let same = a.results[i]
            .iter()
            .take(k)
            .filter(|c| theirs.contains(c))
            .count();
        sum += same as f64 / theirs.len().max(1) as f64;
    }
    sum / n.max(1) as f64
}

fn main() {
    let mut sizes = Vec::new();
    let mut queries = 200usize;
    let mut budget = Duration::from_secs(5);
    let mut numpy = true;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--no-numpy" => numpy = false,
            "--queries" => queries = args.next().and_then(|v| v.parse().ok()).unwrap_or(200),
            "--budget" => {
                budget =
                    Duration::from_secs_f64(args.next().and_then(|v| v.parse().ok()).unwrap_or(5.0))
            }
            other => sizes.extend(other.parse::<usize>().ok()),
        }
    }
    if sizes.is_empty() {
        // 100k takes minutes in the dev profile (building it, and each brute-force query); ask for it.
        sizes = vec![1_000, 10_000];
    }
    println!(
        "queries per method: up to {queries} (budget {:.0} s per method and size, at least 3); single thread; {DIMS}-dim vectors; int8 dot kernel: {}",
        budget.as_secs_f64(),
        shared::index::vectors::dot_kernel_name()
    );
    let mut dense_rows = Vec::new();
    let site = SiteId::parse("site_bench").unwrap();
    let mut index_rows = Vec::new();
    let mut rows = Vec::new();
    for &n in &sizes {
        let corpus = corpus(n, queries);
        let t = Instant::now();
        let mut lexical_builder = IndexBuilder::new(None);
        let mut hybrid_builder = IndexBuilder::new(Some(("bench".into(), DIMS)));
        for (i, c) in corpus.chunks.iter().enumerate() {
            lexical_builder.add(c.clone(), None).unwrap();
            hybrid_builder
                .add(c.clone(), Some(&corpus.vectors[i * DIMS..(i + 1) * DIMS]))
                .unwrap();
        }
        let build = t.elapsed();
        let mut loaded = Vec::new();
        for (kind, builder) in [("lexical", lexical_builder), ("hybrid", hybrid_builder)] {
            let built = builder.finish(&site, 1, "2026-11-21T00:00:00Z".into());
            let bytes = built.encode().unwrap();
            // The same index in the format before this one, loaded in the same run (before/after):
            // five loads of each, alternating, median wall and on-CPU time.
            let old_bytes = built.encode_format_1().unwrap();
            drop(built);
            let load = |bytes: &[u8]| {
                let (cpu, t) = (thread_cpu_ns(), Instant::now());
                let index = LoadedIndex::new(SiteIndex::decode(bytes).unwrap());
                let wall = t.elapsed();
                let cpu = match (cpu, thread_cpu_ns()) {
                    (Some(a), Some(b)) => Duration::from_nanos(b.saturating_sub(a)),
                    _ => Duration::ZERO,
                };
                (index, wall, cpu)
            };
            let (mut old_wall, mut old_cpu, mut new_wall, mut new_cpu) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let mut kept = None;
            for _ in 0..5 {
                let (index, wall, cpu) = load(&old_bytes);
                drop(index);
                old_wall.push(wall);
                old_cpu.push(cpu);
                let (index, wall, cpu) = load(&bytes);
                new_wall.push(wall);
                new_cpu.push(cpu);
                kept = Some(index);
            }
            drop(old_bytes);
            let index = kept.unwrap();
            index_rows.push(format!(
                "| {n} | {kind} | {:.1} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2}× |",
                bytes.len() as f64 / 1e6,
                quantile_ms(&old_wall, 0.5),
                quantile_ms(&old_cpu, 0.5),
                quantile_ms(&new_wall, 0.5),
                quantile_ms(&new_cpu, 0.5),
                quantile_ms(&old_cpu, 0.5) / quantile_ms(&new_cpu, 0.5),
            ));
            loaded.push(index);
        }
        let (lex_index, hyb_index) = (&loaded[0], &loaded[1]);
        eprintln!(
            "{n} chunks built (both indexes) in {:.1} s",
            build.as_secs_f64()
        );
        let options = SearchOptions::default();
        let ours_lex = measure(&corpus.queries, budget, |q, _| {
            lex_index
                .search(q, None, options)
                .iter()
                .map(|h| h.chunk)
                .collect()
        });
        let base_lex = measure(&corpus.queries, budget, |q, _| {
            fuse(&corpus.chunks, &[brute_bm25(&corpus.chunks, q)])
        });
        let ours_hyb = measure(&corpus.queries, budget, |q, v| {
            hyb_index
                .search(q, Some(v), options)
                .iter()
                .map(|h| h.chunk)
                .collect()
        });
        let ours_dense = measure(&corpus.queries, budget, |_, v| {
            hyb_index
                .dense(v, CANDIDATES)
                .iter()
                .map(|(c, _)| *c)
                .collect()
        });
        let peer = if numpy {
            numpy_peer(&corpus, CANDIDATES)
        } else {
            Err("skipped (--no-numpy)".into())
        };
        match &peer {
            Ok(peer) => dense_rows.push(format!(
                "| {n} | {:.3} | {:.3} | {:.3} | {} | {:.3} | {:.3} | {} | {:.2}× | {:.3} | NumPy {} |",
                ours_dense.quantile(0.5),
                ours_dense.quantile(0.99),
                ours_dense.cpu_quantile(0.99),
                ours_dense.samples.len(),
                peer.timing.quantile(0.5),
                peer.timing.quantile(0.99),
                peer.timing.samples.len(),
                peer.timing.quantile(0.5) / ours_dense.quantile(0.5),
                overlap_at(&ours_dense, &peer.timing, 10),
                peer.version,
            )),
            Err(e) => {
                eprintln!("NumPy peer: {e}");
                dense_rows.push(format!(
                    "| {n} | {:.3} | {:.3} | {:.3} | {} | – | – | – | – | – | {e} |",
                    ours_dense.quantile(0.5),
                    ours_dense.quantile(0.99),
                    ours_dense.cpu_quantile(0.99),
                    ours_dense.samples.len(),
                ));
            }
        }
        let base_hyb = measure(&corpus.queries, budget, |q, v| {
            let lexical = brute_bm25(&corpus.chunks, q);
            let dense = brute_cosine(&corpus.vectors, v);
            fuse(&corpus.chunks, &[lexical, dense])
        });
        eprintln!(
            "{n}: same top result lexical {:.0}%, hybrid {:.0}% (hybrid differs by int8 rounding)",
            agreement(&ours_lex, &base_lex) * 100.0,
            agreement(&ours_hyb, &base_hyb) * 100.0
        );
        for (kind, ours, base) in [
            ("lexical", &ours_lex, &base_lex),
            ("hybrid", &ours_hyb, &base_hyb),
        ] {
            rows.push(format!(
                "| {n} | {kind} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {:.3} | {:.3} | {} | {:.0}× |",
                ours.quantile(0.5),
                ours.quantile(0.99),
                ours.cpu_quantile(0.5),
                ours.cpu_quantile(0.99),
                ours.samples.len(),
                base.quantile(0.5),
                base.quantile(0.99),
                base.samples.len(),
                base.quantile(0.5) / ours.quantile(0.5)
            ));
        }
    }
    println!();
    println!(
        "| chunks | index | encoded size (MB) | load, format 1: wall (ms) | on-CPU (ms) | load, format {}: wall (ms) | on-CPU (ms) | on-CPU speed-up |",
        shared::index::FORMAT
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in index_rows {
        println!("{r}");
    }
    println!();
    println!(
        "| chunks | query | ours p50 (ms) | ours p99 (ms) | ours on-CPU p50 (ms) | ours on-CPU p99 (ms) | ours queries | brute force p50 (ms) | brute force p99 (ms) | brute force queries | p50 speed-up |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    println!();
    println!(
        "| chunks | dense top {CANDIDATES}: ours p50 (ms) | ours p99 (ms) | ours on-CPU p99 (ms) | queries | NumPy p50 (ms) | NumPy p99 (ms) | queries | NumPy p50 / ours p50 | top-10 overlap with NumPy (int8 vs f32) | peer |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for r in dense_rows {
        println!("{r}");
    }
}
