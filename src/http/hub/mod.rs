//! The rendezvous hub's HTTP face: presence publishing, the live streams, the public reading
//! endpoints and the dashboard. Each module owns its routes; this one only merges them.

mod dashboard;
mod publish;
mod reading;
mod streams;

use axum::Router;
use axum::extract::FromRef;

use crate::http::client_ip::TrustedProxies;
use crate::services::hub::Hub;
use crate::telemetry::LogBuffer;

/// What hub handlers share. Cloning is cheap.
#[derive(Clone)]
pub struct HubApp {
    pub hub: Hub,
    pub proxies: TrustedProxies,
    pub logs: LogBuffer,
    /// The URL peers should use, as shown on the dashboard (empty: derived from the request).
    pub public_url: String,
}

impl FromRef<HubApp> for TrustedProxies {
    fn from_ref(app: &HubApp) -> Self {
        app.proxies.clone()
    }
}

/// Every hub route.
pub fn router(app: HubApp) -> Router {
    Router::new()
        .merge(publish::routes())
        .merge(streams::routes())
        .merge(reading::routes())
        .merge(dashboard::routes())
        .with_state(app)
}
