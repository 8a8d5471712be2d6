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

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use libp2p_identity::PeerId;

use super::{Hub, HubEvent};

/// Frames read from the registry at a time, per subscriber.
pub const SNAPSHOT_PAGE: usize = 64;

/// A snapshot being sent: where the next page starts.
pub struct Snapshot {
    hub: Hub,
    /// The last peer sent; `None` before the first page.
    after: Option<PeerId>,
    done: bool,
    /// The stream position the snapshot stands for.
    id: String,
}

impl Snapshot {
    pub(super) fn new(hub: Hub, id: String) -> Self {
        Snapshot {
            hub,
            after: None,
            done: false,
            id,
        }
    }

    /// The next page of frames; `None` once every peer has been given.
    pub fn next_page(&mut self) -> Option<SnapshotPage> {
        if self.done {
            return None;
        }
        let page = self.hub.snapshot_page(self.after.as_ref(), SNAPSHOT_PAGE);
        self.done = page.len() < SNAPSHOT_PAGE;
        let (last, _) = page.last()?;
        self.after = Some(*last);
        let events = page.into_iter().map(|(_, event)| event).collect();
        Some(SnapshotPage::new(self.hub.clone(), events))
    }

    /// The event id to send after the last frame (`id: …` on SSE).
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
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
