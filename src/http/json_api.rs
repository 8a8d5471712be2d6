//! The extractors of the JSON APIs. axum's own `Query`, `Path` and body extractors refuse a
//! request they cannot read — a query string or a path segment that does not decode into the
//! handler's type, a body over the route's limit — with plain text. These wrap them so that the
//! refusal is an [`HttpError`] in the one JSON error shape, under the status axum chose and with
//! axum's message, which names the parameter or the limit. Pages and forms keep axum's
//! extractors (and [`crate::http::csrf`] its own refusals).

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::http::error::HttpError;

/// The query string of a JSON API call, decoded into `T`.
pub struct ApiQuery<T>(pub T);

/// The path parameters of a JSON API call, decoded into `T`.
pub struct ApiPath<T>(pub T);

/// The body of a JSON API call, read whole within the route's body limit.
pub struct ApiBody(pub Bytes);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HttpError> {
        let Query(value) = Query::from_request_parts(parts, state).await?;
        Ok(ApiQuery(value))
    }
}

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HttpError> {
        let Path(value) = Path::from_request_parts(parts, state).await?;
        Ok(ApiPath(value))
    }
}

impl<S> FromRequest<S> for ApiBody
where
    S: Send + Sync,
{
    type Rejection = HttpError;

    async fn from_request(request: Request, state: &S) -> Result<Self, HttpError> {
        Ok(ApiBody(Bytes::from_request(request, state).await?))
    }
}

impl From<QueryRejection> for HttpError {
    fn from(rejection: QueryRejection) -> Self {
        HttpError::new(rejection.status(), rejection.body_text())
    }
}

impl From<PathRejection> for HttpError {
    fn from(rejection: PathRejection) -> Self {
        HttpError::new(rejection.status(), rejection.body_text())
    }
}

impl From<BytesRejection> for HttpError {
    fn from(rejection: BytesRejection) -> Self {
        HttpError::new(rejection.status(), rejection.body_text())
    }
}

/// A JSON body read as `T`; a body that is not one is refused naming the `shape` it must have.
pub fn json_body<T: DeserializeOwned>(bytes: &[u8], shape: &str) -> Result<T, HttpError> {
    serde_json::from_slice(bytes)
        .map_err(|err| HttpError::bad_request(format!("the body must be {shape}: {err}")))
}

/// [`json_body`], with an empty body (or only white space) read as `T::default()`.
pub fn json_body_or_default<T: DeserializeOwned + Default>(
    bytes: &[u8],
    shape: &str,
) -> Result<T, HttpError> {
    match bytes.iter().all(u8::is_ascii_whitespace) {
        true => Ok(T::default()),
        false => json_body(bytes, shape),
    }
}
