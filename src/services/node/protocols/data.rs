//! `/goop/data/1.0.0`: the peer's data API. One JSON request per line, one JSON answer
//! `{ok, data, error, code}` per line, on a stream kept open between requests (the serving side
//! closes it after 30 s idle; the caller pools it for 20 s). A request whose caller closes or
//! resets the stream (or loses the connection) before the answer is dropped there and then,
//! which stops its statements: nobody would read the answer.

use std::time::Duration;

use libp2p::{PeerId, StreamProtocol};
use libp2p_stream::Control;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio_util::compat::{FuturesAsyncReadCompatExt, FuturesAsyncWriteCompatExt};

use super::outbound::{FRESH_RETRIES, Outbound, retry_pause};
use super::{FetchError, ended, unreachable, within_stall_limit};
use crate::services::data::{DataAnswer, DataService, from_reply};

pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/goop/data/1.0.0");

/// How long a data stream may sit idle between requests.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Answers data requests, one JSON line each, until the caller closes the stream or goes quiet.
/// The caller is the peer the stream came from; each request is read whole before the database
/// is touched, so a slow caller holds no lock, and is dropped if the caller leaves before its
/// answer.
pub(super) async fn serve(
    peer: PeerId,
    stream: libp2p::Stream,
    data: Option<DataService>,
) -> std::io::Result<()> {
    use crate::services::data::{Caller, DataError, DataRequest, MAX_REQUEST_BYTES, reply};
    let (read, write) = futures_util::AsyncReadExt::split(stream);
    let mut write = write.compat_write();
    let mut reader = BufReader::new(read.compat());
    let caller = Caller::Peer(peer);
    loop {
        let mut line = Vec::new();
        let read = tokio::time::timeout(
            IDLE_TIMEOUT,
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
                Ok(request) => match &data {
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

/// How one request on a stream went.
enum Exchange {
    Answer(Vec<u8>),
    /// Nothing was sent or answered: the stream had closed (safe to try another).
    Closed(std::io::Error),
    Failed(FetchError),
}

/// Sends one request on `stream` and reads its answer. A pooled stream that cannot be written
/// to at all — its connection gone since it was put back (the peer restarted) — sent nothing:
/// that is `Closed`, so another stream is tried.
async fn exchange(stream: &mut libp2p::Stream, line: &[u8], pooled: bool) -> Exchange {
    use futures_util::AsyncWriteExt as _;
    if let Err(err) = within_stall_limit(async {
        stream.write_all(line).await?;
        stream.flush().await
    })
    .await
    {
        // A stall (`TimedOut`) may have sent the request already: that is not retried.
        let nothing_sent = pooled && err.kind() != std::io::ErrorKind::TimedOut;
        return match nothing_sent || ended(&err) {
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

/// Sends one data request to `peer` and reads its answer, on a pooled stream when one is open:
/// the peer's data or its refusal, once the exchange itself went through.
pub async fn fetch(
    control: &mut Control,
    outbound: &Outbound,
    peer: PeerId,
    request: &crate::services::data::DataRequest,
) -> Result<DataAnswer, FetchError> {
    let mut line = serde_json::to_vec(request).map_err(|e| FetchError::Malformed(e.to_string()))?;
    line.push(b'\n');
    let slot = outbound.slot(peer, PROTOCOL).await?;
    let mut fresh_failures = 0;
    loop {
        let (mut stream, pooled) = match outbound.take(peer) {
            Some(stream) => (stream, true),
            None => (slot.open(control).await?, false),
        };
        match exchange(&mut stream, &line, pooled).await {
            Exchange::Answer(answer) => {
                outbound.put(peer, stream);
                let reply = serde_json::from_slice(&answer)
                    .map_err(|e| FetchError::Malformed(e.to_string()))?;
                return Ok(from_reply(&reply));
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
