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

/// One message, encoded for both kinds of stream.
#[derive(Debug)]
pub struct Frames {
    /// The message as JSON (the WebSocket frame).
    pub json: Bytes,
    /// `id: …\ndata: …\n\n` (the SSE frame).
    pub sse: Bytes,
}

/// Who a stream is for: the public, or a signed-in administrator (who also sees emails).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    Public,
    Admin,
}

impl HubEvent {
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
    let (public, full) = if presence.email.is_some() {
        let public = Presence {
            email: None,
            sig: None,
            ..presence.clone()
        };
        (
            encode_frames(&id, &public),
            Some(Box::new(encode_frames(&id, presence))),
        )
    } else {
        (encode_frames(&id, presence), None)
    };
    HubEvent {
        offset,
        change,
        public,
        full,
        accepted_at,
    }
}

fn encode_frames(id: &str, presence: &Presence) -> Frames {
    let json = serde_json::to_vec(presence).expect("a presence message always serializes");
    let mut sse = Vec::with_capacity(json.len() + id.len() + 16);
    sse.extend_from_slice(b"id: ");
    sse.extend_from_slice(id.as_bytes());
    sse.extend_from_slice(b"\ndata: ");
    sse.extend_from_slice(&json);
    sse.extend_from_slice(b"\n\n");
    Frames {
        json: Bytes::from(json),
        sse: Bytes::from(sse),
    }
}
