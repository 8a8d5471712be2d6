//! The peer's own database, `<dir>/data.db`: SQLite in WAL mode. System tables start with `_`;
//! this module holds the ones the peer itself needs (`_meta`, `_peer_cache`, `_favorites`);
//! chat and the block list are in [`super::chat`], groups in [`super::groups`];
//! user tables and `_tables` are in [`super::data`].
//!
//! Three pools reach the file: the owner's connections; read-only ones for SQL written by others
//! (the console's SQL box, site scripts); and [`VISITOR_CONNECTIONS`] for other peers' requests,
//! so that however busy visitors keep the database, the owner's console finds a connection.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{FromRow, SqlitePool};

/// Migrations of the peer database, embedded in the binary.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/peer");

/// The file name inside the peer directory.
pub const FILE_NAME: &str = "data.db";

/// Connections the owner's own statements have.
pub const OWNER_CONNECTIONS: u32 = 4;
/// Read-only connections for SQL written by others (the SQL box, site scripts).
pub const READ_ONLY_CONNECTIONS: u32 = 4;
/// Connections other peers' requests share, apart from the owner's: on a small machine, two
/// statements at once are about what its cores give to visitors.
pub const VISITOR_CONNECTIONS: u32 = 2;

/// At most this many last-known peers are kept; the oldest go first.
pub const PEER_CACHE_LIMIT: i64 = 1000;

/// A peer as it was last heard of.
#[derive(Debug, Clone, FromRow, PartialEq, Eq)]
pub struct CachedPeer {
    pub peer_id: String,
    pub label: String,
    pub email: String,
    pub avatar_hash: Option<String>,
    /// JSON array of multiaddrs.
    pub addrs: String,
    pub verified: bool,
    pub last_seen_ms: i64,
}

/// The opened database. Cloning is cheap.
#[derive(Clone)]
pub struct PeerStore {
    pool: SqlitePool,
    /// Connections SQLite itself keeps from writing, for statements written by others (the
    /// console's SQL box, site scripts); opened when first needed.
    read_only: SqlitePool,
    /// Connections for other peers' requests; opened when first needed.
    visitors: SqlitePool,
    /// Set by [`PeerStore::close`]: statements still running on any pool stop.
    stopping: super::deadline::Stopping,
    /// When user tables last changed shape.
    epoch: super::data::SchemaEpoch,
}

/// A `_meta` value of the peer database at `path`, read without opening it for writing (the
/// peer may be running): `None` when the file, the table or the key is missing.
pub async fn read_meta_of(path: &Path, key: &str) -> Result<Option<String>, sqlx::Error> {
    use sqlx::Connection;
    if !path.exists() {
        return Ok(None);
    }
    let options = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .busy_timeout(Duration::from_secs(1));
    let mut connection = sqlx::SqliteConnection::connect_with(&options).await?;
    let value = sqlx::query_scalar("SELECT value FROM _meta WHERE key = ?1")
        .bind(key)
        .fetch_optional(&mut connection)
        .await;
    let _ = connection.close().await;
    match value {
        Err(sqlx::Error::Database(err)) if err.message().contains("no such table") => Ok(None),
        other => other,
    }
}

impl PeerStore {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub async fn open(path: &Path) -> Result<Self, sqlx::Error> {
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL survives a killed process; only a power loss may drop the last commit.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let stopping = super::deadline::Stopping::default();
        let epoch = super::data::SchemaEpoch::default();
        // Connections that knew user tables in an older shape are closed instead of used.
        let current = |options: SqlitePoolOptions| {
            let epoch = epoch.clone();
            options.before_acquire(move |_, meta| {
                let fresh = epoch.knows_current_shape(meta.age);
                Box::pin(async move { Ok(fresh) })
            })
        };
        let pool = current(super::deadline::interruptible(
            SqlitePoolOptions::new(),
            stopping.clone(),
        ))
        .max_connections(OWNER_CONNECTIONS)
        .connect_with(options.clone())
        .await?;
        MIGRATOR.run(&pool).await?;
        let read_only = current(super::deadline::interruptible(
            SqlitePoolOptions::new(),
            stopping.clone(),
        ))
        .max_connections(READ_ONLY_CONNECTIONS)
        .idle_timeout(Duration::from_secs(60))
        // Every use leases the connection, which reaches its worker first anyway.
        .test_before_acquire(false)
        .connect_lazy_with(
            SqliteConnectOptions::new()
                .filename(path)
                .read_only(true)
                .pragma("query_only", "ON")
                .busy_timeout(Duration::from_secs(5)),
        );
        // Other peers' writes go here too: the data API's own checked statements.
        let visitors = current(super::deadline::interruptible(
            SqlitePoolOptions::new(),
            stopping.clone(),
        ))
        .max_connections(VISITOR_CONNECTIONS)
        .idle_timeout(Duration::from_secs(60))
        .test_before_acquire(false)
        .connect_lazy_with(options);
        let store = PeerStore {
            pool,
            read_only,
            visitors,
            stopping,
            epoch,
        };
        store.data().track_usage_of_every_table().await?;
        Ok(store)
    }

    /// Records peers as heard of now (one transaction), then drops the oldest beyond the limit.
    pub async fn remember_peers(&self, peers: &[CachedPeer]) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        for peer in peers {
            sqlx::query(
                "INSERT INTO _peer_cache (peer_id, label, email, avatar_hash, addrs, verified, \
                 last_seen_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                 ON CONFLICT (peer_id) DO UPDATE SET label = excluded.label, \
                 email = excluded.email, avatar_hash = excluded.avatar_hash, \
                 addrs = excluded.addrs, verified = excluded.verified, \
                 last_seen_ms = MAX(last_seen_ms, excluded.last_seen_ms)",
            )
            .bind(&peer.peer_id)
            .bind(&peer.label)
            .bind(&peer.email)
            .bind(&peer.avatar_hash)
            .bind(&peer.addrs)
            .bind(peer.verified)
            .bind(peer.last_seen_ms)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "DELETE FROM _peer_cache WHERE peer_id NOT IN \
             (SELECT peer_id FROM _peer_cache ORDER BY last_seen_ms DESC LIMIT ?1) \
             AND peer_id NOT IN (SELECT peer_id FROM _favorites)",
        )
        .bind(PEER_CACHE_LIMIT)
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    /// The last-known peers, newest first.
    pub async fn cached_peers(&self) -> Result<Vec<CachedPeer>, sqlx::Error> {
        sqlx::query_as(
            "SELECT peer_id, label, email, avatar_hash, addrs, verified, last_seen_ms \
             FROM _peer_cache ORDER BY last_seen_ms DESC LIMIT ?1",
        )
        .bind(PEER_CACHE_LIMIT)
        .fetch_all(&self.pool)
        .await
    }

    /// Marks or unmarks a favourite.
    pub async fn set_favorite(
        &self,
        peer_id: &str,
        favorite: bool,
        now_ms: i64,
    ) -> Result<(), sqlx::Error> {
        if favorite {
            sqlx::query("INSERT OR IGNORE INTO _favorites (peer_id, added_ms) VALUES (?1, ?2)")
                .bind(peer_id)
                .bind(now_ms)
                .execute(&self.pool)
                .await?;
        } else {
            sqlx::query("DELETE FROM _favorites WHERE peer_id = ?1")
                .bind(peer_id)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// The favourite peers' IDs, oldest first.
    pub async fn favorites(&self) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar("SELECT peer_id FROM _favorites ORDER BY added_ms, peer_id")
            .fetch_all(&self.pool)
            .await
    }

    /// The user tables in the same database.
    pub fn data(&self) -> super::data::DataStore {
        super::data::DataStore::new(
            self.pool.clone(),
            self.read_only.clone(),
            self.visitors.clone(),
            self.stopping.clone(),
            self.epoch.clone(),
        )
    }

    /// The conversations and the block list in the same database.
    pub fn chat(&self) -> super::chat::ChatStore {
        super::chat::ChatStore::new(self.pool.clone())
    }

    /// The groups hosted and joined, in the same database.
    pub fn groups(&self) -> super::groups::GroupStore {
        super::groups::GroupStore::new(self.pool.clone())
    }

    /// The Lua scripts' key-value stores in the same database.
    pub fn lua_kv(&self) -> super::lua_kv::LuaKv {
        super::lua_kv::LuaKv::new(self.pool.clone())
    }

    /// Stops the statements still running, then flushes and closes the pools (which wait for
    /// every connection to come back).
    pub async fn close(&self) {
        self.stopping.stop();
        self.visitors.close().await;
        self.read_only.close().await;
        self.pool.close().await;
    }
}
