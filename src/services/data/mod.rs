//! The peer's data API: the operations of `/goop/data/1.0.0` and `/api/data/<op>`, with the access
//! policies of each table applied to the caller.
//!
//! The caller is either the peer's owner (the console, or this peer's own sites) or another peer,
//! identified by the libp2p connection it came in on. For another peer: `local` tables are
//! closed; `owner` means its own rows (reads see only them, updates and deletes touch only them);
//! `group` needs a group membership; `open` is every row. Inserts are checked against the schema
//! and stamped `_owner` = the caller and `_owner_email` = the caller's email only if a hub vouched
//! for that peer. Schema changes and `_` tables are never reachable by other peers. Other peers'
//! inserts are held to a rate and to quotas per table ([`limits`]). Another peer's request runs
//! on the visitors' connections, never the owner's, and its statements stop at its time budget
//! (`data.timeout_seconds`), or as soon as its future is dropped (the caller gone).

pub mod limits;
pub mod schema;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use crate::store::data::filter::{self, Where};
use crate::store::data::{
    DataStore, MAX_ROWS, Select, SqlValue, StoreError, TableLimits, TableRecord,
};
use limits::{InsertGuard, InsertLimits};
use schema::{Access, Policy, TableSchema};

/// Longest request line of the protocol.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Rows a query returns when it does not say.
const DEFAULT_LIMIT: i64 = 100;
/// Values `args` may hold.
const MAX_ARGS: usize = 1000;

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// This peer's owner.
    Owner,
    /// Another peer, by its peer ID.
    Peer(String),
}

/// One request (the JSON line of `/goop/data/1.0.0`; the body of `/api/data/<op>` without `op`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DataRequest {
    #[serde(default)]
    pub op: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Json>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Json>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Json>,
    /// `create-table`: the schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Json>,
    /// `rename-table`: the new name; `drop-column`: the column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `add-column`: the column (an object or a plain definition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<Json>,
    /// `set-policy`: `{read, insert, update, delete}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<Json>,
    /// `sql`: one read-only statement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    /// `set-limits`: the table's own quotas (`max_rows_per_caller`, `max_bytes_per_caller`,
    /// `max_rows`, `max_bytes`; null or absent: the peer's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Json>,
}

/// The columns the peer keeps in every user table.
pub const SYSTEM_COLUMNS: [&str; 5] = [
    "_id",
    "_owner",
    "_owner_email",
    "_created_at",
    "_updated_at",
];

/// Rows the owner's read-only SQL returns at most.
pub const MAX_SQL_ROWS: usize = 1000;
/// How long one statement of the owner's read-only SQL may run before SQLite stops it.
pub const SQL_BUDGET: std::time::Duration = std::time::Duration::from_secs(5);

/// Why an operation failed; each maps to an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    NotEnabled(String),
    #[error("{0}")]
    TooMany(String),
    /// A quota on what other peers store is reached.
    #[error("{0}")]
    Quota(String),
    #[error("{0}")]
    Internal(String),
}

impl DataError {
    /// The HTTP status of this error (also sent as `code` on the wire).
    pub fn code(&self) -> u16 {
        match self {
            DataError::BadRequest(_) => 400,
            DataError::Forbidden(_) => 403,
            DataError::NotFound(_) => 404,
            DataError::TooLarge(_) => 413,
            DataError::NotEnabled(_) => 501,
            DataError::TooMany(_) => 429,
            DataError::Quota(_) => 507,
            DataError::Internal(_) => 500,
        }
    }

    /// Rebuilds an error from a wire `code` and message.
    pub fn from_code(code: u16, message: String) -> DataError {
        match code {
            403 => DataError::Forbidden(message),
            404 => DataError::NotFound(message),
            413 => DataError::TooLarge(message),
            501 => DataError::NotEnabled(message),
            429 => DataError::TooMany(message),
            507 => DataError::Quota(message),
            500 => DataError::Internal(message),
            _ => DataError::BadRequest(message),
        }
    }
}

impl From<StoreError> for DataError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::TooLarge => DataError::TooLarge(error.to_string()),
            StoreError::Constraint(message) => DataError::BadRequest(message),
            StoreError::OutOfTime | StoreError::OverBudget(_) => {
                DataError::BadRequest(error.to_string())
            }
            StoreError::Busy(_) => DataError::TooMany(error.to_string()),
            StoreError::Stopping => DataError::Internal(error.to_string()),
            StoreError::Cancelled => DataError::BadRequest(error.to_string()),
            StoreError::Sql(err) => {
                tracing::error!("data operation failed: {err}");
                DataError::Internal("the database could not do that; see the peer's log".into())
            }
        }
    }
}

impl From<sqlx::Error> for DataError {
    fn from(error: sqlx::Error) -> Self {
        StoreError::Sql(error).into()
    }
}

/// The wire form of a result: `{"ok": true, "data": …}` or `{"ok": false, "error": …, "code": …}`.
pub fn reply(result: &Result<Json, DataError>) -> Json {
    match result {
        Ok(data) => json!({ "ok": true, "data": data }),
        Err(error) => json!({ "ok": false, "error": error.to_string(), "code": error.code() }),
    }
}

/// Reads a wire reply back into a result.
pub fn from_reply(reply: &Json) -> Result<Json, DataError> {
    if reply["ok"] == true {
        return Ok(reply.get("data").cloned().unwrap_or(Json::Null));
    }
    let message = reply["error"]
        .as_str()
        .unwrap_or("the peer refused without saying why")
        .to_owned();
    let code = reply["code"].as_u64().unwrap_or(400);
    Err(DataError::from_code(
        u16::try_from(code).unwrap_or(400),
        message,
    ))
}

/// What this peer knows of another: its announced label, and its email if a hub vouched for it.
pub type PeerLookup = Arc<
    dyn Fn(&str) -> futures_util::future::BoxFuture<'static, Option<PeerIdentity>> + Send + Sync,
>;

pub use crate::services::presence::peer_table::PeerIdentity;

/// The data API of one peer. Cloning is cheap.
#[derive(Clone)]
pub struct DataService {
    store: DataStore,
    /// This peer's ID (the `_owner` of the owner's rows).
    me: String,
    /// The owner's email, for the owner's rows.
    own_email: Arc<tokio::sync::watch::Receiver<String>>,
    lookup: PeerLookup,
    /// The peer's Lua functions, when `lua.enabled`.
    lua: Option<crate::services::lua::LuaEngine>,
    /// Registered tables by name, parsed once.
    tables: Arc<std::sync::RwLock<std::collections::HashMap<String, Arc<Table>>>>,
    /// The limits on other peers' inserts.
    guard: Arc<InsertGuard>,
}

/// A registered table and its parsed schema.
struct Table {
    record: TableRecord,
    schema: TableSchema,
}

/// Schemas kept parsed at most (the cache starts over beyond).
const MAX_CACHED_TABLES: usize = 256;

/// What an operation does, for the policy check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Read,
    Insert,
    Update,
    Delete,
}

impl DataService {
    pub fn new(
        store: DataStore,
        me: String,
        own_email: tokio::sync::watch::Receiver<String>,
        lookup: PeerLookup,
    ) -> Self {
        DataService {
            store,
            me,
            own_email: Arc::new(own_email),
            lookup,
            lua: None,
            tables: Arc::default(),
            guard: Arc::new(InsertGuard::new(InsertLimits::default())),
        }
    }

    /// The same service, holding other peers' inserts to `limits` (instead of the defaults).
    pub fn with_limits(mut self, limits: InsertLimits) -> Self {
        self.guard = Arc::new(InsertGuard::new(limits));
        self
    }

    /// The limits on other peers' inserts (the defaults of every table's quotas).
    pub fn limits(&self) -> &InsertLimits {
        &self.guard.limits
    }

    /// The Lua engine, when Lua is enabled.
    pub fn lua_engine(&self) -> Option<&crate::services::lua::LuaEngine> {
        self.lua.as_ref()
    }

    /// The same service, answering `lua-call` and `lua-list` with `engine`.
    pub fn with_lua(mut self, engine: crate::services::lua::LuaEngine) -> Self {
        self.lua = Some(engine);
        self
    }

    /// Runs one operation for `caller`. Another peer's runs on the visitors' connections within
    /// its time budget; dropping the future stops the statement it runs.
    pub async fn handle(&self, caller: &Caller, request: DataRequest) -> Result<Json, DataError> {
        let store = match caller {
            Caller::Owner => self.store.clone(),
            Caller::Peer(id) => {
                // Another peer's every request costs this peer work: each caller gets a steady
                // share, and a request a bounded time.
                self.guard.check_requests(id)?;
                self.store.for_visitor(self.guard.limits.timeout)
            }
        };
        let store = &store;
        match request.op.as_str() {
            "tables" => self.tables(store).await,
            "describe" => {
                let table = self.table(store, &request).await?;
                Ok(self.describe(&table.record, &table.schema))
            }
            "query" => self.query(caller, store, &request, false).await,
            "query-one" => self.query(caller, store, &request, true).await,
            "count" => self.count(caller, store, &request).await,
            "insert" => self.insert(caller, store, &request).await,
            "update" => self.update(caller, store, &request).await,
            "delete" => self.delete(caller, store, &request).await,
            "role" => self.role(caller, store, &request).await,
            "lua-call" | "lua-list" => self.lua(caller, &request).await,
            "create-table" | "drop-table" | "rename-table" | "add-column" | "drop-column"
            | "set-policy" | "set-limits" | "sql" => {
                if *caller != Caller::Owner {
                    return Err(DataError::Forbidden(format!(
                        "`{}` is for the peer's owner only",
                        request.op
                    )));
                }
                self.owner_op(&request).await
            }
            "" => Err(DataError::BadRequest("`op` is missing".into())),
            other => Err(DataError::BadRequest(format!(
                "unknown op `{other}`; ops: tables, describe, query, query-one, count, insert, \
                 update, delete, role, lua-call, lua-list; for the owner: create-table, \
                 drop-table, rename-table, add-column, drop-column, set-policy, set-limits, sql"
            ))),
        }
    }

    async fn tables(&self, store: &DataStore) -> Result<Json, DataError> {
        let tables = store.tables().await?;
        Ok(Json::Array(
            tables
                .iter()
                .map(|record| {
                    json!({
                        "name": record.name,
                        "access": access_of(record),
                    })
                })
                .collect(),
        ))
    }

    /// The registered table a request names, with its schema (read through `store` when it is
    /// not cached).
    async fn table(
        &self,
        store: &DataStore,
        request: &DataRequest,
    ) -> Result<Arc<Table>, DataError> {
        let Some(name) = request.table.as_deref() else {
            return Err(DataError::BadRequest("`table` is missing".into()));
        };
        if name.starts_with('_') || name.to_ascii_lowercase().starts_with("sqlite_") {
            return Err(DataError::Forbidden(format!(
                "`{name}` is a system table; it is not reachable through the data API"
            )));
        }
        if let Some(table) = self
            .tables
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            return Ok(table.clone());
        }
        let Some(record) = store.table(name).await? else {
            return Err(DataError::NotFound(format!("there is no table `{name}`")));
        };
        let schema: TableSchema = serde_json::from_str(&record.schema).map_err(|e| {
            DataError::Internal(format!("the stored schema of `{name}` is unreadable: {e}"))
        })?;
        let table = Arc::new(Table { record, schema });
        let mut tables = self.tables.write().unwrap_or_else(|e| e.into_inner());
        if tables.len() >= MAX_CACHED_TABLES {
            tables.clear();
        }
        tables.insert(name.to_owned(), table.clone());
        Ok(table)
    }

    /// Forgets every cached schema (after a schema or policy change).
    fn forget_tables(&self) {
        self.tables
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Applies the table's policy for `action`: `Ok(Some(peer))` restricts to that peer's rows.
    fn allow(
        &self,
        caller: &Caller,
        record: &TableRecord,
        action: Action,
    ) -> Result<Option<String>, DataError> {
        let Caller::Peer(peer) = caller else {
            return Ok(None);
        };
        let access = access_of(record);
        let (policy, verb) = match action {
            Action::Read => (access.read, "read"),
            Action::Insert => (access.insert, "insert into"),
            Action::Update => (access.update, "update"),
            Action::Delete => (access.delete, "delete from"),
        };
        match policy {
            Policy::Open => Ok(None),
            Policy::Owner if action == Action::Insert => Ok(None),
            Policy::Owner => Ok(Some(peer.clone())),
            Policy::Local => Err(DataError::Forbidden(format!(
                "only this peer may {verb} `{}` (policy: local)",
                record.name
            ))),
            Policy::Group => Err(DataError::Forbidden(format!(
                "only members of this peer's groups may {verb} `{}` (policy: group), and you \
                 are not one",
                record.name
            ))),
        }
    }

    fn columns_of(schema: &TableSchema) -> Vec<String> {
        let mut columns: Vec<String> = SYSTEM_COLUMNS.into_iter().map(str::to_owned).collect();
        columns.extend(schema.columns.iter().map(|c| c.name.clone()));
        columns
    }

    /// The checked filter and its bound arguments.
    fn filter_of(
        request: &DataRequest,
        columns: &[String],
    ) -> Result<(Option<Where>, Vec<SqlValue>), DataError> {
        if request.args.len() > MAX_ARGS {
            return Err(DataError::BadRequest(format!(
                "`args` holds at most {MAX_ARGS} values"
            )));
        }
        let args = request
            .args
            .iter()
            .enumerate()
            .map(|(index, value)| arg_value(index, value))
            .collect::<Result<Vec<_>, _>>()?;
        let filter = match request.filter.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => {
                Some(filter::parse_where(text, columns).map_err(|e| DataError::BadRequest(e.0))?)
            }
        };
        let wanted = filter.as_ref().map_or(0, |f| f.placeholders);
        if wanted != args.len() {
            return Err(DataError::BadRequest(format!(
                "the filter has {wanted} `?` placeholders but `args` holds {} values",
                args.len()
            )));
        }
        Ok((filter, args))
    }

    async fn query(
        &self,
        caller: &Caller,
        store: &DataStore,
        request: &DataRequest,
        one: bool,
    ) -> Result<Json, DataError> {
        let table = self.table(store, request).await?;
        let (record, schema) = (&table.record, &table.schema);
        let owner = self.allow(caller, record, Action::Read)?;
        let all = Self::columns_of(schema);
        let mut columns = Vec::new();
        for wanted in &request.columns {
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
        let (filter, args) = Self::filter_of(request, &all)?;
        let order = match request.order.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => {
                Some(filter::parse_order(text, &all).map_err(|e| DataError::BadRequest(e.0))?)
            }
        };
        let limit = if one {
            1
        } else {
            match request.limit {
                None => DEFAULT_LIMIT,
                Some(limit) if (1..=MAX_ROWS).contains(&limit) => limit,
                Some(limit) => {
                    return Err(DataError::BadRequest(format!(
                        "limit {limit} is out of range: ask for 1 to {MAX_ROWS} rows"
                    )));
                }
            }
        };
        let offset = request.offset.unwrap_or(0);
        if offset < 0 {
            return Err(DataError::BadRequest("offset must not be negative".into()));
        }
        let rows = store
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
            .await?;
        Ok(if one {
            rows.into_iter().next().map_or(Json::Null, Json::Object)
        } else {
            Json::Array(rows.into_iter().map(Json::Object).collect())
        })
    }

    async fn count(
        &self,
        caller: &Caller,
        store: &DataStore,
        request: &DataRequest,
    ) -> Result<Json, DataError> {
        let table = self.table(store, request).await?;
        let (record, schema) = (&table.record, &table.schema);
        let owner = self.allow(caller, record, Action::Read)?;
        let (filter, args) = Self::filter_of(request, &Self::columns_of(schema))?;
        let count = store
            .count(&record.name, filter.as_ref(), owner.as_deref(), &args)
            .await?;
        Ok(Json::from(count))
    }

    async fn insert(
        &self,
        caller: &Caller,
        store: &DataStore,
        request: &DataRequest,
    ) -> Result<Json, DataError> {
        let table = self.table(store, request).await?;
        let (record, schema) = (&table.record, &table.schema);
        self.allow(caller, record, Action::Insert)?;
        let data = request
            .data
            .as_ref()
            .ok_or_else(|| DataError::BadRequest("`data` is missing".into()))?;
        let mut values = schema::check_row(schema, data, true).map_err(DataError::BadRequest)?;
        let (owner, email) = match caller {
            Caller::Owner => (self.me.clone(), self.own_email.borrow().clone()),
            Caller::Peer(peer) => (
                peer.clone(),
                (self.lookup)(peer)
                    .await
                    .and_then(|known| known.verified_email)
                    .unwrap_or_default(),
            ),
        };
        let Caller::Peer(peer) = caller else {
            values.push(("_owner".into(), SqlValue::Text(owner)));
            values.push(("_owner_email".into(), SqlValue::Text(email)));
            let id = store.insert(&record.name, &values).await?;
            return Ok(json!({ "_id": id }));
        };
        self.guard.check_rate(peer)?;
        let row_bytes = values.iter().map(|(_, value)| value.stored_bytes()).sum();
        values.push(("_owner".into(), SqlValue::Text(owner)));
        values.push(("_owner_email".into(), SqlValue::Text(email)));
        let _turn = self.turn(store).await?;
        let (mine, all) = store.usage(&record.name, peer).await?;
        self.guard.limits.for_table(&record.limits).check(
            &record.name,
            peer,
            mine,
            all,
            row_bytes,
        )?;
        let id = store.insert(&record.name, &values).await?;
        Ok(json!({ "_id": id }))
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

    async fn update(
        &self,
        caller: &Caller,
        store: &DataStore,
        request: &DataRequest,
    ) -> Result<Json, DataError> {
        let table = self.table(store, request).await?;
        let (record, schema) = (&table.record, &table.schema);
        let owner = self.allow(caller, record, Action::Update)?;
        let id = request
            .id
            .ok_or_else(|| DataError::BadRequest("`id` (the row's _id) is missing".into()))?;
        let data = request
            .data
            .as_ref()
            .ok_or_else(|| DataError::BadRequest("`data` is missing".into()))?;
        let values = schema::check_row(schema, data, false).map_err(DataError::BadRequest)?;
        let _turn = match caller {
            Caller::Owner => None,
            Caller::Peer(peer) => {
                // Whatever the values replace, they must fit as if they were added: a visitor
                // cannot grow small rows past the byte quotas.
                let turn = self.turn(store).await?;
                let (mine, all) = store.usage(&record.name, peer).await?;
                let grown = values.iter().map(|(_, value)| value.stored_bytes()).sum();
                let quotas = self.guard.limits.for_table(&record.limits);
                let counted = |usage: crate::store::data::Usage| crate::store::data::Usage {
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
        Ok(json!({ "updated": changed }))
    }

    async fn delete(
        &self,
        caller: &Caller,
        store: &DataStore,
        request: &DataRequest,
    ) -> Result<Json, DataError> {
        let table = self.table(store, request).await?;
        let (record, _) = (&table.record, &table.schema);
        let owner = self.allow(caller, record, Action::Delete)?;
        let id = request
            .id
            .ok_or_else(|| DataError::BadRequest("`id` (the row's _id) is missing".into()))?;
        let deleted = store.delete(&record.name, id, owner.as_deref()).await?;
        if deleted == 0 {
            return Err(no_such_row(&record.name, id, owner.is_some()));
        }
        Ok(json!({ "deleted": deleted }))
    }

    /// Who the caller is here, and what it may do with a table when one is named.
    async fn role(
        &self,
        caller: &Caller,
        store: &DataStore,
        request: &DataRequest,
    ) -> Result<Json, DataError> {
        let (role, id) = match caller {
            Caller::Owner => ("owner", self.me.clone()),
            Caller::Peer(peer) => ("visitor", peer.clone()),
        };
        let mut answer = json!({ "role": role, "peerId": id, "hostId": self.me });
        if request.table.is_some() {
            let table = self.table(store, request).await?;
            let (record, _) = (&table.record, &table.schema);
            let may = |action| match self.allow(caller, record, action) {
                Ok(None) => "all",
                Ok(Some(_)) => "own",
                Err(_) => "none",
            };
            answer["permissions"] = json!({
                "read": may(Action::Read),
                "insert": may(Action::Insert),
                "update": may(Action::Update),
                "delete": may(Action::Delete),
            });
        }
        Ok(answer)
    }

    /// `lua-call` (`function`, `params`) and `lua-list`.
    async fn lua(&self, caller: &Caller, request: &DataRequest) -> Result<Json, DataError> {
        use crate::services::lua::{LuaCaller, LuaError};
        let Some(engine) = &self.lua else {
            return Err(DataError::NotEnabled(
                "lua is not enabled on this peer".into(),
            ));
        };
        if request.op == "lua-list" {
            return Ok(serde_json::to_value(engine.list()).unwrap_or_default());
        }
        let name = request
            .function
            .as_deref()
            .ok_or_else(|| DataError::BadRequest("`function` is missing".into()))?;
        let who = match caller {
            Caller::Owner => engine.owner(),
            Caller::Peer(peer) => {
                let known = (self.lookup)(peer).await.unwrap_or_default();
                LuaCaller {
                    id: peer.clone(),
                    label: known.label,
                    email: known.verified_email.unwrap_or_default(),
                    owner: false,
                }
            }
        };
        let params = request
            .params
            .clone()
            .unwrap_or(Json::Object(Default::default()));
        match engine.call(name, params, who).await {
            Ok(outcome) => Ok(outcome.result),
            Err(error @ LuaError::NoSuchFunction(_)) => Err(DataError::NotFound(error.to_string())),
            Err(error @ LuaError::TooLarge) => Err(DataError::TooLarge(error.to_string())),
            Err(error @ LuaError::Forbidden(_)) => Err(DataError::Forbidden(error.to_string())),
            Err(error @ LuaError::RateLimited(_)) => Err(DataError::TooMany(error.to_string())),
            Err(error) => Err(DataError::BadRequest(error.to_string())),
        }
    }

    /// Checks rows for `table` and, unless `dry_run`, inserts the good ones as the owner; one
    /// outcome per row (the new `_id`, or what is wrong with it).
    pub async fn import_rows(
        &self,
        table: &str,
        rows: &[Json],
        dry_run: bool,
    ) -> Result<Vec<Result<Option<i64>, String>>, DataError> {
        let request = DataRequest {
            table: Some(table.to_owned()),
            ..DataRequest::default()
        };
        let table = self.table(&self.store, &request).await?;
        let email = self.own_email.borrow().clone();
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
            values.push(("_owner".into(), SqlValue::Text(self.me.clone())));
            values.push(("_owner_email".into(), SqlValue::Text(email.clone())));
            match self.store.insert(&table.record.name, &values).await {
                Ok(id) => outcomes.push(Ok(Some(id))),
                Err(StoreError::Constraint(message)) => outcomes.push(Err(message)),
                Err(other) => return Err(other.into()),
            }
        }
        Ok(outcomes)
    }

    /// The owner's schema operations and read-only SQL.
    async fn owner_op(&self, request: &DataRequest) -> Result<Json, DataError> {
        if request.op == "create-table" {
            return self.create_table(request).await;
        }
        if request.op == "sql" {
            let sql = request
                .sql
                .as_deref()
                .ok_or_else(|| DataError::BadRequest("`sql` is missing".into()))?;
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
            return Ok(json!({ "rows": rows, "truncated": truncated }));
        }
        let table = self.table(&self.store, request).await?;
        let name = table.record.name.clone();
        let mut schema = table.schema.clone();
        let result = match request.op.as_str() {
            "drop-table" => {
                self.store.drop_table(&name).await?;
                json!({ "dropped": name })
            }
            "rename-table" => {
                let new = request.name.as_deref().ok_or_else(|| {
                    DataError::BadRequest("`name` (the new name) is missing".into())
                })?;
                schema::check_name(new, "table").map_err(DataError::BadRequest)?;
                if self.store.table(new).await?.is_some()
                    || !self.store.columns(new).await?.is_empty()
                {
                    return Err(DataError::BadRequest(format!(
                        "a table `{new}` already exists"
                    )));
                }
                schema.name = new.to_owned();
                self.store
                    .rename_table(&name, new, &schema_json(&schema)?)
                    .await?;
                json!({ "renamed": name, "to": new })
            }
            "add-column" => {
                let input = request
                    .column
                    .as_ref()
                    .ok_or_else(|| DataError::BadRequest("`column` is missing".into()))?;
                let column = schema::parse_column(input).map_err(DataError::BadRequest)?;
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
                self.describe(&table.record, &schema)
            }
            "drop-column" => {
                let column = request.name.as_deref().ok_or_else(|| {
                    DataError::BadRequest("`name` (the column) is missing".into())
                })?;
                let Some(index) = schema.columns.iter().position(|c| c.name == column) else {
                    return Err(DataError::BadRequest(format!(
                        "`{name}` has no column `{column}` that can be dropped"
                    )));
                };
                if schema.columns.len() == 1 {
                    return Err(DataError::BadRequest(
                        "a table keeps at least one column of its own; drop the table instead"
                            .into(),
                    ));
                }
                schema.columns.remove(index);
                self.store
                    .drop_column(&name, column, &schema_json(&schema)?)
                    .await?;
                self.describe(&table.record, &schema)
            }
            "set-policy" => {
                let input = request
                    .access
                    .clone()
                    .ok_or_else(|| DataError::BadRequest("`access` is missing".into()))?;
                let access: Access = serde_json::from_value(input)
                    .map_err(|e| DataError::BadRequest(format!("access: {e}")))?;
                schema.access = access;
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
                json!({ "name": name, "access": access })
            }
            "set-limits" => {
                let input = request
                    .limits
                    .as_ref()
                    .ok_or_else(|| DataError::BadRequest("`limits` is missing".into()))?;
                let own = limits::parse_own_limits(input)?;
                self.store.set_limits(&name, own).await?;
                let record = TableRecord {
                    limits: own,
                    ..table.record.clone()
                };
                self.describe(&record, &schema)
            }
            other => {
                return Err(DataError::BadRequest(format!("unknown op `{other}`")));
            }
        };
        self.forget_tables();
        tracing::info!(table = %name, op = %request.op, "table changed");
        Ok(result)
    }

    async fn create_table(&self, request: &DataRequest) -> Result<Json, DataError> {
        let input = request
            .schema
            .as_ref()
            .ok_or_else(|| DataError::BadRequest("`schema` is missing".into()))?;
        let schema = schema::parse_schema(input).map_err(DataError::BadRequest)?;
        if self.store.table(&schema.name).await?.is_some()
            || !self.store.columns(&schema.name).await?.is_empty()
        {
            return Err(DataError::BadRequest(format!(
                "a table `{}` already exists",
                schema.name
            )));
        }
        let record = TableRecord {
            name: schema.name.clone(),
            schema: serde_json::to_string(&schema)
                .map_err(|e| DataError::Internal(e.to_string()))?,
            read_policy: schema.access.read.as_str().into(),
            insert_policy: schema.access.insert.as_str().into(),
            update_policy: schema.access.update.as_str().into(),
            delete_policy: schema.access.delete.as_str().into(),
            created_ms: crate::services::hub::unix_ms(),
            limits: TableLimits::default(),
        };
        let columns: Vec<_> = schema.columns.iter().map(schema::column_def).collect();
        self.store.create_table(&record, &columns).await?;
        self.forget_tables();
        tracing::info!(table = %schema.name, "table created");
        Ok(self.describe(&record, &schema))
    }
}

fn schema_json(schema: &TableSchema) -> Result<String, DataError> {
    serde_json::to_string(schema).map_err(|e| DataError::Internal(e.to_string()))
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

fn access_of(record: &TableRecord) -> Access {
    let parse = |text: &str| Policy::parse(text).unwrap_or(Policy::Local);
    Access {
        read: parse(&record.read_policy),
        insert: parse(&record.insert_policy),
        update: parse(&record.update_policy),
        delete: parse(&record.delete_policy),
    }
}

impl DataService {
    /// A table as `describe` shows it: columns, policies, and the quotas on other peers' rows in
    /// force (`limits`) with the table's own settings (`own_limits`, null where the peer's
    /// default applies).
    fn describe(&self, record: &TableRecord, schema: &TableSchema) -> Json {
        let own = record.limits;
        json!({
            "name": record.name,
            "columns": schema.columns,
            "system": SYSTEM_COLUMNS,
            "access": access_of(record),
            "limits": self.guard.limits.for_table(&own),
            "own_limits": {
                "rows_per_caller": own.max_rows_per_caller,
                "bytes_per_caller": own.max_bytes_per_caller,
                "rows": own.max_rows,
                "bytes": own.max_bytes,
            },
        })
    }
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
