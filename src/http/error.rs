//! The one error type of the HTTP layer. A handler that fails answers with an [`HttpError`]: a
//! status and a message written for the client (internal details are logged where the failure
//! is handled, never sent). It renders in one of two ways, chosen where it is made:
//!
//! - for JSON APIs, the one JSON error shape `{"error": "<message>", "code": <status>}` (a few
//!   answers add a member, such as the current `etag` of an edit conflict);
//! - for pages and forms, the HTML error page (`templates/error.html`): the status, the message
//!   and a way back.
//!
//! `docs/http-errors.md` describes both for clients. The data API keeps its own reply,
//! `{ok, data, error, code}`, which is a wire contract; its errors carry the same `error` and
//! `code` members.

use askama::Template;
use askama_web::WebTemplate;
use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use crate::services::hub::limits::StreamRefused;
use crate::services::hub::presence::PresenceError;

#[derive(Debug)]
pub struct HttpError {
    pub status: StatusCode,
    pub message: String,
    pub retry_after_seconds: Option<u64>,
    /// Members of the JSON body beside `error` and `code`.
    extra: Map<String, Value>,
    rendering: Rendering,
}

/// How an error is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rendering {
    /// The JSON error shape.
    Json,
    /// The HTML error page.
    Page,
}

impl HttpError {
    /// An error of a JSON API.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        HttpError {
            status,
            message: message.into(),
            retry_after_seconds: None,
            extra: Map::new(),
            rendering: Rendering::Json,
        }
    }

    /// An error of a page or a form, answered with the HTML error page.
    pub fn page(status: StatusCode, message: impl Into<String>) -> Self {
        Self::new(status, message).on_page()
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// The same error, answered with the HTML error page.
    pub fn on_page(mut self) -> Self {
        self.rendering = Rendering::Page;
        self
    }

    /// The same error, answered as JSON when the request is an API call (see [`is_api_call`])
    /// and with the page otherwise: for middleware in front of both kinds of routes.
    pub fn for_caller(mut self, headers: &HeaderMap, path: &str) -> Self {
        self.rendering = if is_api_call(headers, path) {
            Rendering::Json
        } else {
            Rendering::Page
        };
        self
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_seconds = Some(seconds);
        self
    }

    /// Adds a member to the JSON body (`error` and `code` are the error's own).
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(name.to_owned(), value.into());
        self
    }

    /// The JSON error shape of this error, for an answer written by hand (the hub's direct
    /// event stream route).
    pub fn json_body(&self) -> Value {
        let mut body = Map::new();
        body.insert("error".into(), self.message.clone().into());
        body.insert("code".into(), self.status.as_u16().into());
        for (name, value) in &self.extra {
            body.entry(name.clone()).or_insert_with(|| value.clone());
        }
        Value::Object(body)
    }
}

/// The HTML error page.
#[derive(Template, WebTemplate)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    /// `403 Forbidden`.
    title: String,
    message: &'a str,
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let mut response = match self.rendering {
            Rendering::Json => (self.status, Json(self.json_body())).into_response(),
            Rendering::Page => {
                let title = match self.status.canonical_reason() {
                    Some(reason) => format!("{} {reason}", self.status.as_u16()),
                    None => self.status.as_u16().to_string(),
                };
                let page = ErrorPage {
                    title,
                    message: &self.message,
                };
                (self.status, page).into_response()
            }
        };
        if let Some(seconds) = self.retry_after_seconds {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// True when the client asks for JSON rather than a page.
pub fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/json") && !accept.contains("text/html"))
}

/// True for a call of a JSON API: a path under `/api/`, or a client that asks for JSON.
pub fn is_api_call(headers: &HeaderMap, path: &str) -> bool {
    path.starts_with("/api/") || wants_json(headers)
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
