//! The live log tail shared by every log page: the ring's records after a sequence number,
//! then new ones as they happen, as Server-Sent Events.

use std::collections::VecDeque;
use std::sync::Arc;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::stream;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};

use crate::telemetry::{LogBuffer, LogRecord};

/// The log as a page shows it: the recent lines at or above a level, and where the live tail
/// continues.
pub struct LogView {
    pub level: String,
    pub levels: Vec<(&'static str, bool)>,
    pub lines: Vec<String>,
    pub last_seq: u64,
    /// Where the page's live tail reads from.
    pub stream: &'static str,
}

impl LogView {
    /// The records of `logs` at or above `level` (default `INFO`).
    pub fn new(logs: &LogBuffer, level: Option<String>, stream: &'static str) -> Self {
        let level = level.unwrap_or_else(|| "INFO".into()).to_uppercase();
        let records = logs.snapshot();
        LogView {
            last_seq: records.last().map_or(0, |r| r.seq),
            lines: records
                .iter()
                .filter(|r| r.at_least(&level))
                .map(|r| r.line())
                .collect(),
            levels: ["DEBUG", "INFO", "WARN", "ERROR"]
                .into_iter()
                .map(|option| (option, option == level))
                .collect(),
            level,
            stream,
        }
    }
}

/// An SSE response of log records after `after`, ending when `stop` turns true.
pub fn tail(logs: &LogBuffer, after: u64, stop: watch::Receiver<bool>) -> Response {
    struct Tail {
        backlog: VecDeque<Arc<LogRecord>>,
        live: broadcast::Receiver<Arc<LogRecord>>,
        stop: watch::Receiver<bool>,
    }
    let tail = Tail {
        live: logs.subscribe(),
        backlog: logs.since(after).into(),
        stop,
    };
    let frames = stream::unfold(tail, |mut tail| async move {
        let record = match tail.backlog.pop_front() {
            Some(record) => record,
            None => loop {
                tokio::select! {
                    _ = tail.stop.wait_for(|stopping| *stopping) => return None,
                    received = tail.live.recv() => match received {
                        Ok(record) => break record,
                        // A slow tab misses records rather than holding up the log.
                        Err(RecvError::Lagged(_)) => continue,
                        Err(RecvError::Closed) => return None,
                    },
                }
            },
        };
        let json = serde_json::to_string(&*record).unwrap_or_default();
        let frame = Bytes::from(format!("id: {}\ndata: {json}\n\n", record.seq));
        Some((Ok::<_, std::convert::Infallible>(frame), tail))
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        axum::body::Body::from_stream(frames),
    )
        .into_response()
}
