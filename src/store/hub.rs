//! The hub's shared peer database (`presence.peer_db_path`): SQLite in WAL mode, written by a
//! batching task, polled by every instance that shares the file.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{FromRow, SqlitePool};

/// Migrations of the hub database, embedded in the binary.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/hub");

/// Tombstones of departed peers are kept this long for other instances to notice.
pub const TOMBSTONE_MS: i64 = 10 * 60 * 1000;

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
    },
}

/// The opened database.
#[derive(Clone)]
pub struct HubStore {
    pool: SqlitePool,
}

impl HubStore {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub async fn open(path: &Path) -> Result<Self, sqlx::Error> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL survives a killed process; only a power loss may drop the last commit.
            .synchronous(SqliteSynchronous::Normal)
            // Other instances hold the write lock briefly; wait instead of failing.
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(HubStore { pool })
    }

    /// Applies a batch of writes in one transaction, as `instance`.
    pub async fn write(&self, instance: &str, writes: &[PeerWrite]) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        for write in writes {
            match write {
                PeerWrite::Upsert(row) => {
                    sqlx::query(
                        "INSERT INTO peers (peer_id, presence, signed, verified, first_seen_ms, \
                         last_seen_ms, online, expires_ms, instance, version) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?8, \
                                 (SELECT COALESCE(MAX(version), 0) + 1 FROM peers)) \
                         ON CONFLICT (peer_id) DO UPDATE SET presence = excluded.presence, \
                         signed = excluded.signed, verified = excluded.verified, \
                         first_seen_ms = MIN(peers.first_seen_ms, excluded.first_seen_ms), \
                         last_seen_ms = excluded.last_seen_ms, online = 1, \
                         expires_ms = excluded.expires_ms, instance = excluded.instance, \
                         version = excluded.version \
                         WHERE excluded.last_seen_ms >= peers.last_seen_ms",
                    )
                    .bind(&row.peer_id)
                    .bind(&row.presence)
                    .bind(row.signed)
                    .bind(row.verified)
                    .bind(row.first_seen_ms)
                    .bind(row.last_seen_ms)
                    .bind(row.expires_ms)
                    .bind(instance)
                    .execute(&mut *tx)
                    .await?;
                }
                PeerWrite::Offline { peer_id, at_ms } => {
                    sqlx::query(
                        "UPDATE peers SET online = 0, last_seen_ms = ?2, instance = ?3, \
                         version = (SELECT COALESCE(MAX(version), 0) + 1 FROM peers) \
                         WHERE peer_id = ?1 AND online = 1 AND last_seen_ms <= ?2",
                    )
                    .bind(peer_id)
                    .bind(at_ms)
                    .bind(instance)
                    .execute(&mut *tx)
                    .await?;
                }
                PeerWrite::Ban { peer_id, until_ms } => {
                    sqlx::query(
                        "INSERT INTO bans (peer_id, until_ms) VALUES (?1, ?2) \
                         ON CONFLICT (peer_id) DO UPDATE SET until_ms = excluded.until_ms",
                    )
                    .bind(peer_id)
                    .bind(until_ms)
                    .execute(&mut *tx)
                    .await?;
                }
                PeerWrite::Unban { peer_id } => {
                    sqlx::query("DELETE FROM bans WHERE peer_id = ?1")
                        .bind(peer_id)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        tx.commit().await
    }

    /// Rows changed after `version` by other instances, oldest first.
    pub async fn changes_since(
        &self,
        version: i64,
        instance: &str,
        limit: i64,
    ) -> Result<Vec<StoredPeer>, sqlx::Error> {
        sqlx::query_as::<_, StoredPeer>(
            "SELECT * FROM peers WHERE version > ?1 AND instance != ?2 ORDER BY version LIMIT ?3",
        )
        .bind(version)
        .bind(instance)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    /// The highest version written so far.
    pub async fn latest_version(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM peers")
            .fetch_one(&self.pool)
            .await
    }

    /// Peers still online (not expired) at `now_ms`, for a restart.
    pub async fn live_peers(&self, now_ms: i64) -> Result<Vec<StoredPeer>, sqlx::Error> {
        sqlx::query_as::<_, StoredPeer>(
            "SELECT * FROM peers WHERE online = 1 AND expires_ms > ?1 ORDER BY version",
        )
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await
    }

    /// Bans still in force at `now_ms`.
    pub async fn bans(&self, now_ms: i64) -> Result<Vec<(String, i64)>, sqlx::Error> {
        sqlx::query_as("SELECT peer_id, until_ms FROM bans WHERE until_ms > ?1")
            .bind(now_ms)
            .fetch_all(&self.pool)
            .await
    }

    /// Removes old tombstones and expired bans.
    pub async fn prune(&self, now_ms: i64) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM peers WHERE online = 0 AND last_seen_ms < ?1")
            .bind(now_ms - TOMBSTONE_MS)
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM bans WHERE until_ms <= ?1")
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Checks that the database accepts writes.
    pub async fn check_writable(&self) -> Result<(), sqlx::Error> {
        sqlx::query("BEGIN IMMEDIATE; ROLLBACK;")
            .execute(&self.pool)
            .await
            .map(|_| ())
    }
}
