//! The layers every router of ours is served through, outermost first: a request span and its
//! log record (`tower_http::trace`), compression of HTML, CSS, JavaScript and JSON
//! (`tower_http::compression`: gzip, when the client accepts it), and the security headers
//! ([`super::security`]). Body limits are set per route, next to what reads the body
//! (`DefaultBodyLimit`). Responses written straight to the socket (the hub's `/events`, see
//! `server::DirectRoute`) pass through none of these: they carry the security headers in their
//! own head, are never compressed (an event stream must not be buffered), and are counted by
//! the hub's metrics instead of logged one by one.

use std::time::Duration;

use axum::Router;
use axum::extract::MatchedPath;
use axum::http::{HeaderMap, Request, Response, StatusCode, Version, header};
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{DefaultPredicate, Predicate};
use tower_http::trace::TraceLayer;
use tracing::Span;

/// Which requests are logged at INFO (the rest at DEBUG; server errors at WARN unless they are
/// a [`ReportedState`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestLog {
    /// Every request: a console, used by its owner's browser.
    Every,
    /// Requests slower than a second: a hub, where a thousand peers' heartbeats would bury
    /// everything else.
    Slow,
}

/// A request that took this long is logged at INFO even on a busy server.
const SLOW: Duration = Duration::from_secs(1);

/// Marks a response that reports a state the server logs on its own when it changes (a health
/// check's 503 while the database is away): logged at DEBUG whatever its status, so that a
/// proxy's checks every few seconds do not repeat the one line that says what happened.
#[derive(Debug, Clone, Copy)]
pub struct ReportedState;

/// `router` with the common layers; requests logged as `log` says.
pub fn common(router: Router, log: RequestLog) -> Router {
    let router = super::security::with_security_headers(router);
    let trace = TraceLayer::new_for_http()
        .make_span_with(|request: &Request<_>| {
            // The route's pattern, never the path itself: no IDs, names or tokens in the log.
            let route = request
                .extensions()
                .get::<MatchedPath>()
                .map_or("(none)", MatchedPath::as_str);
            tracing::info_span!("request", method = %request.method(), route)
        })
        .on_request(())
        .on_response(move |response: &Response<_>, latency: Duration, _: &Span| {
            let reported = response.extensions().get::<ReportedState>().is_some();
            log_response(response.status(), latency, log, reported)
        })
        // A failed response is logged by `on_response` already.
        .on_failure(());
    router
        .layer(
            CompressionLayer::new().gzip(true).compress_when(
                DefaultPredicate::new()
                    .and(compressible as fn(StatusCode, Version, &HeaderMap, &_) -> bool),
            ),
        )
        .layer(trace)
}

fn log_response(status: StatusCode, latency: Duration, log: RequestLog, reported: bool) {
    let status = status.as_u16();
    let latency_ms = latency.as_millis() as u64;
    if reported {
        tracing::debug!(target: "goop2::http::request", status, latency_ms, "request");
    } else if status >= 500 {
        tracing::warn!(target: "goop2::http::request", status, latency_ms, "request failed");
    } else if log == RequestLog::Every || latency >= SLOW {
        tracing::info!(target: "goop2::http::request", status, latency_ms, "request");
    } else {
        tracing::debug!(target: "goop2::http::request", status, latency_ms, "request");
    }
}

/// HTML, CSS, JavaScript and JSON are worth compressing; images, archives and event streams
/// are not.
fn compressible(
    _: StatusCode,
    _: Version,
    headers: &HeaderMap,
    _: &axum::http::Extensions,
) -> bool {
    let Some(kind) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let kind = kind.split(';').next().unwrap_or("").trim();
    matches!(
        kind,
        "text/html"
            | "text/css"
            | "text/javascript"
            | "application/javascript"
            | "application/json"
    )
}
