//! `_usage`: what each `_owner` keeps in each user table — rows, and bytes of the values of the
//! table's own columns — and the per-table limits in `_tables` that the data service holds other
//! peers' inserts to. SQLite keeps `_usage` current with three triggers per user table, so every
//! writer counts (the data API, site scripts, the console's forms and imports) and a count is one
//! indexed read, never a scan of the table.

use std::collections::HashMap;

use sqlx::{AssertSqlSafe, FromRow, Row, Sqlite, Transaction};

use super::{DataStore, SqlValue, StoreError, quote_ident};

/// Rows and bytes kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub rows: i64,
    /// Bytes of the values of the table's own columns (text and blobs as stored, numbers as
    /// their decimal text).
    pub bytes: i64,
}

/// A table's own limits on what other peers store in it; `None` takes the peer's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromRow)]
pub struct TableLimits {
    /// Rows one caller may keep in the table.
    pub max_rows_per_caller: Option<i64>,
    /// Bytes one caller may keep in the table.
    pub max_bytes_per_caller: Option<i64>,
    /// Rows the table holds from everyone together before other peers' inserts are refused.
    pub max_rows: Option<i64>,
    /// Bytes the table holds from everyone together before other peers' inserts are refused.
    pub max_bytes: Option<i64>,
}

impl SqlValue {
    /// The bytes this value counts for in [`Usage`] (what `length(CAST(v AS BLOB))` gives).
    pub fn stored_bytes(&self) -> i64 {
        let bytes = match self {
            SqlValue::Null => 0,
            SqlValue::Integer(n) => n.to_string().len(),
            SqlValue::Real(x) => format!("{x:?}").len(),
            SqlValue::Text(text) => text.len(),
            SqlValue::Blob(bytes) => bytes.len(),
        };
        i64::try_from(bytes).unwrap_or(i64::MAX)
    }
}

impl DataStore {
    /// What `owner` keeps in `table`, and what the table holds from everyone.
    pub async fn usage(&self, table: &str, owner: &str) -> Result<(Usage, Usage), StoreError> {
        let mut connection = self.lease().await?;
        let row = sqlx::query(
            "SELECT COALESCE(SUM(CASE WHEN owner = ?2 THEN row_count END), 0), \
             COALESCE(SUM(CASE WHEN owner = ?2 THEN byte_count END), 0), \
             COALESCE(SUM(row_count), 0), COALESCE(SUM(byte_count), 0) FROM _usage WHERE tbl = ?1",
        )
        .bind(table)
        .bind(owner)
        .fetch_one(&mut *connection)
        .await;
        connection.finish();
        let row = row.map_err(|e| self.failed(e))?;
        Ok((
            Usage {
                rows: row.try_get(0)?,
                bytes: row.try_get(1)?,
            },
            Usage {
                rows: row.try_get(2)?,
                bytes: row.try_get(3)?,
            },
        ))
    }

    /// The rows every user table holds, by table name (a table without rows is absent): one
    /// read of `_usage`, never a scan of the tables.
    pub async fn row_counts(&self) -> Result<HashMap<String, i64>, StoreError> {
        let mut connection = self.lease().await?;
        let counts = sqlx::query_as::<_, (String, i64)>(
            "SELECT tbl, SUM(row_count) FROM _usage GROUP BY tbl",
        )
        .fetch_all(&mut *connection)
        .await;
        connection.finish();
        Ok(counts.map_err(|e| self.failed(e))?.into_iter().collect())
    }

    /// Sets a table's own limits (`None`: the peer's default).
    pub async fn set_limits(&self, table: &str, limits: TableLimits) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE _tables SET max_rows_per_caller = ?1, max_bytes_per_caller = ?2, \
             max_rows = ?3, max_bytes = ?4 WHERE name = ?5",
        )
        .bind(limits.max_rows_per_caller)
        .bind(limits.max_bytes_per_caller)
        .bind(limits.max_rows)
        .bind(limits.max_bytes)
        .bind(table)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Gives every registered table that has none (tables made before `_usage` existed) its
    /// usage triggers and counts. A registry entry that names no user table (a system name, or a
    /// table that is not there — what a script could write into `_tables` before statements were
    /// checked by name) is left alone, with a warning.
    pub async fn track_usage_of_every_table(&self) -> Result<(), sqlx::Error> {
        let names: Vec<String> = sqlx::query_scalar("SELECT name FROM _tables")
            .fetch_all(&self.pool)
            .await?;
        for name in names {
            let exists: Option<i64> = sqlx::query_scalar(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
            )
            .bind(&name)
            .fetch_optional(&self.pool)
            .await?;
            let lower = name.to_ascii_lowercase();
            if exists.is_none() || lower.starts_with('_') || lower.starts_with("sqlite_") {
                tracing::warn!(table = %name, "_tables names no user table by this name; its usage is not counted");
                continue;
            }
            let tracked: Option<i64> = sqlx::query_scalar(
                "SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = ?1",
            )
            .bind(trigger_name("insert", &name))
            .fetch_optional(&self.pool)
            .await?;
            if tracked.is_none() {
                let mut tx = self.pool.begin().await?;
                track_usage(&mut tx, &name).await?;
                tx.commit().await?;
                tracing::info!(table = %name, "usage of the table counted");
            }
        }
        Ok(())
    }
}

fn trigger_name(kind: &str, table: &str) -> String {
    quote_ident(&format!("_usage_{kind}_{table}"))
}

/// The table's own columns (not the `_` system columns), as SQLite knows them now.
async fn own_columns(
    tx: &mut Transaction<'_, Sqlite>,
    table: &str,
) -> Result<Vec<String>, sqlx::Error> {
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info(?1)")
        .bind(table)
        .fetch_all(&mut **tx)
        .await?;
    Ok(names.into_iter().filter(|n| !n.starts_with('_')).collect())
}

/// The bytes of a row's own values; `row` is `NEW.`, `OLD.` or empty.
fn size_sql(row: &str, columns: &[String]) -> String {
    if columns.is_empty() {
        return "0".into();
    }
    columns
        .iter()
        .map(|c| format!("COALESCE(length(CAST({row}{} AS BLOB)), 0)", quote_ident(c)))
        .collect::<Vec<_>>()
        .join(" + ")
}

/// Drops the usage triggers of `table` (before its columns or name change).
pub(super) async fn untrack_usage(
    tx: &mut Transaction<'_, Sqlite>,
    table: &str,
) -> Result<(), sqlx::Error> {
    for kind in ["insert", "update", "delete"] {
        sqlx::query(AssertSqlSafe(format!(
            "DROP TRIGGER IF EXISTS {}",
            trigger_name(kind, table)
        )))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// (Re)creates the usage triggers of `table` for its columns as they are now, and counts what
/// each owner keeps in it again.
pub(super) async fn track_usage(
    tx: &mut Transaction<'_, Sqlite>,
    table: &str,
) -> Result<(), sqlx::Error> {
    untrack_usage(tx, table).await?;
    let columns = own_columns(tx, table).await?;
    let quoted = quote_ident(table);
    let name = SqlValue::Text(table.to_owned()).literal();
    let add = |row: &str| {
        format!(
            "INSERT INTO _usage (tbl, owner, row_count, byte_count) \
             VALUES ({name}, {row}\"_owner\", 1, {}) ON CONFLICT (tbl, owner) DO UPDATE SET \
             row_count = row_count + 1, byte_count = byte_count + excluded.byte_count;",
            size_sql(row, &columns)
        )
    };
    let remove = |row: &str| {
        format!(
            "UPDATE _usage SET row_count = row_count - 1, byte_count = byte_count - ({}) \
             WHERE tbl = {name} AND owner = {row}\"_owner\"; \
             DELETE FROM _usage WHERE tbl = {name} AND owner = {row}\"_owner\" \
             AND row_count <= 0;",
            size_sql(row, &columns)
        )
    };
    let mut watched = vec![quote_ident("_owner")];
    watched.extend(columns.iter().map(|c| quote_ident(c)));
    let triggers = [
        format!(
            "CREATE TRIGGER {} AFTER INSERT ON {quoted} FOR EACH ROW BEGIN {} END",
            trigger_name("insert", table),
            add("NEW.")
        ),
        format!(
            "CREATE TRIGGER {} AFTER UPDATE OF {} ON {quoted} FOR EACH ROW BEGIN {} {} END",
            trigger_name("update", table),
            watched.join(", "),
            remove("OLD."),
            add("NEW.")
        ),
        format!(
            "CREATE TRIGGER {} AFTER DELETE ON {quoted} FOR EACH ROW BEGIN {} END",
            trigger_name("delete", table),
            remove("OLD.")
        ),
    ];
    for trigger in triggers {
        sqlx::query(AssertSqlSafe(trigger))
            .execute(&mut **tx)
            .await?;
    }
    sqlx::query("DELETE FROM _usage WHERE tbl = ?1")
        .bind(table)
        .execute(&mut **tx)
        .await?;
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO _usage (tbl, owner, row_count, byte_count) SELECT ?1, \"_owner\", COUNT(*), \
         COALESCE(SUM({}), 0) FROM {quoted} GROUP BY \"_owner\"",
        size_sql("", &columns)
    )))
    .bind(table)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
