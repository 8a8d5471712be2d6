//! Reachability: every online peer in the PeerTable is probed over `/goop/content/1.0.0` when it
//! appears and then periodically; the result (round-trip time or the reason it failed) goes back
//! into the table, so the console shows it live. A first probe that fails is tried again after
//! 2, 4, 8 and 16 s: a peer that has just been announced may still be being dialled, or still
//! be taking its slot on a relay (behind a NAT), and the next periodic probe is up to half a
//! minute away.

use std::collections::{HashMap, HashSet};
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
/// How long after a failed first probe it is tried again (doubling each time).
const FIRST_RETRY: Duration = Duration::from_secs(2);
/// How many times a failed first probe is tried again.
const FIRST_RETRIES: u32 = 4;

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
        // Peers whose first probe (or its retries) is in flight, with the retries made so far.
        let mut first: HashMap<PeerId, u32> = HashMap::new();
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
                        if first.len() < CONCURRENT_PROBES * 4 {
                            first.entry(entry.peer_id).or_insert(0);
                        }
                        vec![entry.peer_id]
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => Vec::new(),
                    Err(RecvError::Closed) => return,
                },
                Some(done) = probes.join_next() => {
                    if let Ok((peer_id, reachability)) = done {
                        in_flight.remove(&peer_id);
                        let failed = matches!(reachability, Reachability::Unreachable { .. });
                        table.set_reachability(&peer_id, reachability).await;
                        match first.get_mut(&peer_id) {
                            Some(retries) if failed && *retries < FIRST_RETRIES => {
                                let wait = crate::services::doubling(
                                    FIRST_RETRY,
                                    *retries + 1,
                                    Duration::MAX,
                                );
                                *retries += 1;
                                in_flight.insert(peer_id);
                                let node = node.clone();
                                probes.spawn(async move {
                                    tokio::time::sleep(wait).await;
                                    (peer_id, probe(&node, peer_id).await)
                                });
                            }
                            _ => {
                                first.remove(&peer_id);
                            }
                        }
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
