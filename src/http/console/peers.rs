//! `/` (the peers this peer knows, live, [`PAGE_SIZE`] to a page), `/peer/{id}` (one peer: what
//! it announced, what it said over Identify, a fresh reachability probe),
//! and its conversation (see [`super::chat`]), `POST /peer/{id}/favorite`, `/api/peers` and `/api/peers/events` (the same as JSON, by
//! `limit` and `offset` with the count in `X-Total-Count`, and as a live stream).

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::{ConsoleApp, Frame};
use crate::http::csrf::CsrfForm;
use crate::http::error::{HttpError, wants_json};
use crate::http::json_api::ApiQuery;
use crate::http::text::short_id;
use crate::identity::PeerId;
use crate::services::node::PeerDetails;
use crate::services::presence::peer_table::{
    PeerChange, PeerEntry, PeerState, Reachability, Source,
};
use crate::services::presence::reachability;

/// Peers on one page of the list.
pub const PAGE_SIZE: usize = 100;
/// The most peers one `/api/peers` answer carries (`limit`), and how many it carries by default.
pub const API_MAX_LIMIT: usize = 1000;
pub const API_DEFAULT_LIMIT: usize = 100;

pub fn routes() -> Router<ConsoleApp> {
    Router::new()
        .route("/", get(list_peers))
        .route("/peers", get(peers_by_accept))
        .route("/peer/{id}", get(show_peer))
        .route("/peer/{id}/favorite", post(set_favorite))
        .route("/api/peers", get(peers_json))
        .route("/api/peers/events", get(peer_events))
        .route("/api/hubs", get(hubs_json))
        .route("/api/network", get(network_json))
        // Browsers ask for it on every page without an icon of its own, peer sites included.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
}

/// A peer as a row.
pub struct PeerListItem {
    pub peer_id: PeerId,
    pub short_id: String,
    pub label: String,
    pub online: bool,
    pub verified: bool,
    pub favorite: bool,
    /// `reachable`, `unreachable` or `unknown`.
    pub reach_class: &'static str,
    pub reach_text: String,
    /// Why the last probe failed, in the network's words (a tooltip, and on the peer's page).
    pub reach_detail: String,
    pub sources: String,
    pub addrs: Vec<String>,
}

impl PeerListItem {
    fn from_entry(entry: &PeerEntry) -> Self {
        PeerListItem {
            peer_id: entry.peer_id,
            short_id: short_id(&entry.peer_id.to_base58()),
            label: entry.label.clone(),
            online: entry.state == PeerState::Online,
            verified: entry.verified,
            favorite: entry.favorite,
            reach_class: match entry.reachability {
                Reachability::Unknown => "unknown",
                Reachability::Reachable { .. } => "reachable",
                Reachability::Unreachable { .. } => "unreachable",
            },
            reach_text: reach_text(&entry.reachability),
            reach_detail: match &entry.reachability {
                Reachability::Unreachable { reason } => reason.clone(),
                _ => String::new(),
            },
            sources: entry
                .sources
                .iter()
                .map(|source| match source {
                    Source::Gossip => "gossip".to_owned(),
                    Source::Hub(url) => format!("hub {url}"),
                })
                .collect::<Vec<_>>()
                .join(", "),
            addrs: entry.addrs.clone(),
        }
    }
}

fn reach_text(reachability: &Reachability) -> String {
    match reachability {
        Reachability::Unknown => "not probed yet".into(),
        Reachability::Reachable { rtt_ms } => format!("yes, {rtt_ms} ms"),
        Reachability::Unreachable { .. } => "no, not answering".into(),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "console_peers.html")]
struct PeersPage {
    frame: Frame,
    peers: Vec<PeerListItem>,
    /// Unread messages per peer.
    unread: std::collections::HashMap<String, i64>,
    hubs: Vec<super::HubRow>,
    /// How others reach this peer.
    reach: Option<crate::services::node::nat::Reachability>,
    notice: Option<String>,
    /// How many peers are known in all.
    total: usize,
    /// This page (from 1), the number of pages, and the neighbouring pages.
    page: usize,
    pages: usize,
    previous: Option<usize>,
    next: Option<usize>,
    page_size: usize,
}

/// The list's query: a signed notice, a page of the console, a slice of the JSON.
#[derive(serde::Deserialize)]
struct ListQuery {
    notice: Option<String>,
    page: Option<usize>,
    limit: Option<usize>,
    offset: Option<usize>,
}

async fn list_peers(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> PeersPage {
    let wanted = query.page.unwrap_or(1).max(1);
    let listed = app
        .table
        .page((wanted - 1).saturating_mul(PAGE_SIZE), PAGE_SIZE)
        .await;
    let pages = listed.total.div_ceil(PAGE_SIZE).max(1);
    let unread = app.chat.unread().await.unwrap_or_else(|err| {
        tracing::error!("cannot count unread messages: {err}");
        Default::default()
    });
    PeersPage {
        unread,
        notice: app.notices.open(query.notice),
        hubs: app.hub_rows(),
        reach: app.node.reachability().await.ok(),
        frame: app.frame(&headers),
        peers: listed.peers.iter().map(PeerListItem::from_entry).collect(),
        total: listed.total,
        page: wanted,
        pages,
        previous: (wanted > 1).then(|| (wanted - 1).min(pages)),
        next: (wanted < pages).then_some(wanted + 1),
        page_size: PAGE_SIZE,
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "console_peer.html")]
struct PeerPage {
    frame: Frame,
    peer: PeerListItem,
    /// What it said over Identify, while connected.
    details: Option<PeerDetails>,
    notice: Option<String>,
    /// The conversation, newest last.
    messages: Vec<super::chat::MessageItem>,
    blocked: bool,
}

async fn show_peer(
    State(app): State<ConsoleApp>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Response {
    let Ok(peer) = id.parse::<PeerId>() else {
        return HttpError::page(StatusCode::NOT_FOUND, "this peer is not known here")
            .into_response();
    };
    let Some(mut entry) = app.table.entry(&peer).await else {
        return HttpError::page(StatusCode::NOT_FOUND, "this peer is not known here")
            .into_response();
    };
    // A fresh probe for the page, which the list then shows too.
    let fresh = reachability::probe(&app.node, peer).await;
    app.table.set_reachability(&peer, fresh.clone()).await;
    entry.reachability = fresh;
    let details = app.node.peer_details(peer).await.ok().flatten();
    let (messages, blocked) = super::chat::conversation(&app, &peer).await;
    PeerPage {
        frame: app.frame(&headers),
        peer: PeerListItem::from_entry(&entry),
        details,
        notice: app.notices.open(query.notice),
        messages,
        blocked,
    }
    .into_response()
}

#[derive(serde::Deserialize)]
struct FavoriteForm {
    /// `1` to mark, anything else to unmark.
    #[serde(default)]
    favorite: String,
}

async fn set_favorite(
    State(app): State<ConsoleApp>,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<FavoriteForm>,
) -> Response {
    let favorite = form.favorite == "1";
    let Ok(peer) = id.parse::<PeerId>() else {
        return HttpError::page(StatusCode::NOT_FOUND, "this peer is not known here")
            .into_response();
    };
    match app.book.set_favorite(&peer, favorite).await {
        Ok(true) => {
            // A favourite is known to the node: its connections and streams are not strangers'.
            if favorite {
                let _ = app.node.vouch(peer, Vec::new()).await;
            }
            let notice = if favorite {
                "Marked as a favourite."
            } else {
                "No longer a favourite."
            };
            app.notices.redirect("/", notice)
        }
        Ok(false) => {
            HttpError::page(StatusCode::NOT_FOUND, "this peer is not known here").into_response()
        }
        Err(err) => {
            tracing::error!("cannot store a favourite: {err}");
            HttpError::page(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot store the favourite in data.db: {err}"),
            )
            .into_response()
        }
    }
}

/// The seeds' viewer API: the peer list as JSON for `Accept: application/json`, the page
/// otherwise.
async fn peers_by_accept(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    match (query, wants_json(&headers)) {
        (Ok(Query(query)), true) => peers_json(State(app), ApiQuery(query)).await,
        (Ok(query), false) => list_peers(State(app), headers, query).await.into_response(),
        (Err(rejection), true) => HttpError::from(rejection).into_response(),
        // The page keeps axum's refusal, as `/` does.
        (Err(rejection), false) => rejection.into_response(),
    }
}

/// How the link to each hub stands: `[{"url", "state", "since_ms", …, "refused"}]`.
async fn hubs_json(
    State(app): State<ConsoleApp>,
) -> Json<Vec<crate::services::presence::hub_client::HubStatus>> {
    Json(
        app.hubs
            .iter()
            .map(|status| status.borrow().clone())
            .collect(),
    )
}

/// How others reach this peer and how it reaches each connected peer:
/// `{"reachability": {"status", "public_addr", "summary", "relays": […]}, "links": {"<peer>":
/// "direct" | "relayed" | "hole-punched"}}`.
async fn network_json(State(app): State<ConsoleApp>) -> Response {
    let (Ok(reachability), Ok(links)) = (app.node.reachability().await, app.node.links().await)
    else {
        return HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the libp2p node has stopped",
        )
        .into_response();
    };
    let links: serde_json::Map<String, serde_json::Value> = links
        .into_iter()
        .map(|(peer, link)| (peer.to_base58(), link.as_str().into()))
        .collect();
    Json(json!({"reachability": reachability, "links": links})).into_response()
}

/// `limit` peers (default [`API_DEFAULT_LIMIT`], at most [`API_MAX_LIMIT`]) from `offset`, in
/// the console's order; `X-Total-Count` says how many there are.
async fn peers_json(
    State(app): State<ConsoleApp>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Response {
    let limit = query
        .limit
        .unwrap_or(API_DEFAULT_LIMIT)
        .clamp(1, API_MAX_LIMIT);
    let listed = app.table.page(query.offset.unwrap_or(0), limit).await;
    (
        [("x-total-count", listed.total.to_string())],
        Json::<Vec<PeerEntry>>(listed.peers),
    )
        .into_response()
}

/// Table changes as Server-Sent Events: `{"change": "updated", "peer": {…}}`,
/// `{"change": "offline", "peerId": …}`, `{"change": "removed", "peerId": …}`.
async fn peer_events(State(app): State<ConsoleApp>) -> Response {
    let events = stream::unfold(app.table.watch(), |mut changes| async move {
        let value = match changes.recv().await {
            Ok(PeerChange::Updated(entry)) => json!({"change": "updated", "peer": entry}),
            Ok(PeerChange::Offline(id)) => {
                json!({"change": "offline", "peerId": id.to_base58()})
            }
            Ok(PeerChange::Removed(id)) => {
                json!({"change": "removed", "peerId": id.to_base58()})
            }
            // Behind: the page reloads its list.
            Err(RecvError::Lagged(_)) => json!({"change": "reload"}),
            Err(RecvError::Closed) => return None,
        };
        Some((Event::default().data(value.to_string()), changes))
    });
    crate::http::sse::respond(events, app.stop.clone())
}
