//! The events kept for `Last-Event-ID` replay, in two bounded rings: changes (joins, leaves,
//! new announcements) and heartbeats that changed nothing.
//!
//! Heartbeats are most of what a hub accepts (every peer, every few seconds) and no stream of
//! changes — the stream our peers hold — ever replays one, so they get a ring of their own,
//! [`HEARTBEAT_RING`] long at most: a 1,000-peer community's heartbeats no longer push its
//! changes out of the ring within a minute, nor hold 16,384 events' bytes for nothing. A full
//! stream resumes while both rings still hold its gap; otherwise it is sent a snapshot.
//!
//! Neither ring holds more events than there are peers online (or [`super::HubOptions::ring_floor`]
//! in a small community): a replay longer than that costs the hub and the client more than the
//! snapshot that replaces it, and a ring held full at 16,384 changes — where a hub that has run
//! a day sits — cost a 1,000-peer community some 12 KiB of the hub's memory per peer.

use std::collections::VecDeque;
use std::sync::Arc;

use super::HubEvent;

/// Most heartbeats kept for replay to full streams.
pub const HEARTBEAT_RING: usize = 2048;

pub(super) struct ReplayRing {
    changes: VecDeque<Arc<HubEvent>>,
    beats: VecDeque<Arc<HubEvent>>,
    change_capacity: usize,
    beat_capacity: usize,
    /// Events each ring may hold however few peers are online.
    floor: usize,
    /// The offset of the last change let go (0: none); every change after it is held.
    changes_from: u64,
    /// The same for heartbeats.
    beats_from: u64,
}

impl ReplayRing {
    /// Holds up to `capacity` changes and up to `capacity` (at most [`HEARTBEAT_RING`])
    /// heartbeats, and of each no more than the peers online or `floor`, whichever is more.
    pub(super) fn new(capacity: usize, floor: usize) -> Self {
        ReplayRing {
            changes: VecDeque::new(),
            beats: VecDeque::new(),
            change_capacity: capacity,
            beat_capacity: capacity.min(HEARTBEAT_RING),
            floor,
            changes_from: 0,
            beats_from: 0,
        }
    }

    /// Keeps `event`, letting the oldest of its kind go when its ring is full with `online`
    /// peers online.
    pub(super) fn push(&mut self, event: Arc<HubEvent>, online: usize) {
        let (ring, capacity, from) = if event.change {
            (
                &mut self.changes,
                self.change_capacity,
                &mut self.changes_from,
            )
        } else {
            (&mut self.beats, self.beat_capacity, &mut self.beats_from)
        };
        let capacity = capacity.min(self.floor.max(online));
        if capacity == 0 {
            *from = event.offset;
            return;
        }
        // More than one goes when peers left since the last event of this kind.
        while ring.len() >= capacity
            && let Some(gone) = ring.pop_front()
        {
            *from = gone.offset;
        }
        ring.push_back(event);
        // The deque's room follows its length down: a community that shrank does not keep
        // the room its ring had at its largest.
        if ring.capacity() > 64 && ring.capacity() > 4 * ring.len() {
            ring.shrink_to(2 * ring.len());
        }
    }

    /// Events held.
    pub(super) fn len(&self) -> usize {
        self.changes.len() + self.beats.len()
    }

    /// Whether every event after `offset` — only changes when `changes_only` — is still held.
    pub(super) fn holds(&self, offset: u64, changes_only: bool) -> bool {
        offset >= self.changes_from && (changes_only || offset >= self.beats_from)
    }

    /// Up to `max` of the events after `offset` and up to `upto` — only changes when
    /// `changes_only` — in order; `None` when some of them are no longer held.
    pub(super) fn page(
        &self,
        offset: u64,
        upto: u64,
        changes_only: bool,
        max: usize,
    ) -> Option<Vec<Arc<HubEvent>>> {
        if !self.holds(offset, changes_only) {
            return None;
        }
        let mut changes = newer(&self.changes, offset, upto);
        let mut beats = newer(&self.beats, offset, upto);
        if changes_only {
            return Some(changes.take(max).cloned().collect());
        }
        let mut page = Vec::new();
        while page.len() < max {
            let take_change = match (changes.peek(), beats.peek()) {
                (Some(c), Some(b)) => c.offset < b.offset,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let next = if take_change {
                changes.next()
            } else {
                beats.next()
            };
            page.extend(next.cloned());
        }
        Some(page)
    }
}

/// The events of `ring` after `offset` and up to `upto`.
fn newer(
    ring: &VecDeque<Arc<HubEvent>>,
    offset: u64,
    upto: u64,
) -> std::iter::Peekable<impl Iterator<Item = &Arc<HubEvent>>> {
    let start = ring.partition_point(|e| e.offset <= offset);
    ring.range(start..)
        .take_while(move |e| e.offset <= upto)
        .peekable()
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use libp2p_identity::Keypair;

    use super::*;
    use crate::services::hub::event::encode_event;
    use crate::services::hub::presence::{Presence, PresenceType};

    fn event(offset: u64, change: bool) -> Arc<HubEvent> {
        let peer = Keypair::generate_ed25519().public().to_peer_id();
        let presence = Presence::new(PresenceType::Update, peer);
        Arc::new(encode_event(
            offset,
            format!("e-{offset}"),
            &presence,
            change,
            Instant::now(),
        ))
    }

    fn offsets(events: Option<Vec<Arc<HubEvent>>>) -> Option<Vec<u64>> {
        events.map(|events| events.iter().map(|e| e.offset).collect())
    }

    impl ReplayRing {
        fn after(&self, offset: u64, changes_only: bool) -> Option<Vec<Arc<HubEvent>>> {
            self.page(offset, u64::MAX, changes_only, usize::MAX)
        }
    }

    #[test]
    fn heartbeats_never_push_changes_out_and_full_streams_replay_both_in_order() {
        let mut ring = ReplayRing::new(4, 4);
        // Offsets 1..=20: every fifth a change, the rest heartbeats.
        for offset in 1..=20 {
            ring.push(event(offset, offset % 5 == 0), 0);
        }
        // Four changes held (5, 10, 15, 20) while sixteen heartbeats came and went.
        assert_eq!(ring.len(), 8);
        assert_eq!(offsets(ring.after(0, true)), Some(vec![5, 10, 15, 20]));
        assert_eq!(offsets(ring.after(12, true)), Some(vec![15, 20]));
        // Heartbeats 14 and older are gone: a full stream from before them cannot resume.
        assert_eq!(offsets(ring.after(12, false)), None);
        assert_eq!(
            offsets(ring.after(14, false)),
            Some(vec![15, 16, 17, 18, 19, 20])
        );
        assert_eq!(offsets(ring.after(20, false)), Some(vec![]));
        // A fifth change lets the first go.
        ring.push(event(21, true), 0);
        assert_eq!(offsets(ring.after(4, true)), None);
        assert_eq!(offsets(ring.after(5, true)), Some(vec![10, 15, 20, 21]));
        // A page stops at `upto` and at `max`.
        assert_eq!(offsets(ring.page(14, 19, false, 3)), Some(vec![15, 16, 17]));
        assert_eq!(offsets(ring.page(17, 19, false, 3)), Some(vec![18, 19]));
        assert_eq!(offsets(ring.page(5, 20, true, 2)), Some(vec![10, 15]));
    }

    #[test]
    fn at_most_a_bounded_number_of_heartbeats_is_kept() {
        let mut ring = ReplayRing::new(16_384, 16_384);
        for offset in 1..=(3 * HEARTBEAT_RING as u64) {
            ring.push(event(offset, false), 0);
        }
        assert_eq!(ring.len(), HEARTBEAT_RING);
        assert_eq!(offsets(ring.after(0, true)), Some(vec![]));
    }

    #[test]
    fn no_more_events_are_kept_than_peers_online_above_the_floor() {
        let mut ring = ReplayRing::new(16_384, 10);
        let mut offset = 0;
        let mut push = |ring: &mut ReplayRing, count: usize, change: bool, online: usize| {
            for _ in 0..count {
                offset += 1;
                ring.push(event(offset, change), online);
            }
            offset
        };
        // A few peers: the floor.
        let last = push(&mut ring, 100, true, 3);
        assert_eq!(ring.len(), 10);
        assert_eq!(offsets(ring.after(last - 10, true)).unwrap().len(), 10);
        assert_eq!(offsets(ring.after(last - 11, true)), None);
        // A hundred peers online: a hundred changes, and as many heartbeats.
        let last = push(&mut ring, 500, true, 100);
        push(&mut ring, 500, false, 100);
        assert_eq!(ring.len(), 200);
        assert_eq!(offsets(ring.after(last - 100, true)).unwrap().len(), 100);
        // Most of them left: the next change (1101) lets go of what is past the new bound,
        // all but the last 19 changes before the heartbeats (600 was the last).
        push(&mut ring, 1, true, 20);
        assert_eq!(ring.changes.len(), 20);
        assert_eq!(offsets(ring.after(581, true)).unwrap().len(), 20);
        assert_eq!(offsets(ring.after(580, true)), None);
        assert!(ring.changes.capacity() <= 64, "{}", ring.changes.capacity());
    }
}
