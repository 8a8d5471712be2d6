//! The live log tail shared by every log page: the ring's records after a sequence number,
//! then new ones as they happen, as Server-Sent Events.

use std::collections::VecDeque;
use std::sync::Arc;

use axum::response::Response;
use axum::response::sse::Event;
use futures_util::stream;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};

use crate::http::sse;
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

/// An SSE response of log records after `after`, ending when `stop` turns true. A reader that
/// falls more than the ring's capacity behind gets a `lagged` event saying how many records it
/// missed, then the newer ones.
pub fn tail(logs: &LogBuffer, after: u64, stop: watch::Receiver<bool>) -> Response {
    struct Tail {
        backlog: VecDeque<Arc<LogRecord>>,
        live: broadcast::Receiver<Arc<LogRecord>>,
    }
    let tail = Tail {
        live: logs.subscribe(),
        backlog: logs.since(after).into(),
    };
    let events = stream::unfold(tail, |mut tail| async move {
        let record = match tail.backlog.pop_front() {
            Some(record) => record,
            None => match tail.live.recv().await {
                Ok(record) => record,
                // A slow tab misses records rather than holding up the log, and is told.
                Err(RecvError::Lagged(missed)) => return Some((sse::lagged(missed), tail)),
                Err(RecvError::Closed) => return None,
            },
        };
        let json = serde_json::to_string(&*record).unwrap_or_default();
        let event = Event::default().id(record.seq.to_string()).data(json);
        Some((event, tail))
    });
    sse::respond(events, stop)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http_body_util::BodyExt;

    use super::*;

    /// The body's text until `wanted` appears in it (or the wait runs out).
    async fn read_until(body: &mut axum::body::Body, wanted: &str) -> String {
        let mut text = String::new();
        while !text.contains(wanted) {
            let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
                .await
                .unwrap_or_else(|_| panic!("no {wanted:?} in {text:?}"))
                .expect("the stream goes on")
                .unwrap();
            if let Ok(data) = frame.into_data() {
                text.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
        text
    }

    #[tokio::test]
    async fn a_reader_that_fell_behind_is_told_how_many_records_it_missed() {
        let logs = LogBuffer::new(4);
        logs.push("INFO", "t", "before".into(), Vec::new());
        let (stop_tx, stop) = watch::channel(false);
        let response = tail(&logs, 1, stop);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        // 20 records while the reader reads nothing: the ring keeps the last 4.
        for n in 0..20 {
            logs.push("INFO", "t", format!("record {n}"), Vec::new());
        }
        let mut body = response.into_body();
        let text = read_until(&mut body, "record 19").await;
        let lagged = text
            .find("event: lagged\ndata: {\"missed\":16}")
            .expect(&text);
        assert!(lagged < text.find("record 16").expect(&text), "{text}");
        assert!(!text.contains("record 15\""), "{text}");
        // The process stops: so does the stream.
        stop_tx.send(true).unwrap();
        let end = tokio::time::timeout(Duration::from_secs(5), body.frame()).await;
        assert!(matches!(end, Ok(None)), "{end:?}");
    }
}
