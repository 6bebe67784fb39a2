//! The address a connection is attributed to, for the per-address limits
//! and the IP allow and deny lists.
//!
//! Directly connected clients are their socket's peer address. Behind a
//! reverse proxy or load balancer every peer is the proxy; when the operator
//! lists the proxies in `limits.trusted_proxies`, the hub reads the client
//! from the `X-Forwarded-For` header those proxies append to. The header is
//! read from the right, the end the nearest proxy wrote, skipping trusted
//! proxies: the first address not in the list is the client. Entries to its
//! left were written by the client itself and are never believed, so a
//! client cannot choose the address it is limited under. A peer that is not
//! a trusted proxy is taken as it is, whatever headers it sends.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The header trusted proxies append the address they received from to.
const FORWARDED_FOR: &str = "x-forwarded-for";

/// The client's address: `peer`, or the client behind it when `peer` is a
/// trusted proxy that said who it forwards for.
pub(crate) fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    // Several headers count as one list, in order (RFC 9110, 5.3).
    let hops: Vec<&str> = headers
        .get_all(FORWARDED_FOR)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        match parse_hop(hop) {
            Some(ip) => {
                client = ip;
                if !is_trusted(&ip) {
                    break;
                }
            }
            // Garbage where a trusted proxy should have written an address:
            // stop at the last address that can be vouched for.
            None => break,
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an IPv4 or IPv6 address, which proxies
/// sometimes write with a port (`1.2.3.4:5678`, `[::1]:5678`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Ok(addr) = hop.parse::<std::net::SocketAddr>() {
        return Some(addr.ip());
    }
    hop.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(FORWARDED_FOR, value.parse().unwrap());
        }
        headers
    }

    fn proxies() -> Vec<IpNet> {
        vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()]
    }

    #[test]
    fn an_untrusted_peer_is_taken_as_it_is() {
        let forged = headers(&["203.0.113.9"]);
        assert_eq!(client_ip(ip("198.51.100.1"), &forged, &proxies()), ip("198.51.100.1"));
        assert_eq!(client_ip(ip("10.0.0.1"), &forged, &[]), ip("10.0.0.1"), "no proxies trusted");
    }

    #[test]
    fn behind_trusted_proxies_the_first_untrusted_hop_from_the_right_is_the_client() {
        let chain = headers(&["203.0.113.9, 198.51.100.7, 10.0.0.2"]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &chain, &proxies()),
            ip("198.51.100.7"),
            "the left entry was written by the client and is not believed"
        );
        let split = headers(&["203.0.113.9", "198.51.100.7", "10.0.0.2"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &split, &proxies()), ip("198.51.100.7"));
    }

    #[test]
    fn ports_and_ipv6_are_understood() {
        assert_eq!(
            client_ip(ip("fd00::1"), &headers(&["[2001:db8::5]:443"]), &proxies()),
            ip("2001:db8::5")
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), &headers(&["198.51.100.7:5000"]), &proxies()),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), &headers(&["[2001:db8::6]"]), &proxies()),
            ip("2001:db8::6")
        );
    }

    #[test]
    fn missing_or_garbage_headers_leave_the_last_vouched_for_address() {
        assert_eq!(client_ip(ip("10.0.0.1"), &HeaderMap::new(), &proxies()), ip("10.0.0.1"));
        assert_eq!(client_ip(ip("10.0.0.1"), &headers(&["unknown"]), &proxies()), ip("10.0.0.1"));
        assert_eq!(
            client_ip(ip("10.0.0.1"), &headers(&["198.51.100.7, nonsense, 10.0.0.3"]), &proxies()),
            ip("10.0.0.3"),
            "a garbage hop stops the walk at the last trusted proxy"
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), &headers(&["10.0.0.3, 10.0.0.2"]), &proxies()),
            ip("10.0.0.3"),
            "all hops trusted: the farthest one"
        );
    }
}
