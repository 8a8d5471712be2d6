//! The rendezvous hub's HTTP face: presence publishing, the live streams, the public reading
//! endpoints and the dashboard. Each module owns its routes; this one only merges them.

mod admin;
mod dashboard;
mod publish;
mod reading;
mod streams;
mod templates;

pub use streams::DirectEvents;

use axum::Router;
use axum::extract::FromRef;
use axum::http::HeaderMap;

use std::sync::Arc;

use crate::config::Config;
use crate::http::client_ip::TrustedProxies;
use crate::http::csrf::CsrfSource;
use crate::http::session::AdminAuth;
use crate::services::hub::Hub;
use crate::services::sitetemplates::store::Templates;
use crate::telemetry::LogBuffer;

/// What hub handlers share. Cloning is cheap.
#[derive(Clone)]
pub struct HubApp {
    pub hub: Hub,
    pub proxies: TrustedProxies,
    pub logs: LogBuffer,
    pub admin: AdminAuth,
    pub templates: Templates,
    /// The configuration the hub started with, for the admin's config page.
    pub config: Arc<Config>,
    /// The circuit relay beside the hub (`presence.relay_enabled`).
    pub relay: Option<crate::services::relay::Relay>,
}

impl FromRef<HubApp> for AdminAuth {
    fn from_ref(app: &HubApp) -> Self {
        app.admin.clone()
    }
}

/// The administrator's forms carry the session's token; without a session nothing passes.
impl CsrfSource for HubApp {
    async fn csrf_for(&self, headers: &HeaderMap) -> Option<String> {
        self.admin
            .session(headers)
            .await
            .map(|session| session.csrf)
    }
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
        .merge(crate::http::assets::routes())
        .merge(admin::routes())
        .merge(templates::routes())
        .with_state(app)
}
