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
//!
//! The table is bounded ([`TableOptions::max_peers`]). A peer heard of only second-hand over
//! gossip — relayed by a neighbour, with no hub, favourite, earlier run or connection of its own
//! to vouch for it — is a *stranger*: strangers fill at most [`TableOptions::max_strangers`]
//! entries, are the first to go when room is needed (offline ones first, then the one heard of
//! least recently), are never remembered across restarts, and are logged at DEBUG only. Labels
//! are logged shortened, once per change of state, never per message.
//!
//! Peers are known by their [`PeerId`]. Presence carries it as text, which is read once, where a
//! message enters ([`PeerTable::observe`], or the caller that read it for its own use); a
//! message whose peer ID cannot be read is dropped, logged at DEBUG. The console's JSON shows
//! the base58 text.

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
    /// GossipSub, from the peers this one is connected to (found by mDNS, met through a hub and
    /// connected directly, or dialled).
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
    /// Serialized as its base58 text, as presence carries it.
    #[serde(serialize_with = "serialize_peer_id")]
    pub peer_id: PeerId,
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
    /// Heard of only second-hand over gossip: nothing vouches for the peer (see the module).
    pub stranger: bool,
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
    /// When any source last spoke of the peer (strangers heard of least recently go first).
    heard: Option<Instant>,
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
    Offline(PeerId),
    Removed(PeerId),
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
    /// Peers listed at most (`presence.max_peers`).
    pub max_peers: usize,
    /// Strangers listed at most (`presence.max_gossip_strangers`), within `max_peers`.
    pub max_strangers: usize,
}

impl TableOptions {
    /// The timing a peer uses for `ttl`, with the default bounds.
    pub fn for_ttl(ttl: Duration) -> Self {
        TableOptions {
            ttl,
            grace: ttl * 3,
            tick: Duration::from_millis(500),
            hold: ttl.max(Duration::from_secs(30)),
            max_peers: DEFAULT_MAX_PEERS,
            max_strangers: DEFAULT_MAX_STRANGERS,
        }
    }
}

/// Default of [`TableOptions::max_peers`]: about 20 MB if every peer announces the largest label
/// and addresses a message may carry.
pub const DEFAULT_MAX_PEERS: usize = 2_000;
/// Default of [`TableOptions::max_strangers`].
pub const DEFAULT_MAX_STRANGERS: usize = 500;
/// How much of a label a log line shows.
const LOGGED_LABEL_CHARS: usize = 64;

/// A peer known from an earlier run.
#[derive(Debug, Clone)]
pub struct KnownPeer {
    pub peer_id: PeerId,
    pub label: String,
    pub email: String,
    pub avatar_hash: Option<String>,
    pub addrs: Vec<String>,
    pub verified: bool,
    pub favorite: bool,
}

enum Command {
    /// A message of a peer, from where, and whether something vouches for the peer.
    Observe(PeerId, Box<Presence>, Source, bool),
    Restore(Vec<KnownPeer>),
    SetFavorite(PeerId, bool, oneshot::Sender<bool>),
    SetReachability(PeerId, Reachability),
    Identity(PeerId, oneshot::Sender<Option<PeerIdentity>>),
    SourceUnconfirmed(Source),
    SourceConfirmed(Source),
    Snapshot(oneshot::Sender<Vec<PeerEntry>>),
    Page(usize, usize, oneshot::Sender<PeerPage>),
    Entry(PeerId, oneshot::Sender<Option<PeerEntry>>),
}

/// A slice of the list, in the order of [`PeerTable::snapshot`].
#[derive(Debug, Clone, Default)]
pub struct PeerPage {
    /// How many peers the table lists in all.
    pub total: usize,
    pub peers: Vec<PeerEntry>,
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
            me,
            options,
            peers: HashMap::new(),
            live: HashMap::new(),
            changes: changes.clone(),
        };
        tokio::spawn(task.run(receiver));
        PeerTable { commands, changes }
    }

    /// Merges a presence message heard from `source`, which vouches for the peer (a hub, or
    /// the peer's own word on its own connection), as it came: its peer ID is read here, and a
    /// message whose peer ID cannot be read is dropped. Waits only if the table is backed up.
    pub async fn observe(&self, presence: Presence, source: Source) {
        if let Some(peer_id) = read_peer_id(&presence, &source) {
            self.observe_peer(peer_id, presence, source).await;
        }
    }

    /// [`PeerTable::observe`] for a message whose peer ID, `peer_id`, the caller has read.
    pub async fn observe_peer(&self, peer_id: PeerId, presence: Presence, source: Source) {
        let _ = self
            .commands
            .send(Command::Observe(peer_id, Box::new(presence), source, true))
            .await;
    }

    /// Merges a presence message of `peer_id` a neighbour relayed over gossip: unless `vouched`
    /// (the peer is connected to us, or sent it itself), the peer is a stranger.
    pub async fn observe_gossip(&self, peer_id: PeerId, presence: Presence, vouched: bool) {
        let _ = self
            .commands
            .send(Command::Observe(
                peer_id,
                Box::new(presence),
                Source::Gossip,
                vouched,
            ))
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
    pub async fn set_favorite(&self, peer_id: &PeerId, favorite: bool) -> bool {
        let (reply, answer) = oneshot::channel();
        let command = Command::SetFavorite(*peer_id, favorite, reply);
        if self.commands.send(command).await.is_err() {
            return false;
        }
        answer.await.unwrap_or(false)
    }

    /// Records the result of a reachability probe.
    pub async fn set_reachability(&self, peer_id: &PeerId, reachability: Reachability) {
        let command = Command::SetReachability(*peer_id, reachability);
        let _ = self.commands.send(command).await;
    }

    /// The label of a known peer and its email if a hub vouched for it.
    pub async fn identity(&self, peer_id: &PeerId) -> Option<PeerIdentity> {
        let (reply, answer) = oneshot::channel();
        let command = Command::Identity(*peer_id, reply);
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

    /// `limit` peers from `offset` of the list, and how many it holds.
    pub async fn page(&self, offset: usize, limit: usize) -> PeerPage {
        let (reply, answer) = oneshot::channel();
        if self
            .commands
            .send(Command::Page(offset, limit, reply))
            .await
            .is_err()
        {
            return PeerPage::default();
        }
        answer.await.unwrap_or_default()
    }

    /// One known peer.
    pub async fn entry(&self, peer_id: &PeerId) -> Option<PeerEntry> {
        let (reply, answer) = oneshot::channel();
        let command = Command::Entry(*peer_id, reply);
        self.commands.send(command).await.ok()?;
        answer.await.ok().flatten()
    }

    /// Changes from now on.
    pub fn watch(&self) -> broadcast::Receiver<PeerChange> {
        self.changes.subscribe()
    }
}

struct TableTask {
    me: PeerId,
    options: TableOptions,
    peers: HashMap<PeerId, PeerEntry>,
    live: HashMap<PeerId, Liveness>,
    changes: broadcast::Sender<PeerChange>,
}

impl TableTask {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut tick = tokio::time::interval(self.options.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Observe(peer_id, presence, source, vouched)) => {
                        self.observe(peer_id, *presence, source, vouched)
                    }
                    Some(Command::Restore(peers)) => self.restore(peers),
                    Some(Command::SetFavorite(peer_id, favorite, reply)) => {
                        let known = self.update(&peer_id, |entry| {
                            entry.favorite = favorite;
                            // The owner vouches for a favourite.
                            entry.stranger &= !favorite;
                        });
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
                    Some(Command::Page(offset, limit, reply)) => {
                        let _ = reply.send(self.page(offset, limit));
                    }
                    Some(Command::Entry(peer_id, reply)) => {
                        let _ = reply.send(self.peers.get(&peer_id).cloned());
                    }
                    None => return,
                },
                _ = tick.tick() => self.expire(),
            }
        }
    }

    fn observe(&mut self, peer_id: PeerId, presence: Presence, source: Source, vouched: bool) {
        if peer_id == self.me || presence.kind == PresenceType::Punch {
            return;
        }
        let now = Instant::now();
        let ts = presence.ts.unwrap_or(0);
        let offline = presence.kind == PresenceType::Offline;
        if !self.peers.contains_key(&peer_id) && offline {
            return;
        }
        if source == Source::Gossip && ts != 0 {
            // The peer's own word, in its own order: only something newer and fresh is news.
            let newest = self.live.get(&peer_id).map_or(0, |l| l.gossip_ts);
            if ts <= newest
                || ts.abs_diff(crate::services::hub::unix_ms()) > MAX_GOSSIP_SKEW_MS.unsigned_abs()
            {
                return;
            }
        }
        let vouched = vouched || matches!(source, Source::Hub(_));
        if !self.peers.contains_key(&peer_id) && !self.make_room(vouched) {
            tracing::debug!("the peer list is full; a peer was not listed");
            return;
        }
        let live = self
            .live
            .entry(peer_id)
            .or_insert_with(|| Liveness::offline(now));
        live.heard = Some(now);
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
        let entry = self.peers.entry(peer_id).or_insert_with(|| PeerEntry {
            peer_id,
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
            stranger: true,
        });
        let before = entry.clone();
        // Once vouched for, a peer stays so while it is listed.
        entry.stranger &= !vouched;
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
            Source::Gossip => "gossip",
            Source::Hub(url) => url.as_str(),
        };
        self.settle(peer_id, before, via, now);
    }

    /// Sets the peer's state and sources from its liveness and announces what changed.
    fn settle(&mut self, peer_id: PeerId, before: PeerEntry, via: &str, now: Instant) {
        let (Some(entry), Some(live)) = (self.peers.get_mut(&peer_id), self.live.get_mut(&peer_id))
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
                let label = logged_label(&entry.label);
                if entry.stranger {
                    tracing::debug!(peer.id = %entry.peer_id, label = %label, via = %via, "stranger online");
                } else {
                    tracing::info!(peer.id = %entry.peer_id, label = %label, via = %via, "peer online");
                }
            }
            (PeerState::Online, false) => {
                entry.state = PeerState::Offline;
                entry.reachability = Reachability::Unknown;
                live.offline_since = Some(now);
                let label = logged_label(&entry.label);
                if entry.stranger {
                    tracing::debug!(peer.id = %entry.peer_id, label = %label, "stranger offline");
                } else {
                    tracing::info!(peer.id = %entry.peer_id, label = %label, "peer offline");
                }
                let _ = self.changes.send(PeerChange::Offline(entry.peer_id));
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
                peer_id: known.peer_id,
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
                stranger: false,
            };
            if !self.make_room(true) {
                break;
            }
            let _ = self.changes.send(PeerChange::Updated(entry.clone()));
            self.live.insert(known.peer_id, Liveness::offline(now));
            self.peers.insert(known.peer_id, entry);
        }
    }

    /// Changes one entry and announces it if anything changed; false when the peer is unknown.
    fn update(&mut self, peer_id: &PeerId, change: impl FnOnce(&mut PeerEntry)) -> bool {
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
                        settle.push(*peer_id);
                    }
                }
                (PeerState::Offline, Some(since))
                    if now.duration_since(since) >= remove_after && !entry.favorite =>
                {
                    removed.push(*peer_id);
                }
                _ => {}
            }
        }
        for peer_id in settle {
            if let Some(before) = self.peers.get(&peer_id).cloned() {
                self.settle(peer_id, before, "", now);
            }
        }
        for peer_id in removed {
            self.peers.remove(&peer_id);
            self.live.remove(&peer_id);
            let _ = self.changes.send(PeerChange::Removed(peer_id));
        }
    }

    /// Makes room for one more peer, a stranger unless `vouched`; false when there is none to
    /// make. Strangers go first (offline ones, then the one heard of least recently); for a
    /// vouched peer, when no stranger is left, an offline peer that is not a favourite.
    fn make_room(&mut self, vouched: bool) -> bool {
        let strangers = self.peers.values().filter(|e| e.stranger).count();
        let stranger_full = !vouched && strangers >= self.options.max_strangers;
        if !stranger_full && self.peers.len() < self.options.max_peers {
            return true;
        }
        let heard = |id: &PeerId| self.live.get(id).and_then(|live| live.heard);
        let stranger = self
            .peers
            .values()
            .filter(|e| e.stranger && !e.favorite)
            .min_by_key(|e| (e.state == PeerState::Online, heard(&e.peer_id)))
            .map(|e| e.peer_id);
        let victim = match (stranger, vouched) {
            (Some(id), _) => Some(id),
            (None, true) => self
                .peers
                .values()
                .filter(|e| e.state == PeerState::Offline && !e.favorite)
                .min_by_key(|e| heard(&e.peer_id))
                .map(|e| e.peer_id),
            (None, false) => None,
        };
        let Some(victim) = victim else {
            return false;
        };
        self.peers.remove(&victim);
        self.live.remove(&victim);
        let _ = self.changes.send(PeerChange::Removed(victim));
        true
    }

    /// Every entry in the list's order: online first, then by label.
    fn sorted(&self) -> Vec<&PeerEntry> {
        let mut peers: Vec<&PeerEntry> = self.peers.values().collect();
        // Peers of the same state and label in the order of their IDs' text, as the list has
        // always shown them: a `PeerId`'s own order (by its bytes) is not always the same.
        peers.sort_by(|a, b| {
            (a.state != PeerState::Online, &a.label)
                .cmp(&(b.state != PeerState::Online, &b.label))
                .then_with(|| a.peer_id.to_base58().cmp(&b.peer_id.to_base58()))
        });
        peers
    }

    fn snapshot(&self) -> Vec<PeerEntry> {
        self.sorted().into_iter().cloned().collect()
    }

    fn page(&self, offset: usize, limit: usize) -> PeerPage {
        PeerPage {
            total: self.peers.len(),
            peers: self
                .sorted()
                .into_iter()
                .skip(offset)
                .take(limit)
                .cloned()
                .collect(),
        }
    }
}

/// The peer ID of a presence message from `source`, read from its text; `None`, logged, when it
/// is not one (the message is then dropped).
pub fn read_peer_id(presence: &Presence, source: &Source) -> Option<PeerId> {
    match presence.peer_id.parse::<PeerId>() {
        Ok(peer_id) => Some(peer_id),
        Err(err) => {
            let text = logged_label(&presence.peer_id);
            tracing::debug!(source = ?source, "dropped presence of {text:?}: not a peer ID: {err}");
            None
        }
    }
}

/// A `PeerId` as its base58 text, the form presence, pages and `data.db` carry.
fn serialize_peer_id<S: serde::Serializer>(
    peer_id: &PeerId,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(peer_id)
}

/// A label as a log line shows it: at most [`LOGGED_LABEL_CHARS`] characters.
fn logged_label(label: &str) -> std::borrow::Cow<'_, str> {
    match label.char_indices().nth(LOGGED_LABEL_CHARS) {
        Some((end, _)) => format!("{}…", &label[..end]).into(),
        None => label.into(),
    }
}
