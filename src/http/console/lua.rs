//! `/lua`: the site's Lua functions and chat commands — each with its status (ok, or the compile
//! error with its line), a link to edit it in the site editor, a form to run it as the owner
//! (result or reply, duration and the script's log lines), and forms to create and delete them.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::{ConsoleApp, Frame};
use crate::http::csrf::CsrfForm;
use crate::http::error::HttpError;
use crate::services::lua::{FunctionInfo, is_plain_name};
use crate::services::site_files::Expect;

pub fn routes() -> Router<ConsoleApp> {
    Router::new()
        .route("/lua", get(show_functions))
        .route("/lua/run", post(run_function))
        .route("/lua/new", post(new_function))
        .route("/lua/delete", post(delete_function))
}

/// The outcome of a run, as shown.
struct Ran {
    name: String,
    params: String,
    ok: bool,
    output: String,
    millis: String,
    logs: Vec<(String, String)>,
}

#[derive(Template, WebTemplate)]
#[template(path = "console_lua.html")]
struct LuaPage {
    frame: Frame,
    enabled: bool,
    functions: Vec<FunctionInfo>,
    commands: Vec<FunctionInfo>,
    /// The scripts' folder inside the site, for edit links.
    lua_dir: Option<String>,
    notice: Option<String>,
    ran: Option<Ran>,
}

#[derive(Deserialize)]
struct NoticeQuery {
    notice: Option<String>,
}

fn page(
    app: &ConsoleApp,
    headers: &HeaderMap,
    notice: Option<String>,
    ran: Option<Ran>,
) -> LuaPage {
    let engine = app.data.lua_engine();
    LuaPage {
        frame: app.frame(headers),
        enabled: engine.is_some(),
        functions: engine.map(|e| e.list()).unwrap_or_default(),
        commands: engine.map(|e| e.commands()).unwrap_or_default(),
        lua_dir: app.lua_dir.clone(),
        notice,
        ran,
    }
}

async fn show_functions(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    Query(query): Query<NoticeQuery>,
) -> LuaPage {
    page(&app, &headers, app.notices.open(query.notice), None)
}

/// A function (`functions/<name>.lua`) or a chat command (`<name>.lua`).
#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
enum Kind {
    #[default]
    Function,
    Command,
}

#[derive(Deserialize)]
struct RunForm {
    #[serde(default)]
    kind: Kind,
    name: String,
    /// A function's parameters, as JSON.
    #[serde(default)]
    params: String,
    /// A command's arguments, as text.
    #[serde(default)]
    args: String,
}

async fn run_function(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    CsrfForm(form): CsrfForm<RunForm>,
) -> Response {
    let Some(engine) = app.data.lua_engine() else {
        return HttpError::page(StatusCode::NOT_FOUND, "Lua is not enabled (lua.enabled)")
            .into_response();
    };
    let owner = engine.owner();
    let started = std::time::Instant::now();
    let mut ran = Ran {
        name: form.name.clone(),
        params: match form.kind {
            Kind::Function => form.params.clone(),
            Kind::Command => format!("!{} {}", form.name, form.args),
        },
        ok: false,
        output: String::new(),
        millis: String::new(),
        logs: Vec::new(),
    };
    let outcome = match form.kind {
        Kind::Command => engine.command(&form.name, form.args.trim(), owner).await,
        Kind::Function => {
            let text = match form.params.trim() {
                "" => "{}",
                text => text,
            };
            match serde_json::from_str::<serde_json::Value>(text) {
                Ok(params) => engine.call(&form.name, params, owner).await,
                Err(err) => {
                    ran.output = format!("the parameters are not JSON: {err}");
                    return (
                        StatusCode::BAD_REQUEST,
                        page(&app, &headers, None, Some(ran)),
                    )
                        .into_response();
                }
            }
        }
    };
    let status = match outcome {
        Ok(outcome) => {
            ran.ok = true;
            ran.output = match outcome.result {
                serde_json::Value::String(reply) if form.kind == Kind::Command => reply,
                serde_json::Value::Null if form.kind == Kind::Command => "(no reply)".into(),
                result => serde_json::to_string_pretty(&result).unwrap_or_default(),
            };
            ran.logs = outcome.logs;
            ran.millis = format!("{:.2}", outcome.elapsed.as_secs_f64() * 1000.0);
            StatusCode::OK
        }
        Err(err) => {
            ran.output = err.to_string();
            ran.millis = format!("{:.2}", started.elapsed().as_secs_f64() * 1000.0);
            StatusCode::UNPROCESSABLE_ENTITY
        }
    };
    (status, page(&app, &headers, None, Some(ran))).into_response()
}

#[derive(Deserialize)]
struct NameForm {
    #[serde(default)]
    kind: Kind,
    name: String,
}

/// The script's path inside the site, for a plain name.
fn script_path(app: &ConsoleApp, kind: Kind, name: &str) -> Option<String> {
    let dir = app.lua_dir.as_deref()?;
    is_plain_name(name).then(|| match kind {
        Kind::Function => format!("{dir}/functions/{name}.lua"),
        Kind::Command => format!("{dir}/{name}.lua"),
    })
}

const STARTER: &str = "--- What this function does, in one line.\n\
function call(request)\n  local params = request.params\n  return { hello = goop.peer.id }\nend\n";

const COMMAND_STARTER: &str = "--- What this command does, in one line.\n\
function handle(args)\n  return 'Hello, ' .. goop.peer.label .. '! You said: ' .. args\nend\n";

async fn new_function(
    State(app): State<ConsoleApp>,
    CsrfForm(form): CsrfForm<NameForm>,
) -> Response {
    let Some(path) = script_path(&app, form.kind, form.name.trim()) else {
        return HttpError::page(
            StatusCode::BAD_REQUEST,
            "name a function or command with letters, digits, `_` or `-` (Lua must be enabled, \
             with its scripts inside the site folder)",
        )
        .into_response();
    };
    let starter = match form.kind {
        Kind::Function => STARTER,
        Kind::Command => COMMAND_STARTER,
    };
    let files = app.site_files.clone();
    let target = path.clone();
    let created = tokio::task::spawn_blocking(move || {
        let folder = target.rsplit_once('/').map(|(dir, _)| dir).unwrap_or("");
        let mut prefix = String::new();
        for part in folder.split('/') {
            prefix = if prefix.is_empty() {
                part.to_owned()
            } else {
                format!("{prefix}/{part}")
            };
            let _ = files.create_dir(&prefix);
        }
        files.write(&target, starter.as_bytes(), &Expect::Absent)
    })
    .await;
    match created {
        Ok(Ok(_)) => {
            if let Some(engine) = app.data.lua_engine() {
                engine.rescan();
            }
            let query: String = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("path", &path)
                .finish();
            Redirect::to(&format!("/edit/file?{query}")).into_response()
        }
        Ok(Err(err)) => HttpError::page(StatusCode::CONFLICT, err.to_string()).into_response(),
        Err(err) => {
            HttpError::page(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response()
        }
    }
}

async fn delete_function(
    State(app): State<ConsoleApp>,
    CsrfForm(form): CsrfForm<NameForm>,
) -> Response {
    let Some(path) = script_path(&app, form.kind, &form.name) else {
        return HttpError::page(StatusCode::BAD_REQUEST, "not a function or command name")
            .into_response();
    };
    let files = app.site_files.clone();
    match tokio::task::spawn_blocking(move || files.delete(&path, None, false)).await {
        Ok(Ok(())) => {
            if let Some(engine) = app.data.lua_engine() {
                engine.rescan();
            }
            app.notices
                .redirect("/lua", &format!("{} deleted.", form.name))
        }
        Ok(Err(err)) => HttpError::page(StatusCode::NOT_FOUND, err.to_string()).into_response(),
        Err(err) => {
            HttpError::page(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response()
        }
    }
}
