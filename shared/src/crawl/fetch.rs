//! One guarded GET: redirects followed by hand so every hop is re-checked, conditional requests,
//! time limits and a body cap.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{self, HeaderMap, HeaderValue};
use url::Url;

use super::guard::{
    GuardedResolver, Refusal, ResolveError, Resolver, SystemResolver, check_port, check_url,
    literal_ip, port_allowed,
};
use super::scope::Scope;

/// The User-Agent every crawler request carries; the robots.txt token is `KotobaBot`.
pub const DEFAULT_USER_AGENT: &str = "KotobaBot/0.1 (+https://kotoba.example/bot)";

/// How the fetcher behaves. `Default` is the production policy.
#[derive(Debug, Clone)]
pub struct FetchPolicy {
    /// Lets plain loopback addresses through the guard (local development and tests only). Every other
    /// refused range stays refused.
    pub allow_loopback: bool,
    /// Limit for a whole fetch: every redirect hop and reading the body.
    pub timeout: Duration,
    /// Limit for opening one connection.
    pub connect_timeout: Duration,
    /// Largest body read; a larger one fails with [`FetchError::TooLarge`].
    pub max_body: usize,
    /// Most redirects followed before [`FetchError::TooManyRedirects`].
    pub max_redirects: usize,
    pub user_agent: String,
    /// Ports allowed besides 80 and 443 (the operator's `KOTOBA_FETCH_ALLOWED_PORTS`).
    pub allowed_ports: Vec<u16>,
}

impl Default for FetchPolicy {
    fn default() -> Self {
        Self {
            allow_loopback: false,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_body: 5 * 1024 * 1024,
            max_redirects: 5,
            user_agent: DEFAULT_USER_AGENT.to_string(),
            allowed_ports: Vec::new(),
        }
    }
}

/// Validators from a previous fetch, sent as `If-None-Match` / `If-Modified-Since`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

impl Validators {
    pub fn is_empty(&self) -> bool {
        self.etag.is_none() && self.last_modified.is_none()
    }
}

/// A final (non-redirect) response.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The HTTP status of the final response (2xx, 4xx, 5xx, or a 3xx without `Location`).
    pub status: u16,
    /// The URL that answered, after redirects.
    pub url: Url,
    /// The URLs redirected from, in order (empty without redirects).
    pub redirects: Vec<Url>,
    pub content_type: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// All `X-Robots-Tag` values, joined with `, `.
    pub x_robots_tag: Option<String>,
    /// The body for 2xx responses (at most `max_body` bytes); empty for other statuses.
    pub body: Vec<u8>,
}

/// What a fetch produced.
#[derive(Debug, Clone)]
pub enum FetchOutcome {
    /// Any final response other than 304.
    Fetched(Fetched),
    /// The server answered 304 to our validators: the copy from the previous crawl is current.
    /// `body` is empty; `etag`/`last_modified` are the server's (possibly refreshed) validators.
    NotModified(Fetched),
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The SSRF guard refused the URL, a redirect target, or every address of a host.
    #[error(transparent)]
    Refused(Refusal),
    #[error("redirect to {0} leaves the crawl scope")]
    OutOfScope(Url),
    #[error("more than {0} redirects")]
    TooManyRedirects(usize),
    #[error("bad redirect from {from}: {reason}")]
    BadRedirect { from: Url, reason: String },
    #[error("body larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("timed out")]
    Timeout,
    /// DNS failure or refused/reset connection.
    #[error("could not connect: {0}")]
    Connect(String),
    #[error("HTTP error: {0}")]
    Http(String),
    #[error("could not build the HTTP client: {0}")]
    Client(String),
}

impl From<Refusal> for FetchError {
    fn from(r: Refusal) -> Self {
        FetchError::Refused(r)
    }
}

/// Fetches pages through the SSRF guard. Cheap to clone (one shared connection pool).
#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    policy: Arc<FetchPolicy>,
    /// For the port check of names in local mode (is every address loopback?).
    resolver: GuardedResolver,
}

impl Fetcher {
    /// A fetcher resolving names with `resolver`; every answer is filtered by the guard.
    pub fn new(policy: FetchPolicy, resolver: Arc<dyn Resolver>) -> Result<Self, FetchError> {
        let guarded = GuardedResolver::new(resolver, policy.allow_loopback);
        let port_resolver = guarded.clone();
        #[cfg(test)]
        let guarded = tripwire::LoopbackOnly(guarded);
        let client = crate::http::sockets::client_builder()
            // Our resolver is the only way to a socket for names: no proxies (a proxy would resolve
            // for us), no automatic redirects (each hop must be re-checked here).
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(guarded))
            .user_agent(policy.user_agent.clone())
            .connect_timeout(policy.connect_timeout)
            .timeout(policy.timeout)
            .referer(false)
            .pool_max_idle_per_host(4)
            .build()
            .map_err(|e| FetchError::Client(error_chain(&e)))?;
        Ok(Self {
            client,
            policy: Arc::new(policy),
            resolver: port_resolver,
        })
    }

    /// Refuses a port other than 80, 443 and the operator's, except (local mode) towards loopback.
    async fn check_port(&self, url: &Url) -> Result<(), FetchError> {
        let policy = &self.policy;
        if port_allowed(url, &policy.allowed_ports) {
            return Ok(());
        }
        // Only local mode can allow another port, and only if the host leads to loopback alone; an
        // address refusal is the better reason, so names are resolved (and checked) first.
        let addrs = match (literal_ip(url), url.host_str()) {
            (Some(ip), _) => vec![ip],
            (None, Some(host)) => match self.resolver.resolve_checked(host).await {
                Ok(addrs) => addrs,
                Err(ResolveError::Refused(r)) => return Err(r.into()),
                Err(ResolveError::Lookup(e)) => return Err(FetchError::Connect(e)),
            },
            (None, None) => Vec::new(),
        };
        check_port(url, &policy.allowed_ports, policy.allow_loopback, &addrs)?;
        Ok(())
    }

    /// A fetcher on the system resolver (production).
    pub fn system(policy: FetchPolicy) -> Result<Self, FetchError> {
        Self::new(policy, Arc::new(SystemResolver))
    }

    pub fn policy(&self) -> &FetchPolicy {
        &self.policy
    }

    /// GETs `url`, following up to `max_redirects` redirects anywhere the guard allows.
    pub async fn fetch(
        &self,
        url: &Url,
        validators: Option<&Validators>,
    ) -> Result<FetchOutcome, FetchError> {
        self.fetch_limited(url, validators, None).await
    }

    /// Like [`Fetcher::fetch`], but a redirect out of `scope` fails with [`FetchError::OutOfScope`]
    /// before the target is requested.
    pub async fn fetch_within(
        &self,
        url: &Url,
        validators: Option<&Validators>,
        scope: &Scope,
    ) -> Result<FetchOutcome, FetchError> {
        self.fetch_limited(url, validators, Some(scope)).await
    }

    async fn fetch_limited(
        &self,
        url: &Url,
        validators: Option<&Validators>,
        scope: Option<&Scope>,
    ) -> Result<FetchOutcome, FetchError> {
        tokio::time::timeout(self.policy.timeout, self.follow(url, validators, scope))
            .await
            .unwrap_or(Err(FetchError::Timeout))
    }

    async fn follow(
        &self,
        url: &Url,
        validators: Option<&Validators>,
        scope: Option<&Scope>,
    ) -> Result<FetchOutcome, FetchError> {
        let mut current = url.clone();
        current.set_fragment(None);
        let mut redirects = Vec::new();
        loop {
            check_url(&current, self.policy.allow_loopback)?;
            self.check_port(&current).await?;
            #[cfg(test)]
            tripwire::check_literal(&current)?;

            let mut request = self.client.get(current.as_str());
            if let Some(v) = validators {
                if let Some(etag) = v.etag.as_deref().and_then(header_value) {
                    request = request.header(header::IF_NONE_MATCH, etag);
                }
                if let Some(lm) = v.last_modified.as_deref().and_then(header_value) {
                    request = request.header(header::IF_MODIFIED_SINCE, lm);
                }
            }
            let mut response = request.send().await.map_err(from_reqwest)?;
            let status = response.status().as_u16();

            if matches!(status, 301 | 302 | 303 | 307 | 308)
                && let Some(location) = response.headers().get(header::LOCATION)
            {
                if redirects.len() >= self.policy.max_redirects {
                    return Err(FetchError::TooManyRedirects(self.policy.max_redirects));
                }
                let next = location
                    .to_str()
                    .ok()
                    .and_then(|l| current.join(l.trim()).ok())
                    .ok_or_else(|| FetchError::BadRedirect {
                        from: current.clone(),
                        reason: "unreadable Location header".into(),
                    })?;
                let mut next = next;
                next.set_fragment(None);
                if let Some(scope) = scope
                    && !scope.contains(&next)
                {
                    return Err(FetchError::OutOfScope(next));
                }
                redirects.push(std::mem::replace(&mut current, next));
                continue;
            }

            let headers = response.headers();
            let mut fetched = Fetched {
                status,
                url: current,
                redirects,
                content_type: header_string(headers, header::CONTENT_TYPE),
                etag: header_string(headers, header::ETAG),
                last_modified: header_string(headers, header::LAST_MODIFIED),
                x_robots_tag: joined_header(headers, "x-robots-tag"),
                body: Vec::new(),
            };
            if status == 304 {
                return Ok(FetchOutcome::NotModified(fetched));
            }
            if (200..300).contains(&status) {
                fetched.body = read_capped(&mut response, self.policy.max_body).await?;
            }
            return Ok(FetchOutcome::Fetched(fetched));
        }
    }
}

/// Reads the body chunk by chunk and stops as soon as it would pass `max`.
async fn read_capped(response: &mut reqwest::Response, max: usize) -> Result<Vec<u8>, FetchError> {
    let too_large = FetchError::TooLarge { limit: max };
    let mut body = Vec::new();
    if let Some(len) = response.content_length() {
        if len > max as u64 {
            return Err(too_large);
        }
        body.reserve(len as usize);
    }
    while let Some(chunk) = response.chunk().await.map_err(from_reqwest)? {
        if body.len() + chunk.len() > max {
            return Err(too_large);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn header_value(s: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(s).ok()
}

fn header_string(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn joined_header(headers: &HeaderMap, name: &str) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

/// Maps a reqwest error, recovering a guard [`Refusal`] from deep in its source chain (it comes
/// from our resolver, through hyper's connector).
fn from_reqwest(e: reqwest::Error) -> FetchError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = source {
        if let Some(r) = err.downcast_ref::<Refusal>() {
            return FetchError::Refused(r.clone());
        }
        #[cfg(test)]
        if let Some(t) = err.downcast_ref::<tripwire::Tripped>() {
            return FetchError::Http(t.to_string());
        }
        source = err.source();
    }
    if e.is_timeout() {
        FetchError::Timeout
    } else if e.is_connect() {
        FetchError::Connect(error_chain(&e))
    } else {
        FetchError::Http(error_chain(&e))
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Test builds only: a last line of defence so that even a broken guard cannot make a test send
/// traffic anywhere but loopback (this machine's rule). It fails loudly instead of connecting.
#[cfg(test)]
mod tripwire {
    use std::net::{IpAddr, SocketAddr};

    use url::{Host, Url};

    use super::super::guard::GuardedResolver;
    use super::FetchError;

    #[derive(Debug, thiserror::Error)]
    #[error("TEST TRIPWIRE: the guard let a test reach non-loopback {0}")]
    pub struct Tripped(pub IpAddr);

    pub fn check_literal(url: &Url) -> Result<(), FetchError> {
        let ip = match url.host() {
            Some(Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(Host::Ipv6(ip)) => IpAddr::V6(ip),
            _ => return Ok(()),
        };
        if ip.is_loopback() {
            Ok(())
        } else {
            Err(FetchError::Http(Tripped(ip).to_string()))
        }
    }

    pub struct LoopbackOnly(pub GuardedResolver);

    impl reqwest::dns::Resolve for LoopbackOnly {
        fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
            let inner = self.0.resolve(name);
            Box::pin(async move {
                let addrs: Vec<SocketAddr> = inner.await?.collect();
                if let Some(bad) = addrs.iter().find(|a| !a.ip().is_loopback()) {
                    return Err(Box::new(Tripped(bad.ip())) as _);
                }
                let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
                Ok(addrs)
            })
        }
    }
}

#[cfg(test)]
#[path = "fetch_tests.rs"]
mod tests;
