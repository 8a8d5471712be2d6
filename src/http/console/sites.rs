//! `/p/{peerID}/{path}`: a peer's site, fetched over `/goop/site/1.0.0` (this peer's own ID: the
//! local files), served sandboxed — see the module above for why.
//!
//! `/visit/{peerID}/{path}`: the same site inside a console page that says whose it is (label,
//! verified by a hub or not, online or not) with a way back. The site stays in its sandbox: a
//! sandboxed frame of `/p/…`, whose own policy lets only the console's pages frame it.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use super::ConsoleApp;
use crate::identity::PeerId;
use crate::services::node::protocols::{FetchError, SiteRefusal};
use crate::services::presence::peer_table::PeerState;
use crate::services::site::SiteError;

/// The policy of every peer site: an opaque origin (no `allow-same-origin`), scripts allowed,
/// network access limited to its own `/p/<id>/` files. Only the console's own pages may frame
/// it (`/visit/`); another site, whose origin is opaque, may not.
const SITE_POLICY: &str = "sandbox allow-scripts allow-forms allow-popups allow-modals \
     allow-downloads; default-src 'self' data: blob:; script-src 'self' 'unsafe-inline'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; \
     frame-ancestors 'self'; base-uri 'self'; form-action 'self'";

/// A peer's site files at `/p/<id>/…`, as its sandboxed pages load them.
pub fn file_routes() -> Router<ConsoleApp> {
    Router::new()
        .route("/p/{id}", get(add_slash))
        .route("/p/{id}/", get(show_index))
        .route("/p/{id}/{*path}", get(show_file))
}

/// The console's page that frames a site under a bar, at `/visit/<id>/…`.
pub fn visit_routes() -> Router<ConsoleApp> {
    Router::new()
        .route("/visit/{id}", get(add_visit_slash))
        .route("/visit/{id}/", get(visit_index))
        .route("/visit/{id}/{*path}", get(visit_file))
}

#[derive(Template, WebTemplate)]
#[template(path = "console_visit.html")]
struct VisitPage {
    frame: super::Frame,
    peer_id: String,
    short_id: String,
    label: String,
    verified: bool,
    is_self: bool,
    /// "online", "offline" or "not heard of".
    state: &'static str,
    /// The framed site's URL.
    src: String,
}

async fn add_visit_slash(Path(id): Path<String>) -> Redirect {
    Redirect::to(&format!("/visit/{id}/"))
}

async fn visit_index(
    State(app): State<ConsoleApp>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
) -> Response {
    visit(app, id, String::new(), headers).await
}

async fn visit_file(
    State(app): State<ConsoleApp>,
    Path((id, path)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
) -> Response {
    visit(app, id, path, headers).await
}

async fn visit(
    app: ConsoleApp,
    id: String,
    path: String,
    headers: axum::http::HeaderMap,
) -> Response {
    let Ok(peer) = id.parse::<PeerId>() else {
        return error_page(
            &app,
            StatusCode::BAD_REQUEST,
            &id,
            &format!("/{path}"),
            format!("{id:?} is not a peer ID"),
        );
    };
    let entry = app.table.entry(&peer).await;
    let is_self = peer == app.peer_id;
    let (label, verified, state) = match (&entry, is_self) {
        (_, true) => (app.label.borrow().clone(), false, "online"),
        (Some(entry), false) => (
            entry.label.clone(),
            entry.verified,
            match entry.state {
                PeerState::Online => "online",
                PeerState::Offline => "offline",
            },
        ),
        (None, false) => (String::new(), false, "not heard of"),
    };
    let encoded: String = path
        .split('/')
        .map(|part| percent_encoding::utf8_percent_encode(part, PATH_PART).to_string())
        .collect::<Vec<_>>()
        .join("/");
    VisitPage {
        frame: app.frame(&headers),
        short_id: crate::http::text::short_id(&id),
        peer_id: id.clone(),
        label,
        verified,
        is_self,
        state,
        src: format!("/p/{id}/{encoded}"),
    }
    .into_response()
}

/// What a path segment keeps as it is in the framed site's URL.
const PATH_PART: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Puts the page's data token, the two peer IDs and the visitor's own label into an HTML page,
/// as `<meta>` tags right after its doctype (or first), where the data SDK finds them.
fn with_site_token(body: Vec<u8>, token: &str, me: &str, host: &str, label: &str) -> Vec<u8> {
    // The pages' own escaping (askama's), so a label cannot leave the attribute.
    let label = askama::filters::escape(label, askama::filters::Html)
        .map(|escaped| escaped.to_string())
        .unwrap_or_default();
    let tags = format!(
        "<meta name=\"goop-site-token\" content=\"{token}\"><meta name=\"goop-self\" \
         content=\"{me}\"><meta name=\"goop-host\" content=\"{host}\">\
         <meta name=\"goop-self-label\" content=\"{label}\">"
    );
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(body.len());
    let doctype = body[start..]
        .get(..9)
        .is_some_and(|head| head.eq_ignore_ascii_case(b"<!doctype"));
    let at = if doctype {
        body[start..]
            .iter()
            .position(|b| *b == b'>')
            .map_or(0, |end| start + end + 1)
    } else {
        0
    };
    let mut out = Vec::with_capacity(body.len() + tags.len());
    out.extend_from_slice(&body[..at]);
    out.extend_from_slice(tags.as_bytes());
    out.extend_from_slice(&body[at..]);
    out
}

async fn add_slash(Path(id): Path<String>) -> Redirect {
    Redirect::to(&format!("/p/{id}/"))
}

async fn show_index(State(app): State<ConsoleApp>, Path(id): Path<String>) -> Response {
    serve(app, id, String::new()).await
}

async fn show_file(
    State(app): State<ConsoleApp>,
    Path((id, path)): Path<(String, String)>,
) -> Response {
    serve(app, id, path).await
}

#[derive(Template, WebTemplate)]
#[template(path = "console_site_error.html")]
struct SiteErrorPage {
    theme: &'static str,
    peer: String,
    path: String,
    message: String,
    /// What the network said, for whoever wants it (folded away on the page).
    detail: Option<String>,
}

fn error_page(
    app: &ConsoleApp,
    status: StatusCode,
    peer: &str,
    path: &str,
    message: String,
) -> Response {
    error_page_with_detail(app, status, peer, path, message, None)
}

fn error_page_with_detail(
    app: &ConsoleApp,
    status: StatusCode,
    peer: &str,
    path: &str,
    message: String,
    detail: Option<String>,
) -> Response {
    (
        status,
        SiteErrorPage {
            theme: app.access.theme.as_str(),
            peer: peer.to_owned(),
            path: path.to_owned(),
            message,
            detail,
        },
    )
        .into_response()
}

/// Why a peer's site cannot be shown, in words: who the peer is, whether it is online and when
/// it was last heard of.
async fn unreachable_message(app: &ConsoleApp, peer: &PeerId) -> String {
    let Some(entry) = app.table.entry(peer).await else {
        return "This peer is not answering, and this console has not heard of it: it may be \
                offline, or on a network this peer does not reach."
            .into();
    };
    let name = match entry.label.is_empty() {
        true => "This peer".to_owned(),
        false => entry.label.clone(),
    };
    let heard = match entry.ts {
        0 => String::new(),
        ts => format!(
            "; last heard of {}",
            crate::http::text::ago(crate::services::hub::unix_ms() - ts)
        ),
    };
    match entry.state {
        PeerState::Online => format!(
            "{name} is online, but is not answering: it may be busy, or not reachable from \
             here (behind a firewall or NAT). Try again in a moment."
        ),
        PeerState::Offline => {
            format!("{name} is not answering: it is offline{heard}. Its site is back when it is.")
        }
    }
}

async fn serve(app: ConsoleApp, id: String, path: String) -> Response {
    let request_path = format!("/{path}");
    let Ok(peer) = id.parse::<PeerId>() else {
        return error_page(
            &app,
            StatusCode::BAD_REQUEST,
            &id,
            &request_path,
            format!("{id:?} is not a peer ID"),
        );
    };
    let made = match peer == app.peer_id {
        true => app.site.generate(None, &request_path).await,
        false => None,
    };
    let (mime, body) = if let Some(made) = made {
        match made {
            Ok(found) => found,
            Err(error) => {
                return error_page(
                    &app,
                    StatusCode::NOT_FOUND,
                    &id,
                    &request_path,
                    error.to_string(),
                );
            }
        }
    } else if peer == app.peer_id {
        let site = app.site.clone();
        let lookup = request_path.clone();
        let file = tokio::task::spawn_blocking(move || {
            let file = site.resolve(&lookup)?;
            let body = std::fs::read(&file.path).map_err(|_| SiteError::NotFound)?;
            Ok::<_, SiteError>((file.mime, body))
        })
        .await
        .unwrap_or(Err(SiteError::NotFound));
        match file {
            Ok(found) => found,
            Err(error) => {
                let status = match error {
                    SiteError::Forbidden => StatusCode::FORBIDDEN,
                    SiteError::NotFound => StatusCode::NOT_FOUND,
                    SiteError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                };
                return error_page(&app, status, &id, &request_path, error.to_string());
            }
        }
    } else {
        match app.node.fetch_site(peer, &request_path).await {
            Ok(reply) => (reply.mime, reply.body),
            Err(FetchError::Refused(refusal)) => {
                let (status, message) = match refusal {
                    SiteRefusal::Forbidden => (
                        StatusCode::FORBIDDEN,
                        format!("This site does not share {request_path}."),
                    ),
                    SiteRefusal::NotFound => (
                        StatusCode::NOT_FOUND,
                        format!("This site has no page {request_path}."),
                    ),
                    other => (
                        StatusCode::BAD_GATEWAY,
                        format!("The peer would not send {request_path}: {other}."),
                    ),
                };
                return error_page(&app, status, &id, &request_path, message);
            }
            Err(error) => {
                return error_page_with_detail(
                    &app,
                    StatusCode::BAD_GATEWAY,
                    &id,
                    &request_path,
                    unreachable_message(&app, &peer).await,
                    Some(error.to_string()),
                );
            }
        }
    };
    let body = if mime == "text/html" {
        with_site_token(
            body,
            &app.site_tokens.issue(&id),
            &app.peer_id.to_base58(),
            &id,
            &app.label.borrow(),
        )
    } else {
        body
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&mime)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(SITE_POLICY),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // For browsers that read it beside the policy's frame-ancestors: the console's own pages.
    headers.insert(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("SAMEORIGIN"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}
