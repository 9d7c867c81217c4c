//! robots.txt: fetched once per origin, parsed by `texting_robots` for the `KotobaBot` token.
//!
//! Status handling follows RFC 9309 and Google: 2xx is parsed; 4xx means "no robots.txt", so
//! everything is allowed; 5xx, 429 and network failures mean the site cannot tell us its rules, so
//! nothing is crawled this time.

use std::time::Duration;

use texting_robots::Robot;
use url::Url;

use super::fetch::{FetchError, FetchOutcome, Fetcher};
use super::guard::Refusal;

/// The product token matched against `User-agent:` lines.
pub const ROBOTS_TOKEN: &str = "KotobaBot";

/// RFC 9309 lets crawlers stop reading robots.txt after 500 KiB.
const MAX_ROBOTS_BYTES: usize = 500 * 1024;

/// How the rules were obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RobotsSource {
    /// A robots.txt was read and parsed.
    Parsed,
    /// The server answered this 4xx: no restrictions.
    Missing { status: u16 },
    /// Allowed without asking (robots disabled for this crawl).
    Unchecked,
    /// robots.txt could not be read (5xx, 429, network error, unparseable): everything is
    /// disallowed for this crawl.
    Unavailable { reason: String },
    /// The SSRF guard refused the origin itself: nothing there can be fetched.
    Refused(Refusal),
}

/// The rules for one origin.
pub struct Robots {
    source: RobotsSource,
    robot: Option<Robot>,
}

impl std::fmt::Debug for Robots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Robots")
            .field("source", &self.source)
            .field("crawl_delay", &self.crawl_delay())
            .field("sitemaps", &self.sitemaps())
            .finish()
    }
}

impl Robots {
    /// Rules parsed from a robots.txt body (longer bodies are cut at 500 KiB, as RFC 9309 allows).
    pub fn parse(body: &[u8]) -> Self {
        let body = &body[..body.len().min(MAX_ROBOTS_BYTES)];
        match Robot::new(ROBOTS_TOKEN, body) {
            Ok(robot) => Self {
                source: RobotsSource::Parsed,
                robot: Some(robot),
            },
            Err(e) => Self::unavailable(format!("robots.txt could not be parsed: {e}")),
        }
    }

    /// No restrictions: the site has no robots.txt (it answered `status`).
    pub fn missing(status: u16) -> Self {
        Self {
            source: RobotsSource::Missing { status },
            robot: None,
        }
    }

    /// No restrictions, without having asked.
    pub fn unchecked() -> Self {
        Self {
            source: RobotsSource::Unchecked,
            robot: None,
        }
    }

    /// Everything disallowed, for `reason`.
    pub fn unavailable(reason: String) -> Self {
        Self {
            source: RobotsSource::Unavailable { reason },
            robot: None,
        }
    }

    pub fn source(&self) -> &RobotsSource {
        &self.source
    }

    /// Whether everything is refused because robots.txt could not be read.
    pub fn disallows_all(&self) -> bool {
        matches!(
            self.source,
            RobotsSource::Unavailable { .. } | RobotsSource::Refused(_)
        )
    }

    /// The guard's refusal of this origin, if that is why there are no rules.
    pub fn refusal(&self) -> Option<&Refusal> {
        match &self.source {
            RobotsSource::Refused(r) => Some(r),
            _ => None,
        }
    }

    /// Whether `KotobaBot` may fetch `url`.
    pub fn allows(&self, url: &Url) -> bool {
        match (&self.source, &self.robot) {
            (RobotsSource::Unavailable { .. } | RobotsSource::Refused(_), _) => false,
            (_, Some(robot)) => robot.allowed(url.as_str()),
            (_, None) => true,
        }
    }

    /// The `Crawl-delay` for us, if one is given and sensible.
    pub fn crawl_delay(&self) -> Option<Duration> {
        let secs = self.robot.as_ref()?.delay?;
        (secs.is_finite() && secs > 0.0).then(|| Duration::from_secs_f32(secs.min(86_400.0)))
    }

    /// The `Sitemap:` URLs, as written (they apply to every user agent).
    pub fn sitemaps(&self) -> &[String] {
        self.robot.as_ref().map_or(&[], |r| r.sitemaps.as_slice())
    }
}

/// The robots.txt URL of `url`'s origin.
pub fn robots_url(url: &Url) -> Option<Url> {
    let mut robots = url.clone();
    robots.set_path("/robots.txt");
    robots.set_query(None);
    robots.set_fragment(None);
    (robots.has_host() && matches!(robots.scheme(), "http" | "https")).then_some(robots)
}

/// Fetches and interprets the robots.txt of `url`'s origin. Never fails: problems become
/// [`RobotsSource::Unavailable`] (disallow all), whose reason says what happened.
pub async fn fetch_robots(fetcher: &Fetcher, url: &Url) -> Robots {
    let Some(robots) = robots_url(url) else {
        return Robots::unavailable(format!("{url} has no robots.txt location"));
    };
    match fetcher.fetch(&robots, None).await {
        Ok(FetchOutcome::Fetched(f)) => match f.status {
            200..=299 => Robots::parse(&f.body),
            429 => Robots::unavailable(format!(
                "{robots} answered 429 Too Many Requests: treated as disallow-all for this crawl"
            )),
            400..=499 => Robots::missing(f.status),
            status => Robots::unavailable(format!(
                "{robots} answered {status}: treated as disallow-all for this crawl"
            )),
        },
        Ok(FetchOutcome::NotModified(_)) => {
            Robots::unavailable(format!("{robots} answered 304 to an unconditional request"))
        }
        Err(FetchError::Refused(r)) => Robots {
            source: RobotsSource::Refused(r),
            robot: None,
        },
        // Includes a robots.txt over the body cap: without its rules we stay out.
        Err(e) => Robots::unavailable(format!(
            "{robots} could not be fetched ({e}): treated as disallow-all for this crawl"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_group_is_used_and_sitemaps_collected() {
        let txt = b"User-agent: *\nDisallow: /\n\nUser-agent: KotobaBot\nDisallow: /private/\nCrawl-delay: 2\n\nSitemap: https://example.jp/sitemap_index.xml\n";
        let r = Robots::parse(txt);
        let u = |p: &str| Url::parse(&format!("https://example.jp{p}")).unwrap();
        assert!(r.allows(&u("/")));
        assert!(r.allows(&u("/about")));
        assert!(!r.allows(&u("/private/x")));
        assert_eq!(r.crawl_delay(), Some(Duration::from_secs(2)));
        assert_eq!(r.sitemaps(), ["https://example.jp/sitemap_index.xml"]);
    }

    #[test]
    fn wildcard_group_applies_when_we_are_not_named() {
        let r = Robots::parse(b"User-agent: *\nDisallow: /admin\nAllow: /admin/public\n");
        let u = |p: &str| Url::parse(&format!("https://example.jp{p}")).unwrap();
        assert!(!r.allows(&u("/admin/secret")));
        assert!(r.allows(&u("/admin/public/page")));
        assert_eq!(r.crawl_delay(), None);
    }

    #[test]
    fn odd_inputs_are_read_leniently() {
        let u = Url::parse("http://a.jp/x").unwrap();
        // Nothing usable: everything is allowed, no delay, no sitemaps.
        for body in [&b""[..], b"\xff\xfe\x00garbage", b"Disallow: /*$*$[[[(\n"] {
            let r = Robots::parse(body);
            assert!(r.allows(&u), "{body:?}");
            assert_eq!(r.crawl_delay(), None, "{body:?}");
            assert!(r.sitemaps().is_empty(), "{body:?}");
        }
        // A negative or non-numeric delay is no delay; the group still applies.
        let r = Robots::parse(
            b"User-agent: KotobaBot\nCrawl-delay: -5\nCrawl-delay: NaN\nDisallow: /x\n",
        );
        assert_eq!(r.crawl_delay(), None);
        assert!(!r.allows(&u));
        // An empty Sitemap line does not hide the next one (it is kept as written, and fails later as a
        // URL, with a note).
        let r = Robots::parse(b"Sitemap:\nSitemap: https://a.jp/s.xml\n");
        assert_eq!(
            r.sitemaps().last().map(String::as_str),
            Some("https://a.jp/s.xml")
        );
        // A huge file is read (at least its start).
        let huge = format!("User-agent: *\n{}", "Disallow: /a\n".repeat(100_000));
        let r = Robots::parse(huge.as_bytes());
        assert!(!r.allows(&Url::parse("http://a.jp/a").unwrap()));
        assert!(r.allows(&u));
    }

    #[test]
    fn missing_allows_all_and_unavailable_refuses_all() {
        let u = Url::parse("http://a.jp/x").unwrap();
        assert!(Robots::missing(404).allows(&u));
        let r = Robots::unavailable("503".into());
        assert!(!r.allows(&u) && r.disallows_all());
    }
}
