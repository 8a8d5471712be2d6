//! A peer's connection to one rendezvous hub, as a task: it publishes this peer's signed presence
//! (`online`, then an `update` every heartbeat and whenever the announcement changes, `offline`
//! when stopped — over `POST /publish` when stopped while its link is down) and passes on what
//! the hub streams about everyone else.
//!
//! The WebSocket (`/ws`) carries both directions when the hub has it (resumed with the position
//! the hub sends, `positions=1`); otherwise the client falls back to `GET /events?changes=1`
//! (resumed with `Last-Event-ID`) plus `POST /publish`. After a
//! failure it waits with exponential backoff and jitter, or as long as the hub's `Retry-After`
//! asks, and tries again — a hub that is down never stops the peer.
//!
//! How the link stands ([`HubStatus`]: connected, connecting, down with the reason, refused with
//! the hub's reason) is kept for the console and logged once per change.

use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use libp2p_identity::Keypair;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::services::hub::presence::{Presence, PresenceType};
use crate::services::hub::unix_ms;

/// Events waiting for the consumer; beyond this, events are dropped rather than stalling.
const EVENT_QUEUE: usize = 1024;
/// Longest SSE line or WebSocket message accepted from a hub.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// What this peer announces; the client adds `type`, `peerId`, `ts` and the signature.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Announcement {
    pub content: String,
    pub email: String,
    pub avatar_hash: Option<String>,
    pub active_template: Option<String>,
    pub addrs: Vec<String>,
}

/// How the client behaves.
#[derive(Debug, Clone)]
pub struct HubClientOptions {
    /// The hub's base URL, `http://` or `https://`.
    pub url: url::Url,
    pub heartbeat: Duration,
    /// Try the WebSocket first (the SSE + POST fallback is always available).
    pub websocket: bool,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// TLS for an `https://` hub: whom to trust.
    pub tls: std::sync::Arc<rustls::ClientConfig>,
}

impl HubClientOptions {
    pub fn new(url: url::Url, heartbeat: Duration) -> Self {
        HubClientOptions {
            url,
            heartbeat,
            websocket: true,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            tls: super::tls::client_config(),
        }
    }
}

/// How the client is talking to the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    WebSocket,
    EventStream,
}

/// What the client reports.
#[derive(Debug, Clone)]
pub enum LinkEvent {
    Connected(Transport),
    /// A presence message the hub forwarded (its `signed`/`verified` are the hub's word).
    Presence(Box<Presence>),
    /// The hub could not resume the stream: what it said before holds only until it says it
    /// again (a snapshot follows).
    Reset,
    /// The hub resumed the stream where it was cut: what it said before still holds.
    Resumed,
    Disconnected {
        reason: String,
        retry_in: Duration,
    },
}

/// How the link to one hub stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HubStatus {
    pub url: String,
    #[serde(flatten)]
    pub link: HubLink,
    /// Why the hub refuses this peer's presence, while it does (a ban says until when).
    pub refused: Option<String>,
}

/// The state of the connection itself; times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum HubLink {
    Connecting {
        since_ms: i64,
    },
    Connected {
        transport: Transport,
        since_ms: i64,
    },
    /// The last try failed; the next one is at `retry_at_ms`.
    Down {
        reason: String,
        since_ms: i64,
        retry_at_ms: i64,
    },
}

/// The handle of a running client. Dropping it stops the client without a goodbye; prefer
/// [`HubClient::stop`], which publishes `offline` first.
pub struct HubClient {
    stop: Option<oneshot::Sender<oneshot::Sender<()>>>,
    status: watch::Receiver<HubStatus>,
}

impl HubClient {
    /// Starts the client. `announcement` may change at any time; a change is published at once.
    pub fn spawn(
        options: HubClientOptions,
        keypair: Keypair,
        announcement: watch::Receiver<Announcement>,
    ) -> (HubClient, mpsc::Receiver<LinkEvent>) {
        let (events, event_rx) = mpsc::channel(EVENT_QUEUE);
        let (stop, stop_rx) = oneshot::channel();
        let (status, status_rx) = watch::channel(HubStatus {
            url: options.url.to_string(),
            link: HubLink::Connecting {
                since_ms: unix_ms(),
            },
            refused: None,
        });
        let task = ClientTask {
            http: reqwest::Client::builder()
                .tls_backend_preconfigured((*options.tls).clone())
                .build()
                .unwrap_or_default(),
            options,
            peer_id: keypair.public().to_peer_id(),
            keypair,
            announcement,
            events,
            last_ts: 0,
            last_event_id: None,
            announced: false,
            listed: false,
            status,
            logged_problem: None,
        };
        tokio::spawn(task.run(stop_rx));
        (
            HubClient {
                stop: Some(stop),
                status: status_rx,
            },
            event_rx,
        )
    }

    /// How the link stands, kept current.
    pub fn status(&self) -> watch::Receiver<HubStatus> {
        self.status.clone()
    }

    /// Publishes `offline` (best effort, at most 3 s) and stops.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let (done, finished) = oneshot::channel();
            if stop.send(done).is_ok() {
                let _ = tokio::time::timeout(Duration::from_secs(3), finished).await;
            }
        }
    }
}

struct ClientTask {
    http: reqwest::Client,
    options: HubClientOptions,
    keypair: Keypair,
    peer_id: libp2p_identity::PeerId,
    announcement: watch::Receiver<Announcement>,
    events: mpsc::Sender<LinkEvent>,
    last_ts: i64,
    last_event_id: Option<String>,
    /// Whether `online` was sent in this connection.
    announced: bool,
    /// Whether this hub may list us: a link was up at some time. Then a client stopped while
    /// its link is down still says goodbye (the hub may be back, its link not yet).
    listed: bool,
    status: watch::Sender<HubStatus>,
    /// The last problem logged (digits left out, so a countdown is not a change).
    logged_problem: Option<String>,
}

/// Why a session ended.
enum Ended {
    /// Asked to stop (with someone to tell when done), or the handle was dropped.
    Stopped(Option<oneshot::Sender<()>>),
    Failed {
        reason: String,
        retry_after: Option<Duration>,
        /// The session had been up long enough to reset the backoff.
        was_healthy: bool,
    },
}

impl ClientTask {
    async fn run(mut self, mut stop: oneshot::Receiver<oneshot::Sender<()>>) {
        let mut failures: u32 = 0;
        loop {
            self.announced = false;
            let ended = if self.options.websocket {
                match self.websocket_session(&mut stop).await {
                    // The hub has no WebSocket: use the event stream.
                    Ended::Failed { reason, .. } if reason.starts_with("no websocket") => {
                        self.event_stream_session(&mut stop).await
                    }
                    ended => ended,
                }
            } else {
                self.event_stream_session(&mut stop).await
            };
            match ended {
                Ended::Stopped(done) => {
                    if let Some(done) = done {
                        let _ = done.send(());
                    }
                    return;
                }
                Ended::Failed {
                    reason,
                    retry_after,
                    was_healthy,
                } => {
                    failures = if was_healthy { 1 } else { failures + 1 };
                    let wait = retry_after.unwrap_or_else(|| self.backoff(failures));
                    self.warn_once(&format!("hub connection lost: {reason}"));
                    tracing::debug!(hub = %self.options.url, "retrying in {wait:?}");
                    let now = unix_ms();
                    let down_since = match &self.status.borrow().link {
                        HubLink::Down { since_ms, .. } => *since_ms,
                        _ => now,
                    };
                    self.status.send_modify(|status| {
                        status.link = HubLink::Down {
                            reason: reason.clone(),
                            since_ms: down_since,
                            retry_at_ms: now + wait.as_millis() as i64,
                        }
                    });
                    self.emit(LinkEvent::Disconnected {
                        reason,
                        retry_in: wait,
                    });
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        done = &mut stop => {
                            if self.listed {
                                let goodbye = self.post(true);
                                let _ = tokio::time::timeout(Duration::from_secs(2), goodbye).await;
                            }
                            if let Ok(done) = done {
                                let _ = done.send(());
                            }
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Exponential backoff with jitter (50–100 % of the step), capped.
    fn backoff(&self, failures: u32) -> Duration {
        let step = crate::services::doubling(
            self.options.initial_backoff,
            failures,
            self.options.max_backoff,
        );
        step.mul_f64(0.5 + rand::random::<f64>() * 0.5)
    }

    /// Logs a problem at WARN when it is not the one logged last.
    fn warn_once(&mut self, problem: &str) {
        let key: String = problem.chars().filter(|c| !c.is_ascii_digit()).collect();
        if self.logged_problem.as_deref() != Some(key.as_str()) {
            tracing::warn!(hub = %self.options.url, "{problem}");
            self.logged_problem = Some(key);
        }
    }

    /// The link is up: say so once, and forget the problems logged before.
    fn connected(&mut self, transport: Transport) {
        let since_ms = unix_ms();
        self.status.send_modify(|status| {
            status.link = HubLink::Connected {
                transport,
                since_ms,
            };
            status.refused = None;
        });
        let how = match transport {
            Transport::WebSocket => "over WebSocket",
            Transport::EventStream => "through its event stream",
        };
        tracing::info!(hub = %self.options.url, "connected to the hub {how}");
        self.listed = true;
        self.logged_problem = None;
        self.emit(LinkEvent::Connected(transport));
    }

    /// The hub refused what we published: kept in the status, logged once per change.
    fn refused(&mut self, error: &str, banned_for: Option<u64>) {
        let text = describe_refusal(error, banned_for);
        self.warn_once(&format!("the hub refuses our presence: {text}"));
        self.status
            .send_if_modified(|status| match status.refused.as_deref() == Some(&text) {
                true => false,
                false => {
                    status.refused = Some(text);
                    true
                }
            });
    }

    /// A publish went through: any refusal is over.
    fn accepted(&mut self) {
        self.status
            .send_if_modified(|status| status.refused.take().is_some());
    }

    fn emit(&self, event: LinkEvent) {
        if self.events.try_send(event).is_err() {
            tracing::debug!("hub events are not being read; dropping one");
        }
    }

    /// The next message to send: `online` first in a connection, `update` after, or `offline`.
    fn message(&mut self, offline: bool) -> Presence {
        let kind = if offline {
            PresenceType::Offline
        } else if self.announced {
            PresenceType::Update
        } else {
            PresenceType::Online
        };
        self.announced = true;
        let announcement = self.announcement.borrow().clone();
        let mut presence = Presence::new(kind, self.peer_id);
        presence.content = Some(announcement.content);
        if !announcement.email.is_empty() {
            presence.email = Some(announcement.email);
        }
        presence.avatar_hash = announcement.avatar_hash;
        presence.active_template = announcement.active_template;
        presence.addrs = Some(announcement.addrs);
        presence.goop_client_version = Some(env!("CARGO_PKG_VERSION").into());
        self.last_ts = unix_ms().max(self.last_ts + 1);
        presence.ts = Some(self.last_ts);
        presence.sign(&self.keypair);
        presence
    }

    fn base(&self, path: &str) -> url::Url {
        let mut url = self.options.url.clone();
        let joined = format!("{}{}", url.path().trim_end_matches('/'), path);
        url.set_path(&joined);
        url
    }

    async fn websocket_session(
        &mut self,
        stop: &mut oneshot::Receiver<oneshot::Sender<()>>,
    ) -> Ended {
        let mut url = self.base("/ws");
        let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        let _ = url.set_scheme(scheme);
        url.query_pairs_mut()
            .append_pair("peer_id", &self.peer_id.to_base58())
            .append_pair("changes", "1")
            .append_pair("positions", "1");
        if let Some(id) = &self.last_event_id {
            url.query_pairs_mut().append_pair("last_event_id", id);
        }
        // Whether the hub resumed is known from its first message.
        let mut verdict_pending = self.last_event_id.is_some();
        let started = tokio::time::Instant::now();
        let mut config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default();
        config.max_message_size = Some(MAX_MESSAGE_BYTES);
        config.max_frame_size = Some(MAX_MESSAGE_BYTES);
        let connect = tokio_tungstenite::connect_async_tls_with_config(
            url.as_str(),
            Some(config),
            false,
            Some(tokio_tungstenite::Connector::Rustls(
                self.options.tls.clone(),
            )),
        );
        let mut socket = match tokio::time::timeout(Duration::from_secs(10), connect).await {
            Ok(Ok((socket, _))) => socket,
            Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => {
                let status = response.status().as_u16();
                let retry_after = retry_after(response.headers());
                return if matches!(status, 404 | 405 | 400) {
                    failed(
                        format!("no websocket at this hub (HTTP {status})"),
                        None,
                        false,
                    )
                } else {
                    failed(
                        format!("the hub answered HTTP {status}"),
                        retry_after,
                        false,
                    )
                };
            }
            Ok(Err(err)) => {
                return failed(
                    format!("cannot connect: {}", crate::services::error_chain(&err)),
                    None,
                    false,
                );
            }
            Err(_) => return failed("connecting timed out".into(), None, false),
        };
        self.connected(Transport::WebSocket);
        let mut heartbeat = tokio::time::interval(self.options.heartbeat);
        let mut announcement = self.announcement.clone();
        let reason = loop {
            tokio::select! {
                _ = heartbeat.tick() => {
                    let text = serde_json::to_string(&self.message(false)).expect("serializes");
                    if let Err(err) = socket.send(Message::text(text)).await {
                        break format!("sending failed: {err}");
                    }
                }
                _ = changed_or_never(&mut announcement) => {
                    let text = serde_json::to_string(&self.message(false)).expect("serializes");
                    if let Err(err) = socket.send(Message::text(text)).await {
                        break format!("sending failed: {err}");
                    }
                }
                incoming = socket.next() => match incoming {
                    Some(Ok(Message::Text(text))) => {
                        let message = HubMessage::parse(text.as_bytes());
                        if std::mem::take(&mut verdict_pending)
                            && !matches!(message, HubMessage::Reset)
                        {
                            self.emit(LinkEvent::Resumed);
                        }
                        self.receive(message);
                    }
                    Some(Ok(Message::Close(_))) | None => break "the hub closed the connection".into(),
                    Some(Err(err)) => break format!("the connection failed: {err}"),
                    Some(Ok(_)) => {}
                },
                done = &mut *stop => {
                    let text = serde_json::to_string(&self.message(true)).expect("serializes");
                    let _ = tokio::time::timeout(Duration::from_secs(2), async {
                        let _ = socket.send(Message::text(text)).await;
                        let _ = socket.close(None).await;
                    })
                    .await;
                    return Ended::Stopped(done.ok());
                }
            }
        };
        failed(reason, None, started.elapsed() > Duration::from_secs(30))
    }

    /// Acts on a message from the hub.
    fn receive(&mut self, message: HubMessage) {
        match message {
            HubMessage::Presence(presence) if presence.peer_id != self.peer_id.to_base58() => {
                self.emit(LinkEvent::Presence(presence))
            }
            HubMessage::Presence(_) | HubMessage::Other => {}
            HubMessage::Position(id) => self.last_event_id = Some(id),
            HubMessage::Reset => self.emit(LinkEvent::Reset),
            HubMessage::Refusal { error, banned_for } => self.refused(&error, banned_for),
        }
    }

    async fn event_stream_session(
        &mut self,
        stop: &mut oneshot::Receiver<oneshot::Sender<()>>,
    ) -> Ended {
        let mut url = self.base("/events");
        url.query_pairs_mut().append_pair("changes", "1");
        let mut request = self.http.get(url).header("accept", "text/event-stream");
        if let Some(id) = &self.last_event_id {
            request = request.header("last-event-id", id.as_str());
        }
        let started = tokio::time::Instant::now();
        let resuming = self.last_event_id.is_some();
        let response = match tokio::time::timeout(Duration::from_secs(10), request.send()).await {
            Ok(Ok(response)) => response,
            Ok(Err(err)) => {
                return failed(
                    format!("cannot connect: {}", crate::services::error_chain(&err)),
                    None,
                    false,
                );
            }
            Err(_) => return failed("connecting timed out".into(), None, false),
        };
        let status = response.status().as_u16();
        let is_event_stream = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if status == 404 || (response.status().is_success() && !is_event_stream) {
            return failed(
                format!("{status}: this is not a Goop hub (no event stream at /events)"),
                None,
                false,
            );
        }
        if !response.status().is_success() {
            return failed(
                format!("the hub answered HTTP {status}"),
                retry_after(response.headers()),
                false,
            );
        }
        self.connected(Transport::EventStream);
        // Whether the hub resumed is known from its first frame after `retry:`.
        let mut verdict_pending = resuming;
        let mut body = response.bytes_stream();
        let mut buffer: Vec<u8> = Vec::new();
        let mut heartbeat = tokio::time::interval(self.options.heartbeat);
        let mut announcement = self.announcement.clone();
        let mut pause_publishing_until: Option<tokio::time::Instant> = None;
        let reason = loop {
            tokio::select! {
                _ = heartbeat.tick() => {
                    if pause_publishing_until.is_some_and(|until| tokio::time::Instant::now() < until) {
                        continue;
                    }
                    if let Some(wait) = self.post(false).await {
                        pause_publishing_until = Some(tokio::time::Instant::now() + wait);
                    }
                }
                _ = changed_or_never(&mut announcement) => {
                    let _ = self.post(false).await;
                }
                chunk = body.next() => match chunk {
                    Some(Ok(bytes)) => {
                        buffer.extend_from_slice(&bytes);
                        if let Err(reason) = self.drain_frames(&mut buffer, &mut verdict_pending) {
                            break reason;
                        }
                    }
                    Some(Err(err)) => break format!("the stream failed: {err}"),
                    None => break "the hub closed the stream".into(),
                },
                done = &mut *stop => {
                    let _ = tokio::time::timeout(Duration::from_secs(2), self.post(true)).await;
                    return Ended::Stopped(done.ok());
                }
            }
        };
        failed(reason, None, started.elapsed() > Duration::from_secs(30))
    }

    /// Publishes over HTTP; returns how long to pause when the hub asks for it.
    async fn post(&mut self, offline: bool) -> Option<Duration> {
        let body = serde_json::to_vec(&self.message(offline)).expect("serializes");
        match self
            .http
            .post(self.base("/publish"))
            .body(body)
            .send()
            .await
        {
            Ok(response) if response.status().as_u16() == 204 => {
                self.accepted();
                None
            }
            Ok(response) => {
                let wait = retry_after(response.headers());
                let retry_seconds = retry_after_seconds(response.headers());
                let status = response.status().as_u16();
                let text = response.text().await.unwrap_or_default();
                let error = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                    .unwrap_or_else(|| format!("HTTP {status} {}", text.trim()));
                // Only a ban is refused with 403; its Retry-After is the ban's remaining time.
                let banned_for = retry_seconds.filter(|_| status == 403);
                self.refused(&error, banned_for);
                if status == 429 { wait } else { None }
            }
            Err(err) => {
                tracing::debug!(hub = %self.options.url, "publishing failed: {err}");
                None
            }
        }
    }

    /// Parses complete SSE frames out of `buffer`. While `verdict_pending`, the first frame after
    /// the `retry:` one tells whether the hub resumed the stream or reset it.
    fn drain_frames(
        &mut self,
        buffer: &mut Vec<u8>,
        verdict_pending: &mut bool,
    ) -> Result<(), String> {
        while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
            let frame: Vec<u8> = buffer.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&frame[..end]);
            let mut event = None;
            let mut data = String::new();
            for line in text.lines() {
                if let Some(id) = line.strip_prefix("id: ") {
                    self.last_event_id = Some(id.to_owned());
                } else if let Some(name) = line.strip_prefix("event: ") {
                    event = Some(name.to_owned());
                } else if let Some(value) = line.strip_prefix("data: ") {
                    data.push_str(value);
                }
            }
            let retry_only = text.lines().all(|line| line.starts_with("retry:"));
            if *verdict_pending && !retry_only {
                *verdict_pending = false;
                if event.as_deref() != Some("reset") {
                    self.emit(LinkEvent::Resumed);
                }
            }
            if event.as_deref() == Some("reset") {
                self.emit(LinkEvent::Reset);
            } else if !data.is_empty() {
                self.receive(HubMessage::parse(data.as_bytes()));
            }
        }
        if buffer.len() > MAX_MESSAGE_BYTES {
            return Err("the hub sent an oversized event".into());
        }
        Ok(())
    }
}

/// What a hub sends: presence, a WebSocket's stream position or reset, or an in-band refusal of
/// what we sent.
enum HubMessage {
    Presence(Box<Presence>),
    Position(String),
    Reset,
    Refusal {
        error: String,
        banned_for: Option<u64>,
    },
    Other,
}

impl HubMessage {
    fn parse(bytes: &[u8]) -> HubMessage {
        if let Ok(presence) = serde_json::from_slice::<Presence>(bytes) {
            return HubMessage::Presence(Box::new(presence));
        }
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
            return HubMessage::Other;
        };
        let text = |key: &str| value.get(key).and_then(|v| v.as_str());
        match (text("type"), text("id"), text("error")) {
            (Some("position"), Some(id), _) => HubMessage::Position(id.to_owned()),
            (Some("reset"), _, _) => HubMessage::Reset,
            (_, _, Some(error)) => HubMessage::Refusal {
                error: error.to_owned(),
                banned_for: (text("reason") == Some("banned"))
                    .then(|| value.get("retry_after").and_then(|s| s.as_u64()))
                    .flatten(),
            },
            _ => HubMessage::Other,
        }
    }
}

/// A hub's refusal in words; a ban (with its remaining seconds) says until when (UTC).
fn describe_refusal(error: &str, banned_for: Option<u64>) -> String {
    match banned_for {
        Some(seconds) => {
            let until = std::time::SystemTime::now() + Duration::from_secs(seconds);
            let until = humantime::format_rfc3339_seconds(until).to_string();
            format!(
                "banned from this hub until {} UTC",
                until.trim_end_matches('Z').replace('T', " ")
            )
        }
        None => error.to_owned(),
    }
}

/// Resolves when the announcement changes; never, once its sender is gone.
async fn changed_or_never(announcement: &mut watch::Receiver<Announcement>) {
    if announcement.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn failed(reason: String, retry_after: Option<Duration>, was_healthy: bool) -> Ended {
    Ended::Failed {
        reason,
        retry_after,
        was_healthy,
    }
}

/// `Retry-After` in seconds, as the hub sent it.
fn retry_after_seconds(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// `Retry-After` as a wait, capped at ten minutes.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    retry_after_seconds(headers).map(|seconds| Duration::from_secs(seconds.min(600)))
}

/// Checks a hub URL the way the client needs it.
pub fn parse_hub_url(text: &str) -> anyhow::Result<url::Url> {
    let url = url::Url::parse(text).with_context(|| format!("{text:?} is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!("{text:?}: a hub URL starts with http:// or https://");
    }
    if url.host_str().is_none_or(str::is_empty) {
        bail!("{text:?}: a hub URL needs a host");
    }
    Ok(url)
}
