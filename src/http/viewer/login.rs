//! `/login` and `/logout` of a password-protected viewer.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use super::ViewerApp;
use crate::http::client_ip::ClientIp;
use crate::http::session::{self, AdminSession};

pub fn routes() -> Router<ViewerApp> {
    Router::new()
        .route("/login", get(show_login).post(log_in))
        .route("/logout", post(log_out))
}

#[derive(Template, WebTemplate)]
#[template(path = "viewer_login.html")]
struct LoginPage {
    title: String,
    error: Option<String>,
}

async fn show_login(State(app): State<ViewerApp>) -> Response {
    if app.access.auth.is_none() {
        return Redirect::to("/self").into_response();
    }
    LoginPage {
        title: "Sign in".into(),
        error: None,
    }
    .into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    password: String,
}

async fn log_in(
    State(app): State<ViewerApp>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let Some(auth) = &app.access.auth else {
        return Redirect::to("/self").into_response();
    };
    match auth.attempt_login(ip, &form.password).await {
        Ok(session) => session::signed_in(&session, &headers, "/self"),
        Err(refused) => refused.decorate(
            LoginPage {
                title: "Sign in".into(),
                error: Some(refused.message()),
            }
            .into_response(),
        ),
    }
}

#[derive(Deserialize)]
struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

async fn log_out(
    State(app): State<ViewerApp>,
    AdminSession(session): AdminSession,
    Form(form): Form<LogoutForm>,
) -> Response {
    if !session.csrf_matches(&form.csrf) {
        return (
            StatusCode::FORBIDDEN,
            "The form's CSRF token is missing or stale.",
        )
            .into_response();
    }
    if let Some(auth) = &app.access.auth {
        auth.sessions.remove(&session.token);
    }
    let mut response = Redirect::to("/login").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session::cleared_cookie());
    response
}
