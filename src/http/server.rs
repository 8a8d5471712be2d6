//! The connection loop shared by every HTTP server: bounded connections, a header read timeout,
//! WebSocket upgrades, and a graceful stop that waits (boundedly) for open requests.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncReadExt;
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
        io: StallGuard<TcpStream>,
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

/// Peeks at the first request of a connection; when `route` wants it, consumes the head and
/// returns it. Anything else is left in the socket for hyper.
async fn take_direct(
    stream: &mut TcpStream,
    remote: SocketAddr,
    route: &dyn DirectRoute,
    timeout: Duration,
) -> FirstRequest {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buffer = vec![0u8; DIRECT_HEAD_LIMIT];
    loop {
        let seen = match tokio::time::timeout_at(deadline, stream.peek(&mut buffer)).await {
            Ok(Ok(seen)) if seen > 0 => seen,
            _ => return FirstRequest::Close,
        };
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buffer[..seen]) {
            Ok(httparse::Status::Complete(length)) => {
                let (Some(method), Some(target)) = (request.method, request.path) else {
                    return FirstRequest::Hyper;
                };
                let path = target.split('?').next().unwrap_or("");
                if !route.matches(method, path) {
                    return FirstRequest::Hyper;
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
                let raw = RawRequest {
                    method: method.to_owned(),
                    target: target.to_owned(),
                    headers: map,
                    remote,
                };
                return match stream.read_exact(&mut buffer[..length]).await {
                    Ok(_) => FirstRequest::Direct(raw),
                    Err(_) => FirstRequest::Close,
                };
            }
            // Not yet complete: only worth waiting for if it can still be ours.
            Ok(httparse::Status::Partial) if seen < DIRECT_HEAD_LIMIT => {
                if request
                    .path
                    .is_some_and(|p| !route.matches("GET", p.split('?').next().unwrap_or("")))
                    || request.method.is_some_and(|m| m != "GET")
                {
                    return FirstRequest::Hyper;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // Too long for the direct route, or not HTTP: hyper answers it.
            _ => return FirstRequest::Hyper,
        }
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
        let mut stream = stream;
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
            if let Some(route) = direct {
                match take_direct(&mut stream, remote, route.as_ref(), header_read_timeout).await {
                    FirstRequest::Direct(request) => {
                        let io = StallGuard::new(stream, stall_timeout, stalls);
                        route.serve(request, io).await;
                        return;
                    }
                    FirstRequest::Close => return,
                    FirstRequest::Hyper => {}
                }
            }
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
