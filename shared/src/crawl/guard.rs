//! The SSRF guard: which addresses the crawler may connect to, and a resolver that only ever hands
//! checked addresses to the HTTP client.
//!
//! A tenant chooses the URL we crawl, so every URL, every redirect hop and every DNS answer is treated
//! as hostile: it must not reach our own network (private ranges, loopback, link-local), the cloud
//! metadata service, or anything that is not ordinary public unicast.
//!
//! Two doors lead to a socket and both are guarded:
//! - names go through [`GuardedResolver`], which reqwest uses for its one and only lookup, so the
//!   address checked is the address connected to (no time-of-check/time-of-use gap, no DNS rebinding);
//! - IP literals in URLs never reach a resolver, so [`check_url`] refuses them before any request.
//!
//! Ports: only the web's own, 80 and 443, plus those the operator allows (`KOTOBA_FETCH_ALLOWED_PORTS`):
//! a public host's other ports are its mail, database or admin services, not its website, and a tenant
//! must not be able to make us probe them. In local mode (`allow_loopback`) loopback destinations may
//! use any port, since development servers rarely sit on 80.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use futures::future::BoxFuture;
use url::{Host, Url};

/// Why an address is not a public unicast address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddrClass {
    /// RFC 1918 (10/8, 172.16/12, 192.168/16) and deprecated IPv6 site-local (fec0::/10).
    Private,
    /// 127/8 and ::1.
    Loopback,
    /// 169.254/16 and fe80::/10.
    LinkLocal,
    /// Carrier-grade NAT shared space, 100.64/10.
    SharedCgnat,
    /// 224/4 and ff00::/8.
    Multicast,
    /// 255.255.255.255.
    Broadcast,
    /// 0.0.0.0/8 ("this network") and ::.
    Unspecified,
    /// IPv6 unique local, fc00::/7.
    UniqueLocal,
    /// TEST-NET-1/2/3, 2001:db8::/32, 3fff::/20.
    Documentation,
    /// 198.18/15 and 2001:2::/48.
    Benchmarking,
    /// Everything else that is not global unicast: 240/4, IETF protocol assignments, 6to4 relay
    /// anycast, Teredo, ORCHID, discard-only, and IPv6 outside 2000::/3.
    Reserved,
    /// Instance metadata services (AWS/GCP/Azure 169.254.169.254, ECS 169.254.170.2, AWS IPv6
    /// fd00:ec2::254, Alibaba 100.100.100.200, Oracle 192.0.0.192).
    CloudMetadata,
}

impl fmt::Display for AddrClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddrClass::Private => "a private address",
            AddrClass::Loopback => "a loopback address",
            AddrClass::LinkLocal => "a link-local address",
            AddrClass::SharedCgnat => "a shared (CGNAT) address",
            AddrClass::Multicast => "a multicast address",
            AddrClass::Broadcast => "the broadcast address",
            AddrClass::Unspecified => "an unspecified address",
            AddrClass::UniqueLocal => "a unique local address",
            AddrClass::Documentation => "a documentation address",
            AddrClass::Benchmarking => "a benchmarking address",
            AddrClass::Reserved => "a reserved address",
            AddrClass::CloudMetadata => "a cloud metadata address",
        })
    }
}

/// How an IPv6 address carries an IPv4 address whose class decided the refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Embedding {
    /// `::ffff:a.b.c.d`
    Ipv4Mapped,
    /// `::a.b.c.d` (deprecated)
    Ipv4Compatible,
    /// `64:ff9b::a.b.c.d`
    Nat64,
    /// `2002:aabb:ccdd::/48`
    SixToFour,
}

impl fmt::Display for Embedding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Embedding::Ipv4Mapped => "IPv4-mapped",
            Embedding::Ipv4Compatible => "IPv4-compatible",
            Embedding::Nat64 => "NAT64",
            Embedding::SixToFour => "6to4",
        })
    }
}

/// Why the guard refused a URL or a host. Callers match on it; its text names the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("refused: scheme {0:?} is not http or https")]
    Scheme(String),
    #[error("refused: the URL carries credentials")]
    Credentials,
    #[error("refused: the URL has no host")]
    NoHost,
    #[error("refused: {ip} is {class}{}", via.map(|v| format!(" ({v} form)")).unwrap_or_default())]
    Address {
        ip: IpAddr,
        class: AddrClass,
        /// Set when `ip` is IPv6 and the class is that of the IPv4 address it embeds.
        via: Option<Embedding>,
    },
    #[error("refused: port {0} is not a web port the crawler may use")]
    Port(u16),
    #[error(
        "refused: {host} resolves only to refused addresses ({})",
        describe(refused)
    )]
    NoPermittedAddress {
        host: String,
        refused: Vec<(IpAddr, AddrClass)>,
    },
}

fn describe(refused: &[(IpAddr, AddrClass)]) -> String {
    refused
        .iter()
        .map(|(ip, class)| format!("{ip} is {class}"))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Refusal {
    /// The address class behind the refusal, if it was about an address (the first one for a name).
    pub fn class(&self) -> Option<AddrClass> {
        match self {
            Refusal::Address { class, .. } => Some(*class),
            Refusal::NoPermittedAddress { refused, .. } => refused.first().map(|(_, c)| *c),
            _ => None,
        }
    }
}

/// Whether the crawler may connect to `ip`. With `allow_loopback` (local development and tests only)
/// plain loopback addresses pass; nothing else does, and neither does loopback hidden inside an IPv6
/// transition form (`::ffff:127.0.0.1`), because no legitimate local setup needs that spelling.
pub fn check_ip(ip: IpAddr, allow_loopback: bool) -> Result<(), Refusal> {
    match classify(ip) {
        None => Ok(()),
        Some((AddrClass::Loopback, None)) if allow_loopback => Ok(()),
        Some((class, via)) => Err(Refusal::Address { ip, class, via }),
    }
}

/// The class of a non-public address (and how it was embedded), or `None` for public unicast.
pub fn classify(ip: IpAddr) -> Option<(AddrClass, Option<Embedding>)> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4).map(|c| (c, None)),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn in_v4(ip: u32, net: [u8; 4], prefix: u32) -> bool {
    let net = u32::from_be_bytes(net);
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    ip & mask == net & mask
}

fn classify_v4(ip: Ipv4Addr) -> Option<AddrClass> {
    const METADATA: [[u8; 4]; 4] = [
        [169, 254, 169, 254],
        [169, 254, 170, 2],
        [100, 100, 100, 200],
        [192, 0, 0, 192],
    ];
    if METADATA.contains(&ip.octets()) {
        return Some(AddrClass::CloudMetadata);
    }
    let n = u32::from(ip);
    let table: &[([u8; 4], u32, AddrClass)] = &[
        ([255, 255, 255, 255], 32, AddrClass::Broadcast),
        ([0, 0, 0, 0], 8, AddrClass::Unspecified),
        ([10, 0, 0, 0], 8, AddrClass::Private),
        ([172, 16, 0, 0], 12, AddrClass::Private),
        ([192, 168, 0, 0], 16, AddrClass::Private),
        ([127, 0, 0, 0], 8, AddrClass::Loopback),
        ([169, 254, 0, 0], 16, AddrClass::LinkLocal),
        ([100, 64, 0, 0], 10, AddrClass::SharedCgnat),
        ([224, 0, 0, 0], 4, AddrClass::Multicast),
        ([240, 0, 0, 0], 4, AddrClass::Reserved),
        ([192, 0, 2, 0], 24, AddrClass::Documentation),
        ([198, 51, 100, 0], 24, AddrClass::Documentation),
        ([203, 0, 113, 0], 24, AddrClass::Documentation),
        ([198, 18, 0, 0], 15, AddrClass::Benchmarking),
        ([192, 0, 0, 0], 24, AddrClass::Reserved),
        ([192, 88, 99, 0], 24, AddrClass::Reserved),
    ];
    table
        .iter()
        .find(|(net, prefix, _)| in_v4(n, *net, *prefix))
        .map(|(_, _, class)| *class)
}

fn in_v6(ip: u128, net: u128, prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix)
    };
    ip & mask == net & mask
}

fn classify_v6(ip: Ipv6Addr) -> Option<(AddrClass, Option<Embedding>)> {
    let n = u128::from(ip);
    let low32 = Ipv4Addr::from((n & 0xffff_ffff) as u32);
    let embedded = |v4: Ipv4Addr, how: Embedding| classify_v4(v4).map(|c| (c, Some(how)));

    if ip == Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254) {
        return Some((AddrClass::CloudMetadata, None));
    }
    if ip.is_unspecified() {
        return Some((AddrClass::Unspecified, None));
    }
    if ip.is_loopback() {
        return Some((AddrClass::Loopback, None));
    }
    // Transition forms: judged by the IPv4 address inside, so ::ffff:10.0.0.1 is as private as 10.0.0.1.
    if in_v6(n, 0xffff_0000_0000, 96) {
        return embedded(low32, Embedding::Ipv4Mapped);
    }
    if in_v6(n, 0, 96) {
        return embedded(low32, Embedding::Ipv4Compatible);
    }
    if in_v6(n, 0x0064_ff9b_u128 << 96, 96) {
        return embedded(low32, Embedding::Nat64);
    }
    if in_v6(n, 0x2002_u128 << 112, 16) {
        let v4 = Ipv4Addr::from(((n >> 80) & 0xffff_ffff) as u32);
        return embedded(v4, Embedding::SixToFour);
    }
    let table: &[(u128, u32, AddrClass)] = &[
        (0xff00_u128 << 112, 8, AddrClass::Multicast),
        (0xfe80_u128 << 112, 10, AddrClass::LinkLocal),
        (0xfec0_u128 << 112, 10, AddrClass::Private),
        (0xfc00_u128 << 112, 7, AddrClass::UniqueLocal),
        (0x2001_0db8_u128 << 96, 32, AddrClass::Documentation),
        (0x3fff_u128 << 112, 20, AddrClass::Documentation),
        (0x2001_0002_u128 << 96, 48, AddrClass::Benchmarking),
        // 2001::/23 holds Teredo (2001::/32), ORCHID and other IETF protocol assignments.
        (0x2001_u128 << 112, 23, AddrClass::Reserved),
        // Local-use NAT64 (64:ff9b:1::/48) and discard-only (100::/64).
        (0x0064_ff9b_0001_u128 << 80, 48, AddrClass::Reserved),
        (0x0100_u128 << 112, 64, AddrClass::Reserved),
    ];
    if let Some((_, _, class)) = table.iter().find(|(net, p, _)| in_v6(n, *net, *p)) {
        return Some((*class, None));
    }
    // Only 2000::/3 is allocated as global unicast; anything else is not a web server.
    if !in_v6(n, 0x2000_u128 << 112, 3) {
        return Some((AddrClass::Reserved, None));
    }
    None
}

/// Checks what can be checked from the URL alone: scheme, credentials, and a literal IP host.
/// Names are checked later, at resolution, by [`GuardedResolver`].
pub fn check_url(url: &Url, allow_loopback: bool) -> Result<(), Refusal> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Refusal::Scheme(url.scheme().to_string()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refusal::Credentials);
    }
    // The url crate already turned decimal, hex and octal IPv4 spellings (http://2130706433/,
    // http://0x7f000001/) into Host::Ipv4, so they are caught here like dotted ones.
    match url.host() {
        None => Err(Refusal::NoHost),
        Some(Host::Ipv4(ip)) => check_ip(IpAddr::V4(ip), allow_loopback),
        Some(Host::Ipv6(ip)) => check_ip(IpAddr::V6(ip), allow_loopback),
        Some(Host::Domain("")) => Err(Refusal::NoHost),
        Some(Host::Domain(_)) => Ok(()),
    }
}

/// The ports every deployment crawls.
pub const WEB_PORTS: [u16; 2] = [80, 443];

/// Whether the URL's port (explicit or the scheme's default) is a web port or one the operator allows.
pub fn port_allowed(url: &Url, allowed_ports: &[u16]) -> bool {
    url.port_or_known_default()
        .is_some_and(|port| WEB_PORTS.contains(&port) || allowed_ports.contains(&port))
}

/// Checks the URL's port. `addrs` are the addresses the URL leads to (its literal, or what its name
/// resolved to): another port is allowed only in local mode and only when every one of them is loopback.
pub fn check_port(
    url: &Url,
    allowed_ports: &[u16],
    allow_loopback: bool,
    addrs: &[IpAddr],
) -> Result<(), Refusal> {
    if port_allowed(url, allowed_ports) {
        return Ok(());
    }
    if allow_loopback && !addrs.is_empty() && addrs.iter().all(IpAddr::is_loopback) {
        return Ok(());
    }
    Err(Refusal::Port(url.port_or_known_default().unwrap_or(0)))
}

/// The address of a URL whose host is an IP literal.
pub fn literal_ip(url: &Url) -> Option<IpAddr> {
    match url.host()? {
        Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        Host::Domain(_) => None,
    }
}

/// Name → addresses. The crawler resolves through this so tests can use a fixed map and never touch
/// real DNS.
pub trait Resolver: Send + Sync + 'static {
    /// All addresses for `host` (a name, never an IP literal). An empty answer is an error.
    fn lookup<'a>(&'a self, host: &'a str) -> BoxFuture<'a, io::Result<Vec<IpAddr>>>;
}

/// The system resolver (getaddrinfo through tokio).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn lookup<'a>(&'a self, host: &'a str) -> BoxFuture<'a, io::Result<Vec<IpAddr>>> {
        Box::pin(async move {
            let addrs: Vec<IpAddr> = tokio::net::lookup_host((host, 0))
                .await?
                .map(|sa| sa.ip())
                .collect();
            if addrs.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{host} has no addresses"),
                ));
            }
            Ok(addrs)
        })
    }
}

/// A fixed name → addresses map (tests, and pinning hosts in local setups). Unknown names fail.
#[derive(Debug, Clone, Default)]
pub struct StaticResolver {
    entries: HashMap<String, Vec<IpAddr>>,
}

impl StaticResolver {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the addresses of a name; names match case-insensitively.
    pub fn with(mut self, host: &str, addrs: &[IpAddr]) -> Self {
        self.entries.insert(normalise_name(host), addrs.to_vec());
        self
    }
}

fn normalise_name(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

impl Resolver for StaticResolver {
    fn lookup<'a>(&'a self, host: &'a str) -> BoxFuture<'a, io::Result<Vec<IpAddr>>> {
        let found = self
            .entries
            .get(&normalise_name(host))
            .filter(|a| !a.is_empty())
            .cloned();
        Box::pin(async move {
            found.ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("{host}: no such host"))
            })
        })
    }
}

/// Resolves through an inner [`Resolver`], drops every refused address, and fails with the
/// [`Refusal`] when none remain. Plugged into reqwest as its DNS resolver, so the client can only
/// connect to addresses that passed [`check_ip`].
#[derive(Clone)]
pub struct GuardedResolver {
    inner: Arc<dyn Resolver>,
    allow_loopback: bool,
}

impl GuardedResolver {
    pub fn new(inner: Arc<dyn Resolver>, allow_loopback: bool) -> Self {
        Self {
            inner,
            allow_loopback,
        }
    }

    /// The permitted addresses of `host`, in the resolver's order.
    pub async fn resolve_checked(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        let addrs = self
            .inner
            .lookup(host)
            .await
            .map_err(|e| ResolveError::Lookup(e.to_string()))?;
        let mut allowed = Vec::with_capacity(addrs.len());
        let mut refused = Vec::new();
        for ip in addrs {
            match check_ip(ip, self.allow_loopback) {
                Ok(()) => allowed.push(ip),
                Err(r) => refused.push((ip, r.class().unwrap_or(AddrClass::Reserved))),
            }
        }
        if allowed.is_empty() {
            if refused.is_empty() {
                return Err(ResolveError::Lookup(format!("{host} has no addresses")));
            }
            return Err(ResolveError::Refused(Refusal::NoPermittedAddress {
                host: host.to_string(),
                refused,
            }));
        }
        if !refused.is_empty() {
            tracing::warn!(%host, ?refused, "dropped refused addresses from a DNS answer");
        }
        Ok(allowed)
    }
}

/// Why [`GuardedResolver::resolve_checked`] gave no address.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Refused(Refusal),
    #[error("DNS lookup failed: {0}")]
    Lookup(String),
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let this = self.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            match this.resolve_checked(&host).await {
                // Port 0 is replaced by reqwest with the URL's port.
                Ok(addrs) => {
                    let addrs: reqwest::dns::Addrs =
                        Box::new(addrs.into_iter().map(|ip| SocketAddr::new(ip, 0)));
                    Ok(addrs)
                }
                // The Refusal travels inside reqwest's error chain; the fetcher digs it out.
                Err(ResolveError::Refused(r)) => Err(Box::new(r) as _),
                Err(ResolveError::Lookup(msg)) => {
                    Err(Box::new(io::Error::new(io::ErrorKind::NotFound, msg)) as _)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn refuses_every_non_public_range() {
        let cases: &[(&str, AddrClass)] = &[
            ("10.0.0.1", AddrClass::Private),
            ("172.16.0.1", AddrClass::Private),
            ("172.31.255.255", AddrClass::Private),
            ("192.168.1.1", AddrClass::Private),
            ("127.0.0.1", AddrClass::Loopback),
            ("127.255.0.9", AddrClass::Loopback),
            ("::1", AddrClass::Loopback),
            ("169.254.1.1", AddrClass::LinkLocal),
            ("fe80::1", AddrClass::LinkLocal),
            ("100.64.0.1", AddrClass::SharedCgnat),
            ("100.127.255.254", AddrClass::SharedCgnat),
            ("224.0.0.1", AddrClass::Multicast),
            ("239.255.255.250", AddrClass::Multicast),
            ("ff02::1", AddrClass::Multicast),
            ("255.255.255.255", AddrClass::Broadcast),
            ("0.0.0.0", AddrClass::Unspecified),
            ("0.1.2.3", AddrClass::Unspecified),
            ("::", AddrClass::Unspecified),
            ("fc00::1", AddrClass::UniqueLocal),
            ("fd12:3456::1", AddrClass::UniqueLocal),
            ("192.0.2.1", AddrClass::Documentation),
            ("198.51.100.7", AddrClass::Documentation),
            ("203.0.113.9", AddrClass::Documentation),
            ("2001:db8::1", AddrClass::Documentation),
            ("3fff::1", AddrClass::Documentation),
            ("198.18.0.1", AddrClass::Benchmarking),
            ("198.19.255.1", AddrClass::Benchmarking),
            ("2001:2::1", AddrClass::Benchmarking),
            ("240.0.0.1", AddrClass::Reserved),
            ("192.0.0.8", AddrClass::Reserved),
            ("192.88.99.1", AddrClass::Reserved),
            ("2001::1", AddrClass::Reserved),
            ("100::1", AddrClass::Reserved),
            ("4000::1", AddrClass::Reserved),
            ("fec0::1", AddrClass::Private),
            ("169.254.169.254", AddrClass::CloudMetadata),
            ("169.254.170.2", AddrClass::CloudMetadata),
            ("fd00:ec2::254", AddrClass::CloudMetadata),
            ("100.100.100.200", AddrClass::CloudMetadata),
            ("192.0.0.192", AddrClass::CloudMetadata),
        ];
        for (addr, class) in cases {
            let err = check_ip(ip(addr), false).unwrap_err();
            assert_eq!(err.class(), Some(*class), "{addr}: {err}");
            assert!(err.to_string().contains(addr), "{err}");
        }
    }

    #[test]
    fn refuses_refused_v4_inside_v6_transition_forms() {
        let cases: &[(&str, AddrClass, Embedding)] = &[
            (
                "::ffff:127.0.0.1",
                AddrClass::Loopback,
                Embedding::Ipv4Mapped,
            ),
            ("::ffff:10.1.2.3", AddrClass::Private, Embedding::Ipv4Mapped),
            (
                "::ffff:169.254.169.254",
                AddrClass::CloudMetadata,
                Embedding::Ipv4Mapped,
            ),
            ("::10.0.0.1", AddrClass::Private, Embedding::Ipv4Compatible),
            (
                "::127.0.0.1",
                AddrClass::Loopback,
                Embedding::Ipv4Compatible,
            ),
            ("64:ff9b::10.0.0.1", AddrClass::Private, Embedding::Nat64),
            (
                "64:ff9b::169.254.169.254",
                AddrClass::CloudMetadata,
                Embedding::Nat64,
            ),
            ("2002:7f00:1::1", AddrClass::Loopback, Embedding::SixToFour),
            (
                "2002:c0a8:0101::1",
                AddrClass::Private,
                Embedding::SixToFour,
            ),
        ];
        for (addr, class, how) in cases {
            // Not even with allow_loopback: loopback only passes in its plain spelling.
            let err = check_ip(ip(addr), true).unwrap_err();
            match &err {
                Refusal::Address { class: c, via, .. } => {
                    assert_eq!((c, via), (class, &Some(*how)), "{addr}");
                }
                other => panic!("{addr}: {other:?}"),
            }
            assert!(err.to_string().contains(&how.to_string()), "{err}");
        }
    }

    #[test]
    fn allows_public_unicast_including_transition_forms_of_public_v4() {
        for addr in [
            "93.184.216.34",
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.1",
            "172.32.0.1",
            "2606:4700::1111",
            "2001:200::1",
            "::ffff:93.184.216.34",
            "64:ff9b::8.8.8.8",
            "2002:0808:0808::1",
        ] {
            assert_eq!(check_ip(ip(addr), false), Ok(()), "{addr}");
        }
    }

    #[test]
    fn only_web_ports_unless_allowed_or_local_loopback() {
        let u = |s: &str| Url::parse(s).unwrap();
        let public = [ip("93.184.215.14")];
        let lo = [ip("127.0.0.1")];
        for ok in [
            "http://a.test/",
            "https://a.test/",
            "http://a.test:443/",
            "https://a.test:80/",
        ] {
            assert_eq!(check_port(&u(ok), &[], false, &public), Ok(()), "{ok}");
        }
        for bad in [
            "http://a.test:8080/",
            "https://a.test:22/",
            "http://a.test:6379/",
        ] {
            assert!(
                matches!(
                    check_port(&u(bad), &[], false, &public),
                    Err(Refusal::Port(_))
                ),
                "{bad}"
            );
            assert!(
                check_port(&u(bad), &[], true, &public).is_err(),
                "{bad} public in local mode"
            );
            assert!(
                check_port(&u(bad), &[], false, &lo).is_err(),
                "{bad} loopback when deployed"
            );
            assert_eq!(
                check_port(&u(bad), &[], true, &lo),
                Ok(()),
                "{bad} loopback in local mode"
            );
        }
        assert_eq!(
            check_port(&u("http://a.test:8080/"), &[8080], false, &public),
            Ok(())
        );
        assert!(check_port(&u("http://a.test:8081/"), &[8080], false, &public).is_err());
        assert!(
            check_port(
                &u("http://a.test:8080/"),
                &[],
                true,
                &[ip("127.0.0.1"), ip("10.0.0.1")]
            )
            .is_err()
        );
    }

    #[test]
    fn allow_loopback_allows_loopback_only() {
        assert_eq!(check_ip(ip("127.0.0.1"), true), Ok(()));
        assert_eq!(check_ip(ip("127.0.0.2"), true), Ok(()));
        assert_eq!(check_ip(ip("::1"), true), Ok(()));
        for addr in [
            "10.0.0.1",
            "192.168.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "fd00::1",
        ] {
            assert!(check_ip(ip(addr), true).is_err(), "{addr}");
        }
    }

    #[test]
    fn url_checks_scheme_credentials_and_ip_spellings() {
        let refused = |s: &str| check_url(&Url::parse(s).unwrap(), false).unwrap_err();
        assert_eq!(refused("ftp://example.com/"), Refusal::Scheme("ftp".into()));
        assert_eq!(
            refused("file:///etc/passwd"),
            Refusal::Scheme("file".into())
        );
        assert_eq!(refused("http://u:p@example.com/"), Refusal::Credentials);
        assert_eq!(refused("http://u@example.com/"), Refusal::Credentials);
        // The url crate canonicalises these spellings to 127.0.0.1 before we ever look at them.
        for s in [
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://0x7f.0.0.1/",
        ] {
            let u = Url::parse(s).unwrap();
            assert_eq!(u.host_str(), Some("127.0.0.1"), "{s}");
            assert_eq!(refused(s).class(), Some(AddrClass::Loopback), "{s}");
        }
        assert_eq!(
            check_url(&Url::parse("https://example.co.jp:8443/x").unwrap(), false),
            Ok(())
        );
    }

    #[tokio::test]
    async fn guarded_resolver_drops_refused_addresses() {
        let inner = StaticResolver::new()
            .with("mixed.test", &[ip("10.0.0.5"), ip("93.184.216.34")])
            .with("METADATA.google.internal", &[ip("169.254.169.254")])
            .with("v6.test", &[ip("fe80::1"), ip("fd00::2")]);
        let g = GuardedResolver::new(Arc::new(inner), false);
        assert_eq!(
            g.resolve_checked("mixed.test").await.unwrap(),
            vec![ip("93.184.216.34")]
        );
        match g.resolve_checked("metadata.google.internal.").await {
            Err(ResolveError::Refused(r)) => {
                assert_eq!(r.class(), Some(AddrClass::CloudMetadata));
                assert!(r.to_string().contains("metadata.google.internal"), "{r}");
            }
            other => panic!("{other:?}"),
        }
        match g.resolve_checked("v6.test").await {
            Err(ResolveError::Refused(Refusal::NoPermittedAddress { refused, .. })) => {
                assert_eq!(
                    refused,
                    vec![
                        (ip("fe80::1"), AddrClass::LinkLocal),
                        (ip("fd00::2"), AddrClass::UniqueLocal)
                    ]
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            g.resolve_checked("unknown.test").await,
            Err(ResolveError::Lookup(_))
        ));
    }
}
