//! The site crawler behind training: fetches a tenant's pages safely and politely and hands them
//! over one by one. It delivers pages (decoded HTML or text), not an index; extraction and chunking
//! happen downstream.
//!
//! - [`guard`]: the SSRF guard (address classes, guarded DNS resolution);
//! - [`fetch`]: one guarded GET with manual redirects, validators, time and size limits;
//! - [`charset`]: bytes → text for any encoding Japanese, Korean and English sites use;
//! - [`robots`], [`sitemap`], [`links`]: what a site says about crawling it;
//! - [`scope`]: which hosts belong to the site;
//! - [`crawler`]: the breadth-first crawl that ties these together.
//!
//! Typical use (the training job):
//! ```ignore
//! let fetcher = Fetcher::system(FetchPolicy::default())?;
//! let (tx, mut rx) = tokio::sync::mpsc::channel(16);
//! let crawl = tokio::spawn(async move { Crawler::new(fetcher).crawl(request, tx).await });
//! while let Some(event) = rx.recv().await { /* persist each page as it arrives */ }
//! let report = crawl.await?;
//! ```

pub mod charset;
pub mod crawler;
pub mod fetch;
pub mod guard;
pub mod links;
pub mod robots;
pub mod scope;
pub mod sitemap;

#[cfg(test)]
mod testsite;

pub use crawler::{
    CrawlCounters, CrawlEvent, CrawlFailure, CrawlReport, CrawlRequest, CrawlState, CrawledPage,
    Crawler, CrawlerConfig, KnownPage, PageKind, SkipReason,
};
pub use fetch::{
    DEFAULT_USER_AGENT, FetchError, FetchOutcome, FetchPolicy, Fetched, Fetcher, Validators,
};
pub use guard::{
    AddrClass, Embedding, GuardedResolver, Refusal, Resolver, StaticResolver, SystemResolver,
    check_ip, check_url,
};
pub use scope::{Scope, ScopeMode};
