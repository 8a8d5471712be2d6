//! Administrator authentication for the console and the hub: argon2id password hashes,
//! sessions with CSRF tokens (in memory, or a hub's peer database), and limits on login
//! attempts.
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
use crate::services::hub::unix_ms;
use crate::store::hub::{HubStore, StoreError, StoredSession};

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

/// How often a hub whose sessions live in its peer database reads them all again: a sign-out on
/// another instance ends what this one's streams send as the admin's within this time.
pub const SESSION_REFRESH: Duration = Duration::from_secs(2);
/// A session's last use is written to the database at most this often per instance.
const SESSION_TOUCH_EVERY: Duration = Duration::from_secs(60);
/// Cookies this process does not know that it asks the database about, per second (and at
/// once): anyone may send a made-up cookie with every request, and the database's few
/// connections are for the hub's writes first. Past the budget an unknown cookie names no
/// session; a real one is known here within [`SESSION_REFRESH`] anyway.
pub const SESSION_LOOKUPS_PER_SECOND: u32 = 20;

/// Administrators' sessions with idle expiry and a bounded count. Cloning shares the store.
///
/// A console keeps them in memory. A hub with a peer database keeps them there too
/// ([`SessionStore::shared`]), so that every instance knows every session: a sign-in on one
/// instance is good on the others, a sign-out ends it on all, and a restart keeps it. Then the
/// memory here is a cache: requests ([`SessionStore::fetch`]) ask the database, and what an
/// event stream checks before each event ([`SessionStore::is_live`]) is the cache, read again
/// from the database every [`SESSION_REFRESH`]. Sessions are found by the SHA-256 digest of
/// their token, which is all the database holds of it.
#[derive(Clone)]
pub struct SessionStore {
    cache: Arc<Mutex<HashMap<String, SessionEntry>>>,
    shared: Option<HubStore>,
    /// The budget of database lookups for cookies the cache does not know.
    lookups: Arc<DefaultDirectRateLimiter>,
}

impl Default for SessionStore {
    fn default() -> Self {
        SessionStore {
            cache: Arc::default(),
            shared: None,
            lookups: lookup_budget(SESSION_LOOKUPS_PER_SECOND),
        }
    }
}

fn lookup_budget(per_second: u32) -> Arc<DefaultDirectRateLimiter> {
    let per_second = NonZeroU32::new(per_second.max(1)).expect("non-zero");
    Arc::new(RateLimiter::direct(Quota::per_second(per_second)))
}

struct SessionEntry {
    csrf: String,
    /// Last use, Unix milliseconds.
    used_ms: i64,
    /// The last use written to the database.
    stored_ms: i64,
    /// What the session's next page should tell the administrator, once (memory only; a shared
    /// store keeps it in the database).
    notice: Option<String>,
}

/// Why a session could not be started.
#[derive(Debug, thiserror::Error)]
#[error("the peer database, which keeps administrators' sessions, cannot be reached: {0}")]
pub struct SessionsUnavailable(StoreError);

fn token_digest(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

fn idle_ms() -> i64 {
    SESSION_IDLE.as_millis() as i64
}

impl SessionStore {
    /// Sessions kept in `store`, shared with every instance of it.
    pub fn shared(store: HubStore) -> Self {
        Self::shared_with_lookups(store, SESSION_LOOKUPS_PER_SECOND)
    }

    /// Like [`SessionStore::shared`], looking up at most `per_second` unknown cookies a second
    /// (and at once).
    pub fn shared_with_lookups(store: HubStore, per_second: u32) -> Self {
        SessionStore {
            cache: Arc::default(),
            shared: Some(store),
            lookups: lookup_budget(per_second),
        }
    }

    /// Starts a session with fresh random tokens. With a shared store, fails while the
    /// database cannot be reached (a session this instance alone knew would end at the next
    /// refresh, or on the next request another instance took).
    pub async fn create(&self) -> Result<Session, SessionsUnavailable> {
        let session = Session {
            token: random_token(),
            csrf: random_token(),
        };
        let digest = token_digest(&session.token);
        let now = unix_ms();
        if let Some(store) = &self.shared {
            let stored = StoredSession {
                token_digest: digest.clone(),
                csrf: session.csrf.clone(),
                used_ms: now,
            };
            store
                .create_session(&stored, now - idle_ms(), MAX_SESSIONS as i64)
                .await
                .map_err(SessionsUnavailable)?;
        }
        let mut cache = self.lock();
        cache.retain(|_, entry| now - entry.used_ms < idle_ms());
        if cache.len() >= MAX_SESSIONS
            && let Some(oldest) = cache
                .iter()
                .min_by_key(|(_, entry)| entry.used_ms)
                .map(|(digest, _)| digest.clone())
        {
            cache.remove(&oldest);
        }
        cache.insert(
            digest,
            SessionEntry {
                csrf: session.csrf.clone(),
                used_ms: now,
                stored_ms: now,
                notice: None,
            },
        );
        Ok(session)
    }

    /// The live session for a cookie token as this process knows it, refreshing its idle timer
    /// here. A console's whole answer; a hub's requests ask [`SessionStore::fetch`].
    pub fn get(&self, token: &str) -> Option<Session> {
        let digest = token_digest(token);
        let mut cache = self.lock();
        let now = unix_ms();
        match cache.get_mut(&digest) {
            Some(entry) if now - entry.used_ms < idle_ms() => {
                entry.used_ms = entry.used_ms.max(now);
                Some(Session {
                    token: token.to_owned(),
                    csrf: entry.csrf.clone(),
                })
            }
            Some(_) => {
                cache.remove(&digest);
                None
            }
            None => None,
        }
    }

    /// The live session for a cookie token, counting this as use: with a shared store, as the
    /// database has it (a session started on another instance is found, one ended there is
    /// gone; a cookie this process does not know is looked up within
    /// [`SESSION_LOOKUPS_PER_SECOND`]); while the database cannot be reached, as this process
    /// last knew it.
    pub async fn fetch(&self, token: &str) -> Option<Session> {
        match &self.shared {
            Some(store) => self.look_up(store, token, true).await,
            None => self.get(token),
        }
    }

    /// Whether a cookie token names a live session, asking the database when this process does
    /// not know it, without counting this as use (for long-lived streams, which must not keep
    /// a session alive by themselves).
    pub async fn recognize(&self, token: &str) -> bool {
        if self.is_live(token) {
            return true;
        }
        match &self.shared {
            Some(store) => self.look_up(store, token, false).await.is_some(),
            None => false,
        }
    }

    /// A cookie's session as `store` has it, kept in the cache; `used` counts this as use.
    async fn look_up(&self, store: &HubStore, token: &str, used: bool) -> Option<Session> {
        let digest = token_digest(token);
        let known = self.lock().contains_key(&digest);
        if !known && self.lookups.check().is_err() {
            tracing::debug!("an unknown admin cookie over the lookup budget names no session");
            return None;
        }
        let now = unix_ms();
        let row = match store.session(&digest, now - idle_ms()).await {
            Ok(row) => row,
            Err(error) => {
                tracing::warn!("cannot read administrators' sessions: {error}");
                return match used {
                    true => self.get(token),
                    false => None,
                };
            }
        };
        let Some(row) = row else {
            self.lock().remove(&digest);
            return None;
        };
        let touch = {
            let mut cache = self.lock();
            let entry = cache.entry(digest.clone()).or_insert_with(|| SessionEntry {
                csrf: row.csrf.clone(),
                used_ms: row.used_ms,
                stored_ms: row.used_ms,
                notice: None,
            });
            entry.csrf.clone_from(&row.csrf);
            entry.stored_ms = entry.stored_ms.max(row.used_ms);
            entry.used_ms = entry.used_ms.max(row.used_ms);
            if used {
                entry.used_ms = entry.used_ms.max(now);
            }
            let due = used && now - entry.stored_ms >= SESSION_TOUCH_EVERY.as_millis() as i64;
            if due {
                entry.stored_ms = now;
            }
            due
        };
        if touch && let Err(error) = store.touch_session(&digest, now).await {
            tracing::warn!("cannot record an administrator's session's use: {error}");
        }
        Some(Session {
            token: token.to_owned(),
            csrf: row.csrf,
        })
    }

    /// True while the session lives as this process knows it, without counting this as use
    /// (checked before each event an admin's stream sends).
    pub fn is_live(&self, token: &str) -> bool {
        let now = unix_ms();
        self.lock()
            .get(&token_digest(token))
            .is_some_and(|entry| now - entry.used_ms < idle_ms())
    }

    /// Ends a session (everywhere, with a shared store).
    pub async fn remove(&self, token: &str) {
        let digest = token_digest(token);
        self.lock().remove(&digest);
        if let Some(store) = &self.shared
            && let Err(error) = store.end_session(&digest).await
        {
            tracing::warn!("cannot end an administrator's session in the peer database: {error}");
        }
    }

    /// Keeps `notice` for the session's next page (a newer notice replaces an unread one).
    /// Notices live here rather than in the URL so that only the server can put words on an
    /// administrator's page; with a shared store, in the database, since the next page may be
    /// served by another instance.
    pub async fn leave_notice(&self, token: &str, notice: String) {
        let digest = token_digest(token);
        if let Some(store) = &self.shared {
            if let Err(error) = store.set_session_notice(&digest, &notice).await {
                tracing::warn!("cannot keep a notice for an administrator's page: {error}");
            }
            return;
        }
        if let Some(entry) = self.lock().get_mut(&digest) {
            entry.notice = Some(notice);
        }
    }

    /// The notice left for the session, once.
    pub async fn take_notice(&self, token: &str) -> Option<String> {
        let digest = token_digest(token);
        if let Some(store) = &self.shared {
            return store
                .take_session_notice(&digest)
                .await
                .inspect_err(|error| {
                    tracing::warn!("cannot read the notice for an administrator's page: {error}")
                })
                .ok()
                .flatten();
        }
        self.lock().get_mut(&digest)?.notice.take()
    }

    /// Reads every live session from the shared store into this process's cache: sessions
    /// started elsewhere are known here, sessions ended elsewhere (or idle too long) are
    /// forgotten. Nothing to do for sessions in memory; on an error the cache stays as it was.
    pub async fn refresh(&self) -> Result<(), StoreError> {
        let Some(store) = &self.shared else {
            return Ok(());
        };
        let now = unix_ms();
        let rows = store.live_sessions(now - idle_ms()).await?;
        let mut cache = self.lock();
        let mut fresh = HashMap::with_capacity(rows.len());
        for row in rows {
            let entry = match cache.remove(&row.token_digest) {
                Some(mut entry) => {
                    entry.csrf = row.csrf;
                    entry.used_ms = entry.used_ms.max(row.used_ms);
                    entry.stored_ms = entry.stored_ms.max(row.used_ms);
                    entry
                }
                None => SessionEntry {
                    csrf: row.csrf,
                    used_ms: row.used_ms,
                    stored_ms: row.used_ms,
                    notice: None,
                },
            };
            fresh.insert(row.token_digest, entry);
        }
        *cache = fresh;
        Ok(())
    }

    /// Refreshes the cache from the shared store every [`SESSION_REFRESH`] until `stopped`.
    pub async fn keep_refreshed(self, mut stopped: tokio::sync::watch::Receiver<bool>) {
        if self.shared.is_none() {
            return;
        }
        let mut every = tokio::time::interval(SESSION_REFRESH);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = crate::services::until_stopped(&mut stopped) => return,
            }
            match self.refresh().await {
                Ok(()) => failing = false,
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!("cannot read administrators' sessions: {error}");
                }
                Err(_) => {}
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, SessionEntry>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
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
