//! The hub's shared state: peers, bans, administrators' sessions and (with PostgreSQL) the
//! template store, in one of two backends — a SQLite file in WAL mode (`presence.peer_db_path`,
//! several instances on one host) or PostgreSQL (`presence.peer_db_url`, instances on several hosts). Each backend has
//! its SQL in its own module and its migrations under `migrations/hub-<backend>/`.
//!
//! Every write takes the next version from a counter in `hub_meta`, inside the transaction that
//! writes the rows: the counter's row lock (SQLite's write lock) is held until commit, so
//! versions become visible in order and an instance that has read every row up to a version
//! never sees a lower one appear later. Other instances read rows above the last version they
//! saw, woken by LISTEN/NOTIFY (PostgreSQL) or a timer (SQLite).
//!
//! The database URL's password never appears in an error or a log line: every error leaves
//! this module as a [`StoreError`] whose text has it replaced.

mod postgres;
mod sqlite;

use std::path::Path;
use std::time::Duration;

use sqlx::{FromRow, PgPool, SqlitePool};

use crate::config::redact_url_password;

/// Tombstones of departed peers (and ended bans) are kept this long for other instances to
/// notice, and for streams to resume across instances.
pub const TOMBSTONE_MS: i64 = 10 * 60 * 1000;

/// The NOTIFY channel that tells other instances to read new rows; the payload is the writer.
const CHANNEL: &str = "goop_hub_changes";

/// A database error, its text free of credentials.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{text}")]
pub struct StoreError {
    text: String,
    /// sqlx's `PoolTimedOut`: kept beside the text, which is all that is left of the error.
    pool_timeout: bool,
}

impl StoreError {
    fn new(text: impl Into<String>) -> Self {
        StoreError {
            text: text.into(),
            pool_timeout: false,
        }
    }

    /// Whether this says only that no pooled connection came in time, not why.
    pub fn is_pool_timeout(&self) -> bool {
        self.pool_timeout
    }
}

/// One peer row.
#[derive(Debug, Clone, FromRow, PartialEq, Eq)]
pub struct StoredPeer {
    pub peer_id: String,
    pub presence: String,
    pub signed: bool,
    pub verified: bool,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub online: bool,
    pub expires_ms: i64,
    pub instance: String,
    pub version: i64,
    /// A digest of what the peer announces ([`Presence::announcement_digest`]).
    ///
    /// [`Presence::announcement_digest`]: crate::services::hub::presence::Presence::announcement_digest
    pub announcement: String,
    /// The version at which the announcement last changed, the peer came online or went
    /// offline (filled in on write, like `version`).
    pub changed_version: i64,
}

/// One ban row; a ban whose `until_ms` has passed (or was lifted) no longer applies.
#[derive(Debug, Clone, FromRow, PartialEq, Eq)]
pub struct StoredBan {
    pub peer_id: String,
    pub until_ms: i64,
    pub instance: String,
    pub version: i64,
}

/// An administrator's session: the cookie's token only as its SHA-256 digest (hex).
#[derive(Debug, Clone, FromRow, PartialEq, Eq)]
pub struct StoredSession {
    pub token_digest: String,
    pub csrf: String,
    /// When it was last used, in Unix milliseconds.
    pub used_ms: i64,
}

/// A change to write.
#[derive(Debug, Clone)]
pub enum PeerWrite {
    /// The peer is online with this state (`version` and `instance` are filled in on write).
    Upsert(StoredPeer),
    /// The peer left.
    Offline {
        peer_id: String,
        at_ms: i64,
    },
    Ban {
        peer_id: String,
        until_ms: i64,
    },
    Unban {
        peer_id: String,
        at_ms: i64,
    },
}

/// A peer change as committed: the version it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub peer_id: String,
    pub version: i64,
    pub changed_version: i64,
    pub last_seen_ms: i64,
    pub online: bool,
}

/// What one committed batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    /// The peer changes that took effect, with their versions.
    pub written: Vec<Written>,
    /// The peer versions the batch took, first and last (whether or not each took effect):
    /// no other instance wrote a row with a version in between.
    pub peer_versions: Option<(i64, i64)>,
}

/// The counters of `hub_meta`.
#[derive(Debug, Clone, Copy, FromRow, PartialEq, Eq)]
pub struct Versions {
    pub peer_version: i64,
    pub ban_version: i64,
    pub pruned_version: i64,
}

/// A template as the store keeps it.
#[derive(Debug, Clone, FromRow)]
pub struct StoredTemplate {
    pub name: String,
    pub manifest: String,
    pub bundle: Vec<u8>,
    pub etag: String,
}

/// The opened database. Cloning is cheap (a pool handle).
#[derive(Clone)]
pub struct HubStore {
    backend: Backend,
    /// Names this database in event ids.
    cluster: String,
    redactor: Redactor,
}

#[derive(Clone)]
enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// What wakes an instance to read other instances' rows.
pub enum Wakeups {
    /// SQLite has no notifications: read every so often.
    Poll(tokio::time::Interval),
    /// PostgreSQL's LISTEN on [`CHANNEL`], ignoring this instance's own notifications.
    Listen {
        listener: sqlx::postgres::PgListener,
        instance: String,
        redactor: Redactor,
    },
}

/// Why a reader woke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Another instance wrote, or it is time to look.
    Changed,
    /// The connection was lost and made again: notifications may have been missed.
    Reconnected,
}

impl Wakeups {
    /// Waits for a reason to read.
    pub async fn next(&mut self) -> Result<Wake, StoreError> {
        match self {
            Wakeups::Poll(interval) => {
                interval.tick().await;
                Ok(Wake::Changed)
            }
            Wakeups::Listen {
                listener,
                instance,
                redactor,
            } => loop {
                match listener.try_recv().await {
                    Ok(Some(notification)) => {
                        if notification.payload() != instance.as_str() {
                            // One read covers every notification already waiting.
                            while listener.next_buffered().is_some() {}
                            return Ok(Wake::Changed);
                        }
                    }
                    Ok(None) => return Ok(Wake::Reconnected),
                    Err(err) => return Err(redactor.error(err)),
                }
            },
        }
    }
}

/// Replaces a database URL's password in error texts.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    fn for_url(url: &str) -> Self {
        let mut secrets = Vec::new();
        if let Ok(parsed) = url::Url::parse(url)
            && let Some(password) = parsed.password()
        {
            secrets.push(password.to_owned());
            if let Ok(decoded) = percent_encoding::percent_decode_str(password).decode_utf8() {
                secrets.push(decoded.into_owned());
            }
        }
        secrets.retain(|s| !s.is_empty());
        Redactor { secrets }
    }

    fn error<E: std::fmt::Display + 'static>(&self, error: E) -> StoreError {
        let pool_timeout = matches!(
            (&error as &dyn std::any::Any).downcast_ref::<sqlx::Error>(),
            Some(sqlx::Error::PoolTimedOut)
        );
        let mut text = error.to_string();
        for secret in &self.secrets {
            text = text.replace(secret.as_str(), "<redacted>");
        }
        StoreError { text, pool_timeout }
    }
}

impl HubStore {
    /// Opens (creating if needed) and migrates the SQLite file at `path`.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let redactor = Redactor::default();
        let pool = sqlite::open(path).await.map_err(|e| redactor.error(e))?;
        let cluster = sqlite::cluster(&pool)
            .await
            .map_err(|e| redactor.error(e))?;
        Ok(HubStore {
            backend: Backend::Sqlite(pool),
            cluster,
            redactor,
        })
    }

    /// Connects to and migrates the PostgreSQL database at `url`. Errors never contain the
    /// URL's password.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let redactor = Redactor::for_url(url);
        let pool = postgres::connect(url)
            .await
            .map_err(|e| redactor.error(format!("{} ({e})", redact_url_password(url))))?;
        let cluster = postgres::cluster(&pool)
            .await
            .map_err(|e| redactor.error(e))?;
        Ok(HubStore {
            backend: Backend::Postgres(pool),
            cluster,
            redactor,
        })
    }

    /// `error` with its cause when it says only that the pool waited in vain: a connection of
    /// its own to PostgreSQL says why, if it fails too (a SQLite file has no server to reach).
    pub async fn explain(&self, error: StoreError) -> StoreError {
        match &self.backend {
            Backend::Postgres(pool) if error.is_pool_timeout() => {
                match postgres::why_not(&pool.connect_options()).await {
                    Some(reason) => self.redactor.error(reason),
                    None => error,
                }
            }
            _ => error,
        }
    }

    /// "SQLite" or "PostgreSQL", for messages.
    pub fn kind(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "SQLite",
            Backend::Postgres(_) => "PostgreSQL",
        }
    }

    /// Whether templates live in this database (PostgreSQL: instances on other hosts share no
    /// directory) rather than in `presence.templates_dir`.
    pub fn holds_templates(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// The random name this database took when it was created.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// Applies a batch of writes in one transaction, as `instance`, and tells other instances.
    pub async fn write(
        &self,
        instance: &str,
        writes: &[PeerWrite],
    ) -> Result<Committed, StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => sqlite::write(pool, instance, writes).await,
            Backend::Postgres(pool) => postgres::write(pool, instance, writes).await,
        }
        .map_err(|e| self.redactor.error(e))
    }

    /// Rows changed after `version` by other instances, oldest first.
    pub async fn changes_since(
        &self,
        version: i64,
        instance: &str,
        limit: i64,
    ) -> Result<Vec<StoredPeer>, StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => sqlite::changes_since(pool, version, instance, limit).await,
            Backend::Postgres(pool) => {
                postgres::changes_since(pool, version, instance, limit).await
            }
        }
        .map_err(|e| self.redactor.error(e))
    }

    /// Ban rows changed after `version` by other instances, oldest first.
    pub async fn ban_changes_since(
        &self,
        version: i64,
        instance: &str,
    ) -> Result<Vec<StoredBan>, StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => sqlite::ban_changes_since(pool, version, instance).await,
            Backend::Postgres(pool) => postgres::ban_changes_since(pool, version, instance).await,
        }
        .map_err(|e| self.redactor.error(e))
    }

    /// The version counters.
    pub async fn versions(&self) -> Result<Versions, StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => sqlite::versions(pool).await,
            Backend::Postgres(pool) => postgres::versions(pool).await,
        }
        .map_err(|e| self.redactor.error(e))
    }

    /// Every peer row (online or a tombstone), oldest version first: what a starting instance
    /// restores.
    pub async fn all_peers(&self) -> Result<Vec<StoredPeer>, StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => sqlite::all_peers(pool).await,
            Backend::Postgres(pool) => postgres::all_peers(pool).await,
        }
        .map_err(|e| self.redactor.error(e))
    }

    /// Peers still online (not expired) at `now_ms`.
    pub async fn live_peers(&self, now_ms: i64) -> Result<Vec<StoredPeer>, StoreError> {
        Ok(self
            .all_peers()
            .await?
            .into_iter()
            .filter(|p| p.online && p.expires_ms > now_ms)
            .collect())
    }

    /// Bans still in force at `now_ms`.
    pub async fn bans(&self, now_ms: i64) -> Result<Vec<(String, i64)>, StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => sqlite::bans(pool, now_ms).await,
            Backend::Postgres(pool) => postgres::bans(pool, now_ms).await,
        }
        .map_err(|e| self.redactor.error(e))
    }

    /// Removes tombstones and ended bans older than [`TOMBSTONE_MS`], and peers whose instance
    /// died without saying they left, once they have been expired that long.
    pub async fn prune(&self, now_ms: i64) -> Result<(), StoreError> {
        let before = now_ms - TOMBSTONE_MS;
        match &self.backend {
            Backend::Sqlite(pool) => sqlite::prune(pool, before).await,
            Backend::Postgres(pool) => postgres::prune(pool, before).await,
        }
        .map_err(|e| self.redactor.error(e))
    }

    /// Checks that the database accepts writes.
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => sqlite::check_writable(pool).await,
            Backend::Postgres(pool) => postgres::check_writable(pool).await,
        }
        .map_err(|e| self.redactor.error(e))
    }

    /// What wakes this `instance` to read other instances' rows.
    pub async fn wakeups(
        &self,
        instance: &str,
        poll_every: Duration,
    ) -> Result<Wakeups, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => {
                let mut interval = tokio::time::interval(poll_every);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                Ok(Wakeups::Poll(interval))
            }
            Backend::Postgres(pool) => {
                let listener = postgres::listen(pool)
                    .await
                    .map_err(|e| self.redactor.error(e))?;
                Ok(Wakeups::Listen {
                    listener,
                    instance: instance.to_owned(),
                    redactor: self.redactor.clone(),
                })
            }
        }
    }

    /// Keeps a new administrator's session; first forgets sessions unused since
    /// `idle_before_ms` and, beyond the `keep` most recently used, the least recently used.
    pub async fn create_session(
        &self,
        session: &StoredSession,
        idle_before_ms: i64,
        keep: i64,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => {
                sqlite::create_session(pool, session, idle_before_ms, keep).await
            }
            Backend::Postgres(pool) => {
                postgres::create_session(pool, session, idle_before_ms, keep).await
            }
        }
        .map_err(|e| self.redactor.error(e))
    }

    /// The session of a token digest, if it was used since `idle_before_ms`.
    pub async fn session(
        &self,
        token_digest: &str,
        idle_before_ms: i64,
    ) -> Result<Option<StoredSession>, StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => sqlite::session(pool, token_digest, idle_before_ms).await,
            Backend::Postgres(pool) => postgres::session(pool, token_digest, idle_before_ms).await,
        }
        .map_err(|e| self.redactor.error(e))
    }

    /// Every session used since `idle_before_ms` (at most 1,000, most recently used first).
    pub async fn live_sessions(
        &self,
        idle_before_ms: i64,
    ) -> Result<Vec<StoredSession>, StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => sqlite::live_sessions(pool, idle_before_ms).await,
            Backend::Postgres(pool) => postgres::live_sessions(pool, idle_before_ms).await,
        }
        .map_err(|e| self.redactor.error(e))
    }

    /// Records that a session was used at `used_ms` (an earlier time leaves it as it is).
    pub async fn touch_session(&self, token_digest: &str, used_ms: i64) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => sqlite::touch_session(pool, token_digest, used_ms).await,
            Backend::Postgres(pool) => postgres::touch_session(pool, token_digest, used_ms).await,
        }
        .map_err(|e| self.redactor.error(e))
    }

    /// Ends a session.
    pub async fn end_session(&self, token_digest: &str) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => sqlite::end_session(pool, token_digest).await,
            Backend::Postgres(pool) => postgres::end_session(pool, token_digest).await,
        }
        .map_err(|e| self.redactor.error(e))
    }

    /// Leaves `notice` for the session's next page, replacing one not yet shown.
    pub async fn set_session_notice(
        &self,
        token_digest: &str,
        notice: &str,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => sqlite::set_session_notice(pool, token_digest, notice).await,
            Backend::Postgres(pool) => {
                postgres::set_session_notice(pool, token_digest, notice).await
            }
        }
        .map_err(|e| self.redactor.error(e))
    }

    /// The notice left for the session, once.
    pub async fn take_session_notice(
        &self,
        token_digest: &str,
    ) -> Result<Option<String>, StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => sqlite::take_session_notice(pool, token_digest).await,
            Backend::Postgres(pool) => postgres::take_session_notice(pool, token_digest).await,
        }
        .map_err(|e| self.redactor.error(e))
    }

    /// Every template's name and manifest, by name (PostgreSQL only; none in SQLite).
    pub async fn template_manifests(&self) -> Result<Vec<(String, String)>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(Vec::new()),
            Backend::Postgres(pool) => postgres::template_manifests(pool).await,
        }
        .map_err(|e| self.redactor.error(e))
    }

    /// One template's manifest.
    pub async fn template_manifest(&self, name: &str) -> Result<Option<String>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(None),
            Backend::Postgres(pool) => postgres::template_manifest(pool, name).await,
        }
        .map_err(|e| self.redactor.error(e))
    }

    /// One template with its bundle.
    pub async fn template(&self, name: &str) -> Result<Option<StoredTemplate>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(None),
            Backend::Postgres(pool) => postgres::template(pool, name).await,
        }
        .map_err(|e| self.redactor.error(e))
    }

    /// Stores `template`, replacing one of the same name; returns once committed.
    pub async fn put_template(
        &self,
        template: &StoredTemplate,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Err(StoreError::new(
                "templates are kept in presence.templates_dir with a SQLite peer database",
            )),
            Backend::Postgres(pool) => postgres::put_template(pool, template, now_ms)
                .await
                .map_err(|e| self.redactor.error(e)),
        }
    }

    /// Removes a template; returns whether there was one.
    pub async fn delete_template(&self, name: &str) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(false),
            Backend::Postgres(pool) => postgres::delete_template(pool, name).await,
        }
        .map_err(|e| self.redactor.error(e))
    }
}

/// How many peer and ban versions a batch takes.
fn counts(writes: &[PeerWrite]) -> (i64, i64) {
    let peers = writes
        .iter()
        .filter(|w| matches!(w, PeerWrite::Upsert(_) | PeerWrite::Offline { .. }))
        .count() as i64;
    (peers, writes.len() as i64 - peers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_never_carry_the_password() {
        let redactor = Redactor::for_url("postgres://goop:s%40cret@db.example/goop");
        let error = redactor.error("password authentication failed: s@cret, s%40cret");
        assert_eq!(
            error.to_string(),
            "password authentication failed: <redacted>, <redacted>"
        );
    }

    #[test]
    fn a_pool_timeout_is_known_by_its_kind_not_its_words() {
        let redactor = Redactor::default();
        let timed_out = redactor.error(sqlx::Error::PoolTimedOut);
        assert!(timed_out.is_pool_timeout());
        assert!(timed_out.to_string().contains("pool timed out"));
        let worded_alike = redactor.error(sqlx::Error::PoolTimedOut.to_string());
        assert!(!worded_alike.is_pool_timeout());
        assert!(!redactor.error(sqlx::Error::PoolClosed).is_pool_timeout());
    }
}
