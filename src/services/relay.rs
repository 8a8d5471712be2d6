//! The hub's circuit relay: a libp2p host of its own (TCP and QUIC, Noise, Yamux) running
//! circuit relay v2, so that two peers behind home routers, which cannot dial each other, still
//! reach each other through the hub (and then try to connect directly with DCUtR). It also
//! answers Identify (which tells a peer the address the hub sees it at), Ping, and AutoNAT
//! dial-back probes (which tell a peer whether others can reach it).
//!
//! Everything it holds is bounded by [`RelayLimits`]: reservations in total and per peer, how
//! long one lasts, circuits in total and per peer, and each circuit's duration and bytes (the
//! defaults are rust-libp2p's, whose per-peer and per-IP rates of new reservations and circuits
//! also apply), and connections to its host in total, per peer and in their handshake. A
//! circuit over its time or bytes is closed by the relay.
//!
//! One task owns the swarm; [`Relay`] is the handle with its identity, its addresses and its
//! counters, and the task stops when the hub stops.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{ConnectionId, NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, SwarmBuilder, autonat, connection_limits, identify, noise, ping, relay, tcp,
    yamux,
};
use libp2p_identity::Keypair;
use serde::Serialize;
use tokio::sync::watch;

/// The Identify protocol version of the relay host.
const PROTOCOL_VERSION: &str = "goop2-relay/1";
/// How long an idle connection to the relay stays open; a reservation keeps its own open.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an AutoNAT dial-back may take (a peer behind a NAT never answers one).
const DIAL_BACK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long starting may take to learn the addresses it listens on.
const LISTEN_WAIT: Duration = Duration::from_secs(10);

/// Connections the hub's relay host holds at once by default (`presence.relay_max_connections`).
pub const DEFAULT_MAX_CONNECTIONS: u32 = 1024;
/// Connections one peer may hold to the relay host (a peer needs one; a restart or a crossed
/// dial makes two for a moment).
const CONNECTIONS_PER_PEER: u32 = 4;
/// Connections still in their handshake at once; the rest wait in the kernel's backlog.
const PENDING_CONNECTIONS: u32 = 128;

/// What the relay allows; the defaults are rust-libp2p's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RelayLimits {
    pub max_reservations: usize,
    pub max_reservations_per_peer: usize,
    /// How long a reservation lasts before its peer must renew it.
    pub reservation_seconds: u64,
    pub max_circuits: usize,
    pub max_circuits_per_peer: usize,
    /// How long one circuit may stay open.
    pub circuit_seconds: u64,
    /// How many bytes one circuit may carry, each way together.
    pub circuit_bytes: u64,
    /// Connections the hub's relay host holds at once, and per peer (a peer relaying for
    /// others keeps its node's own connection budget instead).
    pub max_connections: u32,
    pub max_connections_per_peer: u32,
}

impl Default for RelayLimits {
    fn default() -> Self {
        let libp2p = relay::Config::default();
        RelayLimits {
            max_reservations: libp2p.max_reservations,
            max_reservations_per_peer: libp2p.max_reservations_per_peer,
            reservation_seconds: libp2p.reservation_duration.as_secs(),
            max_circuits: libp2p.max_circuits,
            max_circuits_per_peer: libp2p.max_circuits_per_peer,
            circuit_seconds: libp2p.max_circuit_duration.as_secs(),
            circuit_bytes: libp2p.max_circuit_bytes,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_peer: CONNECTIONS_PER_PEER,
        }
    }
}

impl RelayLimits {
    /// The bounds goop.json sets (`presence.relay_*`), for the hub's relay and a peer's alike.
    pub fn of(presence: &crate::config::PresenceSettings) -> RelayLimits {
        RelayLimits {
            max_reservations: presence.relay_max_reservations as usize,
            max_reservations_per_peer: presence.relay_max_reservations_per_peer as usize,
            reservation_seconds: presence.relay_reservation_seconds.into(),
            max_circuits: presence.relay_max_circuits as usize,
            max_circuits_per_peer: presence.relay_max_circuits_per_peer as usize,
            circuit_seconds: presence.relay_circuit_seconds.into(),
            circuit_bytes: presence.relay_circuit_bytes,
            max_connections: presence.relay_max_connections,
            max_connections_per_peer: CONNECTIONS_PER_PEER,
        }
    }

    /// The relay host's connection limits.
    fn connection_limits(&self) -> connection_limits::ConnectionLimits {
        connection_limits::ConnectionLimits::default()
            .with_max_pending_incoming(Some(PENDING_CONNECTIONS.min(self.max_connections)))
            .with_max_established(Some(self.max_connections))
            .with_max_established_per_peer(Some(self.max_connections_per_peer))
    }

    /// The relay behaviour's configuration.
    pub fn to_config(&self) -> relay::Config {
        relay::Config {
            max_reservations: self.max_reservations,
            max_reservations_per_peer: self.max_reservations_per_peer,
            reservation_duration: Duration::from_secs(self.reservation_seconds),
            max_circuits: self.max_circuits,
            max_circuits_per_peer: self.max_circuits_per_peer,
            max_circuit_duration: Duration::from_secs(self.circuit_seconds),
            max_circuit_bytes: self.circuit_bytes,
            ..relay::Config::default()
        }
    }
}

/// How to run the relay.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    pub listen_ip: IpAddr,
    /// TCP and QUIC port; 0 picks free ones.
    pub port: u16,
    /// The addresses peers reach the relay at (a public IP and port behind a firewall or NAT);
    /// empty: the addresses it listens on.
    pub external_addrs: Vec<Multiaddr>,
    pub limits: RelayLimits,
    /// Probe addresses that are not global too (AutoNAT); for LANs and tests.
    pub probe_private_addrs: bool,
}

/// What the relay counts, for `/metrics`.
#[derive(Debug, Default)]
pub struct RelayMetrics {
    pub reservations: AtomicU64,
    pub reservations_accepted: AtomicU64,
    pub reservations_refused: AtomicU64,
    pub circuits: AtomicU64,
    pub circuits_accepted: AtomicU64,
    pub circuits_refused: AtomicU64,
    pub circuits_closed: AtomicU64,
    /// Bytes the relay's host sent and received, by transport and direction: circuits,
    /// reservations and probes together (set once the host runs).
    pub transport: std::sync::OnceLock<prometheus_client::registry::Registry>,
}

impl RelayMetrics {
    /// The counters in the Prometheus text format.
    pub fn render(&self) -> String {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let lines = [
            (
                "goop_relay_reservations",
                "gauge",
                "Reservations held now.",
                get(&self.reservations),
            ),
            (
                "goop_relay_reservations_accepted_total",
                "counter",
                "Reservations accepted (renewals included).",
                get(&self.reservations_accepted),
            ),
            (
                "goop_relay_reservations_refused_total",
                "counter",
                "Reservations refused (limits, rates).",
                get(&self.reservations_refused),
            ),
            (
                "goop_relay_circuits",
                "gauge",
                "Circuits open now.",
                get(&self.circuits),
            ),
            (
                "goop_relay_circuits_accepted_total",
                "counter",
                "Circuits opened.",
                get(&self.circuits_accepted),
            ),
            (
                "goop_relay_circuits_refused_total",
                "counter",
                "Circuits refused (limits, rates, no reservation).",
                get(&self.circuits_refused),
            ),
            (
                "goop_relay_circuits_closed_total",
                "counter",
                "Circuits closed (ended, or over their time or bytes).",
                get(&self.circuits_closed),
            ),
        ];
        let mut text = String::new();
        for (name, kind, help, value) in lines {
            text.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            ));
        }
        if let Some(registry) = self.transport.get() {
            let mut bytes = String::new();
            if prometheus_client::encoding::text::encode(&mut bytes, registry).is_ok() {
                // The exposition goes on after these lines: no end marker.
                text.push_str(bytes.trim_end().trim_end_matches("# EOF").trim_end());
                text.push('\n');
            }
        }
        text
    }
}

/// The running relay. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct Relay {
    pub peer_id: PeerId,
    /// Where peers reach it, each ending in `/p2p/<peer_id>`.
    pub addrs: Vec<Multiaddr>,
    pub limits: RelayLimits,
    pub metrics: Arc<RelayMetrics>,
}

#[derive(NetworkBehaviour)]
struct RelayBehaviour {
    /// First: a connection over the limits is refused before the others see it.
    connections: connection_limits::Behaviour,
    relay: relay::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    autonat: autonat::Behaviour,
}

impl Relay {
    /// Starts the relay with identity `keypair`; it runs until `stop` says true.
    pub async fn start(
        keypair: Keypair,
        options: RelayOptions,
        mut stop: watch::Receiver<bool>,
    ) -> anyhow::Result<Relay> {
        let peer_id = keypair.public().to_peer_id();
        let limits = options.limits.clone();
        let metrics = Arc::new(RelayMetrics::default());
        let mut registry = prometheus_client::registry::Registry::with_prefix("goop_relay");
        let mut swarm = SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .context("cannot set up the relay's TCP transport")?
            .with_quic()
            .with_bandwidth_metrics(&mut registry)
            .with_behaviour(|key| RelayBehaviour {
                connections: connection_limits::Behaviour::new(limits.connection_limits()),
                relay: relay::Behaviour::new(peer_id, limits.to_config()),
                identify: identify::Behaviour::new(identify::Config::new(
                    PROTOCOL_VERSION.into(),
                    key.public(),
                )),
                ping: ping::Behaviour::default(),
                autonat: autonat::Behaviour::new(
                    peer_id,
                    autonat::Config {
                        only_global_ips: !options.probe_private_addrs,
                        ..autonat::Config::default()
                    },
                ),
            })
            .context("cannot set up the relay's behaviours")?
            .with_swarm_config(|config| config.with_idle_connection_timeout(IDLE_TIMEOUT))
            // The relay dials only AutoNAT's dial-backs: one that gets no answer says
            // "unreachable" sooner.
            .with_connection_timeout(DIAL_BACK_TIMEOUT)
            .build();
        let ip = match options.listen_ip {
            IpAddr::V4(ip) => Protocol::Ip4(ip),
            IpAddr::V6(ip) => Protocol::Ip6(ip),
        };
        let tcp = Multiaddr::empty()
            .with(ip.clone())
            .with(Protocol::Tcp(options.port));
        swarm
            .listen_on(tcp.clone())
            .with_context(|| format!("cannot listen on {tcp} (presence.relay_port)"))?;
        // The TCP port picked, then QUIC on the same number.
        let mut listening = Vec::new();
        let deadline = tokio::time::Instant::now() + LISTEN_WAIT;
        while listening.is_empty() {
            let event = tokio::time::timeout_at(deadline, swarm.select_next_some())
                .await
                .context("the relay did not start listening")?;
            match event {
                SwarmEvent::NewListenAddr { address, .. } => listening.push(address),
                SwarmEvent::ListenerClosed {
                    reason: Err(err), ..
                } => anyhow::bail!("the relay cannot listen on {tcp}: {err}"),
                _ => {}
            }
        }
        let port = listening.iter().find_map(|a| {
            a.iter().find_map(|p| match p {
                Protocol::Tcp(port) => Some(port),
                _ => None,
            })
        });
        if let Some(port) = port {
            let quic = Multiaddr::empty()
                .with(ip)
                .with(Protocol::Udp(port))
                .with(Protocol::QuicV1);
            if let Err(err) = swarm.listen_on(quic.clone()) {
                tracing::warn!("the relay does not listen on {quic} (QUIC): {err}");
            }
        }
        // Give QUIC a moment to report its address too.
        let settle = tokio::time::Instant::now() + Duration::from_millis(300);
        while let Ok(event) = tokio::time::timeout_at(settle, swarm.select_next_some()).await {
            if let SwarmEvent::NewListenAddr { address, .. } = event {
                listening.push(address);
            }
        }
        let external = match options.external_addrs.is_empty() {
            false => options.external_addrs.clone(),
            true => listening,
        };
        for addr in &external {
            swarm.add_external_address(addr.clone());
        }
        let addrs: Vec<Multiaddr> = external
            .into_iter()
            .map(|addr| addr.with_p2p(peer_id).unwrap_or_else(|addr| addr))
            .collect();
        tracing::info!(relay.id = %peer_id, addrs = ?addrs, "circuit relay running");
        let _ = metrics.transport.set(registry);
        let relay = Relay {
            peer_id,
            addrs,
            limits: options.limits,
            metrics,
        };
        let metrics = relay.metrics.clone();
        tokio::spawn(async move {
            let mut slots = Slots::default();
            loop {
                tokio::select! {
                    event = swarm.select_next_some() => {
                        match event {
                            SwarmEvent::ConnectionEstablished { peer_id, connection_id, endpoint, .. } => {
                                slots.connected(peer_id, connection_id, endpoint.is_listener());
                            }
                            SwarmEvent::ConnectionClosed { peer_id, connection_id, .. } => {
                                slots.closed(&metrics, peer_id, connection_id);
                            }
                            SwarmEvent::Behaviour(RelayBehaviourEvent::Relay(event)) => {
                                slots.relay_event(&metrics, event);
                            }
                            _ => {}
                        }
                    }
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
            tracing::info!("circuit relay stopped");
        });
        Ok(relay)
    }
}

/// The connections holding a slot on a relay (the hub's, or a peer's with
/// `p2p.relay_enabled`), kept by the task that owns the relay's swarm; the reservations gauge is
/// their number. It is kept from the swarm's connection events rather than from the relay's
/// `ReservationClosed` alone, which comes for every connection a peer closes, slot or none (a
/// peer whose dial-back or refused connection closed would otherwise take another's slot off
/// the gauge). Bounded: a peer's connections are held while they are open, slots while the
/// relay's limits allow them.
#[derive(Debug, Default)]
pub struct Slots {
    /// Each peer's open inbound connections, newest last: a client asks for its slot over a
    /// connection it dialled.
    inbound: HashMap<PeerId, Vec<ConnectionId>>,
    held: HashMap<PeerId, Vec<ConnectionId>>,
}

impl Slots {
    /// A connection opened; `inbound` when the peer dialled it.
    pub fn connected(&mut self, peer: PeerId, connection: ConnectionId, inbound: bool) {
        if inbound {
            self.inbound.entry(peer).or_default().push(connection);
        }
    }

    /// A connection closed, and the slot on it, if it held one.
    pub fn closed(&mut self, metrics: &RelayMetrics, peer: PeerId, connection: ConnectionId) {
        for map in [&mut self.inbound, &mut self.held] {
            if let Some(connections) = map.get_mut(&peer) {
                connections.retain(|c| *c != connection);
                if connections.is_empty() {
                    map.remove(&peer);
                }
            }
        }
        self.update(metrics);
    }

    fn update(&self, metrics: &RelayMetrics) {
        let held: usize = self.held.values().map(Vec::len).sum();
        metrics.reservations.store(held as u64, Ordering::Relaxed);
    }

    /// Counts what the relay did.
    pub fn relay_event(&mut self, metrics: &RelayMetrics, event: relay::Event) {
        let add = |counter: &AtomicU64| counter.fetch_add(1, Ordering::Relaxed);
        let sub = |counter: &AtomicU64| {
            let _ =
                counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        };
        #[allow(deprecated)]
        match event {
            relay::Event::ReservationReqAccepted {
                renewed,
                src_peer_id,
            } => {
                add(&metrics.reservations_accepted);
                let newest = self
                    .inbound
                    .get(&src_peer_id)
                    .and_then(|open| open.last().copied());
                if let (false, Some(connection)) = (renewed, newest) {
                    let held = self.held.entry(src_peer_id).or_default();
                    if !held.contains(&connection) {
                        held.push(connection);
                    }
                    tracing::debug!(peer.id = %src_peer_id, "relay reservation accepted");
                }
            }
            relay::Event::ReservationTimedOut { src_peer_id } => {
                if let Some(held) = self.held.get_mut(&src_peer_id) {
                    held.remove(0);
                    if held.is_empty() {
                        self.held.remove(&src_peer_id);
                    }
                }
            }
            relay::Event::ReservationReqDenied { src_peer_id, .. } => {
                add(&metrics.reservations_refused);
                tracing::info!(peer.id = %src_peer_id, "relay reservation refused");
            }
            relay::Event::CircuitReqAccepted { .. } => {
                add(&metrics.circuits);
                add(&metrics.circuits_accepted);
            }
            relay::Event::CircuitReqDenied {
                src_peer_id,
                dst_peer_id,
                ..
            } => {
                add(&metrics.circuits_refused);
                tracing::info!(from = %src_peer_id, to = %dst_peer_id, "relay circuit refused");
            }
            relay::Event::CircuitClosed { .. } => {
                sub(&metrics.circuits);
                add(&metrics.circuits_closed);
            }
            _ => {}
        }
        self.update(metrics);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(peer: PeerId, renewed: bool) -> relay::Event {
        relay::Event::ReservationReqAccepted {
            src_peer_id: peer,
            renewed,
        }
    }

    fn gauge(metrics: &RelayMetrics) -> u64 {
        metrics.reservations.load(Ordering::Relaxed)
    }

    #[test]
    fn only_a_connection_holding_a_slot_takes_it_off_the_gauge() {
        let (metrics, mut slots) = (RelayMetrics::default(), Slots::default());
        let (ann, bea) = (PeerId::random(), PeerId::random());
        let c = ConnectionId::new_unchecked;
        slots.connected(ann, c(1), true);
        slots.relay_event(&metrics, accepted(ann, false));
        slots.relay_event(&metrics, accepted(ann, true));
        assert_eq!(gauge(&metrics), 1);
        // Bea was refused; her connection closes, and the relay says a reservation closed.
        slots.connected(bea, c(2), true);
        slots.closed(&metrics, bea, c(2));
        slots.relay_event(
            &metrics,
            relay::Event::ReservationClosed { src_peer_id: bea },
        );
        assert_eq!(gauge(&metrics), 1);
        // A dial-back connection of the relay's to Ann comes and goes.
        slots.connected(ann, c(3), false);
        slots.closed(&metrics, ann, c(3));
        assert_eq!(gauge(&metrics), 1);
        // Ann takes her slot again on a new connection before the old one closes.
        slots.connected(ann, c(4), true);
        slots.relay_event(&metrics, accepted(ann, false));
        assert_eq!(gauge(&metrics), 2);
        slots.closed(&metrics, ann, c(1));
        slots.relay_event(
            &metrics,
            relay::Event::ReservationClosed { src_peer_id: ann },
        );
        assert_eq!(gauge(&metrics), 1);
        // It lapses.
        slots.relay_event(
            &metrics,
            relay::Event::ReservationTimedOut { src_peer_id: ann },
        );
        assert_eq!(gauge(&metrics), 0);
        assert!(slots.held.is_empty());
        slots.closed(&metrics, ann, c(4));
        assert!(slots.inbound.is_empty());
    }
}
