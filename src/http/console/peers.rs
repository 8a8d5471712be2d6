//! `/` (the peers this peer knows, live), `/peer/{id}` (one peer, with a reachability probe),
//! `/api/peers` and `/api/peers/events` (the same as JSON and as a live stream).

use std::time::Duration;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use futures_util::stream;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::ConsoleApp;
use crate::http::assets;
use crate::http::text::short_id;
use crate::services::presence::peer_table::{PeerChange, PeerEntry, PeerState, Source};

pub fn routes() -> Router<ConsoleApp> {
    Router::new()
        .route("/", get(list_peers))
        .route("/peer/{id}", get(show_peer))
        .route("/api/peers", get(peers_json))
        .route("/api/peers/events", get(peer_events))
        .route(
            "/assets/console.css",
            get(|| async { assets::css(assets::HUB_CSS) }),
        )
        .route(
            "/assets/console.js",
            get(|| async { assets::javascript(assets::CONSOLE_JS) }),
        )
}

/// A peer as a row.
pub struct PeerRow {
    pub peer_id: String,
    pub short_id: String,
    pub label: String,
    pub online: bool,
    pub verified: bool,
    pub sources: String,
    pub addrs: Vec<String>,
}

impl PeerRow {
    fn from_entry(entry: &PeerEntry) -> Self {
        PeerRow {
            peer_id: entry.peer_id.clone(),
            short_id: short_id(&entry.peer_id),
            label: entry.label.clone(),
            online: entry.state == PeerState::Online,
            verified: entry.verified,
            sources: entry
                .sources
                .iter()
                .map(|source| match source {
                    Source::Gossip => "LAN".to_owned(),
                    Source::Hub(url) => format!("hub {url}"),
                })
                .collect::<Vec<_>>()
                .join(", "),
            addrs: entry.addrs.clone(),
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "console_peers.html")]
struct PeersPage {
    me: String,
    me_short: String,
    label: String,
    csrf: String,
    protected: bool,
    peers: Vec<PeerRow>,
}

async fn list_peers(State(app): State<ConsoleApp>, headers: HeaderMap) -> PeersPage {
    let peers = app.table.snapshot().await;
    PeersPage {
        me: app.peer_id.to_base58(),
        me_short: short_id(&app.peer_id.to_base58()),
        label: app.label.borrow().clone(),
        csrf: app.access.csrf_for(&headers).unwrap_or_default(),
        protected: app.access.auth.is_some(),
        peers: peers.iter().map(PeerRow::from_entry).collect(),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "console_peer.html")]
struct PeerPage {
    me: String,
    me_short: String,
    label: String,
    csrf: String,
    protected: bool,
    peer: PeerRow,
    reachable: Result<String, String>,
}

async fn show_peer(
    State(app): State<ConsoleApp>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let entry = app
        .table
        .snapshot()
        .await
        .into_iter()
        .find(|entry| entry.peer_id == id);
    let Some(entry) = entry else {
        return (StatusCode::NOT_FOUND, "this peer is not known here").into_response();
    };
    let reachable = match id.parse() {
        Ok(peer) => {
            match tokio::time::timeout(Duration::from_secs(5), app.node.fetch_content(peer)).await {
                Ok(Ok(label)) => Ok(label),
                Ok(Err(err)) => Err(err.to_string()),
                Err(_) => Err("no answer within 5 s".into()),
            }
        }
        Err(_) => Err("not a peer ID".into()),
    };
    PeerPage {
        me: app.peer_id.to_base58(),
        me_short: short_id(&app.peer_id.to_base58()),
        label: app.label.borrow().clone(),
        csrf: app.access.csrf_for(&headers).unwrap_or_default(),
        protected: app.access.auth.is_some(),
        peer: PeerRow::from_entry(&entry),
        reachable,
    }
    .into_response()
}

async fn peers_json(State(app): State<ConsoleApp>) -> Json<Vec<PeerEntry>> {
    Json(app.table.snapshot().await)
}

/// Table changes as Server-Sent Events: `{"change": "updated", "peer": {…}}`,
/// `{"change": "offline", "peerId": …}`, `{"change": "removed", "peerId": …}`.
async fn peer_events(State(app): State<ConsoleApp>) -> Response {
    let changes = app.table.watch();
    let stop = app.stop.clone();
    let frames = stream::unfold((changes, stop), |(mut changes, mut stop)| async move {
        let change = tokio::select! {
            _ = stop.wait_for(|s| *s) => return None,
            change = changes.recv() => change,
        };
        let value = match change {
            Ok(PeerChange::Updated(entry)) => json!({"change": "updated", "peer": entry}),
            Ok(PeerChange::Offline(id)) => json!({"change": "offline", "peerId": id}),
            Ok(PeerChange::Removed(id)) => json!({"change": "removed", "peerId": id}),
            // Behind: the page reloads its list.
            Err(RecvError::Lagged(_)) => json!({"change": "reload"}),
            Err(RecvError::Closed) => return None,
        };
        let frame = Bytes::from(format!("data: {value}\n\n"));
        Some((Ok::<_, std::convert::Infallible>(frame), (changes, stop)))
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
