//! The outbound URL policy: every URL a tenant can make engram call (a project connector's
//! `mcp_url`; later the memory gateway's upstream) passes through here (docs/security.md).
//!
//! Invariants:
//! - A URL is `http` or `https`, has a host, carries no userinfo, and is parsed the WHATWG way,
//!   so every spelling of an address (`2130706433`, `0x7f000001`, `127.1`, `[::ffff:127.0.0.1]`,
//!   `HTTP://…`, `http:/host`) is normalised before it is judged.
//! - The host is resolved once; the request is then made to exactly the vetted addresses (the
//!   client pins the name to them), so DNS cannot answer differently between check and connect.
//! - Unless the operator widened the policy, loopback, private, link-local, CGNAT, multicast,
//!   unspecified, reserved, documentation and cloud-metadata addresses are refused, including
//!   IPv4 addresses embedded in IPv6 (v4-mapped, v4-compatible, NAT64, 6to4). A name that
//!   resolves to any refused address is refused as a whole.
//! - Redirects are never followed and proxies from the environment are not used.
//! - Nothing the remote side sent is shown to the tenant: failures are described by our own
//!   short texts (`describe_failure`).
//!
//! This module is a leaf: it imports nothing of the server above it (only `error::echo`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

/// An address block: an address and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;
    /// `10.0.0.0/8`, `fd00::/8`, or a bare address (a block of one).
    fn from_str(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| format!("'{s}' is not an IP address or CIDR block"))?;
        let addr = canonical(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("'{s}': the prefix length must be 0 to {max}"))?,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = (prefix / 8) as usize;
    if a[..full] != b[..full] {
        return false;
    }
    let rest = prefix % 8;
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    a[full] & mask == b[full] & mask
}

/// An IPv4 address written as IPv6 (v4-mapped) is judged as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// One operator exception to the policy (`--allow-outbound`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Allow {
    /// Any address in the block.
    Block(Cidr),
    /// A host name (any address it resolves to), optionally only on one port.
    Host { host: String, port: Option<u16> },
}

impl FromStr for Allow {
    type Err = String;
    /// `10.1.0.0/16`, `127.0.0.1`, `[::1]`, `ollama.lan`, `localhost:11434`, `127.0.0.1:11434`.
    fn from_str(s: &str) -> Result<Allow, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("an --allow-outbound entry must not be empty".into());
        }
        if let Ok(c) = s.parse::<Cidr>() {
            return Ok(Allow::Block(c));
        }
        if let Ok(sa) = s.parse::<SocketAddr>() {
            return Ok(Allow::Host {
                host: host_key(&sa.ip().to_string()),
                port: Some(sa.port()),
            });
        }
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| format!("'{s}': '{p}' is not a port number"))?;
                (h, Some(port))
            }
            _ => (s, None),
        };
        let valid = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !valid {
            return Err(format!(
                "'{s}' is neither a CIDR block, an address nor a host[:port]"
            ));
        }
        Ok(Allow::Host {
            host: host_key(host),
            port,
        })
    }
}

fn host_key(h: &str) -> String {
    h.trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// Why a URL or an address was refused. The texts are ours and safe to show to the tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The URL itself is unusable (syntax, scheme, credentials).
    Invalid(String),
    /// The host resolves to an address the policy refuses.
    Address { addr: IpAddr, class: &'static str },
    /// The name does not resolve.
    Unresolvable,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Invalid(m) => f.write_str(m),
            Refusal::Address { addr, class } => write!(
                f,
                "points to {addr}, a {class} address, which this server does not call \
                 (the operator can allow it with --allow-outbound)"
            ),
            Refusal::Unresolvable => f.write_str("its host name does not resolve"),
        }
    }
}

/// A URL that passed the policy, with the addresses the request must go to.
#[derive(Clone, Debug)]
pub struct Vetted {
    /// The URL to request (normalised; it carries no userinfo).
    pub url: url::Url,
    /// The host name to pin, when the host is a name rather than an address.
    pub domain: Option<String>,
    pub addrs: Vec<SocketAddr>,
}

impl Vetted {
    /// An HTTP client that connects only to the vetted addresses, follows no redirect and uses
    /// no proxy. `timeout` bounds connecting (each request is bounded by its caller).
    pub fn client(&self, connect_timeout: Duration) -> Result<reqwest::Client, String> {
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(connect_timeout);
        if let Some(d) = &self.domain {
            b = b.resolve_to_addrs(d, &self.addrs);
        }
        b.build()
            .map_err(|_| "could not set up an HTTP client".to_string())
    }
}

/// What the operator allows engram to call on a tenant's behalf.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// `--allow-private-outbound`: every address class is allowed (single-user setups).
    pub allow_private: bool,
    /// `--allow-outbound`: exceptions to the refused classes.
    pub allow: Vec<Allow>,
}

impl Policy {
    /// Checks a URL's form, without resolving it: scheme, host, no credentials, no spaces, and
    /// (when the host is an address) the address. Returns the normalised URL.
    pub fn check_syntax(&self, raw: &str) -> Result<url::Url, Refusal> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(Refusal::Invalid("must not be empty".into()));
        }
        if s.len() > 2048 {
            return Err(Refusal::Invalid("must be at most 2048 characters".into()));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Refusal::Invalid("must not contain spaces".into()));
        }
        let url = url::Url::parse(s)
            .map_err(|e| Refusal::Invalid(format!("must be an absolute http(s) URL ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refusal::Invalid(format!(
                "must be an http or https URL, not '{}'",
                crate::error::echo(url.scheme())
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refusal::Invalid(
                "must not contain credentials (user:password@); this server never forwards them"
                    .into(),
            ));
        }
        match url.host() {
            None => return Err(Refusal::Invalid("must name a host".into())),
            Some(url::Host::Domain("")) => return Err(Refusal::Invalid("must name a host".into())),
            Some(url::Host::Ipv4(v4)) => self.check_addr(None, IpAddr::V4(v4), port_of(&url))?,
            Some(url::Host::Ipv6(v6)) => self.check_addr(None, IpAddr::V6(v6), port_of(&url))?,
            Some(url::Host::Domain(_)) => {}
        }
        Ok(url)
    }

    /// Checks a URL completely: its form, then every address its host resolves to.
    pub async fn vet(&self, raw: &str) -> Result<Vetted, Refusal> {
        // Credentials are refused here too, so a row stored before they were refused at
        // registration never sends them.
        let url = self.check_syntax(raw)?;
        let port = port_of(&url);
        let (domain, addrs) = match url.host() {
            Some(url::Host::Ipv4(v4)) => (None, vec![SocketAddr::new(IpAddr::V4(v4), port)]),
            Some(url::Host::Ipv6(v6)) => (None, vec![SocketAddr::new(IpAddr::V6(v6), port)]),
            Some(url::Host::Domain(d)) => {
                let d = d.to_string();
                let found: Vec<SocketAddr> = tokio::net::lookup_host((d.as_str(), port))
                    .await
                    .map_err(|_| Refusal::Unresolvable)?
                    .collect();
                if found.is_empty() {
                    return Err(Refusal::Unresolvable);
                }
                for a in &found {
                    self.check_addr(Some(&d), a.ip(), port)?;
                }
                (Some(d), found)
            }
            None => return Err(Refusal::Invalid("must name a host".into())),
        };
        Ok(Vetted { url, domain, addrs })
    }

    /// The check made when a tenant registers a URL: its form and, when its host is a name that
    /// resolves within two seconds, every address it resolves to. A name that does not resolve
    /// yet is accepted (it is vetted again at every connection). Returns the URL as given
    /// (trimmed), so clients get back exactly what they registered.
    pub async fn check_registration(&self, raw: &str) -> Result<String, Refusal> {
        self.check_syntax(raw)?;
        match tokio::time::timeout(Duration::from_secs(2), self.vet(raw)).await {
            Ok(Err(r @ Refusal::Address { .. })) | Ok(Err(r @ Refusal::Invalid(_))) => Err(r),
            _ => Ok(raw.trim().to_string()),
        }
    }

    /// Refuses `ip` (reached as `host`, when a name) unless the policy allows it.
    fn check_addr(&self, host: Option<&str>, ip: IpAddr, port: u16) -> Result<(), Refusal> {
        if self.allow_private {
            return Ok(());
        }
        let Some(class) = refused_class(ip) else {
            return Ok(());
        };
        let ip = canonical(ip);
        let allowed = self.allow.iter().any(|a| match a {
            Allow::Block(c) => c.contains(ip),
            Allow::Host { host: h, port: p } => {
                let name_matches = host.is_some_and(|n| host_key(n) == *h)
                    || h.parse::<IpAddr>().is_ok_and(|a| canonical(a) == ip);
                name_matches && p.map_or(true, |p| p == port)
            }
        });
        if allowed {
            Ok(())
        } else {
            Err(Refusal::Address { addr: ip, class })
        }
    }
}

fn port_of(url: &url::Url) -> u16 {
    url.port_or_known_default().unwrap_or(80)
}

/// The class of an address engram does not call by default, or `None` for a public address.
pub fn refused_class(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => v4_class(v4),
        IpAddr::V6(v6) => v6_class(v6),
    }
}

fn v4_class(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    let class = match o {
        [169, 254, 169, 254] => "cloud-metadata",
        [100, 100, 100, 200] => "cloud-metadata",
        [0, ..] => "unspecified",
        [127, ..] => "loopback",
        [10, ..] => "private",
        [172, b, ..] if (16..32).contains(&b) => "private",
        [192, 168, ..] => "private",
        [169, 254, ..] => "link-local",
        [100, b, ..] if (64..128).contains(&b) => "CGNAT (shared)",
        [192, 0, 0, _] => "IETF-reserved",
        [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _] => "documentation",
        [198, b, ..] if b == 18 || b == 19 => "benchmarking",
        [192, 88, 99, _] => "6to4-relay",
        [a, ..] if (224..240).contains(&a) => "multicast",
        [a, ..] if a >= 240 => "reserved",
        _ => return None,
    };
    Some(class)
}

fn v6_class(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    // IPv4 carried inside IPv6: judged as that IPv4 address.
    let embedded =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if s[..6] == [0, 0, 0, 0, 0, 0] {
        // v4-compatible (deprecated): ::a.b.c.d
        return Some(v4_class(embedded(s[6], s[7])).unwrap_or("IPv4-compatible"));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1) {
        // NAT64 (well-known and local-use prefixes).
        return v4_class(embedded(s[6], s[7])).or(Some("NAT64"));
    }
    if s[0] == 0x2002 {
        // 6to4 carries the IPv4 address in bits 16..48.
        return v4_class(embedded(s[1], s[2])).or(Some("6to4"));
    }
    if s[0] == 0xfd00 && s[1] == 0x0ec2 {
        return Some("cloud-metadata");
    }
    let class = match s[0] {
        x if x & 0xfe00 == 0xfc00 => "private (unique local)",
        x if x & 0xffc0 == 0xfe80 => "link-local",
        x if x & 0xffc0 == 0xfec0 => "site-local",
        x if x & 0xff00 == 0xff00 => "multicast",
        0x2001 if s[1] == 0 => "Teredo",
        0x2001 if s[1] == 0x0db8 => "documentation",
        0x2001 if s[1] < 0x0200 => "IETF-reserved",
        0x0100 if s[1..4] == [0, 0, 0] => "discard-only",
        _ => return None,
    };
    Some(class)
}

/// A short, fixed description of why an outbound call failed, for the tenant: never the remote
/// body, never internal type names. `detail` is the full error text (only its leading HTTP
/// status, if any, is used); `source` is walked for transport errors.
pub fn describe_failure(
    detail: &str,
    source: Option<&(dyn std::error::Error + 'static)>,
) -> String {
    if let Some(status) = leading_http_status(detail) {
        return match status {
            300..=399 => format!("the server answered HTTP {status} (redirects are not followed)"),
            _ => format!("the server answered HTTP {status}"),
        };
    }
    let mut cur = source;
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<reqwest::Error>() {
            if let Some(s) = r.status() {
                return format!("the server answered HTTP {}", s.as_u16());
            }
            if r.is_timeout() {
                return "the server did not answer in time".into();
            }
            if r.is_connect() {
                return "could not connect to the server".into();
            }
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "the connection was refused".into(),
                std::io::ErrorKind::TimedOut => "the server did not answer in time".into(),
                _ => "the connection failed".into(),
            };
        }
        cur = e.source();
    }
    let lower = detail.to_ascii_lowercase();
    if lower.contains("connect") {
        "could not connect to the server".into()
    } else if lower.contains("timed out") || lower.contains("timeout") {
        "the server did not answer in time".into()
    } else {
        "the server did not complete the MCP exchange".into()
    }
}

/// The status of the first `HTTP nnn` in an error text (transport errors name the status first,
/// before any of the body they quote).
pub fn leading_http_status(detail: &str) -> Option<u16> {
    let i = detail.find("HTTP ")?;
    let digits: String = detail[i + 5..].chars().take(3).collect();
    let status: u16 = digits.parse().ok()?;
    let after = detail[i + 5..].chars().nth(3);
    if (100..600).contains(&status) && !after.is_some_and(|c| c.is_ascii_digit()) {
        Some(status)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(url: &str) -> bool {
        Policy::default().check_syntax(url).is_err()
    }

    #[test]
    fn every_spelling_of_loopback_is_refused() {
        for u in [
            "http://127.0.0.1/",
            "http://127.1/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0177.0.0.1/",
            "http://0.0.0.0/",
            "http://0/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[::127.0.0.1]/",
            "http://[64:ff9b::7f00:1]/",
            "http://[2002:7f00:1::]/",
            "HTTP://127.0.0.1:8080/mcp",
            "http:/127.0.0.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://[fd00:ec2::254]/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://192.168.1.1/",
            "http://100.64.0.1/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
            "http://[fe80::1]/",
            "http://[fc00::1]/",
            "http://[ff02::1]/",
        ] {
            assert!(refused(u), "{u} must be refused");
        }
    }

    #[test]
    fn public_addresses_and_names_pass_the_syntax_check() {
        for u in [
            "https://mcp.example.org/",
            "http://93.184.216.34/mcp",
            "http://[2606:4700::1111]/",
            "http://172.32.0.1/",
            "http://100.128.0.1/",
        ] {
            assert!(!refused(u), "{u} must pass");
        }
    }

    #[test]
    fn credentials_other_schemes_and_garbage_are_refused() {
        for u in [
            "http://user:pass@example.org/",
            "http://user@example.org/",
            "ftp://example.org/",
            "file:///etc/passwd",
            "gopher://example.org/",
            "example.org/mcp",
            "http://exa mple.org/",
            "",
        ] {
            assert!(
                matches!(Policy::default().check_syntax(u), Err(Refusal::Invalid(_))),
                "{u}"
            );
        }
    }

    #[test]
    fn operator_exceptions_widen_the_policy() {
        let p = Policy {
            allow_private: false,
            allow: vec![
                "10.1.0.0/16".parse().unwrap(),
                "127.0.0.1:11434".parse().unwrap(),
                "ollama.lan".parse().unwrap(),
            ],
        };
        assert!(p.check_syntax("http://10.1.200.3/").is_ok());
        assert!(p.check_syntax("http://10.2.0.1/").is_err());
        assert!(p.check_syntax("http://127.0.0.1:11434/v1").is_ok());
        assert!(p.check_syntax("http://127.0.0.1:11435/v1").is_err());
        assert!(p
            .check_addr(Some("Ollama.LAN"), "192.168.1.9".parse().unwrap(), 80)
            .is_ok());
        assert!(p
            .check_addr(Some("other.lan"), "192.168.1.9".parse().unwrap(), 80)
            .is_err());
        let open = Policy {
            allow_private: true,
            allow: vec![],
        };
        assert!(open.check_syntax("http://127.0.0.1/").is_ok());
        // Credentials stay refused even when every address is allowed.
        assert!(open.check_syntax("http://a:b@127.0.0.1/").is_err());
    }

    #[test]
    fn allow_entries_parse_and_bad_ones_say_why() {
        assert_eq!(
            "[::1]".parse::<Allow>().unwrap(),
            Allow::Block("::1/128".parse().unwrap())
        );
        assert_eq!(
            "localhost:11434".parse::<Allow>().unwrap(),
            Allow::Host {
                host: "localhost".into(),
                port: Some(11434)
            }
        );
        assert!("10.0.0.0/33".parse::<Allow>().is_err());
        assert!("host:notaport".parse::<Allow>().is_err());
        assert!("bad host".parse::<Allow>().is_err());
        let c: Cidr = "::ffff:10.0.0.0/8"
            .parse()
            .unwrap_or("10.0.0.0/8".parse().unwrap());
        assert!(c.contains("10.9.9.9".parse().unwrap()));
    }

    #[tokio::test]
    async fn names_are_resolved_and_judged_by_their_addresses() {
        let p = Policy::default();
        match p.vet("http://localhost:9/").await {
            Err(Refusal::Address { class, .. }) => assert_eq!(class, "loopback"),
            other => panic!("localhost must be refused, got {other:?}"),
        }
        let allowed = Policy {
            allow_private: false,
            allow: vec!["localhost".parse().unwrap()],
        };
        let v = allowed.vet("http://localhost:9/mcp").await.unwrap();
        assert_eq!(v.domain.as_deref(), Some("localhost"));
        assert!(v
            .addrs
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() == 9));
    }

    #[test]
    fn failures_are_described_without_the_remote_body() {
        let d = describe_failure(
            "Send message error Transport [rmcp::transport::worker::WorkerTransport<X>] error: \
             unexpected server response: HTTP 403: <html>secret internal page</html>",
            None,
        );
        assert_eq!(d, "the server answered HTTP 403");
        let d = describe_failure("HTTP 302: moved", None);
        assert!(d.contains("302") && d.contains("redirects"));
        let d = describe_failure("rmcp::Something { inner: Foo }", None);
        assert!(!d.contains("rmcp") && !d.contains("Foo"));
    }
}
