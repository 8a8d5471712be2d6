//! `/logs`: the peer's recent log, filtered by level, with a live tail; `/api/logs`: the same
//! records as JSON.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;

use super::{ConsoleApp, Frame};
use crate::http::json_api::ApiQuery;
use crate::http::logs::LogView;

pub fn routes() -> Router<ConsoleApp> {
    Router::new()
        .route("/logs", get(show_logs))
        .route("/logs/stream", get(stream_logs))
        .route("/api/logs", get(logs_json))
}

#[derive(Deserialize)]
struct LogQuery {
    level: Option<String>,
    after: Option<u64>,
}

#[derive(Template, WebTemplate)]
#[template(path = "console_logs.html")]
struct LogsPage {
    frame: Frame,
    log: LogView,
}

async fn show_logs(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    Query(query): Query<LogQuery>,
) -> LogsPage {
    LogsPage {
        frame: app.frame(&headers),
        log: LogView::new(&app.logs, query.level, "/logs/stream"),
    }
}

/// Recent records, oldest first: `[{"seq", "ts", "level", "target", "message", "fields"}]`;
/// `?level=WARN` keeps that level and above, `?after=N` only records after sequence number N.
async fn logs_json(
    State(app): State<ConsoleApp>,
    ApiQuery(query): ApiQuery<LogQuery>,
) -> axum::Json<Vec<std::sync::Arc<crate::telemetry::LogRecord>>> {
    let minimum = query
        .level
        .unwrap_or_else(|| "TRACE".into())
        .to_ascii_uppercase();
    let records = app
        .logs
        .snapshot()
        .into_iter()
        .filter(|record| record.seq > query.after.unwrap_or(0) && record.at_least(&minimum))
        .collect();
    axum::Json(records)
}

async fn stream_logs(State(app): State<ConsoleApp>, Query(query): Query<LogQuery>) -> Response {
    crate::http::logs::tail(&app.logs, query.after.unwrap_or(0), app.stop.clone())
}
