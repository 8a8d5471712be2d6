//! A presence event as subscribers receive it: encoded once, as a WebSocket frame and as an SSE
//! frame, in a public form and — only when the message had an email — a full form for the
//! hub's administrators.

use std::time::Instant;

use bytes::Bytes;

use super::presence::Presence;

/// One presence event, serialized once for every subscriber.
///
/// Emails are for the hub's administrators only. The public form leaves `email` out, and with
/// it `sig`: the peer's signature covers the email, so it would not verify without it (the
/// hub's own `signed` still says that the hub checked one). Only a message that carried an
/// email gets a second, full form; every other event has one set of bytes for everybody.
#[derive(Debug)]
pub struct HubEvent {
    pub offset: u64,
    /// False for a heartbeat that changed nothing.
    pub change: bool,
    /// What anyone may see.
    public: Frames,
    /// The message as the peer sent it, when that differs from `public`.
    full: Option<Box<Frames>>,
    /// When the hub accepted the message, for fan-out latency.
    pub accepted_at: Instant,
}

/// One message, encoded for both kinds of stream. Both views share one buffer: the JSON is a
/// slice of the SSE frame, so an event held in the ring costs its bytes once.
#[derive(Debug)]
pub struct Frames {
    /// The message as JSON (the WebSocket frame).
    pub json: Bytes,
    /// `id: …\ndata: …\n\n` (the SSE frame); without the `id:` line in a snapshot.
    pub sse: Bytes,
}

/// Who a stream is for: the public, or a signed-in administrator (who also sees emails).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    Public,
    Admin,
}

impl HubEvent {
    /// The event's stream position (its SSE `id:`); `None` for a snapshot frame.
    pub fn id(&self) -> Option<&str> {
        let line = self.public.sse.strip_prefix(b"id: ")?;
        let end = memchr::memchr(b'\n', line)?;
        std::str::from_utf8(&line[..end]).ok()
    }

    /// The frames `audience` may see.
    pub fn frames(&self, audience: Audience) -> &Frames {
        match (audience, &self.full) {
            (Audience::Admin, Some(full)) => full,
            _ => &self.public,
        }
    }
}

/// Encodes `presence` as the event at `offset` whose SSE id is `id`.
pub(super) fn encode_event(
    offset: u64,
    id: String,
    presence: &Presence,
    change: bool,
    accepted_at: Instant,
) -> HubEvent {
    encode(offset, Some(&id), presence, change, accepted_at)
}

/// Encodes a peer's current state for snapshots: SSE frames without an `id:` line (a snapshot
/// is one position in the stream, whose id follows its last frame), shared by every subscriber
/// that is sent the snapshot until the peer's state changes.
pub(super) fn encode_snapshot_event(presence: &Presence) -> HubEvent {
    encode(0, None, presence, true, Instant::now())
}

fn encode(
    offset: u64,
    id: Option<&str>,
    presence: &Presence,
    change: bool,
    accepted_at: Instant,
) -> HubEvent {
    let (public, full) = if presence.email.is_some() {
        let public = Presence {
            email: None,
            sig: None,
            ..presence.clone()
        };
        (
            encode_frames(id, &public),
            Some(Box::new(encode_frames(id, presence))),
        )
    } else {
        (encode_frames(id, presence), None)
    };
    HubEvent {
        offset,
        change,
        public,
        full,
        accepted_at,
    }
}

fn encode_frames(id: Option<&str>, presence: &Presence) -> Frames {
    let mut sse = Vec::with_capacity(512);
    if let Some(id) = id {
        sse.extend_from_slice(b"id: ");
        sse.extend_from_slice(id.as_bytes());
        sse.extend_from_slice(b"\n");
    }
    sse.extend_from_slice(b"data: ");
    let start = sse.len();
    serde_json::to_writer(&mut sse, presence).expect("a presence message always serializes");
    let end = sse.len();
    sse.extend_from_slice(b"\n\n");
    sse.shrink_to_fit();
    let sse = Bytes::from(sse);
    Frames {
        json: sse.slice(start..end),
        sse,
    }
}
