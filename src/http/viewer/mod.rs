//! The minimal settings viewer of a rendezvous-only node (`viewer.http_addr`): `/self` to edit
//! the profile and presence settings, `/logs` to watch the log live.
//!
//! Access: with `viewer.admin_password` every page needs a session (login form, cookie, CSRF).
//! Without one the viewer must be bound to loopback, and it answers only requests that name a
//! loopback host and did not come through a proxy — so neither another machine nor a web page
//! using DNS rebinding can reach it.

mod login;
mod logs;
mod settings;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{FromRef, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use tokio::sync::watch;

use crate::config::Config;
use crate::http::client_ip::TrustedProxies;
use crate::http::session::AdminAuth;
use crate::services::auth::random_token;
use crate::telemetry::LogBuffer;

/// What viewer handlers share.
#[derive(Clone)]
pub struct ViewerApp {
    pub config_path: PathBuf,
    /// The configuration as last loaded or saved.
    pub config: Arc<Mutex<Config>>,
    pub logs: LogBuffer,
    /// `Some` when a password protects the viewer.
    pub auth: Option<AdminAuth>,
    /// The CSRF token of forms when no password is set (the pages are then loopback-only).
    pub open_csrf: String,
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
        let password = config.viewer.admin_password.clone();
        let proxies = TrustedProxies(Arc::new(config.presence.trusted_proxy_nets()));
        ViewerApp {
            config_path,
            config: Arc::new(Mutex::new(config)),
            logs,
            auth: (!password.is_empty()).then(|| AdminAuth::new(password, "/login")),
            open_csrf: random_token(),
            hub_url,
            stop,
            proxies,
        }
    }

    /// The CSRF token forms of this request must carry, or `None` without a valid session.
    pub fn csrf_for(&self, headers: &HeaderMap) -> Option<String> {
        match &self.auth {
            Some(auth) => auth.session_from(headers).map(|s| s.csrf),
            None => Some(self.open_csrf.clone()),
        }
    }
}

impl FromRef<ViewerApp> for TrustedProxies {
    fn from_ref(app: &ViewerApp) -> Self {
        app.proxies.clone()
    }
}

impl FromRef<ViewerApp> for AdminAuth {
    fn from_ref(app: &ViewerApp) -> Self {
        app.auth
            .clone()
            .unwrap_or_else(|| AdminAuth::new(Default::default(), "/login"))
    }
}

/// Refuses to serve a password-less viewer anywhere but on loopback.
pub fn check_bind(addr: &SocketAddr, config: &Config) -> anyhow::Result<()> {
    if !addr.ip().is_loopback() && config.viewer.admin_password.is_empty() {
        anyhow::bail!(
            "viewer.http_addr ({addr}) is not a loopback address, so viewer.admin_password must \
             be set; create one with `goop2 hash-password`"
        );
    }
    Ok(())
}

/// Every viewer route, behind the access rules.
pub fn router(app: ViewerApp) -> Router {
    Router::new()
        .merge(settings::routes())
        .merge(logs::routes())
        .merge(login::routes())
        .route("/", axum::routing::get(|| async { Redirect::to("/self") }))
        .route_layer(middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app)
}

async fn guard(State(app): State<ViewerApp>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if app.auth.is_none() {
        if !is_local_request(request.headers()) {
            return (
                StatusCode::FORBIDDEN,
                "This settings viewer has no password, so it answers only local requests. Set \
                 viewer.admin_password (see `goop2 hash-password`) to use it from elsewhere.",
            )
                .into_response();
        }
        return next.run(request).await;
    }
    let public = path == "/login" || path.starts_with("/assets/");
    if public || app.csrf_for(request.headers()).is_some() {
        return next.run(request).await;
    }
    Redirect::to("/login").into_response()
}

/// A request from a browser on this machine: a loopback `Host` and no proxy headers.
fn is_local_request(headers: &HeaderMap) -> bool {
    if headers.contains_key("x-forwarded-for") || headers.contains_key(header::FORWARDED) {
        return false;
    }
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
