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
use crate::services::auth;

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
    if app.auth.is_none() {
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
    let Some(auth) = &app.auth else {
        return Redirect::to("/self").into_response();
    };
    let page = |status: StatusCode, error: String| {
        (
            status,
            LoginPage {
                title: "Sign in".into(),
                error: Some(error),
            },
        )
            .into_response()
    };
    if let Err(wait) = auth.limiter.check(ip) {
        let mut response = page(
            StatusCode::TOO_MANY_REQUESTS,
            format!("Too many attempts. Try again in {wait} s."),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, wait.into());
        return response;
    }
    if !auth::check_configured_password(&auth.password, &form.password).await {
        tracing::warn!(client = %ip, "failed viewer login");
        return page(StatusCode::UNAUTHORIZED, "Wrong password.".into());
    }
    let session = auth.sessions.create();
    let mut response = Redirect::to("/self").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        session::session_cookie(&session.token, session::is_https(&headers)),
    );
    response
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
    if let Some(auth) = &app.auth {
        auth.sessions.remove(&session.token);
    }
    let mut response = Redirect::to("/login").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session::cleared_cookie());
    response
}
