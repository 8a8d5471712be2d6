//! This peer's presence on the LAN: signed `online`, `update` and `offline` messages published
//! on the GossipSub presence topic, and the addresses worth announcing (to the LAN and to hubs).

use std::time::Duration;

use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;
use tokio::sync::watch;

use crate::identity::PeerId;
use crate::services::hub::presence::{Presence, PresenceType};
use crate::services::hub::unix_ms;
use crate::services::node::Node;
use crate::services::presence::hub_client::Announcement;

/// The addresses worth telling others: no link-local, loopback only when asked, each ending in
/// our peer ID once (a relay's circuit address ends in it already).
pub fn announced_addrs(
    listen: &[Multiaddr],
    peer_id: PeerId,
    include_loopback: bool,
) -> Vec<String> {
    listen
        .iter()
        .filter(|addr| {
            addr.iter().all(|part| match part {
                Protocol::Ip4(ip) => {
                    !ip.is_link_local()
                        && !ip.is_unspecified()
                        && (include_loopback || !ip.is_loopback())
                }
                Protocol::Ip6(ip) => {
                    (ip.segments()[0] & 0xffc0) != 0xfe80
                        && !ip.is_unspecified()
                        && (include_loopback || !ip.is_loopback())
                }
                _ => true,
            })
        })
        .filter_map(|addr| addr.clone().with_p2p(peer_id).ok())
        .map(|addr| addr.to_string())
        .take(crate::services::hub::presence::MAX_ADDRS)
        .collect()
}

/// Publishes signed presence on the LAN: `online`, an `update` per heartbeat and per change,
/// `offline` when stopped.
pub async fn publish_on_lan(
    node: Node,
    keypair: libp2p_identity::Keypair,
    mut announcements: watch::Receiver<Announcement>,
    heartbeat: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    let peer_id = keypair.public().to_peer_id();
    let mut last_ts = 0i64;
    let mut kind = PresenceType::Online;
    let mut tick = tokio::time::interval(heartbeat);
    loop {
        let offline = tokio::select! {
            _ = tick.tick() => false,
            Ok(()) = announcements.changed() => false,
            _ = stopped.wait_for(|s| *s) => true,
        };
        let announcement = announcements.borrow().clone();
        let mut presence =
            Presence::new(if offline { PresenceType::Offline } else { kind }, peer_id);
        presence.content = Some(announcement.content);
        if !announcement.email.is_empty() {
            presence.email = Some(announcement.email);
        }
        presence.addrs = Some(announcement.addrs);
        presence.goop_client_version = Some(env!("CARGO_PKG_VERSION").into());
        last_ts = unix_ms().max(last_ts + 1);
        presence.ts = Some(last_ts);
        presence.sign(&keypair);
        // With nobody subscribed yet the publish fails; the next heartbeat tries again.
        if node.publish_presence(&presence).await.is_ok() {
            kind = PresenceType::Update;
        }
        if offline {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announced_addresses_end_in_our_peer_id_once() {
        let me = libp2p_identity::Keypair::generate_ed25519()
            .public()
            .to_peer_id();
        let relay = libp2p_identity::Keypair::generate_ed25519()
            .public()
            .to_peer_id();
        let listen: Vec<Multiaddr> = [
            "/ip4/192.168.1.2/tcp/4101".to_owned(),
            "/ip4/127.0.0.1/tcp/4101".to_owned(),
            "/ip4/169.254.3.4/tcp/4101".to_owned(),
            format!("/ip4/11.0.0.1/tcp/4001/p2p/{relay}/p2p-circuit/p2p/{me}"),
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        assert_eq!(
            announced_addrs(&listen, me, false),
            [
                format!("/ip4/192.168.1.2/tcp/4101/p2p/{me}"),
                format!("/ip4/11.0.0.1/tcp/4001/p2p/{relay}/p2p-circuit/p2p/{me}"),
            ]
        );
        assert_eq!(announced_addrs(&listen, me, true).len(), 3);
    }
}
