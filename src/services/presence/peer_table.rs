//! The PeerTable: one view of every peer this peer has heard of, merged from all sources — the
//! LAN gossip, each hub's stream — as an actor.
//!
//! A peer is `online` while news keeps arriving, `offline` after `ttl` without any, and removed
//! after a further grace period. Only a hub may say a peer is `verified`; gossip never can.
//! Messages older than the newest one seen for a peer (by its own `ts`) are ignored, whatever
//! source repeats them. Changes are broadcast so the console can update live.
//!
//! Favourites are never removed, only marked offline; last-known peers restored at start are
//! listed offline until they are heard of again.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use libp2p_identity::PeerId;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::services::hub::presence::{Presence, PresenceType};

/// Commands waiting for the table.
const COMMAND_QUEUE: usize = 1024;
/// Changes a slow watcher may fall behind before it must take a new snapshot.
const CHANGE_QUEUE: usize = 256;

/// Where news about a peer came from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Source {
    /// The LAN (GossipSub, found by mDNS or dialled).
    Gossip,
    /// A rendezvous hub, by URL.
    Hub(String),
}

/// What the last probe over `/goop/content/1.0.0` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Reachability {
    /// Not probed yet.
    Unknown,
    /// Answered, in this many milliseconds.
    Reachable { rtt_ms: u64 },
    /// Did not answer; why.
    Unreachable { reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerState {
    Online,
    Offline,
}

/// One peer as the table knows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeerEntry {
    pub peer_id: String,
    pub label: String,
    pub email: String,
    pub avatar_hash: Option<String>,
    pub active_template: Option<String>,
    pub addrs: Vec<String>,
    /// A hub vouched for this peer.
    pub verified: bool,
    pub state: PeerState,
    pub favorite: bool,
    pub reachability: Reachability,
    pub sources: BTreeSet<Source>,
    /// The peer's own timestamp of the newest message (ms).
    pub ts: i64,
    #[serde(skip)]
    last_news: Instant,
}

/// What the table can say about who a peer is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The label the peer announced.
    pub label: String,
    /// The email, only when a hub vouched for the peer (`verified`).
    pub verified_email: Option<String>,
}

/// A change to the table.
#[derive(Debug, Clone, PartialEq)]
pub enum PeerChange {
    Updated(PeerEntry),
    Offline(String),
    Removed(String),
}

/// Timing of the table.
#[derive(Debug, Clone, Copy)]
pub struct TableOptions {
    pub ttl: Duration,
    /// How long an offline peer is kept before it is removed.
    pub grace: Duration,
    /// How often expiry is checked.
    pub tick: Duration,
}

/// A peer known from an earlier run.
#[derive(Debug, Clone)]
pub struct KnownPeer {
    pub peer_id: String,
    pub label: String,
    pub email: String,
    pub avatar_hash: Option<String>,
    pub addrs: Vec<String>,
    pub verified: bool,
    pub favorite: bool,
}

enum Command {
    Observe(Box<Presence>, Source),
    Restore(Vec<KnownPeer>),
    SetFavorite(String, bool, oneshot::Sender<bool>),
    SetReachability(String, Reachability),
    Identity(String, oneshot::Sender<Option<PeerIdentity>>),
    SourceReset(Source),
    Snapshot(oneshot::Sender<Vec<PeerEntry>>),
}

/// The handle. Cloning is cheap; the table stops when the last clone is dropped.
#[derive(Clone)]
pub struct PeerTable {
    commands: mpsc::Sender<Command>,
    changes: broadcast::Sender<PeerChange>,
}

impl PeerTable {
    /// Starts the table for the peer `me` (its own presence is never listed).
    pub fn start(me: PeerId, options: TableOptions) -> PeerTable {
        let (commands, receiver) = mpsc::channel(COMMAND_QUEUE);
        let (changes, _) = broadcast::channel(CHANGE_QUEUE);
        let task = TableTask {
            me: me.to_base58(),
            options,
            peers: HashMap::new(),
            changes: changes.clone(),
        };
        tokio::spawn(task.run(receiver));
        PeerTable { commands, changes }
    }

    /// Merges a presence message heard from `source`. Waits only if the table is backed up.
    pub async fn observe(&self, presence: Presence, source: Source) {
        let _ = self
            .commands
            .send(Command::Observe(Box::new(presence), source))
            .await;
    }

    /// A source lost its history (a hub's `reset`): what only it said will expire.
    pub async fn source_reset(&self, source: Source) {
        let _ = self.commands.send(Command::SourceReset(source)).await;
    }

    /// Lists peers known from an earlier run (offline until heard of), unless already known.
    pub async fn restore(&self, peers: Vec<KnownPeer>) {
        let _ = self.commands.send(Command::Restore(peers)).await;
    }

    /// Marks or unmarks a known peer as a favourite; false when the peer is not known.
    pub async fn set_favorite(&self, peer_id: &str, favorite: bool) -> bool {
        let (reply, answer) = oneshot::channel();
        let command = Command::SetFavorite(peer_id.to_owned(), favorite, reply);
        if self.commands.send(command).await.is_err() {
            return false;
        }
        answer.await.unwrap_or(false)
    }

    /// Records the result of a reachability probe.
    pub async fn set_reachability(&self, peer_id: &str, reachability: Reachability) {
        let command = Command::SetReachability(peer_id.to_owned(), reachability);
        let _ = self.commands.send(command).await;
    }

    /// The label of a known peer and its email if a hub vouched for it.
    pub async fn identity(&self, peer_id: &str) -> Option<PeerIdentity> {
        let (reply, answer) = oneshot::channel();
        let command = Command::Identity(peer_id.to_owned(), reply);
        self.commands.send(command).await.ok()?;
        answer.await.ok().flatten()
    }

    /// Every known peer, online first, then by label.
    pub async fn snapshot(&self) -> Vec<PeerEntry> {
        let (reply, answer) = oneshot::channel();
        if self.commands.send(Command::Snapshot(reply)).await.is_err() {
            return Vec::new();
        }
        answer.await.unwrap_or_default()
    }

    /// Changes from now on.
    pub fn watch(&self) -> broadcast::Receiver<PeerChange> {
        self.changes.subscribe()
    }
}

struct TableTask {
    me: String,
    options: TableOptions,
    peers: HashMap<String, PeerEntry>,
    changes: broadcast::Sender<PeerChange>,
}

impl TableTask {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut tick = tokio::time::interval(self.options.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Observe(presence, source)) => self.observe(*presence, source),
                    Some(Command::Restore(peers)) => self.restore(peers),
                    Some(Command::SetFavorite(peer_id, favorite, reply)) => {
                        let known = self.update(&peer_id, |entry| entry.favorite = favorite);
                        let _ = reply.send(known);
                    }
                    Some(Command::Identity(peer_id, reply)) => {
                        let identity = self.peers.get(&peer_id).map(|entry| PeerIdentity {
                            label: entry.label.clone(),
                            verified_email: (entry.verified && !entry.email.is_empty())
                                .then(|| entry.email.clone()),
                        });
                        let _ = reply.send(identity);
                    }
                    Some(Command::SetReachability(peer_id, reachability)) => {
                        self.update(&peer_id, |entry| entry.reachability = reachability);
                    }
                    Some(Command::SourceReset(source)) => {
                        for entry in self.peers.values_mut() {
                            entry.sources.remove(&source);
                        }
                    }
                    Some(Command::Snapshot(reply)) => {
                        let _ = reply.send(self.snapshot());
                    }
                    None => return,
                },
                _ = tick.tick() => self.expire(),
            }
        }
    }

    fn observe(&mut self, presence: Presence, source: Source) {
        if presence.peer_id == self.me || presence.kind == PresenceType::Punch {
            return;
        }
        let ts = presence.ts.unwrap_or(0);
        if let Some(entry) = self.peers.get(&presence.peer_id)
            && ts != 0
            && ts < entry.ts
        {
            return;
        }
        let from_hub = matches!(source, Source::Hub(_));
        if presence.kind == PresenceType::Offline {
            if let Some(entry) = self.peers.get_mut(&presence.peer_id)
                && entry.state == PeerState::Online
            {
                entry.state = PeerState::Offline;
                entry.ts = entry.ts.max(ts);
                entry.last_news = Instant::now();
                tracing::info!(peer.id = %entry.peer_id, label = %entry.label, "peer offline");
                let _ = self.changes.send(PeerChange::Offline(presence.peer_id));
            }
            return;
        }
        let entry = self
            .peers
            .entry(presence.peer_id.clone())
            .or_insert_with(|| PeerEntry {
                peer_id: presence.peer_id.clone(),
                label: String::new(),
                email: String::new(),
                avatar_hash: None,
                active_template: None,
                addrs: Vec::new(),
                verified: false,
                state: PeerState::Online,
                favorite: false,
                reachability: Reachability::Unknown,
                sources: BTreeSet::new(),
                ts,
                last_news: Instant::now(),
            });
        let before = entry.clone();
        entry.label = presence.content.unwrap_or_default();
        entry.email = presence.email.unwrap_or_default();
        entry.avatar_hash = presence.avatar_hash;
        entry.active_template = presence.active_template;
        entry.addrs = presence.addrs.unwrap_or_default();
        if from_hub {
            entry.verified = presence.verified == Some(true);
        }
        entry.state = PeerState::Online;
        entry.ts = entry.ts.max(ts);
        entry.last_news = Instant::now();
        if before.state != PeerState::Online || before.sources.is_empty() {
            let via = match &source {
                Source::Gossip => "LAN",
                Source::Hub(url) => url.as_str(),
            };
            tracing::info!(peer.id = %entry.peer_id, label = %entry.label, via = %via, "peer online");
        }
        entry.sources.insert(source);
        let changed = PeerEntry {
            ts: before.ts,
            last_news: before.last_news,
            ..entry.clone()
        } != before
            || before.sources.is_empty();
        if changed {
            let _ = self.changes.send(PeerChange::Updated(entry.clone()));
        }
    }

    fn restore(&mut self, peers: Vec<KnownPeer>) {
        for known in peers {
            if known.peer_id == self.me || self.peers.contains_key(&known.peer_id) {
                continue;
            }
            let entry = PeerEntry {
                peer_id: known.peer_id.clone(),
                label: known.label,
                email: known.email,
                avatar_hash: known.avatar_hash,
                active_template: None,
                addrs: known.addrs,
                verified: known.verified,
                state: PeerState::Offline,
                favorite: known.favorite,
                reachability: Reachability::Unknown,
                sources: BTreeSet::new(),
                ts: 0,
                last_news: Instant::now(),
            };
            let _ = self.changes.send(PeerChange::Updated(entry.clone()));
            self.peers.insert(known.peer_id, entry);
        }
    }

    /// Changes one entry and announces it if anything changed; false when the peer is unknown.
    fn update(&mut self, peer_id: &str, change: impl FnOnce(&mut PeerEntry)) -> bool {
        let Some(entry) = self.peers.get_mut(peer_id) else {
            return false;
        };
        let before = entry.clone();
        change(entry);
        if *entry != before {
            let _ = self.changes.send(PeerChange::Updated(entry.clone()));
        }
        true
    }

    fn expire(&mut self) {
        let ttl = self.options.ttl;
        let remove_after = ttl + self.options.grace;
        let mut removed = Vec::new();
        for entry in self.peers.values_mut() {
            let quiet = entry.last_news.elapsed();
            if entry.state == PeerState::Online && quiet >= ttl {
                entry.state = PeerState::Offline;
                tracing::info!(
                    peer.id = %entry.peer_id,
                    label = %entry.label,
                    "peer offline (no news within the TTL)"
                );
                let _ = self
                    .changes
                    .send(PeerChange::Offline(entry.peer_id.clone()));
            } else if entry.state == PeerState::Offline && quiet >= remove_after && !entry.favorite
            {
                removed.push(entry.peer_id.clone());
            }
        }
        for peer_id in removed {
            self.peers.remove(&peer_id);
            let _ = self.changes.send(PeerChange::Removed(peer_id));
        }
    }

    fn snapshot(&self) -> Vec<PeerEntry> {
        let mut peers: Vec<PeerEntry> = self.peers.values().cloned().collect();
        peers.sort_by(|a, b| {
            (a.state != PeerState::Online, &a.label, &a.peer_id).cmp(&(
                b.state != PeerState::Online,
                &b.label,
                &b.peer_id,
            ))
        });
        peers
    }
}
