//! NAT traversal, inside the node task: whether others can reach this peer (AutoNAT, asked of
//! the relays the hubs announce), a slot on those relays while they cannot (circuit relay v2,
//! renewed by the relay client, taken again with backoff when it lapses or its relay comes
//! back), and the upgrade of relayed connections to direct ones (DCUtR hole punching, tried
//! again over a fresh circuit with backoff while a peer stays relayed).
//!
//! Peers do not answer AutoNAT probes for others: a probe makes its server dial whatever
//! addresses the client names, which only a hub's relay, bounded by its operator, should do.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::autonat::{self, NatStatus};
use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId, Swarm};
use serde::Serialize;

use super::Behaviour;

/// Relays this peer keeps a slot on at once (a hub or two is enough to be reached); a new one
/// past this takes the place of the one announced least recently.
pub const MAX_RELAYS: usize = 4;
/// A relay no hub has announced for this long is let go (hubs announce theirs every 5 min).
const FORGET_AFTER: Duration = Duration::from_secs(20 * 60);
/// The first wait before a lapsed or refused reservation is asked again; it doubles up to
/// [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(2);
const MAX_RETRY: Duration = Duration::from_secs(60);
/// A peer still reached only through a circuit this peer dialled is given another hole punch
/// this long after the circuit opened (DCUtR's own three attempts take up to 30 s); the wait
/// doubles up to [`PUNCH_AGAIN_CAP`], for [`PUNCH_TRIES`] tries in all (about half an hour),
/// counted afresh once the peer was away.
pub(super) const PUNCH_AGAIN_AFTER: Duration = Duration::from_secs(40);
pub(super) const PUNCH_AGAIN_CAP: Duration = Duration::from_secs(10 * 60);
pub(super) const PUNCH_TRIES: u32 = 6;

/// AutoNAT as a client only: probes start soon after a relay is known, are retried every
/// 30 s while the answer is unknown, and servers may be asked again after 5 s (with one
/// hub there is one server).
pub fn autonat_config() -> autonat::Config {
    autonat::Config {
        boot_delay: Duration::from_secs(2),
        retry_interval: Duration::from_secs(30),
        refresh_interval: Duration::from_secs(5 * 60),
        throttle_server_period: Duration::from_secs(5),
        use_connected: false,
        confidence_max: 2,
        // Never a server: no dial-backs for others.
        throttle_clients_global_max: 0,
        throttle_clients_peer_max: 0,
        only_global_ips: false,
        ..autonat::Config::default()
    }
}

/// How this peer is reached, as the console shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reachability {
    /// `public`, `private` (behind a NAT or firewall) or `unknown`.
    pub status: &'static str,
    /// The address others reached this peer at, when public.
    pub public_addr: Option<String>,
    /// One line for the owner: how others reach this peer, or why they cannot.
    pub summary: String,
    pub relays: Vec<RelaySlot>,
}

/// One relay this peer knows of, and its slot there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RelaySlot {
    pub peer_id: String,
    /// `reserved`, `reserving`, `waiting` (to ask again) or `unused` (not needed now).
    pub state: &'static str,
    /// The circuit address others dial, while reserved.
    pub circuit: Option<String>,
    /// Why the last reservation failed or ended.
    pub error: Option<String>,
}

/// How one connection to a peer was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkKind {
    /// Through a relay's circuit.
    Relayed,
    /// Dialled directly, by either side.
    Direct,
    /// Made directly by hole punching over a relayed connection (DCUtR).
    HolePunched,
}

impl LinkKind {
    pub fn of(endpoint: &libp2p::core::ConnectedPoint) -> LinkKind {
        if endpoint.is_relayed() {
            LinkKind::Relayed
        } else {
            LinkKind::Direct
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LinkKind::Relayed => "relayed",
            LinkKind::Direct => "direct",
            LinkKind::HolePunched => "hole-punched",
        }
    }
}

struct Relay {
    /// Where the relay is dialled, each ending in `/p2p/<relay>`.
    addrs: Vec<Multiaddr>,
    listener: Option<ListenerId>,
    circuit: Option<Multiaddr>,
    error: Option<String>,
    /// Failures in a row, for the backoff.
    failures: u32,
    retry_at: Option<Instant>,
    /// When a hub last announced it.
    seen: Instant,
}

/// The traversal state the node task keeps.
#[derive(Default)]
pub(super) struct Traversal {
    status: Option<NatStatus>,
    relays: HashMap<PeerId, Relay>,
    /// Hole-punched connections, until they close (bounded by the connection limits).
    pub(super) punched: std::collections::HashSet<ConnectionId>,
    /// Why the last hole punch with a peer failed (bounded: one per connected peer).
    pub(super) punch_errors: HashMap<PeerId, String>,
    /// Hole punches tried again with a peer reached only through circuits, and when the last
    /// went (bounded: one per connected peer).
    pub(super) punch_retries: HashMap<PeerId, (u32, Instant)>,
    /// Why the last AutoNAT probe told nothing, until one does.
    probe_error: Option<String>,
}

impl Traversal {
    fn private(&self) -> bool {
        matches!(self.status, Some(NatStatus::Private))
    }

    /// A hub announced a relay: AutoNAT may ask it, and it holds a slot while this peer is
    /// private. Its addresses replace those known before.
    pub(super) fn use_relay(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        relay: PeerId,
        addrs: Vec<Multiaddr>,
    ) {
        if relay == *swarm.local_peer_id() || addrs.is_empty() {
            return;
        }
        if !self.relays.contains_key(&relay) && self.relays.len() >= MAX_RELAYS {
            let oldest = self
                .relays
                .iter()
                .min_by_key(|(_, known)| known.seen)
                .map(|(peer, _)| *peer);
            if let Some(oldest) = oldest {
                self.forget(swarm, oldest);
            }
        }
        let mut addrs: Vec<Multiaddr> = addrs
            .into_iter()
            .map(|addr| addr.with_p2p(relay).unwrap_or_else(|addr| addr))
            .collect();
        // QUIC first: the relay's view of this peer's UDP mapping is what DCUtR offers the
        // other side, and UDP holes punch far more reliably than TCP's simultaneous open
        // through home routers. A relay that cannot be reached over QUIC is tried over its
        // next address (see [`Relay::failed`]).
        addrs.sort_by_key(|addr| !is_quic(addr));
        let behaviour = swarm.behaviour_mut();
        behaviour.vouched.vouch(relay, addrs.clone());
        for addr in &addrs {
            behaviour.autonat.add_server(relay, Some(addr.clone()));
        }
        let entry = self.relays.entry(relay).or_insert_with(|| Relay {
            addrs: Vec::new(),
            listener: None,
            circuit: None,
            error: None,
            failures: 0,
            retry_at: None,
            seen: Instant::now(),
        });
        if entry.addrs.iter().collect::<std::collections::HashSet<_>>()
            != addrs.iter().collect::<std::collections::HashSet<_>>()
        {
            entry.addrs = addrs;
        }
        entry.seen = Instant::now();
        // AutoNAT asks over a connection of its own; being connected lets it start. One
        // address at a time, the preferred one first (racing them all would let TCP win).
        let dial = libp2p::swarm::dial_opts::DialOpts::peer_id(relay)
            .addresses(entry.addrs.iter().take(1).cloned().collect())
            .condition(libp2p::swarm::dial_opts::PeerCondition::DisconnectedAndNotDialing)
            .build();
        let _ = swarm.dial(dial);
        self.reserve_where_needed(swarm);
    }

    /// Lets `relay` go (no hub announced it lately, or a newer one takes its place): its
    /// slot, if it holds one, goes back, and AutoNAT no longer asks it.
    fn forget(&mut self, swarm: &mut Swarm<Behaviour>, relay: PeerId) {
        if let Some(known) = self.relays.remove(&relay) {
            tracing::info!(relay.id = %relay, "letting a relay go");
            if let Some(listener) = known.listener {
                swarm.remove_listener(listener);
            }
            swarm.behaviour_mut().autonat.remove_server(&relay);
        }
    }

    /// AutoNAT's new answer.
    pub(super) fn status_changed(&mut self, swarm: &mut Swarm<Behaviour>, status: NatStatus) {
        match &status {
            NatStatus::Public(addr) => {
                tracing::info!(%addr, "others can reach this peer directly (AutoNAT)")
            }
            NatStatus::Private => tracing::info!(
                "others cannot reach this peer directly (AutoNAT); reserving a relay slot"
            ),
            NatStatus::Unknown => tracing::info!("whether others can reach this peer is unknown"),
        }
        self.status = Some(status);
        if matches!(self.status, Some(NatStatus::Public(_))) {
            // Reachable without help: the slots go back to the relays.
            for relay in self.relays.values_mut() {
                if let Some(listener) = relay.listener.take() {
                    swarm.remove_listener(listener);
                }
                relay.circuit = None;
                relay.retry_at = None;
                relay.failures = 0;
            }
        }
        self.reserve_where_needed(swarm);
    }

    /// Lets go of relays no hub announced lately, then asks every relay without a slot for
    /// one, while this peer is private and the backoff allows.
    pub(super) fn reserve_where_needed(&mut self, swarm: &mut Swarm<Behaviour>) {
        let now = Instant::now();
        let stale: Vec<PeerId> = self
            .relays
            .iter()
            .filter(|(_, known)| now.duration_since(known.seen) > FORGET_AFTER)
            .map(|(peer, _)| *peer)
            .collect();
        for relay in stale {
            self.forget(swarm, relay);
        }
        if !self.private() {
            return;
        }
        for (peer, relay) in &mut self.relays {
            if relay.listener.is_some() || relay.retry_at.is_some_and(|at| at > now) {
                continue;
            }
            let Some(addr) = relay.addrs.first() else {
                continue;
            };
            let circuit = addr.clone().with(Protocol::P2pCircuit);
            match swarm.listen_on(circuit.clone()) {
                Ok(listener) => {
                    tracing::debug!(relay.id = %peer, "asking the relay for a slot");
                    relay.listener = Some(listener);
                    relay.retry_at = None;
                }
                Err(err) => {
                    let error = format!("cannot listen on {circuit}: {err}");
                    relay.failed(error, true);
                }
            }
        }
    }

    /// What became of an AutoNAT probe: an error that leaves the answer unknown is kept for
    /// the owner (a dial-back that failed is an answer: private).
    pub(super) fn probed(&mut self, event: autonat::OutboundProbeEvent) {
        use autonat::{OutboundProbeError, OutboundProbeEvent, ResponseError};
        self.probe_error = match event {
            OutboundProbeEvent::Request { .. } => return,
            OutboundProbeEvent::Response { .. } => None,
            OutboundProbeEvent::Error { error, .. } => match error {
                OutboundProbeError::NoServer
                | OutboundProbeError::Response(ResponseError::DialError) => None,
                OutboundProbeError::NoAddresses => {
                    Some("this peer has no address to test".to_owned())
                }
                OutboundProbeError::OutboundRequest(failure) => {
                    Some(format!("the relay did not answer the test: {failure}"))
                }
                OutboundProbeError::Response(ResponseError::DialRefused) => Some(
                    "the relay refused to test this peer's addresses (a hub's relay tests \
                     public addresses only)"
                        .to_owned(),
                ),
                OutboundProbeError::Response(other) => {
                    Some(format!("the relay could not test this peer: {other:?}"))
                }
            },
        };
    }

    /// A listener said where it listens: a circuit address is a slot granted.
    pub(super) fn listening(&mut self, listener: ListenerId, address: &Multiaddr) -> bool {
        let Some((peer, relay)) = self
            .relays
            .iter_mut()
            .find(|(_, relay)| relay.listener == Some(listener))
        else {
            return false;
        };
        // A relay names every address it has (loopback too): the owner is shown a useful one.
        let loopback =
            |addr: &Multiaddr| super::budget::address_of(addr).is_some_and(|ip| ip.is_loopback());
        match &relay.circuit {
            None => tracing::info!(relay.id = %peer, %address, "reachable through a relay"),
            Some(shown) if loopback(shown) && !loopback(address) => {}
            Some(_) => return true,
        }
        relay.circuit = Some(address.clone());
        relay.error = None;
        relay.failures = 0;
        true
    }

    /// A listener closed: a relay's slot ended, or was never granted.
    pub(super) fn listener_closed(&mut self, listener: ListenerId, reason: Option<String>) {
        let Some((peer, relay)) = self
            .relays
            .iter_mut()
            .find(|(_, relay)| relay.listener == Some(listener))
        else {
            return;
        };
        relay.listener = None;
        let had_slot = relay.circuit.take().is_some();
        let error = reason.unwrap_or_else(|| "the connection to the relay closed".into());
        if had_slot {
            tracing::warn!(relay.id = %peer, "the relay slot ended: {error}");
        } else {
            tracing::warn!(relay.id = %peer, "the relay gave no slot: {error}");
        }
        relay.failed(error, !had_slot);
    }

    /// Whether `listener` is a relay slot of this peer's.
    pub(super) fn is_circuit_listener(&self, listener: ListenerId) -> bool {
        self.relays
            .values()
            .any(|relay| relay.listener == Some(listener))
    }

    pub(super) fn report(&self) -> Reachability {
        let relays: Vec<RelaySlot> = self
            .relays
            .iter()
            .map(|(peer, relay)| RelaySlot {
                peer_id: peer.to_base58(),
                state: match (&relay.circuit, relay.listener, relay.retry_at) {
                    (Some(_), ..) => "reserved",
                    (None, Some(_), _) => "reserving",
                    (None, None, Some(_)) => "waiting",
                    (None, None, None) => "unused",
                },
                circuit: relay.circuit.as_ref().map(ToString::to_string),
                error: relay.error.clone(),
            })
            .collect();
        let reserved = relays.iter().filter(|r| r.state == "reserved").count();
        let (status, public_addr, summary) = match &self.status {
            Some(NatStatus::Public(addr)) => (
                "public",
                Some(addr.to_string()),
                format!("reachable directly at {addr}"),
            ),
            Some(NatStatus::Private) if reserved > 0 => (
                "private",
                None,
                format!(
                    "behind a NAT or firewall; reachable through {reserved} relay{}",
                    if reserved == 1 { "" } else { "s" }
                ),
            ),
            Some(NatStatus::Private) => {
                let why = if relays.is_empty() {
                    "no hub this peer uses offers a relay".to_owned()
                } else {
                    relays
                        .iter()
                        .find_map(|r| r.error.clone())
                        .map(|e| format!("no relay slot yet: {e}"))
                        .unwrap_or_else(|| "a relay slot is being asked for".to_owned())
                };
                (
                    "private",
                    None,
                    format!(
                        "unreachable from outside its network: behind a NAT or firewall, {why}"
                    ),
                )
            }
            Some(NatStatus::Unknown) | None if relays.is_empty() => (
                "unknown",
                None,
                "not tested: no hub this peer uses offers a relay to test with".to_owned(),
            ),
            Some(NatStatus::Unknown) | None => (
                "unknown",
                None,
                match &self.probe_error {
                    Some(error) => format!("not known: {error}"),
                    None => "being tested with the hubs' relays".to_owned(),
                },
            ),
        };
        Reachability {
            status,
            public_addr,
            summary,
            relays,
        }
    }
}

/// Whether `addr` goes over QUIC.
fn is_quic(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::QuicV1))
}

impl Relay {
    /// A slot could not be had, or ended: asked again after the backoff. One never given is
    /// asked through the relay's next address (UDP may be blocked where TCP is not, or the
    /// other way round); the address of one that ended worked, and is kept.
    fn failed(&mut self, error: String, next_address: bool) {
        if next_address {
            let step = 1.min(self.addrs.len());
            self.addrs.rotate_left(step);
        }
        self.failures = self.failures.saturating_add(1);
        let wait = crate::services::doubling(FIRST_RETRY, self.failures, MAX_RETRY);
        self.retry_at = Some(Instant::now() + wait);
        self.error = Some(error);
    }
}
