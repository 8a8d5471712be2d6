//! Tables: the list, a table's description, and the owner's changes to them — create, drop,
//! rename, add and drop columns, policies, the table's own quotas — and the owner's read-only
//! SQL. Every change forgets the cached schemas and is logged.

use std::collections::HashMap;

use serde::Serialize;

use super::limits::Quotas;
use super::rows::Row;
use super::schema::{self, Access, ColumnSchema, TableSchema};
use super::{Caller, DataError, DataService, SYSTEM_COLUMNS, access_of};
use crate::store::data::replace::{NewTable, Replacement};
use crate::store::data::{SqlValue, StoreError, TableLimits, TableRecord};

/// Rows the owner's read-only SQL returns at most.
pub const MAX_SQL_ROWS: usize = 1000;
/// How long one statement of the owner's read-only SQL may run before SQLite stops it.
pub const SQL_BUDGET: std::time::Duration = std::time::Duration::from_secs(5);

/// A table in the list: its name and policies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableSummary {
    pub name: String,
    pub access: Access,
}

/// A table as `describe` shows it: columns, policies, and the quotas on other peers' rows in
/// force (`limits`) with the table's own settings (`own_limits`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableDescription {
    pub name: String,
    /// The table's own columns.
    pub columns: Vec<ColumnSchema>,
    /// The columns the peer keeps in every table.
    pub system: [&'static str; 5],
    pub access: Access,
    /// Column sets no two rows may share.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unique: Vec<Vec<String>>,
    pub limits: Quotas,
    pub own_limits: OwnLimits,
}

/// A table's own quotas on other peers' rows; `None` where the peer's default applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OwnLimits {
    pub rows_per_caller: Option<i64>,
    pub bytes_per_caller: Option<i64>,
    pub rows: Option<i64>,
    pub bytes: Option<i64>,
}

/// A row to insert: column values, with `_owner` and the times when they are given.
pub type NewRow = Vec<(String, SqlValue)>;

/// What the owner's read-only SQL found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SqlRows {
    pub rows: Vec<Row>,
    /// More rows were cut off at [`MAX_SQL_ROWS`].
    pub truncated: bool,
}

impl DataService {
    /// Every registered table, by name.
    pub async fn tables(&self, caller: &Caller) -> Result<Vec<TableSummary>, DataError> {
        let tables = self.store_for(caller).tables().await?;
        Ok(tables
            .iter()
            .map(|record| TableSummary {
                name: record.name.clone(),
                access: access_of(record),
            })
            .collect())
    }

    /// The rows every table holds, by name (the owner's view, all rows; a table without rows is
    /// absent).
    pub async fn row_counts(&self) -> Result<HashMap<String, i64>, DataError> {
        Ok(self.store.row_counts().await?)
    }

    /// A table's columns, policies and quotas.
    pub async fn describe(
        &self,
        caller: &Caller,
        table: &str,
    ) -> Result<TableDescription, DataError> {
        let table = self.table(&self.store_for(caller), table).await?;
        Ok(self.description(&table.record, &table.schema))
    }

    fn description(&self, record: &TableRecord, schema: &TableSchema) -> TableDescription {
        let own = record.limits;
        TableDescription {
            name: record.name.clone(),
            columns: schema.columns.clone(),
            system: SYSTEM_COLUMNS,
            access: access_of(record),
            unique: schema.unique.clone(),
            limits: self.guard.limits.for_table(&own),
            own_limits: OwnLimits {
                rows_per_caller: own.max_rows_per_caller,
                bytes_per_caller: own.max_bytes_per_caller,
                rows: own.max_rows,
                bytes: own.max_bytes,
            },
        }
    }

    /// Creates a table from a checked schema.
    pub async fn create_table(&self, schema: TableSchema) -> Result<TableDescription, DataError> {
        if self.store.table(&schema.name).await?.is_some()
            || !self.store.columns(&schema.name).await?.is_empty()
        {
            return Err(DataError::BadRequest(format!(
                "a table `{}` already exists",
                schema.name
            )));
        }
        let record = record_for(&schema, TableLimits::default())?;
        let columns: Vec<_> = schema.columns.iter().map(schema::column_def).collect();
        self.store
            .create_table(&record, &columns, &schema.unique)
            .await?;
        self.forget_tables();
        tracing::info!(table = %schema.name, "table created");
        Ok(self.description(&record, &schema))
    }

    /// Drops `drop`, then creates each table of `create` with its rows (a row without `_owner`
    /// is this peer's) and sets `meta`, in one transaction: all of it happens or none.
    pub async fn replace_tables(
        &self,
        drop: Vec<String>,
        create: Vec<(TableSchema, TableLimits, Vec<NewRow>)>,
        meta: Vec<(String, Option<String>)>,
    ) -> Result<(), DataError> {
        let mut tables = Vec::new();
        for (schema, limits, rows) in create {
            tables.push(NewTable {
                record: record_for(&schema, limits)?,
                columns: schema.columns.iter().map(schema::column_def).collect(),
                unique: schema.unique.clone(),
                rows,
            });
        }
        let result = self
            .store
            .replace_tables(&Replacement {
                drop,
                create: tables,
                owner: self.me.to_base58(),
                meta,
            })
            .await;
        self.forget_tables();
        result.map_err(|error| match error {
            StoreError::Constraint(message) => {
                DataError::BadRequest(format!("a row was refused: {message}"))
            }
            other => other.into(),
        })
    }

    /// A `_meta` value of the database.
    pub async fn meta(&self, key: &str) -> Result<Option<String>, DataError> {
        Ok(self.store.meta(key).await?)
    }

    /// A table's schema and own limits, for the owner.
    pub async fn schema_of(&self, table: &str) -> Result<(TableSchema, TableLimits), DataError> {
        let table = self.table(&self.store, table).await?;
        Ok((table.schema.clone(), table.record.limits))
    }

    /// Every row of a table in `_id` order, the owner's view, at most `max` (more is an error
    /// naming the table).
    pub async fn all_rows(&self, table: &str, max: usize) -> Result<Vec<Row>, DataError> {
        let mut rows: Vec<Row> = Vec::new();
        loop {
            let after = rows
                .last()
                .and_then(|row| row.get("_id"))
                .and_then(|id| id.as_i64())
                .unwrap_or(0);
            let mut query = super::op::Query::table(table);
            query.filter = super::op::Filter::new("_id > ?", vec![after.into()]);
            query.order = Some("_id".into());
            query.limit = Some(crate::store::data::MAX_ROWS);
            let page = self.query(&Caller::Owner, &query).await?;
            let done = (page.len() as i64) < crate::store::data::MAX_ROWS;
            rows.extend(page);
            if rows.len() > max {
                return Err(DataError::BadRequest(format!(
                    "`{table}` has more than {max} rows"
                )));
            }
            if done {
                return Ok(rows);
            }
        }
    }

    /// Drops a table and its rows; its name.
    pub async fn drop_table(&self, table: &str) -> Result<String, DataError> {
        let table = self.table(&self.store, table).await?;
        let name = table.record.name.clone();
        self.store.drop_table(&name).await?;
        self.changed(&name, "drop-table");
        Ok(name)
    }

    /// Renames a table to `new_name`; its old name.
    pub async fn rename_table(&self, table: &str, new_name: &str) -> Result<String, DataError> {
        let table = self.table(&self.store, table).await?;
        let name = table.record.name.clone();
        schema::check_name(new_name, "table").map_err(DataError::BadRequest)?;
        if self.store.table(new_name).await?.is_some()
            || !self.store.columns(new_name).await?.is_empty()
        {
            return Err(DataError::BadRequest(format!(
                "a table `{new_name}` already exists"
            )));
        }
        let mut schema = table.schema.clone();
        schema.name = new_name.to_owned();
        self.store
            .rename_table(&name, new_name, &schema_json(&schema)?)
            .await?;
        self.changed(&name, "rename-table");
        Ok(name)
    }

    /// Adds a checked column (a required one needs a default: the table may have rows).
    pub async fn add_column(
        &self,
        table: &str,
        column: ColumnSchema,
    ) -> Result<TableDescription, DataError> {
        let table = self.table(&self.store, table).await?;
        let name = table.record.name.clone();
        let mut schema = table.schema.clone();
        if schema.columns.len() >= schema::MAX_COLUMNS {
            return Err(DataError::BadRequest(format!(
                "`{name}` already has {} columns of its own; at most {} are allowed",
                schema.columns.len(),
                schema::MAX_COLUMNS
            )));
        }
        if schema
            .columns
            .iter()
            .any(|c| c.name.eq_ignore_ascii_case(&column.name))
        {
            return Err(DataError::BadRequest(format!(
                "`{name}` already has a column `{}`",
                column.name
            )));
        }
        if column.required && column.default.is_none() {
            return Err(DataError::BadRequest(format!(
                "a required column added to a table with rows needs a default; give `{}` one",
                column.name
            )));
        }
        let definition = schema::column_def(&column);
        schema.columns.push(column);
        self.store
            .add_column(&name, &definition, &schema_json(&schema)?)
            .await?;
        self.changed(&name, "add-column");
        Ok(self.description(&table.record, &schema))
    }

    /// Drops one of the table's own columns (never its last).
    pub async fn drop_column(
        &self,
        table: &str,
        column: &str,
    ) -> Result<TableDescription, DataError> {
        let table = self.table(&self.store, table).await?;
        let name = table.record.name.clone();
        let mut schema = table.schema.clone();
        let Some(index) = schema.columns.iter().position(|c| c.name == column) else {
            return Err(DataError::BadRequest(format!(
                "`{name}` has no column `{column}` that can be dropped"
            )));
        };
        if schema.columns.len() == 1 {
            return Err(DataError::BadRequest(
                "a table keeps at least one column of its own; drop the table instead".into(),
            ));
        }
        if schema.unique.iter().flatten().any(|c| c == column) {
            return Err(DataError::BadRequest(format!(
                "`{column}` is part of a unique set of `{name}`; it cannot be dropped"
            )));
        }
        schema.columns.remove(index);
        self.store
            .drop_column(&name, column, &schema_json(&schema)?)
            .await?;
        self.changed(&name, "drop-column");
        Ok(self.description(&table.record, &schema))
    }

    /// Sets the table's policies; its name.
    pub async fn set_policy(&self, table: &str, access: Access) -> Result<String, DataError> {
        let table = self.table(&self.store, table).await?;
        let name = table.record.name.clone();
        let mut schema = table.schema.clone();
        schema.access = access.clone();
        self.store
            .set_policies(
                &name,
                [
                    access.read.as_str(),
                    access.insert.as_str(),
                    access.update.as_str(),
                    access.delete.as_str(),
                ],
                &schema_json(&schema)?,
            )
            .await?;
        self.changed(&name, "set-policy");
        Ok(name)
    }

    /// Sets the table's own quotas on other peers' rows (`None`: the peer's default).
    pub async fn set_limits(
        &self,
        table: &str,
        limits: TableLimits,
    ) -> Result<TableDescription, DataError> {
        let table = self.table(&self.store, table).await?;
        let name = table.record.name.clone();
        self.store.set_limits(&name, limits).await?;
        let record = TableRecord {
            limits,
            ..table.record.clone()
        };
        self.changed(&name, "set-limits");
        Ok(self.description(&record, &table.schema))
    }

    /// Runs one read-only statement of the owner's, within [`SQL_BUDGET`].
    pub async fn sql(&self, sql: &str) -> Result<SqlRows, DataError> {
        let deadline = std::time::Instant::now() + SQL_BUDGET;
        let (rows, truncated) = self
            .store
            .read_only_query(sql, MAX_SQL_ROWS, deadline)
            .await
            .map_err(|error| match error {
                StoreError::OutOfTime => DataError::BadRequest(format!(
                    "the statement ran out of its time budget ({} s) and was stopped",
                    SQL_BUDGET.as_secs()
                )),
                other => other.into(),
            })?;
        Ok(SqlRows { rows, truncated })
    }

    /// After a change to a table: the cached schemas are stale.
    fn changed(&self, table: &str, op: &str) {
        self.forget_tables();
        tracing::info!(table = %table, op = %op, "table changed");
    }
}

/// The `_tables` entry of a new table.
fn record_for(schema: &TableSchema, limits: TableLimits) -> Result<TableRecord, DataError> {
    Ok(TableRecord {
        name: schema.name.clone(),
        schema: schema_json(schema)?,
        read_policy: schema.access.read.as_str().into(),
        insert_policy: schema.access.insert.as_str().into(),
        update_policy: schema.access.update.as_str().into(),
        delete_policy: schema.access.delete.as_str().into(),
        created_ms: crate::services::hub::unix_ms(),
        limits,
    })
}

fn schema_json(schema: &TableSchema) -> Result<String, DataError> {
    serde_json::to_string(schema).map_err(|e| DataError::Internal(e.to_string()))
}
