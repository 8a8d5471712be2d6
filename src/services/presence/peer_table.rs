//! The PeerTable: one view of every peer this peer has heard of, merged from all sources — the
//! LAN gossip, each hub's stream — as an actor.
//!
//! Each source keeps a peer alive by its own rule, and a peer is `online` while any source does:
//! - the LAN (gossip) by heartbeats: the peer's own signed messages, each newer than the last
//!   (by its `ts`) and within [`MAX_GOSSIP_SKEW_MS`] of our clock, keep it for `ttl`;
//! - a hub by its stream: the peer stays listed until that hub says `offline` (the hub expires
//!   peers itself and says so). When the hub link is lost or the hub cannot resume its stream,
//!   what it said is held for a while ([`TableOptions::hold`]) unless the hub says it again.
//!
//! A peer no source keeps is `offline` (its old reachability forgotten) and removed after a
//! further grace period. Only a hub may say a peer is `verified`, and only a verified email
//! leaves the table. What a peer announces (label, addresses, …) is taken from the newest message
//! by its own `ts`, whatever source brings it. Changes are broadcast so the console can update
//! live.
//!
//! Favourites are never removed, only marked offline; last-known peers restored at start are
//! listed offline until they are heard of again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use libp2p_identity::PeerId;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::services::hub::presence::{Presence, PresenceType};

/// Commands waiting for the table.
const COMMAND_QUEUE: usize = 1024;
/// Changes a slow watcher may fall behind before it must take a new snapshot.
const CHANGE_QUEUE: usize = 256;
/// Gossip further than this from our clock (either way) is not news: a captured message
/// replayed later keeps nobody alive. Hubs apply the same window.
pub const MAX_GOSSIP_SKEW_MS: i64 = crate::services::hub::presence::MAX_CLOCK_SKEW_MS;

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
    /// The email a hub vouched for (`verified`); empty otherwise.
    pub email: String,
    pub avatar_hash: Option<String>,
    pub active_template: Option<String>,
    pub addrs: Vec<String>,
    /// A hub vouched for this peer.
    pub verified: bool,
    pub state: PeerState,
    pub favorite: bool,
    /// Cleared when the peer goes offline: an old probe says nothing about a peer that left.
    pub reachability: Reachability,
    /// The sources that keep the peer online now (none when offline).
    pub sources: BTreeSet<Source>,
    /// The peer's own timestamp of the newest message (ms).
    pub ts: i64,
}

/// What keeps one peer alive, source by source.
#[derive(Debug, Default)]
struct Liveness {
    /// Until when the last LAN heartbeat keeps the peer.
    gossip_until: Option<Instant>,
    /// The newest `ts` the LAN brought (each heartbeat must be newer).
    gossip_ts: i64,
    /// The hubs listing the peer: `None` while the hub's word holds, or until when it is held
    /// without confirmation (the link was lost, or the hub could not resume its stream).
    hubs: BTreeMap<String, Option<Instant>>,
    /// When the peer went offline (for removal after the grace).
    offline_since: Option<Instant>,
}

impl Liveness {
    fn offline(now: Instant) -> Self {
        Liveness {
            offline_since: Some(now),
            ..Liveness::default()
        }
    }

    /// Drops what no longer holds at `now`.
    fn prune(&mut self, now: Instant) {
        if self.gossip_until.is_some_and(|until| until <= now) {
            self.gossip_until = None;
        }
        self.hubs
            .retain(|_, held_until| held_until.is_none_or(|until| until > now));
    }

    fn sources(&self) -> BTreeSet<Source> {
        let mut sources: BTreeSet<Source> = self
            .hubs
            .keys()
            .map(|url| Source::Hub(url.clone()))
            .collect();
        if self.gossip_until.is_some() {
            sources.insert(Source::Gossip);
        }
        sources
    }
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
    /// How long a hub's word holds while the hub cannot confirm it (link lost, stream reset).
    /// A peer sets it to the TTL but at least 30 s, which covers a hub's 15 s keep-alive that
    /// tells whether a cut stream was resumed.
    pub hold: Duration,
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
    SourceUnconfirmed(Source),
    SourceConfirmed(Source),
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
            live: HashMap::new(),
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

    /// A source can no longer confirm what it said — the hub link was lost, or the hub could not
    /// resume its stream: its word holds for one TTL unless it says it again.
    pub async fn source_unconfirmed(&self, source: Source) {
        let _ = self.commands.send(Command::SourceUnconfirmed(source)).await;
    }

    /// A source's stream resumed where it was cut: what it said before holds again.
    pub async fn source_confirmed(&self, source: Source) {
        let _ = self.commands.send(Command::SourceConfirmed(source)).await;
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

    /// One known peer.
    pub async fn entry(&self, peer_id: &str) -> Option<PeerEntry> {
        self.snapshot()
            .await
            .into_iter()
            .find(|entry| entry.peer_id == peer_id)
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
    live: HashMap<String, Liveness>,
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
                        // A probe that ends after the peer left says nothing about it now.
                        self.update(&peer_id, |entry| {
                            if entry.state == PeerState::Online {
                                entry.reachability = reachability;
                            }
                        });
                    }
                    Some(Command::SourceUnconfirmed(source)) => self.unconfirm(&source),
                    Some(Command::SourceConfirmed(Source::Hub(url))) => {
                        for live in self.live.values_mut() {
                            if let Some(held) = live.hubs.get_mut(&url) {
                                *held = None;
                            }
                        }
                    }
                    Some(Command::SourceConfirmed(Source::Gossip)) => {}
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
        let now = Instant::now();
        let ts = presence.ts.unwrap_or(0);
        let offline = presence.kind == PresenceType::Offline;
        if !self.peers.contains_key(&presence.peer_id) && offline {
            return;
        }
        if source == Source::Gossip && ts != 0 {
            // The peer's own word, in its own order: only something newer and fresh is news.
            let newest = self.live.get(&presence.peer_id).map_or(0, |l| l.gossip_ts);
            if ts <= newest
                || ts.abs_diff(crate::services::hub::unix_ms()) > MAX_GOSSIP_SKEW_MS.unsigned_abs()
            {
                return;
            }
        }
        let live = self
            .live
            .entry(presence.peer_id.clone())
            .or_insert_with(|| Liveness::offline(now));
        match &source {
            Source::Gossip => {
                live.gossip_ts = live.gossip_ts.max(ts);
                live.gossip_until = (!offline).then(|| now + self.options.ttl);
            }
            // A hub's stream is in the hub's order; the hub says when a peer is gone.
            Source::Hub(url) => {
                if offline {
                    live.hubs.remove(url);
                } else {
                    live.hubs.insert(url.clone(), None);
                }
            }
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
                state: PeerState::Offline,
                favorite: false,
                reachability: Reachability::Unknown,
                sources: BTreeSet::new(),
                ts: 0,
            });
        let before = entry.clone();
        // What the peer announces comes from its newest message, whichever source brings it.
        if !offline && (ts == 0 || ts >= entry.ts) {
            entry.label = presence.content.unwrap_or_default();
            entry.avatar_hash = presence.avatar_hash;
            entry.active_template = presence.active_template;
            entry.addrs = presence.addrs.unwrap_or_default();
            if matches!(source, Source::Hub(_)) {
                entry.verified = presence.verified == Some(true);
                // Only a vouched-for email is kept; gossip never changes it.
                entry.email = match entry.verified {
                    true => presence.email.unwrap_or_default(),
                    false => String::new(),
                };
            }
        }
        entry.ts = entry.ts.max(ts);
        let via = match &source {
            Source::Gossip => "LAN",
            Source::Hub(url) => url.as_str(),
        };
        self.settle(&presence.peer_id, before, via, now);
    }

    /// Sets the peer's state and sources from its liveness and announces what changed.
    fn settle(&mut self, peer_id: &str, before: PeerEntry, via: &str, now: Instant) {
        let (Some(entry), Some(live)) = (self.peers.get_mut(peer_id), self.live.get_mut(peer_id))
        else {
            return;
        };
        live.prune(now);
        entry.sources = live.sources();
        let online = !entry.sources.is_empty();
        match (before.state, online) {
            (PeerState::Offline, true) => {
                entry.state = PeerState::Online;
                live.offline_since = None;
                tracing::info!(peer.id = %entry.peer_id, label = %entry.label, via = %via, "peer online");
            }
            (PeerState::Online, false) => {
                entry.state = PeerState::Offline;
                entry.reachability = Reachability::Unknown;
                live.offline_since = Some(now);
                tracing::info!(peer.id = %entry.peer_id, label = %entry.label, "peer offline");
                let _ = self
                    .changes
                    .send(PeerChange::Offline(entry.peer_id.clone()));
            }
            _ => {}
        }
        let changed = PeerEntry {
            ts: before.ts,
            ..entry.clone()
        } != before;
        if changed {
            let _ = self.changes.send(PeerChange::Updated(entry.clone()));
        }
    }

    fn restore(&mut self, peers: Vec<KnownPeer>) {
        let now = Instant::now();
        for known in peers {
            if known.peer_id == self.me || self.peers.contains_key(&known.peer_id) {
                continue;
            }
            let entry = PeerEntry {
                peer_id: known.peer_id.clone(),
                label: known.label,
                email: if known.verified {
                    known.email
                } else {
                    String::new()
                },
                avatar_hash: known.avatar_hash,
                active_template: None,
                addrs: known.addrs,
                verified: known.verified,
                state: PeerState::Offline,
                favorite: known.favorite,
                reachability: Reachability::Unknown,
                sources: BTreeSet::new(),
                ts: 0,
            };
            let _ = self.changes.send(PeerChange::Updated(entry.clone()));
            self.live
                .insert(known.peer_id.clone(), Liveness::offline(now));
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

    /// `source` can no longer confirm what it said: its word holds for a while
    /// ([`TableOptions::hold`]), unless it says it again.
    fn unconfirm(&mut self, source: &Source) {
        let held_until = Instant::now() + self.options.hold;
        match source {
            Source::Gossip => {}
            Source::Hub(url) => {
                for live in self.live.values_mut() {
                    if let Some(held) = live.hubs.get_mut(url) {
                        held.get_or_insert(held_until);
                    }
                }
            }
        }
    }

    fn expire(&mut self) {
        let now = Instant::now();
        let remove_after = self.options.grace;
        let mut settle = Vec::new();
        let mut removed = Vec::new();
        for (peer_id, live) in &self.live {
            let Some(entry) = self.peers.get(peer_id) else {
                continue;
            };
            match (entry.state, live.offline_since) {
                (PeerState::Online, _) => {
                    let lapsed = live.gossip_until.is_some_and(|until| until <= now)
                        || live
                            .hubs
                            .values()
                            .any(|held| held.is_some_and(|until| until <= now));
                    if lapsed {
                        settle.push(peer_id.clone());
                    }
                }
                (PeerState::Offline, Some(since))
                    if now.duration_since(since) >= remove_after && !entry.favorite =>
                {
                    removed.push(peer_id.clone());
                }
                _ => {}
            }
        }
        for peer_id in settle {
            if let Some(before) = self.peers.get(&peer_id).cloned() {
                self.settle(&peer_id, before, "", now);
            }
        }
        for peer_id in removed {
            self.peers.remove(&peer_id);
            self.live.remove(&peer_id);
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
