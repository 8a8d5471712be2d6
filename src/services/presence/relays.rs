//! The relays the hubs announce (`GET /relay`): each hub this peer uses is asked at start and
//! again every few minutes (sooner after a failure, with backoff), and the relay it names is handed to the
//! node ([`Node::use_relay`]) — at the addresses the hub may vouch for, as for peers
//! ([`Reach`]). A hub without a relay answers 404 and is asked again later, in case its operator
//! turns one on.

use std::time::Duration;

use libp2p::Multiaddr;
use serde::Deserialize;
use tokio::sync::watch;

use crate::identity::PeerId;
use crate::services::node::Node;
use crate::services::node::vouched::Reach;
use crate::services::until_stopped;

/// How often a hub is asked again.
const EVERY: Duration = Duration::from_secs(5 * 60);
/// How soon a hub that could not be asked is asked again (doubling up to [`EVERY`]).
const AFTER_FAILURE: Duration = Duration::from_secs(15);
/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer read.
const MAX_ANSWER_BYTES: usize = 16 * 1024;

#[derive(Deserialize)]
struct Announced {
    peer_id: String,
    addrs: Vec<String>,
}

/// What a hub's `/relay` says, checked: the relay's peer ID and the addresses within `reach`
/// that name it (or no peer).
pub fn read_relay(body: &[u8], reach: Reach) -> anyhow::Result<(PeerId, Vec<Multiaddr>)> {
    let announced: Announced = serde_json::from_slice(body)
        .map_err(|err| anyhow::anyhow!("the hub's /relay is not a relay's description: {err}"))?;
    let relay: PeerId = announced
        .peer_id
        .parse()
        .map_err(|err| anyhow::anyhow!("the hub's relay has an unreadable peer ID: {err}"))?;
    let addrs: Vec<Multiaddr> = announced
        .addrs
        .iter()
        .filter_map(|addr| addr.parse::<Multiaddr>().ok())
        .filter(|addr| {
            reach.permits(addr)
                && !addr
                    .iter()
                    .any(|p| p == libp2p::multiaddr::Protocol::P2pCircuit)
                && addr.iter().all(|p| match p {
                    libp2p::multiaddr::Protocol::P2p(id) => id == relay,
                    _ => true,
                })
        })
        .take(crate::services::node::vouched::MAX_ADDRS_PER_PEER)
        .collect();
    if addrs.is_empty() {
        anyhow::bail!("the hub's relay has no address this peer may dial");
    }
    Ok((relay, addrs))
}

/// Asks `hub` for its relay every [`EVERY`] until `stop`, handing it to `node`.
pub fn spawn(
    node: Node,
    http: reqwest::Client,
    hub: url::Url,
    reach: Reach,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Ok(url) = hub.join("relay") else {
            return;
        };
        let mut last: Option<String> = None;
        let mut failures = 0u32;
        loop {
            let wait = match ask(&http, &url, reach).await {
                Ok(Some((relay, addrs))) => {
                    let news = format!("{relay} {addrs:?}");
                    if last.as_deref() != Some(news.as_str()) {
                        tracing::info!(hub = %hub, relay.id = %relay, addrs = ?addrs, "the hub offers a relay");
                        last = Some(news);
                    }
                    if node.use_relay(relay, addrs).await.is_err() {
                        return;
                    }
                    failures = 0;
                    EVERY
                }
                Ok(None) => {
                    failures = 0;
                    EVERY
                }
                Err(err) => {
                    tracing::debug!(hub = %hub, "cannot learn the hub's relay: {err:#}");
                    failures = failures.saturating_add(1);
                    crate::services::doubling(AFTER_FAILURE, failures, EVERY)
                }
            };
            tokio::select! {
                () = until_stopped(&mut stop) => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    })
}

async fn ask(
    http: &reqwest::Client,
    url: &url::Url,
    reach: Reach,
) -> anyhow::Result<Option<(PeerId, Vec<Multiaddr>)>> {
    let mut response = http.get(url.clone()).timeout(TIMEOUT).send().await?;
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !response.status().is_success() {
        anyhow::bail!("the hub answered {}", response.status());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            anyhow::bail!("the hub's answer is over {MAX_ANSWER_BYTES} bytes");
        }
        body.extend_from_slice(&chunk);
    }
    read_relay(&body, reach).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hubs_relay_is_taken_only_at_addresses_it_may_vouch_for() {
        let relay = libp2p_identity::Keypair::generate_ed25519()
            .public()
            .to_peer_id();
        let other = libp2p_identity::Keypair::generate_ed25519()
            .public()
            .to_peer_id();
        let body = serde_json::json!({
            "peer_id": relay.to_base58(),
            "addrs": [
                format!("/ip4/127.0.0.1/tcp/4001/p2p/{relay}"),
                format!("/ip4/192.168.1.5/tcp/4001/p2p/{relay}"),
                format!("/ip4/11.0.0.1/tcp/4001/p2p/{relay}"),
                format!("/ip4/11.0.0.1/udp/4001/quic-v1/p2p/{other}"),
                format!("/ip4/11.0.0.1/tcp/4001/p2p/{other}/p2p-circuit/p2p/{relay}"),
                "not an address",
            ],
        });
        let body = serde_json::to_vec(&body).unwrap();
        let (id, addrs) = read_relay(&body, Reach::Global).unwrap();
        assert_eq!(id, relay);
        assert_eq!(
            addrs,
            [format!("/ip4/11.0.0.1/tcp/4001/p2p/{relay}")
                .parse::<Multiaddr>()
                .unwrap()]
        );
        let (_, addrs) = read_relay(&body, Reach::Loopback).unwrap();
        assert_eq!(addrs.len(), 3);
        let err = read_relay(br#"{"peer_id":"x","addrs":[]}"#, Reach::Global).unwrap_err();
        assert!(err.to_string().contains("peer ID"), "{err}");
        let private_only = serde_json::to_vec(&serde_json::json!({
            "peer_id": relay.to_base58(),
            "addrs": [format!("/ip4/10.1.2.3/tcp/4001/p2p/{relay}")],
        }))
        .unwrap();
        let err = read_relay(&private_only, Reach::Global).unwrap_err();
        assert!(err.to_string().contains("no address"), "{err}");
    }
}
