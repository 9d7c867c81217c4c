//! Which URLs belong to the site being crawled.

use url::Url;

use crate::sites::domains::AllowedDomain;

/// The crawl's scope: the start URL's host plus the site's allowed domains (wildcards cover
/// subdomains). Ports and schemes do not matter: `http://shop.example.jp:8080/` is the same site as
/// `https://shop.example.jp/`. Being in scope says nothing about safety; the guard still checks
/// every connection.
#[derive(Debug, Clone)]
pub struct Scope {
    start_host: String,
    domains: Vec<AllowedDomain>,
}

impl Scope {
    /// The scope of a crawl starting at `start`.
    pub fn new(start: &Url, domains: &[AllowedDomain]) -> Self {
        Self {
            start_host: start.host_str().unwrap_or_default().to_ascii_lowercase(),
            domains: domains.to_vec(),
        }
    }

    /// Whether `url` is an http(s) URL on one of the scope's hosts.
    pub fn contains(&self, url: &Url) -> bool {
        if !matches!(url.scheme(), "http" | "https") {
            return false;
        }
        let Some(host) = url.host_str() else {
            return false;
        };
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        (!host.is_empty() && host == self.start_host)
            || self.domains.iter().any(|d| d.matches_host(&host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_host_and_allowed_domains() {
        let start = Url::parse("https://www.example.co.jp/ja/").unwrap();
        let domains = [
            AllowedDomain::parse("*.shop.example.co.jp").unwrap(),
            AllowedDomain::parse("blog.example.com").unwrap(),
        ];
        let scope = Scope::new(&start, &domains);
        let yes = |s: &str| scope.contains(&Url::parse(s).unwrap());
        assert!(yes("http://WWW.example.co.jp:8080/x"));
        assert!(yes("https://a.shop.example.co.jp/"));
        assert!(!yes("https://shop.example.co.jp/"));
        assert!(yes("https://blog.example.com/p"));
        assert!(!yes("https://example.co.jp/"));
        assert!(!yes("https://www.example.co.jp.evil.net/"));
        assert!(!yes("ftp://www.example.co.jp/"));
        assert!(!yes("mailto:a@www.example.co.jp"));
    }
}
