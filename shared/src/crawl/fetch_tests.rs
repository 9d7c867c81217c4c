//! Fetcher tests, the SSRF table above all. Only loopback is ever contacted: every refused target is
//! refused before a socket opens, and the counting server on 127.0.0.2 proves it.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::*;
use crate::crawl::guard::{AddrClass, Refusal, StaticResolver};
use crate::crawl::scope::Scope;
use crate::crawl::testsite::{Route, TestSite};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The names the SSRF cases resolve; nothing here ever reaches real DNS.
fn resolver() -> StaticResolver {
    StaticResolver::new()
        .with("metadata.google.internal", &[ip("169.254.169.254")])
        .with("intranet.test", &[ip("192.168.1.10")])
        .with("v6.test", &[ip("fe80::1")])
        .with("ula.test", &[ip("fd00::1")])
        .with("cgnat.test", &[ip("100.64.1.1")])
        .with("mapped.test", &[ip("::ffff:169.254.169.254")])
        .with("nat64.test", &[ip("64:ff9b::a00:1")])
        .with("localhost", &[ip("127.0.0.1"), ip("::1")])
        .with("sneaky.test", &[ip("127.0.0.2")])
        .with("all-bad.test", &[ip("10.0.0.1"), ip("127.0.0.3")])
        // Private first: the guard must drop it, or the test tripwire fires before any connection.
        .with("mixed.test", &[ip("10.0.0.5"), ip("127.0.0.1")])
        .with("lo.test", &[ip("127.0.0.1")])
}

fn fetcher(allow_loopback: bool) -> Fetcher {
    fetcher_with(FetchPolicy {
        allow_loopback,
        timeout: Duration::from_secs(5),
        ..FetchPolicy::default()
    })
}

fn fetcher_with(policy: FetchPolicy) -> Fetcher {
    Fetcher::new(policy, Arc::new(resolver())).unwrap()
}

fn url(s: &str) -> Url {
    Url::parse(s).unwrap()
}

fn refusal(result: Result<FetchOutcome, FetchError>, target: &str) -> Refusal {
    match result {
        Err(FetchError::Refused(r)) => r,
        other => panic!("{target}: expected a refusal, got {other:?}"),
    }
}

fn fetched(result: Result<FetchOutcome, FetchError>) -> Fetched {
    match result {
        Ok(FetchOutcome::Fetched(f)) => f,
        other => panic!("expected a response, got {other:?}"),
    }
}

/// Literal addresses and names that must be refused, with the class the refusal must name.
fn refused_targets() -> Vec<(&'static str, AddrClass)> {
    use AddrClass::*;
    vec![
        ("http://10.0.0.1/", Private),
        ("http://172.16.5.4/", Private),
        ("http://192.168.0.1:8080/admin", Private),
        ("http://169.254.169.254/latest/meta-data/", CloudMetadata),
        ("http://[fd00:ec2::254]/latest/meta-data/", CloudMetadata),
        ("http://100.100.100.200/latest/meta-data/", CloudMetadata),
        ("http://[::1]/", Loopback),
        ("http://[::ffff:127.0.0.1]/", Loopback),
        ("http://[::127.0.0.1]/", Loopback),
        ("http://[::ffff:10.1.2.3]/", Private),
        ("http://[64:ff9b::a9fe:a9fe]/", CloudMetadata),
        ("http://[2002:a9fe:a9fe::1]/", CloudMetadata),
        ("http://0.0.0.0/", Unspecified),
        ("http://0/", Unspecified),
        ("http://[::]/", Unspecified),
        ("http://100.64.0.1/", SharedCgnat),
        ("http://[fd00::1]/", UniqueLocal),
        ("http://[fe80::1]/", LinkLocal),
        ("http://169.254.10.10/", LinkLocal),
        ("http://224.0.0.1/", Multicast),
        ("http://[ff02::1]/", Multicast),
        ("http://255.255.255.255/", Broadcast),
        ("http://192.0.2.1/", Documentation),
        ("http://198.18.0.1/", Benchmarking),
        ("http://240.0.0.1/", Reserved),
        // Decimal, hex, octal and short IPv4 spellings (the url crate makes them 127.0.0.1).
        ("http://2130706433/", Loopback),
        ("http://0x7f000001/", Loopback),
        ("http://0177.0.0.1/", Loopback),
        ("http://127.1/", Loopback),
        ("http://0xa9.0xfe.0xa9.0xfe/", CloudMetadata),
        ("http://127.0.0.1./", Loopback),
        (
            "http://\u{FF11}\u{FF12}\u{FF17}.\u{FF10}.\u{FF10}.\u{FF11}/",
            Loopback,
        ),
        ("http://2852039166/", CloudMetadata),
        // Names resolving to refused addresses.
        (
            "http://metadata.google.internal/computeMetadata/v1/",
            CloudMetadata,
        ),
        ("http://intranet.test/", Private),
        ("http://v6.test/", LinkLocal),
        ("http://ula.test/", UniqueLocal),
        ("http://cgnat.test/", SharedCgnat),
        ("http://mapped.test/", CloudMetadata),
        ("http://nat64.test/", Private),
        ("http://localhost/", Loopback),
        ("http://LOCALHOST./", Loopback),
        ("http://all-bad.test/", Private),
    ]
}

#[tokio::test]
async fn ssrf_table_every_target_is_refused_with_its_reason() {
    let f = fetcher(false);
    let cases = refused_targets();
    assert!(cases.len() >= 20);
    for (target, class) in cases {
        let r = refusal(f.fetch(&url(target), None).await, target);
        assert_eq!(r.class(), Some(class), "{target}: {r}");
        let text = r.to_string();
        assert!(
            text.starts_with("refused:") && text.contains(&class.to_string()),
            "{target}: {text}"
        );
    }
}

#[tokio::test]
async fn ssrf_non_address_refusals() {
    let f = fetcher(true);
    let cases: [(&str, Refusal); 5] = [
        ("ftp://example.com/x", Refusal::Scheme("ftp".into())),
        (
            "http://169.254.169.254:80@example.com@169.254.169.254/",
            Refusal::Credentials,
        ),
        ("file:///etc/passwd", Refusal::Scheme("file".into())),
        (
            "gopher://127.0.0.1:6379/_INFO",
            Refusal::Scheme("gopher".into()),
        ),
        ("http://user:pw@127.0.0.1/", Refusal::Credentials),
    ];
    for (target, expected) in cases {
        assert_eq!(refusal(f.fetch(&url(target), None).await, target), expected);
    }
}

#[tokio::test]
async fn a_name_with_several_addresses_lists_every_refusal() {
    let r = refusal(
        fetcher(false)
            .fetch(&url("http://all-bad.test/"), None)
            .await,
        "all-bad",
    );
    assert_eq!(
        r,
        Refusal::NoPermittedAddress {
            host: "all-bad.test".into(),
            refused: vec![
                (ip("10.0.0.1"), AddrClass::Private),
                (ip("127.0.0.3"), AddrClass::Loopback)
            ],
        }
    );
}

/// The proof of "before any socket": a live server on 127.0.0.2 that must see zero requests, by
/// address, by other spellings of it, by name, and by redirect.
#[tokio::test]
async fn counting_server_on_loopback_gets_zero_requests() {
    let target = TestSite::serve("127.0.0.2").await;
    target.route("/", Route::html("secret"));
    let port = target.addr.port();

    let strict = fetcher(false);
    for t in [
        format!("http://127.0.0.2:{port}/"),
        format!("http://2130706434:{port}/"),
        format!("http://0x7f000002:{port}/"),
        format!("http://127.0.2:{port}/"),
        format!("http://sneaky.test:{port}/"),
        format!("http://[::ffff:127.0.0.2]:{port}/"),
    ] {
        let r = refusal(strict.fetch(&url(&t), None).await, &t);
        assert_eq!(r.class(), Some(AddrClass::Loopback), "{t}: {r}");
    }

    // Redirects from a permitted loopback server (allow_loopback, this test only) to targets that
    // stay refused even then.
    let redirector = TestSite::serve("127.0.0.1").await;
    let lenient = fetcher(true);
    let targets: Vec<(String, Option<AddrClass>)> = vec![
        (
            format!("http://[::ffff:127.0.0.2]:{port}/"),
            Some(AddrClass::Loopback),
        ),
        (
            format!("http://[::127.0.0.2]:{port}/"),
            Some(AddrClass::Loopback),
        ),
        (
            format!("http://[64:ff9b::7f00:2]:{port}/"),
            Some(AddrClass::Loopback),
        ),
        ("http://10.0.0.1/".into(), Some(AddrClass::Private)),
        (
            "http://169.254.169.254/latest/meta-data/".into(),
            Some(AddrClass::CloudMetadata),
        ),
        (
            "http://metadata.google.internal/".into(),
            Some(AddrClass::CloudMetadata),
        ),
        ("http://intranet.test/".into(), Some(AddrClass::Private)),
        ("http://v6.test/".into(), Some(AddrClass::LinkLocal)),
        ("http://[fd00::1]/".into(), Some(AddrClass::UniqueLocal)),
        (format!("ftp://127.0.0.2:{port}/"), None),
        (format!("http://u:p@127.0.0.2:{port}/"), None),
    ];
    for (i, (to, class)) in targets.iter().enumerate() {
        let path = format!("/hop{i}");
        redirector.route(&path, Route::redirect(302, to));
        let r = refusal(lenient.fetch(&redirector.url(&path), None).await, to);
        if class.is_some() {
            assert_eq!(r.class(), *class, "{to}: {r}");
        }
        assert_eq!(redirector.hits(&path), 1, "the first hop was made");
    }
    // A relative redirect chain into a refused spelling, two hops deep.
    redirector.route("/a", Route::redirect(301, "/b"));
    redirector.route(
        "/b",
        Route::redirect(308, &format!("http://[::ffff:7f00:2]:{port}/")),
    );
    let r = refusal(lenient.fetch(&redirector.url("/a"), None).await, "/a");
    assert_eq!(r.class(), Some(AddrClass::Loopback));

    assert_eq!(
        target.connections(),
        0,
        "nothing even connected to 127.0.0.2"
    );
}

#[tokio::test]
async fn allow_loopback_allows_loopback_and_nothing_else() {
    let site = TestSite::serve("127.0.0.1").await;
    site.route("/", Route::html("<p>hello</p>"));
    let f = fetcher(true);
    let page = fetched(f.fetch(&site.url("/"), None).await);
    assert_eq!(
        (page.status, page.body.as_slice()),
        (200, &b"<p>hello</p>"[..])
    );

    let port = site.addr.port();
    let by_name = fetched(
        f.fetch(&url(&format!("http://lo.test:{port}/")), None)
            .await,
    );
    assert_eq!(by_name.status, 200);
    // 10.0.0.5 comes first in the answer; the guard drops it and 127.0.0.1 serves.
    let mixed = fetched(
        f.fetch(&url(&format!("http://mixed.test:{port}/")), None)
            .await,
    );
    assert_eq!(mixed.status, 200);
    assert_eq!(site.hits("/"), 3);

    for (target, class) in [
        ("http://10.0.0.1/", AddrClass::Private),
        ("http://169.254.169.254/", AddrClass::CloudMetadata),
        ("http://intranet.test/", AddrClass::Private),
        ("http://[::ffff:127.0.0.1]/", AddrClass::Loopback),
    ] {
        let r = refusal(f.fetch(&url(target), None).await, target);
        assert_eq!(r.class(), Some(class), "{target}");
    }
}

#[tokio::test]
async fn follows_a_redirect_chain_and_sends_our_user_agent() {
    let site = TestSite::serve("127.0.0.1").await;
    site.route("/r1", Route::redirect(301, "/r2#frag"))
        .route("/r2", Route::redirect(302, site.url("/r3").as_str()))
        .route("/r3", Route::redirect(307, "final?x=1"))
        .route(
            "/final?x=1",
            Route::html("done")
                .header("etag", "\"abc\"")
                .header("last-modified", "Wed, 21 Oct 2015 07:28:00 GMT")
                .header("x-robots-tag", "noarchive"),
        );
    let page = fetched(fetcher(true).fetch(&site.url("/r1"), None).await);
    assert_eq!(page.url, site.url("/final?x=1"));
    assert_eq!(
        page.redirects,
        vec![site.url("/r1"), site.url("/r2"), site.url("/r3")]
    );
    assert_eq!(page.etag.as_deref(), Some("\"abc\""));
    assert_eq!(
        page.last_modified.as_deref(),
        Some("Wed, 21 Oct 2015 07:28:00 GMT")
    );
    assert_eq!(
        page.content_type.as_deref(),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(page.x_robots_tag.as_deref(), Some("noarchive"));
    let headers = &site.requests_to("/r1")[0];
    assert_eq!(headers["user-agent"], DEFAULT_USER_AGENT);
}

#[tokio::test]
async fn too_many_redirects_and_bad_locations() {
    let site = TestSite::serve("127.0.0.1").await;
    for i in 0..7 {
        site.route(
            &format!("/loop{i}"),
            Route::redirect(302, &format!("/loop{}", i + 1)),
        );
    }
    let f = fetcher(true);
    assert!(matches!(
        f.fetch(&site.url("/loop0"), None).await,
        Err(FetchError::TooManyRedirects(5))
    ));
    assert_eq!(site.hits("/loop5"), 1);
    assert_eq!(site.hits("/loop6"), 0);

    site.route("/bad", Route::redirect(302, "http://[::1"));
    assert!(matches!(
        f.fetch(&site.url("/bad"), None).await,
        Err(FetchError::BadRedirect { .. })
    ));
    // A 3xx without Location is a final response.
    site.route("/bare", Route::status(302));
    assert_eq!(fetched(f.fetch(&site.url("/bare"), None).await).status, 302);
}

#[tokio::test]
async fn redirects_out_of_scope_are_not_followed_within_a_scope() {
    let site = TestSite::serve("127.0.0.1").await;
    let other = TestSite::serve("127.0.0.3").await;
    site.route("/go", Route::redirect(302, other.url("/x").as_str()));
    let scope = Scope::new(&site.url("/"), &[], crate::crawl::ScopeMode::Host);
    match fetcher(true)
        .fetch_within(&site.url("/go"), None, &scope)
        .await
    {
        Err(FetchError::OutOfScope(to)) => assert_eq!(to, other.url("/x")),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        other.connections(),
        0,
        "nothing even connected out of scope"
    );
}

#[tokio::test]
async fn conditional_requests_and_not_modified() {
    let site = TestSite::serve("127.0.0.1").await;
    site.route("/p", Route::html("v1").header("etag", "\"v1\""));
    let validators = Validators {
        etag: Some("\"v1\"".into()),
        last_modified: Some("Wed, 21 Oct 2015 07:28:00 GMT".into()),
    };
    match fetcher(true)
        .fetch(&site.url("/p"), Some(&validators))
        .await
    {
        Ok(FetchOutcome::NotModified(f)) => {
            assert_eq!(f.status, 304);
            assert_eq!(f.etag.as_deref(), Some("\"v1\""));
            assert!(f.body.is_empty());
        }
        other => panic!("{other:?}"),
    }
    let headers = &site.requests_to("/p")[0];
    assert_eq!(headers["if-none-match"], "\"v1\"");
    assert_eq!(
        headers["if-modified-since"],
        "Wed, 21 Oct 2015 07:28:00 GMT"
    );

    let stale = Validators {
        etag: Some("\"v0\"".into()),
        last_modified: None,
    };
    let f = fetched(fetcher(true).fetch(&site.url("/p"), Some(&stale)).await);
    assert_eq!(f.body, b"v1");
    // A validator that is not a valid header value is simply not sent.
    let odd = Validators {
        etag: Some("bad\nvalue".into()),
        last_modified: None,
    };
    assert_eq!(
        fetched(fetcher(true).fetch(&site.url("/p"), Some(&odd)).await).status,
        200
    );
}

#[tokio::test]
async fn body_cap_with_and_without_content_length() {
    let site = TestSite::serve("127.0.0.1").await;
    site.route("/big", Route::bytes("text/html", vec![b'a'; 4000]))
        .route(
            "/big-chunked",
            Route::bytes("text/html", vec![b'a'; 4000]).chunked(),
        )
        .route(
            "/small-chunked",
            Route::bytes("text/html", vec![b'a'; 3000]).chunked(),
        );
    let f = fetcher_with(FetchPolicy {
        allow_loopback: true,
        max_body: 3000,
        ..FetchPolicy::default()
    });
    for path in ["/big", "/big-chunked"] {
        assert!(
            matches!(
                f.fetch(&site.url(path), None).await,
                Err(FetchError::TooLarge { limit: 3000 })
            ),
            "{path}"
        );
    }
    assert_eq!(
        fetched(f.fetch(&site.url("/small-chunked"), None).await)
            .body
            .len(),
        3000
    );
    // Error statuses carry no body.
    site.route("/gone", Route::status(410));
    assert!(
        fetched(f.fetch(&site.url("/gone"), None).await)
            .body
            .is_empty()
    );
}

#[tokio::test]
async fn total_timeout() {
    let site = TestSite::serve("127.0.0.1").await;
    // Slower than any test run: only the fetcher's own timeout can end this request.
    site.route(
        "/slow",
        Route::html("late").delayed(Duration::from_secs(3600)),
    );
    let f = fetcher_with(FetchPolicy {
        allow_loopback: true,
        timeout: Duration::from_millis(300),
        ..FetchPolicy::default()
    });
    assert!(matches!(
        f.fetch(&site.url("/slow"), None).await,
        Err(FetchError::Timeout)
    ));
    assert_eq!(
        site.hits("/slow"),
        1,
        "the request was made, then timed out"
    );
}

#[tokio::test]
async fn unknown_names_and_closed_ports_are_connect_errors() {
    let f = fetcher(true);
    assert!(matches!(
        f.fetch(&url("http://no-such-host.test/"), None).await,
        Err(FetchError::Connect(_))
    ));
    // Bind and drop to find a port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    assert!(matches!(
        f.fetch(&url(&format!("http://127.0.0.1:{port}/")), None)
            .await,
        Err(FetchError::Connect(_))
    ));
}
