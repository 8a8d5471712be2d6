//! Replacing a set of user tables in one transaction: an app template's tables (dropped,
//! created, seeded) and the record of the active template in `_meta`, so applying a template
//! either happens whole or not at all.

use super::*;

/// A table to create with its rows.
#[derive(Debug, Clone)]
pub struct NewTable {
    pub record: TableRecord,
    pub columns: Vec<ColumnDef>,
    /// Column sets no two rows may share.
    pub unique: Vec<Vec<String>>,
    /// Column values per row; a row without `_owner` gets `owner`.
    pub rows: Vec<Vec<(String, SqlValue)>>,
}

/// What one replacement does.
#[derive(Debug, Clone, Default)]
pub struct Replacement {
    /// Tables dropped first.
    pub drop: Vec<String>,
    pub create: Vec<NewTable>,
    /// The `_owner` of rows that name none (this peer's ID).
    pub owner: String,
    /// `_meta` entries set (`None` removes the key).
    pub meta: Vec<(String, Option<String>)>,
}

impl DataStore {
    /// A `_meta` value.
    pub async fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT value FROM _meta WHERE key = ?1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Drops, creates and fills tables and sets `_meta`, all in one transaction.
    pub async fn replace_tables(&self, change: &Replacement) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for name in &change.drop {
            ddl::drop_in(&mut tx, name).await?;
        }
        for table in &change.create {
            create_in(&mut tx, &table.record, &table.columns, &table.unique).await?;
            for row in &table.rows {
                let mut values = row.clone();
                if !values.iter().any(|(name, _)| name == "_owner") {
                    values.push(("_owner".into(), SqlValue::Text(change.owner.clone())));
                }
                let names: Vec<String> = values.iter().map(|(n, _)| quote_ident(n)).collect();
                let sql = format!(
                    "INSERT INTO {} ({}) VALUES ({})",
                    quote_ident(&table.record.name),
                    names.join(", "),
                    vec!["?"; values.len()].join(", ")
                );
                let args: Vec<SqlValue> = values.into_iter().map(|(_, v)| v).collect();
                bind_all(sqlx::query(AssertSqlSafe(sql)), &args)
                    .execute(&mut *tx)
                    .await
                    .map_err(constraint_or)?;
            }
        }
        for (key, value) in &change.meta {
            match value {
                Some(value) => {
                    sqlx::query(
                        "INSERT INTO _meta (key, value) VALUES (?1, ?2) \
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    )
                    .bind(key)
                    .bind(value)
                    .execute(&mut *tx)
                    .await?;
                }
                None => {
                    sqlx::query("DELETE FROM _meta WHERE key = ?1")
                        .bind(key)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        tx.commit().await?;
        self.epoch.changed();
        Ok(())
    }
}
