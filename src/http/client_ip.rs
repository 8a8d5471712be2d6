//! The client's address: the socket peer, unless that peer is a trusted reverse proxy, in which
//! case the nearest untrusted address in `X-Forwarded-For`.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use ipnet::IpNet;

/// Reverse proxies whose `X-Forwarded-For` is believed (`presence.trusted_proxies`).
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(pub Arc<Vec<IpNet>>);

impl TrustedProxies {
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(ip))
    }

    /// The client address for a request that arrived from `peer` with `headers`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.contains(&peer) {
            return peer;
        }
        // Each proxy appends the address it saw; walk back from the nearest one and stop at the
        // first address that is not one of ours.
        let mut nearest = peer;
        for value in headers.get_all("x-forwarded-for").iter().rev() {
            let Ok(text) = value.to_str() else {
                return nearest;
            };
            for entry in text.rsplit(',') {
                let Ok(ip) = entry.trim().parse::<IpAddr>() else {
                    return nearest;
                };
                if !self.contains(&ip) {
                    return ip;
                }
                nearest = ip;
            }
        }
        nearest
    }
}

/// Extracts the client address (requires the connection's `ConnectInfo<SocketAddr>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl<S> FromRequestParts<S> for ClientIp
where
    S: Send + Sync,
    TrustedProxies: FromRef<S>,
{
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let proxies = TrustedProxies::from_ref(state);
        Ok(ClientIp(proxies.client_ip(peer, &parts.headers)))
    }
}
