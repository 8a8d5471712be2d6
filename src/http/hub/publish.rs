//! `POST /publish`: one presence message per request, answered with 204 once the hub's
//! database (when it has one) holds it.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;

use super::HubApp;
use crate::http::client_ip::ClientIp;
use crate::http::error::{HttpError, is_length_limit};
use crate::services::hub::presence::{MAX_BODY_BYTES, PresenceError};

/// How long a client has to send the body.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

pub fn routes() -> Router<HubApp> {
    Router::new().route("/publish", post(publish_presence))
}

async fn publish_presence(
    State(app): State<HubApp>,
    ClientIp(ip): ClientIp,
    body: Body,
) -> Result<StatusCode, HttpError> {
    app.hub.check_rate(ip)?;
    let bytes = tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY_BYTES))
        .await
        .map_err(|_| HttpError::new(StatusCode::REQUEST_TIMEOUT, "the body took too long"))?
        .map_err(|err| {
            if is_length_limit(&err) {
                app.hub.metrics().reject("body_too_large");
                HttpError::from(PresenceError::BodyTooLarge)
            } else {
                HttpError::bad_request("the body could not be read")
            }
        })?;
    app.hub.publish(&bytes)?;
    app.hub.committed().await;
    Ok(StatusCode::NO_CONTENT)
}
