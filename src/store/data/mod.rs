//! User tables of the peer's `data.db` and their registry `_tables` (schema JSON, access
//! policies and limits; what each caller keeps is in [`usage`]). Every table and column name that reaches SQL here was checked by the caller and is
//! quoted again here; every value is bound; `where` and `order` come only from [`filter`].
//! Statements written by others (the owner's SQL box, site scripts) end at their caller's
//! deadline ([`super::deadline`]). Another peer's requests run on connections of their own,
//! apart from the owner's, and stop at the request's deadline ([`DataStore::for_visitor`]).

mod ddl;
pub mod filter;
pub mod replace;
mod statements;
pub mod usage;

pub use usage::{TableLimits, Usage};

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value as Json};
use sqlx::sqlite::SqliteRow;
// Every dynamic statement below is built from quoted, checked names and `filter` output only.
use sqlx::{AssertSqlSafe, Column, FromRow, Row, SqlitePool, TypeInfo, ValueRef};

use base64::Engine as _;

/// Rows a query returns at most.
pub const MAX_ROWS: i64 = 1000;
/// Bytes of row data (as JSON) a query returns at most.
pub const MAX_RESULT_BYTES: usize = 1024 * 1024;

/// `"name"`, with inner quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A table as `_tables` records it.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct TableRecord {
    pub name: String,
    /// The table's schema, as JSON.
    pub schema: String,
    pub read_policy: String,
    pub insert_policy: String,
    pub update_policy: String,
    pub delete_policy: String,
    pub created_ms: i64,
    /// The table's own limits on other peers' rows.
    #[sqlx(flatten)]
    pub limits: TableLimits,
}

/// A column as SQLite reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnInfo {
    pub name: String,
    /// The declared type (`TEXT`, `INTEGER`, …).
    pub declared: String,
    pub not_null: bool,
    pub primary_key: bool,
}

/// The storage type of a user column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageType {
    Text,
    Integer,
    Real,
    Blob,
}

impl StorageType {
    fn sql(self) -> &'static str {
        match self {
            StorageType::Text => "TEXT",
            StorageType::Integer => "INTEGER",
            StorageType::Real => "REAL",
            StorageType::Blob => "BLOB",
        }
    }
}

/// A user column to create.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDef {
    pub name: String,
    pub storage: StorageType,
    pub not_null: bool,
    pub default: Option<SqlValue>,
    /// Allowed values (an enum column).
    pub one_of: Option<Vec<String>>,
}

/// A value to bind.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl SqlValue {
    /// A literal, for `DEFAULT` clauses (the only place a value is written into SQL).
    fn literal(&self) -> String {
        match self {
            SqlValue::Null => "NULL".into(),
            SqlValue::Integer(n) => n.to_string(),
            SqlValue::Real(x) if x.is_finite() => format!("{x:?}"),
            SqlValue::Real(_) => "NULL".into(),
            SqlValue::Text(text) => format!("'{}'", text.replace('\'', "''")),
            SqlValue::Blob(bytes) => {
                format!("X'{}'", hex::encode(bytes))
            }
        }
    }
}

/// A checked `SELECT`.
#[derive(Debug, Clone, Default)]
pub struct Select {
    pub table: String,
    /// Columns to return (checked names, never empty: a cached `SELECT *` would misread rows
    /// after a column change).
    pub columns: Vec<String>,
    pub filter: Option<filter::Where>,
    /// `_owner = ?` on top of the filter (read policy `owner`).
    pub owner: Option<String>,
    pub args: Vec<SqlValue>,
    pub order: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

/// Why a data operation failed in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the result is larger than {MAX_RESULT_BYTES} bytes; ask for fewer rows or columns")]
    TooLarge,
    #[error("{0}")]
    Constraint(String),
    #[error("the statement ran out of its time budget and was stopped")]
    OutOfTime,
    /// Another peer's request ran past its budget.
    #[error(
        "the request ran out of its time budget ({} s) and was stopped; ask for less (a \
         narrower filter, fewer rows)", .0.as_secs_f32()
    )]
    OverBudget(Duration),
    /// Another peer's request found no connection free within its budget.
    #[error(
        "the request could not start within its time budget ({} s): the database is busy with \
         other peers' requests; try again in a moment", .0.as_secs_f32()
    )]
    Busy(Duration),
    #[error("the database is closing; the statement was stopped")]
    Stopping,
    /// The caller went away ([`DataStore::cancelled_by`]).
    #[error("the caller has gone; the statement was stopped")]
    Cancelled,
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
}

fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    values: &'q [SqlValue],
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    for value in values {
        query = match value {
            SqlValue::Null => query.bind(None::<i64>),
            SqlValue::Integer(n) => query.bind(*n),
            SqlValue::Real(x) => query.bind(*x),
            SqlValue::Text(text) => query.bind(text.as_str()),
            SqlValue::Blob(bytes) => query.bind(bytes.as_slice()),
        };
    }
    query
}

/// Errors SQLite reports for a bad value (NOT NULL, CHECK, UNIQUE) become messages for the caller.
fn constraint_or(error: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &error
        && matches!(
            db.kind(),
            sqlx::error::ErrorKind::NotNullViolation
                | sqlx::error::ErrorKind::CheckViolation
                | sqlx::error::ErrorKind::UniqueViolation
                | sqlx::error::ErrorKind::ForeignKeyViolation
        )
    {
        return StoreError::Constraint(db.message().to_owned());
    }
    StoreError::Sql(error)
}

/// About the size of a row as JSON (strings unescaped), without writing it out.
fn json_size(object: &Map<String, Json>) -> usize {
    object
        .iter()
        .map(|(key, value)| {
            key.len()
                + 4
                + match value {
                    Json::String(text) => text.len() + 2,
                    Json::Number(_) => 20,
                    _ => 5,
                }
        })
        .sum::<usize>()
        + 2
}

/// One row as a JSON object, in column order; blobs as base64.
fn row_json(row: &SqliteRow) -> Result<Map<String, Json>, sqlx::Error> {
    let mut object = Map::new();
    for (index, column) in row.columns().iter().enumerate() {
        let raw = row.try_get_raw(index)?;
        let value = if raw.is_null() {
            Json::Null
        } else {
            match raw.type_info().name() {
                "INTEGER" => Json::from(row.try_get::<i64, _>(index)?),
                "REAL" => serde_json::Number::from_f64(row.try_get::<f64, _>(index)?)
                    .map_or(Json::Null, Json::Number),
                "BLOB" => Json::from(
                    base64::engine::general_purpose::STANDARD
                        .encode(row.try_get::<Vec<u8>, _>(index)?),
                ),
                _ => Json::from(row.try_get::<String, _>(index)?),
            }
        };
        object.insert(column.name().to_owned(), value);
    }
    Ok(object)
}

/// When user tables last changed shape. A connection opened before that is not used again:
/// SQLite re-reads a changed schema only once a statement runs, after sqlx has taken the
/// statement's columns, so a `SELECT *` prepared on a connection that knew the old shape would
/// read the new table with the old columns.
#[derive(Clone, Debug)]
pub struct SchemaEpoch {
    base: Instant,
    /// Nanoseconds after `base` of the last change.
    changed: Arc<std::sync::atomic::AtomicU64>,
}

impl Default for SchemaEpoch {
    fn default() -> Self {
        SchemaEpoch {
            base: Instant::now(),
            changed: Arc::default(),
        }
    }
}

impl SchemaEpoch {
    /// Records a change of shape now.
    pub fn changed(&self) {
        let now = self.base.elapsed().as_nanos() as u64;
        self.changed.store(now, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether a connection `age` old was opened after the last change.
    pub fn knows_current_shape(&self, age: Duration) -> bool {
        let opened = self.base.elapsed().saturating_sub(age).as_nanos() as u64;
        opened > self.changed.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The user tables of a peer database.
#[derive(Clone)]
pub struct DataStore {
    /// The connections statements run on: the owner's, or the visitors' for
    /// [`DataStore::for_visitor`].
    pool: SqlitePool,
    /// Read-only connections (SQLite refuses writes on them) for SQL written by others.
    read_only: SqlitePool,
    /// Connections for other peers' requests, so that they never wait for the owner's or keep
    /// the owner waiting.
    visitors: SqlitePool,
    /// The store's closing, which stops running statements.
    stopping: super::deadline::Stopping,
    /// For one request of another peer: when its statements stop, and the budget that set it.
    budget: Option<(Instant, Duration)>,
    /// Set when the caller of the statements written by others has gone.
    cancelled: super::deadline::Stopping,
    /// Moved on by every change to a table's shape.
    epoch: SchemaEpoch,
}

impl DataStore {
    pub fn new(
        pool: SqlitePool,
        read_only: SqlitePool,
        visitors: SqlitePool,
        stopping: super::deadline::Stopping,
        epoch: SchemaEpoch,
    ) -> Self {
        DataStore {
            pool,
            read_only,
            visitors,
            stopping,
            budget: None,
            cancelled: super::deadline::Stopping::default(),
            epoch,
        }
    }

    /// The same tables for a caller that cannot drop its future when it goes away (a script on
    /// a blocking thread): its statements written by others also stop once `cancelled` is set.
    pub fn cancelled_by(&self, cancelled: super::deadline::Stopping) -> DataStore {
        DataStore {
            cancelled,
            ..self.clone()
        }
    }

    /// The same tables for one request of another peer: its statements run on the visitors'
    /// connections, never the owner's, and stop once `budget` from now has passed (waiting for a
    /// connection counts). Dropping the request's future stops the statement it runs.
    pub fn for_visitor(&self, budget: Duration) -> DataStore {
        DataStore {
            pool: self.visitors.clone(),
            budget: Some((Instant::now() + budget, budget)),
            ..self.clone()
        }
    }

    /// When the statements of this store's request stop (another peer's request only).
    pub fn deadline(&self) -> Option<Instant> {
        self.budget.map(|(deadline, _)| deadline)
    }

    /// A connection for the next statement, held to the request's deadline if there is one;
    /// give it back with [`super::deadline::Lease::finish`] once the statement is done, or
    /// [`super::deadline::Lease::release`] after a stream of rows.
    async fn lease(&self) -> Result<super::deadline::Lease, StoreError> {
        super::deadline::lease(&self.pool, self.deadline(), &self.stopping, &self.cancelled)
            .await
            .map_err(|e| self.failed(e))
    }

    /// A statement that failed: stopped at the deadline, stopped by the closing, no connection
    /// free in time, or else.
    fn failed(&self, error: sqlx::Error) -> StoreError {
        let budget = self.budget.map(|(_, budget)| budget);
        if matches!(error, sqlx::Error::PoolTimedOut)
            && let Some(budget) = budget
        {
            StoreError::Busy(budget)
        } else if !super::deadline::is_interrupted(&error) {
            constraint_or(error)
        } else if self.stopping.is_stopped() {
            StoreError::Stopping
        } else if self.cancelled.is_stopped() {
            StoreError::Cancelled
        } else if let Some(budget) = budget {
            StoreError::OverBudget(budget)
        } else {
            StoreError::OutOfTime
        }
    }

    /// Every registered table, by name.
    pub async fn tables(&self) -> Result<Vec<TableRecord>, StoreError> {
        let mut connection = self.lease().await?;
        let tables = sqlx::query_as(
            "SELECT name, schema, read_policy, insert_policy, update_policy, delete_policy, \
             created_ms, max_rows_per_caller, max_bytes_per_caller, max_rows, max_bytes \
             FROM _tables ORDER BY name",
        )
        .fetch_all(&mut *connection)
        .await;
        connection.finish();
        tables.map_err(|e| self.failed(e))
    }

    /// One registered table.
    pub async fn table(&self, name: &str) -> Result<Option<TableRecord>, StoreError> {
        let mut connection = self.lease().await?;
        let table = sqlx::query_as(
            "SELECT name, schema, read_policy, insert_policy, update_policy, delete_policy, \
             created_ms, max_rows_per_caller, max_bytes_per_caller, max_rows, max_bytes \
             FROM _tables WHERE name = ?1",
        )
        .bind(name)
        .fetch_optional(&mut *connection)
        .await;
        connection.finish();
        table.map_err(|e| self.failed(e))
    }

    /// The columns of a table, as SQLite knows them.
    pub async fn columns(&self, table: &str) -> Result<Vec<ColumnInfo>, sqlx::Error> {
        let rows = sqlx::query("SELECT name, type, \"notnull\", pk FROM pragma_table_info(?1)")
            .bind(table)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(ColumnInfo {
                    name: row.try_get("name")?,
                    declared: row.try_get("type")?,
                    not_null: row.try_get::<i64, _>("notnull")? != 0,
                    primary_key: row.try_get::<i64, _>("pk")? != 0,
                })
            })
            .collect()
    }

    /// Creates a user table with the system columns, its `_updated_at` trigger, and its
    /// `_tables` entry, in one transaction.
    pub async fn create_table(
        &self,
        record: &TableRecord,
        columns: &[ColumnDef],
        unique: &[Vec<String>],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        create_in(&mut tx, record, columns, unique).await?;
        tx.commit().await?;
        self.epoch.changed();
        Ok(())
    }

    /// Runs a checked `SELECT`, bounded by [`MAX_RESULT_BYTES`] while its rows are read.
    pub async fn select(&self, select: &Select) -> Result<Vec<Map<String, Json>>, StoreError> {
        let columns = if select.columns.is_empty() {
            "*".to_owned()
        } else {
            select
                .columns
                .iter()
                // Aliased: SQLite leaves an unaliased result column's name unspecified.
                .map(|c| format!("{0} AS {0}", quote_ident(c)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut sql = format!("SELECT {columns} FROM {}", quote_ident(&select.table));
        let mut args = select.args.clone();
        push_conditions(
            &mut sql,
            &mut args,
            select.filter.as_ref(),
            select.owner.as_deref(),
        );
        if let Some(order) = &select.order {
            sql.push_str(" ORDER BY ");
            sql.push_str(order);
        }
        sql.push_str(" LIMIT ? OFFSET ?");
        args.push(SqlValue::Integer(select.limit.clamp(0, MAX_ROWS)));
        args.push(SqlValue::Integer(select.offset.max(0)));
        let mut connection = self.lease().await?;
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), &args).fetch(&mut *connection);
        let read = read_rows(rows, usize::MAX, |e| self.failed(e)).await;
        connection.release().await;
        Ok(read?.0)
    }

    /// Counts rows matching the filter (and owner).
    pub async fn count(
        &self,
        table: &str,
        filter: Option<&filter::Where>,
        owner: Option<&str>,
        args: &[SqlValue],
    ) -> Result<i64, StoreError> {
        let mut sql = format!("SELECT COUNT(*) FROM {}", quote_ident(table));
        let mut args = args.to_vec();
        push_conditions(&mut sql, &mut args, filter, owner);
        let mut connection = self.lease().await?;
        let row = bind_all(sqlx::query(AssertSqlSafe(sql)), &args)
            .fetch_one(&mut *connection)
            .await;
        connection.finish();
        Ok(row.map_err(|e| self.failed(e))?.try_get(0)?)
    }

    /// Inserts one row; returns its `_id`.
    pub async fn insert(
        &self,
        table: &str,
        values: &[(String, SqlValue)],
    ) -> Result<i64, StoreError> {
        let names: Vec<String> = values.iter().map(|(name, _)| quote_ident(name)).collect();
        let marks = vec!["?"; values.len()].join(", ");
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({marks})",
            quote_ident(table),
            names.join(", ")
        );
        let args: Vec<SqlValue> = values.iter().map(|(_, v)| v.clone()).collect();
        let mut connection = self.lease().await?;
        let done = bind_all(sqlx::query(AssertSqlSafe(sql)), &args)
            .execute(&mut *connection)
            .await;
        connection.finish();
        Ok(done.map_err(|e| self.failed(e))?.last_insert_rowid())
    }

    /// Updates the row `id` (only if its `_owner` is `owner`, when given); returns rows changed.
    pub async fn update(
        &self,
        table: &str,
        id: i64,
        values: &[(String, SqlValue)],
        owner: Option<&str>,
    ) -> Result<u64, StoreError> {
        let sets: Vec<String> = values
            .iter()
            .map(|(name, _)| format!("{} = ?", quote_ident(name)))
            .collect();
        let mut sql = format!(
            "UPDATE {} SET {} WHERE \"_id\" = ?",
            quote_ident(table),
            sets.join(", ")
        );
        let mut args: Vec<SqlValue> = values.iter().map(|(_, v)| v.clone()).collect();
        args.push(SqlValue::Integer(id));
        if let Some(owner) = owner {
            sql.push_str(" AND \"_owner\" = ?");
            args.push(SqlValue::Text(owner.to_owned()));
        }
        let mut connection = self.lease().await?;
        let done = bind_all(sqlx::query(AssertSqlSafe(sql)), &args)
            .execute(&mut *connection)
            .await;
        connection.finish();
        Ok(done.map_err(|e| self.failed(e))?.rows_affected())
    }

    /// Deletes the row `id` (only if its `_owner` is `owner`, when given); returns rows deleted.
    pub async fn delete(
        &self,
        table: &str,
        id: i64,
        owner: Option<&str>,
    ) -> Result<u64, StoreError> {
        let mut sql = format!("DELETE FROM {} WHERE \"_id\" = ?", quote_ident(table));
        let mut args = vec![SqlValue::Integer(id)];
        if let Some(owner) = owner {
            sql.push_str(" AND \"_owner\" = ?");
            args.push(SqlValue::Text(owner.to_owned()));
        }
        let mut connection = self.lease().await?;
        let done = bind_all(sqlx::query(AssertSqlSafe(sql)), &args)
            .execute(&mut *connection)
            .await;
        connection.finish();
        Ok(done.map_err(|e| self.failed(e))?.rows_affected())
    }
}

/// Reads rows as they come, at most `max_rows` (and whether more were cut off); stops as soon as
/// the rows so far pass [`MAX_RESULT_BYTES`], so a result is never held whole before it is
/// measured (SQLite's worker keeps a few dozen rows ready ahead, no more).
async fn read_rows(
    mut rows: impl futures_util::Stream<Item = Result<SqliteRow, sqlx::Error>> + Unpin,
    max_rows: usize,
    failed: impl Fn(sqlx::Error) -> StoreError,
) -> Result<(Vec<Map<String, Json>>, bool), StoreError> {
    use futures_util::TryStreamExt;
    let mut out = Vec::new();
    let mut bytes = 0usize;
    while let Some(row) = rows.try_next().await.map_err(&failed)? {
        if out.len() == max_rows {
            return Ok((out, true));
        }
        let object = row_json(&row)?;
        bytes += json_size(&object);
        if bytes > MAX_RESULT_BYTES {
            return Err(StoreError::TooLarge);
        }
        out.push(object);
    }
    Ok((out, false))
}

async fn set_schema(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    table: &str,
    schema: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE _tables SET schema = ?1 WHERE name = ?2")
        .bind(schema)
        .bind(table)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The trigger that keeps `_updated_at` current.
/// Creates a user table (system columns, `_updated_at` trigger, unique indexes, `_tables` entry
/// with its own limits, usage tracking) inside `tx`.
pub(super) async fn create_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    record: &TableRecord,
    columns: &[ColumnDef],
    unique: &[Vec<String>],
) -> Result<(), StoreError> {
    let table = quote_ident(&record.name);
    let mut definitions = vec![
        "\"_id\" INTEGER PRIMARY KEY AUTOINCREMENT".to_owned(),
        "\"_owner\" TEXT NOT NULL".to_owned(),
        "\"_owner_email\" TEXT".to_owned(),
        "\"_created_at\" TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))".to_owned(),
        "\"_updated_at\" TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))".to_owned(),
    ];
    for column in columns {
        definitions.push(column_sql(column));
    }
    sqlx::query(AssertSqlSafe(format!(
        "CREATE TABLE {table} ({})",
        definitions.join(", ")
    )))
    .execute(&mut **tx)
    .await?;
    sqlx::query(AssertSqlSafe(updated_at_trigger(&record.name)))
        .execute(&mut **tx)
        .await?;
    for (index, set) in unique.iter().enumerate() {
        let columns: Vec<String> = set.iter().map(|c| quote_ident(c)).collect();
        sqlx::query(AssertSqlSafe(format!(
            "CREATE UNIQUE INDEX {} ON {table} ({})",
            // Index names outlive a rename: the creation time keeps a later table of the same
            // name from meeting them.
            quote_ident(&format!(
                "_unique_{}_{}_{index}",
                record.name, record.created_ms
            )),
            columns.join(", ")
        )))
        .execute(&mut **tx)
        .await?;
    }
    let limits = record.limits;
    sqlx::query(
        "INSERT INTO _tables (name, schema, read_policy, insert_policy, update_policy, \
         delete_policy, created_ms, max_rows_per_caller, max_bytes_per_caller, max_rows, \
         max_bytes) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )
    .bind(&record.name)
    .bind(&record.schema)
    .bind(&record.read_policy)
    .bind(&record.insert_policy)
    .bind(&record.update_policy)
    .bind(&record.delete_policy)
    .bind(record.created_ms)
    .bind(limits.max_rows_per_caller)
    .bind(limits.max_bytes_per_caller)
    .bind(limits.max_rows)
    .bind(limits.max_bytes)
    .execute(&mut **tx)
    .await?;
    usage::track_usage(tx, &record.name).await?;
    Ok(())
}

fn updated_at_trigger(table: &str) -> String {
    let quoted = quote_ident(table);
    format!(
        "CREATE TRIGGER {} AFTER UPDATE ON {quoted} FOR EACH ROW \
         WHEN NEW.\"_updated_at\" IS OLD.\"_updated_at\" BEGIN \
         UPDATE {quoted} SET \"_updated_at\" = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
         WHERE \"_id\" = NEW.\"_id\"; END",
        quote_ident(&format!("_updated_at_{table}"))
    )
}

fn column_sql(column: &ColumnDef) -> String {
    let mut sql = format!("{} {}", quote_ident(&column.name), column.storage.sql());
    if column.not_null {
        sql.push_str(" NOT NULL");
    }
    if let Some(default) = &column.default {
        sql.push_str(" DEFAULT ");
        sql.push_str(&default.literal());
    }
    if let Some(values) = &column.one_of {
        let list: Vec<String> = values
            .iter()
            .map(|v| SqlValue::Text(v.clone()).literal())
            .collect();
        sql.push_str(&format!(
            " CHECK ({} IS NULL OR {} IN ({}))",
            quote_ident(&column.name),
            quote_ident(&column.name),
            list.join(", ")
        ));
    }
    sql
}

/// Appends ` WHERE …` for a filter and an owner restriction.
fn push_conditions(
    sql: &mut String,
    args: &mut Vec<SqlValue>,
    filter: Option<&filter::Where>,
    owner: Option<&str>,
) {
    let mut conditions = Vec::new();
    if let Some(filter) = filter {
        conditions.push(format!("({})", filter.sql));
    }
    if let Some(owner) = owner {
        conditions.push("\"_owner\" = ?".to_owned());
        args.push(SqlValue::Text(owner.to_owned()));
    }
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
}
