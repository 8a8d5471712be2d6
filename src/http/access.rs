//! Who may use an owner's web interface (the peer's console, a hub's settings viewer).
//!
//! With a password (`viewer.admin_password`) the owner's pages need a session ([`guard`]); the
//! login page, the static files and (in the console) what a sandboxed site calls with its token
//! are routed outside that guard, never picked out of it by path. Without one the interface must be bound to loopback, and it answers only
//! requests that name a loopback host and did not come through a proxy — so neither another
//! machine nor a web page using DNS rebinding can reach it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use crate::config::{Config, Theme};
use crate::http::error::{HttpError, is_api_call};
use crate::http::session::AdminAuth;
use crate::services::auth::random_token;

/// The access rules of one interface. Cloning is cheap.
#[derive(Clone)]
pub struct OwnerAccess {
    /// `Some` when a password protects the interface.
    pub auth: Option<AdminAuth>,
    /// The CSRF token of forms when no password is set (the pages are then loopback-only).
    pub open_csrf: String,
    /// What the interface is called in refusals.
    pub name: &'static str,
    /// Its name on pages.
    pub brand: &'static str,
    /// How its pages look: `viewer.theme`, changed while running on SIGHUP.
    pub theme: LiveTheme,
    /// Where a fresh session lands.
    pub home: &'static str,
}

impl OwnerAccess {
    pub fn new(
        config: &Config,
        name: &'static str,
        brand: &'static str,
        home: &'static str,
    ) -> Self {
        let password = config.viewer.admin_password.clone();
        OwnerAccess {
            auth: (!password.is_empty()).then(|| AdminAuth::new(password, "/login")),
            open_csrf: random_token(),
            name,
            brand,
            theme: LiveTheme::new(config.viewer.color_theme()),
            home,
        }
    }

    /// The CSRF token forms of this request must carry, or `None` without a valid session
    /// (checked by [`crate::http::csrf`]).
    pub fn csrf_for(&self, headers: &HeaderMap) -> Option<String> {
        match &self.auth {
            Some(auth) => auth.session_from(headers).map(|s| s.csrf),
            None => Some(self.open_csrf.clone()),
        }
    }

    /// The `AdminAuth` extractors use: the real one, or a disabled one.
    pub fn admin_auth(&self) -> AdminAuth {
        self.auth
            .clone()
            .unwrap_or_else(|| AdminAuth::new(Default::default(), "/login"))
    }
}

/// The colour theme of an interface's pages, which its owner may change while it runs (the
/// launcher's theme reaches running consoles this way). Cloning is cheap; clones share it.
#[derive(Clone, Debug)]
pub struct LiveTheme(Arc<AtomicBool>);

impl LiveTheme {
    pub fn new(theme: Theme) -> LiveTheme {
        LiveTheme(Arc::new(AtomicBool::new(theme == Theme::Light)))
    }

    pub fn get(&self) -> Theme {
        match self.0.load(Ordering::Relaxed) {
            true => Theme::Light,
            false => Theme::Dark,
        }
    }

    pub fn set(&self, theme: Theme) {
        self.0.store(theme == Theme::Light, Ordering::Relaxed);
    }

    /// Its name, for `data-theme`.
    pub fn as_str(&self) -> &'static str {
        self.get().as_str()
    }
}

/// Refuses to serve a password-less interface anywhere but on loopback.
pub fn check_bind(addr: &SocketAddr, config: &Config) -> anyhow::Result<()> {
    if !addr.ip().is_loopback() && config.viewer.admin_password.is_empty() {
        anyhow::bail!(
            "viewer.http_addr ({addr}) is not a loopback address, so viewer.admin_password must \
             be set; create one with `goop2 hash-password`"
        );
    }
    Ok(())
}

/// Middleware for every route of an interface: without a password it answers only requests
/// from this machine (use with `middleware::from_fn_with_state`).
pub async fn local_only(
    State(access): State<OwnerAccess>,
    request: Request,
    next: Next,
) -> Response {
    if access.auth.is_none() && !is_local_request(request.headers()) {
        return HttpError::new(
            StatusCode::FORBIDDEN,
            format!(
                "This {} has no password, so it answers only local requests. Set \
                 viewer.admin_password (see `goop2 hash-password`) to use it from elsewhere.",
                access.name
            ),
        )
        .for_caller(request.headers(), request.uri().path())
        .into_response();
    }
    next.run(request).await
}

/// Middleware for the owner's routes: with a password they need a session; a page without one
/// is sent to the login, an API call gets 401. (The login page, the static files and what a
/// site calls with its token are routed outside it.)
pub async fn guard(State(access): State<OwnerAccess>, request: Request, next: Next) -> Response {
    if access.csrf_for(request.headers()).is_some() {
        return next.run(request).await;
    }
    if is_api_call(request.headers(), request.uri().path()) {
        return HttpError::new(StatusCode::UNAUTHORIZED, "sign in first").into_response();
    }
    Redirect::to("/login").into_response()
}

/// A request from a browser on this machine: a loopback `Host` and no proxy headers.
pub fn is_local_request(headers: &HeaderMap) -> bool {
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
