//! One sandboxed call: a fresh VM with the safe libraries, the `goop` host table (read-only),
//! the time budget as an instruction hook and the memory limit on the allocator.
//!
//! The hook only sees Lua instructions, so nothing the VM offers may run long inside one C
//! function: string patterns are matched by [`super::patterns`], which looks at the same
//! [`Budget`]; [`PRELUDE`] holds `string.rep` to the memory limit before it loops, loops
//! `table.insert`, `remove` and `move` in Lua (a `__len` can make up any length) and sorts a
//! table with such metamethods through a plain copy; database statements end at the budget too.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mlua::chunk::ChunkMode;
use mlua::{Function, HookTriggers, Lua, LuaOptions, LuaSerdeExt, StdLib, Table, Value, VmState};
use serde_json::Value as Json;

use super::{CallOutcome, LuaCaller, LuaError, LuaLimits, MAX_RESULT_BYTES};

/// Instructions between two looks at the clock.
const HOOK_EVERY: u32 = 1000;
/// Log lines one call may keep (more are counted, not kept).
const MAX_LOG_LINES: usize = 100;
/// Longest log line kept.
const MAX_LOG_BYTES: usize = 2000;

/// What a script is asked to do.
pub(super) enum Entry {
    /// A data function: `call(request)` with the caller's parameters.
    Call(Json),
    /// A chat command: `handle(args)` with the text after the command's name.
    Handle(String),
}

/// Lua half of the host API: `goop.route`, and the read-only proxy `goop` is seen through; and
/// the library functions whose C loops the instruction hook could not stop. Compiled once per
/// engine; receives the API table, a test for tables without length or index metamethods and
/// the memory limit, and returns the proxy.
pub(super) const PRELUDE: &str = include_str!("prelude.lua");

/// Everything one call needs.
pub(super) struct Run {
    pub name: String,
    pub bytecode: Arc<Vec<u8>>,
    /// [`PRELUDE`], compiled.
    pub prelude: Arc<Vec<u8>>,
    pub entry: Entry,
    pub caller: LuaCaller,
    pub me: LuaCaller,
    /// The chat commands, for `goop.commands()`.
    pub commands: Arc<super::ScriptSet>,
    pub limits: LuaLimits,
    pub kv: Option<crate::store::lua_kv::LuaKv>,
    pub db: Option<crate::store::data::DataStore>,
    /// `goop.http`, unless `lua.http_enabled` is off.
    pub http: Option<super::http::LuaHttp>,
    /// `goop.group`, in data functions.
    pub groups: Option<crate::services::groups::Groups>,
    /// The runtime the stores are reached through from this blocking thread.
    pub runtime: tokio::runtime::Handle,
    /// Set when the peer stops: every running call ends at its next look at the budget.
    pub stopping: Arc<AtomicBool>,
    /// Set when the caller goes away: the call ends at its next look at the budget (and its
    /// statement at SQLite's next progress check, through `db`).
    pub cancelled: crate::store::deadline::Stopping,
}

/// The time a call has, as everything that may run long inside it sees it: the instruction
/// hook, the pattern matcher, database statements.
#[derive(Clone)]
pub(super) struct Budget {
    pub deadline: Instant,
    /// Set when the deadline ended the call.
    pub timed_out: Arc<AtomicBool>,
    /// The engine's stop.
    pub stopping: Arc<AtomicBool>,
    /// The caller's leaving.
    pub cancelled: crate::store::deadline::Stopping,
    /// Bytes a result built outside the VM may have: the VM's memory limit.
    pub max_bytes: usize,
}

impl Budget {
    /// An error once the deadline has passed, the caller has gone or the peer is stopping.
    pub fn check(&self) -> mlua::Result<()> {
        if self.stopping.load(Ordering::Relaxed) {
            return Err(mlua::Error::runtime("the peer is stopping"));
        }
        if self.cancelled.is_stopped() {
            return Err(mlua::Error::runtime("the caller has gone"));
        }
        if Instant::now() >= self.deadline {
            self.timed_out.store(true, Ordering::Relaxed);
            return Err(mlua::Error::runtime("the time budget is used up"));
        }
        Ok(())
    }
}

/// Rows `goop.db.query` returns at most.
const MAX_DB_ROWS: usize = 1000;
/// Arguments a statement binds at most.
const MAX_DB_ARGS: usize = 100;

/// Compiles `source` into bytecode (kept with line information for error messages).
pub(super) fn compile(file: &str, source: &str) -> Result<Vec<u8>, String> {
    let lua = Lua::new_with(StdLib::NONE, LuaOptions::new()).map_err(|e| e.to_string())?;
    let function = lua
        .load(source)
        .set_name(format!("={file}"))
        .set_mode(ChunkMode::Text)
        .into_function()
        .map_err(|e| first_line(&e.to_string()))?;
    Ok(function.dump(false))
}

fn first_line(message: &str) -> String {
    message
        .lines()
        .next()
        .unwrap_or(message)
        .trim_start_matches("syntax error: ")
        .trim_start_matches("runtime error: ")
        .to_owned()
}

/// Runs one call in a fresh VM.
pub(super) fn run(run: Run) -> Result<CallOutcome, LuaError> {
    let started = Instant::now();
    let timed_out = Arc::new(AtomicBool::new(false));
    let logs = Arc::new(Mutex::new(Vec::new()));
    let memory_mb = run.limits.max_memory / (1024 * 1024);
    let result = call_in_vm(&run, started, timed_out.clone(), logs.clone());
    let logs = std::mem::take(&mut *logs.lock().unwrap_or_else(|e| e.into_inner()));
    match result {
        // Work the budget cut short (a statement, a pattern) ends the call even when the
        // script caught the error and went on.
        _ if timed_out.load(Ordering::Relaxed) => {
            Err(LuaError::Timeout(run.limits.timeout.as_secs()))
        }
        Ok(result) => Ok(CallOutcome {
            result,
            logs,
            elapsed: started.elapsed(),
        }),
        Err(_) if run.stopping.load(Ordering::Relaxed) => Err(LuaError::Stopping),
        Err(CallFailure::Lua(error)) => Err(match error {
            mlua::Error::MemoryError(_) => LuaError::Memory(memory_mb),
            other => {
                let message = other.to_string();
                if message.contains("not enough memory") {
                    LuaError::Memory(memory_mb)
                } else {
                    LuaError::Script(first_line(&message))
                }
            }
        }),
        Err(CallFailure::Other(error)) => Err(error),
    }
}

enum CallFailure {
    Lua(mlua::Error),
    Other(LuaError),
}

impl From<mlua::Error> for CallFailure {
    fn from(error: mlua::Error) -> Self {
        CallFailure::Lua(error)
    }
}

fn call_in_vm(
    run: &Run,
    started: Instant,
    timed_out: Arc<AtomicBool>,
    logs: Arc<Mutex<Vec<(String, String)>>>,
) -> Result<Json, CallFailure> {
    let lua = Lua::new_with(
        StdLib::STRING | StdLib::TABLE | StdLib::MATH | StdLib::UTF8 | StdLib::OS,
        LuaOptions::new(),
    )?;
    lua.set_memory_limit(run.limits.max_memory)?;
    let budget = Budget {
        deadline: started + run.limits.timeout,
        timed_out,
        stopping: run.stopping.clone(),
        cancelled: run.cancelled.clone(),
        max_bytes: run.limits.max_memory,
    };
    let hook_budget = budget.clone();
    lua.set_hook(
        HookTriggers::new().every_nth_instruction(HOOK_EVERY),
        move |_, _| hook_budget.check().map(|()| VmState::Continue),
    )?;
    restrict_globals(&lua, &budget)?;
    install_goop(&lua, run, &budget, logs)?;

    lua.load(run.bytecode.as_slice())
        .set_name(format!("={}.lua", run.name))
        .set_mode(ChunkMode::Binary)
        .exec()?;
    let (entry, signature) = match &run.entry {
        Entry::Call(_) => ("call", "call(request)"),
        Entry::Handle(_) => ("handle", "handle(args)"),
    };
    let Value::Function(function) = lua.globals().get(entry)? else {
        return Err(CallFailure::Other(LuaError::Script(format!(
            "{}.lua defines no function {signature}",
            run.name
        ))));
    };
    let value: Value = match &run.entry {
        Entry::Call(params) => {
            let request = lua.create_table()?;
            request.set("params", lua.to_value(params)?)?;
            request.set("function", run.name.as_str())?;
            function.call(request)?
        }
        Entry::Handle(args) => {
            return match function.call::<Value>(args.as_str())? {
                Value::Nil => Ok(Json::Null),
                Value::String(text) => Ok(Json::String(text.to_string_lossy())),
                Value::Integer(n) => Ok(Json::String(n.to_string())),
                Value::Number(x) => Ok(Json::String(x.to_string())),
                Value::Boolean(b) => Ok(Json::String(b.to_string())),
                other => Err(CallFailure::Other(LuaError::Script(format!(
                    "handle(args) returned a {}; a command replies with a string",
                    other.type_name()
                )))),
            };
        }
    };
    let result: Json = lua.from_value(value).map_err(|e| {
        CallFailure::Other(LuaError::Script(format!(
            "the result cannot be sent as JSON: {}",
            first_line(&e.to_string())
        )))
    })?;
    if serde_json::to_vec(&result).map_or(0, |v| v.len()) > MAX_RESULT_BYTES {
        return Err(CallFailure::Other(LuaError::TooLarge));
    }
    Ok(result)
}

/// Removes what a script must not have; narrows what it may keep.
fn restrict_globals(lua: &Lua, budget: &Budget) -> mlua::Result<()> {
    let globals = lua.globals();
    for name in [
        "dofile",
        "loadfile",
        "require",
        "load",
        "collectgarbage",
        "print",
    ] {
        globals.raw_remove(name)?;
    }
    // `load` of text only: bytecode could break out of the VM.
    globals.raw_set(
        "load",
        lua.create_function(|lua, (chunk, name): (mlua::LuaString, Option<String>)| {
            let bytes = chunk.as_bytes();
            if bytes.first() == Some(&0x1b) {
                return Ok((Value::Nil, Some("binary chunks are not allowed".to_owned())));
            }
            let loaded = lua
                .load(&*bytes)
                .set_name(format!("={}", name.unwrap_or_else(|| "load".into())))
                .set_mode(ChunkMode::Text)
                .into_function();
            Ok(match loaded {
                Ok(function) => (Value::Function(function), None),
                Err(error) => (Value::Nil, Some(first_line(&error.to_string()))),
            })
        })?,
    )?;
    globals.raw_set(
        "collectgarbage",
        lua.create_function(|lua, option: Option<String>| match option.as_deref() {
            None | Some("count") => Ok(lua.used_memory() as f64 / 1024.0),
            Some(other) => Err(mlua::Error::runtime(format!(
                "collectgarbage(\"{other}\") is not allowed here"
            ))),
        })?,
    )?;
    let string: Table = globals.get("string")?;
    string.raw_remove("dump")?;
    super::patterns::install(lua, &string, budget)?;
    let os: Table = globals.get("os")?;
    let safe_os = lua.create_table()?;
    for name in ["time", "date", "clock"] {
        safe_os.raw_set(name, os.get::<Function>(name)?)?;
    }
    globals.raw_set("os", safe_os)?;
    Ok(())
}

/// `goop.kv.get/set/del`: the script's own persistent store (values as JSON). Each statement is
/// one key's (or counts one script's at most 1,000 keys), so it is short; a call out of budget or
/// whose caller has gone makes no more of them.
fn kv_table(lua: &Lua, run: &Run, budget: &Budget) -> mlua::Result<Table> {
    let kv = lua.create_table()?;
    let handle = run.runtime.clone();
    let Some(store) = run.kv.clone() else {
        let disabled = lua.create_function(|_, _: mlua::MultiValue| -> mlua::Result<()> {
            Err(mlua::Error::runtime(
                "the key-value store is turned off on this peer (lua.kv_enabled)",
            ))
        })?;
        for name in ["get", "set", "del"] {
            kv.set(name, disabled.clone())?;
        }
        return Ok(kv);
    };
    let script = run.name.clone();
    let (get_store, get_handle, get_script) = (store.clone(), handle.clone(), script.clone());
    let get_budget = budget.clone();
    kv.set(
        "get",
        lua.create_function(move |lua, key: String| {
            get_budget.check()?;
            let stored = get_handle
                .block_on(get_store.get(&get_script, &key))
                .map_err(mlua::Error::external)?;
            match stored {
                Some(text) => {
                    let value: Json = serde_json::from_str(&text).map_err(mlua::Error::external)?;
                    lua.to_value(&value)
                }
                None => Ok(Value::Nil),
            }
        })?,
    )?;
    let (set_store, set_handle, set_script) = (store.clone(), handle.clone(), script.clone());
    let set_budget = budget.clone();
    kv.set(
        "set",
        lua.create_function(move |lua, (key, value): (String, Value)| {
            set_budget.check()?;
            let value: Json = lua.from_value(value)?;
            let text = serde_json::to_string(&value).map_err(mlua::Error::external)?;
            set_handle
                .block_on(set_store.set(&set_script, &key, &text))
                .map_err(|e| mlua::Error::runtime(e.to_string()))
        })?,
    )?;
    let del_budget = budget.clone();
    kv.set(
        "del",
        lua.create_function(move |_, key: String| {
            del_budget.check()?;
            handle
                .block_on(store.delete(&script, &key))
                .map_err(mlua::Error::external)
        })?,
    )?;
    Ok(kv)
}

/// A Lua value as a bound SQL value.
fn sql_value(index: usize, value: &Value) -> mlua::Result<crate::store::data::SqlValue> {
    use crate::store::data::SqlValue;
    Ok(match value {
        Value::Nil => SqlValue::Null,
        Value::Boolean(b) => SqlValue::Integer(i64::from(*b)),
        Value::Integer(n) => SqlValue::Integer(*n),
        Value::Number(x) => SqlValue::Real(*x),
        Value::String(s) => SqlValue::Text(s.to_string_lossy()),
        other => {
            return Err(mlua::Error::runtime(format!(
                "argument {} is a {}; bind nil, booleans, numbers or strings",
                index + 1,
                other.type_name()
            )));
        }
    })
}

fn sql_args(args: &mlua::Variadic<Value>) -> mlua::Result<Vec<crate::store::data::SqlValue>> {
    if args.len() > MAX_DB_ARGS {
        return Err(mlua::Error::runtime(format!(
            "at most {MAX_DB_ARGS} arguments are bound"
        )));
    }
    args.iter()
        .enumerate()
        .map(|(i, v)| sql_value(i, v))
        .collect()
}

/// A store error for the script; a statement stopped at the deadline ends the call as out of time.
fn store_failed(budget: &Budget, error: crate::store::data::StoreError) -> mlua::Error {
    if matches!(error, crate::store::data::StoreError::OutOfTime) {
        budget.timed_out.store(true, Ordering::Relaxed);
    }
    mlua::Error::runtime(error.to_string())
}

/// `goop.db.query/scalar/exec`: the site's own tables, bound parameters, bounded results;
/// every statement ends at the call's deadline.
fn db_table(lua: &Lua, run: &Run, budget: &Budget) -> mlua::Result<Table> {
    let db = lua.create_table()?;
    let store = match (&run.entry, run.db.clone()) {
        (Entry::Call(_), Some(store)) => Ok(store),
        (Entry::Call(_), None) => Err("this peer has no database"),
        (Entry::Handle(_), _) => Err("goop.db is for data functions; chat commands have none"),
    };
    let store = match store {
        Ok(store) => store,
        Err(message) => {
            let missing =
                lua.create_function(move |_, _: mlua::MultiValue| -> mlua::Result<()> {
                    Err(mlua::Error::runtime(message))
                })?;
            for name in ["query", "scalar", "exec"] {
                db.set(name, missing.clone())?;
            }
            return Ok(db);
        }
    };
    let deadline = budget.deadline;
    let (query_store, query_handle, query_budget) =
        (store.clone(), run.runtime.clone(), budget.clone());
    db.set(
        "query",
        lua.create_function(move |lua, (sql, args): (String, mlua::Variadic<Value>)| {
            let args = sql_args(&args)?;
            let (rows, _) = query_handle
                .block_on(query_store.user_query(&sql, &args, MAX_DB_ROWS, deadline))
                .map_err(|e| store_failed(&query_budget, e))?;
            lua.to_value(&rows)
        })?,
    )?;
    let (scalar_store, scalar_handle, scalar_budget) =
        (store.clone(), run.runtime.clone(), budget.clone());
    db.set(
        "scalar",
        lua.create_function(move |lua, (sql, args): (String, mlua::Variadic<Value>)| {
            let args = sql_args(&args)?;
            let (rows, _) = scalar_handle
                .block_on(scalar_store.user_query(&sql, &args, 1, deadline))
                .map_err(|e| store_failed(&scalar_budget, e))?;
            match rows.first().and_then(|row| row.values().next()) {
                Some(value) => lua.to_value(value),
                None => Ok(Value::Nil),
            }
        })?,
    )?;
    let (handle, exec_budget) = (run.runtime.clone(), budget.clone());
    db.set(
        "exec",
        lua.create_function(move |_, (sql, args): (String, mlua::Variadic<Value>)| {
            let args = sql_args(&args)?;
            handle
                .block_on(store.user_write(&sql, &args, deadline))
                .map_err(|e| store_failed(&exec_budget, e))
        })?,
    )?;
    Ok(db)
}

/// `goop.group.create/close/invite/members/send/is_member`: the groups this peer hosts, from
/// data functions; each call ends at the call's deadline.
fn group_table(lua: &Lua, run: &Run, budget: &Budget) -> mlua::Result<Table> {
    use crate::services::groups::{GroupError, Groups, NewGroup};
    let table = lua.create_table()?;
    let groups = match (&run.entry, run.groups.clone()) {
        (Entry::Call(_), Some(groups)) => Ok(groups),
        (Entry::Call(_), None) => Err("this peer has no groups"),
        (Entry::Handle(_), _) => Err("goop.group is for data functions; chat commands have none"),
    };
    let names = ["create", "close", "invite", "members", "send", "is_member"];
    let groups = match groups {
        Ok(groups) => groups,
        Err(message) => {
            let missing =
                lua.create_function(move |_, _: mlua::MultiValue| -> mlua::Result<()> {
                    Err(mlua::Error::runtime(message))
                })?;
            for name in names {
                table.set(name, missing.clone())?;
            }
            return Ok(table);
        }
    };
    /// Runs `call` on the runtime within the deadline.
    fn within<T>(
        run: &tokio::runtime::Handle,
        budget: &Budget,
        call: impl std::future::Future<Output = Result<T, GroupError>>,
    ) -> mlua::Result<T> {
        let deadline = tokio::time::Instant::from_std(budget.deadline);
        match run.block_on(async { tokio::time::timeout_at(deadline, call).await }) {
            Ok(result) => result.map_err(|e| mlua::Error::runtime(e.to_string())),
            Err(_) => {
                budget.timed_out.store(true, Ordering::Relaxed);
                Err(mlua::Error::runtime("out of time"))
            }
        }
    }
    fn peer(id: &str) -> mlua::Result<libp2p::PeerId> {
        id.parse()
            .map_err(|_| mlua::Error::runtime(format!("{id:?} is not a peer ID")))
    }
    let caller = run.caller.id.clone();
    let setup = |groups: &Groups| (groups.clone(), run.runtime.clone(), budget.clone());

    let (g, rt, b) = setup(&groups);
    table.set(
        "create",
        lua.create_function(move |lua, options: Value| {
            let new: NewGroup = lua.from_value(options)?;
            let meta = within(&rt, &b, g.create(new))?;
            lua.to_value(&meta)
        })?,
    )?;
    let (g, rt, b) = setup(&groups);
    table.set(
        "close",
        lua.create_function(move |_, id: String| within(&rt, &b, g.close(&id)))?,
    )?;
    let (g, rt, b) = setup(&groups);
    table.set(
        "invite",
        lua.create_function(move |_, (id, who): (String, String)| {
            let who = peer(&who)?;
            within(&rt, &b, g.invite(&id, who))
        })?,
    )?;
    let (g, rt, b) = setup(&groups);
    table.set(
        "members",
        lua.create_function(move |lua, id: String| {
            let hosted = within(&rt, &b, async { Ok(g.hosted().await) })?;
            let group = hosted
                .into_iter()
                .find(|group| group.meta.id == id)
                .ok_or_else(|| mlua::Error::runtime(format!("there is no group {id:?}")))?;
            lua.to_value(&group.members)
        })?,
    )?;
    let (g, rt, b) = setup(&groups);
    table.set(
        "send",
        lua.create_function(move |lua, (id, payload): (String, Value)| {
            let payload: Json = lua.from_value(payload)?;
            let me = g.peer_id();
            within(&rt, &b, g.send(me, &id, payload))
        })?,
    )?;
    let (g, rt, b) = setup(&groups);
    table.set(
        "is_member",
        lua.create_function(move |_, (id, who): (String, Option<String>)| {
            let who = peer(who.as_deref().unwrap_or(&caller))?;
            let role = within(&rt, &b, async { Ok(g.role_of(&id, who).await) })?;
            Ok(role.is_some())
        })?,
    )?;
    Ok(table)
}

/// Request headers from a script's table of name → value.
fn http_headers(headers: Option<Table>) -> mlua::Result<Vec<(String, String)>> {
    let Some(headers) = headers else {
        return Ok(Vec::new());
    };
    let mut list = Vec::new();
    for pair in headers.pairs::<String, String>() {
        list.push(pair?);
        // One more than allowed is enough for the request to be refused with the reason.
        if list.len() > super::http::MAX_HEADERS {
            break;
        }
    }
    Ok(list)
}

/// `goop.http.get(url [, headers])` and `goop.http.post(url [, body [, headers]])`: each
/// returns `body, nil, status`, or `nil, error`. A string body is sent as a form unless a
/// `Content-Type` header says otherwise; a table body is sent as JSON.
fn http_table(lua: &Lua, run: &Run, deadline: Instant) -> mlua::Result<Table> {
    use super::http::{HttpRequest, MAX_REQUESTS};
    use std::sync::atomic::AtomicUsize;

    let table = lua.create_table()?;
    let sent = Arc::new(AtomicUsize::new(0));
    let send = {
        let http = run.http.clone();
        let handle = run.runtime.clone();
        move |lua: &Lua, request: HttpRequest| -> mlua::Result<mlua::MultiValue> {
            let failed = |message: String| {
                Ok(mlua::MultiValue::from_vec(vec![
                    Value::Nil,
                    Value::String(lua.create_string(message)?),
                ]))
            };
            let Some(http) = &http else {
                return failed(
                    "outgoing HTTP is turned off on this peer (lua.http_enabled)".into(),
                );
            };
            if sent.fetch_add(1, Ordering::Relaxed) >= MAX_REQUESTS {
                return failed(format!("at most {MAX_REQUESTS} HTTP requests per call"));
            }
            match handle.block_on(http.send(request, deadline)) {
                Ok(response) => Ok(mlua::MultiValue::from_vec(vec![
                    Value::String(lua.create_string(&response.body)?),
                    Value::Nil,
                    Value::Integer(response.status.into()),
                ])),
                Err(message) => failed(message),
            }
        }
    };
    let get_send = send.clone();
    table.set(
        "get",
        lua.create_function(move |lua, (url, headers): (String, Option<Table>)| {
            let request = HttpRequest {
                method: reqwest::Method::GET,
                url,
                headers: http_headers(headers)?,
                body: None,
            };
            get_send(lua, request)
        })?,
    )?;
    table.set(
        "post",
        lua.create_function(
            move |lua, (url, body, headers): (String, Value, Option<Table>)| {
                let mut headers = http_headers(headers)?;
                let (body, default_type) = match body {
                    Value::Nil => (None, None),
                    Value::String(text) => (
                        Some(text.as_bytes().to_vec()),
                        Some("application/x-www-form-urlencoded"),
                    ),
                    Value::Table(_) => {
                        let value: Json = lua.from_value(body)?;
                        let json = serde_json::to_vec(&value).map_err(mlua::Error::external)?;
                        (Some(json), Some("application/json"))
                    }
                    other => {
                        return Err(mlua::Error::runtime(format!(
                            "the body is a {}; send a string or a table",
                            other.type_name()
                        )));
                    }
                };
                let typed = headers
                    .iter()
                    .any(|(name, _)| name.eq_ignore_ascii_case("content-type"));
                if let (Some(kind), false) = (default_type, typed) {
                    headers.push(("Content-Type".into(), kind.into()));
                }
                let request = HttpRequest {
                    method: reqwest::Method::POST,
                    url,
                    headers,
                    body,
                };
                send(lua, request)
            },
        )?,
    )?;
    Ok(table)
}

/// The host API, behind a read-only proxy whose metatable cannot be read or replaced.
fn install_goop(
    lua: &Lua,
    run: &Run,
    budget: &Budget,
    logs: Arc<Mutex<Vec<(String, String)>>>,
) -> mlua::Result<()> {
    let api = lua.create_table()?;
    api.set("peer", lua.to_value(&run.caller)?)?;
    api.set("self", lua.to_value(&run.me)?)?;

    let log = lua.create_table()?;
    for level in ["info", "warn", "error"] {
        let logs = logs.clone();
        let script = run.name.clone();
        log.set(
            level,
            lua.create_function(move |_, message: Value| {
                let text = match &message {
                    Value::String(s) => s.to_string_lossy(),
                    other => format!("{other:?}"),
                };
                let text: String = text.chars().take(MAX_LOG_BYTES).collect();
                match level {
                    "error" => tracing::error!(script = %script, "{text}"),
                    "warn" => tracing::warn!(script = %script, "{text}"),
                    _ => tracing::info!(script = %script, "{text}"),
                }
                let mut logs = logs.lock().unwrap_or_else(|e| e.into_inner());
                if logs.len() < MAX_LOG_LINES {
                    logs.push((level.to_owned(), text));
                }
                Ok(())
            })?,
        )?;
    }
    api.set("log", log.clone())?;
    lua.globals()
        .raw_set("print", log.get::<Function>("info")?)?;

    let json = lua.create_table()?;
    json.set(
        "encode",
        lua.create_function(|lua, value: Value| {
            let value: Json = lua.from_value(value)?;
            serde_json::to_string(&value).map_err(mlua::Error::external)
        })?,
    )?;
    json.set(
        "decode",
        lua.create_function(|lua, text: String| {
            let value: Json = serde_json::from_str(&text)
                .map_err(|e| mlua::Error::runtime(format!("not JSON: {e}")))?;
            lua.to_value(&value)
        })?,
    )?;
    api.set("json", json)?;

    api.set("kv", kv_table(lua, run, budget)?)?;
    api.set("db", db_table(lua, run, budget)?)?;
    api.set("http", http_table(lua, run, budget.deadline)?)?;
    api.set("group", group_table(lua, run, budget)?)?;
    let commands = run.commands.clone();
    api.set(
        "commands",
        lua.create_function(move |_, ()| Ok(commands.names()))?,
    )?;

    let owner = run.caller.owner;
    api.set(
        "owner",
        lua.create_function(move |_, ()| {
            if owner {
                Ok(())
            } else {
                Err(mlua::Error::runtime(
                    "only this peer's owner may call this function",
                ))
            }
        })?,
    )?;

    let prelude: Function = lua
        .load(run.prelude.as_slice())
        .set_name("=goop")
        .set_mode(ChunkMode::Binary)
        .into_function()?;
    // Tables whose length and indexing no metamethod changes: C's table.sort cannot be led on.
    let plain = lua.create_function(|_, value: Value| {
        Ok(match value {
            Value::Table(table) => table.metatable().is_none_or(|meta| {
                ["__len", "__index", "__newindex"]
                    .into_iter()
                    .all(|name| meta.raw_get::<Value>(name).is_ok_and(|v| v.is_nil()))
            }),
            _ => false,
        })
    })?;
    let goop: Table = prelude.call((api, plain, run.limits.max_memory))?;
    lua.globals().raw_set("goop", goop)?;
    Ok(())
}

/// Runs a script that only computes a value (a template's `seed.lua`): the safe libraries and
/// [`PRELUDE`]'s guards, no `goop`, the same time and memory limits as a call. Returns what the
/// chunk returns, as JSON.
pub(super) fn evaluate(file: &str, source: &str, limits: &LuaLimits) -> Result<Json, LuaError> {
    let started = Instant::now();
    let timed_out = Arc::new(AtomicBool::new(false));
    let budget = Budget {
        deadline: started + limits.timeout,
        timed_out: timed_out.clone(),
        stopping: Arc::new(AtomicBool::new(false)),
        cancelled: crate::store::deadline::Stopping::default(),
        max_bytes: limits.max_memory,
    };
    let result = (|| -> mlua::Result<Json> {
        let lua = Lua::new_with(
            StdLib::STRING | StdLib::TABLE | StdLib::MATH | StdLib::UTF8 | StdLib::OS,
            LuaOptions::new(),
        )?;
        lua.set_memory_limit(limits.max_memory)?;
        let hook_budget = budget.clone();
        lua.set_hook(
            HookTriggers::new().every_nth_instruction(HOOK_EVERY),
            move |_, _| hook_budget.check().map(|()| VmState::Continue),
        )?;
        restrict_globals(&lua, &budget)?;
        let prelude: Function = lua
            .load(PRELUDE)
            .set_name("=goop")
            .set_mode(ChunkMode::Text)
            .into_function()?;
        let plain = lua.create_function(|_, value: Value| {
            Ok(matches!(value, Value::Table(t) if t.metatable().is_none()))
        })?;
        prelude.call::<Value>((lua.create_table()?, plain, limits.max_memory))?;
        let value: Value = lua
            .load(source)
            .set_name(format!("={file}"))
            .set_mode(ChunkMode::Text)
            .eval()?;
        lua.from_value(value)
    })();
    let memory_mb = limits.max_memory / (1024 * 1024);
    match result {
        _ if timed_out.load(Ordering::Relaxed) => Err(LuaError::Timeout(limits.timeout.as_secs())),
        Ok(value) => Ok(value),
        Err(mlua::Error::MemoryError(_)) => Err(LuaError::Memory(memory_mb)),
        Err(other) => {
            let message = other.to_string();
            if message.contains("not enough memory") {
                Err(LuaError::Memory(memory_mb))
            } else {
                Err(LuaError::Script(first_line(&message)))
            }
        }
    }
}
