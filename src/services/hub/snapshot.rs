//! The snapshot a new subscriber is sent: the peers online, read from the registry a page at a
//! time as the stream is written, so that what a subscriber holds does not grow with the number
//! of peers online.
//!
//! Each peer's snapshot frames are encoded once, when a snapshot first needs them after the
//! peer's last accepted message (a heartbeat included), and shared by every subscriber until
//! its next one. A page holds at
//! most [`SNAPSHOT_PAGE`] of them; the hub counts the frames all pages hold
//! (`goop_hub_snapshot_frames_held`).
//!
//! Reading in pages is consistent because the subscription's live events start before the first
//! page is read: a peer that changes, joins or leaves while the snapshot is being written is
//! told by a live event after it (a state it may already have been sent again is harmless;
//! `offline` for a peer not yet sent is ignored by clients). The snapshot's stream position is
//! sent once, after its last frame, so a client that drops halfway through has no position to
//! resume from and is sent a whole snapshot again.
//!
//! A catch-up — what a stream that had seen the shared database up to a version lacks, on any
//! instance — is a snapshot narrowed by [`Since`]: first the departures since, then the peers
//! whose row is newer, read the same way. A page looks at no more than [`SCAN_LIMIT`] entries,
//! so a catch-up that passes over many unchanged peers does not hold the registry's lock long.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use libp2p_identity::PeerId;

use super::{Hub, HubEvent};

/// Frames read from the registry at a time, per subscriber.
pub const SNAPSHOT_PAGE: usize = 64;

/// Registry entries a catch-up's page looks at, at most (those it passes over included).
pub const SCAN_LIMIT: usize = 1024;

/// What a catch-up gives: what changed after the shared database's `version` — for a stream of
/// changes only, announcements that changed.
#[derive(Debug, Clone, Copy)]
pub(super) struct Since {
    pub(super) version: i64,
    pub(super) changes_only: bool,
}

impl Since {
    /// Whether an entry written at `version` (`None`: not written yet) is news to the stream.
    pub(super) fn newer(self, version: Option<i64>) -> bool {
        version.is_none_or(|v| v > self.version)
    }
}

/// One page read from the registry or the departures.
pub(super) struct Scanned {
    pub(super) events: VecDeque<Arc<HubEvent>>,
    /// The last entry looked at, where the next page starts.
    pub(super) last: Option<PeerId>,
    /// Every entry has been looked at.
    pub(super) end: bool,
}

/// A snapshot being sent: where the next page starts.
pub struct Snapshot {
    hub: Hub,
    /// Set for a catch-up.
    since: Option<Since>,
    /// The last departure looked at, and whether all were (a catch-up sends them first).
    departed_after: Option<PeerId>,
    departures_done: bool,
    /// The last peer looked at; `None` before the first page.
    after: Option<PeerId>,
    done: bool,
    /// The stream position the snapshot stands for.
    id: String,
}

impl Snapshot {
    pub(super) fn new(hub: Hub, id: String) -> Self {
        Self::narrowed(hub, id, None)
    }

    /// A catch-up from the shared database's position `since`.
    pub(super) fn since(hub: Hub, id: String, since: Since) -> Self {
        Self::narrowed(hub, id, Some(since))
    }

    fn narrowed(hub: Hub, id: String, since: Option<Since>) -> Self {
        Snapshot {
            hub,
            since,
            departed_after: None,
            departures_done: since.is_none(),
            after: None,
            done: false,
            id,
        }
    }

    /// The next page of frames (a catch-up's may be empty); `None` once everything has been
    /// given.
    pub fn next_page(&mut self) -> Option<SnapshotPage> {
        let scanned = match self.since {
            Some(since) if !self.departures_done => {
                let scanned =
                    self.hub
                        .departures_page(self.departed_after.as_ref(), since, SNAPSHOT_PAGE);
                self.departures_done = scanned.end;
                self.departed_after = scanned.last.or(self.departed_after);
                scanned
            }
            _ if self.done => return None,
            since => {
                let scanned = self
                    .hub
                    .snapshot_page(self.after.as_ref(), since, SNAPSHOT_PAGE);
                self.done = scanned.end;
                self.after = scanned.last.or(self.after);
                scanned
            }
        };
        Some(SnapshotPage::new(self.hub.clone(), scanned.events))
    }

    /// The event id to send after the last frame (`id: …` on SSE).
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("since", &self.since)
            .field("after", &self.after)
            .field("done", &self.done)
            .field("id", &self.id)
            .finish()
    }
}

/// Snapshot frames a subscriber holds until it has written them.
pub struct SnapshotPage {
    hub: Hub,
    events: VecDeque<Arc<HubEvent>>,
}

impl SnapshotPage {
    fn new(hub: Hub, events: VecDeque<Arc<HubEvent>>) -> Self {
        hub.metrics()
            .snapshot_frames_held
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        SnapshotPage { hub, events }
    }

    /// The next frame to write, no longer counted as held.
    pub fn pop(&mut self) -> Option<Arc<HubEvent>> {
        let event = self.events.pop_front()?;
        self.hub
            .metrics()
            .snapshot_frames_held
            .fetch_sub(1, Ordering::Relaxed);
        Some(event)
    }
}

impl Drop for SnapshotPage {
    fn drop(&mut self) {
        self.hub
            .metrics()
            .snapshot_frames_held
            .fetch_sub(self.events.len() as u64, Ordering::Relaxed);
    }
}
