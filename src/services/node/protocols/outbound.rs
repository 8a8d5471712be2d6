//! The asking side of every protocol: opening streams to a peer (dialling it when needed),
//! within a deadline; per peer and protocol the slots that keep requests within what the peer
//! serves at once; idle data streams kept for the next request; and the one-shot exchange that
//! replaces a stream the peer reset before answering.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::{PeerId, StreamProtocol};
use libp2p_stream::Control;
use tokio::io::AsyncReadExt;
use tokio::sync::Semaphore;

use super::admission::{OpenGuard, OpenStreams};
use super::{FetchError, STALL_TIMEOUT, STREAMS_PER_PEER, unreachable};

/// Requests of one protocol a caller has in flight to one peer: fewer than the peer serves,
/// because a stream the caller is done with still counts there until its task has ended.
pub(super) const CALLER_SLOTS: usize = STREAMS_PER_PEER - 2;
/// Idle data streams kept open per peer on the calling side (the serving side closes them after
/// 30 s idle; the caller lets go earlier).
const POOLED_PER_PEER: usize = CALLER_SLOTS;
const POOLED_IDLE: Duration = Duration::from_secs(20);
/// Peers and protocols whose slots are kept before idle ones are forgotten.
const SLOT_KEYS: usize = 1024;
/// Times a new stream the peer reset before answering is replaced (after 10, 20, 40, 80 and
/// 160 ms: the peer resets new streams while its own tasks lag behind).
pub(super) const FRESH_RETRIES: u32 = 5;
/// Longest wait to open a stream to a peer: the turn, a dial when not connected, and the
/// protocol's negotiation.
const OPEN_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one request for a stream is waited for before it is made again.
const OPEN_ATTEMPT: Duration = Duration::from_secs(4);
/// How long a finished stream's slot waits for the peer to end it before it is given back.
const END_WAIT: Duration = Duration::from_secs(1);

/// Idle data streams per peer, with the time each was put back.
type IdleStreams = HashMap<PeerId, Vec<(Instant, libp2p::Stream)>>;

/// The fetching side: idle data streams kept for the next request, and per peer and protocol
/// the slots that keep requests within what the peer serves at once.
#[derive(Clone, Default)]
pub struct Outbound {
    idle: Arc<std::sync::Mutex<IdleStreams>>,
    slots: Arc<std::sync::Mutex<HashMap<(PeerId, StreamProtocol), PeerSlots>>>,
    pub(super) open: OpenStreams,
}

/// Per peer and protocol: requests in flight, and the turn to open a stream.
#[derive(Clone)]
struct PeerSlots {
    /// A peer serves [`STREAMS_PER_PEER`] streams of a protocol at once and resets any more, so
    /// more than [`CALLER_SLOTS`] concurrent requests wait here instead of failing there. A new
    /// data stream is opened only when none is idle, so open streams (in use plus idle) stay
    /// within the same bound.
    in_flight: Arc<Semaphore>,
    /// Streams are opened one after another: the peer takes new streams from a queue of one
    /// and resets those that arrive while it is full.
    opening: Arc<tokio::sync::Mutex<()>>,
}

impl Outbound {
    /// Requests in flight count in `open`.
    pub fn new(open: OpenStreams) -> Self {
        Outbound {
            open,
            ..Default::default()
        }
    }

    /// An idle pooled stream to `peer`, if one is fresh enough.
    pub(super) fn take(&self, peer: PeerId) -> Option<libp2p::Stream> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let streams = idle.get_mut(&peer)?;
        while let Some((since, stream)) = streams.pop() {
            if since.elapsed() < POOLED_IDLE {
                return Some(stream);
            }
        }
        None
    }

    /// Keeps `stream` for the next request to `peer`.
    pub(super) fn put(&self, peer: PeerId, stream: libp2p::Stream) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let streams = idle.entry(peer).or_default();
        streams.retain(|(since, _)| since.elapsed() < POOLED_IDLE);
        if streams.len() < POOLED_PER_PEER {
            streams.push((Instant::now(), stream));
        }
    }

    /// Waits (within the stall limit) for a slot to send `peer` a request of `protocol`.
    pub(super) async fn slot(
        &self,
        peer: PeerId,
        protocol: StreamProtocol,
    ) -> Result<Slot, FetchError> {
        let slots = {
            let mut all = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            let key = (peer, protocol.clone());
            if all.len() >= SLOT_KEYS && !all.contains_key(&key) {
                all.retain(|_, slots| slots.in_flight.available_permits() < CALLER_SLOTS);
            }
            all.entry(key)
                .or_insert_with(|| PeerSlots {
                    in_flight: Arc::new(Semaphore::new(CALLER_SLOTS)),
                    opening: Arc::default(),
                })
                .clone()
        };
        let permit = tokio::time::timeout(STALL_TIMEOUT, slots.in_flight.clone().acquire_owned())
            .await
            .map_err(|_| unreachable("too many requests to this peer are waiting"))?
            .map_err(unreachable)?;
        Ok(Slot {
            _permit: permit,
            _open: self.open.hold(peer),
            opening: slots.opening,
            peer,
            protocol,
        })
    }
}

/// A place among the requests in flight to one peer; given back on drop.
pub(super) struct Slot {
    _permit: tokio::sync::OwnedSemaphorePermit,
    _open: OpenGuard,
    opening: Arc<tokio::sync::Mutex<()>>,
    peer: PeerId,
    protocol: StreamProtocol,
}

impl Slot {
    /// Opens a new stream, on this peer's turn, within [`OPEN_TIMEOUT`] (the wait for the turn
    /// included): a peer that never completes a stream's negotiation holds nobody's turn for
    /// longer.
    pub async fn open(&self, control: &mut Control) -> Result<libp2p::Stream, FetchError> {
        within_open_deadline(async {
            let _turn = self.opening.lock().await;
            ask_for_stream(control, self.peer, self.protocol.clone()).await
        })
        .await
    }
}

/// Opens a stream to `peer` for `protocol` (dialling it if needed and vouched for), within
/// [`OPEN_TIMEOUT`].
pub async fn open_stream(
    control: &mut Control,
    peer: PeerId,
    protocol: StreamProtocol,
) -> Result<libp2p::Stream, FetchError> {
    within_open_deadline(ask_for_stream(control, peer, protocol)).await
}

async fn within_open_deadline(
    open: impl std::future::Future<Output = Result<libp2p::Stream, FetchError>>,
) -> Result<libp2p::Stream, FetchError> {
    tokio::time::timeout(OPEN_TIMEOUT, open)
        .await
        .unwrap_or_else(|_| {
            Err(unreachable(format!(
                "no stream opened within {} s",
                OPEN_TIMEOUT.as_secs()
            )))
        })
}

/// Asks the stream layer for a stream, again each [`OPEN_ATTEMPT`]: a request made while a
/// connection to the peer is coming up can be lost there (it waits for a dial the swarm skips,
/// the peer being connected), and a new request goes over the connection. A negotiation cut
/// short by its connection closing is tried again, at most [`CLOSED_RETRIES`] times: when two
/// peers dial each other at once, one of the two connections closes, possibly under a stream
/// being opened, while the other carries on.
async fn ask_for_stream(
    control: &mut Control,
    peer: PeerId,
    protocol: StreamProtocol,
) -> Result<libp2p::Stream, FetchError> {
    let mut closed = 0;
    loop {
        let attempt = control.open_stream(peer, protocol.clone());
        match tokio::time::timeout(OPEN_ATTEMPT, attempt).await {
            Ok(Ok(stream)) => return Ok(stream),
            // A dial that failed or a peer too slow to answer is no closing connection: not
            // tried again.
            Ok(Err(libp2p_stream::OpenStreamError::Io(err)))
                if closed < CLOSED_RETRIES && !is_failed_dial(&err) && !is_timeout(&err) =>
            {
                closed += 1;
                tracing::debug!(peer.id = %peer, "opening a stream failed ({err}); trying again");
                tokio::time::sleep(retry_pause(closed)).await;
            }
            Ok(Err(err)) => return Err(unreachable(err)),
            Err(_) => {
                tracing::debug!(peer.id = %peer, "no stream after {OPEN_ATTEMPT:?}; asking again")
            }
        }
    }
}

/// Whether the stream layer reported a failed dial: it says `NotConnected` with the dial error's
/// text and nothing under it. A QUIC connection lost under a negotiation also reads as
/// `NotConnected`, but carries the connection's error as its cause: that one is tried again.
fn is_failed_dial(err: &std::io::Error) -> bool {
    err.kind() == std::io::ErrorKind::NotConnected
        && err.get_ref().is_none_or(|inner| inner.source().is_none())
}

fn is_timeout(err: &std::io::Error) -> bool {
    err.kind() == std::io::ErrorKind::TimedOut
}

/// Times a stream whose connection closed during its negotiation is asked for again.
const CLOSED_RETRIES: u32 = 2;

/// The pause before the `failures`-th replacement of a stream the peer reset.
pub(super) fn retry_pause(failures: u32) -> Duration {
    Duration::from_millis(10 << failures.min(6))
}

/// Gives `slot` back once the peer has ended a stream whose answer was read whole (or after
/// [`END_WAIT`]): the peer counts the stream against the caller until then. The answer does not
/// wait for it.
pub(super) fn release_at_end<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
    mut reader: R,
    slot: Slot,
) {
    tokio::spawn(async move {
        let mut byte = [0u8; 1];
        let _ = tokio::time::timeout(END_WAIT, reader.read(&mut byte)).await;
        drop(slot);
    });
}

/// Sends a one-shot request (`request` writes it and reads the answer's first line) on a new
/// stream; a stream closed before that first line ([`FetchError::NoAnswer`]) is replaced: these
/// requests only read, and the peer had not answered. A slow or unreachable peer is not asked
/// again.
pub(super) async fn one_shot<T, F, Fut>(
    control: &mut Control,
    outbound: &Outbound,
    peer: PeerId,
    protocol: StreamProtocol,
    request: F,
) -> Result<(T, Slot), FetchError>
where
    F: Fn(libp2p::Stream) -> Fut,
    Fut: std::future::Future<Output = Result<T, FetchError>>,
{
    let slot = outbound.slot(peer, protocol).await?;
    let mut failures = 0;
    loop {
        let stream = slot.open(control).await?;
        match request(stream).await {
            Err(FetchError::NoAnswer) if failures < FRESH_RETRIES => {
                tokio::time::sleep(retry_pause(failures)).await;
                failures += 1;
            }
            answer => return answer.map(|answer| (answer, slot)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a QUIC stream says when its connection is lost: an error with the connection's
    /// error as its cause.
    #[derive(Debug, thiserror::Error)]
    #[error("connection lost")]
    struct Lost(#[source] std::io::Error);

    #[test]
    fn a_failed_dial_is_told_from_a_connection_lost_under_a_negotiation() {
        use std::io::{Error, ErrorKind};
        let dial = Error::new(
            ErrorKind::NotConnected,
            "Failed to negotiate transport".to_string(),
        );
        assert!(is_failed_dial(&dial));
        assert!(is_failed_dial(&Error::from(ErrorKind::NotConnected)));
        let lost = Error::new(
            ErrorKind::NotConnected,
            Lost(Error::from(ErrorKind::ConnectionAborted)),
        );
        assert!(!is_failed_dial(&lost));
        assert!(!is_failed_dial(&Error::from(ErrorKind::ConnectionReset)));
        assert!(is_timeout(&Error::from(ErrorKind::TimedOut)));
    }
}
