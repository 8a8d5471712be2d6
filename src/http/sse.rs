//! Server-Sent Events for the live pages of the console and the settings viewer, framed one
//! way: a comment every [`KEEP_ALIVE`] keeps an idle stream open through proxies and tells a
//! browser the server is still there, and the stream ends when the process stops. (The hub's
//! `/events` is its own hot path: `http/hub/streams.rs`.)

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use tokio::sync::watch;

/// How long an idle stream waits before a keep-alive comment.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// `events` as an SSE response (`text/event-stream`, `no-cache`), ended when `stop` turns true.
pub fn respond<S>(events: S, mut stop: watch::Receiver<bool>) -> Response
where
    S: Stream<Item = Event> + Send + 'static,
{
    let stopping = async move {
        let _ = stop.wait_for(|stopping| *stopping).await;
    };
    let events = events
        .take_until(Box::pin(stopping))
        .map(Ok::<_, Infallible>);
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

/// The messages of a broadcast channel that `keep` passes, each as one JSON event, as an SSE
/// response ended by `stop`; a reader that fell behind is sent `{"kind": "reload"}` (its page
/// reloads what it shows) and goes on from the newest.
pub fn json_events<T, F>(
    events: tokio::sync::broadcast::Receiver<T>,
    keep: F,
    stop: watch::Receiver<bool>,
) -> Response
where
    T: Clone + serde::Serialize + Send + 'static,
    F: Fn(&T) -> bool + Send + 'static,
{
    use tokio::sync::broadcast::error::RecvError;
    let events = futures_util::stream::unfold((events, keep), |(mut events, keep)| async move {
        loop {
            let value = match events.recv().await {
                Ok(event) if keep(&event) => serde_json::json!(event),
                Ok(_) => continue,
                Err(RecvError::Lagged(_)) => serde_json::json!({"kind": "reload"}),
                Err(RecvError::Closed) => return None,
            };
            return Some((Event::default().data(value.to_string()), (events, keep)));
        }
    });
    respond(events, stop)
}

/// The event that tells a reader it fell behind and `missed` events were skipped.
pub fn lagged(missed: u64) -> Event {
    Event::default()
        .event("lagged")
        .data(serde_json::json!({ "missed": missed }).to_string())
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    #[tokio::test]
    async fn an_idle_stream_gets_keep_alive_comments_and_ends_when_the_process_stops() {
        let (stop_tx, stop) = watch::channel(false);
        let response = respond(futures_util::stream::pending::<Event>(), stop);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        assert_eq!(response.headers()["cache-control"], "no-cache");
        let mut body = response.into_body();
        let started = std::time::Instant::now();
        let wait = KEEP_ALIVE + Duration::from_secs(5);
        let frame = tokio::time::timeout(wait, body.frame())
            .await
            .expect("a keep-alive comment in time")
            .expect("the stream goes on")
            .unwrap();
        let data = frame.into_data().unwrap();
        assert!(data.starts_with(b":"), "{data:?}");
        assert!(started.elapsed() >= KEEP_ALIVE - Duration::from_secs(1));
        stop_tx.send(true).unwrap();
        let end = tokio::time::timeout(Duration::from_secs(5), body.frame()).await;
        assert!(matches!(end, Ok(None)), "{end:?}");
    }
}
