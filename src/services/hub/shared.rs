//! The registry's life in a database: restoring it at start, writing changes, merging what
//! other instances of a shared database wrote, and the position (database version) that lets a
//! stream resume on any instance.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use libp2p_identity::PeerId;

use super::event::HubEvent;
use super::persist::{self, Persistence};
use super::presence::{Presence, PresenceType, short_peer_id};
use super::{Audience, Ban, Hub, HubInner, HubState, PeerRecord, label_for_log, unix_ms};
use crate::store::hub::{Committed, HubStore, PeerWrite, StoreError, StoredBan, StoredPeer};

/// Departures remembered (with a shared database) so that a stream from another instance can
/// resume here; past this, older ones are forgotten and resuming from before them resets.
pub(super) const MAX_DEPARTURES: usize = 65_536;

/// Where this instance stands in the shared database, which gives event ids a meaning on
/// every instance (see `EventId` in [`super::stream`]).
pub(super) struct SharedPosition {
    /// The database's name, in event ids.
    pub(super) cluster: String,
    /// Every row up to this version is merged into the registry (or was written by this
    /// instance, after its subscribers saw the change).
    pub(super) applied: i64,
    /// Version ranges this instance wrote above `applied`, first to last: once the rows
    /// below one are applied, so is the range (no other instance wrote inside it).
    pub(super) own: BTreeMap<i64, i64>,
    /// Resuming from a version below this one needs a snapshot: rows pruned from the database,
    /// departures forgotten here, or written before this instance started.
    pub(super) horizon: i64,
    /// Peers that left, with the version of their tombstone (`None` until written), so a
    /// stream resuming from another instance is told.
    pub(super) departures: BTreeMap<PeerId, Departure>,
    /// Departures oldest first, to forget them in order (entries may be stale).
    pub(super) departure_order: VecDeque<(PeerId, i64)>,
    /// The database could not be read at the last sweep: the peers known from it are held.
    pub(super) holding: bool,
}

/// Whether a sweep holds the peers known from the database (see
/// [`Hub::hold_peers_from_database`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hold {
    Off,
    /// The database could not be read at this sweep, for the first time since it could.
    Began,
    On,
}

pub(super) struct Departure {
    pub(super) version: Option<i64>,
    pub(super) at_ms: i64,
    pub(super) signed: bool,
    pub(super) verified: bool,
}

/// A registry entry from a database row, expiring at the row's time.
pub(super) fn record_from_row(
    row: &StoredPeer,
    now: Instant,
    now_ms: i64,
) -> Option<(PeerId, PeerRecord)> {
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
            changed_version: Some(row.changed_version),
            snapshot: None,
            from_database: true,
        },
    ))
}

impl SharedPosition {
    /// Every row up to `version` is now applied here.
    pub(super) fn advance(&mut self, version: i64) {
        self.applied = self.applied.max(version);
        while let Some((&first, &last)) = self.own.first_key_value() {
            if first > self.applied + 1 {
                break;
            }
            self.applied = self.applied.max(last);
            self.own.remove(&first);
        }
    }

    /// This instance committed the versions `first..=last`.
    pub(super) fn note_own(&mut self, (first, last): (i64, i64)) {
        if last > self.applied {
            self.own.insert(first, last);
            self.advance(self.applied);
        }
    }

    /// Gives a departure the version of its tombstone row, remembering it if it is new here.
    pub(super) fn note_tombstone(&mut self, peer_id: PeerId, row: &StoredPeer) {
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
    pub(super) fn forget_oldest_departure(&mut self) {
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

    pub(super) fn forget_departures_before(&mut self, before_ms: i64) {
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
pub(super) struct RegistryLink(Weak<HubInner>);

impl RegistryLink {
    pub(super) fn hub(&self) -> Option<Hub> {
        self.0.upgrade().map(|inner| Hub { inner })
    }
}

impl persist::Registry for RegistryLink {
    fn written(&self, committed: Committed) {
        if let Some(hub) = self.hub() {
            hub.note_written(committed);
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
            shared.advance(last.version);
        }
    }

    fn merge_bans(&self, rows: Vec<StoredBan>) {
        if let Some(hub) = self.hub() {
            hub.merge_bans(rows);
        }
    }
}

impl Hub {
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
                own: BTreeMap::new(),
                horizon: versions.pruned_version,
                departures: BTreeMap::new(),
                departure_order: VecDeque::new(),
                holding: false,
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
    pub(super) fn merge_row(&self, state: &mut HubState, row: &StoredPeer) {
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
    pub(super) fn merge_bans(&self, rows: Vec<StoredBan>) {
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
    pub(super) fn note_written(&self, committed: Committed) {
        let mut state = self.lock();
        let HubState { peers, shared, .. } = &mut *state;
        if let (Some(shared), Some(versions)) = (shared.as_mut(), committed.peer_versions) {
            shared.note_own(versions);
        }
        for write in committed.written {
            let Ok(peer_id) = write.peer_id.parse::<PeerId>() else {
                continue;
            };
            if write.online {
                if let Some(record) = peers.get_mut(&peer_id)
                    && record.version.is_none()
                    && record.last_seen_ms == write.last_seen_ms
                {
                    record.version = Some(write.version);
                    record.changed_version = Some(write.changed_version);
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
    pub(super) fn unwritten(&self) -> Vec<PeerWrite> {
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

    /// What this sweep does with the peers known from the database. Other instances' news
    /// comes only through the database: while it cannot be read (`deaf`), the peers they
    /// announced are kept as they were rather than expired one by one — they are as likely
    /// alive as before, and the community would otherwise split into each instance's own
    /// peers. When it can be read again the hold ends a TTL later, time for the others to
    /// write what they held back; a peer that left meanwhile leaves then (its departure is
    /// read, or it expires).
    pub(super) fn hold_peers_from_database(
        &self,
        state: &mut HubState,
        deaf: bool,
        now: Instant,
    ) -> Hold {
        let Some(shared) = &mut state.shared else {
            return Hold::Off;
        };
        if deaf {
            return match std::mem::replace(&mut shared.holding, true) {
                true => Hold::On,
                false => Hold::Began,
            };
        }
        if std::mem::take(&mut shared.holding) {
            let grace = now + self.inner.options.ttl;
            for record in state.peers.values_mut().filter(|r| r.from_database) {
                record.expires = record.expires.max(grace);
            }
        }
        Hold::Off
    }

    pub(super) async fn persist_durably(&self, write: PeerWrite) -> Result<(), String> {
        match self.inner.persistence.get() {
            Some(persistence) => persistence.write_durably(write).await,
            None => Ok(()),
        }
    }
}

impl PeerRecord {
    /// The row for this state; `event` is its event when there is one, whose full form is the
    /// message as JSON already.
    pub(super) fn to_row(&self, event: Option<&HubEvent>, expires_ms: i64) -> StoredPeer {
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
            announcement: self.presence.announcement_digest(),
            changed_version: 0,
        }
    }
}

impl HubState {
    /// Notes that a peer left (with a shared database, for streams resuming from elsewhere).
    pub(super) fn depart(&mut self, peer_id: PeerId, at_ms: i64, gone: &PeerRecord) {
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
    pub(super) fn arrive(&mut self, peer_id: &PeerId) {
        if let Some(shared) = &mut self.shared {
            shared.departures.remove(peer_id);
        }
    }
}
