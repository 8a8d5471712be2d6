//! Static files compiled into the binary (`web/assets/` at `/assets/<file>`, the browser SDK
//! `web/sdk/` at `/sdk/<file>`), served by one route for every HTTP face: their MIME type, a
//! strong ETag of their content (SHA-256) and `no-cache`, so a browser asks again each time and
//! gets `304 Not Modified` until an upgrade changes the file.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::http::error::HttpError;

#[derive(rust_embed::Embed)]
#[folder = "web/"]
#[include = "assets/*"]
#[include = "sdk/*"]
struct Web;

/// `/assets/<file>` and `/sdk/<file>`, for a router of any state.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/assets/{file}",
            get(|Path(file): Path<String>, headers: HeaderMap| async move {
                serve(&format!("assets/{file}"), &headers)
            }),
        )
        .route(
            "/sdk/{file}",
            get(|Path(file): Path<String>, headers: HeaderMap| async move {
                serve(&format!("sdk/{file}"), &headers)
            }),
        )
}

fn serve(path: &str, request: &HeaderMap) -> Response {
    let Some(file) = Web::get(path) else {
        return HttpError::page(StatusCode::NOT_FOUND, format!("no file /{path}")).into_response();
    };
    let hash = file.metadata.sha256_hash();
    let etag = format!("\"{}\"", hex::encode(&hash[..16]));
    let etag = HeaderValue::from_str(&etag).expect("hex is a valid header value");
    let cache = [
        (header::ETAG, etag.clone()),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    let unchanged = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|tag| tag.trim() == "*" || tag.trim() == etag);
    if unchanged {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let content_type = match mime.type_() {
        mime_guess::mime::TEXT => format!("{mime}; charset=utf-8"),
        _ => mime.to_string(),
    };
    let content_type = HeaderValue::from_str(&content_type).expect("a MIME type is a header value");
    (cache, [(header::CONTENT_TYPE, content_type)], file.data).into_response()
}
