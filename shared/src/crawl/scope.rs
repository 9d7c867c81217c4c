//! Which URLs belong to the site being crawled.

use serde::{Deserialize, Serialize};
use url::Url;

use crate::sites::domains::AllowedDomain;

/// How far a crawl may range from its start URL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScopeMode {
    /// The start URL's section: its path prefix (see [`Scope::prefix`]) on the site's hosts. Training
    /// `https://example.com/ja/` never fetches `/en/`.
    #[default]
    Prefix,
    /// Every path of the start host and the site's allowed domains.
    Host,
}

impl ScopeMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeMode::Prefix => "prefix",
            ScopeMode::Host => "host",
        }
    }
}

/// The crawl's scope: the start URL's host plus the site's allowed domains (wildcards cover
/// subdomains), and in [`ScopeMode::Prefix`] only paths under the start URL's directory. Ports and
/// schemes do not matter: `http://shop.example.jp:8080/` is the same site as
/// `https://shop.example.jp/`. The prefix applies on every host of the site, so `example.com/ja/`
/// redirecting to `www.example.com/ja/` stays in scope. Being in scope says nothing about safety; the
/// guard still checks every connection.
#[derive(Debug, Clone)]
pub struct Scope {
    start_host: String,
    domains: Vec<AllowedDomain>,
    /// Paths in scope start with this (always ends in `/`; `/` for host scope).
    prefix: String,
    /// The start path without its trailing slash (`/ja` for `/ja/`), also in scope: servers often
    /// answer it with a redirect to the directory.
    bare: Option<String>,
}

impl Scope {
    /// The scope of a crawl starting at `start`.
    pub fn new(start: &Url, domains: &[AllowedDomain], mode: ScopeMode) -> Self {
        let prefix = match mode {
            ScopeMode::Host => "/".to_string(),
            ScopeMode::Prefix => Self::directory_of(start.path()),
        };
        let bare = (prefix.len() > 1).then(|| prefix.trim_end_matches('/').to_string());
        Self {
            start_host: start.host_str().unwrap_or_default().to_ascii_lowercase(),
            domains: domains.to_vec(),
            prefix,
            bare,
        }
    }

    /// The same hosts with every path: for robots.txt and sitemap files, which live at the root.
    pub fn whole_hosts(&self) -> Self {
        Self {
            start_host: self.start_host.clone(),
            domains: self.domains.clone(),
            prefix: "/".into(),
            bare: None,
        }
    }

    /// The path prefix every in-scope URL has (`/` when the whole host is in scope).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The section a start path names: `/ja/` and `/ja` (no extension: a directory without its
    /// slash) give `/ja/`; `/ja/index.html` gives `/ja/`; `/` gives `/`.
    fn directory_of(path: &str) -> String {
        if path.ends_with('/') {
            return path.to_string();
        }
        let (dir, last) = path.rsplit_once('/').unwrap_or(("", path));
        if last.contains('.') {
            format!("{dir}/")
        } else {
            format!("{path}/")
        }
    }

    /// Whether `url` is an http(s) URL on one of the scope's hosts, under its path prefix.
    pub fn contains(&self, url: &Url) -> bool {
        if !matches!(url.scheme(), "http" | "https") {
            return false;
        }
        let Some(host) = url.host_str() else {
            return false;
        };
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let host_ok = (!host.is_empty() && host == self.start_host)
            || self.domains.iter().any(|d| d.matches_host(&host));
        host_ok && self.path_in_scope(url.path())
    }

    fn path_in_scope(&self, path: &str) -> bool {
        path.starts_with(&self.prefix) || self.bare.as_deref() == Some(path)
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
        let scope = Scope::new(&start, &domains, ScopeMode::Host);
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

    #[test]
    fn prefix_scope_is_the_start_section_on_every_host() {
        let start = Url::parse("https://example.co.jp/ja/").unwrap();
        let domains = [AllowedDomain::parse("www.example.co.jp").unwrap()];
        let scope = Scope::new(&start, &domains, ScopeMode::Prefix);
        assert_eq!(scope.prefix(), "/ja/");
        let yes = |s: &str| scope.contains(&Url::parse(s).unwrap());
        assert!(yes("https://example.co.jp/ja/"));
        assert!(yes("https://example.co.jp/ja"), "the bare directory");
        assert!(yes("https://example.co.jp/ja/faq/shipping.html"));
        assert!(yes("https://www.example.co.jp/ja/about"));
        assert!(!yes("https://example.co.jp/en/"));
        assert!(!yes("https://example.co.jp/"));
        assert!(
            !yes("https://example.co.jp/japan/"),
            "a prefix of a name is not the section"
        );
        assert!(!yes("https://other.example/ja/"));
        assert!(
            scope
                .whole_hosts()
                .contains(&Url::parse("https://example.co.jp/sitemap.xml").unwrap())
        );
    }

    #[test]
    fn the_section_of_a_start_path() {
        let prefix = |p: &str| {
            Scope::new(
                &Url::parse(&format!("https://x.jp{p}")).unwrap(),
                &[],
                ScopeMode::Prefix,
            )
            .prefix()
            .to_string()
        };
        assert_eq!(prefix("/"), "/");
        assert_eq!(prefix("/docs"), "/docs/");
        assert_eq!(prefix("/docs/"), "/docs/");
        assert_eq!(prefix("/docs/index.html"), "/docs/");
        assert_eq!(prefix("/index.html"), "/");
        assert_eq!(prefix("/a/b/c"), "/a/b/c/");
    }
}
