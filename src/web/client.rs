//! Who sent a request, as the limits on wrong tokens count it ([`ClientAddress`]): the
//! connection's peer, or, when the peer is a trusted reverse proxy
//! (`DEPLOYHOOK_TRUSTED_PROXIES`), the address the proxies forwarded for. From anyone else
//! `X-Forwarded-For` is ignored: a client would pick its own address, and its own limit.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;

use crate::config::TrustedProxies;
use crate::web::AppState;

/// How many `X-Forwarded-For` entries are walked back at most: one per proxy in a chain.
const MAX_HOPS: usize = 16;

/// The client's address. In-process tests without a socket have none: they count as
/// `0.0.0.0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub IpAddr);

impl ClientAddress {
    /// Who acted, as a lock, rollback or dismissal records it when the request names no
    /// person: the way in (`dashboard`, `admin API`) and this client. The dashboard's
    /// sign-in and the API's bearer are the one shared admin token, so no identity is
    /// known; the address is what is true, and enough to find who it was.
    pub fn acting(self, via: &str) -> String {
        format!("{via} (client {})", self.0)
    }
}

impl FromRequestParts<AppState> for ClientAddress {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Infallible> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |ConnectInfo(peer)| {
                peer.ip()
            });
        Ok(Self(client(peer, &state.trusted_proxies, &parts.headers)))
    }
}

/// Walks `X-Forwarded-For` from its right end while the hop that wrote each entry is a
/// trusted proxy: each appends the address it was reached from, so the first entry not
/// itself a proxy is the client, and what lies left of it the client wrote itself.
fn client(peer: IpAddr, trusted: &TrustedProxies, headers: &HeaderMap) -> IpAddr {
    let mut client = peer.to_canonical();
    if !trusted.contains(client) {
        return client;
    }
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    for entry in entries.iter().rev().take(MAX_HOPS) {
        // A proxy that wrote something else is misconfigured: count the proxy itself.
        let Some(address) = forwarded_address(entry) else {
            return client;
        };
        client = address.to_canonical();
        if !trusted.contains(client) {
            return client;
        }
    }
    client
}

/// An entry as proxies write them: `192.0.2.7`, `2001:db8::1`, or with a port
/// (`192.0.2.7:4711`, `[2001:db8::1]:4711`).
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| entry.strip_prefix('[')?.strip_suffix(']')?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", value.parse().unwrap());
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_header_is_believed_only_from_a_trusted_proxy() {
        let trusted = TrustedProxies::parse(["10.0.0.0/8"]).unwrap();
        let headers = forwarded(&["203.0.113.9"]);
        assert_eq!(
            client(ip("10.0.0.2"), &trusted, &headers),
            ip("203.0.113.9")
        );
        assert_eq!(
            client(ip("198.51.100.1"), &trusted, &headers),
            ip("198.51.100.1")
        );
        let none = TrustedProxies::default();
        assert_eq!(client(ip("10.0.0.2"), &none, &headers), ip("10.0.0.2"));
    }

    #[test]
    fn what_the_client_wrote_left_of_its_address_is_not_believed() {
        let trusted = TrustedProxies::parse(["10.0.0.0/8"]).unwrap();
        // The client sent "X-Forwarded-For: 1.2.3.4"; two proxies appended to it.
        let headers = forwarded(&["1.2.3.4, 203.0.113.9", "10.0.0.7"]);
        assert_eq!(
            client(ip("10.0.0.2"), &trusted, &headers),
            ip("203.0.113.9")
        );
        let ported = forwarded(&["[2001:db8::7]:4711"]);
        assert_eq!(client(ip("10.0.0.2"), &trusted, &ported), ip("2001:db8::7"));
    }

    #[test]
    fn garbage_or_no_header_from_a_proxy_counts_as_the_proxy() {
        let trusted = TrustedProxies::parse(["10.0.0.0/8"]).unwrap();
        assert_eq!(
            client(ip("10.0.0.2"), &trusted, &forwarded(&["unknown"])),
            ip("10.0.0.2")
        );
        assert_eq!(
            client(ip("10.0.0.2"), &trusted, &HeaderMap::new()),
            ip("10.0.0.2")
        );
    }
}
