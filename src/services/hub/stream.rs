//! Where a new subscriber starts: `Last-Event-ID` parsing, replay from this instance's rings
//! (read a page at a time as the stream is written, like a snapshot), catch-up from a shared
//! database's position, or (when neither can answer) a reset and a snapshot read page by page
//! (see [`super::snapshot`]).

use std::collections::VecDeque;
use std::sync::Arc;

use libp2p_identity::PeerId;
use tokio::sync::broadcast;

use super::event::encode_snapshot_event;
use super::presence::{Presence, PresenceType};
use super::snapshot::{Scanned, Since};
use super::{Hub, HubEvent, HubState, Signal, snapshot};

/// Where a new subscriber starts.
#[derive(Debug)]
pub struct Subscription {
    /// True when the requested resume point was unknown: send `event: reset` first.
    pub reset: bool,
    /// The missed events to send before live ones, from this instance's rings.
    pub replay: Option<Replay>,
    /// The peers online, to send (page by page) before live events when the stream did not
    /// resume — or, when it resumed from a shared database's position, what it missed. Boxed:
    /// a stream holds its subscription for its whole life, the snapshot only until it is sent.
    pub snapshot: Option<Box<snapshot::Snapshot>>,
    pub live: broadcast::Receiver<Signal>,
    /// The stream position once `replay` or `snapshot` is sent.
    pub position: String,
    /// Already true when the hub was stopping as the subscription began.
    pub stopping: bool,
}

/// Replayed events read from the rings at a time, per subscriber.
pub const REPLAY_PAGE: usize = 64;

/// How a stream resumes.
enum Resumed {
    Ring(Replay),
    CatchUp(snapshot::Snapshot),
}

/// A replay from this instance's rings: the events after `after` up to `upto` (the last one
/// before the subscription's live events begin), read a page at a time, so that a stream
/// resuming after a long gap does not hold thousands of events while it writes them.
pub struct Replay {
    hub: Hub,
    after: u64,
    upto: u64,
    changes_only: bool,
}

/// The next part of a replay.
pub enum ReplayPage {
    Events(Vec<Arc<HubEvent>>),
    /// Every missed event has been given.
    Done,
    /// The rings let go of events not yet given (the stream was too slow to read its
    /// replay): the stream must end, and its client resumes with a snapshot.
    Gone,
}

impl Replay {
    pub fn next_page(&mut self) -> ReplayPage {
        if self.after >= self.upto {
            return ReplayPage::Done;
        }
        let state = self.hub.lock();
        match state
            .ring
            .page(self.after, self.upto, self.changes_only, REPLAY_PAGE)
        {
            None => ReplayPage::Gone,
            Some(events) => match events.last() {
                Some(last) => {
                    self.after = last.offset;
                    ReplayPage::Events(events)
                }
                None => {
                    self.after = self.upto;
                    ReplayPage::Done
                }
            },
        }
    }
}

impl std::fmt::Debug for Replay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replay")
            .field("after", &self.after)
            .field("upto", &self.upto)
            .field("changes_only", &self.changes_only)
            .finish()
    }
}

/// A `Last-Event-ID`: `<epoch>-<offset>` names a place in one instance's ring; with a shared
/// database `-<cluster>-<version>` follows, the database version the stream had seen up to,
/// which any instance of that database can resume from.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct EventId<'a> {
    epoch: &'a str,
    offset: u64,
    shared: Option<(&'a str, i64)>,
}

impl<'a> EventId<'a> {
    pub(super) fn parse(text: &'a str) -> Option<Self> {
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

impl Hub {
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
        let position = self.event_id(&state, state.next_offset - 1);
        let resume = last_event_id
            .and_then(EventId::parse)
            .and_then(|id| self.resume(&state, &id, changes_only, &position));
        let (reset, replay, snapshot) = match resume {
            Some(Resumed::Ring(replay)) => (false, Some(replay), None),
            Some(Resumed::CatchUp(catch_up)) => (false, None, Some(Box::new(catch_up))),
            None => {
                let snapshot = snapshot::Snapshot::new(self.clone(), position.clone());
                (last_event_id.is_some(), None, Some(Box::new(snapshot)))
            }
        };
        Subscription {
            reset,
            replay,
            snapshot,
            live,
            position,
            stopping,
        }
    }

    /// What a stream that last saw `id` missed: from this instance's rings when the id is its
    /// own and the gap is held, else from the shared database's position when the id has one
    /// this instance can answer for; `None` when only a snapshot will do.
    fn resume(
        &self,
        state: &HubState,
        id: &EventId<'_>,
        changes_only: bool,
        position: &str,
    ) -> Option<Resumed> {
        if id.epoch == self.inner.epoch
            && id.offset < state.next_offset
            && state.ring.holds(id.offset, changes_only)
        {
            return Some(Resumed::Ring(Replay {
                hub: self.clone(),
                after: id.offset,
                upto: state.next_offset - 1,
                changes_only,
            }));
        }
        self.catch_up(state, id.shared?, changes_only, position)
            .map(Resumed::CatchUp)
    }

    /// A stream that had seen every database row up to `version` (on any instance): a
    /// catch-up — the departures since, then the current state of each peer whose row is newer
    /// or not yet written (for a stream of changes only, whose announcement changed since) —
    /// read a page at a time like a snapshot. `None` when the database's position is not one
    /// this instance can answer for. Rows this instance has not read yet reach the stream live
    /// when it reads them.
    pub(super) fn catch_up(
        &self,
        state: &HubState,
        (cluster, version): (&str, i64),
        changes_only: bool,
        position: &str,
    ) -> Option<snapshot::Snapshot> {
        let shared = state.shared.as_ref()?;
        if cluster != shared.cluster || version < shared.horizon {
            return None;
        }
        let since = Since {
            version,
            changes_only,
        };
        Some(snapshot::Snapshot::since(
            self.clone(),
            position.to_owned(),
            since,
        ))
    }

    /// The SSE id of the event at `offset`: with a shared database, the database position too.
    pub(super) fn event_id(&self, state: &HubState, offset: u64) -> String {
        match &state.shared {
            Some(shared) => format!(
                "{}-{offset}-{}-{}",
                self.inner.epoch, shared.cluster, shared.applied
            ),
            None => format!("{}-{offset}", self.inner.epoch),
        }
    }

    /// Up to `max` peers online after `after`, in peer ID order, with their snapshot frames —
    /// for a catch-up only those newer than `since`, looking at no more than
    /// [`snapshot::SCAN_LIMIT`].
    pub(super) fn snapshot_page(
        &self,
        after: Option<&PeerId>,
        since: Option<Since>,
        max: usize,
    ) -> Scanned {
        use std::ops::Bound;
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut state = self.lock();
        let mut page = Scanned {
            events: VecDeque::new(),
            last: None,
            end: false,
        };
        for (looked, (peer, record)) in state.peers.range_mut((start, Bound::Unbounded)).enumerate()
        {
            if page.events.len() == max || looked == snapshot::SCAN_LIMIT {
                return page;
            }
            page.last = Some(*peer);
            let wanted = since.is_none_or(|since| {
                since.newer(match since.changes_only {
                    true => record.changed_version,
                    false => record.version,
                })
            });
            if wanted {
                page.events.push_back(record.snapshot_event());
            }
        }
        page.end = true;
        page
    }

    /// Up to `max` departures after `after`, in peer ID order, newer than `since`, as
    /// `offline` events (a catch-up's first pages).
    pub(super) fn departures_page(
        &self,
        after: Option<&PeerId>,
        since: Since,
        max: usize,
    ) -> Scanned {
        use std::ops::Bound;
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let state = self.lock();
        let mut page = Scanned {
            events: VecDeque::new(),
            last: None,
            end: true,
        };
        let Some(shared) = &state.shared else {
            return page;
        };
        page.end = false;
        for (looked, (peer_id, departure)) in shared
            .departures
            .range((start, Bound::Unbounded))
            .enumerate()
        {
            if page.events.len() == max || looked == snapshot::SCAN_LIMIT {
                return page;
            }
            page.last = Some(*peer_id);
            if since.newer(departure.version) {
                let mut offline = Presence::new(PresenceType::Offline, *peer_id);
                offline.ts = Some(departure.at_ms);
                offline.signed = Some(departure.signed);
                offline.verified = Some(departure.verified);
                page.events
                    .push_back(Arc::new(encode_snapshot_event(&offline)));
            }
        }
        page.end = true;
        page
    }
}

#[cfg(test)]
mod tests {
    use super::EventId;

    #[test]
    pub(super) fn event_ids_name_a_ring_place_and_with_a_shared_database_a_version() {
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
