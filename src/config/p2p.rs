//! The `p2p` section: the libp2p node's port, network tag and connection and dial budgets.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `p2p`: the libp2p node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct P2p {
    /// TCP and QUIC listen port; 0 picks a free one.
    pub listen_port: u16,
    /// Peers announcing another tag are not auto-joined.
    pub mdns_tag: String,
    /// Connections in all, each way.
    pub max_connections: u32,
    /// Of those, inbound; the rest is kept for the peer's own dials.
    pub max_inbound: u32,
    /// Of the inbound, those of peers no hub, favourite or mDNS vouches for.
    pub max_inbound_strangers: u32,
    /// Open inbound connections from one IPv4 address or IPv6 /64.
    pub connections_per_address: u32,
    /// Dials the peer starts at once, then per second.
    pub dial_burst: u32,
    pub dials_per_second: u32,
    /// Relay for other peers (circuit relay v2) within the `presence.relay_*` bounds, for
    /// communities without a hub operator; a hub this peer hosts announces it at `/relay`.
    pub relay_enabled: bool,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Default for P2p {
    fn default() -> Self {
        P2p {
            listen_port: 0,
            mdns_tag: "goop-mdns".into(),
            max_connections: 512,
            max_inbound: 448,
            max_inbound_strangers: 384,
            connections_per_address: 16,
            dial_burst: 64,
            dials_per_second: 16,
            relay_enabled: false,
            extra: Map::new(),
        }
    }
}
