//! `/admin`: the operator's pages behind `presence.admin_password` — peers with emails, kick
//! and ban, the ban list, live logs, the configuration (redacted) and the template store.

use std::str::FromStr;
use std::time::Duration;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use libp2p_identity::PeerId;
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;

use super::HubApp;
use super::dashboard::{DashboardPeer, ago};
use crate::http::client_ip::ClientIp;
use crate::http::csrf::{CsrfForm, CsrfMultipart};
use crate::http::error::HttpError;
use crate::http::session::{self, AdminSession, LoginRefused};
use crate::services::auth::Session;
use crate::services::hub::unix_ms;
use crate::services::sitetemplates::store::MAX_UPLOAD_BYTES;
use crate::telemetry::LogRecord;

pub fn routes() -> Router<HubApp> {
    Router::new()
        .route("/admin", get(show_admin))
        .route("/admin/login", post(log_in))
        .route("/admin/logout", post(log_out))
        .route("/admin/peers/kick", post(kick_peer))
        .route("/admin/peers/ban", post(ban_peer))
        .route("/admin/peers/unban", post(unban_peer))
        .route("/admin/logs", get(show_logs))
        .route("/admin/logs/stream", get(stream_logs))
        .route("/logs.json", get(list_logs))
        .route("/admin/config", get(show_config))
        .route("/admin/templates", get(show_templates))
        .route(
            "/admin/templates",
            post(upload_template).layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES + 64 * 1024)),
        )
        .route("/admin/templates/delete", post(delete_template))
}

#[derive(Template, WebTemplate)]
#[template(path = "hub_admin_login.html")]
struct LoginPage {
    hub_name: String,
    enabled: bool,
    error: Option<String>,
}

struct AdminPeer {
    row: DashboardPeer,
    email: String,
}

struct BanRow {
    peer_id: String,
    remaining: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "hub_admin.html")]
struct AdminPage {
    hub_name: String,
    csrf: String,
    notice: Option<String>,
    peers: Vec<AdminPeer>,
    bans: Vec<BanRow>,
    relay: Option<RelayView>,
}

/// The circuit relay as the administrator sees it.
struct RelayView {
    peer_id: String,
    addrs: Vec<String>,
    limits: crate::services::relay::RelayLimits,
    reservations: u64,
    circuits: u64,
    refused: u64,
}

impl RelayView {
    fn of(relay: &crate::services::relay::Relay) -> RelayView {
        use std::sync::atomic::Ordering::Relaxed;
        let metrics = &relay.metrics;
        RelayView {
            peer_id: relay.peer_id.to_base58(),
            addrs: relay.addrs.iter().map(ToString::to_string).collect(),
            limits: relay.limits.clone(),
            reservations: metrics.reservations.load(Relaxed),
            circuits: metrics.circuits.load(Relaxed),
            refused: metrics.reservations_refused.load(Relaxed)
                + metrics.circuits_refused.load(Relaxed),
        }
    }
}

async fn show_admin(State(app): State<HubApp>, headers: HeaderMap) -> Response {
    let hub_name = app.hub.options().name.clone();
    if !app.admin.enabled() {
        let page = LoginPage {
            hub_name,
            enabled: false,
            error: None,
        };
        return (StatusCode::FORBIDDEN, page).into_response();
    }
    let Some(session) = app.admin.session(&headers).await else {
        return LoginPage {
            hub_name,
            enabled: true,
            error: None,
        }
        .into_response();
    };
    let now_ms = unix_ms();
    AdminPage {
        hub_name,
        relay: app.relay.as_ref().map(RelayView::of),
        notice: app.admin.sessions.take_notice(&session.token).await,
        csrf: session.csrf,
        peers: app
            .hub
            .peers()
            .iter()
            .map(|record| AdminPeer {
                row: DashboardPeer::from_record(record, now_ms),
                email: record.presence.email.clone().unwrap_or_default(),
            })
            .collect(),
        bans: app
            .hub
            .bans()
            .into_iter()
            .map(|(peer, left)| BanRow {
                peer_id: peer.to_base58(),
                remaining: ago(left.as_millis() as i64)
                    .trim_end_matches(" ago")
                    .to_owned(),
            })
            .collect(),
    }
    .into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    password: String,
}

async fn log_in(
    State(app): State<HubApp>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    match app.admin.attempt_login(ip, &form.password).await {
        Ok(session) => session::signed_in(&session, &headers, "/admin"),
        Err(LoginRefused::Disabled) => Redirect::to("/admin").into_response(),
        Err(refused) => refused.decorate(
            LoginPage {
                hub_name: app.hub.options().name.clone(),
                enabled: true,
                error: Some(refused.message()),
            }
            .into_response(),
        ),
    }
}

async fn log_out(
    State(app): State<HubApp>,
    AdminSession(session): AdminSession,
    _: CsrfForm,
) -> Response {
    app.admin.sessions.remove(&session.token).await;
    let mut response = Redirect::to("/admin").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session::cleared_cookie());
    response
}

#[derive(Deserialize)]
struct PeerForm {
    peer_id: String,
    minutes: Option<u64>,
}

fn parse_peer(text: &str) -> Result<PeerId, HttpError> {
    PeerId::from_str(text.trim()).map_err(|e| {
        HttpError::page(
            StatusCode::BAD_REQUEST,
            format!("{text:?} is not a peer ID: {e}"),
        )
    })
}

/// Back to the peer list, which tells the administrator `notice`.
async fn back_with(app: &HubApp, session: &Session, notice: String) -> Response {
    session::redirect_with_flash(&app.admin, session, "/admin", notice).await
}

async fn kick_peer(
    State(app): State<HubApp>,
    AdminSession(session): AdminSession,
    CsrfForm(form): CsrfForm<PeerForm>,
) -> Result<Response, HttpError> {
    let peer = parse_peer(&form.peer_id)?;
    // The hub logs kicks, bans and lifted bans itself.
    let notice = if app.hub.kick(&peer) {
        format!("Kicked {peer}.")
    } else {
        format!("{peer} was not online.")
    };
    Ok(back_with(&app, &session, notice).await)
}

async fn ban_peer(
    State(app): State<HubApp>,
    AdminSession(session): AdminSession,
    CsrfForm(form): CsrfForm<PeerForm>,
) -> Result<Response, HttpError> {
    let peer = parse_peer(&form.peer_id)?;
    let minutes = form.minutes.unwrap_or(60).clamp(1, 366 * 24 * 60);
    let notice = match app.hub.ban(peer, Duration::from_secs(minutes * 60)).await {
        Ok(()) => format!("Banned {peer} for {minutes} min."),
        Err(problem) => {
            format!(
                "Banned {peer} for {minutes} min on this instance; it is not in the database yet \
                 ({problem}): it reaches other instances and survives a restart once the \
                 database takes it."
            )
        }
    };
    Ok(back_with(&app, &session, notice).await)
}

async fn unban_peer(
    State(app): State<HubApp>,
    AdminSession(session): AdminSession,
    CsrfForm(form): CsrfForm<PeerForm>,
) -> Result<Response, HttpError> {
    let peer = parse_peer(&form.peer_id)?;
    let notice = match app.hub.unban(&peer).await {
        Ok(true) => format!("Lifted the ban on {peer}."),
        Ok(false) => format!("{peer} was not banned."),
        Err(problem) => format!(
            "Lifted the ban on {peer} on this instance; that is not in the database yet \
             ({problem}): other instances and a restart keep the ban until the database takes it."
        ),
    };
    Ok(back_with(&app, &session, notice).await)
}

#[derive(Template, WebTemplate)]
#[template(path = "hub_admin_logs.html")]
struct LogsPage {
    hub_name: String,
    csrf: String,
    notice: Option<String>,
    lines: Vec<String>,
    last_seq: u64,
}

async fn show_logs(State(app): State<HubApp>, AdminSession(session): AdminSession) -> LogsPage {
    let records = app.logs.snapshot();
    LogsPage {
        hub_name: app.hub.options().name.clone(),
        csrf: session.csrf,
        notice: None,
        last_seq: records.last().map_or(0, |r| r.seq),
        lines: records.iter().map(|r| r.line()).collect(),
    }
}

async fn list_logs(State(app): State<HubApp>, _admin: AdminSession) -> Json<Vec<Arc<LogRecord>>> {
    Json(app.logs.snapshot())
}

#[derive(Deserialize)]
struct After {
    after: Option<u64>,
}

/// Live log records as SSE, starting after the given sequence number.
async fn stream_logs(
    State(app): State<HubApp>,
    _admin: AdminSession,
    Query(After { after }): Query<After>,
) -> Response {
    crate::http::logs::tail(&app.logs, after.unwrap_or(0), app.hub.shutdown_signal())
}

#[derive(Template, WebTemplate)]
#[template(path = "hub_admin_config.html")]
struct ConfigPage {
    hub_name: String,
    csrf: String,
    notice: Option<String>,
    config_json: String,
}

async fn show_config(State(app): State<HubApp>, AdminSession(session): AdminSession) -> ConfigPage {
    let mut config = (*app.config).clone();
    for secret in [
        &mut config.presence.admin_password,
        &mut config.viewer.admin_password,
    ] {
        if !secret.is_empty() {
            *secret = crate::config::Secret::new("<redacted>");
        }
    }
    let url = crate::config::redact_url_password(config.presence.peer_db_url.expose());
    config.presence.peer_db_url = crate::config::Secret::new(url);
    ConfigPage {
        hub_name: app.hub.options().name.clone(),
        csrf: session.csrf,
        notice: None,
        config_json: config.to_json(),
    }
}

struct TemplateRow {
    dir: String,
    name: String,
    version: String,
    description: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "hub_admin_templates.html")]
struct TemplatesPage {
    hub_name: String,
    csrf: String,
    notice: Option<String>,
    templates: Vec<TemplateRow>,
}

async fn show_templates(
    State(app): State<HubApp>,
    AdminSession(session): AdminSession,
) -> TemplatesPage {
    let listed = app.templates.list().await.unwrap_or_else(|err| {
        tracing::warn!("template store: {err}");
        Vec::new()
    });
    let text = |m: &Value, key: &str| m.get(key).and_then(Value::as_str).unwrap_or("").to_owned();
    TemplatesPage {
        hub_name: app.hub.options().name.clone(),
        notice: app.admin.sessions.take_notice(&session.token).await,
        csrf: session.csrf,
        templates: listed
            .iter()
            .map(|m| TemplateRow {
                dir: text(m, "dir"),
                name: text(m, "name"),
                version: text(m, "version"),
                description: text(m, "description"),
            })
            .collect(),
    }
}

/// Back to the template store, which tells the administrator `notice`.
async fn templates_with(app: &HubApp, session: &Session, notice: String) -> Response {
    session::redirect_with_flash(&app.admin, session, "/admin/templates", notice).await
}

async fn upload_template(
    State(app): State<HubApp>,
    AdminSession(session): AdminSession,
    CsrfMultipart(form): CsrfMultipart,
) -> Result<Response, HttpError> {
    let name = form.text("name").trim().to_owned();
    let bundle = form.part("bundle").map(|part| part.data.clone());
    let bundle = bundle
        .ok_or_else(|| HttpError::page(StatusCode::BAD_REQUEST, "the form has no bundle file"))?;
    let installed = app
        .templates
        .install(bundle, Some(name).filter(|n| !n.is_empty()))
        .await;
    match installed {
        Ok(name) => Ok(templates_with(&app, &session, format!("Installed template {name}.")).await),
        Err(err) => {
            tracing::warn!("template upload refused: {err}");
            Ok(templates_with(&app, &session, err.to_string()).await)
        }
    }
}

#[derive(Deserialize)]
struct DeleteForm {
    name: String,
}

async fn delete_template(
    State(app): State<HubApp>,
    AdminSession(session): AdminSession,
    CsrfForm(form): CsrfForm<DeleteForm>,
) -> Result<Response, HttpError> {
    Ok(match app.templates.delete(&form.name).await {
        Ok(()) => templates_with(&app, &session, format!("Deleted template {}.", form.name)).await,
        Err(err) => templates_with(&app, &session, err.to_string()).await,
    })
}
