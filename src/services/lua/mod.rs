//! Server-side Lua for peer sites: `<script_dir>/functions/<name>.lua`, each defining
//! `call(request)`, called by visitors through the data protocol (`lua-call`, `lua-list`); and
//! chat commands, `<script_dir>/<name>.lua` defining `handle(args)`, which answer a `!name args`
//! message with text (they have no `goop.db`).
//!
//! Scripts are compiled once (and again only when their file changes: a poller looks every
//! second; a compile error keeps the previous version and is reported with file and line). Every
//! call runs the precompiled chunk in a **fresh VM**, so nothing a caller leaves in globals can
//! reach the next one. The VM has only `base` (without `dofile`, `loadfile`, `require`, binary
//! `load`, and with `collectgarbage` reduced to "count"), `string` (without `dump`), `table`,
//! `math`, `utf8` and `os.time/date/clock`; an instruction hook enforces the time budget inside
//! the VM, and the library functions that loop in C (string patterns, `string.rep`, the table
//! functions, database statements) are held to the same budget; an allocator limits the
//! memory; results are bounded. When the peer stops, running calls end at once; so does a call
//! whose caller goes away (its future dropped: a remote peer that closed its stream), with the
//! statement it runs.

pub mod http;
mod patterns;
mod sandbox;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::Value as Json;
use tokio::sync::watch;

/// Largest script file compiled.
pub const MAX_SCRIPT_BYTES: u64 = 256 * 1024;
/// Functions (and, apart, commands) discovered at most.
const MAX_FUNCTIONS: usize = 200;
/// Longest reply of a chat command; longer ones are cut.
pub const MAX_REPLY_BYTES: usize = 4096;
/// Largest result of a call, as JSON.
pub const MAX_RESULT_BYTES: usize = 1024 * 1024;
/// How often the script folder is looked at for changes.
const RESCAN_EVERY: Duration = Duration::from_secs(1);

/// Limits of every call.
#[derive(Debug, Clone)]
pub struct LuaLimits {
    pub timeout: Duration,
    pub max_memory: usize,
    /// Calls per minute one caller may make to one function (`lua.rate_limit_per_peer`); a
    /// function's `--- @rate_limit N` replaces it for that function.
    pub per_caller_per_minute: u32,
    /// Calls per minute to all functions together (`lua.rate_limit_global`).
    pub global_per_minute: u32,
}

type KeyedLimiter = governor::DefaultKeyedRateLimiter<(String, String)>;

/// The call rate limits.
struct RateLimits {
    global: governor::DefaultDirectRateLimiter,
    per_caller: KeyedLimiter,
    /// Per function with its own `@rate_limit`, keyed by caller.
    annotated: RwLock<HashMap<(String, u32), Arc<KeyedLimiter>>>,
}

fn per_minute(n: u32) -> governor::Quota {
    governor::Quota::per_minute(
        std::num::NonZeroU32::new(n.max(1)).unwrap_or(std::num::NonZeroU32::MIN),
    )
}

impl RateLimits {
    fn new(limits: &LuaLimits) -> RateLimits {
        RateLimits {
            global: governor::RateLimiter::direct(per_minute(limits.global_per_minute)),
            per_caller: governor::RateLimiter::keyed(per_minute(limits.per_caller_per_minute)),
            annotated: RwLock::default(),
        }
    }

    /// Takes one call of `name` (limited to `rate_limit` a minute per caller, when annotated)
    /// from the caller's and the global allowance.
    fn check(
        &self,
        name: &str,
        rate_limit: Option<u32>,
        caller: &LuaCaller,
    ) -> Result<(), LuaError> {
        let key = (caller.id.clone(), name.to_owned());
        let own = match rate_limit {
            // The owner is not limited per caller; everyone counts toward the global limit.
            _ if caller.owner => true,
            Some(limit) => {
                let limiter = self
                    .annotated
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&(name.to_owned(), limit))
                    .cloned();
                let limiter = limiter.unwrap_or_else(|| {
                    let limiter = Arc::new(governor::RateLimiter::keyed(per_minute(limit)));
                    self.annotated
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert((name.to_owned(), limit), limiter.clone());
                    limiter
                });
                limiter.check_key(&key).is_ok()
            }
            None => self.per_caller.check_key(&key).is_ok(),
        };
        if !own {
            return Err(LuaError::RateLimited(format!(
                "`{name}` was called too often by {}; try again in a minute",
                caller.id
            )));
        }
        if self.global.check().is_err() {
            return Err(LuaError::RateLimited(
                "this peer's functions are busy; try again in a minute".into(),
            ));
        }
        Ok(())
    }
}

/// Who is calling, as a script sees it in `goop.peer`.
#[derive(Debug, Clone, Serialize)]
pub struct LuaCaller {
    pub id: String,
    pub label: String,
    pub email: String,
    /// The peer's own owner.
    #[serde(skip)]
    pub owner: bool,
}

/// What a function says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FunctionInfo {
    pub name: String,
    /// The first `---` line of the file.
    pub description: String,
    /// `--- @rate_limit N`: calls per minute per caller, if set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
    /// The last compile error (the previous version keeps running), with file and line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A compiled script.
#[derive(Clone)]
struct Compiled {
    info: FunctionInfo,
    /// The last version that compiled.
    bytecode: Option<Arc<Vec<u8>>>,
    /// The file's modification time and size when compiled: either changing means a new version.
    modified: (SystemTime, u64),
}

/// The result of a call: the value and what the script logged.
#[derive(Debug, Clone)]
pub struct CallOutcome {
    pub result: Json,
    pub logs: Vec<(String, String)>,
    pub elapsed: Duration,
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LuaError {
    #[error("there is no function `{0}`")]
    NoSuchFunction(String),
    #[error("there is no chat command `{0}`")]
    NoSuchCommand(String),
    #[error("`{0}` does not compile: {1}")]
    DoesNotCompile(String, String),
    #[error("{0}")]
    Script(String),
    #[error("the call ran out of its time budget ({0} s)")]
    Timeout(u64),
    #[error("the call went over its memory limit ({0} MiB)")]
    Memory(usize),
    #[error("the result is larger than {MAX_RESULT_BYTES} bytes")]
    TooLarge,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    RateLimited(String),
    #[error("the peer is stopping")]
    Stopping,
}

/// What an engine is started with.
pub struct LuaSetup {
    /// `lua.script_dir`: functions live in its `functions/` folder.
    pub script_dir: PathBuf,
    pub limits: LuaLimits,
    /// This peer's ID, as `goop.self.id`.
    pub self_id: String,
    /// The owner's label and email as they are now (settings may change them).
    pub self_label: watch::Receiver<String>,
    pub self_email: watch::Receiver<String>,
    /// `goop.kv`, unless `lua.kv_enabled` is off.
    pub kv: Option<crate::store::lua_kv::LuaKv>,
    /// `goop.db`: the site's tables.
    pub db: Option<crate::store::data::DataStore>,
    /// `goop.http`, unless `lua.http_enabled` is off.
    pub http: Option<http::LuaHttp>,
    /// `goop.group`: the peer's groups, once they run (they start after the engine).
    pub groups: GroupsSlot,
}

/// Where the peer's Lua engine is put once it runs (at start with `lua.enabled`, or when a
/// template that ships functions is applied); shared by the data API and chat commands.
pub type LuaSlot = Arc<std::sync::OnceLock<LuaEngine>>;

/// Where the peer's groups are put once they run.
pub type GroupsSlot = Arc<std::sync::OnceLock<crate::services::groups::Groups>>;

/// This peer as `goop.self`.
#[derive(Clone)]
struct SelfProfile {
    id: String,
    label: watch::Receiver<String>,
    email: watch::Receiver<String>,
}

impl SelfProfile {
    fn caller(&self) -> LuaCaller {
        LuaCaller {
            id: self.id.clone(),
            label: self.label.borrow().clone(),
            email: self.email.borrow().clone(),
            owner: true,
        }
    }
}

/// The Lua functions of one peer. Cloning is cheap.
#[derive(Clone)]
pub struct LuaEngine {
    limits: LuaLimits,
    /// This peer, as `goop.self`.
    me: SelfProfile,
    functions: Arc<ScriptSet>,
    commands: Arc<ScriptSet>,
    /// The host API's Lua part, compiled once.
    prelude: Arc<Vec<u8>>,
    rates: Arc<RateLimits>,
    /// `goop.kv`, unless `lua.kv_enabled` is off.
    kv: Option<crate::store::lua_kv::LuaKv>,
    /// `goop.db`: the site's tables.
    db: Option<crate::store::data::DataStore>,
    /// `goop.http`, unless `lua.http_enabled` is off.
    http: Option<http::LuaHttp>,
    groups: GroupsSlot,
    /// Set once the engine is stopped; running calls see it at their next look at the budget.
    stopping: Arc<AtomicBool>,
}

impl LuaEngine {
    /// Compiles the scripts under `script_dir/functions` and keeps them current until `stop`.
    pub fn start(setup: LuaSetup, mut stop: watch::Receiver<bool>) -> LuaEngine {
        let engine = LuaEngine {
            kv: setup.kv,
            db: setup.db,
            http: setup.http,
            groups: setup.groups,
            rates: Arc::new(RateLimits::new(&setup.limits)),
            limits: setup.limits,
            me: SelfProfile {
                id: setup.self_id,
                label: setup.self_label,
                email: setup.self_email,
            },
            functions: Arc::new(ScriptSet::new(setup.script_dir.join("functions"))),
            commands: Arc::new(ScriptSet::new(setup.script_dir)),
            prelude: Arc::new(
                sandbox::compile("goop", sandbox::PRELUDE).expect("the built-in prelude compiles"),
            ),
            stopping: Arc::new(AtomicBool::new(false)),
        };
        engine.rescan();
        let poller = engine.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RESCAN_EVERY);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let engine = poller.clone();
                        let _ = tokio::task::spawn_blocking(move || engine.rescan()).await;
                    }
                    () = crate::services::until_stopped(&mut stop) => {
                        // A stop, not a sender gone away: only a stop ends running calls.
                        if *stop.borrow() {
                            poller.stopping.store(true, Ordering::Relaxed);
                        }
                        return;
                    }
                }
            }
        });
        engine
    }

    /// This peer's owner as a caller (`goop.peer` when the owner calls).
    pub fn owner(&self) -> LuaCaller {
        self.me.caller()
    }

    /// Compiles new and changed scripts; forgets removed ones.
    pub fn rescan(&self) {
        self.functions.rescan();
        self.commands.rescan();
    }

    /// Every function, by name.
    pub fn list(&self) -> Vec<FunctionInfo> {
        self.functions.list()
    }

    /// Every chat command, by name.
    pub fn commands(&self) -> Vec<FunctionInfo> {
        self.commands.list()
    }

    /// Calls `name` with `params` for `caller`, in a fresh sandboxed VM, off the async threads.
    pub async fn call(
        &self,
        name: &str,
        params: Json,
        caller: LuaCaller,
    ) -> Result<CallOutcome, LuaError> {
        let compiled = self
            .functions
            .get(name)
            .ok_or_else(|| LuaError::NoSuchFunction(name.to_owned()))?;
        self.rates.check(name, compiled.info.rate_limit, &caller)?;
        self.run(compiled, sandbox::Entry::Call(params), caller)
            .await
    }

    /// Runs chat command `name` with `args` for `caller`: the result is the reply text (or null
    /// when the command says nothing), at most [`MAX_REPLY_BYTES`].
    pub async fn command(
        &self,
        name: &str,
        args: &str,
        caller: LuaCaller,
    ) -> Result<CallOutcome, LuaError> {
        let compiled = self
            .commands
            .get(name)
            .ok_or_else(|| LuaError::NoSuchCommand(name.to_owned()))?;
        // Commands are limited apart from functions of the same name.
        self.rates
            .check(&format!("!{name}"), compiled.info.rate_limit, &caller)?;
        let mut outcome = self
            .run(compiled, sandbox::Entry::Handle(args.to_owned()), caller)
            .await?;
        if let Json::String(reply) = &mut outcome.result
            && reply.len() > MAX_REPLY_BYTES
        {
            let mut cut = MAX_REPLY_BYTES;
            while !reply.is_char_boundary(cut) {
                cut -= 1;
            }
            reply.truncate(cut);
            reply.push_str("… (truncated)");
        }
        Ok(outcome)
    }

    /// Answers a chat message: `!name args` runs command `name`; the reply, errors included, is
    /// text for the sender. `None` when the message is no command or the command said nothing.
    pub async fn dispatch(&self, message: &str, caller: LuaCaller) -> Option<String> {
        let body = message.trim_start().strip_prefix('!')?;
        let (name, args) = body.split_once(char::is_whitespace).unwrap_or((body, ""));
        let name = name.to_ascii_lowercase();
        if name.is_empty() {
            return None;
        }
        match self.command(&name, args.trim(), caller).await {
            Ok(outcome) => match outcome.result {
                Json::String(reply) if !reply.is_empty() => Some(reply),
                _ => None,
            },
            Err(LuaError::NoSuchCommand(_)) => Some(format!("Unknown command: {name}")),
            Err(error @ LuaError::RateLimited(_)) => Some(error.to_string()),
            Err(error) => Some(format!("Script error: {error}")),
        }
    }

    async fn run(
        &self,
        compiled: Compiled,
        entry: sandbox::Entry,
        caller: LuaCaller,
    ) -> Result<CallOutcome, LuaError> {
        if self.stopping.load(Ordering::Relaxed) {
            return Err(LuaError::Stopping);
        }
        let name = compiled.info.name.clone();
        let Some(bytecode) = compiled.bytecode else {
            return Err(LuaError::DoesNotCompile(
                name,
                compiled.info.error.unwrap_or_default(),
            ));
        };
        // A caller that goes away (this future dropped) ends the call: nobody would read it.
        let cancelled = crate::store::deadline::Stopping::default();
        let _ends_with_the_caller = StopOnDrop(cancelled.clone());
        let run = sandbox::Run {
            name,
            bytecode,
            prelude: self.prelude.clone(),
            entry,
            caller,
            me: self.me.caller(),
            commands: self.commands.clone(),
            limits: self.limits.clone(),
            kv: self.kv.clone(),
            db: self
                .db
                .as_ref()
                .map(|db| db.cancelled_by(cancelled.clone())),
            http: self.http.clone(),
            groups: self.groups.get().cloned(),
            runtime: tokio::runtime::Handle::current(),
            stopping: self.stopping.clone(),
            cancelled,
        };
        tokio::task::spawn_blocking(move || sandbox::run(run))
            .await
            .unwrap_or_else(|e| Err(LuaError::Script(format!("the call failed: {e}"))))
    }
}

/// Sets its flag when dropped: with the future of a call, once the call is done or its caller
/// gone.
struct StopOnDrop(crate::store::deadline::Stopping);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// The compiled scripts of one folder.
struct ScriptSet {
    dir: PathBuf,
    scripts: RwLock<HashMap<String, Compiled>>,
}

impl ScriptSet {
    fn new(dir: PathBuf) -> ScriptSet {
        ScriptSet {
            dir,
            scripts: RwLock::default(),
        }
    }

    fn get(&self, name: &str) -> Option<Compiled> {
        self.scripts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    fn names(&self) -> Vec<String> {
        self.list().into_iter().map(|info| info.name).collect()
    }

    fn list(&self) -> Vec<FunctionInfo> {
        let mut list: Vec<FunctionInfo> = self
            .scripts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|c| c.info.clone())
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// Compiles new and changed scripts; forgets removed ones.
    fn rescan(&self) {
        let mut seen = Vec::new();
        let entries = std::fs::read_dir(&self.dir).into_iter().flatten();
        for entry in entries.flatten().take(MAX_FUNCTIONS * 2) {
            let path = entry.path();
            let Some(name) = function_name(&path) else {
                continue;
            };
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let modified = (
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                meta.len(),
            );
            seen.push(name.clone());
            let previous = self
                .scripts
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&name)
                .cloned();
            if previous.as_ref().map(|c| c.modified) == Some(modified) {
                continue;
            }
            let compiled = compile(&name, &path, meta.len(), modified, previous);
            if let Some(error) = &compiled.info.error {
                tracing::warn!(script = %name, "lua script does not compile: {error}");
            } else {
                tracing::info!(script = %name, "lua script loaded");
            }
            let mut scripts = self.scripts.write().unwrap_or_else(|e| e.into_inner());
            if scripts.len() < MAX_FUNCTIONS || scripts.contains_key(&name) {
                scripts.insert(name, compiled);
            }
        }
        self.scripts
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|name, _| seen.contains(name));
    }
}

/// A name a script may have: 1 to 64 letters, digits, `_` or `-`.
/// Checks that `source` compiles as a script of this sandbox; the first line of the compiler's
/// message otherwise.
pub fn check_source(file: &str, source: &str) -> Result<(), String> {
    if source.len() as u64 > MAX_SCRIPT_BYTES {
        return Err(format!("{file} is larger than {MAX_SCRIPT_BYTES} bytes"));
    }
    sandbox::compile(file, source).map(|_| ())
}

/// Runs a script that only computes a value (no `goop`, no database) within `limits`' time and
/// memory, and returns what its chunk returns as JSON.
pub fn evaluate(file: &str, source: &str, limits: &LuaLimits) -> Result<Json, LuaError> {
    sandbox::evaluate(file, source, limits)
}

pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// `<name>.lua` → `<name>`, for plain names only.
fn function_name(path: &Path) -> Option<String> {
    if path.extension()? != "lua" {
        return None;
    }
    let stem = path.file_stem()?.to_str()?;
    is_plain_name(stem).then(|| stem.to_owned())
}

/// Compiles one script; on failure keeps `previous`'s bytecode and records the error.
fn compile(
    name: &str,
    path: &Path,
    size: u64,
    modified: (SystemTime, u64),
    previous: Option<Compiled>,
) -> Compiled {
    let source = if size > MAX_SCRIPT_BYTES {
        Err(format!("the file is larger than {MAX_SCRIPT_BYTES} bytes"))
    } else {
        std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"))
    };
    let (description, rate_limit) = source
        .as_deref()
        .map(annotations)
        .unwrap_or((String::new(), None));
    let result = source.and_then(|source| sandbox::compile(&format!("{name}.lua"), &source));
    match result {
        Ok(bytecode) => Compiled {
            info: FunctionInfo {
                name: name.to_owned(),
                description,
                rate_limit,
                error: None,
            },
            bytecode: Some(Arc::new(bytecode)),
            modified,
        },
        Err(error) => Compiled {
            info: FunctionInfo {
                name: name.to_owned(),
                description: previous
                    .as_ref()
                    .map(|p| p.info.description.clone())
                    .unwrap_or(description),
                rate_limit: previous.as_ref().and_then(|p| p.info.rate_limit),
                error: Some(error),
            },
            bytecode: previous.and_then(|p| p.bytecode),
            modified,
        },
    }
}

/// The first `---` line (the description) and a `--- @rate_limit N` annotation.
fn annotations(source: &str) -> (String, Option<u32>) {
    let mut description = String::new();
    let mut rate_limit = None;
    for line in source.lines().take(50) {
        let Some(doc) = line.trim().strip_prefix("---") else {
            continue;
        };
        let doc = doc.trim();
        if let Some(limit) = doc.strip_prefix("@rate_limit") {
            rate_limit = limit.trim().parse().ok();
        } else if description.is_empty() && !doc.starts_with('@') {
            description = doc.to_owned();
        }
    }
    (description, rate_limit)
}
