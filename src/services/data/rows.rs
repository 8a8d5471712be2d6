//! Rows: queries, counts, inserts, updates and deletes under each table's policies, what the
//! caller may do (`role`), and the owner's import of many rows at once.

use serde::Serialize;
use serde_json::{Map, Value as Json};

use super::op::{Action, Filter, Query};
use super::{Caller, DataError, DataService, SYSTEM_COLUMNS, schema};
use crate::store::data::filter::{self, Where};
use crate::store::data::{DataStore, MAX_ROWS, Select, SqlValue, StoreError, Usage};

/// Rows a query returns when it does not say.
const DEFAULT_LIMIT: i64 = 100;
/// Values `args` may hold.
const MAX_ARGS: usize = 1000;

/// One row: its columns' values by name.
pub type Row = Map<String, Json>;

/// Who the caller is on this peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Visitor,
}

/// What the caller may do with a table's rows, for one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// Every row.
    All,
    /// Its own rows.
    Own,
    None,
}

/// What the caller may do with a table's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Permissions {
    pub read: Permission,
    pub insert: Permission,
    pub update: Permission,
    pub delete: Permission,
}

/// `role`: who the caller is here, by which peer ID, on which peer; with a table, what it may
/// do with its rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleAnswer {
    pub role: Role,
    #[serde(rename = "peerId")]
    pub peer_id: String,
    #[serde(rename = "hostId")]
    pub host_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Permissions>,
}

/// The one system table other peers may read: the open groups this peer hosts.
pub const OPEN_GROUPS: &str = "_groups";

impl DataService {
    /// Rows of a table the caller may read (its own only, under an `owner` read policy).
    pub async fn query(&self, caller: &Caller, query: &Query) -> Result<Vec<Row>, DataError> {
        self.select(caller, query, false).await
    }

    /// The first row a query finds, if any (its `limit` is ignored).
    pub async fn query_one(
        &self,
        caller: &Caller,
        query: &Query,
    ) -> Result<Option<Row>, DataError> {
        Ok(self.select(caller, query, true).await?.into_iter().next())
    }

    async fn select(
        &self,
        caller: &Caller,
        query: &Query,
        one: bool,
    ) -> Result<Vec<Row>, DataError> {
        if query.table == OPEN_GROUPS {
            return self.open_groups(query, one);
        }
        let store = self.store_for(caller);
        let table = self.table(&store, &query.table).await?;
        let (record, schema) = (&table.record, &table.schema);
        let owner = self.allow(caller, &table, Action::Read)?;
        let all = columns_of(schema);
        let mut columns = Vec::new();
        for wanted in &query.columns {
            match all.iter().find(|c| c.eq_ignore_ascii_case(wanted)) {
                Some(column) => columns.push(column.clone()),
                None => {
                    return Err(DataError::BadRequest(format!(
                        "unknown column `{wanted}`; this table has: {}",
                        all.join(", ")
                    )));
                }
            }
        }
        if columns.is_empty() {
            // Named, never `*`: a statement cached before a column change would misread rows.
            columns = all.clone();
        }
        let (filter, args) = filter_of(&query.filter, &all)?;
        let order = match query.order.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => {
                Some(filter::parse_order(text, &all).map_err(|e| DataError::BadRequest(e.0))?)
            }
        };
        let limit = if one {
            1
        } else {
            match query.limit {
                None => DEFAULT_LIMIT,
                Some(limit) if (1..=MAX_ROWS).contains(&limit) => limit,
                Some(limit) => {
                    return Err(DataError::BadRequest(format!(
                        "limit {limit} is out of range: ask for 1 to {MAX_ROWS} rows"
                    )));
                }
            }
        };
        let offset = query.offset.unwrap_or(0);
        if offset < 0 {
            return Err(DataError::BadRequest("offset must not be negative".into()));
        }
        Ok(store
            .select(&Select {
                table: record.name.clone(),
                columns,
                filter,
                owner,
                args,
                order,
                limit,
                offset,
            })
            .await?)
    }

    /// `_groups`: the open groups this peer hosts, whole (no filter, no order), a slice of them
    /// by `limit` and `offset`, with the columns asked for.
    fn open_groups(&self, query: &Query, one: bool) -> Result<Vec<Row>, DataError> {
        use crate::services::groups::GROUP_COLUMNS;
        let given = |text: &Option<String>| text.as_deref().is_some_and(|t| !t.trim().is_empty());
        if given(&query.filter.condition) || given(&query.order) {
            return Err(DataError::BadRequest(format!(
                "`{OPEN_GROUPS}` lists the open groups whole: no `where` or `order` (filter them \
                 in the page)"
            )));
        }
        for wanted in &query.columns {
            if !GROUP_COLUMNS.contains(&wanted.as_str()) {
                return Err(DataError::BadRequest(format!(
                    "unknown column `{wanted}`; `{OPEN_GROUPS}` has: {}",
                    GROUP_COLUMNS.join(", ")
                )));
            }
        }
        let limit = match (one, query.limit) {
            (true, _) => 1,
            (false, None) => DEFAULT_LIMIT,
            (false, Some(limit)) if (1..=MAX_ROWS).contains(&limit) => limit,
            (false, Some(limit)) => {
                return Err(DataError::BadRequest(format!(
                    "limit {limit} is out of range: ask for 1 to {MAX_ROWS} rows"
                )));
            }
        };
        let offset = query.offset.unwrap_or(0);
        if offset < 0 {
            return Err(DataError::BadRequest("offset must not be negative".into()));
        }
        let rows = self
            .groups
            .as_ref()
            .map(|groups| groups.open_groups())
            .unwrap_or_default();
        Ok(rows
            .into_iter()
            .skip(offset as usize)
            .take(limit as usize)
            .map(|row| match query.columns.is_empty() {
                true => row,
                false => row
                    .into_iter()
                    .filter(|(column, _)| query.columns.contains(column))
                    .collect(),
            })
            .collect())
    }

    /// How many rows of `table` the caller may read match `filter`.
    pub async fn count(
        &self,
        caller: &Caller,
        table: &str,
        filter: &Filter,
    ) -> Result<i64, DataError> {
        let store = self.store_for(caller);
        let table = self.table(&store, table).await?;
        let (record, schema) = (&table.record, &table.schema);
        let owner = self.allow(caller, &table, Action::Read)?;
        let (filter, args) = filter_of(filter, &columns_of(schema))?;
        Ok(store
            .count(&record.name, filter.as_ref(), owner.as_deref(), &args)
            .await?)
    }

    /// Inserts a row (`data`: column values by name) stamped with the caller; its `_id`.
    /// Another peer's insert is held to its rate and the table's quotas.
    pub async fn insert(
        &self,
        caller: &Caller,
        table: &str,
        data: &Json,
    ) -> Result<i64, DataError> {
        let store = self.store_for(caller);
        let table = self.table(&store, table).await?;
        let (record, schema) = (&table.record, &table.schema);
        self.allow(caller, &table, Action::Insert)?;
        let mut values = schema::check_row(schema, data, true).map_err(DataError::BadRequest)?;
        let (owner, email) = match caller {
            Caller::Owner => (self.me.to_base58(), self.own_email.borrow().clone()),
            Caller::Peer(peer) => (
                peer.to_base58(),
                (self.lookup)(peer)
                    .await
                    .and_then(|known| known.verified_email)
                    .unwrap_or_default(),
            ),
        };
        let Caller::Peer(peer) = caller else {
            values.push(("_owner".into(), SqlValue::Text(owner)));
            values.push(("_owner_email".into(), SqlValue::Text(email)));
            return Ok(store.insert(&record.name, &values).await?);
        };
        if schema.require_email && email.is_empty() {
            return Err(DataError::Forbidden(format!(
                "`{}` takes rows only from peers whose email a hub vouched for: set profile.email and announce it through a hub",
                record.name
            )));
        }
        self.guard.check_rate(peer)?;
        let row_bytes = values.iter().map(|(_, value)| value.stored_bytes()).sum();
        values.push(("_owner".into(), SqlValue::Text(owner)));
        values.push(("_owner_email".into(), SqlValue::Text(email)));
        let _turn = self.turn(&store).await?;
        let (mine, all) = store.usage(&record.name, &peer.to_base58()).await?;
        self.guard.limits.for_table(&record.limits).check(
            &record.name,
            peer,
            mine,
            all,
            row_bytes,
        )?;
        Ok(store.insert(&record.name, &values).await?)
    }

    /// Other peers' quota checks and writes take turns; waiting for one counts against the
    /// request's budget.
    async fn turn(&self, store: &DataStore) -> Result<tokio::sync::MutexGuard<'_, ()>, DataError> {
        let Some(deadline) = store.deadline() else {
            return Ok(self.guard.turn.lock().await);
        };
        tokio::time::timeout_at(deadline.into(), self.guard.turn.lock())
            .await
            .map_err(|_| StoreError::Busy(self.guard.limits.timeout).into())
    }

    /// Changes the columns `data` names in row `id`; rows changed (one). Another peer changes
    /// only its own rows under an `owner` policy, and within the table's byte quotas.
    pub async fn update(
        &self,
        caller: &Caller,
        table: &str,
        id: i64,
        data: &Json,
    ) -> Result<u64, DataError> {
        let store = self.store_for(caller);
        let table = self.table(&store, table).await?;
        let (record, schema) = (&table.record, &table.schema);
        let owner = self.allow(caller, &table, Action::Update)?;
        let values = schema::check_row(schema, data, false).map_err(DataError::BadRequest)?;
        let _turn = match caller {
            Caller::Owner => None,
            Caller::Peer(peer) => {
                // Whatever the values replace, they must fit as if they were added: a visitor
                // cannot grow small rows past the byte quotas.
                let turn = self.turn(&store).await?;
                let (mine, all) = store.usage(&record.name, &peer.to_base58()).await?;
                let grown = values.iter().map(|(_, value)| value.stored_bytes()).sum();
                let quotas = self.guard.limits.for_table(&record.limits);
                let counted = |usage: Usage| Usage {
                    // The row exists already: it is not one more.
                    rows: usage.rows - 1,
                    ..usage
                };
                quotas.check(&record.name, peer, counted(mine), counted(all), grown)?;
                Some(turn)
            }
        };
        let changed = store
            .update(&record.name, id, &values, owner.as_deref())
            .await?;
        if changed == 0 {
            return Err(no_such_row(&record.name, id, owner.is_some()));
        }
        Ok(changed)
    }

    /// Deletes row `id`; rows deleted (one). Another peer deletes only its own rows under an
    /// `owner` policy.
    pub async fn delete(&self, caller: &Caller, table: &str, id: i64) -> Result<u64, DataError> {
        let store = self.store_for(caller);
        let table = self.table(&store, table).await?;
        let record = &table.record;
        let owner = self.allow(caller, &table, Action::Delete)?;
        let deleted = store.delete(&record.name, id, owner.as_deref()).await?;
        if deleted == 0 {
            return Err(no_such_row(&record.name, id, owner.is_some()));
        }
        Ok(deleted)
    }

    /// Who the caller is here, and what it may do with `table` when one is named.
    pub async fn role(
        &self,
        caller: &Caller,
        table: Option<&str>,
    ) -> Result<RoleAnswer, DataError> {
        let (role, peer_id) = match caller {
            Caller::Owner => (Role::Owner, self.me.to_base58()),
            Caller::Peer(peer) => (Role::Visitor, peer.to_base58()),
        };
        let mut answer = RoleAnswer {
            role,
            peer_id,
            host_id: self.me.to_base58(),
            permissions: None,
        };
        if let Some(table) = table {
            let table = self.table(&self.store_for(caller), table).await?;
            let may = |action| match self.allow(caller, &table, action) {
                Ok(None) => Permission::All,
                Ok(Some(_)) => Permission::Own,
                Err(_) => Permission::None,
            };
            answer.permissions = Some(Permissions {
                read: may(Action::Read),
                insert: may(Action::Insert),
                update: may(Action::Update),
                delete: may(Action::Delete),
            });
        }
        Ok(answer)
    }

    /// Checks rows for `table` and, unless `dry_run`, inserts the good ones as the owner; one
    /// outcome per row (the new `_id`, or what is wrong with it).
    pub async fn import_rows(
        &self,
        table: &str,
        rows: &[Json],
        dry_run: bool,
    ) -> Result<Vec<Result<Option<i64>, String>>, DataError> {
        let table = self.table(&self.store, table).await?;
        let (me, email) = (self.me.to_base58(), self.own_email.borrow().clone());
        let mut outcomes = Vec::with_capacity(rows.len());
        for row in rows {
            let mut values = match schema::check_row(&table.schema, row, true) {
                Ok(values) => values,
                Err(problem) => {
                    outcomes.push(Err(problem));
                    continue;
                }
            };
            if dry_run {
                outcomes.push(Ok(None));
                continue;
            }
            values.push(("_owner".into(), SqlValue::Text(me.clone())));
            values.push(("_owner_email".into(), SqlValue::Text(email.clone())));
            match self.store.insert(&table.record.name, &values).await {
                Ok(id) => outcomes.push(Ok(Some(id))),
                Err(StoreError::Constraint(message)) => outcomes.push(Err(message)),
                Err(other) => return Err(other.into()),
            }
        }
        Ok(outcomes)
    }
}

/// Every column of a table: the system columns, then its own.
fn columns_of(schema: &schema::TableSchema) -> Vec<String> {
    let mut columns: Vec<String> = SYSTEM_COLUMNS.into_iter().map(str::to_owned).collect();
    columns.extend(schema.columns.iter().map(|c| c.name.clone()));
    columns
}

/// The checked filter and its bound arguments.
fn filter_of(
    filter: &Filter,
    columns: &[String],
) -> Result<(Option<Where>, Vec<SqlValue>), DataError> {
    if filter.args.len() > MAX_ARGS {
        return Err(DataError::BadRequest(format!(
            "`args` holds at most {MAX_ARGS} values"
        )));
    }
    let args = filter
        .args
        .iter()
        .enumerate()
        .map(|(index, value)| arg_value(index, value))
        .collect::<Result<Vec<_>, _>>()?;
    let condition = match filter.condition.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => {
            Some(filter::parse_where(text, columns).map_err(|e| DataError::BadRequest(e.0))?)
        }
    };
    let wanted = condition.as_ref().map_or(0, |f| f.placeholders);
    if wanted != args.len() {
        return Err(DataError::BadRequest(format!(
            "the filter has {wanted} `?` placeholders but `args` holds {} values",
            args.len()
        )));
    }
    Ok((condition, args))
}

/// A filter argument as a bound value.
fn arg_value(index: usize, value: &Json) -> Result<SqlValue, DataError> {
    Ok(match value {
        Json::Null => SqlValue::Null,
        Json::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Json::Number(n) => match n.as_i64() {
            Some(i) => SqlValue::Integer(i),
            None => SqlValue::Real(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => SqlValue::Text(s.clone()),
        _ => {
            return Err(DataError::BadRequest(format!(
                "args[{index}] must be a string, number, boolean or null"
            )));
        }
    })
}

fn no_such_row(table: &str, id: i64, owned_only: bool) -> DataError {
    if owned_only {
        DataError::NotFound(format!(
            "`{table}` has no row with _id {id} that belongs to you"
        ))
    } else {
        DataError::NotFound(format!("`{table}` has no row with _id {id}"))
    }
}
