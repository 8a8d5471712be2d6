//! Chat in the console: `/chat` (conversations with their unread counts, broadcasts, blocked
//! peers), the conversation on each peer's page (`/peer/{id}`, in [`super::peers`]), the forms
//! that send and block (`POST /peer/{id}/chat`, `/peer/{id}/block`, `/chat/broadcast`), and the
//! same as JSON under `/api/chat` with a live stream at `/api/chat/events`. Every form works
//! without JavaScript; `chat.js` makes the pages live.

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
use crate::http::json_api::{ApiBody, ApiPath, ApiQuery, json_body};
use crate::http::text::short_id;
use crate::identity::PeerId;
use crate::services::chat::{Broadcast, ChatError};
use crate::store::chat::ChatRow;

/// Messages of a conversation a page or an answer shows at once, by default and at most.
pub const SHOWN: u32 = 50;
pub const API_MAX_LIMIT: u32 = 500;
/// Conversations listed at most.
const CONVERSATIONS: u32 = 200;

pub fn routes() -> Router<ConsoleApp> {
    Router::new()
        .route("/chat", get(chat_page))
        .route("/chat/broadcast", post(broadcast_form))
        .route("/peer/{id}/chat", post(send_form))
        .route("/peer/{id}/block", post(block_form))
        .route("/api/chat", get(overview_json))
        .route("/api/chat/events", get(chat_events))
        .route("/api/chat/broadcasts", get(broadcasts_json))
        .route("/api/chat/broadcast", post(broadcast_json))
        .route("/api/chat/blocked", get(blocked_json))
        .route("/api/chat/{id}", get(history_json).post(send_json))
        .route("/api/chat/{id}/read", post(read_json))
        .route("/api/chat/{id}/block", post(block_json))
}

impl From<ChatError> for HttpError {
    fn from(error: ChatError) -> Self {
        let status = match &error {
            ChatError::Invalid(_) => StatusCode::BAD_REQUEST,
            ChatError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ChatError::Blocked => StatusCode::CONFLICT,
            ChatError::Store(err) => {
                tracing::error!("chat: {err}");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let error = HttpError::new(status, error.to_string());
        match status {
            StatusCode::TOO_MANY_REQUESTS => error.retry_after(6),
            _ => error,
        }
    }
}

fn peer_of(id: &str) -> Result<PeerId, HttpError> {
    id.parse()
        .map_err(|_| HttpError::bad_request(format!("{id:?} is not a peer ID")))
}

/// One message as a page shows it.
pub struct MessageItem {
    pub id: i64,
    pub outgoing: bool,
    pub text: String,
    pub at: String,
    pub status: String,
    pub error: String,
}

impl MessageItem {
    pub fn from_row(row: &ChatRow) -> Self {
        MessageItem {
            id: row.id,
            outgoing: row.outgoing,
            text: row.text.clone(),
            at: crate::http::text::ago(crate::services::hub::unix_ms() - row.at_ms),
            status: row.status.clone(),
            error: row.error.clone().unwrap_or_default(),
        }
    }
}

/// A conversation on the `/chat` page.
struct ConversationItem {
    peer_id: String,
    short_id: String,
    label: String,
    unread: i64,
    last: MessageItem,
}

struct BroadcastItem {
    from: String,
    from_label: String,
    mine: bool,
    text: String,
    at: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "console_chat.html")]
struct ChatPage {
    frame: Frame,
    notice: Option<String>,
    conversations: Vec<ConversationItem>,
    broadcasts: Vec<BroadcastItem>,
    blocked: Vec<(String, String)>,
}

#[derive(Deserialize)]
struct NoticeQuery {
    notice: Option<String>,
}

async fn chat_page(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    Query(query): Query<NoticeQuery>,
) -> Result<ChatPage, HttpError> {
    let unread = app.chat.unread().await.map_err(page_error)?;
    let rows = app
        .chat
        .conversations(CONVERSATIONS)
        .await
        .map_err(page_error)?;
    let mut conversations = Vec::new();
    for row in rows {
        conversations.push(ConversationItem {
            short_id: short_id(&row.peer_id),
            label: label_of(&app, &row.peer_id).await,
            unread: unread.get(&row.peer_id).copied().unwrap_or(0),
            last: MessageItem::from_row(&row),
            peer_id: row.peer_id,
        });
    }
    let me = app.peer_id.to_base58();
    let mut broadcasts = Vec::new();
    for broadcast in app.chat.recent_broadcasts().into_iter().rev() {
        broadcasts.push(BroadcastItem {
            from_label: label_of(&app, &broadcast.from).await,
            mine: broadcast.from == me,
            at: crate::http::text::ago(crate::services::hub::unix_ms() - broadcast.at_ms),
            from: broadcast.from,
            text: broadcast.text,
        });
    }
    let mut blocked = Vec::new();
    for peer in app.chat.blocked() {
        let id = peer.to_base58();
        blocked.push((id.clone(), label_of(&app, &id).await));
    }
    Ok(ChatPage {
        notice: app.notices.open(query.notice),
        frame: app.frame(&headers),
        conversations,
        broadcasts,
        blocked,
    })
}

fn page_error(error: ChatError) -> HttpError {
    HttpError::from(error).on_page()
}

/// The label a peer announced, or its short ID when it is not known.
pub(super) async fn label_of(app: &ConsoleApp, id: &str) -> String {
    if id == app.peer_id.to_base58() {
        return app.label.borrow().clone();
    }
    let known = match id.parse::<PeerId>() {
        Ok(peer) => match app.table.identity(&peer).await {
            Some(identity) => Some(identity.label),
            // A peer no presence names may have said its name when asked.
            None => app.identities.name(&peer),
        },
        Err(_) => None,
    };
    known
        .filter(|label| !label.is_empty())
        .unwrap_or_else(|| short_id(id))
}

#[derive(Deserialize)]
pub(super) struct TextForm {
    #[serde(default)]
    pub text: String,
}

async fn send_form(
    State(app): State<ConsoleApp>,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<TextForm>,
) -> Result<Response, HttpError> {
    let peer = peer_of(&id).map_err(HttpError::on_page)?;
    let sent = app.chat.send(peer, &form.text).await.map_err(page_error)?;
    let notice = match sent.status.as_str() {
        "delivered" => "Delivered.".to_owned(),
        _ => sent.error.unwrap_or_else(|| "Not delivered.".into()),
    };
    Ok(app.notices.redirect(&format!("/peer/{id}#chat"), &notice))
}

#[derive(Deserialize)]
struct BlockForm {
    /// `1` to block, anything else to unblock.
    #[serde(default)]
    blocked: String,
}

async fn block_form(
    State(app): State<ConsoleApp>,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<BlockForm>,
) -> Result<Response, HttpError> {
    let peer = peer_of(&id).map_err(HttpError::on_page)?;
    let blocked = form.blocked == "1";
    app.chat
        .set_blocked(peer, blocked)
        .await
        .map_err(page_error)?;
    let notice = match blocked {
        true => {
            "Blocked: this peer can no longer message you, join your groups or call your functions."
        }
        false => "Unblocked.",
    };
    Ok(app.notices.redirect(&format!("/peer/{id}"), notice))
}

async fn broadcast_form(
    State(app): State<ConsoleApp>,
    CsrfForm(form): CsrfForm<TextForm>,
) -> Result<Response, HttpError> {
    let outcome = app.chat.broadcast(&form.text).await.map_err(page_error)?;
    let notice = format!(
        "Sent to {} online peer(s): {} delivered, {} not.",
        outcome.sent, outcome.delivered, outcome.failed
    );
    Ok(app.notices.redirect("/chat", &notice))
}

/// `{"conversations": [latest message of each], "unread": {peer: count}}`.
async fn overview_json(State(app): State<ConsoleApp>) -> Result<Json<Value>, HttpError> {
    let conversations = app.chat.conversations(CONVERSATIONS).await?;
    let unread = app.chat.unread().await?;
    Ok(Json(
        json!({"conversations": conversations, "unread": unread}),
    ))
}

#[derive(Deserialize)]
struct HistoryQuery {
    before: Option<i64>,
    limit: Option<u32>,
}

/// Up to `limit` messages (default [`SHOWN`], at most [`API_MAX_LIMIT`]) before row `before`,
/// oldest first.
async fn history_json(
    State(app): State<ConsoleApp>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> Result<Json<Vec<ChatRow>>, HttpError> {
    let peer = peer_of(&id)?;
    let limit = query.limit.unwrap_or(SHOWN).clamp(1, API_MAX_LIMIT);
    Ok(Json(app.chat.history(&peer, query.before, limit).await?))
}

/// The body of the JSON calls that carry a text.
#[derive(Deserialize)]
struct TextBody {
    text: String,
}

fn text_body(body: &[u8]) -> Result<String, HttpError> {
    json_body::<TextBody>(body, "{\"text\": \"…\"}").map(|body| body.text)
}

/// Sends a message: the stored message, whose `status` is `delivered`, or `failed` with the
/// reason in `error`.
async fn send_json(
    State(app): State<ConsoleApp>,
    ApiPath(id): ApiPath<String>,
    ApiBody(body): ApiBody,
) -> Result<Json<ChatRow>, HttpError> {
    let peer = peer_of(&id)?;
    let text = text_body(&body)?;
    Ok(Json(app.chat.send(peer, &text).await?))
}

async fn read_json(
    State(app): State<ConsoleApp>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, HttpError> {
    let peer = peer_of(&id)?;
    app.chat.mark_read(&peer).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct BlockBody {
    blocked: bool,
}

async fn block_json(
    State(app): State<ConsoleApp>,
    ApiPath(id): ApiPath<String>,
    ApiBody(body): ApiBody,
) -> Result<StatusCode, HttpError> {
    let peer = peer_of(&id)?;
    let body: BlockBody = json_body(&body, "{\"blocked\": true|false}")?;
    app.chat.set_blocked(peer, body.blocked).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn blocked_json(State(app): State<ConsoleApp>) -> Json<Vec<String>> {
    Json(
        app.chat
            .blocked()
            .into_iter()
            .map(PeerId::to_base58)
            .collect(),
    )
}

async fn broadcasts_json(State(app): State<ConsoleApp>) -> Json<Vec<Broadcast>> {
    Json(app.chat.recent_broadcasts())
}

/// Sends a broadcast to every online peer: `{"sent", "delivered", "failed"}`.
async fn broadcast_json(
    State(app): State<ConsoleApp>,
    ApiBody(body): ApiBody,
) -> Result<Json<Value>, HttpError> {
    let text = text_body(&body)?;
    let outcome = app.chat.broadcast(&text).await?;
    Ok(Json(json!(outcome)))
}

/// What chat hears and sends, as Server-Sent Events: `{"kind": "message" | "status",
/// "message": {…}}`, `{"kind": "read", "peer_id"}`, `{"kind": "broadcast", "broadcast": {…}}`,
/// and `{"kind": "reload"}` when the stream fell behind.
async fn chat_events(State(app): State<ConsoleApp>) -> Response {
    crate::http::sse::json_events(app.chat.events(), |_| true, app.stop.clone())
}

/// The conversation with `peer` for its page (marked read, as the owner now sees it).
pub async fn conversation(app: &ConsoleApp, peer: &PeerId) -> (Vec<MessageItem>, bool) {
    let history = app
        .chat
        .history(peer, None, SHOWN)
        .await
        .unwrap_or_else(|err| {
            tracing::error!("cannot read a conversation: {err}");
            Vec::new()
        });
    if let Err(err) = app.chat.mark_read(peer).await {
        tracing::error!("cannot mark a conversation read: {err}");
    }
    (
        history.iter().map(MessageItem::from_row).collect(),
        app.chat.is_blocked(peer),
    )
}
