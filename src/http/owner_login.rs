//! `/login` and `/logout` of an owner's interface (the peer console, a hub's settings viewer),
//! shared by both; generic over the interface's state.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{FromRef, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use crate::http::access::OwnerAccess;
use crate::http::client_ip::{ClientIp, TrustedProxies};
use crate::http::csrf::{CsrfForm, CsrfSource};
use crate::http::session::{self, AdminAuth, AdminSession};

/// The login routes for an interface whose state offers its access rules.
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + CsrfSource + 'static,
    OwnerAccess: FromRef<S>,
    TrustedProxies: FromRef<S>,
    AdminAuth: FromRef<S>,
{
    Router::new()
        .route("/login", get(show_login::<S>).post(log_in::<S>))
        .route("/logout", post(log_out::<S>))
}

#[derive(Template, WebTemplate)]
#[template(path = "owner_login.html")]
struct LoginPage {
    brand: &'static str,
    /// `dark` or `light` (`viewer.theme`).
    theme: &'static str,
    error: Option<String>,
}

async fn show_login<S>(State(state): State<S>) -> Response
where
    OwnerAccess: FromRef<S>,
{
    let access = OwnerAccess::from_ref(&state);
    if access.auth.is_none() {
        return Redirect::to(access.home).into_response();
    }
    LoginPage {
        brand: access.brand,
        theme: access.theme.as_str(),
        error: None,
    }
    .into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    password: String,
}

async fn log_in<S>(
    State(state): State<S>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response
where
    OwnerAccess: FromRef<S>,
{
    let access = OwnerAccess::from_ref(&state);
    let Some(auth) = &access.auth else {
        return Redirect::to(access.home).into_response();
    };
    match auth.attempt_login(ip, &form.password).await {
        Ok(session) => session::signed_in(&session, &headers, access.home),
        Err(refused) => refused.decorate(
            LoginPage {
                brand: access.brand,
                theme: access.theme.as_str(),
                error: Some(refused.message()),
            }
            .into_response(),
        ),
    }
}

async fn log_out<S>(
    State(state): State<S>,
    AdminSession(session): AdminSession,
    _: CsrfForm,
) -> Response
where
    OwnerAccess: FromRef<S>,
{
    let access = OwnerAccess::from_ref(&state);
    if let Some(auth) = &access.auth {
        auth.sessions.remove(&session.token).await;
    }
    let mut response = Redirect::to("/login").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session::cleared_cookie());
    response
}
