//! Administrator sessions over HTTP: the login cookie and the `AdminSession` extractor that pages
//! and APIs take as an argument. The session's CSRF token is checked by [`crate::http::csrf`].

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use crate::config::Secret;
use crate::http::error::{HttpError, wants_json};
use crate::services::auth::{self, ChecksBusy, LoginLimiter, Session, SessionStore, Throttled};

/// Seconds a login refused as busy is told to wait.
const BUSY_RETRY_AFTER: u64 = 5;

/// The session cookie's name.
pub const COOKIE: &str = "goop_admin";

/// What login and session checks need. Cloning is cheap.
#[derive(Clone)]
pub struct AdminAuth {
    pub password: Secret,
    pub sessions: SessionStore,
    pub limiter: Arc<LoginLimiter>,
    /// Where to send a visitor without a session.
    pub login_path: &'static str,
}

impl AdminAuth {
    pub fn new(password: Secret, login_path: &'static str) -> Self {
        AdminAuth {
            password,
            sessions: SessionStore::default(),
            limiter: Arc::new(LoginLimiter::default()),
            login_path,
        }
    }

    /// Sessions kept in `sessions` (a hub's peer database) instead of this process's memory.
    pub fn with_sessions(mut self, sessions: SessionStore) -> Self {
        self.sessions = sessions;
        self
    }

    /// False when no password is configured: administration is off.
    pub fn enabled(&self) -> bool {
        !self.password.is_empty()
    }

    /// Checks a login attempt from `ip`: the per-address limit, then the password. Logs the
    /// outcome; on success starts a session.
    pub async fn attempt_login(&self, ip: IpAddr, password: &str) -> Result<Session, LoginRefused> {
        if !self.enabled() {
            return Err(LoginRefused::Disabled);
        }
        match self.limiter.check(ip) {
            Ok(()) => {}
            Err(Throttled::Client(wait)) => {
                if let Some(unlogged) = self.limiter.report_refusal() {
                    tracing::warn!(client = %ip, unlogged, "login rate-limited");
                }
                return Err(LoginRefused::TooManyAttempts { retry_after: wait });
            }
            Err(Throttled::Overall(wait)) => {
                if let Some(unlogged) = self.limiter.report_refusal() {
                    tracing::warn!(
                        client = %ip,
                        unlogged,
                        "login refused: too many attempts from everyone"
                    );
                }
                return Err(LoginRefused::TooManyAttemptsOverall { retry_after: wait });
            }
        }
        match auth::check_configured_password(&self.password, password).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(client = %ip, "failed login");
                return Err(LoginRefused::WrongPassword);
            }
            Err(ChecksBusy) => {
                if let Some(unlogged) = self.limiter.report_refusal() {
                    tracing::warn!(client = %ip, unlogged, "login refused: password checks busy");
                }
                return Err(LoginRefused::Busy);
            }
        }
        let session = self.sessions.create().await.map_err(|error| {
            tracing::warn!(client = %ip, "login refused: {error}");
            LoginRefused::Unavailable
        })?;
        tracing::info!(client = %ip, "signed in");
        Ok(session)
    }

    /// The session named by the request's cookie, if it is live, as this process knows it (a
    /// console's sessions; a hub's requests ask [`AdminAuth::session`]).
    pub fn session_from(&self, headers: &HeaderMap) -> Option<Session> {
        let token = cookie_value(headers, COOKIE)?;
        self.sessions.get(token)
    }

    /// The session named by the request's cookie, if it is live, wherever it was started (see
    /// [`SessionStore::fetch`]).
    pub async fn session(&self, headers: &HeaderMap) -> Option<Session> {
        let token = cookie_value(headers, COOKIE)?;
        self.sessions.fetch(token).await
    }
}

/// Why a login attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRefused {
    /// No password is configured.
    Disabled,
    /// This client's own budget is spent.
    TooManyAttempts {
        retry_after: u64,
    },
    /// Every client's attempts together are over the overall budget.
    TooManyAttemptsOverall {
        retry_after: u64,
    },
    /// No turn to check the password came in time.
    Busy,
    /// The password was right, but the database that keeps sessions cannot be reached.
    Unavailable,
    WrongPassword,
}

impl LoginRefused {
    pub fn status(self) -> StatusCode {
        match self {
            LoginRefused::Disabled => StatusCode::FORBIDDEN,
            LoginRefused::TooManyAttempts { .. } | LoginRefused::TooManyAttemptsOverall { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            LoginRefused::Busy | LoginRefused::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            LoginRefused::WrongPassword => StatusCode::UNAUTHORIZED,
        }
    }

    /// The message the login form shows.
    pub fn message(self) -> String {
        match self {
            LoginRefused::Disabled => "Signing in is disabled.".into(),
            LoginRefused::TooManyAttempts { retry_after } => {
                format!("Too many attempts. Try again in {retry_after} s.")
            }
            LoginRefused::TooManyAttemptsOverall { retry_after } => format!(
                "Too many sign-in attempts on this server from everyone together. \
                 Try again in {retry_after} s."
            ),
            LoginRefused::Busy => {
                "The server is checking too many passwords at once. Try again in a few seconds."
                    .into()
            }
            LoginRefused::Unavailable => "The database that keeps sign-ins cannot be reached. \
                 Try again in a few seconds."
                .into(),
            LoginRefused::WrongPassword => "Wrong password.".into(),
        }
    }

    /// Adds `Retry-After` when the refusal has one.
    pub fn decorate(self, mut response: Response) -> Response {
        let retry_after = match self {
            LoginRefused::TooManyAttempts { retry_after }
            | LoginRefused::TooManyAttemptsOverall { retry_after } => Some(retry_after),
            LoginRefused::Busy | LoginRefused::Unavailable => Some(BUSY_RETRY_AFTER),
            LoginRefused::Disabled | LoginRefused::WrongPassword => None,
        };
        if let Some(retry_after) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry_after.into());
        }
        (self.status(), response).into_response()
    }
}

/// The redirect that completes a login: sets the session cookie and goes to `to`.
pub fn signed_in(session: &Session, request_headers: &HeaderMap, to: &str) -> Response {
    let mut response = Redirect::to(to).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie(&session.token, is_https(request_headers)),
    );
    response
}

/// A redirect to `path`, whose page shows `notice` once. The text stays with the session on the
/// server, so a link cannot make an administrator's page say something.
pub async fn redirect_with_flash(
    auth: &AdminAuth,
    session: &Session,
    path: &str,
    notice: impl Into<String>,
) -> Response {
    auth.sessions
        .leave_notice(&session.token, notice.into())
        .await;
    Redirect::to(path).into_response()
}

/// A redirect to `path` with a `notice` to show there.
pub fn redirect_with_notice(path: &str, notice: &str) -> Response {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("notice", notice)
        .finish();
    Redirect::to(&format!("{path}?{query}")).into_response()
}

/// A request made by a signed-in administrator. Handlers that need one take it as an argument;
/// without a live session the request is answered with a redirect to the login page (pages) or
/// 401 (JSON clients).
pub struct AdminSession(pub Session);

impl<S> FromRequestParts<S> for AdminSession
where
    S: Send + Sync,
    AdminAuth: FromRef<S>,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let auth = AdminAuth::from_ref(state);
        match auth.session(&parts.headers).await {
            Some(session) => Ok(AdminSession(session)),
            None if wants_json(&parts.headers) => Err(HttpError::new(
                StatusCode::UNAUTHORIZED,
                "sign in as the administrator first",
            )
            .into_response()),
            None => Err(Redirect::to(auth.login_path).into_response()),
        }
    }
}

/// Optional variant: `None` instead of a rejection.
pub struct MaybeAdmin(pub Option<Session>);

impl<S> FromRequestParts<S> for MaybeAdmin
where
    S: Send + Sync,
    AdminAuth: FromRef<S>,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(MaybeAdmin(
            AdminAuth::from_ref(state).session(&parts.headers).await,
        ))
    }
}

/// The value of cookie `name` in the request.
pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// True when the browser reached us over HTTPS (directly or through a proxy that says so).
pub fn is_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

/// `Set-Cookie` for a new session: HttpOnly, SameSite=Strict, Secure behind TLS.
pub fn session_cookie(token: &str, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200{secure}"
    ))
    .expect("tokens are URL-safe base64")
}

/// `Set-Cookie` that removes the session cookie.
pub fn cleared_cookie() -> HeaderValue {
    HeaderValue::from_static("goop_admin=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}
