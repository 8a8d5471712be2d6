//! The rendezvous hub: a registry of online peers and a live, replayable stream of presence
//! events.
//!
//! Every accepted message becomes one [`HubEvent`], serialized once (see [`event`]), kept in a
//! bounded ring for `Last-Event-ID` replay and offered to subscribers through two broadcast
//! channels: every event, and changes only (no pure heartbeats). A subscriber that falls more
//! than the channel's capacity behind is cut off and resumes from the ring; it never slows the
//! others.
//!
//! The registry lives behind one mutex rather than in an actor task: each publish holds it for a
//! few microseconds (signatures are checked before it is taken) and never across an `.await`,
//! which keeps the hot path free of a channel round trip.

pub mod event;
pub mod limits;
pub mod metrics;
pub mod persist;
pub mod presence;
pub mod snapshot;
pub mod templates;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use libp2p_identity::PeerId;
use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::config::Config;
use crate::store::hub::{
    HubStore, PeerWrite, StoreError, StoredBan, StoredPeer, TOMBSTONE_MS, Written,
};
use event::encode_event;
pub use event::{Audience, Frames, HubEvent};
use limits::{PublishLimiter, StreamCaps, StreamRefused, StreamSlot};
use metrics::{Gauges, HubMetrics};
use persist::Persistence;
use presence::{
    CheckedPresence, MAX_CLOCK_SKEW_MS, Presence, PresenceError, PresenceType, short_peer_id,
};

/// Events kept for replay after a reconnect.
pub const DEFAULT_RING_CAPACITY: usize = 16_384;
/// Events a subscriber may lag behind before it is cut off.
pub const DEFAULT_SUBSCRIBER_QUEUE: usize = 1024;
/// Joins and leaves remembered for the dashboard.
const RECENT_CHANGES: usize = 50;
/// Departures remembered (with a shared database) so that a stream from another instance can
/// resume here; past this, older ones are forgotten and resuming from before them resets.
const MAX_DEPARTURES: usize = 65_536;

/// How a hub behaves; built from `goop.json` with [`HubOptions::from_config`].
#[derive(Debug, Clone)]
pub struct HubOptions {
    /// Shown on the dashboard.
    pub name: String,
    pub ttl: Duration,
    pub allow_unsigned: bool,
    pub ring_capacity: usize,
    pub subscriber_queue: usize,
    /// How often expired peers are removed.
    pub sweep_interval: Duration,
    pub publish_burst: u32,
    pub publish_per_second: u32,
    pub max_streams: usize,
    pub max_streams_per_ip: usize,
    /// How long a write to a client may make no progress before it is cut off.
    pub write_stall_timeout: Duration,
    /// Time a client has to send a complete request head.
    pub header_read_timeout: Duration,
    /// Longest silence on a stream before a keep-alive.
    pub keepalive: Duration,
    /// WebSocket ping period; a socket that has not answered for three periods is closed.
    pub ws_ping: Duration,
}

impl HubOptions {
    pub fn from_config(config: &Config) -> Self {
        let presence = &config.presence;
        HubOptions {
            name: if config.profile.label.is_empty() {
                "Goop² rendezvous".into()
            } else {
                config.profile.label.clone()
            },
            ttl: Duration::from_secs(presence.ttl_seconds.into()),
            allow_unsigned: presence.allow_unsigned,
            ring_capacity: DEFAULT_RING_CAPACITY,
            subscriber_queue: DEFAULT_SUBSCRIBER_QUEUE,
            sweep_interval: Duration::from_millis(250),
            publish_burst: presence.publish_burst,
            publish_per_second: presence.publish_per_second,
            max_streams: presence.max_streams as usize,
            max_streams_per_ip: presence.max_streams_per_ip as usize,
            write_stall_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(15),
            ws_ping: Duration::from_secs(15),
        }
    }
}

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
    /// This state as snapshots send it, encoded when a snapshot first needs it.
    #[serde(skip)]
    snapshot: Option<Arc<HubEvent>>,
}

/// A join or leave, for the dashboard.
#[derive(Debug, Clone, Serialize)]
pub struct RecentChange {
    pub ts_ms: i64,
    pub kind: PresenceType,
    pub peer_id: String,
    pub label: String,
}

/// Where a new subscriber starts.
#[derive(Debug)]
pub struct Subscription {
    /// True when the requested resume point was unknown: send `event: reset` first.
    pub reset: bool,
    /// Replayed events to send before live ones.
    pub initial: Vec<Arc<HubEvent>>,
    /// The peers online, to send (page by page) before live events when the stream did not
    /// resume.
    pub snapshot: Option<snapshot::Snapshot>,
    pub live: broadcast::Receiver<Signal>,
    /// Already true when the hub was stopping as the subscription began.
    pub stopping: bool,
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
    ring: VecDeque<Arc<HubEvent>>,
    next_offset: u64,
    /// Last accepted `ts` per peer, kept after the peer leaves so old messages cannot replay.
    last_ts: HashMap<PeerId, (i64, Instant)>,
    bans: HashMap<PeerId, Ban>,
    recent: VecDeque<RecentChange>,
    /// With a shared database: how far this instance has read it, and what left since.
    shared: Option<SharedPosition>,
}

/// Where this instance stands in the shared database, which gives event ids a meaning on
/// every instance (see [`EventId`]).
struct SharedPosition {
    /// The database's name, in event ids.
    cluster: String,
    /// Every row up to this version is merged into the registry (or was written by this
    /// instance, after its subscribers saw the change).
    applied: i64,
    /// Resuming from a version below this one needs a snapshot: rows pruned from the database,
    /// departures forgotten here, or written before this instance started.
    horizon: i64,
    /// Peers that left, with the version of their tombstone (`None` until written), so a
    /// stream resuming from another instance is told.
    departures: HashMap<PeerId, Departure>,
    /// Departures oldest first, to forget them in order (entries may be stale).
    departure_order: VecDeque<(PeerId, i64)>,
}

struct Departure {
    version: Option<i64>,
    at_ms: i64,
    signed: bool,
    verified: bool,
}

/// A `Last-Event-ID`: `<epoch>-<offset>` names a place in one instance's ring; with a shared
/// database `-<cluster>-<version>` follows, the database version the stream had seen up to,
/// which any instance of that database can resume from.
#[derive(Debug, PartialEq, Eq)]
struct EventId<'a> {
    epoch: &'a str,
    offset: u64,
    shared: Option<(&'a str, i64)>,
}

impl<'a> EventId<'a> {
    fn parse(text: &'a str) -> Option<Self> {
        let mut parts = text.trim().split('-');
        let epoch = parts.next()?;
        let offset = parts.next()?.parse().ok()?;
        let shared = match (parts.next(), parts.next()) {
            (None, _) => None,
            (Some(cluster), Some(version)) => Some((cluster, version.parse().ok()?)),
            (Some(_), None) => return None,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(EventId {
            epoch,
            offset,
            shared,
        })
    }
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
                    ring: VecDeque::with_capacity(options.ring_capacity.min(4096)),
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
                record.snapshot = None;
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
                        snapshot: None,
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

    /// Connects the hub to its shared database: restores the peers still inside their TTL, the
    /// departures the database still remembers and the bans in force, then keeps writing
    /// changes and reading other instances' changes.
    pub async fn attach_store(&self, store: HubStore) -> Result<(), StoreError> {
        // The counters first: rows read after them can only be newer.
        let versions = store.versions().await?;
        let rows = store.all_peers().await?;
        let now_ms = unix_ms();
        let bans = store.bans(now_ms).await?;
        let mut restored = 0;
        let mut expired = Vec::new();
        {
            let mut state = self.lock();
            let now = Instant::now();
            state.shared = Some(SharedPosition {
                cluster: store.cluster().to_owned(),
                applied: versions.peer_version,
                horizon: versions.pruned_version,
                departures: HashMap::new(),
                departure_order: VecDeque::new(),
            });
            for row in rows {
                let Some((peer_id, record)) = record_from_row(&row, now, now_ms) else {
                    continue;
                };
                if let Some(ts) = record.presence.ts {
                    state.last_ts.insert(peer_id, (ts, now));
                }
                if row.online && row.expires_ms > now_ms {
                    restored += 1;
                    state.peers.insert(peer_id, record);
                } else if row.online {
                    // Expired while no instance was there to say so: this one writes the
                    // tombstone (below) and tells resuming streams.
                    state.depart(peer_id, row.expires_ms, &record);
                    expired.push(PeerWrite::Offline {
                        peer_id: row.peer_id.clone(),
                        at_ms: row.expires_ms,
                    });
                } else if let Some(shared) = &mut state.shared {
                    shared.note_tombstone(peer_id, &row);
                }
            }
            for (peer, until_ms) in bans {
                if let Ok(peer_id) = peer.parse::<PeerId>() {
                    let left = Duration::from_millis((until_ms - now_ms).max(0) as u64);
                    state.bans.insert(peer_id, Ban::until(now + left));
                }
            }
        }
        if restored > 0 {
            tracing::info!(peers = restored, "restored peers from the peer database");
        }
        let (persistence, queue) = Persistence::new(self.inner.epoch.clone(), store.kind());
        if self.inner.persistence.set(persistence.clone()).is_err() {
            return Ok(());
        }
        for write in expired {
            persistence.enqueue(write);
        }
        let registry = || RegistryLink(Arc::downgrade(&self.inner));
        tokio::spawn(persist::run_writer(
            store.clone(),
            persistence.clone(),
            queue,
            registry(),
        ));
        tokio::spawn(persist::run_reader(
            store,
            persistence,
            persist::ReadPosition {
                peer_version: versions.peer_version,
                ban_version: versions.ban_version,
            },
            self.inner.shutdown.subscribe(),
            registry(),
        ));
        Ok(())
    }

    /// Applies a change another instance wrote to the shared database (the reader moves the
    /// applied position once a page of rows is merged).
    fn merge_row(&self, state: &mut HubState, row: &StoredPeer) {
        let Ok(peer_id) = row.peer_id.parse::<PeerId>() else {
            return;
        };
        let now = Instant::now();
        let now_ms = unix_ms();
        // Newer here already: by the peer's own clock first (two instances may take two
        // messages in the same millisecond), then by when an instance took it. A tombstone
        // keeps the last online message, not the offline one: it goes by time alone.
        let row_ts = match row.online {
            true => serde_json::from_str::<Presence>(&row.presence)
                .ok()
                .and_then(|p| p.ts),
            false => None,
        };
        let local = state
            .peers
            .get(&peer_id)
            .map(|p| (p.presence.ts, p.last_seen_ms));
        let newer_here = |(ts, seen): (Option<i64>, i64)| match row.online {
            true => (ts, seen) > (row_ts, row.last_seen_ms),
            false => seen > row.last_seen_ms,
        };
        if local.is_some_and(newer_here) {
            return;
        }
        if !row.online || row.expires_ms <= now_ms {
            if let Some(gone) = state.peers.remove(&peer_id) {
                state.remember(now_ms, PresenceType::Offline, &gone.presence);
                let mut offline = Presence::new(PresenceType::Offline, peer_id);
                offline.ts = Some(row.last_seen_ms);
                offline.signed = Some(gone.signed);
                offline.verified = Some(gone.verified);
                self.emit(state, &offline, true, now);
                state.depart(peer_id, row.last_seen_ms, &gone);
            }
            // Remembered even for a peer this instance never saw online: a stream that saw it
            // on another instance and resumes here must hear that it left.
            if let Some(shared) = &mut state.shared {
                shared.note_tombstone(peer_id, row);
            }
            return;
        }
        let Some((_, mut record)) = record_from_row(row, now, now_ms) else {
            return;
        };
        if let Some(ts) = record.presence.ts {
            let last = state.last_ts.entry(peer_id).or_insert((ts, now));
            last.0 = last.0.max(ts);
        }
        let change = match state.peers.get(&peer_id) {
            Some(existing) => {
                record.first_seen_ms = existing.first_seen_ms;
                record.session = existing.session;
                !existing.presence.same_announcement(&record.presence)
            }
            None => {
                state.remember(now_ms, PresenceType::Online, &record.presence);
                state.arrive(&peer_id);
                true
            }
        };
        let presence = record.presence.clone();
        state.peers.insert(peer_id, record);
        self.emit(state, &presence, change, now);
    }

    /// Applies ban rows other instances wrote: a ban in force removes the peer here too.
    fn merge_bans(&self, rows: Vec<StoredBan>) {
        let now = Instant::now();
        let now_ms = unix_ms();
        let mut notes = Vec::new();
        {
            let mut state = self.lock();
            for row in rows {
                let Ok(peer_id) = row.peer_id.parse::<PeerId>() else {
                    continue;
                };
                if row.until_ms > now_ms {
                    let left = Duration::from_millis((row.until_ms - now_ms) as u64);
                    state.bans.insert(peer_id, Ban::until(now + left));
                    let label = self
                        .remove_peer(&mut state, &peer_id)
                        .map(|gone| label_for_log(&gone.presence))
                        .unwrap_or_default();
                    notes.push((peer_id, label, true));
                } else if state.bans.remove(&peer_id).is_some() {
                    notes.push((peer_id, String::new(), false));
                }
            }
        }
        for (peer, label, banned) in notes {
            let peer = short_peer_id(&peer.to_base58());
            if banned {
                tracing::info!(%peer, ?label, "peer banned through another instance");
            } else {
                tracing::info!(%peer, "ban lifted through another instance");
            }
        }
    }

    /// Notes the versions this instance's writes took.
    fn note_written(&self, written: Vec<Written>) {
        let mut state = self.lock();
        let HubState { peers, shared, .. } = &mut *state;
        for write in written {
            let Ok(peer_id) = write.peer_id.parse::<PeerId>() else {
                continue;
            };
            if write.online {
                if let Some(record) = peers.get_mut(&peer_id)
                    && record.version.is_none()
                    && record.last_seen_ms == write.last_seen_ms
                {
                    record.version = Some(write.version);
                }
            } else if let Some(departure) =
                shared.as_mut().and_then(|s| s.departures.get_mut(&peer_id))
                && departure.version.is_none()
                && departure.at_ms == write.last_seen_ms
            {
                departure.version = Some(write.version);
            }
        }
    }

    /// Every change this instance holds that is not known to be in the database.
    fn unwritten(&self) -> Vec<PeerWrite> {
        let ttl_ms = self.inner.options.ttl.as_millis() as i64;
        let state = self.lock();
        let now = Instant::now();
        let now_ms = unix_ms();
        let mut writes: Vec<PeerWrite> = state
            .peers
            .values()
            .filter(|record| record.version.is_none())
            .map(|record| {
                let left = record.expires.saturating_duration_since(now).as_millis() as i64;
                PeerWrite::Upsert(record.to_row(None, now_ms + left.min(ttl_ms)))
            })
            .collect();
        if let Some(shared) = &state.shared {
            writes.extend(
                shared
                    .departures
                    .iter()
                    .filter(|(_, departure)| departure.version.is_none())
                    .map(|(peer_id, departure)| PeerWrite::Offline {
                        peer_id: peer_id.to_base58(),
                        at_ms: departure.at_ms,
                    }),
            );
        }
        writes
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

    async fn persist_durably(&self, write: PeerWrite) -> Result<(), String> {
        match self.inner.persistence.get() {
            Some(persistence) => persistence.write_durably(write).await,
            None => Ok(()),
        }
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

    /// Starts a subscription. `last_event_id` is the SSE `Last-Event-ID` of a reconnecting
    /// client: when it is in the ring, exactly the missed events are replayed; otherwise the
    /// client gets `reset` and a snapshot of the peers online.
    pub fn subscribe(&self, last_event_id: Option<&str>, changes_only: bool) -> Subscription {
        let sender = if changes_only {
            &self.inner.changes
        } else {
            &self.inner.all
        };
        let state = self.lock();
        // Subscribing under the lock: every event is either in the replay or live, never both.
        let live = sender.subscribe();
        let stopping = *self.inner.shutdown.borrow();
        let resume = last_event_id
            .and_then(EventId::parse)
            .and_then(|id| self.resume(&state, &id, changes_only));
        let (reset, initial, snapshot) = match resume {
            Some(events) => (false, events, None),
            None => {
                let id = self.event_id(&state, state.next_offset - 1);
                let snapshot = snapshot::Snapshot::new(self.clone(), id);
                (last_event_id.is_some(), Vec::new(), Some(snapshot))
            }
        };
        Subscription {
            reset,
            initial,
            snapshot,
            live,
            stopping,
        }
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

    /// What a stream that last saw `id` missed: from this instance's ring when the id is its
    /// own and the gap is held, else from the shared database's position when the id has one
    /// this instance can answer for; `None` when only a snapshot will do.
    fn resume(
        &self,
        state: &HubState,
        id: &EventId<'_>,
        changes_only: bool,
    ) -> Option<Vec<Arc<HubEvent>>> {
        if id.epoch == self.inner.epoch
            && let Some(events) = self.replay(state, id.offset, changes_only)
        {
            return Some(events);
        }
        self.catch_up(state, id.shared?)
    }

    fn replay(
        &self,
        state: &HubState,
        offset: u64,
        changes_only: bool,
    ) -> Option<Vec<Arc<HubEvent>>> {
        if offset >= state.next_offset {
            return None;
        }
        let oldest = state.ring.front().map_or(state.next_offset, |e| e.offset);
        // Events after `offset` must all still be held.
        if offset + 1 < oldest {
            return None;
        }
        Some(
            state
                .ring
                .iter()
                .filter(|e| e.offset > offset && (e.change || !changes_only))
                .cloned()
                .collect(),
        )
    }

    /// A stream that had seen every database row up to `version` (on any instance): the
    /// current state of each peer whose row is newer or not yet written, and the departures
    /// since. Rows this instance has not read yet reach the stream live when it reads them.
    fn catch_up(
        &self,
        state: &HubState,
        (cluster, version): (&str, i64),
    ) -> Option<Vec<Arc<HubEvent>>> {
        let shared = state.shared.as_ref()?;
        if cluster != shared.cluster || version < shared.horizon {
            return None;
        }
        let newer = |v: Option<i64>| v.is_none_or(|v| v > version);
        let head = state.next_offset - 1;
        let id = self.event_id(state, head);
        let now = Instant::now();
        let mut events: Vec<Arc<HubEvent>> = shared
            .departures
            .iter()
            .filter(|(_, departure)| newer(departure.version))
            .map(|(peer_id, departure)| {
                let mut offline = Presence::new(PresenceType::Offline, *peer_id);
                offline.ts = Some(departure.at_ms);
                offline.signed = Some(departure.signed);
                offline.verified = Some(departure.verified);
                Arc::new(encode_event(head, id.clone(), &offline, true, now))
            })
            .collect();
        events.extend(
            state
                .peers
                .values()
                .filter(|record| newer(record.version))
                .map(|record| {
                    let mut presence = record.presence.clone();
                    presence.kind = PresenceType::Online;
                    Arc::new(encode_event(head, id.clone(), &presence, true, now))
                }),
        );
        Some(events)
    }

    /// The SSE id of the event at `offset`: with a shared database, the database position too.
    fn event_id(&self, state: &HubState, offset: u64) -> String {
        match &state.shared {
            Some(shared) => format!(
                "{}-{offset}-{}-{}",
                self.inner.epoch, shared.cluster, shared.applied
            ),
            None => format!("{}-{offset}", self.inner.epoch),
        }
    }

    /// Up to `max` peers online after `after`, in peer ID order, with their snapshot frames.
    fn snapshot_page(&self, after: Option<&PeerId>, max: usize) -> Vec<(PeerId, Arc<HubEvent>)> {
        use std::ops::Bound;
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut state = self.lock();
        state
            .peers
            .range_mut((start, Bound::Unbounded))
            .take(max)
            .map(|(peer, record)| (*peer, record.snapshot_event()))
            .collect()
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
        if state.ring.len() >= self.inner.options.ring_capacity {
            state.ring.pop_front();
        }
        state.ring.push_back(event.clone());
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
        let mut state = self.lock();
        let expired: Vec<PeerId> = state
            .peers
            .iter()
            .filter(|(_, record)| record.expires <= now)
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
        for note in notes {
            note.log();
        }
    }
}

impl PeerRecord {
    /// This state as a snapshot sends it (as `online`), encoded once per state.
    fn snapshot_event(&mut self) -> Arc<HubEvent> {
        self.snapshot
            .get_or_insert_with(|| {
                let mut presence = self.presence.clone();
                presence.kind = PresenceType::Online;
                Arc::new(event::encode_snapshot_event(&presence))
            })
            .clone()
    }

    /// The row for this state; `event` is its event when there is one, whose full form is the
    /// message as JSON already.
    fn to_row(&self, event: Option<&HubEvent>, expires_ms: i64) -> StoredPeer {
        let presence = match event {
            Some(event) => {
                String::from_utf8_lossy(&event.frames(Audience::Admin).json).into_owned()
            }
            None => serde_json::to_string(&self.presence).expect("a presence always serializes"),
        };
        StoredPeer {
            peer_id: self.presence.peer_id.clone(),
            presence,
            signed: self.signed,
            verified: self.verified,
            first_seen_ms: self.first_seen_ms,
            last_seen_ms: self.last_seen_ms,
            online: true,
            expires_ms,
            instance: String::new(),
            version: 0,
        }
    }
}

/// A registry entry from a database row, expiring at the row's time.
fn record_from_row(row: &StoredPeer, now: Instant, now_ms: i64) -> Option<(PeerId, PeerRecord)> {
    let peer_id = row.peer_id.parse::<PeerId>().ok()?;
    let presence: Presence = serde_json::from_str(&row.presence).ok()?;
    let left = Duration::from_millis((row.expires_ms - now_ms).max(0) as u64);
    Some((
        peer_id,
        PeerRecord {
            presence,
            signed: row.signed,
            verified: row.verified,
            first_seen_ms: row.first_seen_ms,
            last_seen_ms: row.last_seen_ms,
            expires: now + left,
            session: None,
            version: Some(row.version),
            snapshot: None,
        },
    ))
}

impl HubState {
    /// Notes that a peer left (with a shared database, for streams resuming from elsewhere).
    fn depart(&mut self, peer_id: PeerId, at_ms: i64, gone: &PeerRecord) {
        let Some(shared) = &mut self.shared else {
            return;
        };
        shared.departures.insert(
            peer_id,
            Departure {
                version: None,
                at_ms,
                signed: gone.signed,
                verified: gone.verified,
            },
        );
        shared.departure_order.push_back((peer_id, at_ms));
        if shared.departure_order.len() > MAX_DEPARTURES {
            shared.forget_oldest_departure();
        }
    }

    /// Notes that a peer is online again: its record now tells its story.
    fn arrive(&mut self, peer_id: &PeerId) {
        if let Some(shared) = &mut self.shared {
            shared.departures.remove(peer_id);
        }
    }

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

impl SharedPosition {
    /// Gives a departure the version of its tombstone row, remembering it if it is new here.
    fn note_tombstone(&mut self, peer_id: PeerId, row: &StoredPeer) {
        match self.departures.get_mut(&peer_id) {
            Some(departure) => {
                departure.version = Some(departure.version.unwrap_or(0).max(row.version));
            }
            None => {
                self.departures.insert(
                    peer_id,
                    Departure {
                        version: Some(row.version),
                        at_ms: row.last_seen_ms,
                        signed: row.signed,
                        verified: row.verified,
                    },
                );
                self.departure_order.push_back((peer_id, row.last_seen_ms));
                if self.departure_order.len() > MAX_DEPARTURES {
                    self.forget_oldest_departure();
                }
            }
        }
    }

    /// Forgets the oldest departure; resuming from before it now takes a snapshot.
    fn forget_oldest_departure(&mut self) {
        let Some((peer_id, at_ms)) = self.departure_order.pop_front() else {
            return;
        };
        if self
            .departures
            .get(&peer_id)
            .is_some_and(|departure| departure.at_ms == at_ms)
        {
            let departure = self.departures.remove(&peer_id).expect("checked");
            self.horizon = self.horizon.max(departure.version.unwrap_or(self.applied));
        }
    }

    fn forget_departures_before(&mut self, before_ms: i64) {
        while self
            .departure_order
            .front()
            .is_some_and(|(_, at_ms)| *at_ms < before_ms)
        {
            self.forget_oldest_departure();
        }
    }
}

/// The writer's and reader's way back into the hub; holds it weakly, so that dropping every
/// `Hub` stops them.
struct RegistryLink(Weak<HubInner>);

impl RegistryLink {
    fn hub(&self) -> Option<Hub> {
        self.0.upgrade().map(|inner| Hub { inner })
    }
}

impl persist::Registry for RegistryLink {
    fn written(&self, written: Vec<Written>) {
        if let Some(hub) = self.hub() {
            hub.note_written(written);
        }
    }

    fn unwritten(&self) -> Vec<PeerWrite> {
        self.hub().map(|hub| hub.unwritten()).unwrap_or_default()
    }

    fn merge_peers(&self, rows: Vec<StoredPeer>) {
        let Some(hub) = self.hub() else { return };
        let mut state = hub.lock();
        for row in &rows {
            hub.merge_row(&mut state, row);
        }
        if let (Some(shared), Some(last)) = (&mut state.shared, rows.last()) {
            shared.applied = shared.applied.max(last.version);
        }
    }

    fn merge_bans(&self, rows: Vec<StoredBan>) {
        if let Some(hub) = self.hub() {
            hub.merge_bans(rows);
        }
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

#[cfg(test)]
mod tests {
    use super::EventId;

    #[test]
    fn event_ids_name_a_ring_place_and_with_a_shared_database_a_version() {
        assert_eq!(
            EventId::parse("a1b2-17"),
            Some(EventId {
                epoch: "a1b2",
                offset: 17,
                shared: None
            })
        );
        assert_eq!(
            EventId::parse(" a1b2-17-c0ffee-420 "),
            Some(EventId {
                epoch: "a1b2",
                offset: 17,
                shared: Some(("c0ffee", 420))
            })
        );
        for bad in [
            "",
            "a1b2",
            "a1b2-x",
            "a1b2-17-c0ffee",
            "a1b2-17-c0ffee-x",
            "a-1-b-2-c",
        ] {
            assert_eq!(EventId::parse(bad), None, "{bad:?}");
        }
    }
}
