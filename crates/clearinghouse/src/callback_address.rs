//! Where the clearinghouse may call back: public addresses only, unless the configuration
//! allows the others (`allow_private_callback_addresses`). An operator registers the URL, but
//! the clearinghouse makes the call from inside its own network: a URL naming loopback, a
//! private or link-local network would let any operator reach the clearinghouse's own
//! services (its database, its metrics) or its neighbours'.
//!
//! The check is made twice: when the URL is registered (an address literal, and every address
//! its name resolves to then), and at every delivery on the addresses actually connected to
//! ([`PublicOnly`], the dispatcher's resolver), so a name that resolves differently later
//! (DNS rebinding) gains nothing. The dispatcher follows no redirects.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why a callback address is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("callback URL is not an http:// or https:// URL of at most 2048 characters")]
    NotHttp,
    #[error("callback address {0} is not public (loopback, private, link-local or reserved)")]
    NotPublic(IpAddr),
    #[error("callback host {0:?} resolves to no public address")]
    NoPublicAddress(String),
}

/// Whether `ip` is reachable on the public internet: not unspecified, loopback, private
/// (RFC 1918, ULA), shared (CGNAT 100.64/10), link-local, multicast, broadcast, documentation,
/// benchmarking or otherwise reserved. IPv4 addresses inside IPv6 (mapped, NAT64) are judged
/// as the IPv4 address they carry.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0                                      // "this network", unspecified
        || a == 10                                // RFC 1918
        || a == 127                               // loopback
        || (a == 100 && (64..128).contains(&b))   // shared address space (CGNAT)
        || (a == 169 && b == 254)                 // link-local
        || (a == 172 && (16..32).contains(&b))    // RFC 1918
        || (a == 192 && b == 168)                 // RFC 1918
        || (a == 192 && b == 0 && c == 0)         // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)         // documentation
        || (a == 198 && (18..20).contains(&b))    // benchmarking
        || (a == 198 && b == 51 && c == 100)      // documentation
        || (a == 203 && b == 0 && c == 113)       // documentation
        || a >= 224) // multicast, reserved, broadcast
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        // NAT64: the IPv4 address in the last 32 bits.
        return is_public_v4(Ipv4Addr::from((u32::from(s[6]) << 16) | u32::from(s[7])));
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || s[0..6] == [0, 0, 0, 0, 0, 0]   // IPv4-compatible (deprecated)
        || (s[0] & 0xfe00) == 0xfc00       // unique local
        || (s[0] & 0xffc0) == 0xfe80       // link-local
        || (s[0] & 0xffc0) == 0xfec0       // site-local (deprecated)
        || (s[0] & 0xff00) == 0xff00       // multicast
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || s[0] == 0x0100) // discard-only
}

/// Check a callback URL as registered: an `http(s)` URL whose host, if an address, is public
/// and, if a name, resolves now to public addresses only. A name that does not resolve yet is
/// let through: delivery checks it again.
pub async fn check_registration(url: &str, allow_private: bool) -> Result<(), Refused> {
    let parsed = reqwest::Url::parse(url).map_err(|_| Refused::NotHttp)?;
    if !matches!(parsed.scheme(), "http" | "https") || url.len() > 2048 {
        return Err(Refused::NotHttp);
    }
    if allow_private {
        return Ok(());
    }
    match host(&parsed)? {
        Host::Address(ip) => public(ip),
        Host::Name(name) => {
            let port = parsed.port_or_known_default().unwrap_or(443);
            let Ok(found) = tokio::net::lookup_host((name, port)).await else { return Ok(()) };
            found.map(|a| a.ip()).try_for_each(public)
        }
    }
}

/// A URL's host: an address literal or a name.
enum Host<'a> {
    Address(IpAddr),
    Name(&'a str),
}

fn host(url: &reqwest::Url) -> Result<Host<'_>, Refused> {
    let h = url.host_str().ok_or(Refused::NotHttp)?;
    let bare = h.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(h);
    Ok(bare.parse().map(Host::Address).unwrap_or(Host::Name(h)))
}

/// The check at delivery for a URL whose host is an address literal (the resolver is not
/// asked for those).
pub fn check_literal(url: &str) -> Result<(), Refused> {
    match host(&reqwest::Url::parse(url).map_err(|_| Refused::NotHttp)?)? {
        Host::Address(ip) => public(ip),
        Host::Name(_) => Ok(()),
    }
}

fn public(ip: IpAddr) -> Result<(), Refused> {
    if is_public(ip) { Ok(()) } else { Err(Refused::NotPublic(ip)) }
}

/// The dispatcher's resolver: the system's, less every address that is not public. A name
/// left with none fails the callback, which is retried and stays readable from the inbox.
#[derive(Debug, Default)]
pub struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let kept: Vec<SocketAddr> = found.filter(|a| is_public(a.ip())).collect();
            if kept.is_empty() {
                return Err(Box::new(Refused::NoPublicAddress(host)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(kept.into_iter()) as Addrs)
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
    fn private_and_reserved_ranges_are_not_public() {
        for s in [
            "0.0.0.0",
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.254",
            "169.254.169.254",
            "192.0.0.8",
            "192.0.2.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "::127.0.0.1",
            "100::1",
        ] {
            assert!(!is_public(ip(s)), "{s} must not be public");
        }
    }

    #[test]
    fn public_addresses_are() {
        for s in [
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.0.1",
            "172.32.0.1",
            "192.169.0.1",
            "193.0.0.1",
            "2a00:1450::1",
            "2001:4860::8888",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(is_public(ip(s)), "{s} is public");
        }
    }

    #[tokio::test]
    async fn registration_refuses_private_hosts_unless_allowed() {
        for url in ["http://127.0.0.1:8400/cb", "http://[::1]/cb", "https://10.0.0.5/cb", "http://localhost:9/cb"] {
            assert!(
                matches!(check_registration(url, false).await, Err(Refused::NotPublic(_))),
                "{url} must be refused"
            );
            assert_eq!(check_registration(url, true).await, Ok(()), "{url} allowed by configuration");
        }
        assert_eq!(check_registration("http://8.8.8.8/cb", false).await, Ok(()));
        assert_eq!(check_registration("ftp://8.8.8.8/cb", true).await, Err(Refused::NotHttp));
        assert_eq!(check_registration("not a url", true).await, Err(Refused::NotHttp));
        assert!(check_literal("http://169.254.169.254/latest").is_err());
        assert_eq!(check_literal("http://example.invalid/cb"), Ok(()));
    }

    #[tokio::test]
    async fn the_delivery_resolver_keeps_no_loopback_address() {
        let name: Name = "localhost".parse().unwrap();
        assert!(PublicOnly.resolve(name).await.is_err());
    }
}
