//! The client's address. `X-Forwarded-For` / `X-Real-IP` are believed only when the TCP peer is a
//! trusted proxy (`EF__TRUSTED_PROXIES`, a local nginx by default); from anyone else they are
//! ignored, so a client cannot pick its own address to dodge rate limits or fake audit entries.

use std::net::IpAddr;

use axum::extract::Request;

use crate::config::Networks;
use crate::config::value::canonical_ip;
use crate::http::server::ConnInfo;
use crate::state::AppState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

pub fn resolve(state: &AppState, req: &mut Request) {
    if let Some(conn) = req.extensions().get::<ConnInfo>() {
        let ip = client_ip(
            conn.peer.ip(),
            req.headers(),
            &state.config().http.trusted_proxies,
        );
        req.extensions_mut().insert(ClientIp(ip));
    }
}

pub fn client_ip(peer: IpAddr, headers: &http::HeaderMap, trusted: &Networks) -> IpAddr {
    let peer = canonical_ip(peer);
    if !trusted.contains(peer) {
        return peer;
    }
    // Walk X-Forwarded-For from the right (nearest hop first), skipping our own proxies; the
    // first untrusted address is the client. Every header line counts, in order.
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| parse_hop(s.trim()))
        .collect();
    if !hops.is_empty() {
        for hop in hops.iter().rev() {
            if !trusted.contains(*hop) {
                return *hop;
            }
        }
        return hops[0];
    }
    headers
        .get("x-real-ip")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_hop(v.trim()))
        .unwrap_or(peer)
}

fn parse_hop(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        .map(canonical_ip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigValue;

    fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn forwarded_headers_only_from_trusted_peers() {
        let trusted = Networks::parse_value("127.0.0.1/32, 10.0.0.0/8").unwrap();
        let h = headers(&[("x-forwarded-for", "203.0.113.9, 10.0.0.2")]);
        assert_eq!(
            client_ip("127.0.0.1".parse().unwrap(), &h, &trusted),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        // An untrusted peer cannot choose its address.
        assert_eq!(
            client_ip("198.51.100.7".parse().unwrap(), &h, &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        // A spoofed left-most entry does not win over the real client appended by our proxy.
        let h = headers(&[("x-forwarded-for", "1.2.3.4, 203.0.113.9")]);
        assert_eq!(
            client_ip("127.0.0.1".parse().unwrap(), &h, &trusted),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        let h = headers(&[("x-real-ip", "203.0.113.5")]);
        assert_eq!(
            client_ip("::ffff:127.0.0.1".parse().unwrap(), &h, &trusted),
            "203.0.113.5".parse::<IpAddr>().unwrap()
        );
        let h = headers(&[("x-forwarded-for", "garbage")]);
        assert_eq!(
            client_ip("127.0.0.1".parse().unwrap(), &h, &trusted),
            "127.0.0.1".parse::<IpAddr>().unwrap()
        );
    }
}
