//! The peer's libp2p node, as an actor: one task owns the `Swarm`; a cheap `Clone` handle sends
//! it commands over a bounded channel and gets answers on oneshots; what the network says comes
//! out on a bounded event channel. Dropping every handle stops the node.
//!
//! Transports: TCP and QUIC, Noise, Yamux; connections bounded in total, inbound (keeping room
//! for the node's own dials), per peer, while pending, and per address ([`budget`]), and closed
//! after a minute idle. The node dials only addresses a trusted source vouched for, within a
//! budget of dials ([`vouched`]). Behaviours: Identify (its protocol version carries
//! the `p2p.mdns_tag`, which scopes LAN auto-discovery: a peer of another tag that mDNS alone
//! vouched for is let go once it says so, one met through a hub, a favourite or a deliberate dial
//! is kept with its gossip refused, and a client that is no goop2 peer is never let go for its
//! version), Ping, mDNS, with `p2p.relay_enabled` a circuit relay (v2) for other peers (see
//! [`crate::services::relay`]), NAT traversal ([`nat`]: an AutoNAT client, the relay client
//! reserving a slot on the hubs' relays while this peer cannot be reached, DCUtR hole
//! punching), and
//! GossipSub for presence — where a message is delivered, and forwarded to the rest of the
//! mesh, only once [`gossip`] has validated it (a rate per neighbour, the hub's rules for
//! signatures, bounds and freshness). The `/goop/*` stream protocols, and the seam through which services add
//! theirs, live in [`protocols`].

pub mod budget;
pub mod gossip;
pub mod nat;
pub mod protocols;
mod resubscribe;
mod task;
pub mod vouched;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use anyhow::Context;
use libp2p::gossipsub::{
    self, IdentTopic, MessageAuthenticity, PeerScoreParams, PeerScoreThresholds, TopicScoreParams,
    ValidationMode,
};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    Multiaddr, PeerId, SwarmBuilder, autonat, dcutr, identify, mdns, noise, ping, tcp, yamux,
};
use libp2p_identity::Keypair;
use tokio::sync::{mpsc, oneshot};

use crate::services::hub::presence::{CheckedPresence, MAX_BODY_BYTES, Presence, PresenceError};
pub use gossip::GossipLimits;

/// Commands waiting for the node task.
const COMMAND_QUEUE: usize = 256;
/// Events waiting for the consumer; beyond this, events are dropped (and logged) rather than
/// stalling the network task.
const EVENT_QUEUE: usize = 1024;
/// How long an idle connection stays open.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections to one peer opened closer together than this are two dials that crossed.
const CROSSING_DIALS: Duration = Duration::from_secs(2);
/// How often mDNS asks the LAN who is there once it has found someone. A peer answers a query
/// only with the addresses it already listens on, so two peers starting together can each get
/// an empty answer from the other; asking again soon finds them (mDNS's own default waits five
/// minutes).
const MDNS_QUERY_INTERVAL: Duration = Duration::from_secs(30);

/// How to run the node.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Address to listen on (0.0.0.0 in production; 127.0.0.1 in tests).
    pub listen_ip: IpAddr,
    /// TCP and QUIC port; 0 picks free ones.
    pub listen_port: u16,
    pub mdns: bool,
    pub mdns_tag: String,
    /// The GossipSub topic of presence messages.
    pub presence_topic: String,
    /// Connection bounds, in total and per address.
    pub limits: budget::NodeLimits,
    /// How much presence one neighbour may send.
    pub gossip: GossipLimits,
    /// Relay for other peers (circuit relay v2) within these bounds (`p2p.relay_enabled`).
    pub relay: Option<crate::services::relay::RelayLimits>,
}

/// What the network reports.
#[derive(Debug, Clone)]
pub enum NodeEvent {
    /// A presence message from the mesh, signed by the peer it names.
    Presence {
        presence: Box<CheckedPresence>,
        /// The neighbour that forwarded it.
        via: PeerId,
    },
    /// A gossip presence message was dropped (and not forwarded), and why.
    PresenceRefused {
        via: PeerId,
        reason: PresenceError,
    },
    Connected(PeerId),
    Disconnected(PeerId),
    /// The set of addresses the node listens on changed (an interface came or went).
    ListenAddrsChanged(Vec<Multiaddr>),
    /// mDNS found a peer on the LAN.
    Discovered(PeerId, Multiaddr),
}

/// What a connected peer told about itself over Identify.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerDetails {
    pub agent_version: String,
    pub protocol_version: String,
    pub protocols: Vec<String>,
    pub listen_addrs: Vec<Multiaddr>,
    /// The addresses of our open connections to it.
    pub connected_via: Vec<Multiaddr>,
    /// How the best of those connections was made (hole-punched, direct, relayed).
    pub link: Option<nat::LinkKind>,
    /// Why the last hole punch with it failed, if it did.
    pub punch_error: Option<String>,
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    limits: libp2p::connection_limits::Behaviour,
    budget: budget::AddressBudget,
    vouched: vouched::VouchedAddresses,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    gossipsub: resubscribe::Resubscribing,
    mdns: libp2p::swarm::behaviour::toggle::Toggle<mdns::tokio::Behaviour>,
    relay: libp2p::swarm::behaviour::toggle::Toggle<libp2p::relay::Behaviour>,
    relay_client: libp2p::relay::client::Behaviour,
    dcutr: dcutr::Behaviour,
    autonat: autonat::Behaviour,
    stream: libp2p_stream::Behaviour,
}

enum Command {
    ListenAddrs(oneshot::Sender<Vec<Multiaddr>>),
    Dial(Multiaddr, oneshot::Sender<anyhow::Result<()>>),
    Vouch(PeerId, Vec<Multiaddr>, oneshot::Sender<()>),
    DialPeer(PeerId, oneshot::Sender<anyhow::Result<()>>),
    Publish(Vec<u8>, oneshot::Sender<anyhow::Result<()>>),
    ConnectedPeers(oneshot::Sender<Vec<PeerId>>),
    Details(PeerId, oneshot::Sender<Option<PeerDetails>>),
    GossipScore(PeerId, oneshot::Sender<Option<f64>>),
    UseRelay(PeerId, Vec<Multiaddr>, oneshot::Sender<()>),
    Reachability(oneshot::Sender<nat::Reachability>),
    Links(oneshot::Sender<HashMap<PeerId, nat::LinkKind>>),
    /// Close every connection, then answer.
    Shutdown(oneshot::Sender<()>),
}

/// The handle. Cloning is cheap; the node stops when the last clone is dropped.
#[derive(Clone)]
pub struct Node {
    peer_id: PeerId,
    commands: mpsc::Sender<Command>,
    control: libp2p_stream::Control,
    /// Data streams kept open between requests.
    outbound: protocols::Outbound,
    /// The bounds and counters of the relay this node runs for others, if it does.
    relay: Option<(
        crate::services::relay::RelayLimits,
        std::sync::Arc<crate::services::relay::RelayMetrics>,
    )>,
}

impl Node {
    /// Builds the swarm, starts listening and spawns the node task.
    pub async fn start(
        keypair: Keypair,
        options: NodeOptions,
        protocols: impl Into<protocols::Protocols>,
    ) -> anyhow::Result<(Node, mpsc::Receiver<NodeEvent>)> {
        let peer_id = keypair.public().to_peer_id();
        let tag = options.mdns_tag.clone();
        let mdns_enabled = options.mdns;
        let node_limits = options.limits;
        let peer_addresses = budget::PeerAddresses::default();
        let known = vouched::KnownPeers::default();
        let book_known = known.clone();
        let open_streams = protocols::OpenStreams::default();
        let book_open = open_streams.clone();
        let budget_addresses = peer_addresses.clone();
        let presence_topic = IdentTopic::new(options.presence_topic.clone());
        let relay_limits = options.relay.clone();
        let mut swarm = SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )?
            .with_quic()
            .with_relay_client(noise::Config::new, yamux::Config::default)?
            .with_behaviour(|key, relay_client| {
                let gossip_config = gossipsub::ConfigBuilder::default()
                    .heartbeat_interval(Duration::from_secs(1))
                    .validation_mode(ValidationMode::Strict)
                    .max_transmit_size(MAX_BODY_BYTES)
                    // Nothing is forwarded before `gossip` has said it is good.
                    .validate_messages()
                    .build()
                    .map_err(|e| e.to_string())?;
                let mut gossipsub = gossipsub::Behaviour::new(
                    MessageAuthenticity::Signed(key.clone()),
                    gossip_config,
                )?;
                gossipsub.with_peer_score(
                    score_params(&presence_topic),
                    PeerScoreThresholds::default(),
                )?;
                let mdns = if mdns_enabled {
                    Some(mdns::tokio::Behaviour::new(
                        mdns::Config {
                            query_interval: MDNS_QUERY_INTERVAL,
                            ..mdns::Config::default()
                        },
                        key.public().to_peer_id(),
                    )?)
                } else {
                    None
                };
                Ok(Behaviour {
                    limits: libp2p::connection_limits::Behaviour::new(
                        node_limits.connection_limits(),
                    ),
                    budget: budget::AddressBudget::new(node_limits.per_address, budget_addresses),
                    vouched: vouched::VouchedAddresses::new(
                        node_limits.dials,
                        node_limits.max_inbound_strangers as usize,
                        book_known,
                        book_open,
                    ),
                    identify: identify::Behaviour::new(
                        identify::Config::new(protocol_version(&tag), key.public())
                            .with_agent_version(format!("goop2/{}", env!("CARGO_PKG_VERSION")))
                            // What a peer says of its own addresses is never dialled.
                            .with_cache_size(0),
                    ),
                    ping: ping::Behaviour::default(),
                    gossipsub: resubscribe::Resubscribing::new(gossipsub),
                    mdns: mdns.into(),
                    relay: relay_limits
                        .as_ref()
                        .map(|limits| libp2p::relay::Behaviour::new(peer_id, limits.to_config()))
                        .into(),
                    relay_client,
                    dcutr: dcutr::Behaviour::new(peer_id),
                    autonat: autonat::Behaviour::new(peer_id, nat::autonat_config()),
                    stream: libp2p_stream::Behaviour::new(),
                })
            })
            .map_err(|e| anyhow::anyhow!("cannot build the libp2p node: {e}"))?
            .with_swarm_config(|config| config.with_idle_connection_timeout(IDLE_TIMEOUT))
            .build();

        let control = swarm.behaviour().stream.new_control();
        protocols::start(
            control.clone(),
            protocols.into(),
            peer_addresses,
            known,
            open_streams.clone(),
        )?;
        let topic = IdentTopic::new(options.presence_topic.clone());
        swarm
            .behaviour_mut()
            .gossipsub
            .inner
            .subscribe(&topic)
            .context("cannot subscribe to the presence topic")?;
        let ip = options.listen_ip;
        let port = options.listen_port;
        let (tcp, quic) = match ip {
            IpAddr::V4(v4) => (
                format!("/ip4/{v4}/tcp/{port}"),
                format!("/ip4/{v4}/udp/{port}/quic-v1"),
            ),
            IpAddr::V6(v6) => (
                format!("/ip6/{v6}/tcp/{port}"),
                format!("/ip6/{v6}/udp/{port}/quic-v1"),
            ),
        };
        let mut unheard_listeners = HashSet::new();
        for addr in [tcp, quic] {
            let addr: Multiaddr = addr.parse().expect("a well-formed multiaddr");
            let listener = swarm
                .listen_on(addr.clone())
                .with_context(|| format!("cannot listen on {addr}"))?;
            unheard_listeners.insert(listener);
        }

        let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE);
        let (events, event_rx) = mpsc::channel(EVENT_QUEUE);
        let relay = options.relay.map(|limits| {
            (
                limits,
                std::sync::Arc::new(crate::services::relay::RelayMetrics::default()),
            )
        });
        let (to_validate, pending) = mpsc::channel(gossip::VALIDATION_QUEUE);
        let (verdict_tx, verdicts) = mpsc::channel(gossip::VALIDATION_QUEUE);
        gossip::spawn_validator(pending, verdict_tx);
        let task = task::NodeTask {
            relay_slots: Default::default(),
            limiter: gossip::SourceLimiter::new(options.gossip),
            to_validate,
            dropped_events: 0,
            last_drop_warning: None,
            swarm,
            topic,
            tag: options.mdns_tag,
            events,
            listen_addrs: Vec::new(),
            unheard_listeners,
            listening: Vec::new(),
            identified: HashMap::new(),
            new_port_dials: HashSet::new(),
            connections: HashMap::new(),
            external_addrs: Vec::new(),
            traversal: nat::Traversal::default(),
            relay: relay.clone(),
        };
        tokio::spawn(task.run(command_rx, verdicts));
        Ok((
            Node {
                peer_id,
                commands,
                control,
                outbound: protocols::Outbound::new(open_streams),
                relay,
            },
            event_rx,
        ))
    }

    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The relay this node runs for other peers (`p2p.relay_enabled`): where it is reached (the
    /// addresses it listens on) and its counters.
    pub async fn relay(&self) -> anyhow::Result<Option<crate::services::relay::Relay>> {
        let Some((limits, metrics)) = self.relay.clone() else {
            return Ok(None);
        };
        let addrs = self
            .listen_addrs()
            .await?
            .into_iter()
            .map(|addr| addr.with_p2p(self.peer_id).unwrap_or_else(|addr| addr))
            .collect();
        Ok(Some(crate::services::relay::Relay {
            peer_id: self.peer_id,
            addrs,
            limits,
            metrics,
        }))
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> anyhow::Result<T> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| anyhow::anyhow!("the libp2p node has stopped"))?;
        answer
            .await
            .map_err(|_| anyhow::anyhow!("the libp2p node has stopped"))
    }

    /// The addresses the node listens on, once it listens on at least one.
    pub async fn listen_addrs(&self) -> anyhow::Result<Vec<Multiaddr>> {
        self.ask(Command::ListenAddrs).await
    }

    /// Dials `addr` (which should end in `/p2p/<peer id>`); the caller vouches for it, so the
    /// node may dial the peer there again later.
    pub async fn dial(&self, addr: Multiaddr) -> anyhow::Result<()> {
        self.ask(|reply| Command::Dial(addr, reply)).await?
    }

    /// Keeps `addrs` as where `peer` may be dialled (see [`vouched`]): the caller checked that
    /// a source it trusts vouched for them.
    pub async fn vouch(&self, peer: PeerId, addrs: Vec<Multiaddr>) -> anyhow::Result<()> {
        self.ask(|reply| Command::Vouch(peer, addrs, reply)).await
    }

    /// Dials `peer` at the addresses vouched for it (or found by mDNS), unless connected or
    /// being dialled already.
    pub async fn dial_peer(&self, peer: PeerId) -> anyhow::Result<()> {
        self.ask(|reply| Command::DialPeer(peer, reply)).await?
    }

    /// Takes the relay `relay` (reached at `addrs`) that a hub announced: AutoNAT asks it
    /// whether this peer can be reached, and it keeps a slot for this peer while not.
    pub async fn use_relay(&self, relay: PeerId, addrs: Vec<Multiaddr>) -> anyhow::Result<()> {
        self.ask(|reply| Command::UseRelay(relay, addrs, reply))
            .await
    }

    /// Whether others can reach this peer, and its relay slots.
    pub async fn reachability(&self) -> anyhow::Result<nat::Reachability> {
        self.ask(Command::Reachability).await
    }

    /// How each connected peer is reached (the best of its connections).
    pub async fn links(&self) -> anyhow::Result<HashMap<PeerId, nat::LinkKind>> {
        self.ask(Command::Links).await
    }

    /// Publishes a presence message on the presence topic.
    pub async fn publish_presence(&self, presence: &Presence) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec(presence)?;
        self.ask(|reply| Command::Publish(bytes, reply)).await?
    }

    /// Closes every connection properly — a QUIC connection otherwise lingers on the other side
    /// until its idle timeout — waiting at most `wait`, and stops the node.
    pub async fn shutdown(&self, wait: Duration) {
        let _ = tokio::time::timeout(wait, self.ask(Command::Shutdown)).await;
    }

    pub async fn connected_peers(&self) -> anyhow::Result<Vec<PeerId>> {
        self.ask(Command::ConnectedPeers).await
    }

    /// The GossipSub score of a neighbour (negative once it sent invalid presence); `None`
    /// when the node keeps no score for it.
    pub async fn gossip_score(&self, peer: PeerId) -> anyhow::Result<Option<f64>> {
        self.ask(|reply| Command::GossipScore(peer, reply)).await
    }

    /// What `peer` said about itself over Identify, while connected.
    pub async fn peer_details(&self, peer: PeerId) -> anyhow::Result<Option<PeerDetails>> {
        self.ask(|reply| Command::Details(peer, reply)).await
    }

    /// Opens a raw stream to `peer` for `protocol` (dialling it if needed and known), within
    /// 20 s.
    pub async fn open_stream(
        &self,
        peer: PeerId,
        protocol: libp2p::StreamProtocol,
    ) -> Result<libp2p::Stream, protocols::FetchError> {
        protocols::open_stream(&mut self.control.clone(), peer, protocol).await
    }

    /// Opens a long-lived session of `protocol` with `peer` (see [`protocols::sessions`]),
    /// dialling it if needed and known, within 20 s.
    pub async fn open_session(
        &self,
        peer: PeerId,
        protocol: libp2p::StreamProtocol,
        limits: protocols::SessionLimits,
    ) -> Result<protocols::Session, protocols::FetchError> {
        protocols::open_session(
            &mut self.control.clone(),
            &self.outbound,
            peer,
            protocol,
            limits,
        )
        .await
    }

    /// Sends a data request to `peer` over `/goop/data/1.0.0`: the peer's answer (its data or
    /// its refusal), or why the exchange failed.
    pub async fn fetch_data(
        &self,
        peer: PeerId,
        request: &crate::services::data::DataRequest,
    ) -> Result<crate::services::data::DataAnswer, protocols::FetchError> {
        protocols::data::fetch(&mut self.control.clone(), &self.outbound, peer, request).await
    }

    /// Fetches a file of `peer`'s site over `/goop/site/1.0.0`.
    pub async fn fetch_site(
        &self,
        peer: PeerId,
        path: &str,
    ) -> Result<protocols::SiteReply, protocols::FetchError> {
        protocols::site::fetch(&mut self.control.clone(), &self.outbound, peer, path).await
    }

    /// Fetches `peer`'s avatar over `/goop/avatar/1.0.0`.
    pub async fn fetch_avatar(
        &self,
        peer: PeerId,
    ) -> Result<Option<Vec<u8>>, protocols::FetchError> {
        protocols::avatar::fetch(&mut self.control.clone(), &self.outbound, peer).await
    }

    /// Asks `peer` for its label over `/goop/content/1.0.0` (the reachability probe).
    pub async fn fetch_content(&self, peer: PeerId) -> Result<String, protocols::FetchError> {
        protocols::content::fetch(&mut self.control.clone(), &self.outbound, peer).await
    }
}

/// GossipSub scoring: only invalid presence counts (GossipSub's P₄), squared, so a neighbour
/// that sent about ten invalid messages falls below the graylist threshold (−80) and is no
/// longer read; the count decays to a tenth in ten minutes. The other terms are off: a quiet LAN
/// delivers few messages, and many peers may share one address (a NAT, a test on loopback).
fn score_params(topic: &IdentTopic) -> PeerScoreParams {
    let presence = TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.0,
        first_message_deliveries_weight: 0.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: -1.0,
        invalid_message_deliveries_decay: gossipsub::score_parameter_decay(Duration::from_secs(
            600,
        )),
        ..TopicScoreParams::default()
    };
    let mut params = PeerScoreParams {
        ip_colocation_factor_weight: 0.0,
        ..PeerScoreParams::default()
    };
    params.topics.insert(topic.hash(), presence);
    params
}

/// Identify's protocol version: the tag peers share to join each other on the LAN.
fn protocol_version(tag: &str) -> String {
    format!("/goop2/1.0.0/{tag}")
}

/// The network tag of a goop2 peer's Identify protocol version; `None` for any other client.
fn network_tag(protocol_version: &str) -> Option<&str> {
    let rest = protocol_version.strip_prefix("/goop2/")?;
    rest.split_once('/').map(|(_, tag)| tag)
}
