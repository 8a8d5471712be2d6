//! Static files compiled into the binary, served with their content type and a short cache
//! lifetime.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// The stylesheet of every hub and viewer page.
pub const HUB_CSS: &str = include_str!("../../web/hub/hub.css");
/// Live updates of the hub dashboard.
pub const DASHBOARD_JS: &str = include_str!("../../web/hub/dashboard.js");
/// Live updates of the console's peer list.
pub const CONSOLE_JS: &str = include_str!("../../web/console.js");
/// The console's theme switch (a choice kept per browser).
pub const THEME_JS: &str = include_str!("../../web/theme.js");
/// The live tail of the log pages.
pub const LOGS_JS: &str = include_str!("../../web/logs.js");
/// The browser SDK of the data API (`Goop.data`, `Goop.peer`).
pub const GOOP_DATA_JS: &str = include_str!("../../web/sdk/goop-data.js");

pub fn css(body: &'static str) -> Response {
    asset("text/css; charset=utf-8", body)
}

pub fn javascript(body: &'static str) -> Response {
    asset("text/javascript; charset=utf-8", body)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}
