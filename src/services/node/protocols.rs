//! The peer's stream protocols, served and fetched over libp2p streams:
//!
//! | protocol | request | response |
//! |---|---|---|
//! | `/goop/site/1.0.0` | `GET <path>\n` | `OK <mime> <size>\n<bytes>` or `ERR <reason>\n` |
//! | `/goop/content/1.0.0` | none | label + `\n` (also the reachability probe) |
//! | `/goop/avatar/1.0.0` | none | `OK <size>\n<image>` (PNG or JPEG) or `NONE\n` |
//! | `/goop/data/1.0.0` | one JSON line per request | one JSON line `{ok, data, error, code}` each |
//!
//! Every input is bounded: the request line (4 KiB, 10 s), concurrent streams (in all and per
//! peer), file sizes, and the time a transfer may make no progress either way (30 s), so a peer
//! that stops reading or writing holds nothing for long. A data request whose caller closes or
//! resets the stream (or loses the connection) before the answer is dropped there and then,
//! which stops its statements: the caller is gone, nobody would read the answer.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use libp2p::{PeerId, StreamProtocol};
use libp2p_stream::{Control, IncomingStreams};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{Semaphore, watch};
use tokio_util::compat::{FuturesAsyncReadCompatExt, FuturesAsyncWriteCompatExt};

use crate::services::node::budget::PeerAddresses;
use crate::services::node::vouched::KnownPeers;
use crate::services::site::{MAX_FILE_BYTES, Site};

pub const SITE: StreamProtocol = StreamProtocol::new("/goop/site/1.0.0");
pub const CONTENT: StreamProtocol = StreamProtocol::new("/goop/content/1.0.0");
pub const AVATAR: StreamProtocol = StreamProtocol::new("/goop/avatar/1.0.0");
pub const DATA: StreamProtocol = StreamProtocol::new("/goop/data/1.0.0");

/// How long a data stream may sit idle between requests.
const DATA_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest request line.
const REQUEST_LIMIT: u64 = 4096;
/// Time a caller has to send its request, and for a whole small response.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Streams served at once, all protocols together.
const CONCURRENT_STREAMS: usize = 256;
/// Of those, streams of peers nobody vouched for (see [`super::vouched`]); the rest is kept
/// for peers the owner knows.
const STRANGER_STREAMS: usize = CONCURRENT_STREAMS * 3 / 4;
/// Streams of one protocol served at once to one peer.
const STREAMS_PER_PEER: usize = 8;
/// Streams at once from the peers of one address (IPv4 address or IPv6 /64), all protocols
/// together: a crowd of identities on one host gets this share, not every slot.
const STREAMS_PER_ADDRESS: usize = 32;
/// Idle data streams kept open per peer on the calling side (the serving side closes them after
/// [`DATA_IDLE_TIMEOUT`]; the caller lets go earlier).
const POOLED_PER_PEER: usize = CALLER_SLOTS;
/// Requests of one protocol a caller has in flight to one peer: fewer than the peer serves,
/// because a stream the caller is done with still counts there until its task has ended.
const CALLER_SLOTS: usize = STREAMS_PER_PEER - 2;
const POOLED_IDLE: Duration = Duration::from_secs(20);
/// A transfer that makes no progress for this long is abandoned.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Buffer of file transfers, each way.
const COPY_BUFFER: usize = 256 * 1024;
/// Largest avatar served.
const MAX_AVATAR_BYTES: u64 = crate::services::avatar::MAX_AVATAR_BYTES as u64;

/// What the peer serves.
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

/// Starts the accept loops of every protocol on `control`; `addresses` says where each peer
/// that connected to us came from, for the per-address stream budget, `known` which peers
/// are not strangers, and `open` counts the streams served.
pub fn serve(
    mut control: Control,
    served: Served,
    addresses: PeerAddresses,
    known: KnownPeers,
    open: OpenStreams,
) -> anyhow::Result<()> {
    let total = Arc::new(Semaphore::new(CONCURRENT_STREAMS));
    let strangers = Arc::new(Semaphore::new(STRANGER_STREAMS));
    let by_address = Arc::default();
    // One per-peer count per protocol; one per-address count and one total for all.
    let permits = || Permits {
        total: total.clone(),
        strangers: strangers.clone(),
        known: known.clone(),
        per_peer: Arc::default(),
        addresses: addresses.clone(),
        by_address: Arc::clone(&by_address),
        open: open.clone(),
    };
    let site = control.accept(SITE)?;
    let content = control.accept(CONTENT)?;
    let avatar = control.accept(AVATAR)?;
    let data = control.accept(DATA)?;
    tokio::spawn(accept(data, permits(), served.clone(), serve_data));
    tokio::spawn(accept(site, permits(), served.clone(), serve_site));
    tokio::spawn(accept(content, permits(), served.clone(), serve_content));
    tokio::spawn(accept(avatar, permits(), served, serve_avatar));
    Ok(())
}

/// The stream limits every protocol shares.
#[derive(Clone)]
struct Permits {
    total: Arc<Semaphore>,
    strangers: Arc<Semaphore>,
    known: KnownPeers,
    per_peer: Counts<PeerId>,
    addresses: PeerAddresses,
    by_address: Counts<IpAddr>,
    open: OpenStreams,
}

type Counts<K> = Arc<std::sync::Mutex<HashMap<K, usize>>>;

/// Streams open with each peer, served and requested, all protocols together: a peer with none
/// is idle, and its connection the first a stranger's may take the place of (see
/// [`super::vouched`]). Cloning shares the counts.
#[derive(Clone, Default)]
pub struct OpenStreams(Counts<PeerId>);

impl OpenStreams {
    /// Whether any stream with `peer` is open.
    pub fn any(&self, peer: &PeerId) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(peer)
    }

    fn opened(&self, peer: PeerId) {
        take(&self.0, peer, usize::MAX);
    }

    fn closed(&self, peer: &PeerId) {
        give_back(&self.0, peer);
    }
}

/// One admitted stream; its place is given back on drop.
struct Permit {
    _total: tokio::sync::OwnedSemaphorePermit,
    _stranger: Option<tokio::sync::OwnedSemaphorePermit>,
    peer: PeerId,
    per_peer: Counts<PeerId>,
    address: Option<(IpAddr, Counts<IpAddr>)>,
    open: OpenStreams,
}

/// Takes one from `key`'s count if it is under `limit`.
fn take<K: std::hash::Hash + Eq>(counts: &Counts<K>, key: K, limit: usize) -> bool {
    let mut counts = counts.lock().unwrap_or_else(|e| e.into_inner());
    let count = counts.entry(key).or_default();
    if *count >= limit {
        return false;
    }
    *count += 1;
    true
}

/// Gives one back to `key`'s count.
fn give_back<K: std::hash::Hash + Eq>(counts: &Counts<K>, key: &K) {
    let mut counts = counts.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(count) = counts.get_mut(key) {
        *count -= 1;
        if *count == 0 {
            counts.remove(key);
        }
    }
}

impl Permits {
    fn admit(&self, peer: PeerId) -> Option<Permit> {
        let stranger = if self.known.contains(&peer) {
            None
        } else {
            Some(self.strangers.clone().try_acquire_owned().ok()?)
        };
        let total = self.total.clone().try_acquire_owned().ok()?;
        if !take(&self.per_peer, peer, STREAMS_PER_PEER) {
            return None;
        }
        let address = self.addresses.of(&peer);
        if let Some(address) = address
            && !take(&self.by_address, address, STREAMS_PER_ADDRESS)
        {
            give_back(&self.per_peer, &peer);
            return None;
        }
        self.open.opened(peer);
        Some(Permit {
            _total: total,
            _stranger: stranger,
            peer,
            per_peer: self.per_peer.clone(),
            address: address.map(|a| (a, self.by_address.clone())),
            open: self.open.clone(),
        })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        give_back(&self.per_peer, &self.peer);
        if let Some((address, counts)) = &self.address {
            give_back(counts, address);
        }
        self.open.closed(&self.peer);
    }
}

async fn accept<F, Fut>(mut incoming: IncomingStreams, permits: Permits, served: Served, handler: F)
where
    F: Fn(PeerId, libp2p::Stream, Served) -> Fut + Copy + Send + 'static,
    Fut: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
{
    while let Some((peer, stream)) = incoming.next().await {
        // Over a limit a stream is dropped (the caller sees it reset) rather than queued.
        let Some(permit) = permits.admit(peer) else {
            tracing::debug!(peer.id = %peer, "too many streams; refusing one");
            continue;
        };
        let served = served.clone();
        tokio::spawn(async move {
            if let Err(err) = handler(peer, stream, served).await {
                tracing::debug!(peer.id = %peer, "stream ended with an error: {err}");
            }
            drop(permit);
        });
    }
}

async fn serve_site(peer: PeerId, stream: libp2p::Stream, served: Served) -> std::io::Result<()> {
    let (read, write) = futures_util::AsyncReadExt::split(stream);
    let mut write = write.compat_write();
    let mut line = String::new();
    let mut reader = BufReader::new(read.compat().take(REQUEST_LIMIT));
    let read_line = tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await;
    let path = match read_line {
        Ok(Ok(_)) if line.ends_with('\n') => {
            line.trim_end().strip_prefix("GET ").map(str::to_owned)
        }
        _ => None,
    };
    let Some(path) = path else {
        write.write_all(b"ERR bad request\n").await?;
        return write.shutdown().await;
    };
    let Some(site) = &served.site else {
        write.write_all(b"ERR not found\n").await?;
        return write.shutdown().await;
    };
    match site.resolve(&path) {
        Ok(file) => {
            // Large reads make large frames: far fewer trips through Noise and Yamux.
            let mut source = tokio::fs::File::open(&file.path).await?.take(file.size);
            let mut chunk = vec![0u8; COPY_BUFFER];
            let mut copied = 0u64;
            within_stall_limit(
                write.write_all(format!("OK {} {}\n", file.mime, file.size).as_bytes()),
            )
            .await?;
            loop {
                let read = source.read(&mut chunk).await?;
                if read == 0 {
                    break;
                }
                within_stall_limit(write.write_all(&chunk[..read])).await?;
                copied += read as u64;
            }
            tracing::debug!(peer.id = %peer, path, bytes = copied, "served a site file");
        }
        Err(error) => {
            write.write_all(format!("ERR {error}\n").as_bytes()).await?;
        }
    }
    write.shutdown().await
}

async fn serve_content(
    _peer: PeerId,
    stream: libp2p::Stream,
    served: Served,
) -> std::io::Result<()> {
    let mut write = stream.compat_write();
    let label = served.label.borrow().replace('\n', " ");
    tokio::time::timeout(REQUEST_TIMEOUT, async {
        write.write_all(format!("{label}\n").as_bytes()).await?;
        write.shutdown().await
    })
    .await
    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

async fn serve_avatar(
    _peer: PeerId,
    stream: libp2p::Stream,
    served: Served,
) -> std::io::Result<()> {
    let mut write = stream.compat_write();
    let path = served
        .avatar
        .as_deref()
        .and_then(crate::services::avatar::find);
    let image = match path {
        Some(path) => match tokio::fs::metadata(&path).await {
            Ok(meta) if meta.len() <= MAX_AVATAR_BYTES => tokio::fs::read(&path).await.ok(),
            _ => None,
        },
        None => None,
    };
    match image {
        Some(bytes) => {
            write
                .write_all(format!("OK {}\n", bytes.len()).as_bytes())
                .await?;
            write.write_all(&bytes).await?;
        }
        None => write.write_all(b"NONE\n").await?,
    }
    write.shutdown().await
}

/// Answers data requests, one JSON line each, until the caller closes the stream or goes quiet.
/// The caller is the peer the stream came from; each request is read whole before the database
/// is touched, so a slow caller holds no lock, and is dropped if the caller leaves before its
/// answer.
async fn serve_data(peer: PeerId, stream: libp2p::Stream, served: Served) -> std::io::Result<()> {
    use crate::services::data::{Caller, DataError, DataRequest, MAX_REQUEST_BYTES, reply};
    let (read, write) = futures_util::AsyncReadExt::split(stream);
    let mut write = write.compat_write();
    let mut reader = BufReader::new(read.compat());
    let caller = Caller::Peer(peer.to_base58());
    loop {
        let mut line = Vec::new();
        let read = tokio::time::timeout(
            DATA_IDLE_TIMEOUT,
            (&mut reader)
                .take(MAX_REQUEST_BYTES as u64 + 1)
                .read_until(b'\n', &mut line),
        )
        .await;
        let result = match read {
            Err(_) | Ok(Ok(0)) => return write.shutdown().await,
            Ok(Err(err)) => return Err(err),
            Ok(Ok(_)) if line.len() > MAX_REQUEST_BYTES => Err(DataError::TooLarge(format!(
                "a request is at most {MAX_REQUEST_BYTES} bytes"
            ))),
            Ok(Ok(_)) => match serde_json::from_slice::<DataRequest>(&line) {
                Err(err) => Err(DataError::BadRequest(format!("not a data request: {err}"))),
                Ok(request) => match &served.data {
                    Some(data) => {
                        match unless_gone(data.handle(&caller, request), &mut reader).await {
                            Some(result) => result,
                            None => return Ok(()),
                        }
                    }
                    None => Err(DataError::NotEnabled("this peer has no database".into())),
                },
            },
        };
        let too_large = matches!(&result, Err(DataError::TooLarge(_))) && !line.ends_with(b"\n");
        let mut answer = serde_json::to_vec(&reply(&result)).unwrap_or_default();
        answer.push(b'\n');
        within_stall_limit(write.write_all(&answer)).await?;
        within_stall_limit(write.flush()).await?;
        if too_large {
            // The rest of an oversized line cannot be told from the next request.
            return write.shutdown().await;
        }
    }
}

/// Runs `work` while watching the caller's side of the stream: if it ends — the caller closed or
/// reset the stream, or its connection went — before `work` is done, `work` is dropped (which
/// stops the statements it runs) and `None` returned. A next request the caller sends meanwhile
/// stays in the reader's buffer for the next turn.
async fn unless_gone<T, R>(
    work: impl std::future::Future<Output = T>,
    reader: &mut BufReader<R>,
) -> Option<T>
where
    R: tokio::io::AsyncRead + Unpin,
{
    tokio::pin!(work);
    let mut watching = true;
    loop {
        tokio::select! {
            biased;
            done = &mut work => return Some(done),
            ended = reader.fill_buf(), if watching => match ended {
                Ok(bytes) if !bytes.is_empty() => watching = false,
                _ => return None,
            },
        }
    }
}

/// Idle data streams per peer, with the time each was put back.
type IdleStreams = HashMap<PeerId, Vec<(std::time::Instant, libp2p::Stream)>>;

/// The fetching side: idle data streams kept for the next request, and per peer and protocol
/// the slots that keep requests within what the peer serves at once.
#[derive(Clone, Default)]
pub struct Outbound {
    idle: Arc<std::sync::Mutex<IdleStreams>>,
    slots: Arc<std::sync::Mutex<HashMap<(PeerId, StreamProtocol), PeerSlots>>>,
    open: OpenStreams,
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

/// Peers and protocols whose slots are kept before idle ones are forgotten.
const SLOT_KEYS: usize = 1024;
/// Times a new stream the peer reset before answering is replaced (after 10, 20, 40, 80 and
/// 160 ms: the peer resets new streams while its own tasks lag behind).
const FRESH_RETRIES: u32 = 5;
/// Longest wait to open a stream to a peer: the turn, a dial when not connected, and the
/// protocol's negotiation.
const OPEN_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one request for a stream is waited for before it is made again.
const OPEN_ATTEMPT: Duration = Duration::from_secs(4);
/// How long a finished stream's slot waits for the peer to end it before it is given back.
const END_WAIT: Duration = Duration::from_secs(1);

impl Outbound {
    /// Requests in flight count in `open`.
    pub fn new(open: OpenStreams) -> Self {
        Outbound {
            open,
            ..Default::default()
        }
    }

    fn take(&self, peer: PeerId) -> Option<libp2p::Stream> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let streams = idle.get_mut(&peer)?;
        while let Some((since, stream)) = streams.pop() {
            if since.elapsed() < POOLED_IDLE {
                return Some(stream);
            }
        }
        None
    }

    fn put(&self, peer: PeerId, stream: libp2p::Stream) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let streams = idle.entry(peer).or_default();
        streams.retain(|(since, _)| since.elapsed() < POOLED_IDLE);
        if streams.len() < POOLED_PER_PEER {
            streams.push((std::time::Instant::now(), stream));
        }
    }

    /// Waits (within the stall limit) for a slot to send `peer` a request of `protocol`.
    async fn slot(&self, peer: PeerId, protocol: StreamProtocol) -> Result<Slot, FetchError> {
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
        self.open.opened(peer);
        Ok(Slot {
            _permit: permit,
            opening: slots.opening,
            peer,
            protocol,
            open: self.open.clone(),
        })
    }
}

/// A place among the requests in flight to one peer; given back on drop.
struct Slot {
    _permit: tokio::sync::OwnedSemaphorePermit,
    opening: Arc<tokio::sync::Mutex<()>>,
    peer: PeerId,
    protocol: StreamProtocol,
    open: OpenStreams,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.closed(&self.peer);
    }
}

impl Slot {
    /// Opens a new stream, on this peer's turn, within [`OPEN_TIMEOUT`] (the wait for the turn
    /// included): a peer that never completes a stream's negotiation holds nobody's turn for
    /// longer.
    async fn open(&self, control: &mut Control) -> Result<libp2p::Stream, FetchError> {
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
/// the peer being connected), and a new request goes over the connection.
async fn ask_for_stream(
    control: &mut Control,
    peer: PeerId,
    protocol: StreamProtocol,
) -> Result<libp2p::Stream, FetchError> {
    loop {
        let attempt = control.open_stream(peer, protocol.clone());
        if let Ok(opened) = tokio::time::timeout(OPEN_ATTEMPT, attempt).await {
            return opened.map_err(unreachable);
        }
        tracing::debug!(peer.id = %peer, "no stream after {OPEN_ATTEMPT:?}; asking again");
    }
}

fn retry_pause(failures: u32) -> Duration {
    Duration::from_millis(10 << failures.min(6))
}

/// Gives `slot` back once the peer has ended a stream whose answer was read whole (or after
/// [`END_WAIT`]): the peer counts the stream against the caller until then. The answer does not
/// wait for it.
fn release_at_end<R: tokio::io::AsyncRead + Unpin + Send + 'static>(mut reader: R, slot: Slot) {
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
async fn one_shot<T, F, Fut>(
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

/// How one request on a stream went.
enum Exchange {
    Answer(Vec<u8>),
    /// Nothing was sent or answered: the stream had closed (safe to try another).
    Closed(std::io::Error),
    Failed(FetchError),
}

async fn exchange(stream: &mut libp2p::Stream, line: &[u8]) -> Exchange {
    use futures_util::AsyncWriteExt as _;
    if let Err(err) = within_stall_limit(async {
        stream.write_all(line).await?;
        stream.flush().await
    })
    .await
    {
        return match ended(&err) {
            true => Exchange::Closed(err),
            false => Exchange::Failed(unreachable(err)),
        };
    }
    let mut reader = BufReader::new(stream.compat());
    let mut answer = Vec::new();
    let limit = (crate::store::data::MAX_RESULT_BYTES * 4) as u64;
    match within_stall_limit((&mut reader).take(limit).read_until(b'\n', &mut answer)).await {
        Ok(0) => Exchange::Closed(std::io::ErrorKind::UnexpectedEof.into()),
        Ok(_) if answer.ends_with(b"\n") => Exchange::Answer(answer),
        Ok(_) => Exchange::Failed(FetchError::Malformed("the answer was cut short".into())),
        Err(err) => Exchange::Failed(unreachable(err)),
    }
}

/// Sends one data request to `peer` and reads its answer, on a pooled stream when one is open.
pub async fn fetch_data(
    control: &mut Control,
    outbound: &Outbound,
    peer: PeerId,
    request: &crate::services::data::DataRequest,
) -> Result<serde_json::Value, FetchError> {
    let mut line = serde_json::to_vec(request).map_err(|e| FetchError::Malformed(e.to_string()))?;
    line.push(b'\n');
    let slot = outbound.slot(peer, DATA).await?;
    let mut fresh_failures = 0;
    loop {
        let (mut stream, pooled) = match outbound.take(peer) {
            Some(stream) => (stream, true),
            None => (slot.open(control).await?, false),
        };
        match exchange(&mut stream, &line).await {
            Exchange::Answer(answer) => {
                outbound.put(peer, stream);
                return serde_json::from_slice(&answer)
                    .map_err(|e| FetchError::Malformed(e.to_string()));
            }
            // A pooled stream the peer had closed: the request never arrived; use a new one.
            Exchange::Closed(_) if pooled => continue,
            // A new stream the peer reset before reading it (a burst of new streams, or one it
            // still counted as open): the request never arrived either.
            Exchange::Closed(_) if fresh_failures < FRESH_RETRIES => {
                tokio::time::sleep(retry_pause(fresh_failures)).await;
                fresh_failures += 1;
            }
            Exchange::Closed(err) => return Err(unreachable(err)),
            Exchange::Failed(err) => return Err(err),
        }
    }
}

/// A site file fetched from a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteReply {
    pub mime: String,
    pub body: Vec<u8>,
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The peer answered `ERR <reason>`.
    #[error("the peer refused: {0}")]
    Refused(String),
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

/// Fetches `path` from `peer`'s site.
pub async fn fetch_site(
    control: &mut Control,
    outbound: &Outbound,
    peer: PeerId,
    path: &str,
) -> Result<SiteReply, FetchError> {
    if path.contains('\n') || path.len() as u64 > REQUEST_LIMIT - 5 {
        return Err(FetchError::Malformed(
            "the path is not a single short line".into(),
        ));
    }
    let request = format!("GET {path}\n");
    let ((mut reader, mime, size), slot) = one_shot(control, outbound, peer, SITE, |stream| {
        let request = request.clone();
        async move {
            let (read, write) = futures_util::AsyncReadExt::split(stream);
            let mut write = write.compat_write();
            write.write_all(request.as_bytes()).await.map_err(lost)?;
            write.flush().await.map_err(lost)?;
            let mut reader = BufReader::with_capacity(COPY_BUFFER, read.compat());
            let header = read_header(&mut reader).await?;
            if let Some(reason) = header.strip_prefix("ERR ") {
                return Err(FetchError::Refused(reason.to_owned()));
            }
            let mut parts = header.strip_prefix("OK ").unwrap_or("").split(' ');
            let (Some(mime), Some(size)) = (parts.next(), parts.next()) else {
                return Err(FetchError::Malformed(header));
            };
            let mime = mime.to_owned();
            let size: u64 = size
                .parse()
                .map_err(|_| FetchError::Malformed(header.clone()))?;
            Ok((reader, mime, size))
        }
    })
    .await?;
    if size > MAX_FILE_BYTES {
        return Err(FetchError::Malformed(format!(
            "{size} bytes is over the limit"
        )));
    }
    let mut body = Vec::with_capacity(size.min(1 << 20) as usize);
    let mut chunk = vec![0u8; COPY_BUFFER];
    while (body.len() as u64) < size {
        let wanted = (size - body.len() as u64).min(COPY_BUFFER as u64) as usize;
        let read = within_stall_limit(reader.read(&mut chunk[..wanted]))
            .await
            .map_err(unreachable)?;
        if read == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..read]);
    }
    if body.len() as u64 != size {
        return Err(FetchError::Malformed(format!(
            "announced {size} bytes, sent {}",
            body.len()
        )));
    }
    release_at_end(reader, slot);
    Ok(SiteReply { mime, body })
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

/// Fetches `peer`'s avatar; `None` when it has none.
pub async fn fetch_avatar(
    control: &mut Control,
    outbound: &Outbound,
    peer: PeerId,
) -> Result<Option<Vec<u8>>, FetchError> {
    let ((mut reader, header), slot) = one_shot(control, outbound, peer, AVATAR, |stream| async {
        let mut reader = BufReader::new(stream.compat());
        let header = read_header(&mut reader).await?;
        Ok((reader, header))
    })
    .await?;
    if header == "NONE" {
        release_at_end(reader, slot);
        return Ok(None);
    }
    let size: u64 = header
        .strip_prefix("OK ")
        .and_then(|size| size.parse().ok())
        .filter(|size| *size <= MAX_AVATAR_BYTES)
        .ok_or_else(|| FetchError::Malformed(header.clone()))?;
    let mut image = Vec::with_capacity(size as usize);
    within_stall_limit((&mut reader).take(size).read_to_end(&mut image))
        .await
        .map_err(unreachable)?;
    if image.len() as u64 != size {
        return Err(FetchError::Malformed("the image was cut short".into()));
    }
    release_at_end(reader, slot);
    Ok(Some(image))
}

/// Asks `peer` for its label; also tells whether it is reachable.
pub async fn fetch_content(
    control: &mut Control,
    outbound: &Outbound,
    peer: PeerId,
) -> Result<String, FetchError> {
    let ((reader, label), slot) = one_shot(control, outbound, peer, CONTENT, |stream| async {
        let mut reader = BufReader::new(stream.compat());
        let label = read_header(&mut reader).await?;
        Ok((reader, label))
    })
    .await?;
    release_at_end(reader, slot);
    Ok(label)
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
