//! `/edit`: the owner's site editor — the file tree, a text editor per file, new files and
//! folders, uploads, rename and delete — and the same as JSON at `/api/site/…`.
//!
//! Every save carries the ETag the editor was opened with; a file that changed meanwhile (another
//! tab, another program) is not overwritten: the page shows both versions (409), the API answers
//! 412. API writes must say what they expect (`If-Match`, or `If-None-Match: *` for a new file)
//! and carry the page's CSRF token in `X-CSRF-Token`.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{ConsoleApp, Frame};
use crate::http::csrf::{CsrfForm, CsrfHeader, CsrfMultipart};
use crate::http::error::HttpError;
use crate::http::json_api::{ApiBody, ApiQuery};
use crate::services::site::MAX_FILE_BYTES;
use crate::services::site_files::{EditError, Entry, Expect};

/// Text files larger than this are not opened in the text editor.
const MAX_EDITABLE_BYTES: usize = 2 * 1024 * 1024;
/// Form bodies: the text, percent-encoded (up to three bytes a byte), and the other fields.
const FORM_BODY_LIMIT: usize = 3 * MAX_EDITABLE_BYTES + 64 * 1024;
/// Uploads and API writes: one site file and the multipart framing.
const UPLOAD_BODY_LIMIT: usize = MAX_FILE_BYTES as usize + 64 * 1024;

pub fn routes() -> Router<ConsoleApp> {
    Router::new()
        .route("/edit", get(show_tree))
        .route(
            "/edit/file",
            get(show_file)
                .post(save_file)
                .layer(DefaultBodyLimit::max(FORM_BODY_LIMIT)),
        )
        .route("/edit/new", post(create))
        .route("/edit/rename", post(rename))
        .route("/edit/delete", post(delete))
        .route(
            "/edit/upload",
            post(upload).layer(DefaultBodyLimit::max(UPLOAD_BODY_LIMIT)),
        )
        .route("/api/site/files", get(api_list))
        .route(
            "/api/site/file",
            get(api_read)
                .put(api_write)
                .delete(api_delete)
                .layer(DefaultBodyLimit::max(UPLOAD_BODY_LIMIT)),
        )
}

/// Runs a blocking file operation off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, EditError> + Send + 'static,
) -> Result<T, EditError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|err| Err(EditError::Io(format!("the file task failed: {err}"))))
}

fn status_of(error: &EditError) -> StatusCode {
    match error {
        EditError::BadPath(_) => StatusCode::BAD_REQUEST,
        EditError::NotFound(_) => StatusCode::NOT_FOUND,
        EditError::Exists(_) | EditError::Conflict { .. } | EditError::NotEmpty(_) => {
            StatusCode::CONFLICT
        }
        EditError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        EditError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "console_edit.html")]
struct TreePage {
    frame: Frame,
    rows: Vec<Entry>,
    truncated: bool,
    notice: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct TreeQuery {
    notice: Option<String>,
}

async fn tree_page(
    app: &ConsoleApp,
    headers: &HeaderMap,
    notice: Option<String>,
    error: Option<String>,
) -> TreePage {
    let files = app.site_files.clone();
    let (entries, truncated, error) = match blocking(move || files.list()).await {
        Ok((entries, truncated)) => (entries, truncated, error),
        Err(err) => (Vec::new(), false, Some(err.to_string())),
    };
    TreePage {
        frame: app.frame(headers),
        rows: entries,
        truncated,
        notice,
        error,
    }
}

async fn show_tree(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    Query(query): Query<TreeQuery>,
) -> TreePage {
    tree_page(&app, &headers, app.notices.open(query.notice), None).await
}

/// The tree again with an error, under the error's status.
async fn tree_error(app: &ConsoleApp, headers: &HeaderMap, error: EditError) -> Response {
    (
        status_of(&error),
        tree_page(app, headers, None, Some(error.to_string())).await,
    )
        .into_response()
}

#[derive(Template, WebTemplate)]
#[template(path = "console_edit_file.html")]
struct FilePage {
    frame: Frame,
    path: String,
    /// The text being edited; `None` for a file that is not editable as text.
    text: Option<String>,
    etag: String,
    /// `crlf` when the file uses Windows line ends, else `lf`.
    eol: &'static str,
    mime: String,
    size: usize,
    notice: Option<String>,
    /// When a save met a changed file: what the file holds now.
    conflict: Option<Conflict>,
}

struct Conflict {
    message: String,
    current: Option<String>,
}

#[derive(Deserialize)]
struct FileQuery {
    path: String,
    notice: Option<String>,
}

fn as_text(bytes: &[u8]) -> Option<String> {
    if bytes.len() > MAX_EDITABLE_BYTES || bytes.contains(&0) {
        return None;
    }
    String::from_utf8(bytes.to_vec()).ok()
}

async fn show_file(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    Query(query): Query<FileQuery>,
) -> Response {
    let files = app.site_files.clone();
    let path = query.path.clone();
    let content = match blocking(move || files.read(&path)).await {
        Ok(content) => content,
        Err(err) => return tree_error(&app, &headers, err).await,
    };
    let text = as_text(&content.bytes);
    let eol = match &text {
        Some(text) if text.contains("\r\n") => "crlf",
        _ => "lf",
    };
    FilePage {
        frame: app.frame(&headers),
        path: query.path.trim_matches('/').to_owned(),
        size: content.bytes.len(),
        text,
        etag: content.etag,
        eol,
        mime: content.mime,
        notice: app.notices.open(query.notice),
        conflict: None,
    }
    .into_response()
}

#[derive(Deserialize)]
struct SaveForm {
    path: String,
    #[serde(default)]
    etag: String,
    #[serde(default)]
    eol: String,
    #[serde(default)]
    content: String,
}

async fn save_file(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    CsrfForm(form): CsrfForm<SaveForm>,
) -> Response {
    // Browsers send a textarea with CRLF line ends; a file that had LF keeps LF.
    let content = if form.eol == "crlf" {
        form.content.clone()
    } else {
        form.content.replace("\r\n", "\n")
    };
    let expect = if form.etag.is_empty() {
        Expect::Absent
    } else {
        Expect::Etag(form.etag.clone())
    };
    let files = app.site_files.clone();
    let path = form.path.clone();
    let bytes = content.clone().into_bytes();
    match blocking(move || files.write(&path, &bytes, &expect)).await {
        Ok(_) => {
            tracing::info!(path = %form.path, "site file saved");
            let query: String = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("path", form.path.trim_matches('/'))
                .append_pair("notice", &app.notices.seal("Saved."))
                .finish();
            axum::response::Redirect::to(&format!("/edit/file?{query}")).into_response()
        }
        Err(EditError::Conflict { path, current }) => {
            // Show the owner's text and the file as it is now; saving again overwrites on purpose.
            let files = app.site_files.clone();
            let now = match current {
                Some(_) => blocking(move || files.read(&path)).await.ok(),
                None => None,
            };
            let message = match &now {
                Some(_) => "This file changed since you opened it (in another tab or program). \
                            Your text is below and was not saved; the file as it is now is shown \
                            under it. Save again to replace it with your text."
                    .to_owned(),
                None => "This file was deleted since you opened it. Your text is below and was \
                         not saved; save again to create the file with it."
                    .to_owned(),
            };
            (
                StatusCode::CONFLICT,
                FilePage {
                    frame: app.frame(&headers),
                    path: form.path.trim_matches('/').to_owned(),
                    size: content.len(),
                    text: Some(content),
                    etag: now.as_ref().map(|c| c.etag.clone()).unwrap_or_default(),
                    eol: if form.eol == "crlf" { "crlf" } else { "lf" },
                    mime: String::new(),
                    notice: None,
                    conflict: Some(Conflict {
                        message,
                        current: now.map(|c| {
                            as_text(&c.bytes).unwrap_or_else(|| {
                                format!("(a {} byte file that is not text)", c.bytes.len())
                            })
                        }),
                    }),
                },
            )
                .into_response()
        }
        Err(err) => tree_error(&app, &headers, err).await,
    }
}

#[derive(Deserialize)]
struct NewForm {
    path: String,
    /// `file` or `folder`.
    kind: String,
}

async fn create(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    CsrfForm(form): CsrfForm<NewForm>,
) -> Response {
    let files = app.site_files.clone();
    let path = form.path.clone();
    let folder = form.kind == "folder";
    let result = blocking(move || {
        if folder {
            files.create_dir(&path)
        } else {
            files.write(&path, b"", &Expect::Absent).map(|_| ())
        }
    })
    .await;
    match result {
        Ok(()) if folder => app.notices.redirect("/edit", "Folder created."),
        Ok(()) => {
            let query: String = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("path", form.path.trim_matches('/'))
                .append_pair("notice", &app.notices.seal("Created."))
                .finish();
            axum::response::Redirect::to(&format!("/edit/file?{query}")).into_response()
        }
        Err(err) => tree_error(&app, &headers, err).await,
    }
}

#[derive(Deserialize)]
struct RenameForm {
    from: String,
    to: String,
}

async fn rename(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    CsrfForm(form): CsrfForm<RenameForm>,
) -> Response {
    let files = app.site_files.clone();
    let (from, to) = (form.from.clone(), form.to.clone());
    match blocking(move || files.rename(&from, &to)).await {
        Ok(()) => app.notices.redirect("/edit", "Renamed."),
        Err(err) => tree_error(&app, &headers, err).await,
    }
}

#[derive(Deserialize)]
struct DeleteForm {
    path: String,
    /// The file's ETag as the page saw it; empty to delete whatever is there.
    #[serde(default)]
    etag: String,
    /// `1` to delete a folder with its contents.
    #[serde(default)]
    confirm: String,
}

async fn delete(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    CsrfForm(form): CsrfForm<DeleteForm>,
) -> Response {
    let files = app.site_files.clone();
    let path = form.path.clone();
    let etag = (!form.etag.is_empty()).then(|| form.etag.clone());
    let recursive = form.confirm == "1";
    match blocking(move || files.delete(&path, etag.as_deref(), recursive)).await {
        Ok(()) => {
            tracing::info!(path = %form.path, "site file deleted");
            app.notices.redirect("/edit", "Deleted.")
        }
        Err(err) => tree_error(&app, &headers, err).await,
    }
}

async fn upload(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    CsrfMultipart(form): CsrfMultipart,
) -> Response {
    let folder = form.text("folder");
    let file = form
        .part("file")
        .and_then(|part| Some((part.file_name.clone()?, part.data.clone())));
    let Some((name, data)) = file.filter(|(name, _)| !name.is_empty()) else {
        return tree_error(
            &app,
            &headers,
            EditError::BadPath("choose a file to upload".into()),
        )
        .await;
    };
    // Only the file's own name counts; a browser never sends a path, a forged form might.
    let name = name
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default()
        .to_owned();
    let path = format!("{}/{name}", folder.trim_matches('/'));
    let files = app.site_files.clone();
    let target = path.clone();
    match blocking(move || files.write(&target, &data, &Expect::Absent)).await {
        Ok(_) => app
            .notices
            .redirect("/edit", &format!("Uploaded {}.", path.trim_matches('/'))),
        Err(err) => tree_error(&app, &headers, err).await,
    }
}

#[derive(Deserialize)]
struct PathQuery {
    path: String,
}

fn api_error(error: EditError) -> Response {
    match error {
        EditError::Conflict { path, current } => HttpError::new(
            StatusCode::PRECONDITION_FAILED,
            format!("{path} changed since it was read"),
        )
        .with("etag", current)
        .into_response(),
        EditError::Exists(path) => HttpError::new(
            StatusCode::PRECONDITION_FAILED,
            format!("{path} already exists"),
        )
        .into_response(),
        other => HttpError::new(status_of(&other), other.to_string()).into_response(),
    }
}

fn quoted(etag: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{etag}\"")).expect("hex is a valid header")
}

/// The ETag a conditional header names (`"abc"` or `W/"abc"`), or `*`.
fn condition(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    let value = headers.get(name)?.to_str().ok()?.trim();
    Some(value.trim_start_matches("W/").trim_matches('"').to_owned())
}

async fn api_list(State(app): State<ConsoleApp>) -> Response {
    let files = app.site_files.clone();
    match blocking(move || files.list()).await {
        Ok((entries, truncated)) => {
            Json(json!({ "entries": entries, "truncated": truncated })).into_response()
        }
        Err(err) => api_error(err),
    }
}

async fn api_read(State(app): State<ConsoleApp>, ApiQuery(query): ApiQuery<PathQuery>) -> Response {
    let files = app.site_files.clone();
    match blocking(move || files.read(&query.path)).await {
        Ok(content) => {
            let mut response = content.bytes.into_response();
            let headers = response.headers_mut();
            headers.insert(header::ETAG, quoted(&content.etag));
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_str(&content.mime)
                    .unwrap_or(HeaderValue::from_static("application/octet-stream")),
            );
            // Shown as data, never run in the console's origin.
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("sandbox"),
            );
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(err) => api_error(err),
    }
}

async fn api_write(
    State(app): State<ConsoleApp>,
    _: CsrfHeader,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<PathQuery>,
    ApiBody(body): ApiBody,
) -> Response {
    let expect = match (
        condition(&headers, header::IF_MATCH),
        condition(&headers, header::IF_NONE_MATCH),
    ) {
        (Some(etag), _) if etag != "*" => Expect::Etag(etag),
        (None, Some(star)) if star == "*" => Expect::Absent,
        _ => {
            return HttpError::new(
                StatusCode::PRECONDITION_REQUIRED,
                "say what you expect: If-Match with the file's ETag, or If-None-Match: * for a new file",
            )
            .into_response();
        }
    };
    let files = app.site_files.clone();
    match blocking(move || files.write(&query.path, &body, &expect)).await {
        Ok(etag) => {
            let mut response = Json(json!({ "etag": etag })).into_response();
            response.headers_mut().insert(header::ETAG, quoted(&etag));
            response
        }
        Err(err) => api_error(err),
    }
}

#[derive(Deserialize)]
struct DeleteQuery {
    path: String,
    /// `1` to delete a folder with its contents.
    #[serde(default)]
    recursive: String,
}

async fn api_delete(
    State(app): State<ConsoleApp>,
    _: CsrfHeader,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<DeleteQuery>,
) -> Response {
    let etag = condition(&headers, header::IF_MATCH).filter(|e| e != "*");
    let recursive = query.recursive == "1";
    let files = app.site_files.clone();
    match blocking(move || files.delete(&query.path, etag.as_deref(), recursive)).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(err) => api_error(err),
    }
}
