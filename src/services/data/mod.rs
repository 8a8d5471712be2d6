//! The peer's data API: the operations of `/goop/data/1.0.0` and `/api/data/<op>`, with the access
//! policies of each table applied to the caller.
//!
//! The caller is either the peer's owner (the console, or this peer's own sites) or another peer,
//! identified by the libp2p connection it came in on. For another peer: `local` tables are
//! closed; `owner` means its own rows (reads see only them, updates and deletes touch only them);
//! `group` needs a group membership; `open` is every row. Inserts are checked against the schema
//! and stamped `_owner` = the caller and `_owner_email` = the caller's email only if a hub vouched
//! for that peer. Schema changes and `_` tables are never reachable by other peers, but for a
//! read-only view `_groups` of the open groups this peer hosts (no state, no members, no
//! invite-only group). A `group` policy admits the members of the table's group
//! (`access.group`), with the operations their role is given there. Other peers'
//! inserts are held to a rate and to quotas per table ([`limits`]). Another peer's request runs
//! on the visitors' connections, never the owner's, and its statements stop at its time budget
//! (`data.timeout_seconds`), or as soon as its future is dropped (the caller gone).
//!
//! The wire requests are decoded once ([`op`]) into a [`DataOp`]; [`DataService::handle`] runs
//! one and serialises its result for the wire. In-process callers (the console's database
//! editor) call the typed methods — rows in [`rows`], tables and their schemas in [`tables`] —
//! and get typed results.

pub mod limits;
pub mod op;
pub mod rows;
pub mod schema;
pub mod tables;

use std::sync::Arc;

use serde_json::{Value as Json, json};

use crate::identity::PeerId;
use crate::store::data::{DataStore, StoreError, TableRecord};
use limits::{InsertGuard, InsertLimits};
pub use op::{Action, DataOp, DataRequest, Filter, OpKind, Query};
pub use rows::{Permission, Permissions, Role, RoleAnswer, Row};
use schema::{Access, Policy, TableSchema};
pub use tables::{MAX_SQL_ROWS, OwnLimits, SQL_BUDGET, SqlRows, TableDescription, TableSummary};

/// Longest request line of the protocol.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// This peer's owner.
    Owner,
    /// Another peer, by its peer ID.
    Peer(PeerId),
}

/// The columns the peer keeps in every user table.
pub const SYSTEM_COLUMNS: [&str; 5] = [
    "_id",
    "_owner",
    "_owner_email",
    "_created_at",
    "_updated_at",
];

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

/// A peer's answer to a data request: its data, or its refusal.
pub type DataAnswer = Result<Json, DataError>;

/// The wire form of a result: `{"ok": true, "data": …}` or `{"ok": false, "error": …, "code": …}`.
pub fn reply(result: &Result<Json, DataError>) -> Json {
    match result {
        Ok(data) => json!({ "ok": true, "data": data }),
        Err(error) => json!({ "ok": false, "error": error.to_string(), "code": error.code() }),
    }
}

/// Reads a wire reply back into a result.
pub fn from_reply(reply: &Json) -> DataAnswer {
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
    dyn Fn(&PeerId) -> futures_util::future::BoxFuture<'static, Option<PeerIdentity>> + Send + Sync,
>;

pub use crate::services::presence::peer_table::PeerIdentity;

/// The data API of one peer. Cloning is cheap.
#[derive(Clone)]
pub struct DataService {
    store: DataStore,
    /// This peer's ID (the `_owner` of the owner's rows).
    me: PeerId,
    /// The owner's email, for the owner's rows.
    own_email: Arc<tokio::sync::watch::Receiver<String>>,
    lookup: PeerLookup,
    /// The peer's Lua functions, once enabled (at start with `lua.enabled`, or when a template
    /// that ships functions is applied).
    lua: crate::services::lua::LuaSlot,
    /// Registered tables by name, parsed once.
    tables: Arc<std::sync::RwLock<std::collections::HashMap<String, Arc<Table>>>>,
    /// The limits on other peers' inserts.
    guard: Arc<InsertGuard>,
    /// Peers the owner blocked: none of their requests is served.
    blocked: Option<crate::services::blocklist::BlockList>,
    /// The members of this peer's groups, for the `group` policy, and its open groups.
    groups: Option<crate::services::groups::GroupDirectory>,
}

/// A registered table and its parsed schema.
struct Table {
    record: TableRecord,
    schema: TableSchema,
}

/// Schemas kept parsed at most (the cache starts over beyond).
const MAX_CACHED_TABLES: usize = 256;

impl DataService {
    pub fn new(
        store: DataStore,
        me: PeerId,
        own_email: tokio::sync::watch::Receiver<String>,
        lookup: PeerLookup,
    ) -> Self {
        DataService {
            store,
            me,
            own_email: Arc::new(own_email),
            lookup,
            lua: Arc::default(),
            tables: Arc::default(),
            guard: Arc::new(InsertGuard::new(InsertLimits::default())),
            blocked: None,
            groups: None,
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
        self.lua.get()
    }

    /// The same service, answering `lua-call` and `lua-list` with `engine`.
    pub fn with_lua(self, engine: crate::services::lua::LuaEngine) -> Self {
        self.enable_lua(engine);
        self
    }

    /// Where the engine is, for the peer's other users of it (chat commands).
    pub fn lua_slot(&self) -> crate::services::lua::LuaSlot {
        self.lua.clone()
    }

    /// Answers `lua-call` and `lua-list` with `engine` from now on (every clone of this
    /// service); false when an engine was already set.
    pub fn enable_lua(&self, engine: crate::services::lua::LuaEngine) -> bool {
        self.lua.set(engine).is_ok()
    }

    /// Admits the members of this peer's groups to the tables of `group` policy, and lists
    /// its open groups as `_groups`.
    pub fn with_groups(mut self, groups: crate::services::groups::GroupDirectory) -> Self {
        self.groups = Some(groups);
        self
    }

    /// Refuses every request of the peers on `blocked`.
    pub fn with_block_list(mut self, blocked: crate::services::blocklist::BlockList) -> Self {
        self.blocked = Some(blocked);
        self
    }

    /// Runs one wire request for `caller`: another peer's is first held to its request rate,
    /// then the request is decoded and run. Another peer's runs on the visitors' connections
    /// within its time budget; dropping the future stops the statement it runs.
    pub async fn handle(&self, caller: &Caller, request: DataRequest) -> Result<Json, DataError> {
        if let Caller::Peer(id) = caller {
            if self
                .blocked
                .as_ref()
                .is_some_and(|blocked| blocked.contains(id))
            {
                return Err(DataError::Forbidden(
                    "this peer does not take requests from you".into(),
                ));
            }
            // Another peer's every request costs this peer work: each caller gets a steady
            // share, and a request a bounded time.
            self.guard.check_requests(id)?;
        }
        match DataOp::decode(request) {
            Ok(op) => self.run(caller, op).await,
            Err(undecoded) => Err(self.refusal(caller, undecoded).await),
        }
    }

    /// Runs one operation for `caller`, its result as the wire's `data`.
    pub async fn run(&self, caller: &Caller, op: DataOp) -> Result<Json, DataError> {
        let kind = op.kind();
        owner_only(caller, kind)?;
        match op {
            DataOp::Tables => wire(self.tables(caller).await),
            DataOp::Describe { table } => wire(self.describe(caller, &table).await),
            DataOp::Query(query) => wire(self.query(caller, &query).await),
            DataOp::QueryOne(query) => wire(self.query_one(caller, &query).await),
            DataOp::Count { table, filter } => wire(self.count(caller, &table, &filter).await),
            DataOp::Insert { table, data } => {
                let id = self.insert(caller, &table, &data).await?;
                Ok(json!({ "_id": id }))
            }
            DataOp::Update { table, id, data } => {
                let updated = self.update(caller, &table, id, &data).await?;
                Ok(json!({ "updated": updated }))
            }
            DataOp::Delete { table, id } => {
                let deleted = self.delete(caller, &table, id).await?;
                Ok(json!({ "deleted": deleted }))
            }
            DataOp::Role { table } => wire(self.role(caller, table.as_deref()).await),
            DataOp::LuaCall { function, params } => self.lua_call(caller, &function, params).await,
            DataOp::LuaList => wire(self.lua_list()),
            DataOp::CreateTable { schema } => wire(self.create_table(schema).await),
            DataOp::DropTable { table } => {
                let dropped = self.drop_table(&table).await?;
                Ok(json!({ "dropped": dropped }))
            }
            DataOp::RenameTable { table, new_name } => {
                let renamed = self.rename_table(&table, &new_name).await?;
                Ok(json!({ "renamed": renamed, "to": new_name }))
            }
            DataOp::AddColumn { table, column } => wire(self.add_column(&table, column).await),
            DataOp::DropColumn { table, column } => wire(self.drop_column(&table, &column).await),
            DataOp::SetPolicy { table, access } => {
                let name = self.set_policy(&table, access.clone()).await?;
                Ok(json!({ "name": name, "access": access }))
            }
            DataOp::SetLimits { table, limits } => wire(self.set_limits(&table, limits).await),
            DataOp::Sql { sql } => wire(self.sql(&sql).await),
        }
    }

    /// The error of a request that did not decode, after whatever the API reports before it:
    /// the caller's rights to the op, Lua being off, and the table it names and its policy.
    async fn refusal(&self, caller: &Caller, undecoded: op::Undecoded) -> DataError {
        let Some(kind) = undecoded.kind else {
            return undecoded.problem;
        };
        if let Err(earlier) = owner_only(caller, kind) {
            return earlier;
        }
        if kind.is_lua() && self.lua.get().is_none() {
            return lua_disabled();
        }
        if let (true, Some(table)) = (kind.names_table(), &undecoded.table) {
            let store = self.store_for(caller);
            let earlier = match self.table(&store, table).await {
                Ok(found) => match kind.action() {
                    Some(action) => self.allow(caller, &found, action).err(),
                    None => None,
                },
                Err(earlier) => Some(earlier),
            };
            if let Some(earlier) = earlier {
                return earlier;
            }
        }
        undecoded.problem
    }

    /// Calls the peer's Lua function `function` with `params` as `caller`; its result.
    pub async fn lua_call(
        &self,
        caller: &Caller,
        function: &str,
        params: Json,
    ) -> Result<Json, DataError> {
        use crate::services::lua::{LuaCaller, LuaError};
        let Some(engine) = self.lua.get() else {
            return Err(lua_disabled());
        };
        let who = match caller {
            Caller::Owner => engine.owner(),
            Caller::Peer(peer) => {
                let known = (self.lookup)(peer).await.unwrap_or_default();
                LuaCaller {
                    id: peer.to_base58(),
                    label: known.label,
                    email: known.verified_email.unwrap_or_default(),
                    owner: false,
                }
            }
        };
        match engine.call(function, params, who).await {
            Ok(outcome) => Ok(outcome.result),
            Err(error @ LuaError::NoSuchFunction(_)) => Err(DataError::NotFound(error.to_string())),
            Err(error @ LuaError::TooLarge) => Err(DataError::TooLarge(error.to_string())),
            Err(error @ LuaError::Forbidden(_)) => Err(DataError::Forbidden(error.to_string())),
            Err(error @ LuaError::RateLimited(_)) => Err(DataError::TooMany(error.to_string())),
            Err(error) => Err(DataError::BadRequest(error.to_string())),
        }
    }

    /// The peer's Lua functions.
    pub fn lua_list(&self) -> Result<Vec<crate::services::lua::FunctionInfo>, DataError> {
        self.lua
            .get()
            .map(|engine| engine.list())
            .ok_or_else(lua_disabled)
    }

    /// The connections `caller`'s statements run on: the visitors', within one request's time
    /// budget from now, for another peer.
    fn store_for(&self, caller: &Caller) -> DataStore {
        match caller {
            Caller::Owner => self.store.clone(),
            Caller::Peer(_) => self.store.for_visitor(self.guard.limits.timeout),
        }
    }

    /// The registered table `name`, with its schema (read through `store` when it is not
    /// cached). System tables are never reachable.
    async fn table(&self, store: &DataStore, name: &str) -> Result<Arc<Table>, DataError> {
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
        table: &Table,
        action: Action,
    ) -> Result<Option<String>, DataError> {
        let Caller::Peer(peer) = caller else {
            return Ok(None);
        };
        let record = &table.record;
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
            Policy::Owner => Ok(Some(peer.to_base58())),
            Policy::Local => Err(DataError::Forbidden(format!(
                "only this peer may {verb} `{}` (policy: local)",
                record.name
            ))),
            Policy::Group => {
                let Some(group) = &table.schema.access.group else {
                    return Err(DataError::Forbidden(format!(
                        "only members of this peer's group may {verb} `{}` (policy: group), and \
                         no group is set for it",
                        record.name
                    )));
                };
                let role = self
                    .groups
                    .as_ref()
                    .and_then(|groups| groups.role_of(&group.id, peer));
                let Some(role) = role else {
                    return Err(DataError::Forbidden(format!(
                        "only members of group `{}` may {verb} `{}` (policy: group), and you \
                         are not one",
                        group.id, record.name
                    )));
                };
                let right = match action {
                    Action::Read => schema::Right::Read,
                    Action::Insert => schema::Right::Insert,
                    Action::Update => schema::Right::Update,
                    Action::Delete => schema::Right::Delete,
                };
                let allowed = group.roles.is_empty()
                    || group
                        .roles
                        .get(&role)
                        .is_some_and(|rights| rights.contains(&right));
                match allowed {
                    true => Ok(None),
                    false => Err(DataError::Forbidden(format!(
                        "your role `{role}` in group `{}` may not {verb} `{}`",
                        group.id, record.name
                    ))),
                }
            }
        }
    }
}

/// Schema changes and SQL are for the peer's owner only.
fn owner_only(caller: &Caller, kind: OpKind) -> Result<(), DataError> {
    if kind.owner_only() && *caller != Caller::Owner {
        return Err(DataError::Forbidden(format!(
            "`{}` is for the peer's owner only",
            kind.name()
        )));
    }
    Ok(())
}

fn lua_disabled() -> DataError {
    DataError::NotEnabled("lua is not enabled on this peer".into())
}

/// A typed result as the wire's `data`.
fn wire<T: serde::Serialize>(result: Result<T, DataError>) -> Result<Json, DataError> {
    result.map(|value| serde_json::to_value(value).unwrap_or_default())
}

fn access_of(record: &TableRecord) -> Access {
    let parse = |text: &str| Policy::parse(text).unwrap_or(Policy::Local);
    Access {
        read: parse(&record.read_policy),
        insert: parse(&record.insert_policy),
        update: parse(&record.update_policy),
        delete: parse(&record.delete_policy),
        group: None,
    }
}
