//! The template store API: `GET /api/templates`, `/api/templates/{name}/manifest.json`,
//! `/api/templates/{name}/bundle` (tar.gz with an ETag).

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;

use super::HubApp;
use crate::http::error::HttpError;
use crate::http::json_api::ApiPath;
use crate::services::sitetemplates::store::TemplateError;

pub fn routes() -> Router<HubApp> {
    Router::new()
        .route("/api/templates", get(list_templates))
        .route("/api/templates/{name}/manifest.json", get(show_manifest))
        .route("/api/templates/{name}/bundle", get(download_bundle))
}

impl From<TemplateError> for HttpError {
    fn from(error: TemplateError) -> Self {
        let status = match &error {
            TemplateError::NotFound(_) => StatusCode::NOT_FOUND,
            TemplateError::BadName(_) | TemplateError::Refused(_) => StatusCode::BAD_REQUEST,
            TemplateError::Io(err) => {
                tracing::error!("template store: {err}");
                return HttpError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the template store could not be read",
                );
            }
            TemplateError::Unavailable(err) => {
                tracing::warn!("template store: {err}");
                return HttpError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the template store is unavailable; try again shortly",
                );
            }
        };
        HttpError::new(status, error.to_string())
    }
}

async fn list_templates(State(app): State<HubApp>) -> Result<Json<Vec<Value>>, HttpError> {
    Ok(Json(app.templates.list().await?))
}

async fn show_manifest(
    State(app): State<HubApp>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Value>, HttpError> {
    Ok(Json(Value::Object(app.templates.manifest(&name).await?)))
}

async fn download_bundle(
    State(app): State<HubApp>,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let file_name = format!("{name}.tar.gz");
    let bundle = app.templates.bundle(&name).await?;
    let etag = HeaderValue::from_str(&bundle.etag).expect("hex in quotes");
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|tag| tag.as_bytes() == bundle.etag.as_bytes())
    {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\""))
        .expect("names are checked");
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/gzip"),
            ),
            (header::ETAG, etag),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        bundle.bytes,
    )
        .into_response())
}
