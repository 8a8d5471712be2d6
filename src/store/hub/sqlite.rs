//! The SQLite backend: one file in WAL mode that instances on one host share.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::{
    Committed, PeerWrite, StoredBan, StoredPeer, StoredSession, Versions, Written, counts,
};

/// Migrations of the SQLite hub database, embedded in the binary.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/hub-sqlite");

pub(super) async fn open(path: &Path) -> Result<SqlitePool, sqlx::Error> {
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
    Ok(pool)
}

pub(super) async fn cluster(pool: &SqlitePool) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("SELECT cluster FROM hub_meta WHERE id = 1")
        .fetch_one(pool)
        .await
}

pub(super) async fn write(
    pool: &SqlitePool,
    instance: &str,
    writes: &[PeerWrite],
) -> Result<Committed, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let (peer_count, ban_count) = counts(writes);
    // Writing first takes the write lock, so the versions are ours until commit.
    let (peer_top, ban_top): (i64, i64) = sqlx::query_as(
        "UPDATE hub_meta SET peer_version = peer_version + ?1, ban_version = ban_version + ?2 \
         WHERE id = 1 RETURNING peer_version, ban_version",
    )
    .bind(peer_count)
    .bind(ban_count)
    .fetch_one(&mut *tx)
    .await?;
    let mut peer_version = peer_top - peer_count;
    let mut ban_version = ban_top - ban_count;
    let mut written = Vec::new();
    for write in writes {
        match write {
            PeerWrite::Upsert(row) => {
                peer_version += 1;
                let changed: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO peers (peer_id, presence, signed, verified, first_seen_ms, \
                     last_seen_ms, online, expires_ms, instance, version, announcement, \
                     changed_version) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?8, ?9, ?10, ?9) \
                     ON CONFLICT (peer_id) DO UPDATE SET presence = excluded.presence, \
                     signed = excluded.signed, verified = excluded.verified, \
                     first_seen_ms = MIN(peers.first_seen_ms, excluded.first_seen_ms), \
                     last_seen_ms = excluded.last_seen_ms, online = 1, \
                     expires_ms = excluded.expires_ms, instance = excluded.instance, \
                     version = excluded.version, announcement = excluded.announcement, \
                     changed_version = CASE WHEN peers.online = 0 \
                     OR peers.announcement <> excluded.announcement \
                     THEN excluded.version ELSE peers.changed_version END \
                     WHERE excluded.last_seen_ms >= peers.last_seen_ms \
                     RETURNING changed_version",
                )
                .bind(&row.peer_id)
                .bind(&row.presence)
                .bind(row.signed)
                .bind(row.verified)
                .bind(row.first_seen_ms)
                .bind(row.last_seen_ms)
                .bind(row.expires_ms)
                .bind(instance)
                .bind(peer_version)
                .bind(&row.announcement)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(changed_version) = changed {
                    written.push(Written {
                        peer_id: row.peer_id.clone(),
                        version: peer_version,
                        changed_version,
                        last_seen_ms: row.last_seen_ms,
                        online: true,
                    });
                }
            }
            PeerWrite::Offline { peer_id, at_ms } => {
                peer_version += 1;
                let applied = sqlx::query(
                    "UPDATE peers SET online = 0, last_seen_ms = ?2, instance = ?3, version = ?4, \
                     changed_version = ?4 WHERE peer_id = ?1 AND online = 1 AND last_seen_ms <= ?2",
                )
                .bind(peer_id)
                .bind(at_ms)
                .bind(instance)
                .bind(peer_version)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if applied > 0 {
                    written.push(Written {
                        peer_id: peer_id.clone(),
                        version: peer_version,
                        changed_version: peer_version,
                        last_seen_ms: *at_ms,
                        online: false,
                    });
                }
            }
            PeerWrite::Ban { peer_id, until_ms }
            | PeerWrite::Unban {
                peer_id,
                at_ms: until_ms,
            } => {
                ban_version += 1;
                sqlx::query(
                    "INSERT INTO bans (peer_id, until_ms, instance, version) \
                     VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (peer_id) DO UPDATE SET until_ms = excluded.until_ms, \
                     instance = excluded.instance, version = excluded.version",
                )
                .bind(peer_id)
                .bind(until_ms)
                .bind(instance)
                .bind(ban_version)
                .execute(&mut *tx)
                .await?;
            }
        }
    }
    tx.commit().await?;
    Ok(Committed {
        written,
        peer_versions: (peer_count > 0).then_some((peer_top - peer_count + 1, peer_top)),
    })
}

pub(super) async fn changes_since(
    pool: &SqlitePool,
    version: i64,
    instance: &str,
    limit: i64,
) -> Result<Vec<StoredPeer>, sqlx::Error> {
    sqlx::query_as::<_, StoredPeer>(
        "SELECT peer_id, presence, signed, verified, first_seen_ms, last_seen_ms, online, \
         expires_ms, instance, version, announcement, changed_version FROM peers \
         WHERE version > ?1 AND instance != ?2 ORDER BY version LIMIT ?3",
    )
    .bind(version)
    .bind(instance)
    .bind(limit)
    .fetch_all(pool)
    .await
}

pub(super) async fn ban_changes_since(
    pool: &SqlitePool,
    version: i64,
    instance: &str,
) -> Result<Vec<StoredBan>, sqlx::Error> {
    sqlx::query_as::<_, StoredBan>(
        "SELECT peer_id, until_ms, instance, version FROM bans \
         WHERE version > ?1 AND instance != ?2 ORDER BY version LIMIT 1000",
    )
    .bind(version)
    .bind(instance)
    .fetch_all(pool)
    .await
}

pub(super) async fn versions(pool: &SqlitePool) -> Result<Versions, sqlx::Error> {
    sqlx::query_as("SELECT peer_version, ban_version, pruned_version FROM hub_meta WHERE id = 1")
        .fetch_one(pool)
        .await
}

pub(super) async fn all_peers(pool: &SqlitePool) -> Result<Vec<StoredPeer>, sqlx::Error> {
    sqlx::query_as::<_, StoredPeer>(
        "SELECT peer_id, presence, signed, verified, first_seen_ms, last_seen_ms, online, \
         expires_ms, instance, version, announcement, changed_version FROM peers ORDER BY version",
    )
    .fetch_all(pool)
    .await
}

pub(super) async fn bans(
    pool: &SqlitePool,
    now_ms: i64,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT peer_id, until_ms FROM bans WHERE until_ms > ?1")
        .bind(now_ms)
        .fetch_all(pool)
        .await
}

pub(super) async fn prune(pool: &SqlitePool, before_ms: i64) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    // Streams that last heard of a pruned row can no longer resume from it.
    sqlx::query(
        "UPDATE hub_meta SET pruned_version = MAX(pruned_version, \
         (SELECT COALESCE(MAX(version), 0) FROM peers \
          WHERE (online = 0 AND last_seen_ms < ?1) OR expires_ms < ?1)) WHERE id = 1",
    )
    .bind(before_ms)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM peers WHERE (online = 0 AND last_seen_ms < ?1) OR expires_ms < ?1")
        .bind(before_ms)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM bans WHERE until_ms < ?1")
        .bind(before_ms)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

pub(super) async fn check_writable(pool: &SqlitePool) -> Result<(), sqlx::Error> {
    sqlx::query("BEGIN IMMEDIATE; ROLLBACK;")
        .execute(pool)
        .await
        .map(|_| ())
}

pub(super) async fn create_session(
    pool: &SqlitePool,
    session: &StoredSession,
    idle_before_ms: i64,
    keep: i64,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM admin_sessions WHERE used_ms < ?1")
        .bind(idle_before_ms)
        .execute(&mut *tx)
        .await?;
    // Room for the new one among the `keep` most recently used.
    sqlx::query(
        "DELETE FROM admin_sessions WHERE token_digest IN (SELECT token_digest \
         FROM admin_sessions ORDER BY used_ms DESC LIMIT -1 OFFSET ?1)",
    )
    .bind(keep - 1)
    .execute(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO admin_sessions (token_digest, csrf, used_ms) VALUES (?1, ?2, ?3)")
        .bind(&session.token_digest)
        .bind(&session.csrf)
        .bind(session.used_ms)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

pub(super) async fn session(
    pool: &SqlitePool,
    token_digest: &str,
    idle_before_ms: i64,
) -> Result<Option<StoredSession>, sqlx::Error> {
    sqlx::query_as(
        "SELECT token_digest, csrf, used_ms FROM admin_sessions \
         WHERE token_digest = ?1 AND used_ms >= ?2",
    )
    .bind(token_digest)
    .bind(idle_before_ms)
    .fetch_optional(pool)
    .await
}

pub(super) async fn live_sessions(
    pool: &SqlitePool,
    idle_before_ms: i64,
) -> Result<Vec<StoredSession>, sqlx::Error> {
    sqlx::query_as(
        "SELECT token_digest, csrf, used_ms FROM admin_sessions WHERE used_ms >= ?1 \
         ORDER BY used_ms DESC LIMIT 1000",
    )
    .bind(idle_before_ms)
    .fetch_all(pool)
    .await
}

pub(super) async fn touch_session(
    pool: &SqlitePool,
    token_digest: &str,
    used_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE admin_sessions SET used_ms = MAX(used_ms, ?2) WHERE token_digest = ?1")
        .bind(token_digest)
        .bind(used_ms)
        .execute(pool)
        .await
        .map(|_| ())
}

pub(super) async fn end_session(pool: &SqlitePool, token_digest: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM admin_sessions WHERE token_digest = ?1")
        .bind(token_digest)
        .execute(pool)
        .await
        .map(|_| ())
}

pub(super) async fn set_session_notice(
    pool: &SqlitePool,
    token_digest: &str,
    notice: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE admin_sessions SET notice = ?2 WHERE token_digest = ?1")
        .bind(token_digest)
        .bind(notice)
        .execute(pool)
        .await
        .map(|_| ())
}

pub(super) async fn take_session_notice(
    pool: &SqlitePool,
    token_digest: &str,
) -> Result<Option<String>, sqlx::Error> {
    // Two statements, not a transaction that reads before it writes (which a writer on another
    // instance could make fail): two instances taking one notice at once both show it.
    let notice: Option<Option<String>> =
        sqlx::query_scalar("SELECT notice FROM admin_sessions WHERE token_digest = ?1")
            .bind(token_digest)
            .fetch_optional(pool)
            .await?;
    let notice = notice.flatten();
    if let Some(text) = &notice {
        // Only the notice read: a newer one left meanwhile stays for the next page.
        sqlx::query(
            "UPDATE admin_sessions SET notice = NULL WHERE token_digest = ?1 AND notice = ?2",
        )
        .bind(token_digest)
        .bind(text)
        .execute(pool)
        .await?;
    }
    Ok(notice)
}
