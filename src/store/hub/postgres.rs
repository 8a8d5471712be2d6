//! The PostgreSQL backend: instances on several hosts share peers, bans and templates, and
//! tell each other about new rows with NOTIFY.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{Connection, PgPool};

use super::{
    CHANNEL, Committed, PeerWrite, StoredBan, StoredPeer, StoredSession, StoredTemplate, Versions,
    Written, counts,
};

/// Migrations of the PostgreSQL hub database, embedded in the binary.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/hub-postgres");

pub(super) async fn connect(url: &str) -> Result<PgPool, sqlx::Error> {
    let options = PgConnectOptions::from_str(url)?.application_name("goop2-rendezvous");
    let pool = PgPoolOptions::new()
        // The writer, the reader, the listener's own connection, template requests.
        .max_connections(6)
        // While the server is away, a query fails after this long rather than hanging: the
        // writer retries, /healthz reports it.
        .acquire_timeout(Duration::from_secs(3))
        .connect_with(options.clone())
        .await;
    let pool = match pool {
        Ok(pool) => pool,
        Err(sqlx::Error::PoolTimedOut) => {
            return Err(why_not(&options).await.unwrap_or(sqlx::Error::PoolTimedOut));
        }
        Err(other) => return Err(other),
    };
    // Instances starting together: sqlx takes an advisory lock around the migrations.
    MIGRATOR.run(&pool).await?;
    Ok(pool)
}

/// Why a connection of its own to the server cannot be made, if it cannot within 3 s: the pool
/// says only that it waited in vain, this says why (the server refuses connections, the
/// password is wrong, the database does not exist).
pub(super) async fn why_not(options: &PgConnectOptions) -> Option<sqlx::Error> {
    let tried = tokio::time::timeout(
        Duration::from_secs(3),
        sqlx::PgConnection::connect_with(options),
    )
    .await;
    match tried {
        Ok(Err(reason)) => Some(reason),
        Ok(Ok(connection)) => {
            let _ = connection.close().await;
            None
        }
        Err(_) => None,
    }
}

pub(super) async fn cluster(pool: &PgPool) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("SELECT cluster FROM hub_meta WHERE id = 1")
        .fetch_one(pool)
        .await
}

pub(super) async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

pub(super) async fn write(
    pool: &PgPool,
    instance: &str,
    writes: &[PeerWrite],
) -> Result<Committed, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let (peer_count, ban_count) = counts(writes);
    // The row lock taken here is held until commit: writers commit their versions in order.
    let (peer_top, ban_top): (i64, i64) = sqlx::query_as(
        "UPDATE hub_meta SET peer_version = peer_version + $1, ban_version = ban_version + $2 \
         WHERE id = 1 RETURNING peer_version, ban_version",
    )
    .bind(peer_count)
    .bind(ban_count)
    .fetch_one(&mut *tx)
    .await?;
    let mut peer_version = peer_top - peer_count;
    let mut ban_version = ban_top - ban_count;
    // One statement per kind of change, the rows as arrays: a batch costs three round trips
    // whatever its size (a batch holds one change per peer, so no row is touched twice).
    let mut upserts = Upserts::default();
    let mut offline = Offlines::default();
    let mut bans = Bans::default();
    for write in writes {
        match write {
            PeerWrite::Upsert(row) => {
                peer_version += 1;
                upserts.push(row, peer_version);
            }
            PeerWrite::Offline { peer_id, at_ms } => {
                peer_version += 1;
                offline.peer_id.push(peer_id.clone());
                offline.at_ms.push(*at_ms);
                offline.version.push(peer_version);
            }
            PeerWrite::Ban { peer_id, until_ms }
            | PeerWrite::Unban {
                peer_id,
                at_ms: until_ms,
            } => {
                ban_version += 1;
                bans.peer_id.push(peer_id.clone());
                bans.until_ms.push(*until_ms);
                bans.version.push(ban_version);
            }
        }
    }
    let mut written = Vec::new();
    if !upserts.peer_id.is_empty() {
        let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
            "INSERT INTO peers (peer_id, presence, signed, verified, first_seen_ms, last_seen_ms, \
             online, expires_ms, instance, version, announcement, changed_version) \
             SELECT peer_id, presence, signed, verified, first_seen_ms, last_seen_ms, true, \
             expires_ms, $9, version, announcement, version FROM UNNEST($1::text[], \
             $2::text[], $3::bool[], $4::bool[], $5::bigint[], $6::bigint[], $7::bigint[], \
             $8::bigint[], $10::text[]) \
             AS t(peer_id, presence, signed, verified, first_seen_ms, last_seen_ms, expires_ms, \
             version, announcement) \
             ON CONFLICT (peer_id) DO UPDATE SET presence = excluded.presence, \
             signed = excluded.signed, verified = excluded.verified, \
             first_seen_ms = LEAST(peers.first_seen_ms, excluded.first_seen_ms), \
             last_seen_ms = excluded.last_seen_ms, online = true, \
             expires_ms = excluded.expires_ms, instance = excluded.instance, \
             version = excluded.version, announcement = excluded.announcement, \
             changed_version = CASE WHEN NOT peers.online \
             OR peers.announcement <> excluded.announcement \
             THEN excluded.version ELSE peers.changed_version END \
             WHERE excluded.last_seen_ms >= peers.last_seen_ms \
             RETURNING peer_id, version, last_seen_ms, changed_version",
        )
        .bind(&upserts.peer_id)
        .bind(&upserts.presence)
        .bind(&upserts.signed)
        .bind(&upserts.verified)
        .bind(&upserts.first_seen_ms)
        .bind(&upserts.last_seen_ms)
        .bind(&upserts.expires_ms)
        .bind(&upserts.version)
        .bind(instance)
        .bind(&upserts.announcement)
        .fetch_all(&mut *tx)
        .await?;
        written.extend(committed(rows, true));
    }
    if !offline.peer_id.is_empty() {
        let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
            "UPDATE peers SET online = false, last_seen_ms = t.at_ms, instance = $4, \
             version = t.version, changed_version = t.version \
             FROM UNNEST($1::text[], $2::bigint[], $3::bigint[]) AS t(peer_id, at_ms, version) \
             WHERE peers.peer_id = t.peer_id AND peers.online AND peers.last_seen_ms <= t.at_ms \
             RETURNING peers.peer_id, peers.version, peers.last_seen_ms, peers.changed_version",
        )
        .bind(&offline.peer_id)
        .bind(&offline.at_ms)
        .bind(&offline.version)
        .bind(instance)
        .fetch_all(&mut *tx)
        .await?;
        written.extend(committed(rows, false));
    }
    if !bans.peer_id.is_empty() {
        // Bans pass through unmerged: the last one per peer wins.
        sqlx::query(
            "INSERT INTO bans (peer_id, until_ms, instance, version) \
             SELECT DISTINCT ON (peer_id) peer_id, until_ms, $4, version \
             FROM UNNEST($1::text[], $2::bigint[], $3::bigint[]) AS t(peer_id, until_ms, version) \
             ORDER BY peer_id, version DESC \
             ON CONFLICT (peer_id) DO UPDATE SET until_ms = excluded.until_ms, \
             instance = excluded.instance, version = excluded.version",
        )
        .bind(&bans.peer_id)
        .bind(&bans.until_ms)
        .bind(&bans.version)
        .bind(instance)
        .execute(&mut *tx)
        .await?;
    }
    // Delivered at commit, to every instance listening (this one ignores its own).
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(instance)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Committed {
        written,
        peer_versions: (peer_count > 0).then_some((peer_top - peer_count + 1, peer_top)),
    })
}

/// Upserts of one batch, column by column.
#[derive(Default)]
struct Upserts {
    peer_id: Vec<String>,
    presence: Vec<String>,
    signed: Vec<bool>,
    verified: Vec<bool>,
    first_seen_ms: Vec<i64>,
    last_seen_ms: Vec<i64>,
    expires_ms: Vec<i64>,
    version: Vec<i64>,
    announcement: Vec<String>,
}

impl Upserts {
    fn push(&mut self, row: &StoredPeer, version: i64) {
        self.peer_id.push(row.peer_id.clone());
        self.presence.push(row.presence.clone());
        self.signed.push(row.signed);
        self.verified.push(row.verified);
        self.first_seen_ms.push(row.first_seen_ms);
        self.last_seen_ms.push(row.last_seen_ms);
        self.expires_ms.push(row.expires_ms);
        self.version.push(version);
        self.announcement.push(row.announcement.clone());
    }
}

#[derive(Default)]
struct Offlines {
    peer_id: Vec<String>,
    at_ms: Vec<i64>,
    version: Vec<i64>,
}

#[derive(Default)]
struct Bans {
    peer_id: Vec<String>,
    until_ms: Vec<i64>,
    version: Vec<i64>,
}

pub(super) async fn changes_since(
    pool: &PgPool,
    version: i64,
    instance: &str,
    limit: i64,
) -> Result<Vec<StoredPeer>, sqlx::Error> {
    sqlx::query_as::<_, StoredPeer>(
        "SELECT peer_id, presence, signed, verified, first_seen_ms, last_seen_ms, online, \
         expires_ms, instance, version, announcement, changed_version FROM peers \
         WHERE version > $1 AND instance <> $2 ORDER BY version LIMIT $3",
    )
    .bind(version)
    .bind(instance)
    .bind(limit)
    .fetch_all(pool)
    .await
}

pub(super) async fn ban_changes_since(
    pool: &PgPool,
    version: i64,
    instance: &str,
) -> Result<Vec<StoredBan>, sqlx::Error> {
    sqlx::query_as::<_, StoredBan>(
        "SELECT peer_id, until_ms, instance, version FROM bans \
         WHERE version > $1 AND instance <> $2 ORDER BY version LIMIT 1000",
    )
    .bind(version)
    .bind(instance)
    .fetch_all(pool)
    .await
}

pub(super) async fn versions(pool: &PgPool) -> Result<Versions, sqlx::Error> {
    sqlx::query_as("SELECT peer_version, ban_version, pruned_version FROM hub_meta WHERE id = 1")
        .fetch_one(pool)
        .await
}

pub(super) async fn all_peers(pool: &PgPool) -> Result<Vec<StoredPeer>, sqlx::Error> {
    sqlx::query_as::<_, StoredPeer>(
        "SELECT peer_id, presence, signed, verified, first_seen_ms, last_seen_ms, online, \
         expires_ms, instance, version, announcement, changed_version FROM peers ORDER BY version",
    )
    .fetch_all(pool)
    .await
}

pub(super) async fn bans(pool: &PgPool, now_ms: i64) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT peer_id, until_ms FROM bans WHERE until_ms > $1")
        .bind(now_ms)
        .fetch_all(pool)
        .await
}

pub(super) async fn prune(pool: &PgPool, before_ms: i64) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    // Streams that last heard of a pruned row can no longer resume from it.
    sqlx::query(
        "UPDATE hub_meta SET pruned_version = GREATEST(pruned_version, \
         (SELECT COALESCE(MAX(version), 0) FROM peers \
          WHERE (NOT online AND last_seen_ms < $1) OR expires_ms < $1)) WHERE id = 1",
    )
    .bind(before_ms)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM peers WHERE (NOT online AND last_seen_ms < $1) OR expires_ms < $1")
        .bind(before_ms)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM bans WHERE until_ms < $1")
        .bind(before_ms)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

pub(super) async fn check_writable(pool: &PgPool) -> Result<(), sqlx::Error> {
    // A read-only standby or a full disk refuses this; a lost server fails to connect.
    let mut tx = pool.begin().await?;
    sqlx::query("UPDATE hub_meta SET cluster = cluster WHERE id = 1 AND false")
        .execute(&mut *tx)
        .await?;
    tx.rollback().await
}

pub(super) async fn template_manifests(
    pool: &PgPool,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT name, manifest FROM templates ORDER BY name")
        .fetch_all(pool)
        .await
}

pub(super) async fn template_manifest(
    pool: &PgPool,
    name: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT manifest FROM templates WHERE name = $1")
        .bind(name)
        .fetch_optional(pool)
        .await
}

pub(super) async fn template(
    pool: &PgPool,
    name: &str,
) -> Result<Option<StoredTemplate>, sqlx::Error> {
    sqlx::query_as("SELECT name, manifest, bundle, etag FROM templates WHERE name = $1")
        .bind(name)
        .fetch_optional(pool)
        .await
}

pub(super) async fn put_template(
    pool: &PgPool,
    template: &StoredTemplate,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO templates (name, manifest, bundle, etag, updated_ms) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (name) DO UPDATE SET manifest = excluded.manifest, \
         bundle = excluded.bundle, etag = excluded.etag, updated_ms = excluded.updated_ms",
    )
    .bind(&template.name)
    .bind(&template.manifest)
    .bind(&template.bundle)
    .bind(&template.etag)
    .bind(now_ms)
    .execute(pool)
    .await
    .map(|_| ())
}

pub(super) async fn delete_template(pool: &PgPool, name: &str) -> Result<bool, sqlx::Error> {
    sqlx::query("DELETE FROM templates WHERE name = $1")
        .bind(name)
        .execute(pool)
        .await
        .map(|r| r.rows_affected() > 0)
}

/// The rows a statement's `RETURNING peer_id, version, last_seen_ms` gave back, as writes.
fn committed(rows: Vec<(String, i64, i64, i64)>, online: bool) -> impl Iterator<Item = Written> {
    rows.into_iter().map(
        move |(peer_id, version, last_seen_ms, changed_version)| Written {
            peer_id,
            version,
            changed_version,
            last_seen_ms,
            online,
        },
    )
}

pub(super) async fn create_session(
    pool: &PgPool,
    session: &StoredSession,
    idle_before_ms: i64,
    keep: i64,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM admin_sessions WHERE used_ms < $1")
        .bind(idle_before_ms)
        .execute(&mut *tx)
        .await?;
    // Room for the new one among the `keep` most recently used.
    sqlx::query(
        "DELETE FROM admin_sessions WHERE token_digest IN (SELECT token_digest \
         FROM admin_sessions ORDER BY used_ms DESC OFFSET $1)",
    )
    .bind(keep - 1)
    .execute(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO admin_sessions (token_digest, csrf, used_ms) VALUES ($1, $2, $3)")
        .bind(&session.token_digest)
        .bind(&session.csrf)
        .bind(session.used_ms)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

pub(super) async fn session(
    pool: &PgPool,
    token_digest: &str,
    idle_before_ms: i64,
) -> Result<Option<StoredSession>, sqlx::Error> {
    sqlx::query_as(
        "SELECT token_digest, csrf, used_ms FROM admin_sessions \
         WHERE token_digest = $1 AND used_ms >= $2",
    )
    .bind(token_digest)
    .bind(idle_before_ms)
    .fetch_optional(pool)
    .await
}

pub(super) async fn live_sessions(
    pool: &PgPool,
    idle_before_ms: i64,
) -> Result<Vec<StoredSession>, sqlx::Error> {
    sqlx::query_as(
        "SELECT token_digest, csrf, used_ms FROM admin_sessions WHERE used_ms >= $1 \
         ORDER BY used_ms DESC LIMIT 1000",
    )
    .bind(idle_before_ms)
    .fetch_all(pool)
    .await
}

pub(super) async fn touch_session(
    pool: &PgPool,
    token_digest: &str,
    used_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE admin_sessions SET used_ms = GREATEST(used_ms, $2) WHERE token_digest = $1")
        .bind(token_digest)
        .bind(used_ms)
        .execute(pool)
        .await
        .map(|_| ())
}

pub(super) async fn end_session(pool: &PgPool, token_digest: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM admin_sessions WHERE token_digest = $1")
        .bind(token_digest)
        .execute(pool)
        .await
        .map(|_| ())
}

pub(super) async fn set_session_notice(
    pool: &PgPool,
    token_digest: &str,
    notice: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE admin_sessions SET notice = $2 WHERE token_digest = $1")
        .bind(token_digest)
        .bind(notice)
        .execute(pool)
        .await
        .map(|_| ())
}

pub(super) async fn take_session_notice(
    pool: &PgPool,
    token_digest: &str,
) -> Result<Option<String>, sqlx::Error> {
    // The row is locked while read, so two instances never both show the notice.
    let notice: Option<Option<String>> = sqlx::query_scalar(
        "UPDATE admin_sessions AS s SET notice = NULL FROM (SELECT token_digest, notice \
         FROM admin_sessions WHERE token_digest = $1 FOR UPDATE) AS old \
         WHERE s.token_digest = old.token_digest RETURNING old.notice",
    )
    .bind(token_digest)
    .fetch_optional(pool)
    .await?;
    Ok(notice.flatten())
}
