//! Crawls of test sites served on loopback.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use url::Url;

use super::*;
use crate::crawl::fetch::{FetchPolicy, Fetcher};
use crate::crawl::guard::{AddrClass, StaticResolver};
use crate::crawl::testsite::{Route, TestSite};

fn crawler() -> Crawler {
    let resolver = StaticResolver::new().with(
        "intranet.test",
        &["192.168.1.10".parse::<IpAddr>().unwrap()],
    );
    let fetcher = Fetcher::new(
        FetchPolicy {
            allow_loopback: true,
            timeout: Duration::from_secs(5),
            ..FetchPolicy::default()
        },
        Arc::new(resolver),
    )
    .unwrap();
    Crawler::new(fetcher)
}

async fn run(request: CrawlRequest) -> (Vec<CrawlEvent>, CrawlReport) {
    let (tx, mut rx) = mpsc::channel(4);
    let crawler = crawler();
    let handle = tokio::spawn(async move { crawler.crawl(request, tx).await });
    let mut events = Vec::new();
    while let Some(e) = rx.recv().await {
        events.push(e);
    }
    (events, handle.await.unwrap())
}

fn request(site: &TestSite, path: &str) -> CrawlRequest {
    CrawlRequest::new(site.url(path), Vec::new())
}

fn pages(events: &[CrawlEvent]) -> Vec<&CrawledPage> {
    events
        .iter()
        .filter_map(|e| match e {
            CrawlEvent::Page(p) => Some(p.as_ref()),
            _ => None,
        })
        .collect()
}

fn page_paths(events: &[CrawlEvent]) -> Vec<String> {
    let mut paths: Vec<String> = pages(events)
        .iter()
        .map(|p| p.canonical_url.path().to_string())
        .collect();
    paths.sort();
    paths
}

fn skipped(events: &[CrawlEvent]) -> Vec<(String, SkipReason)> {
    events
        .iter()
        .filter_map(|e| match e {
            CrawlEvent::Skipped { url, reason, .. } => {
                Some((url.path().to_string(), reason.clone()))
            }
            _ => None,
        })
        .collect()
}

fn links(paths: &[&str]) -> String {
    let anchors: String = paths
        .iter()
        .map(|p| format!("<a href=\"{p}\">{p}</a>"))
        .collect();
    format!("<html><body>{anchors}</body></html>")
}

#[tokio::test]
async fn crawls_links_breadth_first_and_produces_html_and_text() {
    let site = TestSite::serve("127.0.0.1").await;
    site.route(
        "/",
        Route::html(&links(&["/a", "/b", "/a#top", "notes.txt"])),
    )
    .route("/a", Route::html(&links(&["/", "/b", "/c"])))
    .route("/b", Route::html("<p>b</p>"))
    .route("/c", Route::html("<p>c</p>"))
    .route(
        "/notes.txt",
        Route::bytes("text/plain; charset=utf-8", "営業時間".as_bytes().to_vec()),
    );
    let (events, report) = run(request(&site, "/")).await;
    assert_eq!(page_paths(&events), ["/", "/a", "/b", "/c", "/notes.txt"]);
    let c = &report.counters;
    assert_eq!((c.fetched, c.produced, c.errors), (5, 5, 0));
    for path in ["/", "/a", "/b", "/c"] {
        assert_eq!(site.hits(path), 1, "{path} fetched once");
    }
    let depth_of = |path: &str| {
        pages(&events)
            .iter()
            .find(|p| p.final_url.path() == path)
            .map(|p| p.depth)
    };
    assert_eq!(depth_of("/"), Some(0));
    assert_eq!(depth_of("/b"), Some(1));
    assert_eq!(depth_of("/c"), Some(2));
    let text = pages(&events)
        .into_iter()
        .find(|p| p.kind == PageKind::Text)
        .unwrap();
    assert_eq!(text.text, "営業時間");
    assert!(!report.page_limit_reached && !report.cancelled);
}

#[tokio::test]
async fn robots_disallow_is_honoured() {
    let site = TestSite::serve("127.0.0.1").await;
    site.route(
        "/robots.txt",
        Route::bytes(
            "text/plain",
            b"User-agent: *\nDisallow: /\n\nUser-agent: KotobaBot\nDisallow: /private/\n".to_vec(),
        ),
    )
    .route("/", Route::html(&links(&["/private/a", "/public"])))
    .route("/private/a", Route::html("secret"))
    .route("/public", Route::html("ok"));
    let (events, report) = run(request(&site, "/")).await;
    assert_eq!(page_paths(&events), ["/", "/public"]);
    assert_eq!(site.hits("/private/a"), 0);
    assert_eq!(report.counters.refused_by_robots, 1);
    assert_eq!(
        skipped(&events),
        [("/private/a".to_string(), SkipReason::Robots)]
    );
    let ua = &site.requests_to("/robots.txt")[0]["user-agent"];
    assert!(ua.starts_with("KotobaBot/"), "{ua}");
}

#[tokio::test]
async fn robots_5xx_means_disallow_all_and_says_so() {
    let site = TestSite::serve("127.0.0.1").await;
    site.route("/robots.txt", Route::status(503))
        .route("/", Route::html(&links(&["/a"])));
    let (events, report) = run(request(&site, "/")).await;
    assert!(pages(&events).is_empty());
    assert_eq!(site.hits("/"), 0);
    assert_eq!(report.counters.refused_by_robots, 1);
    assert_eq!(report.counters.fetched, 0);
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("503") && n.contains("disallow-all")),
        "{:?}",
        report.notes
    );
}

#[tokio::test]
async fn sitemap_index_leads_to_sitemap_leads_to_pages() {
    let site = TestSite::serve("127.0.0.1").await;
    let robots = format!(
        "User-agent: *\nAllow: /\nSitemap: {}\n",
        site.url("/sitemap_index.xml")
    );
    let index = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><sitemap><loc>{}</loc></sitemap><sitemap><loc>http://elsewhere.test/s.xml</loc></sitemap></sitemapindex>"#,
        site.url("/sitemaps/pages.xml")
    );
    let urlset = format!(
        r#"<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>{}</loc></url><url><loc>{}</loc></url><url><loc>http://elsewhere.test/x</loc></url></urlset>"#,
        site.url("/orphan-1"),
        site.url("/orphan-2?lang=ja&amp;v=1")
    );
    site.route(
        "/robots.txt",
        Route::bytes("text/plain", robots.into_bytes()),
    )
    .route(
        "/sitemap_index.xml",
        Route::bytes("application/xml", index.into_bytes()),
    )
    .route(
        "/sitemaps/pages.xml",
        Route::bytes("text/xml", urlset.into_bytes()),
    )
    .route("/", Route::html("<p>no links here</p>"))
    .route("/orphan-1", Route::html("one"))
    .route("/orphan-2?lang=ja&v=1", Route::html("two"));
    let (events, report) = run(request(&site, "/")).await;
    assert_eq!(page_paths(&events), ["/", "/orphan-1", "/orphan-2"]);
    assert_eq!(report.counters.sitemap_urls, 2);
    let orphan = pages(&events)
        .into_iter()
        .find(|p| p.final_url.path() == "/orphan-1")
        .unwrap();
    assert_eq!(orphan.depth, 1);
    assert_eq!(
        site.hits("/sitemap.xml"),
        1,
        "the default location is tried too"
    );
    assert!(
        report.notes.iter().all(|n| !n.contains("/sitemap.xml")),
        "a missing /sitemap.xml is not worth a note: {:?}",
        report.notes
    );
}

#[tokio::test]
async fn noindex_pages_are_not_produced_but_followed_and_nofollow_is_honoured() {
    let site = TestSite::serve("127.0.0.1").await;
    site.route("/", Route::html(&links(&["/hidden", "/header-hidden", "/nofollow"])))
        .route(
            "/hidden",
            Route::html(
                r#"<html><head><meta name="robots" content="noindex"></head><body><a href="/deep">deep</a></body></html>"#,
            ),
        )
        .route(
            "/header-hidden",
            Route::html("<p>x</p>").header("x-robots-tag", "noindex"),
        )
        .route(
            "/nofollow",
            Route::html(
                r#"<meta name="robots" content="nofollow"><a href="/never">never</a>"#,
            ),
        )
        .route("/deep", Route::html("deep"))
        .route("/never", Route::html("never"));
    let (events, report) = run(request(&site, "/")).await;
    assert_eq!(page_paths(&events), ["/", "/deep", "/nofollow"]);
    assert_eq!(report.counters.noindex, 2);
    assert_eq!(site.hits("/never"), 0);
    let mut noindex: Vec<String> = skipped(&events)
        .into_iter()
        .filter(|(_, r)| *r == SkipReason::Noindex)
        .map(|(p, _)| p)
        .collect();
    noindex.sort();
    assert_eq!(noindex, ["/header-hidden", "/hidden"]);
}

#[tokio::test]
async fn canonical_duplicates_produce_one_document() {
    let site = TestSite::serve("127.0.0.1").await;
    let canonical = format!(r#"<link rel="canonical" href="{}">"#, site.url("/product"));
    // The first variant is met first and links to the canonical and to another variant.
    site.route("/", Route::html(&links(&["/product?utm_source=x"])))
        .route(
            "/product?utm_source=x",
            Route::html(&format!(
                "{canonical}<p>A</p>{}",
                links(&["/product", "/product?ref=2"])
            )),
        )
        .route(
            "/product?ref=2",
            Route::html(&format!("{canonical}<p>A</p>")),
        )
        .route("/product", Route::html(&format!("{canonical}<p>A</p>")));
    let (events, report) = run(request(&site, "/")).await;
    let product: Vec<&CrawledPage> = pages(&events)
        .into_iter()
        .filter(|p| p.canonical_url == site.url("/product"))
        .collect();
    assert_eq!(product.len(), 1, "one document per canonical URL");
    assert_eq!(page_paths(&events), ["/", "/product"]);
    // The document is the canonical page itself, fetched once, whichever variant the crawl met first
    // (so re-crawls cannot flip between variants); both variants are duplicates of it.
    assert_eq!(product[0].requested_url, site.url("/product"));
    assert_eq!(site.hits("/product"), 1);
    assert_eq!(report.counters.duplicates, 2);
    assert!(skipped(&events).iter().all(|(_, r)| matches!(
        r,
        SkipReason::Duplicate { canonical } if *canonical == site.url("/product")
    )));
}

#[tokio::test]
async fn redirect_chain_of_three_hops_is_followed() {
    let site = TestSite::serve("127.0.0.1").await;
    site.route("/", Route::html(&links(&["/old"])))
        .route("/old", Route::redirect(301, "/hop2"))
        .route("/hop2", Route::redirect(302, "/hop3"))
        .route("/hop3", Route::redirect(307, "/new"))
        .route("/new", Route::html(&links(&["/old", "/new"])));
    let (events, report) = run(request(&site, "/")).await;
    let moved = pages(&events)
        .into_iter()
        .find(|p| p.final_url.path() == "/new")
        .unwrap();
    assert_eq!(moved.requested_url, site.url("/old"));
    assert_eq!(moved.canonical_url, site.url("/new"));
    assert_eq!(site.hits("/new"), 1, "links back to /new are not refetched");
    assert_eq!(report.counters.produced, 2);
}

#[tokio::test]
async fn missing_pages_are_reported_gone() {
    let site = TestSite::serve("127.0.0.1").await;
    site.route(
        "/",
        Route::html(&links(&["/missing", "/removed", "/broken"])),
    )
    .route("/removed", Route::status(410))
    .route("/broken", Route::status(500));
    let (events, report) = run(request(&site, "/")).await;
    let mut gone: Vec<(String, u16)> = events
        .iter()
        .filter_map(|e| match e {
            CrawlEvent::Gone {
                requested_url,
                status,
                ..
            } => Some((requested_url.path().to_string(), *status)),
            _ => None,
        })
        .collect();
    gone.sort();
    assert_eq!(gone, [("/missing".into(), 404), ("/removed".into(), 410)]);
    assert_eq!(report.counters.gone, 2);
    assert_eq!(report.counters.errors, 1);
    assert!(events.iter().any(|e| matches!(
        e,
        CrawlEvent::Failed {
            error: CrawlFailure::Status(500),
            ..
        }
    )));
}

#[tokio::test]
async fn other_content_types_are_skipped_and_counted() {
    let site = TestSite::serve("127.0.0.1").await;
    site.route(
        "/",
        Route::html(&links(&["/doc.pdf", "/logo.png", "/untyped", "/data"])),
    )
    .route(
        "/doc.pdf",
        Route::bytes("application/pdf", b"%PDF-1.4".to_vec()),
    )
    .route(
        "/logo.png",
        Route::bytes("image/png", vec![0x89, b'P', b'N', b'G']),
    )
    .route(
        "/untyped",
        Route::untyped(b"<!DOCTYPE html><p>html</p>".to_vec()),
    )
    .route("/data", Route::untyped(vec![0, 1, 2, 3]));
    let (events, report) = run(request(&site, "/")).await;
    assert_eq!(page_paths(&events), ["/", "/untyped"]);
    assert_eq!(report.counters.skipped_by_type, 3);
    assert!(skipped(&events).contains(&(
        "/doc.pdf".to_string(),
        SkipReason::ContentType(Some("application/pdf".into()))
    )));
}

#[tokio::test]
async fn max_pages_is_respected() {
    let site = TestSite::serve("127.0.0.1").await;
    let paths: Vec<String> = (0..10).map(|i| format!("/p{i}")).collect();
    let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
    site.route("/", Route::html(&links(&refs)));
    for p in &paths {
        site.route(p, Route::html("page"));
    }
    let mut req = request(&site, "/");
    req.max_pages = 3;
    let (events, report) = run(req).await;
    assert_eq!(report.counters.fetched, 3);
    assert_eq!(pages(&events).len(), 3);
    assert!(report.page_limit_reached);
    let page_hits: usize = std::iter::once("/")
        .chain(refs.iter().copied())
        .map(|p| site.hits(p))
        .sum();
    assert_eq!(page_hits, 3);
}

#[tokio::test]
async fn max_depth_is_respected() {
    let site = TestSite::serve("127.0.0.1").await;
    site.route("/", Route::html(&links(&["/d1"])))
        .route("/d1", Route::html(&links(&["/d2"])))
        .route("/d2", Route::html(&links(&["/d3"])))
        .route("/d3", Route::html("too deep"));
    let mut req = request(&site, "/");
    req.max_depth = 2;
    let (events, _) = run(req).await;
    assert_eq!(page_paths(&events), ["/", "/d1", "/d2"]);
    assert_eq!(site.hits("/d3"), 0);

    let mut req = request(&site, "/");
    req.max_depth = 0;
    let (events, _) = run(req).await;
    assert_eq!(page_paths(&events), ["/"]);
    assert_eq!(site.hits("/sitemap.xml"), 1, "no sitemap lookup at depth 0");
}

#[tokio::test]
async fn known_pages_are_fetched_conditionally_and_304_is_not_modified() {
    let site = TestSite::serve("127.0.0.1").await;
    site.route(
        "/",
        Route::html("<p>home, no links</p>").header("etag", "\"home-2\""),
    )
    .route("/unchanged", Route::html("same").header("etag", "\"u1\""))
    .route("/changed", Route::html("new").header("etag", "\"c2\""));
    let mut req = request(&site, "/");
    let known = |path: &str, etag: &str| KnownPage {
        url: site.url(path),
        depth: 1,
        validators: Validators {
            etag: Some(etag.into()),
            last_modified: None,
        },
        links: Vec::new(),
    };
    req.known_pages = vec![
        known("/", "\"home-1\""),
        known("/unchanged", "\"u1\""),
        known("/changed", "\"c1\""),
        known("/deleted", "\"d1\""),
    ];
    let (events, report) = run(req).await;
    assert_eq!(page_paths(&events), ["/", "/changed"]);
    let not_modified: Vec<&CrawlEvent> = events
        .iter()
        .filter(|e| matches!(e, CrawlEvent::NotModified { .. }))
        .collect();
    assert_eq!(not_modified.len(), 1);
    match not_modified[0] {
        CrawlEvent::NotModified {
            requested_url,
            etag,
            depth,
            ..
        } => {
            assert_eq!(*requested_url, site.url("/unchanged"));
            assert_eq!(etag.as_deref(), Some("\"u1\""));
            assert_eq!(*depth, 1);
        }
        _ => unreachable!(),
    }
    assert_eq!(site.requests_to("/unchanged")[0]["if-none-match"], "\"u1\"");
    assert_eq!(report.counters.not_modified, 1);
    assert_eq!(report.counters.gone, 1, "a known page now missing is gone");
    let changed = pages(&events)
        .into_iter()
        .find(|p| p.final_url.path() == "/changed")
        .unwrap();
    assert_eq!(changed.etag.as_deref(), Some("\"c2\""));
}

#[tokio::test]
async fn shift_jis_page_without_declaration_is_decoded() {
    let site = TestSite::serve("127.0.0.1").await;
    let ja = "<html><body><p>株式会社ことばの営業時間は午前九時から午後六時までです。お問い合わせはこちらからどうぞ。</p></body></html>";
    let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode(ja);
    site.route("/", Route::bytes("text/html", sjis.into_owned()));
    let (events, _) = run(request(&site, "/")).await;
    let page = pages(&events)[0];
    assert_eq!(page.encoding, "Shift_JIS");
    assert_eq!(page.text, ja);
}

#[tokio::test]
async fn guard_refusals_inside_a_crawl_are_counted() {
    let site = TestSite::serve("127.0.0.1").await;
    site.route(
        "/",
        Route::html(&links(&[
            "http://intranet.test/wiki",
            "http://10.0.0.1/admin",
            "http://example.org/offsite",
            "/go-away",
        ])),
    )
    .route("/go-away", Route::redirect(302, "http://other.test/"));
    let mut req = request(&site, "/");
    req.allowed_domains = vec![
        AllowedDomain::parse("intranet.test").unwrap(),
        AllowedDomain::parse("10.0.0.1").unwrap(),
    ];
    let (events, report) = run(req).await;
    assert_eq!(report.counters.refused_by_guard, 2);
    assert_eq!(report.counters.redirected_out_of_scope, 1);
    let mut refused: Vec<AddrClass> = events
        .iter()
        .filter_map(|e| match e {
            CrawlEvent::Failed {
                error: CrawlFailure::Fetch(FetchError::Refused(r)),
                ..
            } => r.class(),
            _ => None,
        })
        .collect();
    refused.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(refused, [AddrClass::Private, AddrClass::Private]);
    assert_eq!(page_paths(&events), ["/"]);
}

#[tokio::test]
async fn a_refused_start_url_fails_at_once() {
    for start in [
        "http://169.254.169.254/latest/meta-data/",
        "http://intranet.test/",
        "ftp://127.0.0.1/",
    ] {
        let (events, report) = run(CrawlRequest::new(Url::parse(start).unwrap(), Vec::new())).await;
        assert_eq!(report.counters.refused_by_guard, 1, "{start}");
        assert_eq!(report.counters.fetched, 0, "{start}");
        assert!(matches!(
            events.as_slice(),
            [CrawlEvent::Failed {
                error: CrawlFailure::Fetch(FetchError::Refused(_)),
                ..
            }]
        ));
    }
}

#[tokio::test]
async fn crawl_delay_fetches_one_page_at_a_time() {
    // Slow pages: without the crawl delay the crawler would fetch the two links at once.
    let slow = |body: &str| Route::html(body).delayed(Duration::from_millis(50));
    let site = TestSite::serve("127.0.0.1").await;
    site.route(
        "/robots.txt",
        Route::bytes("text/plain", b"User-agent: *\nCrawl-delay: 0.2\n".to_vec()),
    )
    .route("/", Route::html(&links(&["/a", "/b", "/c"])))
    .route("/a", slow("a"))
    .route("/b", slow("b"))
    .route("/c", slow("c"));
    let (events, _) = run(request(&site, "/")).await;
    assert_eq!(pages(&events).len(), 4);
    assert_eq!(site.peak_in_flight(), 1, "one request at a time");

    // The control: the same site without a crawl delay is fetched in parallel.
    let free = TestSite::serve("127.0.0.1").await;
    free.route("/", Route::html(&links(&["/a", "/b", "/c"])))
        .route("/a", slow("a"))
        .route("/b", slow("b"))
        .route("/c", slow("c"));
    let (events, _) = run(request(&free, "/")).await;
    assert_eq!(pages(&events).len(), 4);
    assert!(free.peak_in_flight() > 1, "the control overlapped");
}

#[tokio::test]
async fn dropping_the_receiver_stops_the_crawl() {
    let site = TestSite::serve("127.0.0.1").await;
    let paths: Vec<String> = (0..30).map(|i| format!("/p{i}")).collect();
    let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
    site.route("/", Route::html(&links(&refs)));
    for p in &paths {
        site.route(p, Route::html("page"));
    }
    let (tx, mut rx) = mpsc::channel(1);
    let crawler = crawler();
    let req = request(&site, "/");
    let handle = tokio::spawn(async move { crawler.crawl(req, tx).await });
    assert!(rx.recv().await.is_some());
    drop(rx);
    let report = handle.await.unwrap();
    assert!(report.cancelled);
    assert!(report.counters.fetched < 31);
}

/// A host with two sections, `/en/` listed first in robots.txt, each section with its own sitemap of
/// 12 pages and a start page linking to every page of its section and to the other section's start.
fn two_section_site(site: &TestSite) {
    let robots = format!(
        "User-agent: *\nAllow: /\nSitemap: {}\nSitemap: {}\n",
        site.url("/en/sitemap.xml"),
        site.url("/ja/sitemap.xml")
    );
    site.route(
        "/robots.txt",
        Route::bytes("text/plain", robots.into_bytes()),
    );
    for (lang, other) in [("en", "ja"), ("ja", "en")] {
        let paths: Vec<String> = (0..12).map(|i| format!("/{lang}/p{i}")).collect();
        let locs: String = paths
            .iter()
            .map(|p| format!("<url><loc>{}</loc></url>", site.url(p)))
            .collect();
        site.route(
            &format!("/{lang}/sitemap.xml"),
            Route::bytes(
                "application/xml",
                format!(
                    r#"<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{locs}</urlset>"#
                )
                .into_bytes(),
            ),
        );
        let mut refs: Vec<&str> = paths.iter().map(String::as_str).collect();
        let other_start = format!("/{other}/");
        refs.push(&other_start);
        site.route(&format!("/{lang}/"), Route::html(&links(&refs)));
        for p in &paths {
            site.route(p, Route::html(&links(&["/", &other_start])));
        }
    }
    site.route("/", Route::html(&links(&["/en/", "/ja/"])));
}

#[tokio::test]
async fn a_section_start_crawls_only_its_section_and_counts_the_rest() {
    let site = TestSite::serve("127.0.0.1").await;
    two_section_site(&site);
    let mut req = request(&site, "/ja/");
    req.max_pages = 20;
    let (events, report) = run(req).await;
    let paths = page_paths(&events);
    assert_eq!(
        paths.len(),
        13,
        "the section's start and its 12 pages: {paths:?}"
    );
    assert!(paths.iter().all(|p| p.starts_with("/ja/")), "{paths:?}");
    let other: usize = (0..12).map(|i| site.hits(&format!("/en/p{i}"))).sum();
    assert_eq!(other + site.hits("/en/") + site.hits("/"), 0);
    assert_eq!(
        site.hits("/en/sitemap.xml"),
        1,
        "the other section's sitemap is read, its entries filtered"
    );
    let c = &report.counters;
    // 12 /en/ sitemap entries, the /en/ start page and the root, each counted once.
    assert_eq!(c.out_of_scope, 14, "{c:?}");
    assert_eq!(c.sitemap_urls, 12, "{c:?}");
    assert!(!report.page_limit_reached);

    // A budget smaller than the section is spent on the section alone.
    let mut req = request(&site, "/ja/");
    req.max_pages = 5;
    let (events, _) = run(req).await;
    let paths = page_paths(&events);
    assert_eq!(paths.len(), 5, "{paths:?}");
    assert!(paths.iter().all(|p| p.starts_with("/ja/")), "{paths:?}");
}

#[tokio::test]
async fn host_scope_crawls_the_start_section_first_then_the_rest() {
    let site = TestSite::serve("127.0.0.1").await;
    two_section_site(&site);
    let mut req = request(&site, "/ja/");
    req.scope = ScopeMode::Host;
    req.max_pages = 13;
    let (events, _) = run(req).await;
    let paths = page_paths(&events);
    assert_eq!(paths.len(), 13, "{paths:?}");
    assert!(
        paths.iter().all(|p| p.starts_with("/ja/")),
        "the start's section fills the budget before the rest of the host: {paths:?}"
    );

    let mut req = request(&site, "/ja/");
    req.scope = ScopeMode::Host;
    req.max_pages = 100;
    let (events, report) = run(req).await;
    let paths = page_paths(&events);
    assert_eq!(paths.len(), 27, "both sections and the root: {paths:?}");
    assert_eq!(report.counters.out_of_scope, 0);
}

#[tokio::test]
async fn a_suspended_crawl_resumes_from_its_serialised_state_without_fetching_twice() {
    let site = TestSite::serve("127.0.0.1").await;
    site.route("/", Route::html(&links(&["/a", "/b"])))
        .route("/a", Route::html(&links(&["/c"])))
        .route("/b", Route::html("<p>b</p>"))
        .route("/c", Route::html("<p>c</p>"));
    // A stop time already past: nothing is fetched, everything is left for later.
    let mut first = request(&site, "/");
    first.stop_at = Some(tokio::time::Instant::now());
    let (events, report) = run(first).await;
    assert!(pages(&events).is_empty());
    let state = report.suspended.expect("suspended with URLs left");
    assert_eq!(state.frontier, vec![(site.url("/").to_string(), 0)]);
    assert_eq!(state.counters.fetched, 0);
    // Across processes: the state as JSON and back.
    let state: CrawlState = serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();

    let mut second = request(&site, "/");
    second.resume = Some(state);
    second.max_pages = 3;
    let (events, report) = run(second).await;
    assert_eq!(page_paths(&events), ["/", "/a", "/b"]);
    assert!(report.suspended.is_none());
    assert!(
        report.page_limit_reached,
        "/c is left: the page budget is spent"
    );
    let state = CrawlState {
        frontier: vec![(site.url("/c").to_string(), 2)],
        seen: ["/", "/a", "/b", "/c"]
            .iter()
            .map(|p| site.url(p).to_string())
            .collect(),
        produced: Vec::new(),
        counters: report.counters.clone(),
        notes: Vec::new(),
    };
    // Resumed again with a bigger budget: only what was left is fetched.
    let mut third = request(&site, "/");
    third.resume = Some(state);
    third.max_pages = 10;
    let (events, report) = run(third).await;
    assert_eq!(page_paths(&events), ["/c"]);
    assert_eq!(report.counters.fetched, 4, "the budget counts every slice");
    for path in ["/", "/a", "/b", "/c"] {
        assert_eq!(site.hits(path), 1, "{path} fetched once");
    }
}
