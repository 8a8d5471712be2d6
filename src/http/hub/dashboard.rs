//! `GET /`: the live dashboard.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::HubApp;
pub use crate::http::text::{ago, short_id};
use crate::services::hub::presence::PresenceType;
use crate::services::hub::{PeerRecord, RecentChange, unix_ms};

pub fn routes() -> Router<HubApp> {
    Router::new().route("/", get(show_dashboard))
}

#[derive(Template, WebTemplate)]
#[template(path = "hub_dashboard.html")]
struct DashboardPage {
    hub_name: String,
    connect_url: String,
    peers: Vec<DashboardPeer>,
    recent: Vec<ChangeRow>,
}

/// A peer as a table row.
pub struct DashboardPeer {
    pub peer_id: String,
    pub short_id: String,
    pub label: String,
    pub verified: bool,
    pub signed: bool,
    pub addrs: Vec<String>,
    pub last_seen_ms: i64,
    pub last_seen_ago: String,
}

impl DashboardPeer {
    pub fn from_record(record: &PeerRecord, now_ms: i64) -> Self {
        let presence = &record.presence;
        DashboardPeer {
            peer_id: presence.peer_id.clone(),
            short_id: short_id(&presence.peer_id),
            label: presence.content.clone().unwrap_or_default(),
            verified: record.verified,
            signed: record.signed,
            addrs: presence.addrs.clone().unwrap_or_default(),
            last_seen_ms: record.last_seen_ms,
            last_seen_ago: ago(now_ms - record.last_seen_ms),
        }
    }
}

struct ChangeRow {
    kind: &'static str,
    verb: &'static str,
    label: String,
    short_id: String,
    ts_ms: i64,
    ago: String,
}

impl ChangeRow {
    fn from_change(change: &RecentChange, now_ms: i64) -> Self {
        ChangeRow {
            kind: change.kind.as_str(),
            verb: if change.kind == PresenceType::Offline {
                "left"
            } else {
                "joined"
            },
            label: change.label.clone(),
            short_id: short_id(&change.peer_id),
            ts_ms: change.ts_ms,
            ago: ago(now_ms - change.ts_ms),
        }
    }
}

async fn show_dashboard(State(app): State<HubApp>, headers: HeaderMap) -> impl IntoResponse {
    let now_ms = unix_ms();
    DashboardPage {
        hub_name: app.hub.options().name.clone(),
        connect_url: connect_url(&headers),
        peers: app
            .hub
            .peers()
            .iter()
            .map(|r| DashboardPeer::from_record(r, now_ms))
            .collect(),
        recent: app
            .hub
            .recent_changes()
            .iter()
            .map(|c| ChangeRow::from_change(c, now_ms))
            .collect(),
    }
}

/// The URL to give peers: what the browser used to reach us.
fn connect_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .filter(|p| *p == "https")
        .unwrap_or("http");
    format!("{scheme}://{host}")
}
