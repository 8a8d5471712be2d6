//! Per-address connection budgets: what one client address may hold of this node.
//!
//! The global bounds ([`connection_limits`](libp2p::connection_limits)) keep the node's total
//! in check, but alone they let one address take every slot: 64 sockets that never finish a
//! handshake filled the pending queue, and 512 fresh identities from one host filled every
//! established slot, locking out every other peer. This behaviour counts inbound connections per
//! address — an IPv4 address or an IPv6 /64 ([`client_key`]) — while they are pending and once
//! established, and refuses past each budget. Outbound dials are not counted here: the node
//! keeps room for them with a separate inbound cap.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use libp2p::core::Endpoint;
use libp2p::core::transport::PortUse;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::behaviour::{ConnectionEstablished, ListenFailure};
use libp2p::swarm::{
    ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::{Multiaddr, PeerId};

use crate::services::client_key::client_key;

/// The node's connection bounds: in total, for inbound connections (the rest is kept for the
/// node's own dials), per peer, half-open, and per address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeLimits {
    pub max_connections: u32,
    /// Inbound connections established; `max_connections` minus this is kept for outbound
    /// dials, so a crowd of strangers never stops the node from reaching a peer itself.
    pub max_inbound: u32,
    /// Inbound connections of peers nobody vouched for (see [`super::vouched`]); the rest of
    /// `max_inbound` is kept for peers the owner knows.
    pub max_inbound_strangers: u32,
    pub max_per_peer: u32,
    /// Half-open connections each way.
    pub max_pending: u32,
    pub per_address: AddressLimits,
    /// Dials the node starts, whatever asks for them.
    pub dials: super::vouched::DialLimits,
}

impl Default for NodeLimits {
    fn default() -> Self {
        NodeLimits {
            max_connections: 512,
            max_inbound: 448,
            max_inbound_strangers: 384,
            max_per_peer: 4,
            max_pending: 128,
            per_address: AddressLimits::default(),
            dials: Default::default(),
        }
    }
}

impl NodeLimits {
    /// The global bounds, as libp2p's connection limits.
    pub fn connection_limits(&self) -> libp2p::connection_limits::ConnectionLimits {
        libp2p::connection_limits::ConnectionLimits::default()
            .with_max_established(Some(self.max_connections))
            .with_max_established_incoming(Some(self.max_inbound.min(self.max_connections)))
            .with_max_established_per_peer(Some(self.max_per_peer))
            .with_max_pending_incoming(Some(self.max_pending))
            .with_max_pending_outgoing(Some(self.max_pending))
    }
}

/// How much of the node one address may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressLimits {
    /// Inbound connections still in their handshake.
    pub pending: usize,
    /// Inbound connections established.
    pub established: usize,
}

impl Default for AddressLimits {
    fn default() -> Self {
        AddressLimits {
            pending: 8,
            established: 16,
        }
    }
}

/// An address's budget was spent.
#[derive(Debug, thiserror::Error)]
#[error("{address} already has {count} {what} connections (at most {limit} per address)")]
pub struct OverBudget {
    address: IpAddr,
    count: usize,
    limit: usize,
    what: &'static str,
}

/// The address each peer that connected to us came from (IPv4 address or IPv6 /64), while it
/// has an inbound connection open: what the stream protocols charge its streams to. A peer we
/// dialled ourselves has no entry. Cloning shares the map.
#[derive(Clone, Default)]
pub struct PeerAddresses(Arc<Mutex<HashMap<PeerId, (IpAddr, usize)>>>);

impl PeerAddresses {
    /// The address `peer`'s inbound connections come from, if it has one open.
    pub fn of(&self, peer: &PeerId) -> Option<IpAddr> {
        self.lock().get(peer).map(|(address, _)| *address)
    }

    fn opened(&self, peer: PeerId, address: IpAddr) {
        let mut map = self.lock();
        let entry = map.entry(peer).or_insert((address, 0));
        // The newest inbound connection names the address.
        entry.0 = address;
        entry.1 += 1;
    }

    fn closed(&self, peer: &PeerId) {
        let mut map = self.lock();
        if let Some(entry) = map.get_mut(peer) {
            entry.1 -= 1;
            if entry.1 == 0 {
                map.remove(peer);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PeerId, (IpAddr, usize)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Counts inbound connections per address and refuses past [`AddressLimits`].
pub struct AddressBudget {
    limits: AddressLimits,
    peers: PeerAddresses,
    /// The address each counted connection is charged to, its peer once established.
    connections: HashMap<ConnectionId, (IpAddr, Option<PeerId>)>,
    pending: HashMap<IpAddr, usize>,
    established: HashMap<IpAddr, usize>,
}

impl AddressBudget {
    pub fn new(limits: AddressLimits, peers: PeerAddresses) -> Self {
        AddressBudget {
            limits,
            peers,
            connections: HashMap::new(),
            pending: HashMap::new(),
            established: HashMap::new(),
        }
    }

    fn release(&mut self, connection: ConnectionId) {
        let Some((address, peer)) = self.connections.remove(&connection) else {
            return;
        };
        let counts = match peer {
            Some(peer) => {
                self.peers.closed(&peer);
                &mut self.established
            }
            None => &mut self.pending,
        };
        if let Some(count) = counts.get_mut(&address) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&address);
            }
        }
    }
}

/// The address a multiaddr dials from or to, if it names one.
pub fn address_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|protocol| match protocol {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

impl NetworkBehaviour for AddressBudget {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        let Some(address) = address_of(remote).map(client_key) else {
            return Ok(());
        };
        let count = self.pending.get(&address).copied().unwrap_or(0);
        if count >= self.limits.pending {
            return Err(ConnectionDenied::new(OverBudget {
                address,
                count,
                limit: self.limits.pending,
                what: "half-open",
            }));
        }
        *self.pending.entry(address).or_insert(0) += 1;
        self.connections.insert(connection_id, (address, None));
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _peer: PeerId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.release(connection_id);
        let Some(address) = address_of(remote).map(client_key) else {
            return Ok(dummy::ConnectionHandler);
        };
        let count = self.established.get(&address).copied().unwrap_or(0);
        if count >= self.limits.established {
            return Err(ConnectionDenied::new(OverBudget {
                address,
                count,
                limit: self.limits.established,
                what: "open",
            }));
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
            FromSwarm::ConnectionEstablished(ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            }) if endpoint.is_listener() => {
                if let Some(address) = address_of(endpoint.get_remote_address()).map(client_key) {
                    *self.established.entry(address).or_insert(0) += 1;
                    self.connections
                        .insert(connection_id, (address, Some(peer_id)));
                    self.peers.opened(peer_id, address);
                }
            }
            FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. })
            | FromSwarm::ListenFailure(ListenFailure { connection_id, .. }) => {
                self.release(connection_id);
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

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}
