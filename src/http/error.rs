//! The one error type handlers return: a status and a message, rendered as `{"error": "…"}`.
//! Messages are written for the client; internal details are logged, never sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::services::hub::limits::StreamRefused;
use crate::services::hub::presence::PresenceError;

#[derive(Debug)]
pub struct HttpError {
    pub status: StatusCode,
    pub message: String,
    pub retry_after_seconds: Option<u64>,
}

impl HttpError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        HttpError {
            status,
            message: message.into(),
            retry_after_seconds: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_seconds = Some(seconds);
        self
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(json!({ "error": self.message }))).into_response();
        if let Some(seconds) = self.retry_after_seconds {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<PresenceError> for HttpError {
    fn from(error: PresenceError) -> Self {
        use PresenceError::*;
        let status = match &error {
            BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Unsigned
            | Downgrade(_)
            | BadSignature(_)
            | MalformedSignature
            | Replay { .. }
            | ClockSkew { .. } => StatusCode::UNAUTHORIZED,
            Banned { .. } => StatusCode::FORBIDDEN,
            RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Malformed(_)
            | UnknownType(_)
            | HubOnlyType
            | BadPeerId(..)
            | FieldTooLong { .. }
            | TooManyAddrs(_)
            | MissingTimestamp
            | BadTimestamp(_)
            | WrongPeer { .. } => StatusCode::BAD_REQUEST,
        };
        let mut http = HttpError::new(status, error.to_string());
        http.retry_after_seconds = error.retry_after_seconds();
        http
    }
}

impl From<StreamRefused> for HttpError {
    fn from(error: StreamRefused) -> Self {
        let status = match error {
            StreamRefused::HubFull(_) => StatusCode::SERVICE_UNAVAILABLE,
            StreamRefused::TooManyFromAddress(_) => StatusCode::TOO_MANY_REQUESTS,
        };
        HttpError::new(status, error.to_string()).retry_after(10)
    }
}

/// True when reading a body failed because it exceeded its limit.
pub fn is_length_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}
