//! Training benchmark: a generated site of PAGES pages (default 1,000) on the local test site server,
//! trained through the local runner twice: lexical only (no embedding model) and with the local
//! embeddings peer.
//!
//!   cargo run -p kotoba-tests --example training_bench [-- PAGES]
//!
//! The site: `/` links to every page and `robots.txt` names a sitemap listing them all; each page has a
//! title, two headings and three paragraphs of text of its own. Each run gets a fresh runner, a `pro`
//! tenant (1,000 pages per training) and a new site, then `POST /api/train/url` with `max_pages` =
//! PAGES and `max_depth` 3, and polls the job every 100 ms. Pages/second is the job's `pages_changed`
//! over the wall time from the POST to the poll that saw it succeed. Peak memory is the process's VmHWM
//! after the job, with the high-water mark reset (`5` written to /proc/self/clear_refs) just before the
//! POST: it covers the whole process (runner, worker, test site and peer), not training alone.
//! Only loopback addresses are used.

use std::time::{Duration, Instant};

use kotoba_tests::peer::{ChatMode, ModelPeer};
use kotoba_tests::site::{Page, TestSite};
use kotoba_tests::{Backend, TestApp};
use reqwest::StatusCode;
use serde_json::{Value, json};

const WORDS: [&str; 48] = [
    "coffee", "roast", "bean", "origin", "kyoto", "station", "delivery", "order", "refund",
    "member", "card", "point", "season", "limited", "latte", "espresso", "filter", "grinder",
    "kettle", "cup", "gift", "box", "shipping", "address", "payment", "invoice", "warranty",
    "repair", "workshop", "tasting", "event", "booking", "table", "terrace", "parking", "bicycle",
    "allergy", "milk", "oat", "sugar", "cake", "cookie", "tea", "matcha", "hojicha", "opening",
    "closing", "holiday",
];

/// Text unique to page `i`: a page-specific code word and a deterministic word sequence.
fn paragraph(i: usize, p: usize, words: usize) -> String {
    let mut state = (i as u64 + 1) * 0x9E37_79B9 + p as u64 * 7919;
    let mut out = format!("Item{i}x{p} ");
    for w in 0..words {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.push_str(WORDS[(state % WORDS.len() as u64) as usize]);
        out.push(if w % 15 == 14 { '.' } else { ' ' });
    }
    out
}

fn generate(site: &TestSite, pages: usize) {
    let base = &site.base_url;
    let paths: Vec<String> = (1..pages).map(|i| format!("/p/{i}")).collect();
    site.set(
        "/robots.txt",
        Page::bytes(
            "text/plain",
            format!("User-agent: *\nAllow: /\n\nSitemap: {base}/sitemap.xml\n").into_bytes(),
        ),
    );
    let mut sitemap = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">"#,
    );
    sitemap.push_str(&format!("<url><loc>{base}/</loc></url>"));
    for p in &paths {
        sitemap.push_str(&format!("<url><loc>{base}{p}</loc></url>"));
    }
    sitemap.push_str("</urlset>");
    site.set(
        "/sitemap.xml",
        Page::bytes("application/xml", sitemap.into_bytes()),
    );
    let links: String = paths
        .iter()
        .map(|p| format!(r#"<li><a href="{p}">Page {p}</a></li>"#))
        .collect();
    site.set("/", Page::html(&format!(
        "<html><head><title>Bench shop</title></head><body><main><h1>Bench shop</h1><p>Every page of the shop.</p><ul>{links}</ul></main></body></html>"
    )));
    for (n, p) in paths.iter().enumerate() {
        let i = n + 1;
        site.set(p, Page::html(&format!(
            "<html><head><title>Page {i} | Bench shop</title></head><body><nav><a href=\"/\">Home</a></nav><main><h1>Page {i}</h1>\
             <h2>Overview</h2><p>{}</p><p>{}</p><h2>Details</h2><p>{}</p></main><footer>Bench shop</footer></body></html>",
            paragraph(i, 0, 60),
            paragraph(i, 1, 45),
            paragraph(i, 2, 70)
        )));
    }
}

fn vm_hwm_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

struct Run {
    job: Value,
    wall: Duration,
    hwm_mb: f64,
    reset: bool,
}

async fn run(site: &TestSite, peer: &ModelPeer, embeddings: bool, pages: usize) -> Run {
    let mut vars = peer.vars(None, embeddings.then_some("text-embedding-3-small"));
    vars.push(("RUST_LOG".into(), "warn".into()));
    let extra: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let app = TestApp::spawn_with(Backend::Embedded, &extra).await;
    let (tenant, key) = app.create_tenant("pro").await;
    let r = app
        .call(
            reqwest::Method::PUT,
            &format!("/api/admin/tenants/{tenant}/subscription"),
            Some(&app.admin_key),
            Some(json!({"status": "active"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let site_id = app.create_site(&key, &["127.0.0.1"]).await["site_id"]
        .as_str()
        .unwrap()
        .to_string();
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let started = Instant::now();
    let r = app
        .post(
            "/api/train/url",
            &key,
            json!({"site_id": site_id, "url": site.url("/"), "max_pages": pages, "max_depth": 3}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let job_id = r.body["job_id"].as_str().unwrap().to_string();
    let job = app
        .wait_for_job_within(&key, &job_id, Duration::from_secs(900))
        .await;
    let wall = started.elapsed();
    let hwm_mb = vm_hwm_mb();
    Run {
        job,
        wall,
        hwm_mb,
        reset,
    }
}

#[tokio::main]
async fn main() {
    let pages: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let site = TestSite::start().await;
    generate(&site, pages);
    let peer = ModelPeer::start(ChatMode::Echo).await;
    let before = vm_hwm_mb();
    let mut rows = Vec::new();
    for (name, embeddings) in [
        ("lexical only", false),
        ("with embeddings (local peer)", true),
    ] {
        let inputs = peer.embedded_inputs();
        let r = run(&site, &peer, embeddings, pages).await;
        assert_eq!(r.job["status"], "succeeded", "{}", r.job);
        let changed = r.job["pages_changed"].as_u64().unwrap_or(0);
        eprintln!(
            "{name}: {}",
            serde_json::to_string(&r.job).unwrap_or_default()
        );
        rows.push(format!(
            "| {name} | {changed} | {:.1} | {:.1} | {} | {:.0}{} |",
            r.wall.as_secs_f64(),
            changed as f64 / r.wall.as_secs_f64(),
            peer.embedded_inputs() - inputs,
            r.hwm_mb,
            if r.reset { "" } else { " (not reset)" }
        ));
    }
    println!(
        "pages on the site: {pages}; cores: {}; VmHWM before the runs: {before:.0} MB",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "| run | pages_changed | wall time (s) | pages/s | texts embedded | peak memory, whole process (VmHWM, MB) |"
    );
    println!("|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
}
