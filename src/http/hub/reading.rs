//! The public reading endpoints: `/peers.json`, `/healthz`, `/metrics`, `/relay`.

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::HubApp;
use crate::http::layers::ReportedState;
use crate::http::session::MaybeAdmin;
use crate::services::hub::PeerRecord;

pub fn routes() -> Router<HubApp> {
    Router::new()
        .route("/peers.json", get(list_peers))
        .route("/healthz", get(check_health))
        .route("/metrics", get(render_metrics))
        .route("/relay", get(show_relay))
}

/// The hub's circuit relay: its peer ID and where peers reach it (404 without one).
async fn show_relay(State(app): State<HubApp>) -> Response {
    match &app.relay {
        Some(relay) => Json(serde_json::json!({
            "peer_id": relay.peer_id.to_base58(),
            "addrs": relay.addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
        }))
        .into_response(),
        None => crate::http::error::HttpError::new(
            StatusCode::NOT_FOUND,
            "this hub runs no circuit relay (presence.relay_enabled)",
        )
        .into_response(),
    }
}

/// One peer as `/peers.json` shows it to the public: no email.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicPeer {
    pub peer_id: String,
    pub content: String,
    pub avatar_hash: Option<String>,
    pub active_template: Option<String>,
    pub addrs: Vec<String>,
    pub verified: bool,
    pub signed: bool,
    pub last_seen: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

impl PublicPeer {
    pub fn from_record(record: PeerRecord, with_email: bool) -> Self {
        let presence = record.presence;
        PublicPeer {
            peer_id: presence.peer_id,
            content: presence.content.unwrap_or_default(),
            avatar_hash: presence.avatar_hash,
            active_template: presence.active_template,
            addrs: presence.addrs.unwrap_or_default(),
            verified: record.verified,
            signed: record.signed,
            last_seen: record.last_seen_ms,
            email: if with_email { presence.email } else { None },
        }
    }
}

/// Public, or with emails for a signed-in administrator.
async fn list_peers(
    State(app): State<HubApp>,
    MaybeAdmin(admin): MaybeAdmin,
) -> Json<Vec<PublicPeer>> {
    let with_email = admin.is_some();
    Json(
        app.hub
            .peers()
            .into_iter()
            .map(|record| PublicPeer::from_record(record, with_email))
            .collect(),
    )
}

async fn check_health(State(app): State<HubApp>) -> Response {
    match app.hub.health() {
        Ok(()) => (StatusCode::OK, "ok").into_response(),
        // The hub logs why when it happens; a proxy asks every few seconds.
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Extension(ReportedState),
            reason,
        )
            .into_response(),
    }
}

async fn render_metrics(State(app): State<HubApp>) -> Response {
    let mut text = app.hub.render_metrics();
    if let Some(relay) = &app.relay {
        text.push_str(&relay.metrics.render());
    }
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}
