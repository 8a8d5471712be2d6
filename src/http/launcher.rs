//! The launcher's web page and its JSON API (`goop2 launch`): the peers under the launcher's
//! directory, live (`/api/events`), with their logs (`/api/peers/{name}/logs`), and the calls that
//! create, start, stop, restart, delete and restore them.
//!
//! Access follows [`crate::http::access`] like a console: with `launcher.json`'s
//! `admin_password` a session (and its CSRF token on every call that changes something), else
//! loopback only. The page links to each peer's own console; it never proxies one, so a console
//! stays on its own origin behind its own rules.

use std::time::Duration;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{DefaultBodyLimit, FromRef, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::config::Theme;
use crate::http::access::{self, LiveTheme, OwnerAccess};
use crate::http::client_ip::TrustedProxies;
use crate::http::csrf::{CsrfHeader, CsrfSource};
use crate::http::error::HttpError;
use crate::http::json_api::{ApiBody, ApiPath, ApiQuery, json_body, json_body_or_default};
use crate::http::session::AdminAuth;
use crate::http::sse;
use crate::services::launcher::{Launcher, LauncherError, NewPeer};

/// Largest request body the API reads.
const MAX_BODY: usize = 16 * 1024;
/// How often the live list looks again for changes made outside this launcher (a peer started
/// or stopped by hand).
const RESCAN_EVERY: Duration = Duration::from_secs(2);

/// What the launcher's handlers share.
#[derive(Clone)]
pub struct LauncherApp {
    pub launcher: Launcher,
    pub access: OwnerAccess,
    pub proxies: TrustedProxies,
    pub stop: watch::Receiver<bool>,
}

impl CsrfSource for LauncherApp {
    async fn csrf_for(&self, headers: &HeaderMap) -> Option<String> {
        self.access.csrf_for(headers)
    }
}

impl FromRef<LauncherApp> for TrustedProxies {
    fn from_ref(app: &LauncherApp) -> Self {
        app.proxies.clone()
    }
}

impl FromRef<LauncherApp> for OwnerAccess {
    fn from_ref(app: &LauncherApp) -> Self {
        app.access.clone()
    }
}

impl FromRef<LauncherApp> for AdminAuth {
    fn from_ref(app: &LauncherApp) -> Self {
        app.access.admin_auth()
    }
}

impl From<LauncherError> for HttpError {
    fn from(error: LauncherError) -> Self {
        let status = match &error {
            LauncherError::Invalid(_) => StatusCode::BAD_REQUEST,
            LauncherError::NotFound(_) => StatusCode::NOT_FOUND,
            LauncherError::Conflict(_) => StatusCode::CONFLICT,
            LauncherError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        HttpError::new(status, error.to_string())
    }
}

/// Every launcher route, behind the access rules.
pub fn router(app: LauncherApp) -> Router {
    let owner = Router::new()
        .route("/", get(page))
        .route("/api/peers", get(list).post(create))
        .route("/api/events", get(events))
        .route("/api/peers/{name}/start", post(start))
        .route("/api/peers/{name}/stop", post(stop))
        .route("/api/peers/{name}/restart", post(restart))
        .route("/api/peers/{name}/delete", post(delete))
        .route("/api/peers/{name}/autostart", post(autostart))
        .route("/api/peers/{name}/logs", get(logs))
        .route("/api/trash/{id}/restore", post(restore))
        .route("/api/start-all", post(start_all))
        .route("/api/stop-all", post(stop_all))
        .route("/api/theme", post(theme))
        .layer(DefaultBodyLimit::max(MAX_BODY))
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

#[derive(Template, WebTemplate)]
#[template(path = "launcher.html")]
struct LauncherPage {
    theme: String,
    csrf: String,
    protected: bool,
    dir: String,
    templates: Vec<String>,
}

async fn page(State(app): State<LauncherApp>, headers: HeaderMap) -> impl IntoResponse {
    LauncherPage {
        theme: app.launcher.settings().theme,
        csrf: app.access.csrf_for(&headers).unwrap_or_default(),
        protected: app.access.auth.is_some(),
        dir: app.launcher.dir().display().to_string(),
        templates: crate::services::sitetemplates::builtin::names(),
    }
}

/// The peers, the trash and the settings the page shows.
async fn snapshot(launcher: &Launcher) -> Value {
    let settings = launcher.settings();
    json!({
        "peers": launcher.peers().await,
        "trash": launcher.trash().await,
        "theme": settings.theme,
    })
}

async fn list(State(app): State<LauncherApp>) -> Json<Value> {
    Json(snapshot(&app.launcher).await)
}

/// The same as `/api/peers`, again on every change (`event: peers`).
async fn events(State(app): State<LauncherApp>) -> Response {
    let launcher = app.launcher.clone();
    let changes = launcher.changes();
    let state = (launcher, changes, None::<String>, true);
    let stream =
        futures_util::stream::unfold(state, |(launcher, mut changes, last, first)| async move {
            loop {
                if !first || last.is_some() {
                    tokio::select! {
                        changed = changes.changed() => if changed.is_err() { return None },
                        () = tokio::time::sleep(RESCAN_EVERY) => {}
                    }
                }
                let now = snapshot(&launcher).await.to_string();
                if last.as_deref() == Some(now.as_str()) {
                    continue;
                }
                let event = Event::default().event("peers").data(now.clone());
                return Some((event, (launcher, changes, Some(now), false)));
            }
        });
    sse::respond(stream, app.stop.clone())
}

async fn create(
    State(app): State<LauncherApp>,
    _: CsrfHeader,
    ApiBody(body): ApiBody,
) -> Result<Response, HttpError> {
    let new: NewPeer = json_body(&body, "a new peer: {\"name\": …}")?;
    let view = app.launcher.create(new).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

async fn start(
    State(app): State<LauncherApp>,
    _: CsrfHeader,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, HttpError> {
    Ok(Json(app.launcher.start(&name).await?).into_response())
}

async fn stop(
    State(app): State<LauncherApp>,
    _: CsrfHeader,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, HttpError> {
    Ok(Json(app.launcher.stop(&name).await?).into_response())
}

async fn restart(
    State(app): State<LauncherApp>,
    _: CsrfHeader,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, HttpError> {
    Ok(Json(app.launcher.restart(&name).await?).into_response())
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Confirm {
    confirm: String,
}

async fn delete(
    State(app): State<LauncherApp>,
    _: CsrfHeader,
    ApiPath(name): ApiPath<String>,
    ApiBody(body): ApiBody,
) -> Result<Response, HttpError> {
    let Confirm { confirm } = json_body_or_default(&body, "{\"confirm\": \"<the peer's name>\"}")?;
    Ok(Json(app.launcher.delete(&name, &confirm).await?).into_response())
}

#[derive(Deserialize)]
struct Switch {
    on: bool,
}

async fn autostart(
    State(app): State<LauncherApp>,
    _: CsrfHeader,
    ApiPath(name): ApiPath<String>,
    ApiBody(body): ApiBody,
) -> Result<Response, HttpError> {
    let Switch { on } = json_body(&body, "{\"on\": true|false}")?;
    Ok(Json(app.launcher.set_autostart(&name, on).await?).into_response())
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct After {
    after: u64,
}

/// The output of a peer's process: what is kept, then new lines as they come.
async fn logs(
    State(app): State<LauncherApp>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(After { after }): ApiQuery<After>,
) -> Result<Response, HttpError> {
    app.launcher.peer(&name).await?;
    let logs = app
        .launcher
        .logs(&name)
        .unwrap_or_else(|| crate::telemetry::LogBuffer::new(1));
    Ok(crate::http::logs::tail(&logs, after, app.stop.clone()))
}

async fn restore(
    State(app): State<LauncherApp>,
    _: CsrfHeader,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, HttpError> {
    let (peer, notes) = app.launcher.restore(&id).await?;
    Ok(Json(json!({ "peer": peer, "notes": notes })).into_response())
}

async fn start_all(State(app): State<LauncherApp>, _: CsrfHeader) -> Json<Value> {
    let outcomes: Vec<Value> = app
        .launcher
        .start_all()
        .await
        .into_iter()
        .map(|(name, outcome)| match outcome {
            Ok(()) => json!({ "name": name, "started": true }),
            Err(error) => json!({ "name": name, "started": false, "error": error }),
        })
        .collect();
    Json(json!({ "outcomes": outcomes }))
}

async fn stop_all(State(app): State<LauncherApp>, _: CsrfHeader) -> StatusCode {
    app.launcher.stop_all().await;
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct ThemeChoice {
    theme: String,
}

async fn theme(
    State(app): State<LauncherApp>,
    _: CsrfHeader,
    ApiBody(body): ApiBody,
) -> Result<Json<Value>, HttpError> {
    let ThemeChoice { theme } = json_body(&body, "{\"theme\": \"dark\"|\"light\"}")?;
    let refused = app.launcher.set_theme(&theme).await?;
    app.access.theme.set(Theme::named(&theme));
    Ok(Json(json!({ "theme": theme, "refused": refused })))
}

/// The access rules of the launcher: `launcher.json`'s password, else loopback only.
pub fn access(launcher: &Launcher) -> OwnerAccess {
    let settings = launcher.settings();
    let password = settings.admin_password;
    OwnerAccess {
        auth: (!password.is_empty()).then(|| AdminAuth::new(password, "/login")),
        open_csrf: crate::services::auth::random_token(),
        name: "launcher",
        brand: "Goop² launcher",
        theme: LiveTheme::new(Theme::named(&settings.theme)),
        home: "/",
    }
}
