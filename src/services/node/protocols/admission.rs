//! Which incoming streams are served: every protocol's streams are admitted against budgets —
//! in all, of strangers (peers nobody vouched for, see [`super::super::vouched`]), per peer and
//! protocol, and per address (IPv4 address or IPv6 /64) — and a stream over any of them is
//! dropped (the caller sees it reset) rather than queued. [`OpenStreams`] counts the streams
//! open with each peer, both ways, so that an idle connection can be told from a busy one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use futures_util::StreamExt;
use libp2p::PeerId;
use libp2p_stream::IncomingStreams;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::services::node::budget::PeerAddresses;
use crate::services::node::vouched::KnownPeers;

pub(super) type Counts<K> = Arc<std::sync::Mutex<HashMap<K, usize>>>;

/// How many streams a group of protocols serves at once.
#[derive(Debug, Clone, Copy)]
pub(super) struct Budget {
    /// In all.
    pub total: usize,
    /// Of strangers; the rest is kept for peers the owner knows.
    pub strangers: usize,
    /// Of one protocol, to one peer.
    pub per_peer: usize,
    /// From the peers of one address.
    pub per_address: usize,
}

/// Streams open with each peer, served and requested, all protocols together: a peer with none
/// is idle, and its connection the first a stranger's may take the place of (see
/// [`super::super::vouched`]). Cloning shares the counts.
#[derive(Clone, Default)]
pub struct OpenStreams(Counts<PeerId>);

impl OpenStreams {
    /// Whether any stream with `peer` is open.
    pub fn any(&self, peer: &PeerId) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(peer)
    }

    /// Counts one more stream with `peer` until the guard is dropped.
    pub(super) fn hold(&self, peer: PeerId) -> OpenGuard {
        take(&self.0, peer, usize::MAX);
        OpenGuard {
            open: self.clone(),
            peer,
        }
    }
}

/// One stream counted in [`OpenStreams`]; uncounted on drop.
pub(super) struct OpenGuard {
    open: OpenStreams,
    peer: PeerId,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        give_back(&self.open.0, &self.peer);
    }
}

/// The budgets a group of protocols shares; [`Admission::for_protocol`] adds the protocol's own
/// per-peer count.
#[derive(Clone)]
pub(super) struct Admission {
    budget: Budget,
    total: Arc<Semaphore>,
    strangers: Arc<Semaphore>,
    known: KnownPeers,
    addresses: PeerAddresses,
    by_address: Counts<IpAddr>,
    open: OpenStreams,
}

impl Admission {
    pub fn new(
        budget: Budget,
        known: KnownPeers,
        addresses: PeerAddresses,
        open: OpenStreams,
    ) -> Self {
        Admission {
            budget,
            total: Arc::new(Semaphore::new(budget.total)),
            strangers: Arc::new(Semaphore::new(budget.strangers)),
            known,
            addresses,
            by_address: Arc::default(),
            open,
        }
    }

    /// The limits of one protocol: these shared budgets and a per-peer count of its own.
    pub fn for_protocol(&self) -> Permits {
        Permits {
            shared: self.clone(),
            per_peer: Arc::default(),
        }
    }
}

/// The limits of one protocol's incoming streams.
#[derive(Clone)]
pub(super) struct Permits {
    shared: Admission,
    per_peer: Counts<PeerId>,
}

/// One admitted stream; its place is given back on drop.
pub(super) struct Permit {
    _total: OwnedSemaphorePermit,
    _stranger: Option<OwnedSemaphorePermit>,
    peer: PeerId,
    per_peer: Counts<PeerId>,
    address: Option<(IpAddr, Counts<IpAddr>)>,
    _open: OpenGuard,
}

/// Takes one from `key`'s count if it is under `limit`.
pub(super) fn take<K: std::hash::Hash + Eq>(counts: &Counts<K>, key: K, limit: usize) -> bool {
    let mut counts = counts.lock().unwrap_or_else(|e| e.into_inner());
    let count = counts.entry(key).or_default();
    if *count >= limit {
        return false;
    }
    *count += 1;
    true
}

/// Gives one back to `key`'s count.
pub(super) fn give_back<K: std::hash::Hash + Eq>(counts: &Counts<K>, key: &K) {
    let mut counts = counts.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(count) = counts.get_mut(key) {
        *count -= 1;
        if *count == 0 {
            counts.remove(key);
        }
    }
}

impl Permits {
    /// A place for one more stream of `peer`, if every budget has one.
    pub fn admit(&self, peer: PeerId) -> Option<Permit> {
        let shared = &self.shared;
        let stranger = if shared.known.contains(&peer) {
            None
        } else {
            Some(shared.strangers.clone().try_acquire_owned().ok()?)
        };
        let total = shared.total.clone().try_acquire_owned().ok()?;
        if !take(&self.per_peer, peer, shared.budget.per_peer) {
            return None;
        }
        let address = shared.addresses.of(&peer);
        if let Some(address) = address
            && !take(&shared.by_address, address, shared.budget.per_address)
        {
            give_back(&self.per_peer, &peer);
            return None;
        }
        Some(Permit {
            _total: total,
            _stranger: stranger,
            peer,
            per_peer: self.per_peer.clone(),
            address: address.map(|a| (a, shared.by_address.clone())),
            _open: shared.open.hold(peer),
        })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        give_back(&self.per_peer, &self.peer);
        if let Some((address, counts)) = &self.address {
            give_back(counts, address);
        }
    }
}

/// Takes `incoming` streams as long as the node runs, admitting each against `permits` and
/// handing the admitted ones, with their permit, to `admitted`.
pub(super) async fn accept(
    mut incoming: IncomingStreams,
    permits: Permits,
    mut admitted: impl FnMut(PeerId, libp2p::Stream, Permit),
) {
    while let Some((peer, stream)) = incoming.next().await {
        // Over a limit a stream is dropped (the caller sees it reset) rather than queued.
        match permits.admit(peer) {
            Some(permit) => admitted(peer, stream, permit),
            None => tracing::debug!(peer.id = %peer, "too many streams; refusing one"),
        }
    }
}
