//! Administrator authentication for the console and the hub: argon2id password hashes,
//! in-memory sessions with CSRF tokens, and a per-address limit on login attempts.
//!
//! Hashing costs tens of milliseconds of CPU by design; async callers go through
//! [`check_configured_password`], which runs it on the blocking pool.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use subtle::ConstantTimeEq;

use crate::config::Secret;

/// A password could not be hashed, or a stored hash could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("the password is empty")]
    Empty,
    #[error("the stored password hash is not a valid PHC string: {0}")]
    MalformedHash(String),
    #[error("password hashing failed: {0}")]
    Hashing(String),
}

/// Hashes `password` with argon2id (default parameters, random salt) into a PHC string.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    if password.is_empty() {
        return Err(PasswordError::Empty);
    }
    let hash: PasswordHash = Argon2::default()
        .hash_password(password.as_bytes())
        .map_err(|e| PasswordError::Hashing(e.to_string()))?;
    Ok(hash.to_string())
}

/// Checks `password` against a PHC string produced by [`hash_password`] (or any argon2 PHC).
pub fn verify_password(phc: &str, password: &str) -> Result<bool, PasswordError> {
    let parsed = PasswordHash::new(phc).map_err(|e| PasswordError::MalformedHash(e.to_string()))?;
    Ok(Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok())
}

/// Checks a login attempt against a configured password, which may be an argon2 PHC string or
/// (discouraged) plain text. Runs argon2 on the blocking pool.
pub async fn check_configured_password(configured: &Secret, attempt: &str) -> bool {
    if configured.is_empty() || attempt.is_empty() {
        return false;
    }
    if configured.is_argon2_hash() {
        let phc = configured.expose().to_owned();
        let attempt = attempt.to_owned();
        return tokio::task::spawn_blocking(move || {
            verify_password(&phc, &attempt).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
    }
    configured
        .expose()
        .as_bytes()
        .ct_eq(attempt.as_bytes())
        .into()
}

/// How long a session lasts without use.
pub const SESSION_IDLE: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at once; the least recently used goes first.
pub const MAX_SESSIONS: usize = 256;

/// A signed-in administrator: the cookie token and the CSRF token of its forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub token: String,
    pub csrf: String,
}

impl Session {
    /// True when `submitted` is this session's CSRF token (constant-time).
    pub fn csrf_matches(&self, submitted: &str) -> bool {
        self.csrf.as_bytes().ct_eq(submitted.as_bytes()).into()
    }
}

/// In-memory sessions with idle expiry and a bounded count. Cloning shares the store.
#[derive(Clone, Default)]
pub struct SessionStore {
    sessions: Arc<Mutex<HashMap<String, SessionEntry>>>,
}

struct SessionEntry {
    session: Session,
    used: Instant,
    /// What the session's next page should tell the administrator, once.
    notice: Option<String>,
}

impl SessionStore {
    /// Starts a session with fresh random tokens.
    pub fn create(&self) -> Session {
        let session = Session {
            token: random_token(),
            csrf: random_token(),
        };
        let mut sessions = self.lock();
        let now = Instant::now();
        sessions.retain(|_, entry| now.duration_since(entry.used) < SESSION_IDLE);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, entry)| entry.used)
                .map(|(token, _)| token.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            session.token.clone(),
            SessionEntry {
                session: session.clone(),
                used: now,
                notice: None,
            },
        );
        session
    }

    /// The live session for a cookie token, refreshing its idle timer.
    pub fn get(&self, token: &str) -> Option<Session> {
        let mut sessions = self.lock();
        let now = Instant::now();
        match sessions.get_mut(token) {
            Some(entry) if now.duration_since(entry.used) < SESSION_IDLE => {
                entry.used = now;
                Some(entry.session.clone())
            }
            Some(_) => {
                sessions.remove(token);
                None
            }
            None => None,
        }
    }

    pub fn remove(&self, token: &str) {
        self.lock().remove(token);
    }

    /// Keeps `notice` for the session's next page (a newer notice replaces an unread one).
    /// Notices live here rather than in the URL so that only the server can put words on an
    /// administrator's page.
    pub fn leave_notice(&self, token: &str, notice: String) {
        if let Some(entry) = self.lock().get_mut(token) {
            entry.notice = Some(notice);
        }
    }

    /// The notice left for the session, once.
    pub fn take_notice(&self, token: &str) -> Option<String> {
        self.lock().get_mut(token)?.notice.take()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, SessionEntry>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Per-address limit on login attempts: a burst of 5, then one every 12 seconds.
pub struct LoginLimiter {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        let quota = Quota::per_minute(NonZeroU32::new(5).expect("non-zero"))
            .allow_burst(NonZeroU32::new(5).expect("non-zero"));
        LoginLimiter {
            limiter: RateLimiter::keyed(quota),
        }
    }
}

impl LoginLimiter {
    /// Takes an attempt for `ip`; `Err` carries the seconds to wait.
    pub fn check(&self, ip: IpAddr) -> Result<(), u64> {
        use governor::clock::{Clock, DefaultClock};
        self.limiter.check_key(&ip).map_err(|not_until| {
            not_until
                .wait_time_from(DefaultClock::default().now())
                .as_secs()
                .max(1)
        })
    }
}

/// 32 random bytes, URL-safe base64 without padding.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}
