//! The peer's stream protocols, and the seam through which services add theirs.
//!
//! | protocol | module | request | response |
//! |---|---|---|---|
//! | `/goop/site/1.0.0` | [`site`] | `GET <path>\n` | `OK <mime> <size>\n<bytes>` or `ERR <reason>\n` |
//! | `/goop/content/1.0.0` | [`content`] | none | label + `\n` (also the reachability probe) |
//! | `/goop/avatar/1.0.0` | [`avatar`] | none | `OK <size>\n<image>` (PNG or JPEG) or `NONE\n` |
//! | `/goop/data/1.0.0` | [`data`] | one JSON line per request | one JSON line `{ok, data, error, code}` each |
//! | `/goop/mq/1.0.0` | [`mq`] | NDJSON `{type:"msg", id, seq, topic, payload}` | NDJSON `{type:"ack", id, seq}` each |
//!
//! A service adds a protocol to a [`Protocols`] before the node starts: [`Protocols::serve`]
//! for streams that each carry a request and its answer (the handler gets the stream and the
//! peer it came from), [`Protocols::sessions`] for long-lived two-way sessions of lines
//! ([`sessions`]), which arrive on a channel the service keeps. Services that also open
//! sessions get the node handle once it has started: nothing in the wiring points both ways.
//!
//! Every input is bounded: streams served at once (in all, of strangers, per peer and protocol,
//! per address: [`admission`]), the request line (4 KiB, 10 s), file sizes, and the time a
//! transfer may make no progress either way (30 s), so a peer that stops reading or writing
//! holds nothing for long.

mod admission;
pub mod avatar;
pub mod content;
pub mod data;
pub mod mq;
mod outbound;
pub mod sessions;
pub mod site;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use libp2p::{PeerId, StreamProtocol};
use libp2p_stream::Control;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::sync::{mpsc, watch};

pub use admission::OpenStreams;
use admission::{Admission, Budget};
pub use outbound::{Outbound, open_stream};
pub use sessions::{Session, SessionError, SessionLimits, SessionReceiver, SessionSender};
pub use site::{SiteRefusal, SiteReply};

use crate::services::node::budget::PeerAddresses;
use crate::services::node::vouched::KnownPeers;
use crate::services::site::Site;

pub const SITE: StreamProtocol = site::PROTOCOL;
pub const CONTENT: StreamProtocol = content::PROTOCOL;
pub const AVATAR: StreamProtocol = avatar::PROTOCOL;
pub const DATA: StreamProtocol = data::PROTOCOL;

/// Longest request line.
const REQUEST_LIMIT: u64 = 4096;
/// Time a caller has to send its request, and for a whole small response.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Request/response streams served at once, all such protocols together.
const CONCURRENT_STREAMS: usize = 256;
/// Of those, streams of peers nobody vouched for (see [`super::vouched`]); the rest is kept
/// for peers the owner knows.
const STRANGER_STREAMS: usize = CONCURRENT_STREAMS * 3 / 4;
/// Streams of one protocol served at once to one peer.
const STREAMS_PER_PEER: usize = 8;
/// Streams at once from the peers of one address (IPv4 address or IPv6 /64), all protocols
/// together: a crowd of identities on one host gets this share, not every slot.
const STREAMS_PER_ADDRESS: usize = 32;
/// A transfer that makes no progress for this long is abandoned.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Sessions a service has not taken yet; more are refused.
const SESSIONS_WAITING: usize = 16;

/// What the standard protocols serve.
#[derive(Clone)]
pub struct Served {
    pub site: Option<Site>,
    /// The peer's label, as `/goop/content/1.0.0` answers it.
    pub label: watch::Receiver<String>,
    /// The peer directory whose avatar (PNG or JPEG) is served, if any.
    pub avatar: Option<PathBuf>,
    /// The data API, if the peer has a database.
    pub data: Option<crate::services::data::DataService>,
}

/// Serves one admitted stream of a request/response protocol.
type StreamHandler =
    Arc<dyn Fn(PeerId, libp2p::Stream) -> BoxFuture<'static, std::io::Result<()>> + Send + Sync>;

enum Registration {
    Streams(StreamProtocol, StreamHandler),
    Sessions(StreamProtocol, SessionLimits, mpsc::Sender<Session>),
}

/// The protocols a node serves, handed to [`super::Node::start`].
#[derive(Default)]
pub struct Protocols {
    registrations: Vec<Registration>,
}

impl Protocols {
    /// No protocol at all.
    pub fn new() -> Self {
        Protocols::default()
    }

    /// The four standard protocols, serving `served`.
    pub fn standard(served: Served) -> Self {
        let mut protocols = Protocols::new();
        let Served {
            site,
            label,
            avatar,
            data,
        } = served;
        protocols
            .serve(SITE, move |peer, stream| {
                site::serve(peer, stream, site.clone())
            })
            .serve(CONTENT, move |_, stream| {
                content::serve(stream, label.clone())
            })
            .serve(AVATAR, move |_, stream| {
                let dir = avatar.clone();
                async move { avatar::serve(stream, dir.as_deref()).await }
            })
            .serve(DATA, move |peer, stream| {
                data::serve(peer, stream, data.clone())
            });
        protocols
    }

    /// Serves `protocol` with `handler`, one call per stream a peer opens (within the shared
    /// stream budgets).
    pub fn serve<F, Fut>(&mut self, protocol: StreamProtocol, handler: F) -> &mut Self
    where
        F: Fn(PeerId, libp2p::Stream) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
    {
        let handler: StreamHandler = Arc::new(move |peer, stream| Box::pin(handler(peer, stream)));
        self.registrations
            .push(Registration::Streams(protocol, handler));
        self
    }

    /// Takes sessions of `protocol` within `limits`; they arrive on the channel returned (and
    /// are refused while it holds [`SESSIONS_WAITING`] untaken).
    pub fn sessions(
        &mut self,
        protocol: StreamProtocol,
        limits: SessionLimits,
    ) -> mpsc::Receiver<Session> {
        let (sessions, taken) = mpsc::channel(SESSIONS_WAITING);
        self.registrations
            .push(Registration::Sessions(protocol, limits, sessions));
        taken
    }
}

impl From<Served> for Protocols {
    fn from(served: Served) -> Self {
        Protocols::standard(served)
    }
}

/// Starts the accept loop of every protocol of `protocols` on `control`; `addresses` says where
/// each peer that connected to us came from, for the per-address budgets, `known` which peers
/// are not strangers, and `open` counts the streams served.
pub(super) fn start(
    mut control: Control,
    protocols: Protocols,
    addresses: PeerAddresses,
    known: KnownPeers,
    open: OpenStreams,
) -> anyhow::Result<()> {
    let streams = Admission::new(
        Budget {
            total: CONCURRENT_STREAMS,
            strangers: STRANGER_STREAMS,
            per_peer: STREAMS_PER_PEER,
            per_address: STREAMS_PER_ADDRESS,
        },
        known.clone(),
        addresses.clone(),
        open.clone(),
    );
    for registration in protocols.registrations {
        match registration {
            Registration::Streams(protocol, handler) => {
                let incoming = control
                    .accept(protocol.clone())
                    .map_err(|_| anyhow::anyhow!("{protocol} is registered twice"))?;
                let admitted = move |peer, stream, permit| {
                    let served = handler(peer, stream);
                    tokio::spawn(async move {
                        if let Err(err) = served.await {
                            tracing::debug!(peer.id = %peer, "stream ended with an error: {err}");
                        }
                        drop(permit);
                    });
                };
                tokio::spawn(admission::accept(
                    incoming,
                    streams.for_protocol(),
                    admitted,
                ));
            }
            Registration::Sessions(protocol, limits, sessions) => {
                let incoming = control
                    .accept(protocol.clone())
                    .map_err(|_| anyhow::anyhow!("{protocol} is registered twice"))?;
                let budget = Admission::new(
                    Budget {
                        total: limits.max_sessions,
                        strangers: limits.max_sessions * 3 / 4,
                        per_peer: limits.per_peer,
                        per_address: limits.per_address,
                    },
                    known.clone(),
                    addresses.clone(),
                    open.clone(),
                );
                let admitted = move |peer, stream, permit| {
                    let session = sessions::start(peer, stream, limits, permit);
                    if sessions.try_send(session).is_err() {
                        tracing::debug!(peer.id = %peer, %protocol, "sessions not taken; refusing one");
                    }
                };
                tokio::spawn(admission::accept(incoming, budget.for_protocol(), admitted));
            }
        }
    }
    Ok(())
}

/// Opens a session of `protocol` with `peer` (dialling it if needed and vouched for); it counts
/// as an open stream with `peer` while it lasts.
pub async fn open_session(
    control: &mut Control,
    outbound: &Outbound,
    peer: PeerId,
    protocol: StreamProtocol,
    limits: SessionLimits,
) -> Result<Session, FetchError> {
    let stream = open_stream(control, peer, protocol).await?;
    Ok(sessions::start(
        peer,
        stream,
        limits,
        outbound.open.hold(peer),
    ))
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The peer would not send a site file (it answered `ERR <reason>`).
    #[error("the peer refused: {0}")]
    Refused(SiteRefusal),
    #[error("the peer could not be reached: {0}")]
    Unreachable(String),
    /// The stream ended before a single byte of answer.
    #[error("the peer closed the stream without answering")]
    NoAnswer,
    #[error("the peer's answer is malformed: {0}")]
    Malformed(String),
}

fn unreachable(error: impl std::fmt::Display) -> FetchError {
    FetchError::Unreachable(error.to_string())
}

/// The stream was closed or reset under us (not slow, not unreachable).
fn ended(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        error.kind(),
        WriteZero | ConnectionReset | BrokenPipe | UnexpectedEof
    )
}

/// An I/O error of a one-shot request: a stream closed under us means no answer came.
fn lost(error: std::io::Error) -> FetchError {
    match ended(&error) {
        true => FetchError::NoAnswer,
        false => unreachable(error),
    }
}

/// Runs one step of a transfer, failing it if it makes no progress for [`STALL_TIMEOUT`].
async fn within_stall_limit<T>(
    step: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    tokio::time::timeout(STALL_TIMEOUT, step)
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no progress for {} s", STALL_TIMEOUT.as_secs()),
            )
        })?
}

/// One line of at most 4 KiB, within the request timeout.
async fn read_header<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
) -> Result<String, FetchError> {
    let mut line = Vec::new();
    let read = tokio::time::timeout(
        REQUEST_TIMEOUT,
        (&mut *reader)
            .take(REQUEST_LIMIT)
            .read_until(b'\n', &mut line),
    )
    .await
    .map_err(|_| FetchError::Unreachable("no answer within 10 s".into()))?
    .map_err(lost)?;
    if read == 0 {
        return Err(FetchError::NoAnswer);
    }
    if !line.ends_with(b"\n") {
        return Err(FetchError::Malformed("no complete first line".into()));
    }
    line.pop();
    String::from_utf8(line).map_err(|_| FetchError::Malformed("not UTF-8".into()))
}
