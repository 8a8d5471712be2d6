//! Sites' own message topics (`app.*`) for the owner's pages: `POST /api/mq/send` `{peer, topic,
//! payload}` and `GET /api/mq/events` (every app message heard). A site shown at `/p/<id>/`
//! uses [`super::site_live`]'s `/api/p/<id>/mq/…` instead. `goop-mq.js` wraps both.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::Value;

use super::ConsoleApp;
use crate::http::error::HttpError;
use crate::http::json_api::{ApiBody, json_body};
use crate::identity::PeerId;
use crate::services::mq::MqError;
use crate::services::mq::apps::AppMessage;

pub fn routes() -> Router<ConsoleApp> {
    Router::new()
        .route("/api/mq/send", post(send))
        .route("/api/mq/events", get(events))
}

impl From<MqError> for HttpError {
    fn from(error: MqError) -> Self {
        let status = match &error {
            MqError::InvalidTopic(_) | MqError::TooLarge | MqError::ToSelf => {
                StatusCode::BAD_REQUEST
            }
            MqError::Refused(reason) if reason == "rate limited" => StatusCode::TOO_MANY_REQUESTS,
            MqError::Refused(reason) if reason == "busy" => StatusCode::SERVICE_UNAVAILABLE,
            MqError::Refused(_) => StatusCode::CONFLICT,
            MqError::QueueFull | MqError::TooManyPeers => StatusCode::TOO_MANY_REQUESTS,
            MqError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
            MqError::Unreachable(_) | MqError::NotAcknowledged(_) => StatusCode::BAD_GATEWAY,
        };
        HttpError::new(status, error.to_string())
    }
}

#[derive(Deserialize)]
struct Send {
    peer: String,
    topic: String,
    #[serde(default)]
    payload: Value,
}

async fn send(
    State(app): State<ConsoleApp>,
    ApiBody(body): ApiBody,
) -> Result<StatusCode, HttpError> {
    let sent: Send = json_body(&body, "{\"peer\", \"topic\", \"payload\"}")?;
    let peer: PeerId = sent
        .peer
        .parse()
        .map_err(|_| HttpError::bad_request(format!("{:?} is not a peer ID", sent.peer)))?;
    app.apps.send(peer, &sent.topic, sent.payload).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// App messages as Server-Sent Events (`{"from", "topic", "payload", "at_ms"}`), those of peer
/// `only` alone when it is given.
pub(super) fn stream_of(app: &ConsoleApp, only: Option<String>) -> Response {
    let about = move |message: &AppMessage| keep(message, only.as_deref());
    crate::http::sse::json_events(app.apps.events(), about, app.stop.clone())
}

fn keep(message: &AppMessage, only: Option<&str>) -> bool {
    only.is_none_or(|peer| message.from == peer)
}

async fn events(State(app): State<ConsoleApp>) -> Response {
    stream_of(&app, None)
}
