//! The owner's block list: peers that may not message this peer, join its groups or make
//! requests of its data and functions. Kept in `_blocked_peers`; read from memory by every
//! service that checks it. Cloning is cheap; every clone sees the same list.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use libp2p::PeerId;

use crate::services::hub::unix_ms;
use crate::store::chat::ChatStore;

#[derive(Clone)]
pub struct BlockList {
    store: ChatStore,
    peers: Arc<RwLock<HashSet<PeerId>>>,
}

impl BlockList {
    /// The list as stored.
    pub async fn load(store: ChatStore) -> Result<BlockList, sqlx::Error> {
        let peers = store
            .blocked()
            .await?
            .iter()
            .filter_map(|id| id.parse().ok())
            .collect();
        Ok(BlockList {
            store,
            peers: Arc::new(RwLock::new(peers)),
        })
    }

    pub fn contains(&self, peer: &PeerId) -> bool {
        self.peers.read().expect("not poisoned").contains(peer)
    }

    /// Blocks or unblocks `peer`, stored before it takes effect.
    pub async fn set(&self, peer: PeerId, blocked: bool) -> Result<(), sqlx::Error> {
        let id = peer.to_base58();
        match blocked {
            true => self.store.block(&id, unix_ms()).await?,
            false => self.store.unblock(&id).await?,
        }
        let mut peers = self.peers.write().expect("not poisoned");
        match blocked {
            true => peers.insert(peer),
            false => peers.remove(&peer),
        };
        Ok(())
    }

    /// The blocked peers, by ID.
    pub fn peers(&self) -> Vec<PeerId> {
        let mut peers: Vec<PeerId> = self
            .peers
            .read()
            .expect("not poisoned")
            .iter()
            .copied()
            .collect();
        peers.sort_by_key(|peer| peer.to_base58());
        peers
    }
}
