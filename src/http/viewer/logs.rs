//! `/logs`: the recent log and its live tail.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;

use super::ViewerApp;
use crate::http::logs::LogView;

pub fn routes() -> Router<ViewerApp> {
    Router::new()
        .route("/logs", get(show_logs))
        .route("/logs/stream", get(stream_logs))
}

#[derive(Template, WebTemplate)]
#[template(path = "viewer_logs.html")]
struct LogsPage {
    title: String,
    /// `dark` or `light` (`viewer.theme`).
    theme: &'static str,
    csrf: String,
    protected: bool,
    hub_url: String,
    log: LogView,
}

#[derive(Deserialize)]
struct LogQuery {
    level: Option<String>,
    after: Option<u64>,
}

async fn show_logs(
    State(app): State<ViewerApp>,
    headers: HeaderMap,
    Query(query): Query<LogQuery>,
) -> LogsPage {
    LogsPage {
        title: "Logs".into(),
        theme: app.access.theme.as_str(),
        csrf: app.access.csrf_for(&headers).unwrap_or_default(),
        protected: app.access.auth.is_some(),
        hub_url: app.hub_url.clone(),
        log: LogView::new(&app.logs, query.level, "/logs/stream"),
    }
}

async fn stream_logs(State(app): State<ViewerApp>, Query(query): Query<LogQuery>) -> Response {
    crate::http::logs::tail(&app.logs, query.after.unwrap_or(0), app.stop.clone())
}
