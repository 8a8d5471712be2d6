//! Changes to the shape of user tables: renaming and dropping tables, adding and dropping
//! columns, and access policies — each with its registry entry in `_tables` kept in step.

use super::*;

impl DataStore {
    /// Renames a table (its trigger and registry entry follow); `schema` is the new schema JSON.
    pub async fn rename_table(&self, old: &str, new: &str, schema: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        usage::untrack_usage(&mut tx, old).await?;
        sqlx::query(AssertSqlSafe(format!(
            "ALTER TABLE {} RENAME TO {}",
            quote_ident(old),
            quote_ident(new)
        )))
        .execute(&mut *tx)
        .await
        .map_err(constraint_or)?;
        sqlx::query(AssertSqlSafe(format!(
            "DROP TRIGGER IF EXISTS {}",
            quote_ident(&format!("_updated_at_{old}"))
        )))
        .execute(&mut *tx)
        .await?;
        sqlx::query(AssertSqlSafe(updated_at_trigger(new)))
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE _tables SET name = ?1, schema = ?2 WHERE name = ?3")
            .bind(new)
            .bind(schema)
            .bind(old)
            .execute(&mut *tx)
            .await?;
        usage::track_usage(&mut tx, new).await?;
        sqlx::query("DELETE FROM _usage WHERE tbl = ?1")
            .bind(old)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.epoch.changed();
        Ok(())
    }

    /// Drops a table and its registry entry.
    pub async fn drop_table(&self, name: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        drop_in(&mut tx, name).await?;
        tx.commit().await?;
        self.epoch.changed();
        Ok(())
    }

    /// Adds a column; `schema` is the new schema JSON.
    pub async fn add_column(
        &self,
        table: &str,
        column: &ColumnDef,
        schema: &str,
    ) -> Result<(), StoreError> {
        self.alter(table, format!("ADD COLUMN {}", column_sql(column)), schema)
            .await
    }

    /// Drops a column; `schema` is the new schema JSON.
    pub async fn drop_column(
        &self,
        table: &str,
        column: &str,
        schema: &str,
    ) -> Result<(), StoreError> {
        self.alter(
            table,
            format!("DROP COLUMN {}", quote_ident(column)),
            schema,
        )
        .await
    }

    /// `ALTER TABLE <table> <change>` and the new schema JSON, in one transaction; the usage
    /// triggers (which name every column, so SQLite would refuse to drop one) are made again for
    /// the new columns, and the usage counted again.
    pub(super) async fn alter(
        &self,
        table: &str,
        change: String,
        schema: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        usage::untrack_usage(&mut tx, table).await?;
        sqlx::query(AssertSqlSafe(format!(
            "ALTER TABLE {} {change}",
            quote_ident(table)
        )))
        .execute(&mut *tx)
        .await
        .map_err(constraint_or)?;
        usage::track_usage(&mut tx, table).await?;
        set_schema(&mut tx, table, schema).await?;
        tx.commit().await?;
        self.epoch.changed();
        Ok(())
    }

    /// Sets a table's policies (`read`, `insert`, `update`, `delete`) and schema JSON.
    pub async fn set_policies(
        &self,
        table: &str,
        policies: [&str; 4],
        schema: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE _tables SET read_policy = ?1, insert_policy = ?2, update_policy = ?3, \
             delete_policy = ?4, schema = ?5 WHERE name = ?6",
        )
        .bind(policies[0])
        .bind(policies[1])
        .bind(policies[2])
        .bind(policies[3])
        .bind(schema)
        .bind(table)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The names of the registered user tables: what a statement written by others may name.
    pub(super) async fn user_table_names(&self) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar("SELECT name FROM _tables")
            .fetch_all(&self.pool)
            .await
    }
}

/// Drops a table, its registry entry and its usage inside `tx`.
pub(super) async fn drop_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    name: &str,
) -> Result<(), StoreError> {
    sqlx::query(AssertSqlSafe(format!("DROP TABLE {}", quote_ident(name))))
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM _tables WHERE name = ?1")
        .bind(name)
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM _usage WHERE tbl = ?1")
        .bind(name)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
