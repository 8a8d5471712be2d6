//! The connection loop shared by every HTTP server: bounded connections, a header read timeout,
//! WebSocket upgrades, and a graceful stop that waits (boundedly) for open requests.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

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
        self.target.split('?').next().unwrap_or("")
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
}

/// Longest request head the direct route looks at.
const DIRECT_HEAD_LIMIT: usize = 4096;

/// Where a connection's first request goes.
enum FirstRequest {
    Direct(RawRequest),
    Hyper,
    /// The client sent no complete request head in time, or left.
    Close,
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

/// Reads the first request head of a connection far enough to tell whether `route` wants it.
/// When it does, the head is parsed and returned; anything read past it (and everything read,
/// otherwise) stays in the connection for whoever serves it next.
async fn take_direct(
    mut stream: TcpStream,
    remote: SocketAddr,
    route: &dyn DirectRoute,
    timeout: Duration,
) -> (FirstRequest, Connection) {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buffer = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        // Every wait is a read: it ends with bytes, with the client leaving, or at the deadline.
        let room = (DIRECT_HEAD_LIMIT - buffer.len()).min(chunk.len());
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk[..room])).await {
            Ok(Ok(read)) if read > 0 => buffer.extend_from_slice(&chunk[..read]),
            _ => return (FirstRequest::Close, Prefixed::new(Vec::new(), stream)),
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        let verdict = match request.parse(&buffer) {
            Ok(httparse::Status::Complete(length)) => match (request.method, request.path) {
                (Some(method), Some(target))
                    if route.matches(method, target.split('?').next().unwrap_or("")) =>
                {
                    let mut map = HeaderMap::new();
                    for header in request.headers.iter() {
                        if let (Ok(name), Ok(value)) = (
                            HeaderName::from_bytes(header.name.as_bytes()),
                            HeaderValue::from_bytes(header.value),
                        ) {
                            map.append(name, value);
                        }
                    }
                    let raw = RawRequest {
                        method: method.to_owned(),
                        target: target.to_owned(),
                        headers: map,
                        remote,
                    };
                    let rest = buffer[length..].to_vec();
                    return (FirstRequest::Direct(raw), Prefixed::new(rest, stream));
                }
                _ => FirstRequest::Hyper,
            },
            // Not yet complete: only worth reading on if it can still be ours.
            Ok(httparse::Status::Partial) if buffer.len() < DIRECT_HEAD_LIMIT => {
                let not_ours = request
                    .path
                    .is_some_and(|p| !route.matches("GET", p.split('?').next().unwrap_or("")))
                    || request.method.is_some_and(|m| m != "GET");
                if !not_ours {
                    continue;
                }
                FirstRequest::Hyper
            }
            // Too long for the direct route, or not HTTP: hyper answers it.
            _ => FirstRequest::Hyper,
        };
        return (verdict, Prefixed::new(buffer, stream));
    }
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
        let stall_timeout = limits.write_stall_timeout;
        let stalls = limits.stalls.clone();
        let service = router
            .clone()
            .map_request(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(remote));
                request
            });
        let mut closing = closing.subscribe();
        let header_read_timeout = limits.header_read_timeout;
        tracker.spawn(async move {
            let _permit = permit;
            let stream = match direct {
                Some(route) => {
                    let (first, stream) =
                        take_direct(stream, remote, route.as_ref(), header_read_timeout).await;
                    match first {
                        FirstRequest::Direct(request) => {
                            let io = StallGuard::new(stream, stall_timeout, stalls);
                            route.serve(request, io).await;
                            return;
                        }
                        FirstRequest::Close => return,
                        FirstRequest::Hyper => stream,
                    }
                }
                None => Prefixed::new(Vec::new(), stream),
            };
            let io = TokioIo::new(StallGuard::new(stream, stall_timeout, stalls));
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout)
                .max_buf_size(64 * 1024)
                .serve_connection(io, TowerToHyperService::new(service))
                .with_upgrades();
            tokio::pin!(connection);
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

/// The address a listener is bound to, for logs and tests.
pub fn local_addr(listener: &TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .expect("a bound listener has an address")
}
