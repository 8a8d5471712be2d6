//! The connection loop shared by every HTTP server: bounded connections, a header read timeout,
//! WebSocket upgrades, and a graceful stop that waits (boundedly) for open requests. A server
//! may take some requests off the socket itself ([`DirectRoute`]): long-lived streams, and
//! brief requests repeated on a kept-alive connection, which then waits for the next one
//! without hyper's per-connection buffers.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{
    HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Version, header,
};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::http::error::HttpError;
use crate::http::security;
use crate::http::stall::StallGuard;

/// Limits of one server.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Open TCP connections; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// Time a client has to send a request's headers.
    pub header_read_timeout: Duration,
    /// How long a write may make no progress before the connection is closed.
    pub write_stall_timeout: Duration,
    /// Counts connections closed for stalled writes.
    pub stalls: Option<Arc<AtomicU64>>,
    /// How long a graceful stop waits for open requests.
    pub drain_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(10),
            write_stall_timeout: Duration::from_secs(30),
            stalls: None,
            drain_timeout: Duration::from_secs(8),
        }
    }
}

/// A request head read straight off the socket.
#[derive(Debug)]
pub struct RawRequest {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    pub headers: HeaderMap,
    pub remote: SocketAddr,
}

impl RawRequest {
    /// The path without the query.
    pub fn path(&self) -> &str {
        path_of(&self.target)
    }

    /// The query string, if any.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, query)| query)
    }
}

/// A route served directly on the socket instead of through hyper: for long-lived streams,
/// where hyper's per-connection buffers would be held for the stream's whole life.
pub trait DirectRoute: Send + Sync + 'static {
    /// Whether this route takes the first request of a connection with this method and path.
    fn matches(&self, method: &str, path: &str) -> bool;
    /// Answers the request; the connection closes when the returned future ends.
    fn serve(
        &self,
        request: RawRequest,
        io: StallGuard<Connection>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
    /// Whether requests with this method and path are brief and come again and again on one
    /// kept-alive connection (a peer's heartbeat): those are read and answered here, through
    /// the router, so that a connection waiting for its next one holds a few hundred bytes
    /// instead of hyper's read and write buffers (16 KiB). Only a plain request is taken this
    /// way — HTTP/1.1, a `Content-Length` body of at most [`BRIEF_BODY_LIMIT`], no
    /// `Transfer-Encoding`, `Expect` or `Upgrade`; anything else goes to hyper, which serves
    /// the connection from then on.
    fn is_brief(&self, _method: &str, _path: &str) -> bool {
        false
    }
}

/// Longest request head the direct route looks at.
const DIRECT_HEAD_LIMIT: usize = 4096;
/// Largest body of a brief request.
pub const BRIEF_BODY_LIMIT: usize = 16 * 1024;
/// Largest answer to a brief request; a longer one closes the connection unanswered.
const BRIEF_ANSWER_LIMIT: usize = 64 * 1024;

/// Where a connection's next request goes.
enum NextRequest {
    Direct(RawRequest),
    Brief(BriefRequest),
    Hyper,
    /// The client sent no complete request head in time, or left.
    Close,
}

/// A brief request's head, and what its body and its connection are to be.
struct BriefRequest {
    head: RawRequest,
    body_length: usize,
    keep_alive: bool,
}

/// A connection whose first bytes were already read: they are read again before the socket's.
///
/// The first request head is read (not peeked) so that every wait is a real read: the header
/// deadline holds, and a client that leaves is noticed at once.
pub struct Prefixed<T> {
    prefix: Vec<u8>,
    offset: usize,
    inner: T,
}

impl<T> Prefixed<T> {
    fn new(prefix: Vec<u8>, inner: T) -> Self {
        Prefixed {
            prefix,
            offset: 0,
            inner,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Prefixed<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.offset < self.prefix.len() {
            let left = &self.prefix[self.offset..];
            let take = left.len().min(buf.remaining());
            buf.put_slice(&left[..take]);
            self.offset += take;
            if self.offset == self.prefix.len() {
                self.prefix = Vec::new();
                self.offset = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Prefixed<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A connection as the servers see it.
pub type Connection = Prefixed<TcpStream>;

/// Reads a connection's next request head far enough to tell whether `route` wants it. When it
/// does, the head is parsed and returned; anything read past it (and everything read,
/// otherwise) stays in the connection for whoever serves it next.
async fn take_direct(
    connection: Connection,
    remote: SocketAddr,
    route: &dyn DirectRoute,
    timeout: Duration,
) -> (NextRequest, Connection) {
    let deadline = tokio::time::Instant::now() + timeout;
    let Prefixed {
        mut prefix,
        offset,
        inner: stream,
    } = connection;
    prefix.drain(..offset);
    let mut buffer = prefix;
    loop {
        if !buffer.is_empty() {
            match examine(&buffer, remote, route) {
                Examined::Partial if buffer.len() < DIRECT_HEAD_LIMIT => {}
                Examined::Partial | Examined::Hyper => {
                    return (NextRequest::Hyper, Prefixed::new(buffer, stream));
                }
                Examined::Ours(request, length) => {
                    let rest = buffer[length..].to_vec();
                    return (request, Prefixed::new(rest, stream));
                }
            }
        }
        // Every wait ends with bytes, with the client leaving, or at the deadline, and holds
        // no buffer: a kept-alive connection spends most of its life here.
        if !matches!(
            tokio::time::timeout_at(deadline, stream.readable()).await,
            Ok(Ok(()))
        ) {
            return (NextRequest::Close, Prefixed::new(Vec::new(), stream));
        }
        let mut chunk = [0u8; 1024];
        let room = (DIRECT_HEAD_LIMIT - buffer.len()).min(chunk.len());
        match stream.try_read(&mut chunk[..room]) {
            Ok(read) if read > 0 => buffer.extend_from_slice(&chunk[..read]),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            _ => return (NextRequest::Close, Prefixed::new(Vec::new(), stream)),
        }
    }
}

/// What the bytes of a request head read so far say.
enum Examined {
    /// The route's: the request, and the length of its head.
    Ours(NextRequest, usize),
    Hyper,
    /// Not complete, and it may still be the route's.
    Partial,
}

/// A request target's path, without its query.
fn path_of(target: &str) -> &str {
    target.split('?').next().unwrap_or("")
}

fn examine(buffer: &[u8], remote: SocketAddr, route: &dyn DirectRoute) -> Examined {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buffer) {
        Ok(httparse::Status::Complete(length)) => {
            let (Some(method), Some(target)) = (request.method, request.path) else {
                return Examined::Hyper;
            };
            let path = path_of(target);
            let direct = route.matches(method, path);
            if !direct && !route.is_brief(method, path) {
                return Examined::Hyper;
            }
            let mut map = HeaderMap::new();
            for header in request.headers.iter() {
                if let (Ok(name), Ok(value)) = (
                    HeaderName::from_bytes(header.name.as_bytes()),
                    HeaderValue::from_bytes(header.value),
                ) {
                    map.append(name, value);
                }
            }
            let head = RawRequest {
                method: method.to_owned(),
                target: target.to_owned(),
                headers: map,
                remote,
            };
            if direct {
                return Examined::Ours(NextRequest::Direct(head), length);
            }
            match brief(head, request.version) {
                Some(brief) => Examined::Ours(NextRequest::Brief(brief), length),
                None => Examined::Hyper,
            }
        }
        // Not yet complete: only worth reading on if it can still be ours.
        Ok(httparse::Status::Partial) => match (request.method, request.path.map(path_of)) {
            (Some(method), Some(path))
                if !route.matches(method, path) && !route.is_brief(method, path) =>
            {
                Examined::Hyper
            }
            _ => Examined::Partial,
        },
        // Not HTTP: hyper answers it.
        Err(_) => Examined::Hyper,
    }
}

/// `head` as a brief request, when it is a plain one (see [`DirectRoute::is_brief`]).
fn brief(head: RawRequest, version: Option<u8>) -> Option<BriefRequest> {
    let headers = &head.headers;
    if version != Some(1)
        || [header::TRANSFER_ENCODING, header::EXPECT, header::UPGRADE]
            .iter()
            .any(|name| headers.contains_key(name))
    {
        return None;
    }
    let mut lengths = headers.get_all(header::CONTENT_LENGTH).iter();
    let length = lengths.next()?.to_str().ok()?;
    if lengths.next().is_some() || length.is_empty() || !length.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let body_length = length.parse::<usize>().ok()?;
    if body_length > BRIEF_BODY_LIMIT {
        return None;
    }
    let keep_alive = !headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("close"));
    Some(BriefRequest {
        head,
        body_length,
        keep_alive,
    })
}

/// Reads a brief request's body, answers it through `router` and writes the answer. Gives the
/// connection back when it stays open for the next request.
async fn serve_brief(
    request: BriefRequest,
    mut connection: Connection,
    router: &Router,
    limits: &ServerLimits,
) -> Option<Connection> {
    let BriefRequest {
        head,
        body_length,
        keep_alive,
    } = request;
    let mut body = vec![0u8; body_length];
    match tokio::time::timeout(limits.header_read_timeout, connection.read_exact(&mut body)).await {
        Ok(Ok(_)) => {}
        Ok(Err(_)) => return None,
        Err(_) => {
            let error = HttpError::new(StatusCode::REQUEST_TIMEOUT, "the body took too long");
            refuse(&mut stall_guarded(&mut connection, limits), error).await;
            return None;
        }
    }
    let mut builder = Request::builder()
        .method(head.method.as_str())
        .uri(head.target.as_str())
        .version(Version::HTTP_11);
    if let Some(headers) = builder.headers_mut() {
        *headers = head.headers;
    }
    let Ok(mut request) = builder.body(Body::from(body)) else {
        let error = HttpError::bad_request("the request line is not valid");
        refuse(&mut stall_guarded(&mut connection, limits), error).await;
        return None;
    };
    request.extensions_mut().insert(ConnectInfo(head.remote));
    let Ok(response) = router.clone().oneshot(request).await;
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, BRIEF_ANSWER_LIMIT).await.ok()?;
    let answer = Response::from_parts(parts, body);
    let mut io = stall_guarded(&mut connection, limits);
    (write_answer(&mut io, answer, keep_alive).await && keep_alive).then_some(connection)
}

/// `io` with the server's limit on writes that make no progress.
fn stall_guarded<T>(io: T, limits: &ServerLimits) -> StallGuard<T> {
    StallGuard::new(io, limits.write_stall_timeout, limits.stalls.clone())
}

/// Writes all of `slices` with vectored writes: many small frames in one system call.
pub async fn write_all_vectored(
    io: &mut (impl AsyncWrite + Unpin),
    mut slices: &mut [io::IoSlice<'_>],
) -> io::Result<()> {
    while !slices.is_empty() {
        let written = io.write_vectored(slices).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        io::IoSlice::advance_slices(&mut slices, written);
    }
    Ok(())
}

/// Answers a request taken off the socket with `error` in the JSON error shape and the
/// security headers (it passes through none of the layers), and closes the connection.
pub async fn refuse(io: &mut (impl AsyncWrite + Unpin), error: HttpError) {
    let body = error.json_body().to_string();
    let retry_after = error
        .retry_after_seconds
        .map(|seconds| format!("retry-after: {seconds}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "HTTP/1.1 {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         {retry_after}{}connection: close\r\n\r\n",
        error.status,
        body.len(),
        security::HEADER_LINES,
    );
    let _ = io.write_all(head.as_bytes()).await;
    let _ = io.write_all(body.as_bytes()).await;
    let _ = io.shutdown().await;
}

/// Writes a routed `answer` as an HTTP/1.1 response; false when the client did not take it.
async fn write_answer(
    io: &mut (impl AsyncWrite + Unpin),
    answer: Response<Bytes>,
    keep_alive: bool,
) -> bool {
    let status = answer.status();
    let mut out = Vec::with_capacity(256 + answer.body().len());
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in answer.headers() {
        if [
            header::CONTENT_LENGTH,
            header::TRANSFER_ENCODING,
            header::CONNECTION,
            header::DATE,
        ]
        .contains(name)
        {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"date: ");
    out.extend_from_slice(httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes());
    out.extend_from_slice(b"\r\n");
    // 1xx and 204 answers carry no length (RFC 9110, 8.6).
    if !(status.is_informational() || status == StatusCode::NO_CONTENT) {
        out.extend_from_slice(format!("content-length: {}\r\n", answer.body().len()).as_bytes());
    }
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(answer.body());
    let written = io.write_all(&out).await.is_ok() && io.flush().await.is_ok();
    if written && !keep_alive {
        let _ = io.shutdown().await;
    }
    written
}

/// Serves `router` on `listener` until `stop` resolves, then stops accepting, asks open
/// connections to finish their current request, and waits for them up to the drain timeout.
/// When `direct` is given, a connection whose first request it matches is handed to it instead.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    direct: Option<Arc<dyn DirectRoute>>,
    limits: ServerLimits,
    stop: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let tracker = TaskTracker::new();
    let (closing, _) = watch::channel(false);
    tokio::pin!(stop);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("never closed"),
            _ = &mut stop => break,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!("accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let direct = direct.clone();
        let router = router.clone();
        let limits = limits.clone();
        let mut closing = closing.subscribe();
        tracker.spawn(async move {
            let _permit = permit;
            let mut stream = Prefixed::new(Vec::new(), stream);
            if let Some(route) = direct {
                loop {
                    let next =
                        take_direct(stream, remote, route.as_ref(), limits.header_read_timeout);
                    let (next, connection) = tokio::select! {
                        next = next => next,
                        // A connection waiting for its next request is closed at once.
                        _ = closing.wait_for(|c| *c) => return,
                    };
                    match next {
                        NextRequest::Direct(request) => {
                            route
                                .serve(request, stall_guarded(connection, &limits))
                                .await;
                            return;
                        }
                        NextRequest::Brief(request) => {
                            // Boxed: the router's future would size the task for its life.
                            let served = serve_brief(request, connection, &router, &limits);
                            match Box::pin(served).await {
                                Some(connection) if !*closing.borrow() => stream = connection,
                                _ => return,
                            }
                        }
                        NextRequest::Close => return,
                        NextRequest::Hyper => {
                            stream = connection;
                            break;
                        }
                    }
                }
            }
            let io = TokioIo::new(stall_guarded(stream, &limits));
            let service = router.map_request(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(remote));
                request
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_buf_size(64 * 1024)
                .serve_connection(io, TowerToHyperService::new(service))
                .with_upgrades();
            // Boxed: inline, hyper's connection state would size the task of every connection,
            // those waiting for their next brief request too.
            let mut connection = Box::pin(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = async { closing.wait_for(|c| *c).await.map(|_| ()) } => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    drop(listener);
    closing.send_replace(true);
    tracker.close();
    if tokio::time::timeout(limits.drain_timeout, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = tracker.len(),
            "connections still open after the drain timeout"
        );
    }
}

/// The connections a listener lets wait to be accepted. tokio's `bind` asks for 1,024: when a
/// hub restarts and thousands of peers come back at once, the connections past that are dropped
/// by the kernel and their clients (a health probe among them) try again only a second or more
/// later. The kernel caps it at `net.core.somaxconn` (4,096 on current Linux).
const LISTEN_BACKLOG: u32 = 65_535;

/// Listens on `addr` with [`LISTEN_BACKLOG`] (and `SO_REUSEADDR`, as `TcpListener::bind` sets
/// it: a restarted server takes its port back at once).
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The address a listener is bound to, for logs and tests.
pub fn local_addr(listener: &TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .expect("a bound listener has an address")
}
