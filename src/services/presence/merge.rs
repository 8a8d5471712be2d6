//! What this peer hears about others, merged: presence from the mesh (vouched for when it comes
//! from the peer itself or one connected to us) and from each hub, into the PeerTable; peers a
//! hub announces are vouched for within that hub's reach and dialled; and the announcement
//! follows the node's listen addresses.

use std::collections::HashSet;
use std::sync::Arc;

use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;
use tokio::sync::{mpsc, watch};

use crate::identity::PeerId;
use crate::services::hub::presence::PresenceType;
use crate::services::node::vouched::Reach;
use crate::services::node::{Node, NodeEvent};
use crate::services::presence::hub_client::{Announcement, LinkEvent};
use crate::services::presence::lan::announced_addrs;
use crate::services::presence::peer_table::{PeerTable, Source, read_peer_id};

/// What keeps the announced addresses true to the node's listen addresses.
pub struct AddressBook {
    pub peer_id: PeerId,
    pub include_loopback: bool,
    pub announcement: Arc<watch::Sender<Announcement>>,
}

/// Feeds the PeerTable from the node and the hubs, dials peers the hubs tell about, and
/// re-announces when the node's addresses change.
pub async fn merge(
    node: Node,
    table: PeerTable,
    mut node_events: mpsc::Receiver<NodeEvent>,
    mut hub_events: mpsc::Receiver<(Source, Reach, LinkEvent)>,
    addresses: AddressBook,
) {
    let mut hubs_open = true;
    // Peers with a connection to this one (bounded by the node's connection limits): their
    // presence is vouched for, whoever relays it.
    let mut connected: HashSet<PeerId> = HashSet::new();
    loop {
        tokio::select! {
            event = node_events.recv() => match event {
                Some(NodeEvent::Presence { presence, via }) => {
                    let vouched = via == presence.peer_id || connected.contains(&presence.peer_id);
                    table
                        .observe_gossip(presence.peer_id, presence.presence, vouched)
                        .await;
                }
                Some(NodeEvent::Connected(peer)) => {
                    connected.insert(peer);
                }
                Some(NodeEvent::Disconnected(peer)) => {
                    connected.remove(&peer);
                }
                Some(NodeEvent::PresenceRefused { via, reason }) => {
                    tracing::debug!(peer.id = %via, "dropped gossip presence: {reason}");
                }
                Some(NodeEvent::ListenAddrsChanged(listen)) => {
                    let addrs =
                        announced_addrs(&listen, addresses.peer_id, addresses.include_loopback);
                    // Publishers send an `update` as soon as the announcement changes.
                    addresses.announcement.send_if_modified(|announcement| {
                        if announcement.addrs == addrs {
                            return false;
                        }
                        tracing::info!(addrs = ?addrs, "the listen addresses changed; announcing");
                        announcement.addrs = addrs;
                        true
                    });
                }
                Some(_) => {}
                None => return,
            },
            // Without hubs (or once they are all gone) only the LAN is left.
            event = hub_events.recv(), if hubs_open => match event {
                Some((source, reach, LinkEvent::Presence(presence))) => {
                    // The hub's word as it came: its peer ID is read once, here.
                    let Some(peer) = read_peer_id(&presence, &source) else {
                        continue;
                    };
                    if presence.kind != PresenceType::Offline {
                        let addrs = presence.addrs.as_deref().unwrap_or_default();
                        dial_vouched(&node, peer, addrs, reach).await;
                    }
                    table.observe_peer(peer, *presence, source).await;
                }
                // Until the hub says it again, what it said holds for a while only.
                Some((source, _, LinkEvent::Reset | LinkEvent::Disconnected { .. })) => {
                    table.source_unconfirmed(source).await
                }
                Some((source, _, LinkEvent::Resumed)) => table.source_confirmed(source).await,
                Some(_) => {}
                None => hubs_open = false,
            },
        }
    }
}

/// Knows `peer`, keeps those of `addrs` that name it and lie within `reach` as where it may be
/// dialled, and dials it there unless connected.
pub async fn dial_vouched(node: &Node, peer: PeerId, addrs: &[String], reach: Reach) {
    let vouched: Vec<Multiaddr> = addrs
        .iter()
        .filter_map(|addr| addr.parse::<Multiaddr>().ok())
        .filter(|addr| {
            addr.iter()
                .any(|p| matches!(p, Protocol::P2p(id) if id == peer))
                && reach.permits(addr)
        })
        .collect();
    // Known even without an address to dial: its connections are not strangers'.
    let dialable = !vouched.is_empty();
    if node.vouch(peer, vouched).await.is_ok()
        && dialable
        && let Err(err) = node.dial_peer(peer).await
    {
        // The dial budget may be spent; the reachability prober dials it later.
        tracing::debug!(peer.id = %peer, "not dialled now: {err:#}");
    }
}
