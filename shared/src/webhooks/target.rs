//! Where a webhook may be delivered: https URLs whose every address passes the crawler's SSRF guard
//! (`crawl::guard`). Checked when an endpoint is created or changed, and again before every attempt;
//! the HTTP client then resolves through the same guard, so it connects only to checked addresses.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use crate::crawl::guard::{
    GuardedResolver, Refusal, ResolveError, Resolver, check_port, check_url, literal_ip,
};

/// The longest URL accepted.
pub const MAX_URL_LEN: usize = 2048;
/// The limit on one delivery attempt (connect, send, read the start of the answer).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the guard lets through (the operator's crawl settings apply to webhooks too).
#[derive(Debug, Clone, Default)]
pub struct TargetPolicy {
    /// Local mode: plain http to loopback, on any port.
    pub allow_loopback: bool,
    pub allowed_ports: Vec<u16>,
}

/// Why a URL may not receive webhooks.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TargetError {
    #[error("not a valid URL: {0}")]
    Malformed(String),
    #[error("webhook URLs must use https")]
    NotHttps,
    #[error("plain http is allowed only to loopback in local mode")]
    HttpNotLoopback,
    #[error(transparent)]
    Refused(Refusal),
    #[error("{0}")]
    Lookup(String),
}

/// A parsed webhook URL: absolute, http(s), no credentials, no fragment, at most [`MAX_URL_LEN`].
pub fn parse_url(raw: &str) -> Result<Url, TargetError> {
    if raw.len() > MAX_URL_LEN {
        return Err(TargetError::Malformed(format!(
            "longer than {MAX_URL_LEN} characters"
        )));
    }
    let url = Url::parse(raw.trim()).map_err(|e| TargetError::Malformed(e.to_string()))?;
    if url.fragment().is_some() {
        return Err(TargetError::Malformed("must not carry a #fragment".into()));
    }
    Ok(url)
}

/// The guard as webhooks use it: the scheme rule, then the crawler's checks, then DNS through the
/// guarded resolver. Returns the permitted addresses.
#[derive(Clone)]
pub struct TargetGuard {
    policy: TargetPolicy,
    resolver: GuardedResolver,
}

impl TargetGuard {
    pub fn new(policy: TargetPolicy, resolver: Arc<dyn Resolver>) -> Self {
        let resolver = GuardedResolver::new(resolver, policy.allow_loopback);
        Self { policy, resolver }
    }

    pub fn resolver(&self) -> &GuardedResolver {
        &self.resolver
    }

    pub async fn check(&self, url: &Url) -> Result<Vec<IpAddr>, TargetError> {
        let http = match url.scheme() {
            "https" => false,
            "http" if self.policy.allow_loopback => true,
            "http" => return Err(TargetError::NotHttps),
            other => return Err(TargetError::Refused(Refusal::Scheme(other.to_string()))),
        };
        check_url(url, self.policy.allow_loopback).map_err(TargetError::Refused)?;
        let addrs = match (literal_ip(url), url.host_str()) {
            (Some(ip), _) => vec![ip],
            (None, Some(host)) => match self.resolver.resolve_checked(host).await {
                Ok(addrs) => addrs,
                Err(ResolveError::Refused(r)) => return Err(TargetError::Refused(r)),
                Err(ResolveError::Lookup(e)) => return Err(TargetError::Lookup(e)),
            },
            (None, None) => return Err(TargetError::Refused(Refusal::NoHost)),
        };
        if http && !addrs.iter().all(IpAddr::is_loopback) {
            return Err(TargetError::HttpNotLoopback);
        }
        check_port(
            url,
            &self.policy.allowed_ports,
            self.policy.allow_loopback,
            &addrs,
        )
        .map_err(TargetError::Refused)?;
        Ok(addrs)
    }

    /// The HTTP client for deliveries: names resolve only through the guard, no proxy, no redirects
    /// followed (a 3xx is a failed attempt), a 10 s limit per attempt.
    pub fn client(&self) -> Result<reqwest::Client, reqwest::Error> {
        reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(self.resolver.clone()))
            .connect_timeout(Duration::from_secs(5))
            .timeout(ATTEMPT_TIMEOUT)
            .user_agent("Kotoba-Webhooks/1.0")
            .referer(false)
            .pool_max_idle_per_host(2)
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crawl::guard::{AddrClass, StaticResolver};

    fn guard(allow_loopback: bool) -> TargetGuard {
        let resolver = StaticResolver::new()
            .with("hooks.example.com", &["93.184.216.34".parse().unwrap()])
            .with("internal.example.com", &["10.0.0.7".parse().unwrap()])
            .with("meta.example.com", &["169.254.169.254".parse().unwrap()])
            .with("local.test", &["127.0.0.1".parse().unwrap()]);
        TargetGuard::new(
            TargetPolicy {
                allow_loopback,
                allowed_ports: vec![],
            },
            Arc::new(resolver),
        )
    }

    async fn check(g: &TargetGuard, raw: &str) -> Result<Vec<IpAddr>, TargetError> {
        g.check(&parse_url(raw).unwrap()).await
    }

    #[tokio::test]
    async fn https_to_public_addresses_passes() {
        let g = guard(false);
        assert_eq!(
            check(&g, "https://hooks.example.com/in").await.unwrap(),
            vec!["93.184.216.34".parse::<IpAddr>().unwrap()]
        );
    }

    #[tokio::test]
    async fn refuses_private_metadata_and_link_local_targets_literal_or_by_name() {
        let g = guard(false);
        for (url, class) in [
            ("https://10.1.2.3/", AddrClass::Private),
            ("https://192.168.0.10/", AddrClass::Private),
            (
                "https://169.254.169.254/latest/meta-data/",
                AddrClass::CloudMetadata,
            ),
            ("https://169.254.10.1/", AddrClass::LinkLocal),
            ("https://[fe80::1]/", AddrClass::LinkLocal),
            ("https://[::ffff:10.0.0.1]/", AddrClass::Private),
            ("https://127.0.0.1/", AddrClass::Loopback),
            ("https://internal.example.com/", AddrClass::Private),
            ("https://meta.example.com/", AddrClass::CloudMetadata),
        ] {
            match check(&g, url).await {
                Err(TargetError::Refused(r)) => assert_eq!(r.class(), Some(class), "{url}"),
                other => panic!("{url}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn http_only_to_loopback_in_local_mode() {
        assert_eq!(
            check(&guard(false), "http://hooks.example.com/").await,
            Err(TargetError::NotHttps)
        );
        let local = guard(true);
        assert_eq!(
            check(&local, "http://hooks.example.com/").await,
            Err(TargetError::HttpNotLoopback)
        );
        assert!(check(&local, "http://127.0.0.1:9999/hook").await.is_ok());
        assert!(check(&local, "http://local.test:9999/hook").await.is_ok());
        // Local mode never opens private ranges.
        assert!(matches!(
            check(&local, "https://10.0.0.1/").await,
            Err(TargetError::Refused(_))
        ));
    }

    #[tokio::test]
    async fn odd_ports_and_schemes_are_refused() {
        let g = guard(false);
        assert!(matches!(
            check(&g, "https://hooks.example.com:6379/").await,
            Err(TargetError::Refused(Refusal::Port(6379)))
        ));
        assert!(matches!(
            check(&g, "ftp://hooks.example.com/").await,
            Err(TargetError::Refused(Refusal::Scheme(_)))
        ));
        assert!(matches!(
            check(&g, "https://user:pw@hooks.example.com/").await,
            Err(TargetError::Refused(Refusal::Credentials))
        ));
        assert!(parse_url("https://a.example/#x").is_err());
        assert!(parse_url("not a url").is_err());
    }
}
