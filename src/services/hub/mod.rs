//! The rendezvous hub: a registry of online peers and a live, replayable stream of presence
//! events.
//!
//! Every accepted message becomes one [`HubEvent`], serialized once (see [`event`]), kept in
//! bounded rings for `Last-Event-ID` replay (changes and heartbeats apart, see [`ring`]) and
//! offered to subscribers through two broadcast channels: every event, and changes only (no
//! pure heartbeats). A subscriber that falls more than the channel's capacity behind is cut off
//! and resumes from the rings; it never slows the others.
//!
//! The registry lives behind one mutex rather than in an actor task: each publish holds it for a
//! few microseconds (signatures are checked before it is taken) and never across an `.await`,
//! which keeps the hot path free of a channel round trip.
//!
//! This module holds the registry and what changes it (publishes, expiry, bans); [`stream`]
//! decides where a new subscriber starts, [`snapshot`] reads the registry for it page by page,
//! [`shared`] restores, writes and merges the registry through a database, and [`options`]
//! says how the hub behaves.

pub mod event;
pub mod limits;
pub mod metrics;
mod options;
pub mod persist;
pub mod presence;
mod ring;
mod shared;
pub mod snapshot;
mod stream;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use libp2p_identity::PeerId;
use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::store::hub::{PeerWrite, TOMBSTONE_MS};
use event::encode_event;
pub use event::{Audience, Frames, HubEvent};
use limits::{PublishLimiter, StreamCaps, StreamRefused, StreamSlot};
use metrics::{Gauges, HubMetrics};
pub use options::{
    DEFAULT_RING_CAPACITY, DEFAULT_RING_FLOOR, DEFAULT_SUBSCRIBER_QUEUE, HubOptions,
};
use persist::Persistence;
use presence::{
    CheckedPresence, MAX_CLOCK_SKEW_MS, Presence, PresenceError, PresenceType, short_peer_id,
};
use shared::{Hold, SharedPosition};
pub use stream::{Replay, ReplayPage, Subscription};

/// Joins and leaves remembered for the dashboard.
const RECENT_CHANGES: usize = 50;
/// Longest a publish waits for its commit before it is acknowledged anyway (see
/// [`Hub::committed`]).
pub const COMMIT_WAIT: Duration = Duration::from_millis(500);

/// What subscribers receive: an event, or a word from the hub itself. Keep-alives and the
/// shutdown notice travel through the same channel as events so an idle subscriber waits on
/// exactly one thing and owns no timer.
#[derive(Debug, Clone)]
pub enum Signal {
    Event(Arc<HubEvent>),
    /// Time for a keep-alive comment (every [`HubOptions::keepalive`]).
    KeepAlive,
    /// The hub is stopping: tell the client to reconnect, then close.
    Shutdown,
}

/// A peer as the hub currently knows it.
#[derive(Debug, Clone, Serialize)]
pub struct PeerRecord {
    /// The last accepted message, with `signed` and `verified` set by the hub.
    pub presence: Presence,
    pub signed: bool,
    pub verified: bool,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    #[serde(skip)]
    expires: Instant,
    /// The WebSocket session that carried the last message, if any.
    #[serde(skip)]
    session: Option<u64>,
    /// The database version of the row holding this state; `None` until this instance's
    /// write of it is committed.
    #[serde(skip)]
    version: Option<i64>,
    /// The database version at which what the peer announces last changed (or it came
    /// online); `None` while such a change is not yet committed. A stream that resumes from a
    /// version hears only of the peers whose announcement changed since.
    #[serde(skip)]
    changed_version: Option<i64>,
    /// This state as snapshots send it, encoded when a snapshot first needs it.
    #[serde(skip)]
    snapshot: Option<Arc<HubEvent>>,
    /// The state came from the database — another instance took it, or this one before a
    /// restart — not from a message to this instance: while the database cannot be read,
    /// silence from such a peer says nothing about it, and it is not expired.
    #[serde(skip)]
    from_database: bool,
}

/// A join or leave, for the dashboard.
#[derive(Debug, Clone, Serialize)]
pub struct RecentChange {
    pub ts_ms: i64,
    pub kind: PresenceType,
    pub peer_id: String,
    pub label: String,
}

/// The hub. Cloning is cheap; all clones share one registry.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    options: HubOptions,
    epoch: String,
    state: Mutex<HubState>,
    all: broadcast::Sender<Signal>,
    changes: broadcast::Sender<Signal>,
    metrics: HubMetrics,
    limiter: PublishLimiter,
    streams: Arc<StreamCaps>,
    shutdown: watch::Sender<bool>,
    sessions: std::sync::atomic::AtomicU64,
    persistence: std::sync::OnceLock<Arc<Persistence>>,
}

struct HubState {
    peers: BTreeMap<PeerId, PeerRecord>,
    ring: ring::ReplayRing,
    next_offset: u64,
    /// Last accepted `ts` per peer, kept after the peer leaves so old messages cannot replay.
    last_ts: HashMap<PeerId, (i64, Instant)>,
    bans: HashMap<PeerId, Ban>,
    recent: VecDeque<RecentChange>,
    /// With a shared database: how far this instance has read it, and what left since.
    shared: Option<SharedPosition>,
}

/// A peer refused until `until`.
struct Ban {
    until: Instant,
    /// Whether the peer's first refused publish was logged; later ones, every heartbeat of a
    /// peer that keeps trying, are not.
    refusal_logged: bool,
}

impl Ban {
    fn until(until: Instant) -> Self {
        Ban {
            until,
            refusal_logged: false,
        }
    }
}

/// A join, leave or refusal for the log, written once the registry lock is released so that a
/// slow log sink never holds up publishes.
struct PeerNote {
    peer: String,
    label: String,
    what: &'static str,
}

impl PeerNote {
    fn new(presence: &Presence, what: &'static str) -> Self {
        PeerNote {
            peer: short_peer_id(&presence.peer_id),
            label: label_for_log(presence),
            what,
        }
    }

    fn log(&self) {
        tracing::info!(peer = %self.peer, label = ?self.label, "{}", self.what);
    }
}

/// A peer's label cut to a length that suits a log line.
fn label_for_log(presence: &Presence) -> String {
    const MAX_CHARS: usize = 64;
    let label = presence.content.as_deref().unwrap_or("");
    match label.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &label[..cut]),
        None => label.to_owned(),
    }
}

impl Hub {
    /// Creates a hub and starts its expiry task on the current Tokio runtime.
    pub fn start(options: HubOptions) -> Hub {
        let (all, _) = broadcast::channel(options.subscriber_queue.max(1));
        let (changes, _) = broadcast::channel(options.subscriber_queue.max(1));
        let (shutdown, _) = watch::channel(false);
        let hub = Hub {
            inner: Arc::new(HubInner {
                epoch: format!("{:x}", rand::random::<u64>() >> 16),
                state: Mutex::new(HubState {
                    peers: BTreeMap::new(),
                    ring: ring::ReplayRing::new(options.ring_capacity, options.ring_floor),
                    next_offset: 1,
                    last_ts: HashMap::new(),
                    bans: HashMap::new(),
                    recent: VecDeque::with_capacity(RECENT_CHANGES),
                    shared: None,
                }),
                all,
                changes,
                metrics: HubMetrics::default(),
                limiter: PublishLimiter::new(options.publish_burst, options.publish_per_second),
                streams: Arc::new(StreamCaps::new(
                    options.max_streams,
                    options.max_streams_per_ip,
                )),
                shutdown,
                sessions: std::sync::atomic::AtomicU64::new(1),
                persistence: std::sync::OnceLock::new(),
                options,
            }),
        };
        tokio::spawn(sweep(Arc::downgrade(&hub.inner)));
        hub
    }

    pub fn options(&self) -> &HubOptions {
        &self.inner.options
    }

    /// Changes with every start, so subscribers notice a restart and resynchronize.
    pub fn epoch(&self) -> &str {
        &self.inner.epoch
    }

    pub fn metrics(&self) -> &HubMetrics {
        &self.inner.metrics
    }

    /// Takes a publish token for `ip`.
    pub fn check_rate(&self, ip: IpAddr) -> Result<(), PresenceError> {
        self.inner.limiter.check(ip).map_err(|wait| {
            self.inner.metrics.reject("rate_limited");
            PresenceError::RateLimited {
                retry_after_seconds: wait.as_secs_f64().ceil().max(1.0) as u64,
            }
        })
    }

    /// Parses, checks and applies one presence body.
    pub fn publish(&self, body: &[u8]) -> Result<CheckedPresence, PresenceError> {
        let checked = Presence::parse_and_check(body).inspect_err(|e| self.note_reject(e))?;
        self.apply(checked.clone())
            .inspect_err(|e| self.note_reject(e))?;
        Ok(checked)
    }

    /// Counts and logs a refused message.
    pub fn note_reject(&self, error: &PresenceError) {
        self.inner.metrics.reject(error.reason());
        // A banned peer's first try is logged by `apply`; its every heartbeat after that is not.
        if !matches!(error, PresenceError::Banned { .. }) {
            tracing::debug!(reason = error.reason(), "presence refused: {error}");
        }
    }

    /// Applies a message that passed [`Presence::parse_and_check`]: policy, replay and clock
    /// checks, then the registry update and the event.
    pub fn apply(&self, checked: CheckedPresence) -> Result<(), PresenceError> {
        self.apply_from(checked, None)
    }

    /// Like [`Hub::apply`], for a message that arrived on the WebSocket `session`: closing that
    /// session later takes the peer offline (see [`Hub::disconnect_session`]).
    pub fn apply_from(
        &self,
        checked: CheckedPresence,
        session: Option<u64>,
    ) -> Result<(), PresenceError> {
        let CheckedPresence {
            mut presence,
            peer_id,
            signed,
        } = checked;
        if !signed && !self.inner.options.allow_unsigned {
            return Err(PresenceError::Unsigned);
        }
        let now = Instant::now();
        let now_ms = unix_ms();
        let mut state = self.lock();

        if let Some(ban) = state.bans.get_mut(&peer_id)
            && ban.until > now
        {
            let first_try = !std::mem::replace(&mut ban.refusal_logged, true);
            let seconds = (ban.until - now).as_secs().max(1);
            drop(state);
            if first_try {
                PeerNote::new(
                    &presence,
                    "a banned peer tried to publish; refused until the ban ends",
                )
                .log();
            }
            return Err(PresenceError::Banned {
                peer: presence.peer_id,
                seconds,
            });
        }
        let existing = state.peers.get(&peer_id);
        if !signed && existing.is_some_and(|p| p.signed) {
            return Err(PresenceError::Downgrade(presence.peer_id));
        }
        match presence.ts {
            Some(ts) => {
                if signed && ts.abs_diff(now_ms) > MAX_CLOCK_SKEW_MS.unsigned_abs() {
                    return Err(PresenceError::ClockSkew { ts, now: now_ms });
                }
                if let Some((last, _)) = state.last_ts.get(&peer_id)
                    && ts <= *last
                {
                    return Err(PresenceError::Replay { ts, last: *last });
                }
                state.last_ts.insert(peer_id, (ts, now));
            }
            None => presence.ts = Some(now_ms),
        }

        presence.signed = Some(signed);
        presence.verified = Some(false);
        self.inner
            .metrics
            .publishes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);

        if presence.kind == PresenceType::Offline {
            let gone = state.peers.remove(&peer_id);
            if let Some(gone) = &gone {
                state.remember(now_ms, PresenceType::Offline, &gone.presence);
                state.depart(peer_id, now_ms, gone);
            }
            self.emit(&mut state, &presence, true, now);
            self.persist(|| PeerWrite::Offline {
                peer_id: presence.peer_id.clone(),
                at_ms: now_ms,
            });
            drop(state);
            if let Some(gone) = gone {
                PeerNote::new(&gone.presence, "peer went offline").log();
            }
            return Ok(());
        }

        let mut joined = false;
        let change = match state.peers.get_mut(&peer_id) {
            Some(record) => {
                let change = !record.presence.same_announcement(&presence);
                record.presence = presence.clone();
                record.signed = signed;
                record.last_seen_ms = now_ms;
                record.expires = now + self.inner.options.ttl;
                record.session = session;
                record.version = None;
                if change {
                    record.changed_version = None;
                }
                record.snapshot = None;
                record.from_database = false;
                change
            }
            None => {
                joined = true;
                state.remember(now_ms, PresenceType::Online, &presence);
                state.arrive(&peer_id);
                state.peers.insert(
                    peer_id,
                    PeerRecord {
                        presence: presence.clone(),
                        signed,
                        verified: false,
                        first_seen_ms: now_ms,
                        last_seen_ms: now_ms,
                        expires: now + self.inner.options.ttl,
                        session,
                        version: None,
                        changed_version: None,
                        snapshot: None,
                        from_database: false,
                    },
                );
                true
            }
        };
        let event = self.emit(&mut state, &presence, change, now);
        if let Some(record) = state.peers.get(&peer_id) {
            let ttl_ms = self.inner.options.ttl.as_millis() as i64;
            self.persist(|| PeerWrite::Upsert(record.to_row(Some(&event), now_ms + ttl_ms)));
        }
        drop(state);
        if joined {
            PeerNote::new(&presence, "peer online").log();
        }
        Ok(())
    }

    /// Hands a change to the database writer, when there is a database.
    fn persist(&self, write: impl FnOnce() -> PeerWrite) {
        if let Some(persistence) = self.inner.persistence.get() {
            persistence.enqueue(write());
        }
    }

    /// Removes a peer now, as if it had gone offline. Returns false if it was not online.
    pub fn kick(&self, peer_id: &PeerId) -> bool {
        let gone = self.remove_peer(&mut self.lock(), peer_id);
        gone.inspect(|gone| PeerNote::new(&gone.presence, "peer kicked by the administrator").log())
            .is_some()
    }

    /// Takes a peer offline because its WebSocket `session` closed, unless its presence has
    /// since arrived through another connection.
    pub fn disconnect_session(&self, peer_id: &PeerId, session: u64) -> bool {
        let gone = {
            let mut state = self.lock();
            if state.peers.get(peer_id).and_then(|p| p.session) != Some(session) {
                return false;
            }
            self.remove_peer(&mut state, peer_id)
        };
        gone.inspect(|gone| {
            PeerNote::new(&gone.presence, "peer went offline: its WebSocket closed").log()
        })
        .is_some()
    }

    /// A new WebSocket session number, unique within this hub.
    pub fn next_session_id(&self) -> u64 {
        self.inner
            .sessions
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Removes a peer and refuses its publishes for `duration`. Returns once the ban is in the
    /// database (when the hub has one), or with why it is not: then it holds until a restart.
    pub async fn ban(&self, peer_id: PeerId, duration: Duration) -> Result<(), String> {
        let gone = {
            let mut state = self.lock();
            state
                .bans
                .insert(peer_id, Ban::until(Instant::now() + duration));
            self.remove_peer(&mut state, &peer_id)
        };
        tracing::info!(
            peer = %short_peer_id(&peer_id.to_base58()),
            label = ?gone.map(|gone| label_for_log(&gone.presence)).unwrap_or_default(),
            duration = %humantime::format_duration(duration),
            "peer banned"
        );
        self.persist_durably(PeerWrite::Ban {
            peer_id: peer_id.to_base58(),
            until_ms: unix_ms() + duration.as_millis() as i64,
        })
        .await
    }

    /// Lifts a ban. Returns whether the peer was banned, once the change is in the database
    /// (when the hub has one), or why it is not.
    pub async fn unban(&self, peer_id: &PeerId) -> Result<bool, String> {
        let lifted = self.lock().bans.remove(peer_id).is_some();
        if lifted {
            tracing::info!(peer = %short_peer_id(&peer_id.to_base58()), "ban lifted");
        }
        self.persist_durably(PeerWrite::Unban {
            peer_id: peer_id.to_base58(),
            at_ms: unix_ms(),
        })
        .await?;
        Ok(lifted)
    }

    /// Current bans with their remaining time.
    pub fn bans(&self) -> Vec<(PeerId, Duration)> {
        let now = Instant::now();
        let mut bans: Vec<_> = self
            .lock()
            .bans
            .iter()
            .filter(|(_, ban)| ban.until > now)
            .map(|(peer, ban)| (*peer, ban.until - now))
            .collect();
        bans.sort_by_key(|(peer, _)| peer.to_base58());
        bans
    }

    /// The peers online now, by label then peer ID.
    pub fn peers(&self) -> Vec<PeerRecord> {
        let mut peers: Vec<PeerRecord> = self.lock().peers.values().cloned().collect();
        peers.sort_by(|a, b| {
            let label = |p: &PeerRecord| p.presence.content.clone().unwrap_or_default();
            label(a)
                .cmp(&label(b))
                .then_with(|| a.presence.peer_id.cmp(&b.presence.peer_id))
        });
        peers
    }

    /// The latest joins and leaves, newest first.
    pub fn recent_changes(&self) -> Vec<RecentChange> {
        self.lock().recent.iter().rev().cloned().collect()
    }

    /// Reserves a stream slot for a subscriber at `ip`.
    pub fn open_stream(&self, ip: IpAddr) -> Result<StreamSlot, StreamRefused> {
        self.inner.streams.acquire(ip).inspect_err(|_| {
            self.inner
                .metrics
                .refused_streams
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        })
    }

    /// Asks every stream to end (with a reconnect hint) and stops the expiry task.
    pub fn shutdown(&self) {
        let _state = self.lock();
        if !self.inner.shutdown.send_replace(true) {
            let _ = self.inner.all.send(Signal::Shutdown);
            let _ = self.inner.changes.send(Signal::Shutdown);
        }
    }

    /// Sends a keep-alive to every subscriber.
    fn keep_alive(&self) {
        let _ = self.inner.all.send(Signal::KeepAlive);
        let _ = self.inner.changes.send(Signal::KeepAlive);
    }

    /// Waits until every change so far is in the database (immediately without one).
    pub async fn flush(&self) {
        if let Some(persistence) = self.inner.persistence.get() {
            persistence.flush().await;
        }
    }

    /// Waits until what has been published so far is committed to the database, when there is
    /// one, so that an acknowledged publish survives `kill -9`. While the database refuses or
    /// does not answer writes it does not wait (publishes go on from memory and are written
    /// once it is back, and `/healthz` says why); nor past [`COMMIT_WAIT`].
    pub async fn committed(&self) {
        if let Some(persistence) = self.inner.persistence.get() {
            persistence.committed(COMMIT_WAIT).await;
        }
    }

    /// Becomes true when the hub starts shutting down.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    /// `Ok` while the hub can serve; otherwise why not.
    pub fn health(&self) -> Result<(), String> {
        if *self.inner.shutdown.borrow() {
            return Err("the hub is shutting down".into());
        }
        match self.inner.persistence.get() {
            Some(persistence) => persistence.health(),
            None => Ok(()),
        }
    }

    /// Values for `/metrics`.
    pub fn render_metrics(&self) -> String {
        let gauges = {
            let state = self.lock();
            Gauges {
                peers: state.peers.len(),
                subscribers: self.inner.streams.open(),
                ring_events: state.ring.len(),
                persist_dropped: self
                    .inner
                    .persistence
                    .get()
                    .map(|p| p.dropped.load(std::sync::atomic::Ordering::Relaxed)),
            }
        };
        self.inner.metrics.render(&gauges)
    }

    pub fn open_streams(&self) -> usize {
        self.inner.streams.open()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn emit(
        &self,
        state: &mut HubState,
        presence: &Presence,
        change: bool,
        accepted_at: Instant,
    ) -> Arc<HubEvent> {
        let offset = state.next_offset;
        state.next_offset += 1;
        let id = self.event_id(state, offset);
        let event = Arc::new(encode_event(offset, id, presence, change, accepted_at));
        let online = state.peers.len();
        state.ring.push(event.clone(), online);
        // `send` fails only when nobody listens.
        if change {
            let _ = self.inner.changes.send(Signal::Event(event.clone()));
        }
        let _ = self.inner.all.send(Signal::Event(event.clone()));
        event
    }

    /// Takes a peer out of the registry and tells subscribers; returns what the hub knew of it.
    fn remove_peer(&self, state: &mut HubState, peer_id: &PeerId) -> Option<PeerRecord> {
        let gone = state.peers.remove(peer_id)?;
        let now_ms = unix_ms();
        state.remember(now_ms, PresenceType::Offline, &gone.presence);
        state.depart(*peer_id, now_ms, &gone);
        let mut offline = Presence::new(PresenceType::Offline, *peer_id);
        offline.ts = Some(now_ms);
        offline.signed = Some(gone.signed);
        offline.verified = Some(gone.verified);
        self.emit(state, &offline, true, Instant::now());
        self.persist(|| PeerWrite::Offline {
            peer_id: peer_id.to_base58(),
            at_ms: now_ms,
        });
        Some(gone)
    }

    fn sweep_once(&self) {
        let now = Instant::now();
        let deaf = self
            .inner
            .persistence
            .get()
            .is_some_and(|persistence| persistence.cannot_read());
        let mut state = self.lock();
        let hold = self.hold_peers_from_database(&mut state, deaf, now);
        let held = hold != Hold::Off;
        let expired: Vec<PeerId> = state
            .peers
            .iter()
            .filter(|(_, record)| record.expires <= now && !(held && record.from_database))
            .map(|(peer, _)| *peer)
            .collect();
        let notes: Vec<PeerNote> = expired
            .iter()
            .filter_map(|peer| self.remove_peer(&mut state, peer))
            .map(|gone| PeerNote::new(&gone.presence, "peer expired: no heartbeat within the TTL"))
            .collect();
        // A `ts` older than the clock window is refused anyway, so its record can go.
        let keep = Duration::from_millis(MAX_CLOCK_SKEW_MS as u64) + self.inner.options.ttl;
        let HubState { last_ts, peers, .. } = &mut *state;
        last_ts.retain(|peer, (_, seen)| peers.contains_key(peer) || now - *seen < keep);
        state.bans.retain(|_, ban| ban.until > now);
        if let Some(shared) = &mut state.shared {
            shared.forget_departures_before(unix_ms() - TOMBSTONE_MS);
        }
        drop(state);
        if hold == Hold::Began {
            tracing::warn!(
                "the peer database cannot be read: the peers known only from it (announced through other instances) stay listed until it can"
            );
        }
        for note in notes {
            note.log();
        }
    }
}

impl PeerRecord {
    /// This state as a snapshot sends it (as `online`), encoded once per accepted message.
    fn snapshot_event(&mut self) -> Arc<HubEvent> {
        self.snapshot
            .get_or_insert_with(|| {
                let mut presence = self.presence.clone();
                presence.kind = PresenceType::Online;
                Arc::new(event::encode_snapshot_event(&presence))
            })
            .clone()
    }
}

impl HubState {
    fn remember(&mut self, ts_ms: i64, kind: PresenceType, presence: &Presence) {
        if self.recent.len() >= RECENT_CHANGES {
            self.recent.pop_front();
        }
        self.recent.push_back(RecentChange {
            ts_ms,
            kind,
            peer_id: presence.peer_id.clone(),
            label: presence.content.clone().unwrap_or_default(),
        });
    }
}

async fn sweep(weak: Weak<HubInner>) {
    let (interval, keepalive, mut shutdown) = match weak.upgrade() {
        Some(inner) => (
            inner.options.sweep_interval,
            inner.options.keepalive,
            inner.shutdown.subscribe(),
        ),
        None => return,
    };
    let mut last_keepalive = Instant::now();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks: u64 = 0;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        let Some(inner) = weak.upgrade() else { return };
        let hub = Hub { inner };
        hub.sweep_once();
        if last_keepalive.elapsed() >= keepalive {
            hub.keep_alive();
            last_keepalive = Instant::now();
        }
        ticks += 1;
        if ticks.is_multiple_of(240) {
            hub.inner.limiter.prune();
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
