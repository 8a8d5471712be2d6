//! The PeerTable's memory across restarts: last-known peers in `_peer_cache` and the owner's
//! favourites in `_favorites` of the peer's `data.db`.
//!
//! Changes are written behind, in batches, so a burst of presence never waits on the disk.
//! Strangers (peers heard of only second-hand over gossip) are never written: the cache keeps
//! the peers something vouched for.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::peer_table::{KnownPeer, PeerChange, PeerEntry, PeerTable};
use crate::identity::PeerId;
use crate::services::hub::unix_ms;
use crate::services::until_stopped;
use crate::store::peer::{CachedPeer, PeerStore};

/// How long changes gather before they are written.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Favourites and last-known peers, kept in the store and mirrored in the table.
#[derive(Clone)]
pub struct PeerBook {
    store: PeerStore,
    table: PeerTable,
}

impl PeerBook {
    /// Lists the stored peers in `table` and starts writing its changes behind, until `stop`.
    pub async fn start(
        store: PeerStore,
        table: PeerTable,
        stop: watch::Receiver<bool>,
    ) -> Result<(PeerBook, JoinHandle<()>), sqlx::Error> {
        // Watch before restoring, so nothing heard meanwhile is missed.
        let changes = table.watch();
        let favorites = store.favorites().await?;
        let known = store
            .cached_peers()
            .await?
            .into_iter()
            .filter_map(|peer| {
                // Rows are written from the table's own entries; one that is not a peer ID
                // (edited by hand, say) names nobody the table could list.
                let Ok(peer_id) = peer.peer_id.parse::<PeerId>() else {
                    tracing::debug!("data.db remembers {:?}, not a peer ID", peer.peer_id);
                    return None;
                };
                Some(KnownPeer {
                    favorite: favorites.contains(&peer.peer_id),
                    addrs: serde_json::from_str(&peer.addrs).unwrap_or_default(),
                    peer_id,
                    label: peer.label,
                    email: peer.email,
                    avatar_hash: peer.avatar_hash,
                    verified: peer.verified,
                })
            })
            .collect();
        table.restore(known).await;
        let task = tokio::spawn(write_behind(store.clone(), table.clone(), changes, stop));
        Ok((PeerBook { store, table }, task))
    }

    /// Marks or unmarks a known peer as a favourite; false when the peer is not known.
    pub async fn set_favorite(
        &self,
        peer_id: &PeerId,
        favorite: bool,
    ) -> Result<bool, sqlx::Error> {
        if !self.table.set_favorite(peer_id, favorite).await {
            return Ok(false);
        }
        self.store
            .set_favorite(&peer_id.to_base58(), favorite, unix_ms())
            .await?;
        Ok(true)
    }
}

fn cached(entry: &PeerEntry, now_ms: i64) -> CachedPeer {
    CachedPeer {
        peer_id: entry.peer_id.to_base58(),
        label: entry.label.clone(),
        email: entry.email.clone(),
        avatar_hash: entry.avatar_hash.clone(),
        addrs: serde_json::to_string(&entry.addrs).unwrap_or_else(|_| "[]".into()),
        verified: entry.verified,
        last_seen_ms: now_ms,
    }
}

async fn write_behind(
    store: PeerStore,
    table: PeerTable,
    mut changes: tokio::sync::broadcast::Receiver<PeerChange>,
    mut stop: watch::Receiver<bool>,
) {
    let mut pending: HashMap<PeerId, CachedPeer> = HashMap::new();
    let mut flush = tokio::time::interval(FLUSH_EVERY);
    loop {
        let stopping = tokio::select! {
            change = changes.recv() => match change {
                // Only peers actually heard of (restored entries have no source yet), and never
                // strangers: a flood of them must not push the peers we know out of the cache.
                Ok(PeerChange::Updated(entry)) => {
                    if !entry.sources.is_empty() && !entry.stranger {
                        pending.insert(entry.peer_id, cached(&entry, unix_ms()));
                    }
                    continue;
                }
                Ok(_) => continue,
                Err(RecvError::Lagged(_)) => {
                    let now = unix_ms();
                    for entry in table.snapshot().await {
                        if !entry.sources.is_empty() && !entry.stranger {
                            pending.insert(entry.peer_id, cached(&entry, now));
                        }
                    }
                    continue;
                }
                Err(RecvError::Closed) => true,
            },
            _ = flush.tick() => false,
            () = until_stopped(&mut stop) => true,
        };
        if !pending.is_empty() {
            let batch: Vec<CachedPeer> = pending.drain().map(|(_, peer)| peer).collect();
            if let Err(err) = store.remember_peers(&batch).await {
                tracing::warn!("cannot remember {} peers in data.db: {err}", batch.len());
            }
        }
        if stopping {
            return;
        }
    }
}
