//! The one CSRF check of every state-changing request of the owner's console, the settings
//! viewer, the hub's administration and the sign-out forms.
//!
//! Each page carries its session's CSRF token; a request that changes something must send it
//! back. Forms send it as their `csrf` field — [`CsrfForm`] (urlencoded) and [`CsrfMultipart`]
//! (uploads) — and scripts in the `X-CSRF-Token` header — [`CsrfHeader`]. Where the token comes
//! from is the state's [`CsrfSource`]. A refused form gets the HTML error page, a refused API
//! call the JSON error shape, both with [`REFUSAL`] and 403.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Multipart, RawForm, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use crate::http::error::HttpError;

/// The header scripts send the page's token in.
pub const HEADER: &str = "x-csrf-token";

/// What a request without the right token is told.
pub const REFUSAL: &str = "The CSRF token is missing or stale; reload the page and try again.";

/// Where a state finds the token a request must carry.
pub trait CsrfSource {
    /// The token of the request's session, or `None` when it has none (then nothing passes).
    /// A hub's sessions may live in its peer database, hence a future.
    fn csrf_for(&self, headers: &HeaderMap) -> impl Future<Output = Option<String>> + Send;
}

/// True when `submitted` is the request's token (constant-time; an empty token never matches).
async fn matches<S: CsrfSource>(state: &S, headers: &HeaderMap, submitted: &str) -> bool {
    state.csrf_for(headers).await.is_some_and(|expected| {
        !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(submitted.as_bytes()))
    })
}

/// A urlencoded form whose `csrf` field is the session's token; `T` is the rest of the form
/// (fields it does not name are ignored, `csrf` included).
pub struct CsrfForm<T = NoFields>(pub T);

/// A form with no fields but its token (a button).
#[derive(Deserialize)]
pub struct NoFields {}

impl<T, S> FromRequest<S> for CsrfForm<T>
where
    T: DeserializeOwned,
    S: CsrfSource + Send + Sync,
{
    type Rejection = HttpError;

    async fn from_request(request: Request, state: &S) -> Result<Self, HttpError> {
        let headers = request.headers().clone();
        let RawForm(body) = RawForm::from_request(request, state)
            .await
            .map_err(|rejection| HttpError::page(rejection.status(), rejection.body_text()))?;
        let submitted = url::form_urlencoded::parse(&body)
            .find(|(name, _)| name == "csrf")
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default();
        if !matches(state, &headers, &submitted).await {
            return Err(HttpError::page(StatusCode::FORBIDDEN, REFUSAL));
        }
        let fields: T = serde_urlencoded::from_bytes(&body).map_err(|err| {
            HttpError::page(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("the form could not be read: {err}"),
            )
        })?;
        Ok(CsrfForm(fields))
    }
}

/// A `multipart/form-data` form (an upload) whose `csrf` field is the session's token. Its
/// parts are read whole, within the route's body limit.
pub struct CsrfMultipart(pub Upload);

/// The parts of an uploaded form, in order.
pub struct Upload {
    parts: Vec<FormPart>,
}

/// One part of an uploaded form.
pub struct FormPart {
    pub name: String,
    /// The file's name as the browser sent it, for a file.
    pub file_name: Option<String>,
    pub data: Bytes,
}

impl Upload {
    /// The text of field `name` (empty when the form has none).
    pub fn text(&self, name: &str) -> String {
        self.part(name)
            .map(|part| String::from_utf8_lossy(&part.data).into_owned())
            .unwrap_or_default()
    }

    /// The last part called `name`.
    pub fn part(&self, name: &str) -> Option<&FormPart> {
        self.parts.iter().rev().find(|part| part.name == name)
    }
}

impl<S> FromRequest<S> for CsrfMultipart
where
    S: CsrfSource + Send + Sync,
{
    type Rejection = HttpError;

    async fn from_request(request: Request, state: &S) -> Result<Self, HttpError> {
        let headers = request.headers().clone();
        let unreadable = |status: StatusCode, text: String| {
            HttpError::page(status, format!("the upload could not be read: {text}"))
        };
        let mut multipart = Multipart::from_request(request, state)
            .await
            .map_err(|rejection| unreadable(rejection.status(), rejection.body_text()))?;
        let mut parts = Vec::new();
        while let Some(field) = multipart
            .next_field()
            .await
            .map_err(|err| unreadable(err.status(), err.body_text()))?
        {
            let name = field.name().unwrap_or_default().to_owned();
            let file_name = field.file_name().map(ToOwned::to_owned);
            let data = field
                .bytes()
                .await
                .map_err(|err| unreadable(err.status(), err.body_text()))?;
            parts.push(FormPart {
                name,
                file_name,
                data,
            });
        }
        let form = Upload { parts };
        if !matches(state, &headers, &form.text("csrf")).await {
            return Err(HttpError::page(StatusCode::FORBIDDEN, REFUSAL));
        }
        Ok(CsrfMultipart(form))
    }
}

/// A script's request that carries the page's token in `X-CSRF-Token`.
pub struct CsrfHeader;

impl<S> FromRequestParts<S> for CsrfHeader
where
    S: CsrfSource + Send + Sync,
{
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HttpError> {
        let submitted = parts
            .headers
            .get(HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if matches(state, &parts.headers, submitted).await {
            Ok(CsrfHeader)
        } else {
            Err(HttpError::new(StatusCode::FORBIDDEN, REFUSAL))
        }
    }
}
