//! The site crawl: breadth-first from a start URL and the site's sitemaps, within scope, politely,
//! reporting each page on a channel as soon as it is known.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use url::Url;

use super::charset::{self, mime_essence};
use super::fetch::{FetchError, FetchOutcome, Fetched, Fetcher, Validators};
use super::guard::check_url;
use super::links::{self, PageLinks, RobotsDirectives};
use super::robots::{Robots, fetch_robots};
use super::scope::{Scope, ScopeMode};
use super::sitemap::{MAX_SITEMAP_ENTRIES, SitemapDoc, parse_sitemap};
use crate::sites::domains::AllowedDomain;

/// What to crawl.
#[derive(Debug, Clone)]
pub struct CrawlRequest {
    /// Where the crawl starts (depth 0). Its host is always in scope.
    pub start: Url,
    /// The site's other hosts (`*.example.jp` covers subdomains).
    pub allowed_domains: Vec<AllowedDomain>,
    /// Most page requests sent (robots.txt and sitemap requests not counted). Every request counts,
    /// including ones answered 304, 404 or with a skipped content type.
    pub max_pages: usize,
    /// Deepest link distance from the start URL; sitemap entries count as depth 1.
    pub max_depth: u32,
    /// Pages from the previous crawl: re-queued at their depth (so pages below an unchanged page are
    /// still visited) and fetched conditionally with their validators.
    pub known_pages: Vec<KnownPage>,
    /// Seed from `Sitemap:` lines in robots.txt and from `/sitemap.xml`.
    pub use_sitemaps: bool,
    /// The start URL's section (default) or its whole host.
    pub scope: ScopeMode,
    /// Continue a crawl that was suspended (its frontier, the URLs it saw, its counters) instead of
    /// starting afresh: the start URL and sitemaps are not seeded again, nothing seen is fetched again,
    /// and `max_pages` counts the suspended crawl's requests too.
    pub resume: Option<CrawlState>,
    /// Send no new request after this moment: requests in flight finish and are reported, then the
    /// crawl returns with [`CrawlReport::suspended`] holding what is left (a training job working to
    /// a time budget continues it in a later invocation).
    pub stop_at: Option<Instant>,
}

/// A suspended crawl, to be continued with [`CrawlRequest::resume`] (possibly in another process:
/// it is serialisable). URLs are normalised strings.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CrawlState {
    /// URLs still queued, with their depth, in crawl order.
    pub frontier: Vec<(String, u32)>,
    /// Every URL queued, fetched, redirected to or claimed as a canonical so far.
    pub seen: Vec<String>,
    /// Canonical URLs of the pages produced so far.
    pub produced: Vec<String>,
    pub counters: CrawlCounters,
    pub notes: Vec<String>,
}

impl CrawlRequest {
    /// A request with the default limits (100 pages, depth 5, sitemaps on).
    pub fn new(start: Url, allowed_domains: Vec<AllowedDomain>) -> Self {
        Self {
            start,
            allowed_domains,
            max_pages: 100,
            max_depth: 5,
            known_pages: Vec::new(),
            use_sitemaps: true,
            scope: ScopeMode::Prefix,
            resume: None,
            stop_at: None,
        }
    }
}

/// A page from an earlier crawl (see [`CrawlRequest::known_pages`]).
#[derive(Debug, Clone)]
pub struct KnownPage {
    /// The URL as it was requested (its `requested_url`).
    pub url: Url,
    pub depth: u32,
    pub validators: Validators,
    /// The links it had (its `links`): followed again when it answers 304, since a 304 has no body
    /// to find them in, so pages reachable only through an unchanged page are still crawled.
    pub links: Vec<Url>,
}

/// Politeness and sitemap limits; `Default` is the production setting.
#[derive(Debug, Clone)]
pub struct CrawlerConfig {
    /// Requests in flight per host when robots.txt sets no crawl delay.
    pub per_host_in_flight: usize,
    /// Longest robots.txt `Crawl-delay` honoured as given; longer ones are capped to this (and the
    /// report says so), so one site cannot stall a training job for hours.
    pub max_crawl_delay: Duration,
    /// Most sitemap files fetched in one crawl.
    pub max_sitemap_files: usize,
    /// Deepest nesting of sitemap indexes followed.
    pub max_sitemap_depth: u32,
}

impl Default for CrawlerConfig {
    fn default() -> Self {
        Self {
            per_host_in_flight: 4,
            max_crawl_delay: Duration::from_secs(5),
            max_sitemap_files: 20,
            max_sitemap_depth: 3,
        }
    }
}

/// HTML or plain text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageKind {
    Html,
    Text,
}

/// A page to index.
#[derive(Debug, Clone)]
pub struct CrawledPage {
    pub requested_url: Url,
    /// Where the request ended after redirects.
    pub final_url: Url,
    /// The page's identity: its in-scope `<link rel=canonical>`, else `final_url`. Exactly one page
    /// is produced per canonical URL in a crawl.
    pub canonical_url: Url,
    pub depth: u32,
    pub status: u16,
    pub content_type: Option<String>,
    pub kind: PageKind,
    /// The encoding the body was decoded from (`Shift_JIS`, `EUC-JP`, `UTF-8` …).
    pub encoding: &'static str,
    /// The decoded HTML source, or the plain text.
    pub text: String,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// The in-scope links it had (empty under `nofollow`), to keep for the next crawl's [`KnownPage`].
    pub links: Vec<Url>,
}

/// Why a URL produced no page although nothing failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// robots.txt disallows it (or could not be read: see the report's notes).
    Robots,
    /// `noindex` in `<meta name=robots>` or `X-Robots-Tag`.
    Noindex,
    /// Another page with this canonical URL was already produced.
    Duplicate { canonical: Url },
    /// Neither HTML nor plain text.
    ContentType(Option<String>),
    /// It redirected outside the crawl's scope.
    RedirectOutOfScope(Url),
}

/// Why a URL failed.
#[derive(Debug, thiserror::Error)]
pub enum CrawlFailure {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// A final status other than 2xx, 304, 404 and 410.
    #[error("HTTP status {0}")]
    Status(u16),
}

/// One result, sent as soon as it is known.
#[derive(Debug)]
pub enum CrawlEvent {
    Page(Box<CrawledPage>),
    /// The server answered 304 to the validators of a known page: keep the indexed copy.
    NotModified {
        requested_url: Url,
        final_url: Url,
        depth: u32,
        etag: Option<String>,
        last_modified: Option<String>,
    },
    /// 404 or 410: remove it from the index.
    Gone {
        requested_url: Url,
        final_url: Url,
        status: u16,
        depth: u32,
    },
    Skipped {
        url: Url,
        depth: u32,
        reason: SkipReason,
    },
    Failed {
        url: Url,
        depth: u32,
        error: CrawlFailure,
    },
}

/// Totals for a crawl.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct CrawlCounters {
    /// Page requests sent (the `max_pages` budget).
    pub fetched: usize,
    pub produced: usize,
    pub not_modified: usize,
    pub gone: usize,
    pub skipped_by_type: usize,
    pub refused_by_robots: usize,
    pub refused_by_guard: usize,
    pub noindex: usize,
    pub duplicates: usize,
    pub redirected_out_of_scope: usize,
    /// Failures other than guard refusals: network, timeouts, oversize bodies, 5xx and other statuses.
    pub errors: usize,
    /// Page URLs taken from sitemaps.
    pub sitemap_urls: usize,
    /// Distinct URLs found in links and sitemaps that are outside the crawl's scope (other sections,
    /// other hosts): never fetched, never counted against `max_pages`.
    pub out_of_scope: usize,
}

/// How a crawl went.
#[derive(Debug, Clone, Default)]
pub struct CrawlReport {
    pub counters: CrawlCounters,
    /// Things a person should know (robots.txt unavailable, crawl delay capped, bad sitemaps …).
    pub notes: Vec<String>,
    /// Stopped because `max_pages` requests were sent while URLs were still queued.
    pub page_limit_reached: bool,
    /// Stopped because the event receiver was dropped.
    pub cancelled: bool,
    /// Stopped at [`CrawlRequest::stop_at`] with URLs still queued: continue from here.
    pub suspended: Option<CrawlState>,
}

/// Crawls sites through a guarded [`Fetcher`].
#[derive(Clone)]
pub struct Crawler {
    fetcher: Fetcher,
    config: CrawlerConfig,
}

impl Crawler {
    pub fn new(fetcher: Fetcher) -> Self {
        Self::with_config(fetcher, CrawlerConfig::default())
    }

    pub fn with_config(fetcher: Fetcher, config: CrawlerConfig) -> Self {
        Self { fetcher, config }
    }

    /// Crawls `request`, sending every result on `events` as it comes (memory stays flat in the
    /// number of pages: nothing is kept but the URLs seen). Returns the totals when done. Dropping
    /// the receiver stops the crawl.
    pub async fn crawl(
        &self,
        request: CrawlRequest,
        events: mpsc::Sender<CrawlEvent>,
    ) -> CrawlReport {
        let scope = Scope::new(&request.start, &request.allowed_domains, request.scope);
        // The start's own section ranks first even when the whole host is in scope.
        let section = Scope::new(&request.start, &request.allowed_domains, ScopeMode::Prefix);
        let mut run = Run {
            crawler: self,
            scope,
            section,
            out_of_scope: HashSet::new(),
            max_depth: request.max_depth,
            max_pages: request.max_pages,
            // Enough queued URLs to spend the budget even when many are skipped, but bounded.
            max_queued: request.max_pages.saturating_mul(20).max(1_000),
            seen: HashSet::new(),
            produced: HashSet::new(),
            frontier: BTreeMap::new(),
            queued: 0,
            stop_at: request.stop_at,
            validators: HashMap::new(),
            known_links: HashMap::new(),
            hosts: HashMap::new(),
            report: CrawlReport::default(),
            events,
        };
        run.run(request).await;
        run.report
    }
}

/// A URL waiting to be fetched.
struct Item {
    url: Url,
    depth: u32,
}

/// Politeness state of one origin.
struct HostState {
    robots: Arc<Robots>,
    in_flight: usize,
    delay: Option<Duration>,
    next_at: Instant,
}

/// What a fetch task found, processed off the main loop.
enum Processed {
    Page {
        fetched: Fetched,
        kind: PageKind,
        decoded: charset::Decoded,
        links: PageLinks,
    },
    NotModified(Fetched),
    Gone(Fetched),
    WrongType(Fetched),
    Status(Fetched),
    Error(FetchError),
}

/// One crawl's state, owned by its main loop.
struct Run<'a> {
    crawler: &'a Crawler,
    scope: Scope,
    /// The start URL's section (equal to `scope` in prefix mode).
    section: Scope,
    /// Out-of-scope URLs found so far (bounded like `seen`), for the `out_of_scope` count.
    out_of_scope: HashSet<String>,
    max_depth: u32,
    max_pages: usize,
    max_queued: usize,
    /// Normalised URLs queued, fetched, redirected to, or claimed as a canonical.
    seen: HashSet<String>,
    /// Canonical URLs of produced pages.
    produced: HashSet<String>,
    /// Breadth first: always the lowest depth next.
    frontier: BTreeMap<u32, VecDeque<Item>>,
    queued: usize,
    stop_at: Option<Instant>,
    validators: HashMap<String, Validators>,
    /// Links of known pages, followed when they answer 304.
    known_links: HashMap<String, Vec<Url>>,
    hosts: HashMap<String, HostState>,
    report: CrawlReport,
    events: mpsc::Sender<CrawlEvent>,
}

/// Politeness is per origin (scheme, host, port), like robots.txt.
fn origin_key(url: &Url) -> String {
    url.origin().ascii_serialization()
}

impl Run<'_> {
    async fn run(&mut self, request: CrawlRequest) {
        let allow_loopback = self.crawler.fetcher.policy().allow_loopback;
        let start = check_url(&request.start, allow_loopback)
            .and_then(|()| links::normalise(&request.start).ok_or(super::guard::Refusal::NoHost));
        let start = match start {
            Ok(start) => start,
            Err(refusal) => {
                self.report.counters.refused_by_guard += 1;
                self.emit(CrawlEvent::Failed {
                    url: request.start.clone(),
                    depth: 0,
                    error: CrawlFailure::Fetch(FetchError::Refused(refusal)),
                })
                .await;
                return;
            }
        };

        self.host(&start).await;
        match request.resume {
            Some(state) => self.restore(state),
            None => {
                self.enqueue(start.clone(), 0);
                if request.use_sitemaps && self.max_depth >= 1 {
                    self.seed_from_sitemaps(&start).await;
                }
            }
        }
        for known in request.known_pages {
            if let Some(url) = links::normalise(&known.url) {
                if !known.validators.is_empty() {
                    self.validators
                        .insert(url.as_str().to_string(), known.validators);
                }
                self.known_links
                    .insert(url.as_str().to_string(), known.links);
                self.enqueue(url, known.depth);
            }
        }
        self.main_loop().await;
    }

    /// Picks a suspended crawl up where it stopped.
    fn restore(&mut self, state: CrawlState) {
        self.seen.extend(state.seen);
        self.produced.extend(state.produced);
        self.report.counters = state.counters;
        self.report.notes = state.notes;
        for (raw, depth) in state.frontier {
            if let Ok(url) = Url::parse(&raw) {
                self.seen.insert(url.as_str().to_string());
                self.frontier
                    .entry(depth)
                    .or_default()
                    .push_back(Item { url, depth });
                self.queued += 1;
            }
        }
    }

    fn past_stop(&self) -> bool {
        self.stop_at.is_some_and(|t| Instant::now() >= t)
    }

    /// Ends the crawl at its stop time, keeping what is left for a later continuation.
    fn suspend(&mut self) {
        let frontier = std::mem::take(&mut self.frontier)
            .into_values()
            .flatten()
            .map(|item| (item.url.to_string(), item.depth))
            .collect();
        self.queued = 0;
        self.report.suspended = Some(CrawlState {
            frontier,
            seen: self.seen.iter().cloned().collect(),
            produced: self.produced.iter().cloned().collect(),
            counters: self.report.counters.clone(),
            notes: self.report.notes.clone(),
        });
    }

    async fn main_loop(&mut self) {
        let per_host = self.crawler.config.per_host_in_flight.max(1);
        let max_in_flight = per_host.saturating_mul(2).min(16);
        let mut tasks: JoinSet<Processed> = JoinSet::new();
        let mut running: HashMap<tokio::task::Id, (Item, String)> = HashMap::new();

        loop {
            if self.report.cancelled {
                tasks.abort_all();
                break;
            }
            while self.report.counters.fetched < self.max_pages
                && tasks.len() < max_in_flight
                && !self.past_stop()
            {
                let Some(item) = self.next_dispatchable(Instant::now(), per_host) else {
                    break;
                };
                let origin = origin_key(&item.url);
                let robots = self.host(&item.url).await;
                if let Some(refusal) = robots.refusal() {
                    self.report.counters.refused_by_guard += 1;
                    self.emit(CrawlEvent::Failed {
                        url: item.url,
                        depth: item.depth,
                        error: CrawlFailure::Fetch(FetchError::Refused(refusal.clone())),
                    })
                    .await;
                    continue;
                }
                if !robots.allows(&item.url) {
                    self.report.counters.refused_by_robots += 1;
                    self.emit(CrawlEvent::Skipped {
                        url: item.url,
                        depth: item.depth,
                        reason: SkipReason::Robots,
                    })
                    .await;
                    continue;
                }
                if let Some(host) = self.hosts.get_mut(&origin) {
                    host.in_flight += 1;
                    if let Some(delay) = host.delay {
                        host.next_at = Instant::now() + delay;
                    }
                }
                self.report.counters.fetched += 1;
                let fetcher = self.crawler.fetcher.clone();
                let scope = self.scope.clone();
                let url = item.url.clone();
                let validators = self.validators.get(url.as_str()).cloned();
                let handle = tasks.spawn(async move {
                    fetch_and_process(&fetcher, &scope, &url, validators.as_ref()).await
                });
                running.insert(handle.id(), (item, origin));
            }

            if tasks.is_empty() {
                if self.queued == 0 {
                    break;
                }
                if self.report.counters.fetched >= self.max_pages {
                    self.report.page_limit_reached = true;
                    break;
                }
                if self.past_stop() {
                    self.suspend();
                    break;
                }
                // Everything queued waits for a crawl delay.
                match self.next_wake() {
                    // Not past the stop time: it ends the wait (and the crawl) if it comes first.
                    Some(wake) => {
                        tokio::time::sleep_until(self.stop_at.map_or(wake, |t| t.min(wake))).await
                    }
                    None => break,
                }
                continue;
            }

            let joined = match self.next_wake() {
                Some(wake) if self.queued > 0 => tokio::select! {
                    joined = tasks.join_next_with_id() => joined,
                    _ = tokio::time::sleep_until(wake) => continue,
                },
                _ => tasks.join_next_with_id().await,
            };
            let (id, processed) = match joined {
                Some(Ok((id, processed))) => (id, Ok(processed)),
                Some(Err(e)) => (e.id(), Err(e)),
                None => continue,
            };
            let Some((item, origin)) = running.remove(&id) else {
                continue;
            };
            if let Some(host) = self.hosts.get_mut(&origin) {
                host.in_flight = host.in_flight.saturating_sub(1);
            }
            match processed {
                Ok(processed) => self.handle(item, processed).await,
                Err(e) => {
                    // Only a bug panics a task; report it and go on with the rest.
                    self.report.counters.errors += 1;
                    self.emit(CrawlEvent::Failed {
                        url: item.url,
                        depth: item.depth,
                        error: CrawlFailure::Fetch(FetchError::Http(format!("task failed: {e}"))),
                    })
                    .await;
                }
            }
        }
        if self.queued > 0 && self.report.counters.fetched >= self.max_pages {
            self.report.page_limit_reached = true;
        }
    }

    /// The first queued URL (lowest depth first) whose host has room, without waiting.
    fn next_dispatchable(&mut self, now: Instant, per_host: usize) -> Option<Item> {
        // Looking further than this for a free host is not worth the scan.
        const SCAN: usize = 256;
        let mut found = None;
        let mut scanned = 0;
        'levels: for (depth, level) in self.frontier.iter() {
            for (i, item) in level.iter().enumerate() {
                if scanned >= SCAN {
                    break 'levels;
                }
                scanned += 1;
                let ready = match self.hosts.get(&origin_key(&item.url)) {
                    None => true,
                    Some(h) => {
                        let limit = if h.delay.is_some() { 1 } else { per_host };
                        h.in_flight < limit && h.next_at <= now
                    }
                };
                if ready {
                    found = Some((*depth, i));
                    break 'levels;
                }
            }
        }
        let (depth, i) = found?;
        let level = self.frontier.get_mut(&depth)?;
        let item = level.remove(i)?;
        if level.is_empty() {
            self.frontier.remove(&depth);
        }
        self.queued -= 1;
        Some(item)
    }

    /// The earliest future moment a crawl delay ends, if any host is waiting on one.
    fn next_wake(&self) -> Option<Instant> {
        let now = Instant::now();
        self.hosts
            .values()
            .map(|h| h.next_at)
            .filter(|t| *t > now)
            .min()
    }

    /// The robots rules of `url`'s origin, fetched on first use.
    async fn host(&mut self, url: &Url) -> Arc<Robots> {
        let origin = origin_key(url);
        if let Some(h) = self.hosts.get(&origin) {
            return h.robots.clone();
        }
        let robots = Arc::new(fetch_robots(&self.crawler.fetcher, url).await);
        if let super::robots::RobotsSource::Unavailable { reason } = robots.source() {
            self.report.notes.push(reason.clone());
        }
        let max = self.crawler.config.max_crawl_delay;
        let delay = robots.crawl_delay().map(|d| {
            if d > max {
                self.report.notes.push(format!(
                    "{origin}: robots.txt asks for a {}s crawl delay; capped to {}s",
                    d.as_secs_f32(),
                    max.as_secs_f32()
                ));
                max
            } else {
                d
            }
        });
        self.hosts.insert(
            origin,
            HostState {
                robots: robots.clone(),
                in_flight: 0,
                delay,
                next_at: Instant::now(),
            },
        );
        robots
    }

    /// Queues a normalised URL if it is new, in scope and within the limits.
    fn enqueue(&mut self, url: Url, depth: u32) -> bool {
        if depth > self.max_depth
            || self.seen.len() >= self.max_queued
            || !self.scope.contains(&url)
            || !self.seen.insert(url.as_str().to_string())
        {
            return false;
        }
        self.frontier
            .entry(depth)
            .or_default()
            .push_back(Item { url, depth });
        self.queued += 1;
        true
    }

    /// Counts a discovered URL that is outside the scope (once per URL).
    fn note_out_of_scope(&mut self, url: &Url) {
        if self.out_of_scope.len() < self.max_queued
            && self.out_of_scope.insert(url.as_str().to_string())
        {
            self.report.counters.out_of_scope += 1;
        }
    }

    /// Queues a sitemap entry: at depth 1 in the start's section, one level further outside it (host
    /// scope), so the section the tenant pointed at is crawled first.
    fn enqueue_listed(&mut self, page: Url) -> bool {
        if !self.scope.contains(&page) {
            self.note_out_of_scope(&page);
            return false;
        }
        let depth = if self.section.contains(&page) { 1 } else { 2 };
        self.enqueue(page, depth)
    }

    async fn seed_from_sitemaps(&mut self, start: &Url) {
        let robots = self.host(start).await;
        // Sitemap files live anywhere on the site's hosts; their entries are filtered by scope.
        let files_scope = self.scope.whole_hosts();
        let mut pending: VecDeque<(Url, u32)> = VecDeque::new();
        let mut listed: HashSet<String> = HashSet::new();
        let mut from_robots: Vec<Url> = Vec::new();
        for s in robots.sitemaps() {
            match Url::parse(s.trim()).ok().and_then(|u| links::normalise(&u)) {
                Some(u) if files_scope.contains(&u) => from_robots.push(u),
                _ => self.report.notes.push(format!(
                    "sitemap {s:?} from robots.txt ignored: not in scope"
                )),
            }
        }
        // The section's own sitemaps first: they are the likeliest to list its pages within the
        // file limit.
        from_robots.sort_by_key(|u| !self.section.contains(u));
        for u in from_robots {
            if listed.insert(u.as_str().to_string()) {
                pending.push_back((u, 0));
            }
        }
        let mut default = start.clone();
        default.set_path("/sitemap.xml");
        default.set_query(None);
        // The conventional location is tried quietly: most sites without one answer 404.
        let quiet = default.as_str().to_string();
        if robots.allows(&default) && listed.insert(quiet.clone()) {
            pending.push_back((default, 0));
        }

        let budget = self.max_pages;
        let mut files = 0;
        while let Some((url, level)) = pending.pop_front() {
            if files >= self.crawler.config.max_sitemap_files {
                self.report
                    .notes
                    .push(format!("stopped reading sitemaps after {files} files"));
                break;
            }
            if self.report.counters.sitemap_urls >= budget {
                break;
            }
            files += 1;
            let is_quiet = url.as_str() == quiet;
            let body = match self
                .crawler
                .fetcher
                .fetch_within(&url, None, &files_scope)
                .await
            {
                Ok(FetchOutcome::Fetched(f)) if (200..300).contains(&f.status) => f.body,
                Ok(FetchOutcome::Fetched(f)) => {
                    if !is_quiet {
                        self.report
                            .notes
                            .push(format!("sitemap {url} answered {}", f.status));
                    }
                    continue;
                }
                Ok(FetchOutcome::NotModified(_)) => continue,
                Err(e) => {
                    if let FetchError::Refused(_) = e {
                        self.report.counters.refused_by_guard += 1;
                    }
                    self.report
                        .notes
                        .push(format!("sitemap {url} could not be fetched: {e}"));
                    continue;
                }
            };
            match parse_sitemap(&body, MAX_SITEMAP_ENTRIES) {
                Ok(SitemapDoc::UrlSet(locs)) => {
                    for loc in locs {
                        if self.report.counters.sitemap_urls >= budget {
                            break;
                        }
                        let Some(page) = Url::parse(&loc).ok().and_then(|u| links::normalise(&u))
                        else {
                            continue;
                        };
                        if self.enqueue_listed(page) {
                            self.report.counters.sitemap_urls += 1;
                        }
                    }
                }
                Ok(SitemapDoc::Index(locs)) => {
                    if level >= self.crawler.config.max_sitemap_depth {
                        self.report
                            .notes
                            .push(format!("sitemap index {url} nested too deep; not followed"));
                        continue;
                    }
                    for loc in locs {
                        let Some(child) = Url::parse(&loc).ok().and_then(|u| links::normalise(&u))
                        else {
                            continue;
                        };
                        if files_scope.contains(&child) && listed.insert(child.as_str().to_string())
                        {
                            pending.push_back((child, level + 1));
                        }
                    }
                }
                Err(e) => {
                    if !is_quiet {
                        self.report.notes.push(format!("sitemap {url}: {e}"));
                    }
                }
            }
        }
    }

    async fn handle(&mut self, item: Item, processed: Processed) {
        let Item { url, depth } = item;
        match processed {
            Processed::Error(FetchError::OutOfScope(target)) => {
                self.report.counters.redirected_out_of_scope += 1;
                self.emit(CrawlEvent::Skipped {
                    url,
                    depth,
                    reason: SkipReason::RedirectOutOfScope(target),
                })
                .await;
            }
            Processed::Error(error) => {
                if matches!(error, FetchError::Refused(_)) {
                    self.report.counters.refused_by_guard += 1;
                } else {
                    self.report.counters.errors += 1;
                }
                self.emit(CrawlEvent::Failed {
                    url,
                    depth,
                    error: CrawlFailure::Fetch(error),
                })
                .await;
            }
            Processed::Status(f) => {
                self.report.counters.errors += 1;
                self.seen.insert(f.url.as_str().to_string());
                self.emit(CrawlEvent::Failed {
                    url,
                    depth,
                    error: CrawlFailure::Status(f.status),
                })
                .await;
            }
            Processed::Gone(f) => {
                self.report.counters.gone += 1;
                self.seen.insert(f.url.as_str().to_string());
                self.emit(CrawlEvent::Gone {
                    requested_url: url,
                    final_url: f.url,
                    status: f.status,
                    depth,
                })
                .await;
            }
            Processed::NotModified(f) => {
                self.report.counters.not_modified += 1;
                self.seen.insert(f.url.as_str().to_string());
                // Unchanged, so its links are what they were: follow them as if it had been fetched.
                let known = self.known_links.remove(url.as_str()).unwrap_or_default();
                for link in known {
                    // enqueue checks scope, depth and what was already seen.
                    self.enqueue(link, depth.saturating_add(1));
                }
                self.emit(CrawlEvent::NotModified {
                    requested_url: url,
                    final_url: f.url,
                    depth,
                    etag: f.etag,
                    last_modified: f.last_modified,
                })
                .await;
            }
            Processed::WrongType(f) => {
                self.report.counters.skipped_by_type += 1;
                self.seen.insert(f.url.as_str().to_string());
                self.emit(CrawlEvent::Skipped {
                    url,
                    depth,
                    reason: SkipReason::ContentType(f.content_type),
                })
                .await;
            }
            Processed::Page {
                fetched,
                kind,
                decoded,
                links,
            } => {
                self.seen.insert(fetched.url.as_str().to_string());
                let directives = links.directives.union(
                    fetched
                        .x_robots_tag
                        .as_deref()
                        .map(links::x_robots_tag)
                        .unwrap_or_default(),
                );
                let canonical = links
                    .canonical
                    .filter(|c| self.scope.contains(c))
                    .unwrap_or_else(|| fetched.url.clone());
                let followed: Vec<Url> = if directives.nofollow {
                    Vec::new()
                } else {
                    let (inside, outside): (Vec<Url>, Vec<Url>) = links
                        .links
                        .into_iter()
                        .partition(|l| self.scope.contains(l));
                    for l in &outside {
                        self.note_out_of_scope(l);
                    }
                    inside
                };
                for link in &followed {
                    self.enqueue(link.clone(), depth.saturating_add(1));
                }
                let is_alias = links::normalise(&fetched.url).is_some_and(|own| own != canonical);
                if is_alias && !directives.noindex {
                    // An alias: the canonical page is the document, fetched in its own right (so the
                    // result does not depend on which of the two the crawl reached first).
                    self.enqueue(canonical.clone(), depth);
                    self.report.counters.duplicates += 1;
                    self.emit(CrawlEvent::Skipped {
                        url,
                        depth,
                        reason: SkipReason::Duplicate { canonical },
                    })
                    .await;
                    return;
                }
                if directives.noindex {
                    self.report.counters.noindex += 1;
                    self.emit(CrawlEvent::Skipped {
                        url,
                        depth,
                        reason: SkipReason::Noindex,
                    })
                    .await;
                    return;
                }
                if !self.produced.insert(canonical.as_str().to_string()) {
                    self.report.counters.duplicates += 1;
                    self.emit(CrawlEvent::Skipped {
                        url,
                        depth,
                        reason: SkipReason::Duplicate { canonical },
                    })
                    .await;
                    return;
                }
                self.report.counters.produced += 1;
                let page = CrawledPage {
                    requested_url: url,
                    final_url: fetched.url,
                    canonical_url: canonical,
                    depth,
                    status: fetched.status,
                    content_type: fetched.content_type,
                    kind,
                    encoding: decoded.encoding.name(),
                    text: decoded.text,
                    etag: fetched.etag,
                    last_modified: fetched.last_modified,
                    links: followed,
                };
                self.emit(CrawlEvent::Page(Box::new(page))).await;
            }
        }
    }

    async fn emit(&mut self, event: CrawlEvent) {
        if self.events.send(event).await.is_err() {
            self.report.cancelled = true;
        }
    }
}

/// Fetches one page and does the CPU work (decoding, parsing) in its task, off the main loop.
async fn fetch_and_process(
    fetcher: &Fetcher,
    scope: &Scope,
    url: &Url,
    validators: Option<&Validators>,
) -> Processed {
    let fetched = match fetcher.fetch_within(url, validators, scope).await {
        Ok(FetchOutcome::Fetched(f)) => f,
        Ok(FetchOutcome::NotModified(f)) => return Processed::NotModified(f),
        Err(e) => return Processed::Error(e),
    };
    match fetched.status {
        200..=299 => {}
        404 | 410 => return Processed::Gone(fetched),
        _ => return Processed::Status(fetched),
    }
    let Some(kind) = page_kind(fetched.content_type.as_deref(), &fetched.body) else {
        return Processed::WrongType(fetched);
    };
    let decoded = charset::decode(
        &fetched.body,
        fetched.content_type.as_deref(),
        fetched.url.host_str(),
    );
    let links = match kind {
        PageKind::Html => links::extract(&decoded.text, &fetched.url),
        PageKind::Text => PageLinks {
            directives: RobotsDirectives::default(),
            ..PageLinks::default()
        },
    };
    Processed::Page {
        fetched,
        kind,
        decoded,
        links,
    }
}

/// HTML and plain text are pages; anything else is skipped. Without a Content-Type, a body that
/// starts like an HTML document is taken as HTML.
fn page_kind(content_type: Option<&str>, body: &[u8]) -> Option<PageKind> {
    match content_type.map(mime_essence).as_deref() {
        Some("text/html" | "application/xhtml+xml") => Some(PageKind::Html),
        Some("text/plain") => Some(PageKind::Text),
        Some(_) => None,
        None => {
            let head = &body[..body.len().min(512)];
            let head = String::from_utf8_lossy(head)
                .trim_start()
                .to_ascii_lowercase();
            (head.starts_with("<!doctype html") || head.starts_with("<html"))
                .then_some(PageKind::Html)
        }
    }
}

#[cfg(test)]
#[path = "crawler_tests.rs"]
mod tests;
