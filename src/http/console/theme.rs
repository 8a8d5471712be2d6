//! The console's colour theme. `viewer.theme` picks it for every page (`data-theme` on `<html>`,
//! which the stylesheet follows), so it applies without JavaScript; `/assets/theme.js` adds a
//! switch that keeps one browser's own choice in its `localStorage`.

use axum::Router;
use axum::routing::get;

use super::ConsoleApp;
use crate::http::assets;

pub fn routes() -> Router<ConsoleApp> {
    Router::new().route(
        "/assets/theme.js",
        get(|| async { assets::javascript(assets::THEME_JS) }),
    )
}
