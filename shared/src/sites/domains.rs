//! Host names a site's widget may be embedded on (and that its crawler may follow).

use serde::{Deserialize, Serialize};

/// A normalised host name (`www.example.co.jp`, punycode for international names), or a wildcard for
/// every subdomain (`*.example.com`, which does not match `example.com` itself), optionally with a port
/// (`shop.example.com:8443`): a page on a non-default port must be listed with it to embed the widget.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(try_from = "String", into = "String")]
pub struct AllowedDomain(String);

impl AllowedDomain {
    /// Accepts a host name, a wildcard, or a bare origin (`https://Example.com/`), each optionally with a
    /// port, and normalises it to lowercase ASCII without a trailing dot. Paths, queries and credentials
    /// are refused.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let s = raw.trim();
        let (host, port) = if s.contains("://") {
            let url = url::Url::parse(s).map_err(|e| format!("{raw:?} is not a host name: {e}"))?;
            if !matches!(url.scheme(), "http" | "https")
                || !matches!(url.path(), "" | "/")
                || url.query().is_some()
                || url.fragment().is_some()
                || !url.username().is_empty()
            {
                return Err(format!("{raw:?}: give a host name only (no path or query)"));
            }
            (url.host_str().unwrap_or_default().to_string(), url.port())
        } else {
            match s.rsplit_once(':') {
                Some((host, port)) => {
                    let port: u16 = port
                        .parse()
                        .ok()
                        .filter(|p| *p != 0)
                        .ok_or_else(|| format!("{raw:?}: the port must be 1 to 65535"))?;
                    (host.to_string(), Some(port))
                }
                None => (s.to_string(), None),
            }
        };
        let (wildcard, name) = match host.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, host.as_str()),
        };
        let name =
            normalise_host(name).ok_or_else(|| format!("{raw:?} is not a valid host name"))?;
        if wildcard && !name.contains('.') {
            return Err(format!(
                "{raw:?}: a wildcard needs a registrable domain after it"
            ));
        }
        let name = if wildcard { format!("*.{name}") } else { name };
        Ok(Self(match port {
            Some(port) => format!("{name}:{port}"),
            None => name,
        }))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_wildcard(&self) -> bool {
        self.0.starts_with("*.")
    }

    /// The host part (what the crawler's scope and the origin check compare hosts with).
    fn host_part(&self) -> &str {
        match self.0.rsplit_once(':') {
            Some((host, _)) => host,
            None => &self.0,
        }
    }

    /// The port listed with the host, if any (`None`: the scheme's default port only).
    pub fn port(&self) -> Option<u16> {
        self.0.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
    }

    /// Whether a host (already lowercase, no port) is covered: exact, or a strict subdomain for a wildcard.
    pub fn matches_host(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        match self.host_part().strip_prefix("*.") {
            Some(base) => {
                host.len() > base.len() + 1
                    && host.ends_with(base)
                    && host[..host.len() - base.len()].ends_with('.')
            }
            None => host == self.host_part(),
        }
    }
}

/// Lowercase ASCII (IDNA for international names), labels of letters, digits and inner hyphens.
fn normalise_host(name: &str) -> Option<String> {
    let name = name.trim_end_matches('.');
    if name.is_empty() || name.contains(['/', ':', '@', '?', '#', ' ', '*']) {
        return None;
    }
    // The URL parser applies IDNA (例え.jp → xn--r8jz45g.jp) and lowercases.
    let parsed = url::Url::parse(&format!("http://{name}/")).ok()?;
    let ascii = match parsed.host()? {
        url::Host::Domain(d) => d.to_string(),
        // IP literals are fine for local development origins.
        url::Host::Ipv4(ip) => return Some(ip.to_string()),
        url::Host::Ipv6(_) => return None,
    };
    let labels_ok = ascii.len() <= 253
        && ascii.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
    labels_ok.then_some(ascii)
}

impl TryFrom<String> for AllowedDomain {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl crate::store::stored::FromStored for AllowedDomain {
    fn from_stored(raw: String) -> Self {
        Self(raw)
    }
}

impl From<AllowedDomain> for String {
    fn from(d: AllowedDomain) -> String {
        d.0
    }
}

/// The most domains one site may list.
pub const MAX_ALLOWED_DOMAINS: usize = 50;

/// Parses, normalises and de-duplicates a list of domains.
pub fn parse_domains(raw: &[String]) -> Result<Vec<AllowedDomain>, String> {
    if raw.len() > MAX_ALLOWED_DOMAINS {
        return Err(format!("at most {MAX_ALLOWED_DOMAINS} domains"));
    }
    let mut out: Vec<AllowedDomain> = Vec::with_capacity(raw.len());
    for (i, d) in raw.iter().enumerate() {
        let domain = AllowedDomain::parse(d).map_err(|e| format!("[{i}]: {e}"))?;
        if !out.contains(&domain) {
            out.push(domain);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_hosts() {
        assert_eq!(
            AllowedDomain::parse(" WWW.Example.COM. ").unwrap().as_str(),
            "www.example.com"
        );
        assert_eq!(
            AllowedDomain::parse("https://shop.example.co.jp/")
                .unwrap()
                .as_str(),
            "shop.example.co.jp"
        );
        assert_eq!(
            AllowedDomain::parse("*.Example.com").unwrap().as_str(),
            "*.example.com"
        );
        assert_eq!(
            AllowedDomain::parse("例え.jp").unwrap().as_str(),
            "xn--r8jz45g.jp"
        );
        assert_eq!(
            AllowedDomain::parse("localhost").unwrap().as_str(),
            "localhost"
        );
        assert_eq!(
            AllowedDomain::parse("127.0.0.1").unwrap().as_str(),
            "127.0.0.1"
        );
        let with_port = AllowedDomain::parse("https://Shop.Example.com:8443/").unwrap();
        assert_eq!(with_port.as_str(), "shop.example.com:8443");
        assert_eq!(with_port.port(), Some(8443));
        assert!(with_port.matches_host("shop.example.com"));
        assert_eq!(
            AllowedDomain::parse("*.example.com:8080").unwrap().port(),
            Some(8080)
        );
        assert_eq!(AllowedDomain::parse("example.com").unwrap().port(), None);
    }

    #[test]
    fn refuses_what_is_not_a_host() {
        for bad in [
            "",
            "*",
            "*.com",
            "a..b",
            "-a.com",
            "a-.com",
            "exa mple.com",
            "example.com/path",
            "https://example.com/x",
            "example.com:0",
            "example.com:99999",
            "example.com:",
            "ftp://example.com",
            "user@example.com",
            "*.*.example.com",
            "a.*.example.com",
            "https://u:p@example.com",
        ] {
            assert!(AllowedDomain::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn wildcards_match_strict_subdomains_only() {
        let w = AllowedDomain::parse("*.example.com").unwrap();
        assert!(w.matches_host("shop.example.com"));
        assert!(w.matches_host("a.b.example.com"));
        assert!(!w.matches_host("example.com"));
        assert!(!w.matches_host("badexample.com"));
        assert!(!w.matches_host("example.com.evil.net"));
        let exact = AllowedDomain::parse("example.com").unwrap();
        assert!(exact.matches_host("EXAMPLE.com"));
        assert!(!exact.matches_host("www.example.com"));
    }

    #[test]
    fn lists_are_deduplicated_and_errors_name_the_entry() {
        let list = parse_domains(&["Example.com".into(), "example.com".into()]).unwrap();
        assert_eq!(list.len(), 1);
        let err = parse_domains(&["ok.com".into(), "bad domain".into()]).unwrap_err();
        assert!(err.starts_with("[1]"), "{err}");
    }
}
