//! Statements written by others: the owner's SQL box (read-only, user tables only) and site
//! scripts' queries and writes on their own tables, each stopped at its caller's deadline.

use super::*;

impl DataStore {
    /// Runs one read-only statement (naming user tables only) on a read-only connection, stopped
    /// at `deadline`; at most `max_rows` rows (and whether more were cut off).
    pub async fn read_only_query(
        &self,
        sql: &str,
        max_rows: usize,
        deadline: Instant,
    ) -> Result<(Vec<Map<String, Json>>, bool), StoreError> {
        let tables = self.user_table_names().await?;
        filter::check_read_only(sql, &tables).map_err(|e| StoreError::Constraint(e.0))?;
        self.run_read_only(sql, &[], max_rows, deadline).await
    }

    /// A site script's `SELECT` (no system tables) with bound `args`, on a read-only connection,
    /// stopped at `deadline`.
    pub async fn user_query(
        &self,
        sql: &str,
        args: &[SqlValue],
        max_rows: usize,
        deadline: Instant,
    ) -> Result<(Vec<Map<String, Json>>, bool), StoreError> {
        let tables = self.user_table_names().await?;
        filter::check_user_query(sql, &tables).map_err(|e| StoreError::Constraint(e.0))?;
        self.run_read_only(sql, args, max_rows, deadline).await
    }

    /// A site script's `INSERT`/`UPDATE`/`DELETE` on its own tables, stopped (and so rolled
    /// back) at `deadline`; returns rows changed.
    pub async fn user_write(
        &self,
        sql: &str,
        args: &[SqlValue],
        deadline: Instant,
    ) -> Result<u64, StoreError> {
        let tables = self.user_table_names().await?;
        filter::check_user_write(sql, &tables).map_err(|e| StoreError::Constraint(e.0))?;
        let mut connection = self.lease_until(&self.pool, deadline).await?;
        let done = bind_all(sqlx::query(AssertSqlSafe(sql.to_owned())), args)
            .execute(&mut *connection)
            .await;
        connection.finish();
        Ok(done.map_err(|e| self.failed(e))?.rows_affected())
    }

    /// A connection of `pool` for statements written by others, stopped at `deadline`.
    pub(super) async fn lease_until(
        &self,
        pool: &SqlitePool,
        deadline: Instant,
    ) -> Result<crate::store::deadline::Lease, StoreError> {
        crate::store::deadline::lease(pool, Some(deadline), &self.stopping, &self.cancelled)
            .await
            .map_err(|error| match error {
                sqlx::Error::PoolTimedOut => StoreError::OutOfTime,
                other => self.failed(other),
            })
    }

    pub(super) async fn run_read_only(
        &self,
        sql: &str,
        args: &[SqlValue],
        max_rows: usize,
        deadline: Instant,
    ) -> Result<(Vec<Map<String, Json>>, bool), StoreError> {
        let mut connection = self.lease_until(&self.read_only, deadline).await?;
        let rows =
            bind_all(sqlx::query(AssertSqlSafe(sql.to_owned())), args).fetch(&mut *connection);
        let read = read_rows(rows, max_rows, |e| self.failed(e)).await;
        connection.release().await;
        read
    }
}
