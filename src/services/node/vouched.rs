//! Where the node may dial: the addresses a source the owner trusts vouched for, and a budget of
//! dials.
//!
//! A peer's own word is not enough. What a neighbour says over Identify, or what any signed
//! presence heard over gossip carries, is chosen by whoever sent it: an attacker who filled the
//! last-known peers with 1,000 addresses had the peer dial all of them after a restart, and
//! peers that left had their Identify addresses dialled by the reachability prober. So the node
//! dials a peer only at addresses kept here — put here by the hub presence the peer mode
//! believes (within the hub's [`Reach`]), by the owner's favourites, and by the node's own
//! explicit dials — or found by mDNS on the LAN (mDNS hands its own to the swarm). Every dial,
//! whatever its source, spends from one token bucket, so no flood of announcements turns into
//! a flood of connection attempts.
//!
//! The same book says who is known: a peer vouched for (even without an address the node may
//! dial) or found by mDNS. Inbound connections of strangers take at most their share of the
//! inbound slots, so a crowd of fresh identities never locks out the peers the owner knows.
//! When that share is full, a new stranger takes the place of the stranger connected longest
//! with no stream open (a crowd that connects and waits holds its slots only until others
//! come); when every stranger is busy, the new one is refused.

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll, Waker};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use libp2p::core::Endpoint;
use libp2p::core::transport::PortUse;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::behaviour::ListenFailure;
use libp2p::swarm::{
    CloseConnection, ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour,
    THandler, THandlerInEvent, THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::{Multiaddr, PeerId};

use super::protocols::OpenStreams;

/// Peers whose addresses are kept; past this, the one vouched for longest ago goes.
pub const MAX_PEERS: usize = 4096;
/// Addresses kept per peer (a peer announces a handful: TCP and QUIC, IPv4 and IPv6).
pub const MAX_ADDRS_PER_PEER: usize = 8;

/// How far an address reaches: this machine, a private network, or the internet. Ordered from
/// narrowest to widest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reach {
    Loopback,
    /// RFC 1918, carrier-grade NAT, link-local and unique-local ranges.
    Private,
    Global,
}

impl Reach {
    /// The reach of `ip`; `None` for what is never dialled (unspecified, multicast, broadcast,
    /// documentation ranges).
    pub fn of_ip(ip: IpAddr) -> Option<Reach> {
        match ip {
            IpAddr::V4(v4) => Reach::of_v4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Reach::of_v4(v4),
                None => Reach::of_v6(v6),
            },
        }
    }

    fn of_v4(ip: Ipv4Addr) -> Option<Reach> {
        let [a, b, ..] = ip.octets();
        if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() || ip.is_documentation() {
            None
        } else if ip.is_loopback() {
            Some(Reach::Loopback)
        } else if ip.is_private()
            || ip.is_link_local()
            // Carrier-grade NAT, 100.64.0.0/10.
            || (a == 100 && (64..128).contains(&b))
            || a == 0
        {
            Some(Reach::Private)
        } else {
            Some(Reach::Global)
        }
    }

    fn of_v6(ip: Ipv6Addr) -> Option<Reach> {
        let first = ip.segments()[0];
        if ip.is_unspecified() || ip.is_multicast() || first == 0x2001 && ip.segments()[1] == 0xdb8
        {
            None
        } else if ip.is_loopback() {
            Some(Reach::Loopback)
        } else if ip.is_unique_local() || ip.is_unicast_link_local() {
            Some(Reach::Private)
        } else {
            Some(Reach::Global)
        }
    }

    /// The narrowest addresses a hub at `host` (a URL's host) may vouch for: a hub on this
    /// machine knows peers on this machine, one on a private network knows that network, and
    /// one named or on the internet only the internet — a private address learned from the
    /// internet names some other network's host, or one on ours the sender wants us to reach.
    pub fn of_hub_host(host: &str) -> Reach {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if bare.eq_ignore_ascii_case("localhost") {
            return Reach::Loopback;
        }
        bare.parse::<IpAddr>()
            .ok()
            .and_then(Reach::of_ip)
            .unwrap_or(Reach::Global)
    }

    /// Whether a source of this reach may have the node dial `addr`: an IP address at least
    /// this wide (a name, which the node cannot resolve, never).
    pub fn permits(self, addr: &Multiaddr) -> bool {
        let ip = addr.iter().find_map(|protocol| match protocol {
            Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
            Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
            _ => None,
        });
        ip.and_then(Reach::of_ip).is_some_and(|reach| reach >= self)
    }
}

/// How many dials the node starts: a burst, then a steady rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DialLimits {
    pub burst: u32,
    pub per_second: u32,
}

impl Default for DialLimits {
    fn default() -> Self {
        DialLimits {
            burst: 64,
            per_second: 16,
        }
    }
}

/// The dial budget was spent.
#[derive(Debug, thiserror::Error)]
#[error("too many dials at once (at most {burst}, then {per_second} a second)")]
pub struct TooManyDials {
    burst: u32,
    per_second: u32,
}

/// The peers something vouched for, shared with the stream protocols (which keep room for
/// them as the node keeps connections). Cloning shares the set.
#[derive(Clone, Default)]
pub struct KnownPeers(Arc<RwLock<HashSet<PeerId>>>);

impl KnownPeers {
    pub fn contains(&self, peer: &PeerId) -> bool {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(peer)
    }

    fn insert(&self, peer: PeerId) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(peer);
    }

    fn remove(&self, peer: &PeerId) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(peer);
    }
}

/// Strangers hold all the inbound connections they may, and each has a stream open.
#[derive(Debug, thiserror::Error)]
#[error("{limit} inbound connections of unknown peers are open already, none of them idle")]
pub struct TooManyStrangers {
    limit: usize,
}

struct Vouched {
    addrs: Vec<Multiaddr>,
    /// When it was last vouched for, as a count of vouches: the lowest goes first.
    stamp: u64,
    /// Found by mDNS only: no hub, favourite or deliberate dial vouched for it.
    lan_only: bool,
}

/// The addresses the node may dial, per peer, and the dial budget.
pub struct VouchedAddresses {
    peers: HashMap<PeerId, Vouched>,
    vouches: u64,
    limits: DialLimits,
    dials: DefaultDirectRateLimiter,
    /// Open inbound connections of peers nobody vouched for (with their peer and the order
    /// they came in), and how many there may be.
    strangers: HashMap<ConnectionId, (PeerId, u64)>,
    arrivals: u64,
    max_strangers: usize,
    known: KnownPeers,
    open: OpenStreams,
    /// Strangers' connections to close, to make room for newer ones.
    evicted: VecDeque<(PeerId, ConnectionId)>,
    waker: Option<Waker>,
}

impl VouchedAddresses {
    /// A book whose strangers may hold `max_strangers` inbound connections; `known` mirrors
    /// the peers it knows, and `open` says which peers have streams open.
    pub fn new(
        limits: DialLimits,
        max_strangers: usize,
        known: KnownPeers,
        open: OpenStreams,
    ) -> Self {
        let per_second = NonZeroU32::new(limits.per_second.max(1)).expect("at least one");
        let burst = NonZeroU32::new(limits.burst.max(1)).expect("at least one");
        VouchedAddresses {
            peers: HashMap::new(),
            vouches: 0,
            limits,
            dials: RateLimiter::direct(Quota::per_second(per_second).allow_burst(burst)),
            strangers: HashMap::new(),
            arrivals: 0,
            max_strangers,
            known,
            open,
            evicted: VecDeque::new(),
            waker: None,
        }
    }

    /// Makes room for one more stranger: the stranger's connection that came in first among
    /// those with no stream open is let go. False when every stranger is busy.
    fn evict_idle_stranger(&mut self) -> bool {
        let idle = self
            .strangers
            .iter()
            // One vouched for since it came in is a stranger no longer.
            .filter(|(_, (peer, _))| !self.open.any(peer) && !self.knows(peer))
            .min_by_key(|(_, (_, arrival))| *arrival)
            .map(|(connection, (peer, _))| (*connection, *peer));
        let Some((connection, peer)) = idle else {
            return false;
        };
        self.strangers.remove(&connection);
        self.evicted.push_back((peer, connection));
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
        true
    }

    /// Whether something vouched for `peer`.
    pub fn knows(&self, peer: &PeerId) -> bool {
        self.peers.contains_key(peer)
    }

    /// Knows `peer`, and keeps `addrs` (those that name `peer` or no peer, at most
    /// [`MAX_ADDRS_PER_PEER`]) as where it may be dialled, in place of what was kept before;
    /// with no address, what was kept stays.
    pub fn vouch(&mut self, peer: PeerId, addrs: impl IntoIterator<Item = Multiaddr>) {
        self.keep(peer, addrs, false);
    }

    /// As [`Self::vouch`], for a peer mDNS found on the LAN: unless something else vouched for
    /// it too, it stays [`Self::only_on_lan`].
    pub fn vouch_on_lan(&mut self, peer: PeerId, addrs: impl IntoIterator<Item = Multiaddr>) {
        self.keep(peer, addrs, true);
    }

    /// Whether mDNS alone vouched for `peer`: what the network tag scopes.
    pub fn only_on_lan(&self, peer: &PeerId) -> bool {
        self.peers.get(peer).is_some_and(|vouched| vouched.lan_only)
    }

    fn keep(&mut self, peer: PeerId, addrs: impl IntoIterator<Item = Multiaddr>, lan: bool) {
        let addrs: Vec<Multiaddr> = addrs
            .into_iter()
            .filter_map(|addr| without_peer(addr, peer))
            .take(MAX_ADDRS_PER_PEER)
            .collect();
        self.vouches += 1;
        let stamp = self.vouches;
        if self.peers.len() >= MAX_PEERS && !self.peers.contains_key(&peer) {
            let oldest = self
                .peers
                .iter()
                .min_by_key(|(_, vouched)| vouched.stamp)
                .map(|(peer, _)| *peer);
            if let Some(oldest) = oldest {
                self.peers.remove(&oldest);
                self.known.remove(&oldest);
            }
        }
        let lan_only = lan && self.peers.get(&peer).is_none_or(|vouched| vouched.lan_only);
        match self.peers.get_mut(&peer) {
            // Known again, with nothing to dial: what was kept stays.
            Some(vouched) if addrs.is_empty() => {
                vouched.stamp = stamp;
                vouched.lan_only = lan_only;
            }
            _ => {
                let vouched = Vouched {
                    addrs,
                    stamp,
                    lan_only,
                };
                self.peers.insert(peer, vouched);
            }
        }
        self.known.insert(peer);
    }

    /// Where `peer` may be dialled.
    pub fn addrs(&self, peer: &PeerId) -> &[Multiaddr] {
        self.peers.get(peer).map_or(&[], |vouched| &vouched.addrs)
    }
}

/// `addr` without its trailing `/p2p/<peer>`, if it names `peer` or no peer.
fn without_peer(mut addr: Multiaddr, peer: PeerId) -> Option<Multiaddr> {
    match addr.iter().last() {
        Some(Protocol::P2p(named)) if named == peer => {
            addr.pop();
            Some(addr)
        }
        Some(Protocol::P2p(_)) => None,
        _ => Some(addr),
    }
}

impl NetworkBehaviour for VouchedAddresses {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        peer: Option<PeerId>,
        _addresses: &[Multiaddr],
        _effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        if self.dials.check().is_err() {
            return Err(ConnectionDenied::new(TooManyDials {
                burst: self.limits.burst,
                per_second: self.limits.per_second,
            }));
        }
        Ok(peer.map_or_else(Vec::new, |peer| self.addrs(&peer).to_vec()))
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        _local: &Multiaddr,
        _remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        if !self.knows(&peer) {
            if self.strangers.len() >= self.max_strangers && !self.evict_idle_stranger() {
                return Err(ConnectionDenied::new(TooManyStrangers {
                    limit: self.max_strangers,
                }));
            }
            self.arrivals += 1;
            self.strangers.insert(connection_id, (peer, self.arrivals));
        }
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        _peer: PeerId,
        _addr: &Multiaddr,
        _role_override: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. })
            | FromSwarm::ListenFailure(ListenFailure { connection_id, .. }) => {
                self.strangers.remove(&connection_id);
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer: PeerId,
        _connection: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        if let Some((peer_id, connection)) = self.evicted.pop_front() {
            tracing::debug!(peer.id = %peer_id, "letting an idle stranger go for a newer one");
            return Poll::Ready(ToSwarm::CloseConnection {
                peer_id,
                connection: CloseConnection::One(connection),
            });
        }
        self.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn reach_orders_loopback_private_global() {
        let of = |s: &str| Reach::of_ip(s.parse().unwrap());
        assert_eq!(of("127.0.0.1"), Some(Reach::Loopback));
        assert_eq!(of("::1"), Some(Reach::Loopback));
        for private in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.5",
            "100.64.0.1",
            "169.254.1.1",
            "fd00::1",
            "fe80::1",
            "::ffff:192.168.1.5",
        ] {
            assert_eq!(of(private), Some(Reach::Private), "{private}");
        }
        for global in ["8.8.8.8", "100.128.0.1", "2a01:4f8::1", "::ffff:1.1.1.1"] {
            assert_eq!(of(global), Some(Reach::Global), "{global}");
        }
        for never in ["0.0.0.0", "224.0.0.251", "255.255.255.255", "::", "ff02::1"] {
            assert_eq!(of(never), None, "{never}");
        }
    }

    #[test]
    fn a_hub_vouches_only_for_addresses_as_wide_as_itself() {
        let internet = Reach::of_hub_host("hub.example.org");
        assert_eq!(internet, Reach::Global);
        assert!(!internet.permits(&addr("/ip4/203.0.113.9/tcp/4001")));
        assert!(internet.permits(&addr("/ip4/8.8.4.4/tcp/4001")));
        assert!(!internet.permits(&addr("/ip4/192.168.1.5/tcp/4001")));
        assert!(!internet.permits(&addr("/ip4/127.0.0.1/tcp/4001")));
        assert!(!internet.permits(&addr("/ip6/fe80::1/tcp/4001")));
        assert!(!internet.permits(&addr("/dns4/printer.lan/tcp/4001")));

        let lan = Reach::of_hub_host("192.168.1.2");
        assert_eq!(lan, Reach::Private);
        assert!(lan.permits(&addr("/ip4/192.168.1.5/udp/4001/quic-v1")));
        assert!(lan.permits(&addr("/ip4/8.8.4.4/tcp/4001")));
        assert!(!lan.permits(&addr("/ip4/127.0.0.1/tcp/4001")));

        for here in ["localhost", "127.0.0.1", "[::1]"] {
            let here = Reach::of_hub_host(here);
            assert_eq!(here, Reach::Loopback);
            assert!(here.permits(&addr("/ip4/127.0.0.1/tcp/4001")));
            assert!(here.permits(&addr("/ip4/10.0.0.1/tcp/4001")));
            assert!(!here.permits(&addr("/ip4/0.0.0.0/tcp/4001")));
        }
    }

    #[test]
    fn vouched_addresses_name_their_peer_and_are_bounded() {
        let known = KnownPeers::default();
        let mut book = VouchedAddresses::new(
            DialLimits::default(),
            1,
            known.clone(),
            OpenStreams::default(),
        );
        let peer = PeerId::random();
        let other = PeerId::random();
        book.vouch(
            peer,
            [
                addr(&format!("/ip4/1.2.3.4/tcp/1/p2p/{peer}")),
                addr(&format!("/ip4/1.2.3.4/tcp/2/p2p/{other}")),
                addr("/ip4/1.2.3.4/tcp/3"),
            ],
        );
        assert_eq!(
            book.addrs(&peer),
            [addr("/ip4/1.2.3.4/tcp/1"), addr("/ip4/1.2.3.4/tcp/3")]
        );
        book.vouch(peer, []);
        assert_eq!(
            book.addrs(&peer).len(),
            2,
            "a vouch without addresses keeps them"
        );
        book.vouch(
            other,
            (0..20).map(|i| addr(&format!("/ip4/1.2.3.4/tcp/{i}"))),
        );
        assert_eq!(book.addrs(&other).len(), MAX_ADDRS_PER_PEER);

        let first = PeerId::random();
        book.vouch(first, [addr("/ip4/1.2.3.4/tcp/9")]);
        for _ in 0..MAX_PEERS {
            book.vouch(PeerId::random(), [addr("/ip4/1.2.3.4/tcp/9")]);
        }
        assert_eq!(book.peers.len(), MAX_PEERS);
        assert!(book.addrs(&peer).is_empty(), "the oldest vouch went first");
        assert!(!known.contains(&peer) && known.contains(&first) == book.knows(&first));
        assert_eq!(known.0.read().unwrap().len(), MAX_PEERS);
    }

    #[test]
    fn a_peer_is_only_on_the_lan_until_something_else_vouches_for_it() {
        let mut book = VouchedAddresses::new(
            DialLimits::default(),
            1,
            KnownPeers::default(),
            OpenStreams::default(),
        );
        let (lan, hub) = (PeerId::random(), PeerId::random());
        book.vouch_on_lan(lan, [addr("/ip4/192.168.1.5/tcp/4001")]);
        assert!(book.only_on_lan(&lan) && book.knows(&lan));
        book.vouch(lan, []);
        assert!(
            !book.only_on_lan(&lan),
            "a hub's word is more than the LAN's"
        );
        book.vouch_on_lan(lan, [addr("/ip4/192.168.1.6/tcp/4001")]);
        assert!(
            !book.only_on_lan(&lan),
            "found again on the LAN, still vouched for"
        );
        assert_eq!(book.addrs(&lan), [addr("/ip4/192.168.1.6/tcp/4001")]);

        book.vouch(hub, [addr("/ip4/8.8.8.8/tcp/4001")]);
        book.vouch_on_lan(hub, []);
        assert!(!book.only_on_lan(&hub));
        assert!(
            !book.only_on_lan(&PeerId::random()),
            "an unknown peer is not on the LAN"
        );
    }
}
