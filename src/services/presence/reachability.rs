//! Reachability: every online peer in the PeerTable is probed over `/goop/content/1.0.0` when it
//! appears and then periodically; the result (round-trip time or the reason it failed) goes back
//! into the table, so the console shows it live.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::peer_table::{PeerChange, PeerState, PeerTable, Reachability};
use crate::identity::PeerId;
use crate::services::node::Node;
use crate::services::until_stopped;

/// Probes in flight at once.
const CONCURRENT_PROBES: usize = 8;
/// A probe that takes longer counts as unreachable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts probing every `every` until `stop`.
pub fn spawn(
    node: Node,
    table: PeerTable,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut changes = table.watch();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut probes: JoinSet<(PeerId, Reachability)> = JoinSet::new();
        let mut in_flight: HashSet<PeerId> = HashSet::new();
        loop {
            let targets: Vec<PeerId> = tokio::select! {
                () = until_stopped(&mut stop) => return,
                _ = tick.tick() => table
                    .snapshot()
                    .await
                    .into_iter()
                    .filter(|entry| entry.state == PeerState::Online)
                    .map(|entry| entry.peer_id)
                    .collect(),
                change = changes.recv() => match change {
                    Ok(PeerChange::Updated(entry))
                        if entry.state == PeerState::Online
                            && entry.reachability == Reachability::Unknown =>
                    {
                        vec![entry.peer_id]
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => Vec::new(),
                    Err(RecvError::Closed) => return,
                },
                Some(done) = probes.join_next() => {
                    if let Ok((peer_id, reachability)) = done {
                        in_flight.remove(&peer_id);
                        table.set_reachability(&peer_id, reachability).await;
                    }
                    Vec::new()
                }
            };
            for peer in targets {
                if in_flight.len() >= CONCURRENT_PROBES || in_flight.contains(&peer) {
                    continue;
                }
                in_flight.insert(peer);
                let node = node.clone();
                probes.spawn(async move { (peer, probe(&node, peer).await) });
            }
        }
    })
}

/// Asks `peer` for its label and measures how long the answer took.
pub async fn probe(node: &Node, peer: PeerId) -> Reachability {
    let started = Instant::now();
    match tokio::time::timeout(PROBE_TIMEOUT, node.fetch_content(peer)).await {
        Ok(Ok(_)) => Reachability::Reachable {
            rtt_ms: started.elapsed().as_millis().try_into().unwrap_or(u64::MAX),
        },
        Ok(Err(err)) => Reachability::Unreachable {
            reason: err.to_string(),
        },
        Err(_) => Reachability::Unreachable {
            reason: format!("no answer within {} s", PROBE_TIMEOUT.as_secs()),
        },
    }
}
