//! `_lua_kv`: each Lua script's persistent key-value store, bounded per script.

use sqlx::{Row, SqlitePool};

/// Keys one script may keep.
pub const MAX_KEYS: i64 = 1000;
/// Longest value (JSON text) and key.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
pub const MAX_KEY_BYTES: usize = 256;

/// Why a write was refused.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("{0}")]
    Limit(String),
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
}

/// The key-value stores of all scripts. Cloning is cheap.
#[derive(Clone)]
pub struct LuaKv {
    pool: SqlitePool,
}

impl LuaKv {
    pub fn new(pool: SqlitePool) -> Self {
        LuaKv { pool }
    }

    pub async fn get(&self, script: &str, key: &str) -> Result<Option<String>, sqlx::Error> {
        let row = sqlx::query("SELECT value FROM _lua_kv WHERE script = ?1 AND key = ?2")
            .bind(script)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| row.try_get("value")).transpose()
    }

    /// Stores `value` under `key`, within the script's bounds.
    pub async fn set(&self, script: &str, key: &str, value: &str) -> Result<(), KvError> {
        if key.len() > MAX_KEY_BYTES {
            return Err(KvError::Limit(format!(
                "keys are at most {MAX_KEY_BYTES} bytes"
            )));
        }
        if value.len() > MAX_VALUE_BYTES {
            return Err(KvError::Limit(format!(
                "a value is at most {MAX_VALUE_BYTES} bytes as JSON"
            )));
        }
        let mut tx = self.pool.begin().await?;
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM _lua_kv WHERE script = ?1 AND key = ?2")
                .bind(script)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?;
        if exists.is_none() {
            let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _lua_kv WHERE script = ?1")
                .bind(script)
                .fetch_one(&mut *tx)
                .await?;
            if count >= MAX_KEYS {
                return Err(KvError::Limit(format!(
                    "a script keeps at most {MAX_KEYS} keys; delete some first"
                )));
            }
        }
        sqlx::query(
            "INSERT INTO _lua_kv (script, key, value) VALUES (?1, ?2, ?3) \
             ON CONFLICT (script, key) DO UPDATE SET value = excluded.value",
        )
        .bind(script)
        .bind(key)
        .bind(value)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn delete(&self, script: &str, key: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM _lua_kv WHERE script = ?1 AND key = ?2")
            .bind(script)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
