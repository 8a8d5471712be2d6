//! The node task: owns the `Swarm`, answers the handle's commands, and turns what the swarm
//! reports into [`NodeEvent`]s — connections (two dials that crossed, a peer that restarted),
//! Identify and the network tag, listen addresses, NAT traversal ([`super::nat`]), and gossip
//! presence handed to the validator before anything is forwarded.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use libp2p::gossipsub::{self, IdentTopic};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, autonat, dcutr, identify, mdns, relay};
use tokio::sync::{mpsc, oneshot};

use crate::services::hub::presence::PresenceError;

use super::{
    Behaviour, BehaviourEvent, CROSSING_DIALS, Command, NodeEvent, PeerDetails, gossip, nat,
    network_tag,
};

/// One open connection.
pub(super) struct Connection {
    remote: Multiaddr,
    opened: Instant,
    dialled: bool,
    link: nat::LinkKind,
}

pub(super) struct NodeTask {
    /// The bounds and counters of the relay this node runs for others, if it does.
    pub(super) relay: Option<(
        crate::services::relay::RelayLimits,
        std::sync::Arc<crate::services::relay::RelayMetrics>,
    )>,
    /// The connections holding a slot on that relay.
    pub(super) relay_slots: crate::services::relay::Slots,
    pub(super) swarm: Swarm<Behaviour>,
    /// Addresses others were found to reach this peer at (AutoNAT, a relay's circuit), beside
    /// the listen addresses (at most [`MAX_EXTERNAL_ADDRS`]).
    pub(super) external_addrs: Vec<Multiaddr>,
    pub(super) traversal: nat::Traversal,
    pub(super) topic: IdentTopic,
    pub(super) tag: String,
    pub(super) events: mpsc::Sender<NodeEvent>,
    pub(super) listen_addrs: Vec<Multiaddr>,
    /// Listeners (TCP, QUIC) that have not yet said where they listen.
    pub(super) unheard_listeners: HashSet<libp2p::core::transport::ListenerId>,
    /// Callers waiting until every listener has said where it listens.
    pub(super) listening: Vec<oneshot::Sender<Vec<Multiaddr>>>,
    /// Identify answers of connected peers.
    pub(super) identified: HashMap<PeerId, identify::Info>,
    /// Dials made again from a new port, until they connect or fail (bounded by the pending
    /// dials).
    pub(super) new_port_dials: HashSet<libp2p::swarm::ConnectionId>,
    /// Open connections' remote addresses, when they opened, whether we dialled them and
    /// whether they go through a relay, per peer.
    pub(super) connections: HashMap<PeerId, HashMap<libp2p::swarm::ConnectionId, Connection>>,
    /// The presence each neighbour may still send.
    pub(super) limiter: gossip::SourceLimiter,
    /// Presence waiting for the validator.
    pub(super) to_validate: mpsc::Sender<gossip::Pending>,
    /// Events dropped since the last warning, and when it was given (one warning per minute).
    pub(super) dropped_events: u64,
    pub(super) last_drop_warning: Option<Instant>,
}

/// External addresses kept (AutoNAT's, relays' circuits).
const MAX_EXTERNAL_ADDRS: usize = 16;
/// How often a consumer that falls behind is warned about.
const DROP_WARNING_EVERY: Duration = Duration::from_secs(60);

impl NodeTask {
    pub(super) async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut verdicts: mpsc::Receiver<gossip::Verdict>,
    ) {
        // Reservations that lapsed or were refused are asked again when their backoff ends,
        // and hole punches that did not work are tried again.
        let mut retry = tokio::time::interval(Duration::from_secs(1));
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let done = loop {
            tokio::select! {
                _ = retry.tick() => {
                    self.traversal.reserve_where_needed(&mut self.swarm);
                    self.punch_again_where_due();
                }
                command = commands.recv() => match command {
                    Some(Command::Shutdown(done)) => break Some(done),
                    Some(command) => self.handle_command(command),
                    None => break None,
                },
                Some(verdict) = verdicts.recv() => self.judge(verdict),
                event = self.swarm.select_next_some() => self.handle_event(event),
            }
        };
        if let Some(done) = done {
            let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
            for peer in peers {
                let _ = self.swarm.disconnect_peer_id(peer);
            }
            // The closes go out while the swarm is polled; the caller bounds the wait.
            while self.swarm.connected_peers().next().is_some() {
                let event = self.swarm.select_next_some().await;
                self.handle_event(event);
            }
            let _ = done.send(());
        }
        tracing::debug!("libp2p node stopped");
    }

    fn handle_command(&mut self, command: Command) {
        match command {
            Command::Shutdown(done) => {
                let _ = done.send(());
            }
            Command::ListenAddrs(reply) => {
                if !self.unheard_listeners.is_empty() {
                    self.listening.push(reply);
                } else {
                    let _ = reply.send(self.listen_addrs.clone());
                }
            }
            Command::Dial(addr, reply) => {
                if let Some(Protocol::P2p(peer)) = addr.iter().last() {
                    self.swarm
                        .behaviour_mut()
                        .vouched
                        .vouch(peer, [addr.clone()]);
                }
                let result = self
                    .swarm
                    .dial(addr.clone())
                    .with_context(|| format!("cannot dial {addr}"));
                let _ = reply.send(result);
            }
            Command::Vouch(peer, addrs, reply) => {
                self.swarm.behaviour_mut().vouched.vouch(peer, addrs);
                let _ = reply.send(());
            }
            Command::DialPeer(peer, reply) => {
                let dial = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                    .condition(libp2p::swarm::dial_opts::PeerCondition::DisconnectedAndNotDialing)
                    .build();
                let result = match self.swarm.dial(dial) {
                    Ok(()) | Err(libp2p::swarm::DialError::DialPeerConditionFalse(_)) => Ok(()),
                    Err(e) => Err(anyhow::Error::new(e).context(format!("cannot dial {peer}"))),
                };
                let _ = reply.send(result);
            }
            Command::Publish(bytes, reply) => {
                let result = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .inner
                    .publish(self.topic.clone(), bytes)
                    .map(|_| ())
                    .map_err(|e| anyhow::anyhow!("cannot publish presence: {e}"));
                let _ = reply.send(result);
            }
            Command::Details(peer, reply) => {
                let details = self.identified.get(&peer).map(|info| PeerDetails {
                    agent_version: info.agent_version.clone(),
                    protocol_version: info.protocol_version.clone(),
                    protocols: info.protocols.iter().map(ToString::to_string).collect(),
                    listen_addrs: info.listen_addrs.clone(),
                    connected_via: self
                        .connections
                        .get(&peer)
                        .map(|open| open.values().map(|c| c.remote.clone()).collect())
                        .unwrap_or_default(),
                    link: self.link(&peer),
                    punch_error: self.traversal.punch_errors.get(&peer).cloned(),
                });
                let _ = reply.send(details);
            }
            Command::GossipScore(peer, reply) => {
                let _ = reply.send(self.swarm.behaviour().gossipsub.inner.peer_score(&peer));
            }
            Command::UseRelay(relay, addrs, reply) => {
                self.traversal.use_relay(&mut self.swarm, relay, addrs);
                let _ = reply.send(());
            }
            Command::Reachability(reply) => {
                let _ = reply.send(self.traversal.report());
            }
            Command::Links(reply) => {
                let links = self
                    .connections
                    .keys()
                    .filter_map(|peer| self.link(peer).map(|link| (*peer, link)))
                    .collect();
                let _ = reply.send(links);
            }
            Command::ConnectedPeers(reply) => {
                let peers: HashSet<PeerId> = self.swarm.connected_peers().copied().collect();
                let _ = reply.send(peers.into_iter().collect());
            }
        }
    }

    /// How the best open connection to `peer` was made.
    fn link(&self, peer: &PeerId) -> Option<nat::LinkKind> {
        self.connections.get(peer).and_then(|open| {
            open.iter()
                .map(|(id, connection)| {
                    if self.traversal.punched.contains(id) {
                        nat::LinkKind::HolePunched
                    } else {
                        connection.link
                    }
                })
                .max()
        })
    }

    /// The addresses worth announcing changed: the listen addresses and the external ones.
    fn addresses_changed(&mut self) {
        let mut all = self.listen_addrs.clone();
        for addr in &self.external_addrs {
            if !all.contains(addr) {
                all.push(addr.clone());
            }
        }
        self.emit(NodeEvent::ListenAddrsChanged(all));
    }

    /// `listener` said where it listens, or closed. Those waiting for the listen addresses get
    /// them once every listener has (so a peer announces TCP and QUIC from its first presence);
    /// after that, each change is an event.
    fn heard_from(&mut self, listener: libp2p::core::transport::ListenerId) {
        let first = self.unheard_listeners.remove(&listener);
        if !self.unheard_listeners.is_empty() {
            return;
        }
        for waiting in self.listening.drain(..) {
            let _ = waiting.send(self.listen_addrs.clone());
        }
        if !first {
            self.addresses_changed();
        }
    }

    /// A TCP dial from the listening port (kept so that NATs see one port) fails at once with
    /// "Address already in use" when the machine still holds an older connection between the
    /// same two ports; libp2p gives up there. Those addresses are dialled once more from a port
    /// of their own (not again if that dial was the retry).
    fn dial_again_from_a_new_port(
        &mut self,
        retried: bool,
        peer: PeerId,
        errors: &[(Multiaddr, libp2p::TransportError<std::io::Error>)],
    ) {
        let in_use: Vec<Multiaddr> = errors
            .iter()
            .filter(|(_, error)| format!("{error:?}").contains("AddrInUse"))
            .map(|(addr, _)| addr.clone())
            .collect();
        if retried || in_use.is_empty() {
            return;
        }
        tracing::debug!(peer.id = %peer, "the dial's port was in use; dialling from a new port");
        let dial = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
            .addresses(in_use)
            .allocate_new_port()
            .condition(libp2p::swarm::dial_opts::PeerCondition::DisconnectedAndNotDialing)
            .build();
        let connection = dial.connection_id();
        if self.swarm.dial(dial).is_ok() {
            self.new_port_dials.insert(connection);
        }
    }

    /// What a peer said over Identify. A peer of another network tag that we dialled because
    /// mDNS found it is let go: the tag scopes LAN auto-discovery, and its own node lets go of
    /// the connection it dialled us on. Met any other way (a hub, a favourite, a deliberate dial,
    /// its own dial) it stays, but its gossip is not ours: the presence it sends is refused (and
    /// it refuses ours, by the same rule). A client that is no goop2 peer is kept whatever its version.
    fn identified(
        &mut self,
        connection: libp2p::swarm::ConnectionId,
        peer: PeerId,
        info: identify::Info,
    ) {
        let theirs = network_tag(&info.protocol_version);
        if theirs.is_some_and(|tag| tag != self.tag) {
            let dialled = self
                .connections
                .get(&peer)
                .and_then(|open| open.get(&connection))
                .is_some_and(|c| c.dialled);
            if dialled && self.swarm.behaviour().vouched.only_on_lan(&peer) {
                tracing::debug!(
                    peer.id = %peer,
                    theirs = %info.protocol_version,
                    "a LAN peer of another network tag; letting it go"
                );
                self.swarm.close_connection(connection);
                return;
            }
            self.swarm
                .behaviour_mut()
                .gossipsub
                .inner
                .blacklist_peer(&peer);
        }
        if self.swarm.is_connected(&peer) {
            // Bounded by the connection limits: one entry per connected peer.
            self.identified.insert(peer, info);
        }
    }

    /// DCUtR's outcome for `peer`: a direct connection replaces the relayed ones (whatever is
    /// sent next goes the short way), or the reason it could not be made.
    fn hole_punched(
        &mut self,
        peer: PeerId,
        result: Result<libp2p::swarm::ConnectionId, dcutr::Error>,
    ) {
        match result {
            Ok(direct) => {
                tracing::info!(peer.id = %peer, "hole punched: connected directly");
                self.traversal.punched.insert(direct);
                self.traversal.punch_errors.remove(&peer);
                self.traversal.punch_retries.remove(&peer);
                let relayed: Vec<libp2p::swarm::ConnectionId> = self
                    .connections
                    .get(&peer)
                    .map(|open| {
                        open.iter()
                            .filter(|(id, c)| **id != direct && c.link == nat::LinkKind::Relayed)
                            .map(|(id, _)| *id)
                            .collect()
                    })
                    .unwrap_or_default();
                for connection in relayed {
                    self.swarm.close_connection(connection);
                }
            }
            Err(err) => {
                let reason = crate::services::error_chain(&err);
                tracing::info!(peer.id = %peer, "hole punching failed; staying relayed: {reason}");
                if self.connections.contains_key(&peer) {
                    self.traversal.punch_errors.insert(peer, reason);
                }
            }
        }
    }

    /// A peer still reached only through a circuit this peer dialled gets another hole punch:
    /// a fresh circuit makes its side start DCUtR again (a punch that failed once, on a busy
    /// host or while a router was still setting up its mappings, often works the next time),
    /// and replaces the older circuit. Tries wait longer and longer, and stop after
    /// [`nat::PUNCH_TRIES`]: between two symmetric NATs no try can work.
    fn punch_again_where_due(&mut self) {
        let now = Instant::now();
        let mut due = Vec::new();
        for (peer, open) in &self.connections {
            if open.values().any(|c| c.link != nat::LinkKind::Relayed) {
                continue;
            }
            let Some(newest) = open.values().filter(|c| c.dialled).max_by_key(|c| c.opened) else {
                continue;
            };
            let (tries, last) = self
                .traversal
                .punch_retries
                .get(peer)
                .copied()
                .unwrap_or((0, newest.opened));
            let wait =
                crate::services::doubling(nat::PUNCH_AGAIN_AFTER, tries + 1, nat::PUNCH_AGAIN_CAP);
            if tries < nat::PUNCH_TRIES && now.duration_since(last.max(newest.opened)) >= wait {
                due.push((*peer, newest.remote.clone(), tries + 1));
            }
        }
        for (peer, circuit, tries) in due {
            tracing::info!(peer.id = %peer, tries, "still relayed; trying to punch a hole again");
            self.traversal.punch_retries.insert(peer, (tries, now));
            let dial = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                .addresses(vec![circuit])
                .condition(libp2p::swarm::dial_opts::PeerCondition::Always)
                .build();
            if let Err(e) = self.swarm.dial(dial) {
                tracing::debug!(peer.id = %peer, "cannot dial through the relay again: {e}");
            }
        }
    }

    fn emit(&mut self, event: NodeEvent) {
        // Nobody listening (a benchmark's node) is fine; a listener that fell behind is not,
        // but one warning a minute says so (a flood must not flood the log too).
        if let Err(mpsc::error::TrySendError::Full(_)) = self.events.try_send(event) {
            self.dropped_events += 1;
            let now = Instant::now();
            if self
                .last_drop_warning
                .is_none_or(|last| now.duration_since(last) >= DROP_WARNING_EVERY)
            {
                tracing::warn!(
                    dropped = self.dropped_events,
                    "node events are not being read; dropping them"
                );
                self.dropped_events = 0;
                self.last_drop_warning = Some(now);
            }
        }
    }

    /// Tells GossipSub what the validator decided, and the consumer what was heard.
    fn judge(&mut self, verdict: gossip::Verdict) {
        self.swarm
            .behaviour_mut()
            .gossipsub
            .inner
            .report_message_validation_result(
                &verdict.id,
                &verdict.source,
                verdict.outcome.acceptance(),
            );
        match verdict.outcome {
            gossip::Outcome::Accept(presence) => self.emit(NodeEvent::Presence {
                presence,
                via: verdict.source,
            }),
            gossip::Outcome::Reject(reason) | gossip::Outcome::Ignore(reason) => {
                self.emit(NodeEvent::PresenceRefused {
                    via: verdict.source,
                    reason,
                })
            }
        }
    }

    /// Settles at once what needs no validator (a neighbour over its rate, a full queue: not
    /// news, no penalty), and hands the rest to the validator.
    fn validate(&mut self, id: gossipsub::MessageId, source: PeerId, data: Vec<u8>) {
        if self.limiter.allow(source) {
            let pending = gossip::Pending {
                id: id.clone(),
                source,
                data,
            };
            if self.to_validate.try_send(pending).is_ok() {
                return;
            }
        }
        self.judge(gossip::Verdict {
            id,
            source,
            outcome: gossip::Outcome::Ignore(PresenceError::RateLimited {
                retry_after_seconds: 1,
            }),
        });
    }

    fn handle_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                let circuit = self.traversal.listening(listener_id, &address);
                if !circuit {
                    tracing::info!(%address, "libp2p listening");
                }
                // A relay hands its own addresses to the peers it holds reservations for.
                if self.relay.is_some() && !circuit {
                    self.swarm.add_external_address(address.clone());
                }
                self.listen_addrs.push(address);
                self.heard_from(listener_id);
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                addresses,
                reason,
            } => {
                // What a closed listener listened on reaches this peer no more, whatever was
                // confirmed of it (a relay's circuit, a relaying peer's own addresses).
                self.listen_addrs.retain(|addr| !addresses.contains(addr));
                self.external_addrs.retain(|addr| !addresses.contains(addr));
                if self.traversal.is_circuit_listener(listener_id) {
                    let reason = reason.err().map(|err| crate::services::error_chain(&err));
                    self.traversal.listener_closed(listener_id, reason);
                    self.addresses_changed();
                } else {
                    self.heard_from(listener_id);
                }
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                tracing::info!(%address, "libp2p no longer listening");
                self.listen_addrs.retain(|addr| *addr != address);
                self.addresses_changed();
            }
            SwarmEvent::ExternalAddrConfirmed { address }
                if !self.external_addrs.contains(&address)
                    && self.external_addrs.len() < MAX_EXTERNAL_ADDRS =>
            {
                self.external_addrs.push(address);
                self.addresses_changed();
            }
            SwarmEvent::ExternalAddrExpired { address } => {
                let before = self.external_addrs.len();
                self.external_addrs.retain(|addr| *addr != address);
                if self.external_addrs.len() != before {
                    self.addresses_changed();
                }
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                self.new_port_dials.remove(&connection_id);
                if self.relay.is_some() {
                    // A circuit through another relay is no connection to ask this one on.
                    let inbound = endpoint.is_listener() && !endpoint.is_relayed();
                    self.relay_slots.connected(peer_id, connection_id, inbound);
                }
                let open = self.connections.entry(peer_id).or_default();
                // We dial a peer only when not connected to it, so a new connection beside an
                // older one means the peer no longer knows that one: it restarted, or lost it.
                // Close it (a dead QUIC connection would otherwise linger until its idle
                // timeout and swallow what is sent on it). Two dials crossing each other open
                // both at nearly the same moment; those are left alone.
                // A circuit never replaces a direct connection: it is the slower way to the same
                // peer, opened while the direct one may well be alive.
                let now = Instant::now();
                let link = nat::LinkKind::of(&endpoint);
                for (old, connection) in open.iter() {
                    if link == nat::LinkKind::Relayed && connection.link != nat::LinkKind::Relayed {
                        continue;
                    }
                    if now.duration_since(connection.opened) > CROSSING_DIALS {
                        tracing::debug!(peer.id = %peer_id, "closing a connection the peer replaced");
                        self.swarm.close_connection(*old);
                    }
                }
                open.insert(
                    connection_id,
                    Connection {
                        remote: endpoint.get_remote_address().clone(),
                        opened: now,
                        dialled: endpoint.is_dialer(),
                        link,
                    },
                );
                if num_established.get() == 1 {
                    self.emit(NodeEvent::Connected(peer_id));
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id: Some(peer),
                error: libp2p::swarm::DialError::Transport(errors),
            } => {
                let retried = self.new_port_dials.remove(&connection_id);
                self.dial_again_from_a_new_port(retried, peer, &errors);
            }
            SwarmEvent::OutgoingConnectionError { connection_id, .. } => {
                self.new_port_dials.remove(&connection_id);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                if let Some(open) = self.connections.get_mut(&peer_id) {
                    open.remove(&connection_id);
                }
                if let Some((_, metrics)) = &self.relay {
                    self.relay_slots.closed(metrics, peer_id, connection_id);
                }
                self.traversal.punched.remove(&connection_id);
                if num_established == 0 {
                    self.connections.remove(&peer_id);
                    self.traversal.punch_errors.remove(&peer_id);
                    self.traversal.punch_retries.remove(&peer_id);
                    self.identified.remove(&peer_id);
                    let gossip = &mut self.swarm.behaviour_mut().gossipsub.inner;
                    gossip.remove_blacklisted_peer(&peer_id);
                    self.limiter.forget(&peer_id);
                    self.emit(NodeEvent::Disconnected(peer_id));
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Relay(event)) => {
                if let Some((_, metrics)) = &self.relay {
                    self.relay_slots.relay_event(metrics, event);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Autonat(autonat::Event::StatusChanged {
                new,
                ..
            })) => self.traversal.status_changed(&mut self.swarm, new),
            SwarmEvent::Behaviour(BehaviourEvent::Autonat(autonat::Event::OutboundProbe(
                event,
            ))) => self.traversal.probed(event),
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(dcutr::Event {
                remote_peer_id,
                result,
            })) => self.hole_punched(remote_peer_id, result),
            SwarmEvent::Behaviour(BehaviourEvent::RelayClient(event)) => match event {
                relay::client::Event::ReservationReqAccepted {
                    relay_peer_id,
                    renewal: true,
                    ..
                } => tracing::debug!(relay.id = %relay_peer_id, "relay slot renewed"),
                relay::client::Event::InboundCircuitEstablished { src_peer_id, .. } => {
                    tracing::debug!(peer.id = %src_peer_id, "a peer reached us through a relay")
                }
                _ => {}
            },
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                connection_id,
                peer_id,
                info,
            })) => self.identified(connection_id, peer_id, info),
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                let mut by_peer: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
                for (peer_id, addr) in found {
                    self.emit(NodeEvent::Discovered(peer_id, addr.clone()));
                    by_peer.entry(peer_id).or_default().push(addr);
                }
                // A peer on the LAN is known, and may be dialled where mDNS found it.
                for (peer_id, addrs) in &by_peer {
                    self.swarm
                        .behaviour_mut()
                        .vouched
                        .vouch_on_lan(*peer_id, addrs.iter().cloned());
                }
                // One dial per peer, racing its addresses: one connection, not one per address.
                for (peer_id, addrs) in by_peer {
                    let dial = libp2p::swarm::dial_opts::DialOpts::peer_id(peer_id)
                        .addresses(addrs)
                        .condition(
                            libp2p::swarm::dial_opts::PeerCondition::DisconnectedAndNotDialing,
                        )
                        .build();
                    let _ = self.swarm.dial(dial);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => {
                // Only presence signed by the peer it names is believed; who relayed it says
                // nothing about who wrote it.
                self.validate(message_id, propagation_source, message.data);
            }
            _ => {}
        }
    }
}
