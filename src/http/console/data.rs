//! The data API over HTTP: `POST /api/data/<op>` (this peer's own database, for the signed-in
//! owner) and `POST /api/p/<peerID>/data/<op>` (that peer's database over `/goop/data/1.0.0`,
//! with this peer as the caller; this peer's own ID stays local). `/api/p/<peerID>/data/lua/<call
//! | list>` are `lua-call` / `lua-list`. The browser SDK is served at `/sdk/goop-data.js`.
//!
//! A peer's site (opaque origin, no cookies) reaches only its own peer's proxy: it must present
//! the token its pages were served with ([`super::site_token`]). The console's own pages use
//! their session. Operation errors answer 4xx with the message; an unreachable peer answers 502.
//! A request that cannot be read at all (a body over [`MAX_REQUEST_BYTES`], a path segment that
//! is not UTF-8) gets the same reply, with the status and message of [`crate::http::json_api`].

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::{ConsoleApp, from_own_pages};
use crate::http::error::HttpError;
use crate::http::json_api::{ApiBody, ApiPath};
use crate::identity::PeerId;
use crate::services::data::{Caller, DataError, DataRequest, MAX_REQUEST_BYTES, reply};

/// The header a site's pages send their token in.
pub const TOKEN_HEADER: &str = "x-goop-site-token";

/// The owner's own database, for the console's pages.
pub fn owner_routes() -> Router<ConsoleApp> {
    Router::new()
        .route("/api/data/{op}", post(own_data))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
}

/// What a peer's sandboxed site may call: its data, through this peer, with the token its page
/// was given (or the owner's session), which the handlers check themselves.
pub fn site_routes() -> Router<ConsoleApp> {
    Router::new()
        .route("/api/p/{id}/data/{op}", post(peer_data))
        .route("/api/p/{id}/data/lua/{kind}", post(peer_lua))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .layer(site_cors([Method::POST]))
        .layer(middleware::from_fn(preflight_without_content))
}

/// CORS for a site's calls: a sandboxed page (origin `null`) may read the answers — its token,
/// not ambient credentials, is what authorises them — and its preflight allows `methods` (`POST` for calls, `GET` for event streams) with
/// `content-type` and the token header, nothing more.
pub(super) fn site_cors(methods: impl Into<tower_http::cors::AllowMethods>) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::list([HeaderValue::from_static("null")]))
        .allow_methods(methods)
        .allow_headers([header::CONTENT_TYPE, HeaderName::from_static(TOKEN_HEADER)])
        .max_age(Duration::from_secs(600))
}

/// A preflight is answered `204 No Content`, as it always was here (tower-http says `200`).
pub(super) async fn preflight_without_content(request: Request, next: Next) -> Response {
    let preflight = request.method() == Method::OPTIONS;
    let mut response = next.run(request).await;
    if preflight && response.status() == StatusCode::OK {
        *response.status_mut() = StatusCode::NO_CONTENT;
    }
    response
}

fn answer(result: Result<Value, DataError>) -> Response {
    let status = match &result {
        Ok(_) => StatusCode::OK,
        Err(error) => StatusCode::from_u16(error.code()).unwrap_or(StatusCode::BAD_REQUEST),
    };
    (status, Json(reply(&result))).into_response()
}

/// A data call as the handlers read it: its path parameters (`P`) and its body. What axum cannot
/// read is answered as the data API's reply rather than [`HttpError`]'s JSON error shape, since
/// the reply is the API's contract; the status and message are the same.
struct DataCall<P> {
    path: P,
    body: Bytes,
}

impl<P, S> FromRequest<S> for DataCall<P>
where
    P: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        let unreadable = |error: HttpError| {
            answer(Err(DataError::from_code(
                error.status.as_u16(),
                error.message,
            )))
        };
        let (mut parts, body) = request.into_parts();
        let ApiPath(path) = ApiPath::from_request_parts(&mut parts, state)
            .await
            .map_err(unreadable)?;
        let ApiBody(body) = ApiBody::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(unreadable)?;
        Ok(DataCall { path, body })
    }
}

fn parse_request(op: &str, body: &Bytes) -> Result<DataRequest, DataError> {
    let mut request: DataRequest = if body.iter().all(u8::is_ascii_whitespace) {
        DataRequest::default()
    } else {
        serde_json::from_slice(body)
            .map_err(|e| DataError::BadRequest(format!("the body is not a data request: {e}")))?
    };
    if !request.op.is_empty() && request.op != op {
        return Err(DataError::BadRequest(format!(
            "the body says op `{}` but the URL says `{op}`",
            request.op
        )));
    }
    request.op = op.to_owned();
    Ok(request)
}

/// `/api/data/<op>`: the owner's own database (the console's pages only).
async fn own_data(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    DataCall { path: op, body }: DataCall<String>,
) -> Response {
    if !console_page(&app, &headers) {
        return answer(Err(DataError::Forbidden(
            "the owner's data API answers the console's own pages only".into(),
        )));
    }
    let result = match parse_request(&op, &body) {
        Ok(request) => app.data.handle(&Caller::Owner, request).await,
        Err(error) => Err(error),
    };
    answer(result)
}

/// A request from the console's own pages, with a session (or no password).
fn console_page(app: &ConsoleApp, headers: &HeaderMap) -> bool {
    from_own_pages(headers, &Method::POST) && app.access.csrf_for(headers).is_some()
}

/// Who may use `/api/p/<id>/data/…`: the console's pages, or a page of `<id>`'s own site.
fn authorise(app: &ConsoleApp, headers: &HeaderMap, id: &str) -> Result<(), DataError> {
    let token = headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok());
    authorise_site(app, headers, token, id).map_err(DataError::Forbidden)
}

/// Who may act for `<id>`'s site under `/api/p/<id>/…`: a page of that site, with its token
/// (`token`, from the header or, for an event stream, the query), or the console's own pages.
pub(super) fn authorise_site(
    app: &ConsoleApp,
    headers: &HeaderMap,
    token: Option<&str>,
    id: &str,
) -> Result<(), String> {
    if let Some(token) = token {
        return match app.site_tokens.check(token, id) {
            true => Ok(()),
            false => Err(format!(
                "this page may not act for {id}: a site reaches only its own peer"
            )),
        };
    }
    if console_page(app, headers) {
        return Ok(());
    }
    Err("sign in to the console, or call from a page of this peer's site".into())
}

async fn peer_data(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    DataCall {
        path: (id, op),
        body,
    }: DataCall<(String, String)>,
) -> Response {
    proxy(app, headers, id, op, body).await
}

async fn peer_lua(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    DataCall {
        path: (id, kind),
        body,
    }: DataCall<(String, String)>,
) -> Response {
    proxy(app, headers, id, format!("lua-{kind}"), body).await
}

async fn proxy(
    app: ConsoleApp,
    headers: HeaderMap,
    id: String,
    op: String,
    body: Bytes,
) -> Response {
    if let Err(error) = authorise(&app, &headers, &id) {
        return answer(Err(error));
    }
    let request = match parse_request(&op, &body) {
        Ok(request) => request,
        Err(error) => return answer(Err(error)),
    };
    let Ok(peer) = id.parse::<PeerId>() else {
        return answer(Err(DataError::BadRequest(format!(
            "{id:?} is not a peer ID"
        ))));
    };
    if peer == app.peer_id {
        // This peer's own site: its visitor is its owner.
        return answer(app.data.handle(&Caller::Owner, request).await);
    }
    match app.node.fetch_data(peer, &request).await {
        Ok(reply) => answer(reply),
        Err(error) => (
            StatusCode::BAD_GATEWAY,
            Json(json!({
                "ok": false,
                "error": format!("cannot reach peer {id}: {error}"),
                "code": 502,
            })),
        )
            .into_response(),
    }
}
