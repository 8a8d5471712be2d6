//! `/templates`: the gallery of app templates (built in and installed) with the active one; what
//! applying one does, shown before it is done (the tables that go, the group it creates, Lua
//! turned on); the stores of the hubs this peer uses; installing from an archive or a folder;
//! and the site exported as one archive and imported from one.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::{ConsoleApp, Frame};
use crate::http::csrf::{CsrfForm, CsrfMultipart};
use crate::http::error::HttpError;
use crate::services::sitetemplates::store::{MAX_UPLOAD_BYTES, TemplateError};
use crate::services::sitetemplates::{Active, Listed, Plan, Source};

pub fn routes() -> Router<ConsoleApp> {
    Router::new()
        .route("/templates", get(show_gallery))
        .route("/templates/apply", get(show_plan).post(apply))
        .route("/templates/preview", get(preview))
        .route("/templates/export", get(export))
        .route(
            "/templates/import",
            post(import).layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES + 64 * 1024)),
        )
        .route(
            "/templates/install",
            post(install).layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES + 64 * 1024)),
        )
        .route("/templates/install-folder", post(install_folder))
        .route("/templates/uninstall", post(uninstall))
        .route("/templates/store", get(show_store).post(install_from_store))
}

#[derive(Template, WebTemplate)]
#[template(path = "console_templates.html")]
struct GalleryPage {
    frame: Frame,
    notice: Option<String>,
    active: Option<Active>,
    templates: Vec<Listed>,
    hubs: Vec<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "console_template_plan.html")]
struct PlanPage {
    frame: Frame,
    key: String,
    listed: Listed,
    plan: Plan,
    active: Option<Active>,
}

/// One template of a hub's store.
struct Offered {
    name: String,
    title: String,
    description: String,
    version: String,
    icon: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "console_template_store.html")]
struct StorePage {
    frame: Frame,
    hub: String,
    offered: Vec<Offered>,
    problem: Option<String>,
}

#[derive(Deserialize)]
struct NoticeQuery {
    notice: Option<String>,
}

fn failure(error: &TemplateError) -> StatusCode {
    match error {
        TemplateError::NotFound(_) => StatusCode::NOT_FOUND,
        TemplateError::BadName(_) | TemplateError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
        TemplateError::Io(_) | TemplateError::Unavailable(_) => StatusCode::BAD_GATEWAY,
    }
}

async fn show_gallery(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    Query(query): Query<NoticeQuery>,
) -> Response {
    let active = match app.templates.active().await {
        Ok(active) => active,
        Err(error) => return HttpError::page(failure(&error), error.to_string()).into_response(),
    };
    GalleryPage {
        frame: app.frame(&headers),
        notice: app.notices.open(query.notice),
        active,
        templates: app.templates.gallery().await,
        hubs: app.templates.hubs().iter().map(|u| u.to_string()).collect(),
    }
    .into_response()
}

#[derive(Deserialize)]
struct KeyQuery {
    key: String,
}

async fn show_plan(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    Query(query): Query<KeyQuery>,
) -> Response {
    let result = async {
        let source = Source::parse(&query.key)?;
        let template = app.templates.load(&source).await?;
        let plan = app.templates.plan(&template, source.name()).await?;
        let listed = app
            .templates
            .gallery()
            .await
            .into_iter()
            .find(|listed| listed.key == query.key)
            .ok_or_else(|| TemplateError::NotFound(query.key.clone()))?;
        Ok::<_, TemplateError>((listed, plan, app.templates.active().await?))
    }
    .await;
    match result {
        Ok((listed, plan, active)) => PlanPage {
            frame: app.frame(&headers),
            key: query.key,
            listed,
            plan,
            active,
        }
        .into_response(),
        Err(error) => HttpError::page(failure(&error), error.to_string()).into_response(),
    }
}

async fn preview(State(app): State<ConsoleApp>, Query(query): Query<KeyQuery>) -> Response {
    let picture = match Source::parse(&query.key) {
        Ok(source) => app.templates.preview(&source).await,
        Err(_) => None,
    };
    match picture {
        Some(bytes) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static("image/png")),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("max-age=300"),
                ),
            ],
            bytes,
        )
            .into_response(),
        None => HttpError::page(
            StatusCode::NOT_FOUND,
            format!("{} has no preview", query.key),
        )
        .into_response(),
    }
}

#[derive(Deserialize)]
struct ApplyForm {
    key: String,
}

async fn apply(State(app): State<ConsoleApp>, CsrfForm(form): CsrfForm<ApplyForm>) -> Response {
    let applied = match Source::parse(&form.key) {
        Ok(source) => app.templates.apply(&source).await,
        Err(error) => Err(error),
    };
    match applied {
        Ok(applied) => {
            let mut text = format!("Applied {}.", applied.active.title);
            if !applied.dropped.is_empty() {
                text.push_str(&format!(" Dropped {}.", applied.dropped.join(", ")));
            }
            if applied.lua_enabled {
                text.push_str(" Lua is now on (lua.enabled).");
            }
            app.notices.redirect("/templates", &text)
        }
        Err(error) => {
            tracing::warn!(template = %form.key, "applying a template failed: {error}");
            app.notices
                .redirect("/templates", &format!("Nothing was changed: {error}"))
        }
    }
}

#[derive(Deserialize)]
struct ExportQuery {
    #[serde(default)]
    data: Option<String>,
}

async fn export(State(app): State<ConsoleApp>, Query(query): Query<ExportQuery>) -> Response {
    let with_data = query.data.is_some_and(|d| d == "1" || d == "on");
    let label = app.label.borrow().clone();
    match app.templates.export(with_data, &label).await {
        Ok(archive) => {
            let name = crate::services::sitetemplates::slug(&label);
            let name = if name.is_empty() { "site".into() } else { name };
            let mut response = archive.into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/gzip"),
            );
            if let Ok(value) = HeaderValue::from_str(&format!(
                "attachment; filename=\"{name}-site{}.tar.gz\"",
                if with_data { "-with-data" } else { "" }
            )) {
                headers.insert(header::CONTENT_DISPOSITION, value);
            }
            response
        }
        Err(error) => HttpError::page(failure(&error), error.to_string()).into_response(),
    }
}

async fn import(State(app): State<ConsoleApp>, CsrfMultipart(form): CsrfMultipart) -> Response {
    let Some(archive) = form.part("archive").filter(|p| !p.data.is_empty()) else {
        return app
            .notices
            .redirect("/templates", "Choose an exported site archive to import.");
    };
    if form.text("confirm") != "yes" {
        return app.notices.redirect(
            "/templates",
            "Nothing was changed: tick the box to confirm that the site is replaced.",
        );
    }
    match app.templates.import(archive.data.to_vec()).await {
        Ok(applied) => app.notices.redirect(
            "/templates",
            &format!(
                "Imported {} with {} row(s).",
                applied.active.title, applied.rows
            ),
        ),
        Err(error) => app
            .notices
            .redirect("/templates", &format!("Nothing was changed: {error}")),
    }
}

async fn install(State(app): State<ConsoleApp>, CsrfMultipart(form): CsrfMultipart) -> Response {
    let Some(archive) = form.part("archive").filter(|p| !p.data.is_empty()) else {
        return app.notices.redirect(
            "/templates",
            "Choose a template archive (.tar.gz) to install.",
        );
    };
    let name = Some(form.text("name").trim().to_owned()).filter(|n| !n.is_empty());
    installed(
        &app,
        app.templates
            .install_archive(archive.data.to_vec(), name)
            .await,
    )
}

fn installed(app: &ConsoleApp, result: Result<String, TemplateError>) -> Response {
    match result {
        Ok(name) => app.notices.redirect(
            "/templates",
            &format!("Installed template {name}; apply it from the gallery."),
        ),
        Err(error) => app
            .notices
            .redirect("/templates", &format!("Not installed: {error}")),
    }
}

#[derive(Deserialize)]
struct FolderForm {
    folder: String,
}

async fn install_folder(
    State(app): State<ConsoleApp>,
    CsrfForm(form): CsrfForm<FolderForm>,
) -> Response {
    let folder = std::path::PathBuf::from(form.folder.trim());
    installed(&app, app.templates.install_folder(folder).await)
}

#[derive(Deserialize)]
struct NameForm {
    name: String,
}

async fn uninstall(State(app): State<ConsoleApp>, CsrfForm(form): CsrfForm<NameForm>) -> Response {
    match app.templates.uninstall(form.name.clone()).await {
        Ok(()) => app
            .notices
            .redirect("/templates", &format!("Removed template {}.", form.name)),
        Err(error) => app
            .notices
            .redirect("/templates", &format!("Not removed: {error}")),
    }
}

#[derive(Deserialize)]
struct HubQuery {
    hub: String,
}

/// A hub this peer uses, by its URL as the gallery lists it.
fn known_hub(app: &ConsoleApp, hub: &str) -> Result<url::Url, HttpError> {
    app.templates
        .hubs()
        .iter()
        .find(|url| url.as_str() == hub)
        .cloned()
        .ok_or_else(|| {
            HttpError::page(
                StatusCode::NOT_FOUND,
                format!("{hub} is not a hub this peer uses"),
            )
        })
}

async fn show_store(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    Query(query): Query<HubQuery>,
) -> Response {
    let hub = match known_hub(&app, &query.hub) {
        Ok(hub) => hub,
        Err(error) => return error.into_response(),
    };
    let (offered, problem) = match app.templates.hub_templates(&hub).await {
        Ok(list) => (
            list.into_iter()
                .filter_map(|manifest| {
                    let text = |key: &str| {
                        manifest
                            .get(key)
                            .and_then(|v| v.as_str())
                            .unwrap_or_default()
                            .chars()
                            .take(500)
                            .collect::<String>()
                    };
                    let name = text("dir");
                    (!name.is_empty()).then(|| Offered {
                        title: text("name"),
                        description: text("description"),
                        version: text("version"),
                        icon: text("icon"),
                        name,
                    })
                })
                .collect(),
            None,
        ),
        Err(error) => (Vec::new(), Some(error.to_string())),
    };
    StorePage {
        frame: app.frame(&headers),
        hub: hub.to_string(),
        offered,
        problem,
    }
    .into_response()
}

#[derive(Deserialize)]
struct StoreInstallForm {
    hub: String,
    name: String,
}

async fn install_from_store(
    State(app): State<ConsoleApp>,
    CsrfForm(form): CsrfForm<StoreInstallForm>,
) -> Response {
    let hub = match known_hub(&app, &form.hub) {
        Ok(hub) => hub,
        Err(error) => return error.into_response(),
    };
    installed(&app, app.templates.install_from_hub(&hub, &form.name).await)
}
