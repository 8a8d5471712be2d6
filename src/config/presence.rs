//! The `presence` section: heartbeats, the rendezvous hubs a peer uses and the hub a directory
//! may host, with the hub's port taken from the environment when the file leaves it out.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::validate::parse_nets;
use super::{ConfigError, Secret};

/// The hub's port when neither `presence.rendezvous_port` nor the environment says otherwise.
pub const DEFAULT_RENDEZVOUS_PORT: u16 = 8787;

/// The relay's port unless `presence.relay_port` says otherwise: libp2p's usual one.
pub const DEFAULT_RELAY_PORT: u16 = 4001;

/// The environment variable through which hosting platforms tell a service which port to
/// listen on; `goop2 rendezvous` reads it when `goop.json` leaves the port out.
pub const PORT_VARIABLE: &str = "PORT";

/// Where a hub that `goop2` configures keeps its state (`presence.peer_db_path`, relative to
/// its directory): a restarted hub then resumes its peers' streams instead of sending each of
/// them every peer again, a storm that grows with the square of the community.
pub const HUB_PEER_DB: &str = "data/peers.db";

/// `presence`: heartbeats, rendezvous hubs and the hub this directory may host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PresenceSettings {
    pub topic: String,
    pub ttl_seconds: u32,
    pub heartbeat_seconds: u32,
    pub rendezvous_host: bool,
    /// The hub's port; absent means "the platform's `PORT`, else 8787" (see
    /// [`PresenceSettings::hub_port`]). Absent stays absent when the file is saved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rendezvous_port: Option<u16>,
    /// The port `goop2 rendezvous` took from the environment; never saved.
    #[serde(skip)]
    pub environment_port: Option<u16>,
    pub rendezvous_bind: String,
    pub rendezvous_wan: String,
    pub rendezvous_only: bool,
    pub admin_password: Secret,
    /// The SQLite file a hub keeps its state in (empty: in memory only). The configurations
    /// `goop2` writes for a hub name [`HUB_PEER_DB`].
    pub peer_db_path: String,
    /// PostgreSQL shared by several hub instances (`postgres://user:password@host/db`); its
    /// password is never shown: see [`redact_url_password`](super::redact_url_password).
    pub peer_db_url: Secret,
    pub templates_dir: String,
    pub allow_unsigned: bool,
    /// Reverse proxies (IP addresses or CIDR ranges) whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<String>,
    /// Publishes one address may make at once before the rate applies.
    pub publish_burst: u32,
    /// Publishes per second one address may sustain.
    pub publish_per_second: u32,
    /// Open SSE and WebSocket streams the hub serves in total.
    pub max_streams: u32,
    /// Open streams one address may hold.
    pub max_streams_per_ip: u32,
    /// Presence messages one libp2p neighbour may send at once before the rate applies.
    pub gossip_burst: u32,
    /// Presence messages per second one libp2p neighbour may sustain.
    pub gossip_per_second: u32,
    /// Peers the peer list holds at most.
    pub max_peers: u32,
    /// Of those, peers heard of only second-hand over gossip (no hub, favourite, earlier run or
    /// own connection vouches for them).
    pub max_gossip_strangers: u32,
    /// Run a libp2p circuit relay beside the hub (`goop2 rendezvous`), for peers behind NAT.
    pub relay_enabled: bool,
    /// The relay's TCP and QUIC port, on every interface (0: any free one).
    pub relay_port: u16,
    /// Where peers reach the relay, as multiaddrs (`/ip4/203.0.113.7/tcp/4001`), when that is not
    /// an address it listens on (behind a firewall's port forward or a NAT); empty: those.
    pub relay_external_addrs: Vec<String>,
    /// Relay reservations held at once, in total and per peer.
    pub relay_max_reservations: u32,
    pub relay_max_reservations_per_peer: u32,
    /// How long a reservation lasts before its peer renews it.
    pub relay_reservation_seconds: u32,
    /// Circuits open at once, in total and per peer.
    pub relay_max_circuits: u32,
    pub relay_max_circuits_per_peer: u32,
    /// How long one circuit may stay open, and how many bytes it may carry.
    pub relay_circuit_seconds: u32,
    pub relay_circuit_bytes: u64,
    /// Connections the hub's relay host holds at once (slots, circuits, AutoNAT probes and
    /// Identify together); more are refused until some close.
    pub relay_max_connections: u32,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Default for PresenceSettings {
    fn default() -> Self {
        PresenceSettings {
            topic: "goop.presence.v1".into(),
            ttl_seconds: 20,
            heartbeat_seconds: 5,
            rendezvous_host: false,
            rendezvous_port: None,
            environment_port: None,
            rendezvous_bind: "127.0.0.1".into(),
            rendezvous_wan: String::new(),
            rendezvous_only: false,
            admin_password: Secret::default(),
            peer_db_path: String::new(),
            peer_db_url: Secret::default(),
            templates_dir: "templates".into(),
            allow_unsigned: false,
            trusted_proxies: Vec::new(),
            publish_burst: 60,
            publish_per_second: 1,
            max_streams: 20_000,
            max_streams_per_ip: 30,
            gossip_burst: 100,
            gossip_per_second: 20,
            max_peers: 2_000,
            max_gossip_strangers: 500,
            relay_enabled: false,
            relay_port: DEFAULT_RELAY_PORT,
            relay_external_addrs: Vec::new(),
            relay_max_reservations: 128,
            relay_max_reservations_per_peer: 4,
            relay_reservation_seconds: 3600,
            relay_max_circuits: 16,
            relay_max_circuits_per_peer: 4,
            relay_circuit_seconds: 120,
            relay_circuit_bytes: 128 * 1024,
            relay_max_connections: crate::services::relay::DEFAULT_MAX_CONNECTIONS,
            extra: Map::new(),
        }
    }
}

impl PresenceSettings {
    /// The port the hub listens on: `rendezvous_port` when set, else the port taken from the
    /// environment, else [`DEFAULT_RENDEZVOUS_PORT`].
    pub fn hub_port(&self) -> u16 {
        self.rendezvous_port
            .or(self.environment_port)
            .unwrap_or(DEFAULT_RENDEZVOUS_PORT)
    }

    /// For `goop2 rendezvous`: takes the hub's port from [`PORT_VARIABLE`] (its `value`, if
    /// set) when `rendezvous_port` is absent, as hosting platforms expect. A port in goop.json
    /// wins and the variable is not even read. Returns the port taken.
    pub fn use_environment_port(
        &mut self,
        value: Option<&str>,
    ) -> Result<Option<u16>, ConfigError> {
        if self.rendezvous_port.is_some() {
            return Ok(None);
        }
        let Some(value) = value else {
            return Ok(None);
        };
        let port = value
            .trim()
            .parse::<u16>()
            .map_err(|_| ConfigError::Environment {
                variable: PORT_VARIABLE,
                value: value.to_owned(),
            })?;
        self.environment_port = Some(port);
        Ok(Some(port))
    }

    /// The validated bind address of the hub.
    pub fn rendezvous_bind_ip(&self) -> IpAddr {
        self.rendezvous_bind
            .parse()
            .unwrap_or(IpAddr::from([127, 0, 0, 1]))
    }

    /// The validated trusted proxy ranges; a bare address is a /32 or /128 range.
    pub fn trusted_proxy_nets(&self) -> Vec<IpNet> {
        parse_nets(&self.trusted_proxies)
    }
}
