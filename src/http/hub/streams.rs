//! The live streams: `GET /events` (Server-Sent Events) and `GET /ws` (WebSocket).
//!
//! Both start with a snapshot of the peers online (or, for a reconnecting SSE client whose
//! `Last-Event-ID` is still in the ring, exactly the events it missed), then forward live events.
//! The snapshot is read from the registry a page at a time as it is written (see
//! [`crate::services::hub::snapshot`]); on SSE its position (`id:`) follows its last frame.
//! Frames are the bytes the hub serialized once; a stream that falls behind is closed. Only a
//! request with a live admin session gets the frames with emails, and only while that session
//! lives: after the admin signs out, the same stream carries public frames.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures_util::{FutureExt, StreamExt, stream};
use libp2p_identity::PeerId;
use serde::Deserialize;
use std::future::Future;
use std::pin::Pin;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};

use super::HubApp;
use crate::http::client_ip::ClientIp;
use crate::http::error::HttpError;
use crate::http::json_api::ApiQuery;
use crate::http::security;
use crate::http::server::{Connection, DirectRoute, RawRequest, refuse, write_all_vectored};
use crate::http::session::{AdminAuth, COOKIE, cookie_value};
use crate::http::stall::StallGuard;
use crate::http::websocket::{FRAMES_PER_WRITE, WsSocket, WsUpgrade};
use crate::services::hub::limits::StreamSlot;
use crate::services::hub::presence::{MAX_BODY_BYTES, Presence, PresenceError};
use crate::services::hub::snapshot::{Snapshot, SnapshotPage};
use crate::services::hub::{Audience, Hub, HubEvent, Replay, ReplayPage, Signal, Subscription};

const KEEPALIVE_FRAME: &[u8] = b": keep-alive\n\n";
/// Most bytes waiting to be written to one WebSocket client.
const WS_WRITE_BUFFER_CAP: usize = 1024 * 1024;
/// Each WebSocket's read buffer, allocated when it opens and kept for the socket's life: a
/// presence message is usually under 1 KiB, and a larger one grows the buffer to its announced
/// length once its header is read. tungstenite's default of 128 KiB made an idle subscriber cost
/// the hub ≈136 KiB; 4 KiB was most of what a live peer's socket held.
const WS_READ_BUFFER: usize = 1024;
/// Pings a WebSocket client may send per [`PING_WINDOW`]; more closes the socket (1008).
const MAX_PINGS_PER_WINDOW: u32 = 20;
const PING_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a closing WebSocket waits for the client's answering close.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);
const RESTART_FRAME: &[u8] = b"retry: 1000\n: the hub is restarting\n\n";
/// The close code a WebSocket is closed with when the hub stops (RFC 6455: service restart).
const RESTARTING: u16 = 1012;

pub fn routes() -> Router<HubApp> {
    Router::new()
        .route("/events", get(stream_events))
        .route("/ws", get(open_websocket))
}

#[derive(Debug, Deserialize)]
struct StreamParams {
    changes: Option<String>,
    peer_id: Option<String>,
    /// For clients that cannot set the `Last-Event-ID` header (WebSocket).
    last_event_id: Option<String>,
    /// WebSocket only: send the stream's position now and then, to resume from (see
    /// [`WsSession::run`]).
    positions: Option<String>,
}

impl StreamParams {
    fn changes_only(&self) -> bool {
        is_yes(self.changes.as_deref())
    }

    fn positions(&self) -> bool {
        is_yes(self.positions.as_deref())
    }
}

fn is_yes(value: Option<&str>) -> bool {
    matches!(value, Some("1" | "true" | "yes"))
}

/// Who is watching a stream: a request with a live admin session sees emails, everybody else the
/// public frames. The session is checked again before each event, so a stream opened by an
/// admin who has since signed out (or whose session expired) carries public frames from then on.
#[derive(Clone)]
struct Viewer {
    admin: Option<(AdminAuth, String)>,
}

impl Viewer {
    /// The viewer a request's cookie names. A session this process does not know may be in the
    /// peer database (started on another instance, or before a restart): it is asked first, so
    /// that the stream's snapshot is already the admin's.
    async fn of(app: &HubApp, headers: &HeaderMap) -> Self {
        let mut admin = None;
        if app.admin.enabled()
            && let Some(token) = cookie_value(headers, COOKIE)
            && app.admin.sessions.recognize(token).await
        {
            admin = app
                .admin
                .sessions
                .get(token)
                .map(|session| (app.admin.clone(), session.token));
        }
        Viewer { admin }
    }

    fn audience(&mut self) -> Audience {
        match &self.admin {
            Some((auth, token)) if auth.sessions.is_live(token) => Audience::Admin,
            Some(_) => {
                self.admin = None;
                Audience::Public
            }
            None => Audience::Public,
        }
    }
}

async fn stream_events(
    State(app): State<HubApp>,
    ClientIp(ip): ClientIp,
    ApiQuery(params): ApiQuery<StreamParams>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let body = Body::from_stream(open_event_stream(&app, ip, &params, &headers).await?);
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// Opens an event stream for the client at `ip` (within the stream limits), resuming from its
/// `Last-Event-ID` (the header, or the query's `last_event_id`) when it gave one; the routed and
/// the direct `GET /events` both open theirs here.
async fn open_event_stream(
    app: &HubApp,
    ip: IpAddr,
    params: &StreamParams,
    headers: &HeaderMap,
) -> Result<
    impl futures_util::Stream<Item = Result<Bytes, std::convert::Infallible>> + use<>,
    HttpError,
> {
    let viewer = Viewer::of(app, headers).await;
    let slot = app.hub.open_stream(ip)?;
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .or(params.last_event_id.as_deref());
    let subscription = app.hub.subscribe(last_event_id, params.changes_only());
    Ok(sse_frames(app.hub.clone(), subscription, viewer, slot))
}

struct SseStream {
    hub: Hub,
    viewer: Viewer,
    /// Frames of the hub's own (retry, reset, the snapshot's id) and a replay's page.
    pending: VecDeque<Bytes>,
    /// The replay still to send, read from the rings a page at a time.
    replay: Option<Replay>,
    /// The snapshot still to send, and the page of it being written.
    snapshot: Option<Box<Snapshot>>,
    page: Option<(SnapshotPage, Audience)>,
    live: broadcast::Receiver<Signal>,
    /// The stream ends once `pending` is written.
    finished: bool,
    _slot: StreamSlot,
}

fn sse_frames(
    hub: Hub,
    subscription: Subscription,
    viewer: Viewer,
    slot: StreamSlot,
) -> impl futures_util::Stream<Item = Result<Bytes, std::convert::Infallible>> {
    let Subscription {
        reset,
        replay,
        snapshot,
        live,
        position: _,
        stopping: finished,
    } = subscription;
    let mut pending = VecDeque::with_capacity(2);
    // Sent first so the headers reach the client at once, and so clients reconnect quickly.
    pending.push_back(Bytes::from_static(b"retry: 2000\n\n"));
    if reset {
        pending.push_back(Bytes::from(format!(
            "event: reset\ndata: {{\"epoch\":\"{}\"}}\n\n",
            hub.epoch()
        )));
    }
    // A stream that is told to reconnect at once need not be sent what it missed first.
    let replay = replay.filter(|_| !finished);
    if finished && snapshot.is_none() {
        pending.push_back(Bytes::from_static(RESTART_FRAME));
    }
    let state = SseStream {
        hub,
        viewer,
        pending,
        replay,
        snapshot,
        page: None,
        live,
        finished,
        _slot: slot,
    };
    stream::unfold(state, |mut s| async move {
        loop {
            if let Some(frame) = s.pending.pop_front() {
                return Some((Ok(frame), s));
            }
            if let Some(replay) = &mut s.replay {
                match replay.next_page() {
                    ReplayPage::Events(events) => {
                        let audience = s.viewer.audience();
                        s.pending
                            .extend(events.iter().map(|e| e.frames(audience).sse.clone()));
                    }
                    ReplayPage::Done => {
                        s.replay = None;
                        // The queue held a page of the replay; it need not stay that large.
                        s.pending.shrink_to_fit();
                    }
                    ReplayPage::Gone => {
                        note_dropped(&s.hub);
                        return None;
                    }
                }
                continue;
            }
            if let Some((page, audience)) = &mut s.page {
                if let Some(event) = page.pop() {
                    let frame = event.frames(*audience).sse.clone();
                    return Some((Ok(frame), s));
                }
                s.page = None;
            }
            let Some(snapshot) = &mut s.snapshot else {
                break;
            };
            match snapshot.next_page() {
                Some(page) => s.page = Some((page, s.viewer.audience())),
                None => {
                    // The snapshot's position, now that all of it is out.
                    s.pending
                        .push_back(Bytes::from(format!("id: {}\n\n", snapshot.id())));
                    if s.finished {
                        s.pending.push_back(Bytes::from_static(RESTART_FRAME));
                    }
                    s.snapshot = None;
                }
            }
        }
        if s.finished {
            return None;
        }
        // The keep-alive ticks every 15 s whether or not events flowed: resetting a timer per
        // event per subscriber costs more than an occasional redundant comment.
        let frame = next_sse_frame(&mut s).await?;
        Some((Ok(frame), s))
    })
}

async fn next_sse_frame(s: &mut SseStream) -> Option<Bytes> {
    match s.live.recv().await {
        Ok(Signal::Event(event)) => {
            s.hub.metrics().observe_fanout(event.accepted_at.elapsed());
            Some(event.frames(s.viewer.audience()).sse.clone())
        }
        Ok(Signal::KeepAlive) => Some(Bytes::from_static(KEEPALIVE_FRAME)),
        Ok(Signal::Shutdown) => {
            s.finished = true;
            Some(Bytes::from_static(RESTART_FRAME))
        }
        Err(RecvError::Lagged(_)) => {
            note_dropped(&s.hub);
            None
        }
        Err(RecvError::Closed) => None,
    }
}

fn note_dropped(hub: &Hub) {
    hub.metrics()
        .dropped_slow_subscribers
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::info!("a subscriber fell behind and was disconnected");
}

async fn open_websocket(
    State(app): State<HubApp>,
    ClientIp(ip): ClientIp,
    ApiQuery(params): ApiQuery<StreamParams>,
    headers: HeaderMap,
    upgrade: Result<WsUpgrade, HttpError>,
) -> Result<Response, HttpError> {
    let peer_text = params
        .peer_id
        .as_deref()
        .ok_or_else(|| HttpError::bad_request("the peer_id query parameter is required"))?;
    let peer_id = PeerId::from_str(peer_text).map_err(|e| {
        HttpError::from(PresenceError::BadPeerId(
            peer_text.to_owned(),
            e.to_string(),
        ))
    })?;
    let upgrade = upgrade?;
    let viewer = Viewer::of(&app, &headers).await;
    let slot = app.hub.open_stream(ip)?;
    let subscription = app
        .hub
        .subscribe(params.last_event_id.as_deref(), params.changes_only());
    // One allocation the upgrade's task points to: captured and moved by value instead, the
    // session's fields would take room in that task for the socket's whole life twice over.
    let session = Box::new(WsSession {
        hub: app.hub,
        ip,
        peer_id,
        viewer,
        positions: params.positions(),
        subscription,
        _slot: slot,
    });
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_BODY_BYTES))
        .max_frame_size(Some(MAX_BODY_BYTES))
        // Replies (pongs included) wait here while the client does not read; past the cap a
        // send fails and the session ends, as a stalled SSE subscriber's does.
        .max_write_buffer_size(WS_WRITE_BUFFER_CAP)
        .read_buffer_size(WS_READ_BUFFER)
        // What tungstenite writes (control messages, errors) goes out as it is sent, so its
        // write buffer never grows to hold a batch and keep that memory for the socket's life;
        // presence messages are written by `send_texts`, which holds nothing.
        .write_buffer_size(0);
    Ok(upgrade.serve(config, move |socket| session.run(socket)))
}

struct WsSession {
    hub: Hub,
    ip: IpAddr,
    peer_id: PeerId,
    viewer: Viewer,
    /// Whether the client asked for its stream positions (`positions=1`).
    positions: bool,
    subscription: Subscription,
    _slot: StreamSlot,
}

impl WsSession {
    /// Serves one WebSocket: what the subscription starts with, then live events both ways.
    ///
    /// A client that asked for positions (`positions=1`) is also sent `{"type":"reset"}` first
    /// when the `last_event_id` it gave could not be resumed from (a snapshot follows), and
    /// `{"type":"position","id":…}` after each page of a replay, once what the subscription
    /// started with is sent (so a resumed stream's first message is never a reset), and then
    /// with the keep-alive when events arrived since: an id to reconnect with
    /// (`last_event_id=`), which replays only what was missed after it. Presence messages are
    /// the same bytes for every client.
    async fn run(mut self: Box<Self>, mut socket: WsSocket) {
        let session = self.hub.next_session_id();
        let mut published = false;
        // The last event sent and the position last told, for `positions=1`.
        let mut last_event: Option<Arc<HubEvent>> = None;
        // What the subscription starts with is written by a future of its own, boxed: it is
        // done with once written, and held inline it would size every session's task for the
        // socket's whole life.
        let start = Box::pin(self.send_start(&mut socket)).await;
        let Ok((mut told, fell_behind)) = start else {
            return;
        };
        let every = self.hub.options().ws_ping;
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let mut last_pong = Instant::now();
        let mut pings = PingBudget::new();
        let close: Ending = loop {
            if self.subscription.stopping {
                break Some((RESTARTING, "the hub is restarting"));
            }
            if fell_behind {
                note_dropped(&self.hub);
                break Some((1013, "too slow; reconnect"));
            }
            tokio::select! {
                incoming = socket.recv() => match incoming {
                    Some(Ok(Message::Text(text))) => {
                        let reply = self.publish(text.as_bytes(), session);
                        published |= reply.is_ok();
                        if let Err(error) = reply {
                            let frame = serde_json::json!({
                                "error": error.to_string(),
                                "reason": error.reason(),
                                "retry_after": error.retry_after_seconds(),
                            })
                            .to_string();
                            if socket.send(Message::Text(frame.into())).await.is_err() {
                                break None;
                            }
                        }
                    }
                    Some(Ok(Message::Binary(bytes))) => {
                        let reply = self.publish(&bytes, session);
                        published |= reply.is_ok();
                    }
                    Some(Ok(Message::Pong(_))) => last_pong = Instant::now(),
                    Some(Ok(Message::Ping(_))) => {
                        last_pong = Instant::now();
                        if !pings.take() {
                            tracing::info!(client = %self.ip, "a WebSocket client sent too many pings");
                            break Some((1008, "too many pings"));
                        }
                    }
                    Some(Ok(Message::Frame(_))) => {}
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break None,
                },
                signal = self.subscription.live.recv() => {
                    // Events that arrived together go out together: under load a socket is
                    // written once for all it is owed, not once per event.
                    let signal = match signal {
                        Ok(Signal::Event(first)) => {
                            let (more, after) = take_waiting(&mut self.subscription.live);
                            let audience = self.viewer.audience();
                            let metrics = self.hub.metrics();
                            for event in std::iter::once(&first).chain(&more) {
                                metrics.observe_fanout(event.accepted_at.elapsed());
                            }
                            let texts = std::iter::once(&first)
                                .chain(&more)
                                .map(move |event| event.frames(audience).json.clone());
                            let written = socket.send_texts(texts).await;
                            if written.is_err() {
                                break None;
                            }
                            if self.positions {
                                last_event = Some(more.last().cloned().unwrap_or(first));
                            }
                            match after {
                                Some(signal) => signal,
                                None => continue,
                            }
                        }
                        other => other,
                    };
                    match signal {
                        Ok(Signal::Event(_)) => unreachable!("events are written above"),
                        // WebSocket liveness is the ping below; the keep-alive tells positions.
                        Ok(Signal::KeepAlive) => {
                            if self.positions
                                && tell_position(&mut socket, &last_event, &mut told).await.is_err()
                            {
                                break None;
                            }
                        }
                        Ok(Signal::Shutdown) | Err(RecvError::Closed) => {
                            break Some((RESTARTING, "the hub is restarting"));
                        }
                        Err(RecvError::Lagged(_)) => {
                            note_dropped(&self.hub);
                            break Some((1013, "too slow; reconnect"));
                        }
                    }
                }
                _ = ping.tick() => {
                    if last_pong.elapsed() > every * 3 {
                        break Some((1001, "no pong"));
                    }
                    if socket.send(Message::Ping(Bytes::new())).await.is_err() {
                        break None;
                    }
                }
            }
        };
        let hub_stopping = matches!(close, Some((RESTARTING, _)));
        if let Some((code, reason)) = close {
            Box::pin(close_with(&mut socket, code, reason)).await;
        }
        // The socket was this peer's presence: closing it takes the peer offline, unless it has
        // published through another connection since — or the hub is stopping: the peer has
        // not left, and comes back within its TTL (here after the restart, or to another
        // instance). Taken offline, every peer of a restarted hub would leave and come back,
        // each an event for every other.
        if published && !hub_stopping {
            self.hub.disconnect_session(&self.peer_id, session);
        }
    }

    /// Writes what the subscription starts with: a reset (to a client that asked for
    /// positions and could not resume), the replay or the snapshot, then the position. Returns
    /// the position told, and whether the rings let go of replayed events before they were
    /// written (the session must then end).
    async fn send_start(
        &mut self,
        socket: &mut WsSocket,
    ) -> Result<(Option<String>, bool), WsError> {
        let mut told: Option<String> = None;
        if self.positions && self.subscription.reset {
            let reset = Message::Text(Utf8Bytes::from_static(r#"{"type":"reset"}"#));
            socket.send(reset).await?;
        }
        let mut fell_behind = false;
        if let Some(replay) = self.subscription.replay.take() {
            fell_behind = !self.send_replay(socket, replay, &mut told).await?;
        }
        if let Some(mut snapshot) = self.subscription.snapshot.take() {
            while let Some(mut page) = snapshot.next_page() {
                let audience = self.viewer.audience();
                // A page goes out in as few writes as it takes, each event let go of as written.
                let texts = std::iter::from_fn(|| page.pop())
                    .map(move |event| event.frames(audience).json.clone());
                socket.send_texts(texts).await?;
            }
        }
        if self.positions && !fell_behind {
            // Unless the replay's last page already said it.
            if told.as_deref() != Some(self.subscription.position.as_str()) {
                socket
                    .send(position_frame(&self.subscription.position))
                    .await?;
            }
            told = Some(std::mem::take(&mut self.subscription.position));
        }
        Ok((told, fell_behind))
    }

    /// Writes a replay a page at a time and, to a client that asked for positions, where it
    /// stands after each page: a cut in a long replay resumes from there rather than from the
    /// start of the gap again. `Ok(false)` when the rings let go of events not yet written.
    async fn send_replay(
        &mut self,
        socket: &mut WsSocket,
        mut replay: Replay,
        told: &mut Option<String>,
    ) -> Result<bool, WsError> {
        loop {
            let events = match replay.next_page() {
                ReplayPage::Events(events) => events,
                ReplayPage::Done => return Ok(true),
                ReplayPage::Gone => return Ok(false),
            };
            let audience = self.viewer.audience();
            let texts = events
                .iter()
                .map(move |event| event.frames(audience).json.clone());
            socket.send_texts(texts).await?;
            if self.positions {
                tell_position(socket, &events.last().cloned(), told).await?;
            }
        }
    }

    fn publish(&self, bytes: &[u8], session: u64) -> Result<(), PresenceError> {
        self.hub.check_rate(self.ip)?;
        let checked = Presence::parse_and_check(bytes).inspect_err(|e| self.hub.note_reject(e))?;
        if checked.peer_id != self.peer_id {
            let error = PresenceError::WrongPeer {
                expected: self.peer_id.to_base58(),
                got: checked.peer_id.to_base58(),
            };
            self.hub.note_reject(&error);
            return Err(error);
        }
        self.hub
            .apply_from(checked, Some(session))
            .inspect_err(|e| self.hub.note_reject(e))
    }
}

/// Counts a client's pings in fixed windows: each is answered with a pong, so a flood of them
/// is work and memory the hub spends for nothing.
struct PingBudget {
    window_start: Instant,
    count: u32,
}

impl PingBudget {
    fn new() -> Self {
        PingBudget {
            window_start: Instant::now(),
            count: 0,
        }
    }

    /// Takes one ping; false once the window's budget is spent.
    fn take(&mut self) -> bool {
        if self.window_start.elapsed() >= PING_WINDOW {
            self.window_start = Instant::now();
            self.count = 0;
        }
        self.count += 1;
        self.count <= MAX_PINGS_PER_WINDOW
    }
}

/// How a session ends: closed with a code and reason, or (`None`) because the client left.
type Ending = Option<(u16, &'static str)>;

/// Takes the events already waiting in `live` (at most [`FRAMES_PER_WRITE`] less one, to go out
/// with the one just received), and the first signal that is not an event, if one was taken
/// on the way.
fn take_waiting(
    live: &mut broadcast::Receiver<Signal>,
) -> (Vec<Arc<HubEvent>>, Option<Result<Signal, RecvError>>) {
    let mut events = Vec::new();
    while events.len() < FRAMES_PER_WRITE - 1 {
        match live.try_recv() {
            Ok(Signal::Event(event)) => events.push(event),
            Ok(other) => return (events, Some(Ok(other))),
            Err(TryRecvError::Empty) => break,
            Err(TryRecvError::Lagged(missed)) => {
                return (events, Some(Err(RecvError::Lagged(missed))));
            }
            Err(TryRecvError::Closed) => return (events, Some(Err(RecvError::Closed))),
        }
    }
    (events, None)
}

/// Closes a WebSocket with `code` and `reason`.
async fn close_with(socket: &mut WsSocket, code: u16, reason: &str) {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: Utf8Bytes::from(reason),
    };
    if socket.send(Message::Close(Some(frame))).await.is_ok() {
        // Closing a socket with unread bytes resets it, and the reset can overtake the close
        // frame: read (and drop) what the client still sends until it answers the close, for
        // a bounded time.
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            while let Some(Ok(message)) = socket.recv().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
}

/// Sends the position of `last_event` unless it is the one last told.
async fn tell_position(
    socket: &mut WsSocket,
    last_event: &Option<Arc<HubEvent>>,
    told: &mut Option<String>,
) -> Result<(), WsError> {
    let Some(id) = last_event.as_deref().and_then(HubEvent::id) else {
        return Ok(());
    };
    if told.as_deref() == Some(id) {
        return Ok(());
    }
    *told = Some(id.to_owned());
    socket.send(position_frame(id)).await
}

fn position_frame(id: &str) -> Message {
    let json = serde_json::json!({ "type": "position", "id": id }).to_string();
    Message::Text(json.into())
}

/// `GET /events` served straight off the socket when no other server has taken the connection
/// yet: an idle subscriber then costs a socket, a broadcast receiver and a small task, not
/// hyper's connection buffers. The bytes on the wire are the same as the routed handler's
/// (which still answers `/events` on a connection hyper serves), and so is the check of the
/// admin session that decides whether emails are sent. `POST /publish` is brief: a peer whose
/// stream is an event stream heartbeats on a kept-alive connection of its own, which then waits
/// between heartbeats without hyper's buffers.
pub struct DirectEvents(pub HubApp);

/// The head of a directly served event stream. Its body ends when the connection closes, as
/// HTTP/1.1 allows without a length.
static DIRECT_EVENTS_HEAD: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\
         x-accel-buffering: no\r\n{}connection: close\r\n\r\n",
        security::HEADER_LINES
    )
});

/// Opens the stream a direct `GET /events` asks for, or refuses it as the routed handler does
/// (`ApiQuery`'s message, the stream limits). Takes the request, which is dropped once read.
async fn open_direct_events(
    app: &HubApp,
    request: RawRequest,
) -> Result<
    impl futures_util::Stream<Item = Result<Bytes, std::convert::Infallible>> + use<>,
    HttpError,
> {
    let ip = app.proxies.client_ip(request.remote.ip(), &request.headers);
    let params: StreamParams =
        serde_urlencoded::from_str(request.query().unwrap_or("")).map_err(|error| {
            HttpError::bad_request(format!("Failed to deserialize query string: {error}"))
        })?;
    open_event_stream(app, ip, &params, &request.headers).await
}

impl DirectRoute for DirectEvents {
    fn matches(&self, method: &str, path: &str) -> bool {
        method == "GET" && path == "/events"
    }

    fn is_brief(&self, method: &str, path: &str) -> bool {
        method == "POST" && path == "/publish"
    }

    fn serve(
        &self,
        request: RawRequest,
        io: StallGuard<Connection>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        // The stream is opened by a future of its own, gone once the stream is open: a stream
        // lives for hours, and neither what its request said (its headers, its query) nor the
        // hub's app is needed after that.
        let app = self.0.clone();
        let opening = Box::pin(async move { open_direct_events(&app, request).await });
        Box::pin(async move {
            match opening.await {
                Ok(frames) => write_direct_events(frames, io).await,
                Err(error) => {
                    let mut io = io;
                    refuse(&mut io, error).await;
                }
            }
        })
    }
}

/// Writes a directly served event stream's head and frames until the stream ends or the
/// client leaves.
async fn write_direct_events(
    frames: impl futures_util::Stream<Item = Result<Bytes, std::convert::Infallible>>,
    mut io: StallGuard<Connection>,
) {
    tokio::pin!(frames);
    if io.write_all(DIRECT_EVENTS_HEAD.as_bytes()).await.is_err() {
        return;
    }
    let mut probe = [0u8; 64];
    loop {
        tokio::select! {
            frame = frames.next() => match frame {
                Some(Ok(frame)) => {
                    // Frames already waiting (a snapshot's, events that came together) go out
                    // with this one, in one write.
                    let mut more = Vec::new();
                    let mut ended = false;
                    while more.len() < FRAMES_PER_WRITE - 1 {
                        match frames.next().now_or_never() {
                            Some(Some(Ok(frame))) => more.push(frame),
                            Some(None) => {
                                ended = true;
                                break;
                            }
                            None => break,
                        }
                    }
                    let written = if more.is_empty() {
                        io.write_all(&frame).await
                    } else {
                        let mut slices: Vec<IoSlice> = std::iter::once(&frame)
                            .chain(&more)
                            .map(|frame| IoSlice::new(frame))
                            .collect();
                        write_all_vectored(&mut io, &mut slices).await
                    };
                    if written.is_err() {
                        return;
                    }
                    if ended {
                        break;
                    }
                }
                _ => break,
            },
            // Anything the client sends is ignored; end of file means it left.
            read = io.read(&mut probe) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
        }
    }
    let _ = io.shutdown().await;
}
