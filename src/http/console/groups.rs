//! Groups in the console: the `/groups` page (hosted groups: create, invite, kick, roles,
//! close; joined groups: host online or not, leave; invitations: accept, decline) with forms
//! that work without JavaScript, and the same under `/api/groups` with a live stream at
//! `/api/groups/events`.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ConsoleApp, Frame};
use crate::http::csrf::CsrfForm;
use crate::http::error::HttpError;
use crate::http::json_api::{ApiBody, ApiPath, json_body};
use crate::http::text::short_id;
use crate::identity::PeerId;
use crate::services::groups::{GroupError, HostedGroup, JoinedGroup, NewGroup};
use crate::store::groups::SubscriptionRow;

pub fn routes() -> Router<ConsoleApp> {
    Router::new()
        .route("/groups", get(groups_page).post(create_form))
        .route("/groups/join", post(join_form))
        .route("/groups/{id}/invite", post(invite_form))
        .route("/groups/{id}/kick", post(kick_form))
        .route("/groups/{id}/role", post(role_form))
        .route("/groups/{id}/close", post(close_form))
        .route("/groups/{host}/{id}", get(room_page))
        .route("/groups/{host}/{id}/say", post(say_form))
        .route("/groups/{host}/{id}/leave", post(leave_form))
        .route("/groups/{host}/{id}/answer", post(answer_form))
        .route("/api/groups", get(groups_json).post(create_json))
        .route("/api/groups/events", get(group_events))
        .route("/api/groups/join", post(join_json))
        .route("/api/groups/leave", post(leave_json))
        .route("/api/groups/send", post(send_json))
        .route("/api/groups/state", post(state_json))
        .route("/api/groups/answer", post(answer_json))
        .route("/api/groups/auto-join", post(auto_join_json))
        .route("/api/groups/{id}/close", post(close_json))
        .route("/api/groups/{id}/invite", post(invite_json))
        .route("/api/groups/{id}/kick", post(kick_json))
        .route("/api/groups/{id}/role", post(role_json))
        .route("/api/groups/{id}/meta", post(meta_json))
}

impl From<GroupError> for HttpError {
    fn from(error: GroupError) -> Self {
        let status = match &error {
            GroupError::Invalid(_) => StatusCode::BAD_REQUEST,
            GroupError::NotFound(_) => StatusCode::NOT_FOUND,
            GroupError::Refused(reason) if reason == "not_found" => StatusCode::NOT_FOUND,
            GroupError::Refused(reason) if reason == "rate limited" => {
                StatusCode::TOO_MANY_REQUESTS
            }
            GroupError::Refused(_) => StatusCode::CONFLICT,
            GroupError::Unreachable(_) => StatusCode::BAD_GATEWAY,
            GroupError::Limit(_) => StatusCode::TOO_MANY_REQUESTS,
            GroupError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
            GroupError::Store(err) => {
                tracing::error!("groups: {err}");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        HttpError::new(status, error.to_string())
    }
}

fn peer_of(id: &str) -> Result<PeerId, HttpError> {
    id.trim()
        .parse()
        .map_err(|_| HttpError::bad_request(format!("{id:?} is not a peer ID")))
}

// ---- JSON ----

/// `{"hosted": [...], "joined": [...], "invites": [...]}`.
async fn groups_json(State(app): State<ConsoleApp>) -> Result<Json<Value>, HttpError> {
    let hosted = app.groups.hosted().await;
    let joined = app.groups.joined().await;
    let invites = app.groups.invites().await?;
    Ok(Json(
        json!({"hosted": hosted, "joined": joined, "invites": invites}),
    ))
}

async fn create_json(
    State(app): State<ConsoleApp>,
    ApiBody(bytes): ApiBody,
) -> Result<Json<Value>, HttpError> {
    let new: NewGroup = json_body(&bytes, "a group: {\"name\", \"id\", \"app_type\", …}")?;
    Ok(Json(json!(app.groups.create(new).await?)))
}

#[derive(Deserialize)]
struct GroupRef {
    host: String,
    group: String,
}

const GROUP_REF: &str = "{\"host\": \"<peer ID>\", \"group\": \"<group id>\"}";

async fn join_json(
    State(app): State<ConsoleApp>,
    ApiBody(bytes): ApiBody,
) -> Result<Json<JoinedGroup>, HttpError> {
    let at: GroupRef = json_body(&bytes, GROUP_REF)?;
    Ok(Json(app.groups.join(peer_of(&at.host)?, &at.group).await?))
}

async fn leave_json(
    State(app): State<ConsoleApp>,
    ApiBody(bytes): ApiBody,
) -> Result<StatusCode, HttpError> {
    let at: GroupRef = json_body(&bytes, GROUP_REF)?;
    app.groups.leave(peer_of(&at.host)?, &at.group).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct Carried {
    host: String,
    group: String,
    #[serde(default)]
    payload: Value,
    #[serde(default)]
    state: Value,
}

async fn send_json(
    State(app): State<ConsoleApp>,
    ApiBody(bytes): ApiBody,
) -> Result<StatusCode, HttpError> {
    let sent: Carried = json_body(&bytes, "{\"host\", \"group\", \"payload\"}")?;
    app.groups
        .send(peer_of(&sent.host)?, &sent.group, sent.payload)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn state_json(
    State(app): State<ConsoleApp>,
    ApiBody(bytes): ApiBody,
) -> Result<StatusCode, HttpError> {
    let sent: Carried = json_body(&bytes, "{\"host\", \"group\", \"state\"}")?;
    app.groups
        .set_state(peer_of(&sent.host)?, &sent.group, sent.state)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct Answer {
    host: String,
    group: String,
    accept: bool,
}

async fn answer_json(
    State(app): State<ConsoleApp>,
    ApiBody(bytes): ApiBody,
) -> Result<StatusCode, HttpError> {
    let answer: Answer = json_body(&bytes, "{\"host\", \"group\", \"accept\": true|false}")?;
    app.groups
        .answer_invite(peer_of(&answer.host)?, &answer.group, answer.accept)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct AutoJoin {
    host: String,
    auto: bool,
}

async fn auto_join_json(
    State(app): State<ConsoleApp>,
    ApiBody(bytes): ApiBody,
) -> Result<StatusCode, HttpError> {
    let auto: AutoJoin = json_body(&bytes, "{\"host\", \"auto\": true|false}")?;
    app.groups
        .set_auto_join(peer_of(&auto.host)?, auto.auto)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn close_json(
    State(app): State<ConsoleApp>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, HttpError> {
    app.groups.close(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct PeerBody {
    peer: String,
    #[serde(default)]
    ban: bool,
    #[serde(default)]
    role: String,
}

async fn invite_json(
    State(app): State<ConsoleApp>,
    ApiPath(id): ApiPath<String>,
    ApiBody(bytes): ApiBody,
) -> Result<StatusCode, HttpError> {
    let who: PeerBody = json_body(&bytes, "{\"peer\": \"<peer ID>\"}")?;
    app.groups.invite(&id, peer_of(&who.peer)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn kick_json(
    State(app): State<ConsoleApp>,
    ApiPath(id): ApiPath<String>,
    ApiBody(bytes): ApiBody,
) -> Result<StatusCode, HttpError> {
    let who: PeerBody = json_body(&bytes, "{\"peer\": \"<peer ID>\", \"ban\": false}")?;
    app.groups.kick(&id, peer_of(&who.peer)?, who.ban).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn role_json(
    State(app): State<ConsoleApp>,
    ApiPath(id): ApiPath<String>,
    ApiBody(bytes): ApiBody,
) -> Result<StatusCode, HttpError> {
    let who: PeerBody = json_body(&bytes, "{\"peer\": \"<peer ID>\", \"role\": \"…\"}")?;
    app.groups
        .set_role(&id, peer_of(&who.peer)?, &who.role)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct MetaBody {
    name: Option<String>,
    context: Option<Value>,
}

/// Renames a hosted group or changes its context: `{"name"?, "context"?}`; the new meta.
async fn meta_json(
    State(app): State<ConsoleApp>,
    ApiPath(id): ApiPath<String>,
    ApiBody(bytes): ApiBody,
) -> Result<Json<Value>, HttpError> {
    let meta: MetaBody = json_body(&bytes, "{\"name\"?, \"context\"?}")?;
    Ok(Json(json!(
        app.groups.set_meta(&id, meta.name, meta.context).await?
    )))
}

/// What happens in the groups as Server-Sent Events (see
/// [`crate::services::groups::GroupEvent`]), and `{"kind": "reload"}` when the stream fell
/// behind.
async fn group_events(State(app): State<ConsoleApp>) -> Response {
    crate::http::sse::json_events(app.groups.events(), |_| true, app.stop.clone())
}

// ---- the page ----

#[derive(Template, WebTemplate)]
#[template(path = "console_groups.html")]
struct GroupsPage {
    frame: Frame,
    notice: Option<String>,
    hosted: Vec<HostedGroup>,
    joined: Vec<JoinedGroup>,
    invites: Vec<SubscriptionRow>,
    /// The label of every peer the page names.
    labels: Labels,
}

/// Labels of the peers a page names, by peer ID (their short ID when they are not known).
#[derive(Default)]
struct Labels(std::collections::HashMap<String, String>);

impl Labels {
    async fn of(app: &ConsoleApp, ids: Vec<String>) -> Labels {
        let mut labels = std::collections::HashMap::new();
        for id in ids {
            if let std::collections::hash_map::Entry::Vacant(entry) = labels.entry(id) {
                let label = super::chat::label_of(app, entry.key()).await;
                entry.insert(label);
            }
        }
        Labels(labels)
    }

    fn get(&self, id: &str) -> String {
        self.0.get(id).cloned().unwrap_or_else(|| short_id(id))
    }
}

#[derive(Deserialize)]
struct NoticeQuery {
    notice: Option<String>,
}

async fn groups_page(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    Query(query): Query<NoticeQuery>,
) -> Result<GroupsPage, HttpError> {
    let hosted = app.groups.hosted().await;
    let joined = app.groups.joined().await;
    let invites = app
        .groups
        .invites()
        .await
        .map_err(|e| HttpError::from(e).on_page())?;
    let named = hosted
        .iter()
        .flat_map(|g| {
            g.members
                .iter()
                .chain(&g.away)
                .map(|m| m.peer_id.as_str())
                .chain(g.invited.iter().chain(&g.banned).map(String::as_str))
        })
        .chain(joined.iter().map(|j| j.host.as_str()))
        .chain(invites.iter().map(|i| i.host_peer_id.as_str()))
        .map(str::to_owned)
        .collect();
    let labels = Labels::of(&app, named).await;
    Ok(GroupsPage {
        notice: app.notices.open(query.notice),
        frame: app.frame(&headers),
        hosted,
        joined,
        invites,
        labels,
    })
}

/// A form's outcome: back to the page with a notice either way.
fn back(app: &ConsoleApp, outcome: Result<String, GroupError>) -> Response {
    let text = match outcome {
        Ok(text) => text,
        Err(err) => err.to_string(),
    };
    app.notices.redirect("/groups", &text)
}

#[derive(Deserialize)]
struct CreateForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    app_type: String,
    #[serde(default)]
    max_members: String,
    #[serde(default)]
    persistent: Option<String>,
    #[serde(default)]
    invite_only: Option<String>,
    /// Comma-separated; the first is the default.
    #[serde(default)]
    roles: String,
    /// A chat room: keeps the last messages for those who join.
    #[serde(default)]
    room: Option<String>,
}

/// Messages a chat room created from the page keeps.
const ROOM_HISTORY: u32 = 100;

async fn create_form(
    State(app): State<ConsoleApp>,
    CsrfForm(form): CsrfForm<CreateForm>,
) -> Response {
    let max_members = match form.max_members.trim() {
        "" => 0,
        text => match text.parse() {
            Ok(n) => n,
            Err(_) => {
                return back(
                    &app,
                    Err(GroupError::Invalid(format!(
                        "max_members must be a whole number; {text:?} is not"
                    ))),
                );
            }
        },
    };
    let room = form.room.is_some();
    let app_type = match (form.app_type.trim(), room) {
        ("", true) => "chat".to_owned(),
        (other, _) => other.to_owned(),
    };
    let new = NewGroup {
        id: Some(form.id.trim().to_owned()).filter(|id| !id.is_empty()),
        name: form.name,
        app_type,
        history: if room { ROOM_HISTORY } else { 0 },
        max_members,
        persistent: form.persistent.is_some(),
        invite_only: form.invite_only.is_some(),
        roles: form
            .roles
            .split(',')
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty())
            .collect(),
        ..NewGroup::default()
    };
    let outcome = app
        .groups
        .create(new)
        .await
        .map(|meta| format!("Group {} created.", meta.id));
    back(&app, outcome)
}

#[derive(Deserialize)]
struct JoinForm {
    #[serde(default)]
    host: String,
    #[serde(default)]
    group: String,
}

async fn join_form(State(app): State<ConsoleApp>, CsrfForm(form): CsrfForm<JoinForm>) -> Response {
    let outcome = match form.host.trim().parse::<PeerId>() {
        Ok(host) => app
            .groups
            .join(host, form.group.trim())
            .await
            .map(|joined| format!("Joined {}.", joined.name)),
        Err(_) => Err(GroupError::Invalid(format!(
            "{:?} is not a peer ID",
            form.host
        ))),
    };
    back(&app, outcome)
}

#[derive(Deserialize)]
struct PeerForm {
    #[serde(default)]
    peer: String,
    #[serde(default)]
    ban: Option<String>,
}

async fn invite_form(
    State(app): State<ConsoleApp>,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<PeerForm>,
) -> Response {
    let outcome = match form.peer.trim().parse::<PeerId>() {
        Ok(peer) => app
            .groups
            .invite(&id, peer)
            .await
            .map(|()| format!("Invited {}.", short_id(&peer.to_base58()))),
        Err(_) => Err(GroupError::Invalid(format!(
            "{:?} is not a peer ID",
            form.peer
        ))),
    };
    back(&app, outcome)
}

#[derive(Deserialize)]
struct RoleForm {
    #[serde(default)]
    peer: String,
    #[serde(default)]
    role: String,
}

async fn role_form(
    State(app): State<ConsoleApp>,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<RoleForm>,
) -> Response {
    let outcome = match form.peer.trim().parse::<PeerId>() {
        Ok(peer) => app
            .groups
            .set_role(&id, peer, form.role.trim())
            .await
            .map(|()| {
                format!(
                    "{} is now {}.",
                    short_id(&peer.to_base58()),
                    form.role.trim()
                )
            }),
        Err(_) => Err(GroupError::Invalid(format!(
            "{:?} is not a peer ID",
            form.peer
        ))),
    };
    back(&app, outcome)
}

async fn kick_form(
    State(app): State<ConsoleApp>,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<PeerForm>,
) -> Response {
    let outcome = match form.peer.trim().parse::<PeerId>() {
        Ok(peer) => app
            .groups
            .kick(&id, peer, form.ban.is_some())
            .await
            .map(|()| "Removed.".to_owned()),
        Err(_) => Err(GroupError::Invalid(format!(
            "{:?} is not a peer ID",
            form.peer
        ))),
    };
    back(&app, outcome)
}

async fn close_form(
    State(app): State<ConsoleApp>,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm,
) -> Response {
    let outcome = app
        .groups
        .close(&id)
        .await
        .map(|()| format!("Group {id} closed."));
    back(&app, outcome)
}

async fn leave_form(
    State(app): State<ConsoleApp>,
    Path((host, id)): Path<(String, String)>,
    CsrfForm(_): CsrfForm,
) -> Response {
    let outcome = match host.parse::<PeerId>() {
        Ok(host) => app
            .groups
            .leave(host, &id)
            .await
            .map(|()| format!("Left {id}.")),
        Err(_) => Err(GroupError::Invalid(format!("{host:?} is not a peer ID"))),
    };
    back(&app, outcome)
}

#[derive(Deserialize)]
struct AnswerForm {
    #[serde(default)]
    accept: String,
    /// `1`: accept this host's invitations from now on without asking.
    #[serde(default)]
    always: String,
}

async fn answer_form(
    State(app): State<ConsoleApp>,
    Path((host, id)): Path<(String, String)>,
    CsrfForm(form): CsrfForm<AnswerForm>,
) -> Response {
    let accept = form.accept == "1";
    let outcome = match host.parse::<PeerId>() {
        Ok(host) if form.always == "1" => match app.groups.set_auto_join(host, true).await {
            Ok(()) => app.groups.answer_invite(host, &id, true).await.map(|()| {
                format!("Joined {id}; this host's invitations are accepted from now on.")
            }),
            Err(err) => Err(err),
        },
        Ok(host) => app
            .groups
            .answer_invite(host, &id, accept)
            .await
            .map(|()| match accept {
                true => format!("Joined {id}."),
                false => "Invitation declined.".to_owned(),
            }),
        Err(_) => Err(GroupError::Invalid(format!("{host:?} is not a peer ID"))),
    };
    back(&app, outcome)
}

/// One group's page: who is in it, its last messages, and a form to say something.
#[derive(Template, WebTemplate)]
#[template(path = "console_room.html")]
struct RoomPage {
    frame: Frame,
    notice: Option<String>,
    host: String,
    group: JoinedGroup,
    /// The last messages as lines: who (short) and text.
    lines: Vec<(String, String)>,
    /// The group keeps its last messages for those who join.
    keeps_history: bool,
    labels: Labels,
}

impl RoomPage {
    fn name(&self, id: &str) -> String {
        self.labels.get(id)
    }
}

/// The text of a message, as a room shows it: who (`you`, a label) and its `text` (or the JSON).
fn line_of(message: &Value, me: &str, labels: &Labels) -> (String, String) {
    let from = message["from"].as_str().unwrap_or_default();
    let who = match from == me {
        true => "you".to_owned(),
        false => labels.get(from),
    };
    let payload = &message["payload"];
    let text = match payload.get("text").and_then(Value::as_str) {
        Some(text) => text.to_owned(),
        None => payload.to_string(),
    };
    (who, text)
}

async fn room_page(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    Path((host, id)): Path<(String, String)>,
    Query(query): Query<NoticeQuery>,
) -> Result<RoomPage, HttpError> {
    let host_id = peer_of(&host).map_err(HttpError::on_page)?;
    let me = app.peer_id.to_base58();
    let group = match host_id == app.peer_id {
        true => super::site_live::own_group(&app, &id).await,
        false => app
            .groups
            .joined()
            .await
            .into_iter()
            .find(|joined| joined.host == host && joined.id == id)
            .ok_or_else(|| GroupError::NotFound(id.clone())),
    }
    .map_err(|e| HttpError::from(e).on_page())?;
    let named = std::iter::once(host.as_str())
        .chain(group.members.iter().map(|m| m.peer_id.as_str()))
        .chain(group.history.iter().filter_map(|m| m["from"].as_str()))
        .map(str::to_owned)
        .collect();
    let labels = Labels::of(&app, named).await;
    Ok(RoomPage {
        notice: app.notices.open(query.notice),
        frame: app.frame(&headers),
        lines: group
            .history
            .iter()
            .map(|m| line_of(m, &me, &labels))
            .collect(),
        labels,
        keeps_history: group.meta.as_ref().is_some_and(|meta| meta.history > 0),
        host,
        group,
    })
}

async fn say_form(
    State(app): State<ConsoleApp>,
    Path((host, id)): Path<(String, String)>,
    CsrfForm(form): CsrfForm<super::chat::TextForm>,
) -> Response {
    let path = format!("/groups/{host}/{id}");
    let text = form.text.trim();
    let outcome = match (host.parse::<PeerId>(), text.is_empty()) {
        (Err(_), _) => Err(GroupError::Invalid(format!("{host:?} is not a peer ID"))),
        (_, true) => Err(GroupError::Invalid("a message may not be empty".into())),
        (Ok(host), false) => app
            .groups
            .send(host, &id, json!({ "text": text }))
            .await
            .map(|()| "Sent.".to_owned()),
    };
    let text = match outcome {
        Ok(text) => text,
        Err(err) => err.to_string(),
    };
    app.notices.redirect(&path, &text)
}

impl GroupsPage {
    fn name(&self, id: &str) -> String {
        self.labels.get(id)
    }
}
