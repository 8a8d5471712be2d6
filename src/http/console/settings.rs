//! `/self`: the peer's profile and network settings, validated with the rules `goop.json` is
//! loaded with and saved atomically. The label and email apply at once (a presence update goes
//! out); the page says which other changes wait for a restart. A file edited by hand since the
//! page was opened is not overwritten.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;

use super::{ConsoleApp, Frame};
use crate::config::{self, Config};
use crate::http::csrf::{CsrfForm, CsrfMultipart};
use crate::http::error::HttpError;
use crate::http::forms::parse_number;
use crate::services::avatar::{self, AvatarError};

pub fn routes() -> Router<ConsoleApp> {
    Router::new()
        .route("/self", get(show_settings).post(save_settings))
        .route(
            "/self/avatar",
            get(show_avatar)
                .post(upload_avatar)
                .layer(DefaultBodyLimit::max(avatar::MAX_AVATAR_BYTES + 16 * 1024)),
        )
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SettingsForm {
    fingerprint: String,
    label: String,
    email: String,
    rendezvous_wan: String,
    rendezvous_host: Option<String>,
    listen_port: String,
    mdns_tag: String,
    ttl_seconds: String,
    heartbeat_seconds: String,
}

impl SettingsForm {
    fn from_config(config: &Config) -> Self {
        SettingsForm {
            label: config.profile.label.clone(),
            email: config.profile.email.clone(),
            rendezvous_wan: config.presence.rendezvous_wan.clone(),
            rendezvous_host: config.presence.rendezvous_host.then(|| "on".into()),
            listen_port: config.p2p.listen_port.to_string(),
            mdns_tag: config.p2p.mdns_tag.clone(),
            ttl_seconds: config.presence.ttl_seconds.to_string(),
            heartbeat_seconds: config.presence.heartbeat_seconds.to_string(),
            ..SettingsForm::default()
        }
    }

    fn apply(&self, mut config: Config) -> Result<Config, Vec<String>> {
        let mut problems = Vec::new();
        config.profile.label = self.label.trim().to_owned();
        config.profile.email = self.email.trim().to_owned();
        config.presence.rendezvous_wan = self.rendezvous_wan.trim().to_owned();
        config.presence.rendezvous_host = self.rendezvous_host.is_some();
        config.p2p.mdns_tag = self.mdns_tag.trim().to_owned();
        parse_number(
            &mut problems,
            "p2p.listen_port",
            &self.listen_port,
            &mut config.p2p.listen_port,
        );
        parse_number(
            &mut problems,
            "presence.ttl_seconds",
            &self.ttl_seconds,
            &mut config.presence.ttl_seconds,
        );
        parse_number(
            &mut problems,
            "presence.heartbeat_seconds",
            &self.heartbeat_seconds,
            &mut config.presence.heartbeat_seconds,
        );
        if problems.is_empty() {
            problems = config.validate();
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(problems)
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "console_self.html")]
struct SettingsPage {
    frame: Frame,
    /// Whether an avatar is stored (else the page shows a placeholder, not a broken image).
    has_avatar: bool,
    form: SettingsForm,
    notice: Option<String>,
    problems: Vec<String>,
    hubs: Vec<super::HubRow>,
    /// How others reach this peer.
    reach: Option<crate::services::node::nat::Reachability>,
}

#[derive(Deserialize)]
struct Saved {
    /// A notice this console signed (see [`super::Notices`]).
    notice: Option<String>,
    avatar: Option<String>,
}

async fn page(
    app: &ConsoleApp,
    headers: &HeaderMap,
    form: SettingsForm,
    notice: Option<String>,
    problems: Vec<String>,
) -> SettingsPage {
    SettingsPage {
        frame: app.frame(headers),
        has_avatar: avatar::find(&app.dir).is_some(),
        form,
        notice,
        problems,
        hubs: app.hub_rows(),
        reach: app.node.reachability().await.ok(),
    }
}

async fn show_settings(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    Query(saved): Query<Saved>,
) -> Response {
    let config = match Config::load(&app.config_path) {
        Ok(loaded) => loaded.config,
        Err(err) => {
            return HttpError::page(StatusCode::INTERNAL_SERVER_ERROR, err.to_string())
                .into_response();
        }
    };
    let mut form = SettingsForm::from_config(&config);
    form.fingerprint = config::fingerprint(&app.config_path);
    let avatar_notice = saved
        .avatar
        .map(|_| "The new avatar is announced.".to_owned());
    let notice = app.notices.open(saved.notice).or(avatar_notice);
    page(&app, &headers, form, notice, Vec::new())
        .await
        .into_response()
}

async fn save_settings(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    CsrfForm(form): CsrfForm<SettingsForm>,
) -> Response {
    if form.fingerprint != config::fingerprint(&app.config_path) {
        let message = format!(
            "{} changed on disk since this page was opened; reload it to see the new contents",
            app.config_path.display()
        );
        return (
            StatusCode::CONFLICT,
            page(&app, &headers, form, None, vec![message]).await,
        )
            .into_response();
    }
    let before = match Config::load(&app.config_path) {
        Ok(loaded) => loaded.config,
        Err(err) => {
            return (
                StatusCode::CONFLICT,
                page(&app, &headers, form, None, vec![err.to_string()]).await,
            )
                .into_response();
        }
    };
    let updated = match form.apply(before.clone()) {
        Ok(updated) => updated,
        Err(problems) => {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                page(&app, &headers, form, None, problems).await,
            )
                .into_response();
        }
    };
    if let Err(err) = updated.save(&app.config_path) {
        tracing::error!("saving settings failed: {err}");
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            page(&app, &headers, form, None, vec![err.to_string()]).await,
        )
            .into_response();
    }
    // Label and email go out now; everything else is read at start.
    app.live.label.send_replace(updated.profile.label.clone());
    app.live.email.send_replace(updated.profile.email.clone());
    app.live.announcement.send_modify(|announcement| {
        announcement.content = updated.profile.label.clone();
        announcement.email = updated.profile.email.clone();
    });
    let mut restart = Vec::new();
    if before.presence.rendezvous_wan != updated.presence.rendezvous_wan {
        restart.push("presence.rendezvous_wan");
    }
    if before.presence.rendezvous_host != updated.presence.rendezvous_host {
        restart.push("presence.rendezvous_host");
    }
    if before.p2p != updated.p2p {
        restart.push("the p2p settings");
    }
    if before.presence.ttl_seconds != updated.presence.ttl_seconds
        || before.presence.heartbeat_seconds != updated.presence.heartbeat_seconds
    {
        restart.push("the presence timings");
    }
    tracing::info!(path = %app.config_path.display(), "settings saved");
    let notice = match restart.is_empty() {
        true => "Saved and announced.".to_owned(),
        false => format!(
            "Saved. The label and email are already announced; {} take effect when the peer restarts.",
            restart.join(", ")
        ),
    };
    app.notices.redirect("/self", &notice)
}

/// The stored avatar, for the settings page.
async fn show_avatar(State(app): State<ConsoleApp>) -> Response {
    let Some(path) = avatar::find(&app.dir) else {
        return HttpError::page(StatusCode::NOT_FOUND, "no avatar").into_response();
    };
    let mime = if path.extension().is_some_and(|e| e == "png") {
        "image/png"
    } else {
        "image/jpeg"
    };
    match tokio::fs::read(&path).await {
        Ok(bytes) => ([(axum::http::header::CONTENT_TYPE, mime)], bytes).into_response(),
        Err(_) => HttpError::page(StatusCode::NOT_FOUND, "no avatar").into_response(),
    }
}

/// Stores an uploaded avatar (PNG or JPEG, at most 256 KiB) and announces its hash.
///
/// A refused image is answered with the checker's message alone, as plain text — the body this
/// form's clients have always read, and the one refusal that is not the error page.
async fn upload_avatar(
    State(app): State<ConsoleApp>,
    CsrfMultipart(form): CsrfMultipart,
) -> Response {
    let Some(image) = form.part("avatar").map(|part| part.data.clone()) else {
        return HttpError::page(StatusCode::BAD_REQUEST, "the form has no avatar file")
            .into_response();
    };
    let dir = app.dir.clone();
    let stored = tokio::task::spawn_blocking(move || avatar::store(&dir, &image))
        .await
        .unwrap_or_else(|_| Err(AvatarError::Io("the upload failed".into())));
    match stored {
        Ok(hash) => {
            app.live
                .announcement
                .send_modify(|announcement| announcement.avatar_hash = Some(hash));
            tracing::info!("avatar updated");
            Redirect::to("/self?avatar=1").into_response()
        }
        Err(error) => {
            let status = match error {
                AvatarError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                AvatarError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::BAD_REQUEST,
            };
            (status, error.to_string()).into_response()
        }
    }
}
