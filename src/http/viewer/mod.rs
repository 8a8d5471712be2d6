//! The minimal settings viewer of a rendezvous-only node (`viewer.http_addr`): `/self` to edit
//! the profile and presence settings, `/logs` to watch the log live.
//!
//! Access follows [`crate::http::access`]: a session with `viewer.admin_password`, else
//! loopback only.

mod logs;
mod settings;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::FromRef;
use axum::http::HeaderMap;
use axum::middleware;
use axum::response::Redirect;
use tokio::sync::watch;

use crate::config::Config;
use crate::http::access::{self, OwnerAccess};
use crate::http::client_ip::TrustedProxies;
use crate::http::csrf::CsrfSource;
use crate::http::session::AdminAuth;
use crate::telemetry::LogBuffer;

/// What viewer handlers share.
#[derive(Clone)]
pub struct ViewerApp {
    pub config_path: PathBuf,
    /// The configuration as last loaded or saved.
    pub config: Arc<Mutex<Config>>,
    pub logs: LogBuffer,
    pub access: OwnerAccess,
    /// Link to the hub's own pages.
    pub hub_url: String,
    pub stop: watch::Receiver<bool>,
    pub proxies: TrustedProxies,
}

impl ViewerApp {
    pub fn new(
        config_path: PathBuf,
        config: Config,
        logs: LogBuffer,
        hub_url: String,
        stop: watch::Receiver<bool>,
    ) -> Self {
        ViewerApp {
            config_path,
            access: OwnerAccess::new(&config, "settings viewer", "Goop² rendezvous", "/self"),
            proxies: TrustedProxies(Arc::new(config.presence.trusted_proxy_nets())),
            config: Arc::new(Mutex::new(config)),
            logs,
            hub_url,
            stop,
        }
    }
}

impl CsrfSource for ViewerApp {
    async fn csrf_for(&self, headers: &HeaderMap) -> Option<String> {
        self.access.csrf_for(headers)
    }
}

impl FromRef<ViewerApp> for TrustedProxies {
    fn from_ref(app: &ViewerApp) -> Self {
        app.proxies.clone()
    }
}

impl FromRef<ViewerApp> for OwnerAccess {
    fn from_ref(app: &ViewerApp) -> Self {
        app.access.clone()
    }
}

impl FromRef<ViewerApp> for AdminAuth {
    fn from_ref(app: &ViewerApp) -> Self {
        app.access.admin_auth()
    }
}

/// Every viewer route, behind the access rules.
pub fn router(app: ViewerApp) -> Router {
    let owner = Router::new()
        .merge(settings::routes())
        .merge(logs::routes())
        .route("/", axum::routing::get(|| async { Redirect::to("/self") }))
        .route_layer(middleware::from_fn_with_state(
            app.access.clone(),
            access::guard,
        ));
    Router::new()
        .merge(owner)
        .merge(crate::http::owner_login::routes())
        .merge(crate::http::assets::routes())
        .route_layer(middleware::from_fn_with_state(
            app.access.clone(),
            access::local_only,
        ))
        .with_state(app)
}
