//! `/self`: edit the profile and presence settings of `goop.json`, validated with the same rules
//! as at load and saved atomically. A file edited by hand since the page was opened is not
//! overwritten: the form carries the file's fingerprint.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;

use super::ViewerApp;
use crate::config::Config;
use crate::http::csrf::CsrfForm;
use crate::http::forms::parse_number;

pub fn routes() -> Router<ViewerApp> {
    Router::new().route("/self", get(show_settings).post(save_settings))
}

/// The editable settings, as text fields.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SettingsForm {
    fingerprint: String,
    label: String,
    email: String,
    ttl_seconds: String,
    heartbeat_seconds: String,
    rendezvous_bind: String,
    rendezvous_port: String,
    rendezvous_wan: String,
    peer_db_path: String,
    templates_dir: String,
    trusted_proxies: String,
    allow_unsigned: Option<String>,
    publish_burst: String,
    publish_per_second: String,
    max_streams: String,
    max_streams_per_ip: String,
}

impl SettingsForm {
    fn from_config(config: &Config) -> Self {
        let p = &config.presence;
        SettingsForm {
            label: config.profile.label.clone(),
            email: config.profile.email.clone(),
            ttl_seconds: p.ttl_seconds.to_string(),
            heartbeat_seconds: p.heartbeat_seconds.to_string(),
            rendezvous_bind: p.rendezvous_bind.clone(),
            // Empty when goop.json leaves the port out (the platform's PORT, else 8787).
            rendezvous_port: p
                .rendezvous_port
                .map(|port| port.to_string())
                .unwrap_or_default(),
            rendezvous_wan: p.rendezvous_wan.clone(),
            peer_db_path: p.peer_db_path.clone(),
            templates_dir: p.templates_dir.clone(),
            trusted_proxies: p.trusted_proxies.join(", "),
            allow_unsigned: p.allow_unsigned.then(|| "on".into()),
            publish_burst: p.publish_burst.to_string(),
            publish_per_second: p.publish_per_second.to_string(),
            max_streams: p.max_streams.to_string(),
            max_streams_per_ip: p.max_streams_per_ip.to_string(),
            ..SettingsForm::default()
        }
    }

    /// `config` with the form applied, or the problems found.
    fn apply(&self, mut config: Config) -> Result<Config, Vec<String>> {
        let mut problems = Vec::new();
        config.profile.label = self.label.trim().to_owned();
        config.profile.email = self.email.trim().to_owned();
        let p = &mut config.presence;
        parse_number(
            &mut problems,
            "presence.ttl_seconds",
            &self.ttl_seconds,
            &mut p.ttl_seconds,
        );
        parse_number(
            &mut problems,
            "presence.heartbeat_seconds",
            &self.heartbeat_seconds,
            &mut p.heartbeat_seconds,
        );
        p.rendezvous_port = if self.rendezvous_port.trim().is_empty() {
            None
        } else {
            let mut port = 0;
            parse_number(
                &mut problems,
                "presence.rendezvous_port",
                &self.rendezvous_port,
                &mut port,
            );
            Some(port)
        };
        parse_number(
            &mut problems,
            "presence.publish_burst",
            &self.publish_burst,
            &mut p.publish_burst,
        );
        parse_number(
            &mut problems,
            "presence.publish_per_second",
            &self.publish_per_second,
            &mut p.publish_per_second,
        );
        parse_number(
            &mut problems,
            "presence.max_streams",
            &self.max_streams,
            &mut p.max_streams,
        );
        parse_number(
            &mut problems,
            "presence.max_streams_per_ip",
            &self.max_streams_per_ip,
            &mut p.max_streams_per_ip,
        );
        p.rendezvous_bind = self.rendezvous_bind.trim().to_owned();
        p.rendezvous_wan = self.rendezvous_wan.trim().to_owned();
        p.peer_db_path = self.peer_db_path.trim().to_owned();
        p.templates_dir = self.templates_dir.trim().to_owned();
        p.allow_unsigned = self.allow_unsigned.is_some();
        p.trusted_proxies = self
            .trusted_proxies
            .split([',', '\n', ' '])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
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
#[template(path = "viewer_self.html")]
struct SettingsPage {
    title: String,
    /// `dark` or `light` (`viewer.theme`).
    theme: &'static str,
    csrf: String,
    protected: bool,
    hub_url: String,
    form: SettingsForm,
    notice: Option<String>,
    problems: Vec<String>,
}

#[derive(Deserialize)]
struct Notice {
    saved: Option<String>,
}

fn fingerprint(app: &ViewerApp) -> String {
    crate::config::fingerprint(&app.config_path)
}

async fn show_settings(
    State(app): State<ViewerApp>,
    headers: HeaderMap,
    Query(notice): Query<Notice>,
) -> SettingsPage {
    let config = app.config.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut form = SettingsForm::from_config(&config);
    form.fingerprint = fingerprint(&app);
    SettingsPage {
        title: "Settings".into(),
        theme: app.access.theme.as_str(),
        csrf: app.access.csrf_for(&headers).unwrap_or_default(),
        protected: app.access.auth.is_some(),
        hub_url: app.hub_url.clone(),
        form,
        notice: notice
            .saved
            .map(|_| "Saved. The new settings take effect when the hub restarts.".into()),
        problems: Vec::new(),
    }
}

async fn save_settings(
    State(app): State<ViewerApp>,
    headers: HeaderMap,
    CsrfForm(form): CsrfForm<SettingsForm>,
) -> Response {
    let csrf = app.access.csrf_for(&headers).unwrap_or_default();
    let page = |form: SettingsForm, status: StatusCode, problems: Vec<String>| {
        (
            status,
            SettingsPage {
                title: "Settings".into(),
                theme: app.access.theme.as_str(),
                csrf: csrf.clone(),
                protected: app.access.auth.is_some(),
                hub_url: app.hub_url.clone(),
                form,
                notice: None,
                problems,
            },
        )
            .into_response()
    };
    if form.fingerprint != fingerprint(&app) {
        return page(
            form,
            StatusCode::CONFLICT,
            vec![format!(
                "{} changed on disk since this page was opened; reload it to see the new \
                 contents, then make your changes again",
                app.config_path.display()
            )],
        );
    }
    // Start from the file as it is now, so keys this page does not show are kept.
    let current = match Config::load(&app.config_path) {
        Ok(loaded) => loaded.config,
        Err(err) => return page(form, StatusCode::CONFLICT, vec![err.to_string()]),
    };
    let updated = match form.apply(current) {
        Ok(updated) => updated,
        Err(problems) => return page(form, StatusCode::UNPROCESSABLE_ENTITY, problems),
    };
    if let Err(err) = updated.save(&app.config_path) {
        tracing::error!("saving settings failed: {err}");
        return page(
            form,
            StatusCode::INTERNAL_SERVER_ERROR,
            vec![err.to_string()],
        );
    }
    tracing::info!(path = %app.config_path.display(), "settings saved");
    *app.config.lock().unwrap_or_else(|p| p.into_inner()) = updated;
    Redirect::to("/self?saved=1").into_response()
}
