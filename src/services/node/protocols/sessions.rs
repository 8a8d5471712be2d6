//! Long-lived two-way sessions: a stream of newline-delimited lines (JSON by convention) each
//! way, for as long as both sides keep it. A service registers a session protocol before the
//! node starts ([`super::Protocols::sessions`]) and gets the sessions peers open on a channel;
//! it opens its own with [`crate::services::node::Node::open_session`]. Either way it holds a
//! [`Session`]: a [`SessionSender`] (cheap to clone) and a [`SessionReceiver`].
//!
//! Everything is bounded. Lines are at most [`SessionLimits::max_line_bytes`]; a longer one
//! ends the session. Each way at most [`SessionLimits::queue`] lines wait: a receiver that does
//! not read stops the session's reading, which fills the stream's window, which makes the other
//! side's `send` wait — backpressure end to end, with nothing buffered without bound. A session
//! that receives nothing for [`SessionLimits::idle_timeout`] ends (a protocol that may go quiet
//! sends keep-alive lines), and a write that makes no progress for 30 s ends it too. Sessions
//! served at once are counted in all, per peer and per address, apart from the one-shot
//! protocols' streams.

use std::sync::Arc;
use std::time::Duration;

use libp2p::PeerId;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, watch};
use tokio_util::compat::{FuturesAsyncReadCompatExt, FuturesAsyncWriteCompatExt};

use super::within_stall_limit;

/// The bounds of one session protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Longest line either way, without its newline.
    pub max_line_bytes: usize,
    /// Lines waiting each way before the sender waits.
    pub queue: usize,
    /// A session that receives nothing for this long ends.
    pub idle_timeout: Duration,
    /// Sessions served at once, all peers together.
    pub max_sessions: usize,
    /// Sessions served at once to one peer.
    pub per_peer: usize,
    /// Sessions served at once to the peers of one address (IPv4 address or IPv6 /64).
    pub per_address: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            max_line_bytes: 64 * 1024,
            queue: 64,
            idle_timeout: Duration::from_secs(90),
            max_sessions: 256,
            per_peer: 4,
            per_address: 32,
        }
    }
}

/// Why a session ended, or a line could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("a line is longer than {0} bytes")]
    LineTooLong(usize),
    #[error("a line may not contain a newline")]
    Newline,
    #[error("the session is closed")]
    Closed,
    #[error("nothing received for {0} s")]
    Idle(u64),
    #[error("the stream failed: {0}")]
    Stream(String),
    #[error("a line is not the JSON expected: {0}")]
    Malformed(String),
}

/// One session with a peer.
pub struct Session {
    pub peer: PeerId,
    pub sender: SessionSender,
    pub receiver: SessionReceiver,
}

/// The sending half; clones send on the same session. The session's writing side closes
/// (the peer reads the end) once every clone is dropped.
#[derive(Clone)]
pub struct SessionSender {
    lines: mpsc::Sender<Vec<u8>>,
    max_line_bytes: usize,
}

/// The receiving half.
pub struct SessionReceiver {
    lines: mpsc::Receiver<Result<Vec<u8>, SessionError>>,
}

impl SessionSender {
    /// Queues one line (without its newline), waiting while the queue is full.
    pub async fn send(&self, line: impl Into<Vec<u8>>) -> Result<(), SessionError> {
        let line = line.into();
        if line.len() > self.max_line_bytes {
            return Err(SessionError::LineTooLong(self.max_line_bytes));
        }
        if line.contains(&b'\n') {
            return Err(SessionError::Newline);
        }
        self.lines
            .send(line)
            .await
            .map_err(|_| SessionError::Closed)
    }

    /// Queues `value` as one JSON line.
    pub async fn send_json<T: Serialize>(&self, value: &T) -> Result<(), SessionError> {
        let line = serde_json::to_vec(value).map_err(|e| SessionError::Malformed(e.to_string()))?;
        self.send(line).await
    }

    /// Whether the session can no longer send.
    pub fn is_closed(&self) -> bool {
        self.lines.is_closed()
    }
}

impl SessionReceiver {
    /// The next line; `Ok(None)` once the peer closed its side, an error if the session ended
    /// otherwise.
    pub async fn recv(&mut self) -> Result<Option<Vec<u8>>, SessionError> {
        self.lines.recv().await.transpose()
    }

    /// The next line, decoded from JSON.
    pub async fn recv_json<T: DeserializeOwned>(&mut self) -> Result<Option<T>, SessionError> {
        match self.recv().await? {
            Some(line) => serde_json::from_slice(&line)
                .map(Some)
                .map_err(|e| SessionError::Malformed(e.to_string())),
            None => Ok(None),
        }
    }
}

/// Runs a session on `stream`; `hold` (a stream permit, a count of open streams) is kept until
/// both directions have ended.
pub(super) fn start<H: Send + Sync + 'static>(
    peer: PeerId,
    stream: libp2p::Stream,
    limits: SessionLimits,
    hold: H,
) -> Session {
    let (read, write) = futures_util::AsyncReadExt::split(stream);
    let (incoming_tx, incoming) = mpsc::channel(limits.queue.max(1));
    let (outgoing, outgoing_rx) = mpsc::channel(limits.queue.max(1));
    // Set when reading failed: the session is over, and the writing side stops too.
    let (failed_tx, failed) = watch::channel(false);
    let hold = Arc::new(hold);
    tokio::spawn(read_lines(
        peer,
        read.compat(),
        incoming_tx,
        limits,
        failed_tx,
        hold.clone(),
    ));
    tokio::spawn(write_lines(
        peer,
        write.compat_write(),
        outgoing_rx,
        failed,
        hold,
    ));
    Session {
        peer,
        sender: SessionSender {
            lines: outgoing,
            max_line_bytes: limits.max_line_bytes,
        },
        receiver: SessionReceiver { lines: incoming },
    }
}

async fn read_lines<R: tokio::io::AsyncRead + Unpin, H>(
    peer: PeerId,
    read: R,
    incoming: mpsc::Sender<Result<Vec<u8>, SessionError>>,
    limits: SessionLimits,
    failed: watch::Sender<bool>,
    _hold: Arc<H>,
) {
    let mut reader = BufReader::new(read);
    let end = loop {
        let mut line = Vec::new();
        let limit = limits.max_line_bytes as u64 + 1;
        let mut limited = (&mut reader).take(limit);
        let read = tokio::select! {
            read = tokio::time::timeout(
                limits.idle_timeout,
                limited.read_until(b'\n', &mut line),
            ) => read,
            // Nobody reads this session any more.
            _ = incoming.closed() => return,
        };
        let error = match read {
            Err(_) => SessionError::Idle(limits.idle_timeout.as_secs()),
            Ok(Err(err)) => SessionError::Stream(err.to_string()),
            // The peer closed its side: the receiver reads the end.
            Ok(Ok(0)) => return,
            Ok(Ok(_)) if line.last() == Some(&b'\n') => {
                line.pop();
                // Waits while the queue is full: the stream's window fills, and the peer's
                // sender waits in turn.
                if incoming.send(Ok(line)).await.is_err() {
                    return;
                }
                continue;
            }
            Ok(Ok(_)) if line.len() > limits.max_line_bytes => {
                SessionError::LineTooLong(limits.max_line_bytes)
            }
            Ok(Ok(_)) => SessionError::Stream("the stream ended inside a line".into()),
        };
        break error;
    };
    tracing::debug!(peer.id = %peer, "session ended: {end}");
    failed.send_replace(true);
    let _ = incoming.send(Err(end)).await;
}

/// How long a session whose reading failed still writes what its handler sends.
const FAREWELL: Duration = Duration::from_secs(1);

/// Writes the lines queued within [`FAREWELL`] (until every sender is gone), then ends the
/// stream.
async fn farewell<W: tokio::io::AsyncWrite + Unpin>(
    write: &mut W,
    outgoing: &mut mpsc::Receiver<Vec<u8>>,
) -> std::io::Result<()> {
    let deadline = tokio::time::Instant::now() + FAREWELL;
    while let Ok(Some(mut line)) = tokio::time::timeout_at(deadline, outgoing.recv()).await {
        line.push(b'\n');
        write.write_all(&line).await?;
    }
    write.shutdown().await
}

async fn write_lines<W: tokio::io::AsyncWrite + Unpin, H>(
    peer: PeerId,
    mut write: W,
    mut outgoing: mpsc::Receiver<Vec<u8>>,
    mut failed: watch::Receiver<bool>,
    _hold: Arc<H>,
) {
    let written: std::io::Result<()> = async {
        loop {
            let line = tokio::select! {
                line = outgoing.recv() => Some(line),
                // (Once reading has ended well, the watch is gone and this never matches.)
                Ok(_) = failed.wait_for(|f| *f) => None,
            };
            let Some(line) = line else {
                // Reading failed (a line too long, a silent peer): what the handler still
                // sends in answer — the reason — goes out for a moment, then the end.
                return within_stall_limit(farewell(&mut write, &mut outgoing)).await;
            };
            let Some(mut line) = line else {
                // Every sender is gone: the peer reads the end.
                return within_stall_limit(write.shutdown()).await;
            };
            line.push(b'\n');
            within_stall_limit(write.write_all(&line)).await?;
            // Lines already queued go out in the same frame.
            if outgoing.is_empty() {
                within_stall_limit(write.flush()).await?;
            }
        }
    }
    .await;
    if let Err(err) = written {
        tracing::debug!(peer.id = %peer, "session write ended: {err}");
    }
    // Whatever the senders queue from now on is refused.
    outgoing.close();
}
