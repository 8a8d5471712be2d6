//! What a peer's site may do live with its peer, for the browser SDK (`goop-group.js`,
//! `goop-chat.js`): a page shown at `/p/<id>/` joins `<id>`'s groups, sends to them and hears
//! them, and chats with `<id>` — as the visitor's own peer, with the token its page was served
//! with (as the data proxy: [`super::data`]), or from the console's own pages.
//!
//! `POST /api/p/<id>/groups/<join|leave|send|state|joined>`,
//! `POST /api/p/<id>/chat/<send|messages>` and `POST /api/p/<id>/mq/send` (a site's own `app.*`
//! topics, to `<id>`) answer JSON (errors in the one JSON error shape);
//! `GET /api/p/<id>/groups|chat|mq/events?token=…` stream what concerns `<id>` only (all app
//! messages on the owner's own site) (an event stream cannot send headers, so the token comes in the
//! query).

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;

use super::ConsoleApp;
use super::data::{TOKEN_HEADER, authorise_site, preflight_without_content, site_cors};
use crate::http::error::HttpError;
use crate::http::json_api::{ApiBody, json_body, json_body_or_default};
use crate::identity::PeerId;
use crate::services::chat::ChatEvent;
use crate::services::groups::{GroupError, GroupEvent, JoinedGroup};

/// Largest body of a call (a group message or state is at most 64 KiB of JSON).
const MAX_BODY: usize = 80 * 1024;

pub fn routes() -> Router<ConsoleApp> {
    Router::new()
        .route("/api/p/{id}/groups/events", get(group_events))
        .route("/api/p/{id}/groups/{op}", post(group_call))
        .route("/api/p/{id}/chat/events", get(chat_events))
        .route("/api/p/{id}/chat/{op}", post(chat_call))
        .route("/api/p/{id}/mq/events", get(app_events))
        .route("/api/p/{id}/mq/send", post(app_send))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        // Event streams are GETs; the calls are POSTs.
        .layer(site_cors([Method::GET, Method::POST]))
        .layer(middleware::from_fn(preflight_without_content))
}

/// The site's peer, once the caller may act for it.
fn site_peer(
    app: &ConsoleApp,
    headers: &HeaderMap,
    token: Option<&str>,
    id: &str,
) -> Result<PeerId, HttpError> {
    let token = token.or_else(|| headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok()));
    authorise_site(app, headers, token, id)
        .map_err(|why| HttpError::new(StatusCode::FORBIDDEN, why))?;
    id.parse()
        .map_err(|_| HttpError::bad_request(format!("{id:?} is not a peer ID")))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct GroupCall {
    group: String,
    payload: Value,
    state: Value,
}

async fn group_call(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    Path((id, op)): Path<(String, String)>,
    ApiBody(body): ApiBody,
) -> Result<Response, HttpError> {
    let host = site_peer(&app, &headers, None, &id)?;
    let call: GroupCall = json_body_or_default(&body, "{\"group\", \"payload\"?, \"state\"?}")?;
    let groups = &app.groups;
    let done = StatusCode::NO_CONTENT.into_response();
    Ok(match op.as_str() {
        "join" if host == app.peer_id => Json(own_group(&app, &call.group).await?).into_response(),
        "join" => Json(groups.join(host, &call.group).await?).into_response(),
        "leave" if host == app.peer_id => done,
        "leave" => {
            groups.leave(host, &call.group).await?;
            done
        }
        "send" => {
            groups.send(host, &call.group, call.payload).await?;
            done
        }
        "state" => {
            groups.set_state(host, &call.group, call.state).await?;
            done
        }
        "joined" => {
            let joined: Vec<JoinedGroup> = match host == app.peer_id {
                true => {
                    let mut own = Vec::new();
                    for group in groups.hosted().await {
                        own.push(own_group(&app, &group.meta.id).await?);
                    }
                    own
                }
                false => groups
                    .joined()
                    .await
                    .into_iter()
                    .filter(|j| j.host == id)
                    .collect(),
            };
            Json(joined).into_response()
        }
        other => {
            return Err(HttpError::new(
                StatusCode::NOT_FOUND,
                format!("there is no group call `{other}` (join, leave, send, state, joined)"),
            ));
        }
    })
}

/// A group this peer hosts, as its own pages join it (the host is in it already).
pub(super) async fn own_group(app: &ConsoleApp, id: &str) -> Result<JoinedGroup, GroupError> {
    let group = app
        .groups
        .hosted()
        .await
        .into_iter()
        .find(|group| group.meta.id == id)
        .ok_or_else(|| GroupError::NotFound(id.to_owned()))?;
    Ok(JoinedGroup {
        host: app.peer_id.to_base58(),
        id: group.meta.id.clone(),
        name: group.meta.name.clone(),
        app_type: group.meta.app_type.clone(),
        role: "host".into(),
        connected: true,
        members: group.members,
        state: group.state,
        meta: Some(group.meta),
        history: group.history,
    })
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// The host an event is about.
fn host_of(event: &GroupEvent) -> &str {
    match event {
        GroupEvent::Welcome { host, .. }
        | GroupEvent::Members { host, .. }
        | GroupEvent::Msg { host, .. }
        | GroupEvent::State { host, .. }
        | GroupEvent::Meta { host, .. }
        | GroupEvent::Closed { host, .. }
        | GroupEvent::HostOffline { host, .. }
        | GroupEvent::HostOnline { host, .. }
        | GroupEvent::Invite { host, .. } => host,
    }
}

async fn group_events(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<TokenQuery>,
) -> Result<Response, HttpError> {
    site_peer(&app, &headers, query.token.as_deref(), &id)?;
    let about = move |event: &GroupEvent| host_of(event) == id;
    Ok(crate::http::sse::json_events(
        app.groups.events(),
        about,
        app.stop.clone(),
    ))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ChatCall {
    text: String,
    before: Option<i64>,
    limit: Option<u32>,
}

async fn chat_call(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    Path((id, op)): Path<(String, String)>,
    ApiBody(body): ApiBody,
) -> Result<Response, HttpError> {
    let peer = site_peer(&app, &headers, None, &id)?;
    let call: ChatCall = json_body_or_default(&body, "{\"text\"}")?;
    if peer == app.peer_id {
        return Err(HttpError::bad_request(
            "this is your own site: there is nobody to chat with here",
        ));
    }
    Ok(match op.as_str() {
        "send" => Json(app.chat.send(peer, &call.text).await?).into_response(),
        "messages" => {
            let limit = call
                .limit
                .unwrap_or(super::chat::SHOWN)
                .clamp(1, super::chat::API_MAX_LIMIT);
            Json(app.chat.history(&peer, call.before, limit).await?).into_response()
        }
        other => {
            return Err(HttpError::new(
                StatusCode::NOT_FOUND,
                format!("there is no chat call `{other}` (send, messages)"),
            ));
        }
    })
}

/// The peer a chat event is about, when it is about one conversation.
fn chat_peer(event: &ChatEvent) -> Option<&str> {
    match event {
        ChatEvent::Message { message } | ChatEvent::Status { message } => Some(&message.peer_id),
        _ => None,
    }
}

async fn chat_events(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<TokenQuery>,
) -> Result<Response, HttpError> {
    site_peer(&app, &headers, query.token.as_deref(), &id)?;
    let about = move |event: &ChatEvent| chat_peer(event) == Some(id.as_str());
    Ok(crate::http::sse::json_events(
        app.chat.events(),
        about,
        app.stop.clone(),
    ))
}

#[derive(Deserialize)]
struct AppSend {
    topic: String,
    #[serde(default)]
    payload: Value,
}

/// A site's message on one of its own topics, to its peer.
async fn app_send(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiBody(body): ApiBody,
) -> Result<StatusCode, HttpError> {
    let peer = site_peer(&app, &headers, None, &id)?;
    let sent: AppSend = json_body(&body, "{\"topic\", \"payload\"}")?;
    if peer == app.peer_id {
        return Err(HttpError::bad_request(
            "this is your own site: its pages hear app messages; they send them to other peers",
        ));
    }
    app.apps.send(peer, &sent.topic, sent.payload).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The app messages of `<id>` (every one, on the owner's own site).
async fn app_events(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<TokenQuery>,
) -> Result<Response, HttpError> {
    let peer = site_peer(&app, &headers, query.token.as_deref(), &id)?;
    let only = (peer != app.peer_id).then_some(id);
    Ok(super::mq::stream_of(&app, only))
}
