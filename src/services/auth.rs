//! Administrator authentication for the console and the hub: argon2id password hashes,
//! in-memory sessions with CSRF tokens, and limits on login attempts.
//!
//! Hashing costs tens of milliseconds of CPU and about 19 MiB of memory by design. Async
//! callers go through [`check_configured_password`], which runs it on the blocking pool, at most
//! [`MAX_CONCURRENT_CHECKS`] at once in the whole process: a crowd of wrong logins waits for a
//! turn (or is refused) instead of allocating 19 MiB each.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use argon2::password_hash::PasswordHasher;
use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use crate::config::Secret;
use crate::services::client_key::client_key;

/// Argon2 checks running at once in this process.
pub const MAX_CONCURRENT_CHECKS: usize = 2;
/// How long an attempt waits for a turn before it is refused as busy.
pub const CHECK_QUEUE_WAIT: Duration = Duration::from_secs(5);
static PASSWORD_CHECKS: Semaphore = Semaphore::const_new(MAX_CONCURRENT_CHECKS);

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
    verify_password_reusing(phc, password, &mut Vec::new())
}

/// Most argon2 memory a stored hash may ask a check for: 256 MiB.
const MAX_CHECK_BLOCKS: usize = 256 * 1024;

/// [`verify_password`] with argon2's working memory in `memory`, which keeps it for the next
/// check: a checker thread allocates its 19 MiB once, not once per attempt.
fn verify_password_reusing(
    phc: &str,
    password: &str,
    memory: &mut Vec<Block>,
) -> Result<bool, PasswordError> {
    let malformed = |e: &dyn std::fmt::Display| PasswordError::MalformedHash(e.to_string());
    let parsed = PasswordHash::new(phc).map_err(|e| malformed(&e))?;
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return Err(PasswordError::MalformedHash(
            "it has no salt or no hash".into(),
        ));
    };
    let algorithm = Algorithm::try_from(parsed.algorithm.as_str()).map_err(|e| malformed(&e))?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()
        .map_err(|e| malformed(&e))?
        .unwrap_or_default();
    let params = Params::try_from(&parsed).map_err(|e| malformed(&e))?;
    let blocks = params.block_count();
    if blocks > MAX_CHECK_BLOCKS {
        return Err(PasswordError::Hashing(format!(
            "the stored hash asks for {} MiB; at most {} MiB are allowed",
            blocks / 1024,
            MAX_CHECK_BLOCKS / 1024
        )));
    }
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let mut computed = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(
            password.as_bytes(),
            salt.as_ref(),
            &mut computed,
            &mut memory[..blocks],
        )
        .map_err(|e| PasswordError::Hashing(e.to_string()))?;
    Ok(computed.ct_eq(expected.as_bytes()).into())
}

type CheckJob = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// The threads that run argon2: a fixed few, each with working memory it keeps. Allocating
/// 19 MiB per check on the blocking pool left hundreds of MiB behind after a crowd of logins,
/// even when only two checks ran at once.
fn checker_threads() -> &'static std::sync::mpsc::SyncSender<CheckJob> {
    static CHECKERS: OnceLock<std::sync::mpsc::SyncSender<CheckJob>> = OnceLock::new();
    CHECKERS.get_or_init(|| {
        let (jobs, receiver) = std::sync::mpsc::sync_channel::<CheckJob>(MAX_CONCURRENT_CHECKS);
        let receiver = Arc::new(Mutex::new(receiver));
        for index in 0..MAX_CONCURRENT_CHECKS {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("password-check-{index}"))
                .spawn(move || {
                    let mut memory = Vec::new();
                    loop {
                        let job = receiver.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        match job {
                            Ok(job) => job(&mut memory),
                            Err(_) => return,
                        }
                    }
                })
                .expect("a password check thread starts");
        }
        jobs
    })
}

/// No turn to check a password came within [`CHECK_QUEUE_WAIT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChecksBusy;

/// Checks a login attempt against a configured password, which may be an argon2 PHC string or
/// (discouraged) plain text. Runs argon2 on the blocking pool, within the process-wide bound.
pub async fn check_configured_password(
    configured: &Secret,
    attempt: &str,
) -> Result<bool, ChecksBusy> {
    if configured.is_empty() || attempt.is_empty() {
        return Ok(false);
    }
    if configured.is_argon2_hash() {
        let turn = tokio::time::timeout(CHECK_QUEUE_WAIT, PASSWORD_CHECKS.acquire())
            .await
            .map_err(|_| ChecksBusy)?
            .expect("never closed");
        let phc = configured.expose().to_owned();
        let attempt = attempt.to_owned();
        let (answer, answered) = tokio::sync::oneshot::channel();
        checker_threads()
            .try_send(Box::new(move |memory| {
                let matched = verify_password_reusing(&phc, &attempt, memory).unwrap_or(false);
                let _ = answer.send(matched);
            }))
            .map_err(|_| ChecksBusy)?;
        let matched = answered.await.unwrap_or(false);
        drop(turn);
        return Ok(matched);
    }
    Ok(configured
        .expose()
        .as_bytes()
        .ct_eq(attempt.as_bytes())
        .into())
}

/// How long a session lasts without use.
pub const SESSION_IDLE: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at once; the least recently used goes first.
pub const MAX_SESSIONS: usize = 256;

/// A signed-in administrator: the cookie token and the CSRF token of its forms (checked over
/// HTTP by `http::csrf`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub token: String,
    pub csrf: String,
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

    /// True while the session lives, without counting this as use (for long-lived streams,
    /// which must not keep a session alive by themselves).
    pub fn is_live(&self, token: &str) -> bool {
        self.lock()
            .get(token)
            .is_some_and(|entry| entry.used.elapsed() < SESSION_IDLE)
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

/// Attempts one client may make: a burst of 5, then one every 12 seconds.
pub const ATTEMPTS_PER_CLIENT_PER_MINUTE: u32 = 5;
/// Attempts all clients together may make: a burst of 30, then one every 2 seconds. A crowd of
/// addresses guessing at once meets this limit; a signed-in administrator is not affected.
pub const ATTEMPTS_OVERALL_PER_MINUTE: u32 = 30;

/// Which login limit an attempt met, and the seconds until the next attempt is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    Client(u64),
    Overall(u64),
}

/// Limits on login attempts: per client (an IPv4 address or an IPv6 /64) and overall.
pub struct LoginLimiter {
    per_client: DefaultKeyedRateLimiter<IpAddr>,
    overall: DefaultDirectRateLimiter,
    /// When a refusal was last logged, and how many have not been since.
    reported: Mutex<(Option<Instant>, u64)>,
}

/// How often refused login attempts are logged while they keep coming.
const REFUSALS_REPORTED_EVERY: Duration = Duration::from_secs(60);

impl Default for LoginLimiter {
    fn default() -> Self {
        let per_minute = |n: u32| {
            let n = NonZeroU32::new(n).expect("non-zero");
            Quota::per_minute(n).allow_burst(n)
        };
        LoginLimiter {
            per_client: RateLimiter::keyed(per_minute(ATTEMPTS_PER_CLIENT_PER_MINUTE)),
            overall: RateLimiter::direct(per_minute(ATTEMPTS_OVERALL_PER_MINUTE)),
            reported: Mutex::new((None, 0)),
        }
    }
}

impl LoginLimiter {
    /// Takes an attempt for `ip`, first from its own budget, then from the overall one.
    pub fn check(&self, ip: IpAddr) -> Result<(), Throttled> {
        use governor::clock::{Clock, DefaultClock};
        let seconds = |not_until: governor::NotUntil<_>| {
            not_until
                .wait_time_from(DefaultClock::default().now())
                .as_secs()
                .max(1)
        };
        self.per_client
            .check_key(&client_key(ip))
            .map_err(|n| Throttled::Client(seconds(n)))?;
        self.overall
            .check()
            .map_err(|n| Throttled::Overall(seconds(n)))
    }

    /// Counts a refused attempt; says whether to log it — the first, then at most one a
    /// minute — and how many went unlogged before it. A crowd of attempts must not flood the log.
    pub fn report_refusal(&self) -> Option<u64> {
        let mut reported = self.reported.lock().unwrap_or_else(|p| p.into_inner());
        let due = reported
            .0
            .is_none_or(|at| at.elapsed() >= REFUSALS_REPORTED_EVERY);
        if due {
            let unlogged = std::mem::take(&mut reported.1);
            reported.0 = Some(Instant::now());
            Some(unlogged)
        } else {
            reported.1 += 1;
            None
        }
    }
}

/// 32 random bytes, URL-safe base64 without padding.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_reuse_their_memory_across_hashes_of_any_parameters() {
        let mut memory = Vec::new();
        let ours = hash_password("right").unwrap();
        assert!(verify_password_reusing(&ours, "right", &mut memory).unwrap());
        assert!(!verify_password_reusing(&ours, "wrong", &mut memory).unwrap());
        let default_blocks = memory.len();
        assert_eq!(default_blocks, Params::default().block_count());

        // Hashes made elsewhere, with other parameters and algorithms, check the same way.
        for (algorithm, m, t, p) in [
            (Algorithm::Argon2id, 64, 3, 2),
            (Algorithm::Argon2i, 32, 2, 1),
            (Algorithm::Argon2d, 128, 1, 4),
        ] {
            let params = Params::new(m, t, p, Some(24)).unwrap();
            let phc = Argon2::new(algorithm, Version::V0x13, params)
                .hash_password(b"other")
                .unwrap()
                .to_string();
            assert!(verify_password_reusing(&phc, "other", &mut memory).unwrap());
            assert!(!verify_password_reusing(&phc, "Other", &mut memory).unwrap());
            assert!(verify_password(&phc, "other").unwrap());
        }
        assert_eq!(
            memory.len(),
            default_blocks,
            "smaller checks use what is there"
        );
    }

    #[test]
    fn a_hash_that_asks_for_too_much_memory_is_refused() {
        let phc = "$argon2id$v=19$m=4000000,t=1,p=1$c2FsdHNhbHQ$\
                   qLml5cbZnfaZUTpM4ZQm2jpMY4rT5Ewfj2mSCf6ylWg";
        let error = verify_password(phc, "x").unwrap_err();
        assert!(error.to_string().contains("at most 256 MiB"), "{error}");
        assert!(matches!(
            verify_password("$argon2id$v=19$m=19456,t=2,p=1", "x"),
            Err(PasswordError::MalformedHash(_))
        ));
    }
}
