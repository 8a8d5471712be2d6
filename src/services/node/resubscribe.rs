//! GossipSub that tells a peer its subscriptions again whenever the set of connections to that
//! peer changes while some stay open.
//!
//! GossipSub sends its subscriptions to a peer only on the *first* connection to it, and hands
//! outgoing messages to whichever of the peer's connections takes them. When a peer restarts,
//! the connection to its old process can stay open for a while (a QUIC connection has no FIN; it
//! lasts until its idle timeout): the restarted process then arrives on a second connection,
//! never hears our subscription, and so never sends us its presence — while both sides look
//! connected. This wrapper replays the "first connection" to GossipSub when a connection is
//! added beside others, and again when one of several closes (what went out on a dead one is
//! lost), so a restarted peer always learns what we subscribe to. A repeated subscription is a
//! no-op for a peer that already knew it.

use std::collections::HashMap;
use std::task::{Context, Poll};

use libp2p::PeerId;
use libp2p::core::transport::PortUse;
use libp2p::core::{ConnectedPoint, Endpoint, Multiaddr};
use libp2p::gossipsub;
use libp2p::swarm::behaviour::{ConnectionClosed, ConnectionEstablished};
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};

/// [`gossipsub::Behaviour`], resubscribing as the module says.
pub struct Resubscribing {
    pub inner: gossipsub::Behaviour,
    /// Open connections per peer (bounded by the swarm's connection limits).
    connections: HashMap<PeerId, Vec<(ConnectionId, ConnectedPoint)>>,
}

impl Resubscribing {
    pub fn new(inner: gossipsub::Behaviour) -> Self {
        Resubscribing {
            inner,
            connections: HashMap::new(),
        }
    }

    /// Tells GossipSub that `connection` is the first one to `peer`: it sends our
    /// subscriptions to the peer again.
    fn replay_first_connection(&mut self, peer: PeerId, connection: ConnectionId) {
        let Some(endpoint) = self.connections.get(&peer).and_then(|open| {
            open.iter()
                .find(|(id, _)| *id == connection)
                .map(|(_, endpoint)| endpoint.clone())
        }) else {
            return;
        };
        self.inner
            .on_swarm_event(FromSwarm::ConnectionEstablished(ConnectionEstablished {
                peer_id: peer,
                connection_id: connection,
                endpoint: &endpoint,
                failed_addresses: &[],
                other_established: 0,
            }));
    }
}

impl NetworkBehaviour for Resubscribing {
    type ConnectionHandler = <gossipsub::Behaviour as NetworkBehaviour>::ConnectionHandler;
    type ToSwarm = gossipsub::Event;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.inner
            .handle_pending_inbound_connection(connection_id, local_addr, remote_addr)
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner.handle_established_inbound_connection(
            connection_id,
            peer,
            local_addr,
            remote_addr,
        )
    }

    fn handle_pending_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        maybe_peer: Option<PeerId>,
        addresses: &[Multiaddr],
        effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.inner.handle_pending_outbound_connection(
            connection_id,
            maybe_peer,
            addresses,
            effective_role,
        )
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role_override: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner.handle_established_outbound_connection(
            connection_id,
            peer,
            addr,
            role_override,
            port_use,
        )
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(established) => {
                self.connections
                    .entry(established.peer_id)
                    .or_default()
                    .push((established.connection_id, established.endpoint.clone()));
                // Beside other connections, GossipSub would stay silent: let it speak.
                self.inner.on_swarm_event(FromSwarm::ConnectionEstablished(
                    ConnectionEstablished {
                        other_established: 0,
                        ..established
                    },
                ));
            }
            FromSwarm::ConnectionClosed(closed @ ConnectionClosed { peer_id, .. }) => {
                let remaining = match self.connections.get_mut(&peer_id) {
                    Some(open) => {
                        open.retain(|(id, _)| *id != closed.connection_id);
                        open.first().map(|(id, _)| *id)
                    }
                    None => None,
                };
                if remaining.is_none() {
                    self.connections.remove(&peer_id);
                }
                self.inner
                    .on_swarm_event(FromSwarm::ConnectionClosed(closed));
                if let Some(connection) = remaining {
                    self.replay_first_connection(peer_id, connection);
                }
            }
            other => self.inner.on_swarm_event(other),
        }
    }

    fn on_connection_handler_event(
        &mut self,
        peer_id: PeerId,
        connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        self.inner
            .on_connection_handler_event(peer_id, connection_id, event)
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        self.inner.poll(cx)
    }
}
