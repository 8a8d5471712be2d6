//! Lua functions: calls, the sandbox and its limits, fresh state per call, hot reload.

use std::path::Path;
use std::time::Duration;

use goop2::services::lua::{LuaCaller, LuaEngine, LuaError, LuaLimits, LuaSetup};
use serde_json::{Value, json};

fn caller(id: &str, owner: bool) -> LuaCaller {
    LuaCaller {
        id: id.into(),
        label: String::new(),
        email: String::new(),
        owner,
    }
}

pub fn write(dir: &Path, name: &str, source: &str) {
    let functions = dir.join("functions");
    std::fs::create_dir_all(&functions).unwrap();
    std::fs::write(functions.join(format!("{name}.lua")), source).unwrap();
}

fn start(dir: &Path, timeout_ms: u64) -> LuaEngine {
    start_with(dir, timeout_ms, 10_000, 10_000)
}

fn start_with(dir: &Path, timeout_ms: u64, per_caller: u32, global: u32) -> LuaEngine {
    start_full(dir, timeout_ms, per_caller, global, None)
}

fn start_full(
    dir: &Path,
    timeout_ms: u64,
    per_caller: u32,
    global: u32,
    kv: Option<goop2::store::lua_kv::LuaKv>,
) -> LuaEngine {
    start_stores(dir, timeout_ms, per_caller, global, kv, None)
}

fn start_stores(
    dir: &Path,
    timeout_ms: u64,
    per_caller: u32,
    global: u32,
    kv: Option<goop2::store::lua_kv::LuaKv>,
    db: Option<goop2::store::data::DataStore>,
) -> LuaEngine {
    start_setup(LuaSetup {
        kv,
        db,
        ..setup(dir, timeout_ms, per_caller, global)
    })
}

pub fn setup(dir: &Path, timeout_ms: u64, per_caller: u32, global: u32) -> LuaSetup {
    LuaSetup {
        script_dir: dir.to_owned(),
        limits: LuaLimits {
            timeout: Duration::from_millis(timeout_ms),
            max_memory: 10 * 1024 * 1024,
            per_caller_per_minute: per_caller,
            global_per_minute: global,
        },
        self_id: "12D3KooWSelf".into(),
        self_label: tokio::sync::watch::channel("Self".to_owned()).1,
        self_email: tokio::sync::watch::channel(String::new()).1,
        kv: None,
        db: None,
        http: None,
        groups: Default::default(),
    }
}

pub fn start_setup(setup: LuaSetup) -> LuaEngine {
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    std::mem::forget(_stop);
    LuaEngine::start(setup, stopped)
}

pub async fn call(engine: &LuaEngine, name: &str, params: Value) -> Result<Value, LuaError> {
    engine
        .call(name, params, caller("12D3KooWVisitor", false))
        .await
        .map(|outcome| outcome.result)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_answers_with_the_callers_identity_and_its_own_logs() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "hello",
        "--- Greets the caller.\n--- @rate_limit 5\nfunction call(request)\n  goop.log.info('hello to ' .. goop.peer.id)\n  return { greeting = 'Hello, ' .. (request.params.name or '?'), caller = goop.peer.id, host = goop.self.id, n = #request.params.list }\nend\n",
    );
    let engine = start(dir.path(), 2000);
    let outcome = engine
        .call(
            "hello",
            json!({"name": "Bob", "list": [1, 2, 3]}),
            caller("12D3KooWVisitor", false),
        )
        .await
        .unwrap();
    assert_eq!(
        outcome.result,
        json!({"greeting": "Hello, Bob", "caller": "12D3KooWVisitor", "host": "12D3KooWSelf", "n": 3})
    );
    assert_eq!(
        outcome.logs,
        [("info".to_owned(), "hello to 12D3KooWVisitor".to_owned())]
    );
    let list = engine.list();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].description, "Greets the caller.");
    assert_eq!(list[0].rate_limit, Some(5));
    assert!(matches!(
        call(&engine, "missing", json!({})).await,
        Err(LuaError::NoSuchFunction(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_escapes_are_refused_and_limits_hold() {
    let dir = tempfile::tempdir().unwrap();
    for (name, body, message) in [
        ("io", "return io.open('/etc/passwd')", "global 'io'"),
        ("execute", "return os.execute('id')", "field 'execute'"),
        ("require", "return require('os')", "global 'require'"),
        ("dump", "return string.dump(call)", "field 'dump'"),
        ("debug", "return debug.getinfo(1)", "global 'debug'"),
        ("dofile", "return dofile('/etc/passwd')", "global 'dofile'"),
        ("gc", "return collectgarbage('stop')", "not allowed here"),
        ("meta", "setmetatable(goop, {})", "protected metatable"),
        (
            "assign",
            "goop.peer = { id = 'someone else' }",
            "goop is read-only",
        ),
        ("owner", "goop.owner()", "only this peer's owner"),
        ("result", "return { f = call }", "cannot be sent as JSON"),
    ] {
        write(
            dir.path(),
            name,
            &format!("function call(request)\n  {body}\nend\n"),
        );
        let engine = start(dir.path(), 2000);
        match call(&engine, name, json!({})).await {
            Err(LuaError::Script(got)) => assert!(got.contains(message), "{name}: {got}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    // Endless recursion stops at the stack or at the memory limit, whichever comes first.
    write(
        dir.path(),
        "recursion",
        "function call(request)\n  local function f(n) return f(n + 1) + 1 end\n  return f(1)\nend\n",
    );
    let engine = start(dir.path(), 2000);
    match call(&engine, "recursion", json!({})).await {
        Err(LuaError::Memory(_)) => {}
        Err(LuaError::Script(got)) => assert!(got.contains("stack overflow"), "{got}"),
        other => panic!("recursion: {other:?}"),
    }

    // load: text only; a binary chunk is refused.
    write(
        dir.path(),
        "bytecode",
        "function call(request)\n  local f, err = load('\\27Lua\\84\\0')\n  local g = load('return 40 + 2')\n  return { err = err, g = g() }\nend\n",
    );
    let engine = start(dir.path(), 2000);
    assert_eq!(
        call(&engine, "bytecode", json!({})).await.unwrap(),
        json!({"err": "binary chunks are not allowed", "g": 42})
    );

    // An endless loop stops at the budget; a memory bomb at the limit; the engine lives on.
    write(
        dir.path(),
        "spin",
        "function call(request)\n  while true do end\nend\n",
    );
    write(
        dir.path(),
        "bomb",
        "function call(request)\n  local t = {}\n  for i = 1, 1e9 do t[i] = string.rep('x', 1024) .. i end\nend\n",
    );
    let engine = start(dir.path(), 300);
    let started = std::time::Instant::now();
    assert!(matches!(
        call(&engine, "spin", json!({})).await,
        Err(LuaError::Timeout(_))
    ));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // The bomb gets a budget it cannot use up first, even on a busy machine: it is the memory
    // limit that stops it.
    let roomy = start(dir.path(), 10_000);
    assert!(matches!(
        call(&roomy, "bomb", json!({})).await,
        Err(LuaError::Memory(10))
    ));
    assert_eq!(call(&engine, "bytecode", json!({})).await.unwrap()["g"], 42);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_starts_from_clean_state() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "counter",
        "count = (count or 0) + 1\nfunction call(request)\n  leaked = (leaked or 0) + 1\n  string.upper = nil\n  return { count = count, leaked = leaked }\nend\n",
    );
    let engine = start(dir.path(), 2000);
    for _ in 0..3 {
        assert_eq!(
            call(&engine, "counter", json!({})).await.unwrap(),
            json!({"count": 1, "leaked": 1})
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_reload_and_a_broken_edit_keeps_the_last_good_version() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "v", "function call(request) return 1 end\n");
    let engine = start(dir.path(), 2000);
    assert_eq!(call(&engine, "v", json!({})).await.unwrap(), 1);

    // File times have a coarse resolution; make sure the change is seen as one.
    tokio::time::sleep(Duration::from_millis(20)).await;
    write(dir.path(), "v", "function call(request) return 2 end\n");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while call(&engine, "v", json!({})).await.unwrap() != 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the edit was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    tokio::time::sleep(Duration::from_millis(20)).await;
    write(dir.path(), "v", "function call(request)\n  return (\nend\n");
    engine.rescan();
    let info = engine.list().into_iter().find(|f| f.name == "v").unwrap();
    let error = info.error.expect("the compile error is reported");
    assert!(error.starts_with("v.lua:3:"), "{error}");
    assert_eq!(
        call(&engine, "v", json!({})).await.unwrap(),
        2,
        "the last good version runs"
    );

    std::fs::remove_file(dir.path().join("functions/v.lua")).unwrap();
    engine.rescan();
    assert!(engine.list().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_rate_limited_per_caller_per_function_and_globally() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "plain", "function call(request) return 1 end\n");
    write(dir.path(), "other", "function call(request) return 2 end\n");
    write(
        dir.path(),
        "generous",
        "--- @rate_limit 5\nfunction call(request) return 3 end\n",
    );
    let engine = start_with(dir.path(), 2000, 2, 9);
    let as_peer = |id: &str| caller(id, false);
    let run = |name: &'static str, who: LuaCaller| {
        let engine = engine.clone();
        async move { engine.call(name, json!({}), who).await.map(|o| o.result) }
    };
    // Two calls a minute per caller and function.
    assert!(run("plain", as_peer("A")).await.is_ok());
    assert!(run("plain", as_peer("A")).await.is_ok());
    match run("plain", as_peer("A")).await {
        Err(LuaError::RateLimited(message)) => {
            assert!(message.contains("called too often by A"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    // Another function, another caller: their own allowances.
    assert!(run("other", as_peer("A")).await.is_ok());
    assert!(run("plain", as_peer("B")).await.is_ok());
    // An annotation replaces the per-caller limit for its function.
    for _ in 0..3 {
        assert!(run("generous", as_peer("A")).await.is_ok());
    }
    // Seven calls were accepted so far; two more reach the global limit, which holds for
    // everyone, the owner included.
    assert!(run("generous", as_peer("A")).await.is_ok());
    assert!(run("generous", as_peer("A")).await.is_ok());
    match run("plain", as_peer("C")).await {
        Err(LuaError::RateLimited(message)) => assert!(message.contains("busy"), "{message}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        run("plain", caller("owner", true)).await,
        Err(LuaError::RateLimited(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_script_keeps_its_own_values_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data.db");
    write(
        dir.path(),
        "visits",
        "function call(request)\n  local n = (goop.kv.get('visits') or 0) + 1\n  goop.kv.set('visits', n)\n  goop.kv.set('last', { by = goop.peer.id, n = n })\n  return { n = n, last = goop.kv.get('last') }\nend\n",
    );
    write(
        dir.path(),
        "other",
        "function call(request)\n  local mine = goop.kv.get('visits')\n  goop.kv.set(string.rep('k', 300), 1)\n  return mine\nend\n",
    );
    write(
        dir.path(),
        "hoard",
        "function call(request)\n  for i = 1, 1001 do goop.kv.set('k' .. i, i) end\nend\n",
    );
    {
        let store = goop2::store::peer::PeerStore::open(&db).await.unwrap();
        // A generous budget: `hoard` makes 1,001 writes, and this test is about what is kept.
        let engine = start_full(dir.path(), 10_000, 10_000, 10_000, Some(store.lua_kv()));
        assert_eq!(call(&engine, "visits", json!({})).await.unwrap()["n"], 1);
        let second = call(&engine, "visits", json!({})).await.unwrap();
        assert_eq!(
            second,
            json!({"n": 2, "last": {"by": "12D3KooWVisitor", "n": 2}})
        );
        // Keys are bounded in length, and a script in number.
        match call(&engine, "other", json!({})).await {
            Err(LuaError::Script(message)) => {
                assert!(message.contains("keys are at most 256 bytes"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        match call(&engine, "hoard", json!({})).await {
            Err(LuaError::Script(message)) => {
                assert!(message.contains("at most 1000 keys"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        store.close().await;
    }
    let store = goop2::store::peer::PeerStore::open(&db).await.unwrap();
    let engine = start_full(dir.path(), 2000, 10_000, 10_000, Some(store.lua_kv()));
    assert_eq!(
        call(&engine, "visits", json!({})).await.unwrap()["n"],
        3,
        "kept across a restart"
    );
    let disabled = start(dir.path(), 2000);
    match call(&disabled, "visits", json!({})).await {
        Err(LuaError::Script(message)) => assert!(message.contains("lua.kv_enabled"), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_read_and_change_the_sites_tables_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let (store, data) = data_with_scores(dir.path()).await;
    let owner = goop2::services::data::Caller::Owner;
    let request = |value: Value| serde_json::from_value(value).unwrap();
    write(
        dir.path(),
        "score",
        "function call(request)\n  local p = request.params\n  local changed = goop.db.exec('INSERT INTO scores (_owner, who, points) VALUES (?, ?, ?)', goop.peer.id, p.who, p.points)\n  local top = goop.db.query('SELECT who, points FROM scores WHERE points >= ? ORDER BY points DESC', 10)\n  local total = goop.db.scalar('SELECT sum(points) FROM scores')\n  return { changed = changed, top = top, total = total }\nend\n",
    );
    let engine = start_stores(dir.path(), 2000, 10_000, 10_000, None, Some(store.data()));
    call(&engine, "score", json!({"who": "ann", "points": 12}))
        .await
        .unwrap();
    let result = call(&engine, "score", json!({"who": "bob", "points": 30}))
        .await
        .unwrap();
    assert_eq!(
        result,
        json!({"changed": 1, "top": [{"who": "bob", "points": 30}, {"who": "ann", "points": 12}], "total": 42})
    );
    for (name, statement, message) in [
        (
            "sys",
            "goop.db.query('SELECT * FROM _peer_cache')",
            "`_peer_cache` is a system table",
        ),
        (
            "master",
            "goop.db.query('SELECT name FROM sqlite_master')",
            "`sqlite_master` is a system table",
        ),
        (
            "pragma",
            "goop.db.query('SELECT * FROM pragma_table_info(?)', 'scores')",
            "is a system table",
        ),
        (
            "write",
            "goop.db.query('DELETE FROM scores')",
            "runs one SELECT",
        ),
        (
            "drop",
            "goop.db.exec('DROP TABLE scores')",
            "runs one INSERT, UPDATE or DELETE",
        ),
        (
            "two",
            "goop.db.exec('DELETE FROM scores; DELETE FROM scores')",
            "one statement at a time",
        ),
        (
            "systemwrite",
            "goop.db.exec('DELETE FROM _tables')",
            "`_tables` is a system table",
        ),
        (
            "subquery",
            "goop.db.exec('DELETE FROM scores WHERE who IN (SELECT key FROM _lua_kv)')",
            "`_lua_kv` is a system table",
        ),
        (
            "arg",
            "goop.db.query('SELECT ?', {})",
            "argument 1 is a table",
        ),
    ] {
        write(
            dir.path(),
            name,
            &format!("function call(request)\n  return {statement}\nend\n"),
        );
        engine.rescan();
        match call(&engine, name, json!({})).await {
            Err(LuaError::Script(got)) => assert!(got.contains(message), "{name}: {got}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    let count = data
        .handle(&owner, request(json!({"op": "count", "table": "scores"})))
        .await
        .unwrap();
    assert_eq!(count, 2, "nothing was deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_commands_answer_bang_messages_with_text() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path()).unwrap();
    let command = |name: &str, source: &str| {
        std::fs::write(dir.path().join(format!("{name}.lua")), source).unwrap();
    };
    command(
        "echo",
        "--- Says it back.\nfunction handle(args)\n  goop.log.info('echo for ' .. goop.peer.id)\n  return goop.peer.label .. ' said: ' .. args .. ' (' .. table.concat(goop.commands(), ',') .. ')'\nend\n",
    );
    command("quiet", "function handle(args) return nil end\n");
    command(
        "long",
        "function handle(args) return string.rep('ab', 5000) end\n",
    );
    command(
        "peek",
        "function handle(args) return tostring(#goop.db.query('SELECT 1')) end\n",
    );
    command("count", "function handle(args) return 42 end\n");
    command("table", "function handle(args) return {} end\n");
    command(
        "once",
        "--- @rate_limit 1\nfunction handle(args) return 'once' end\n",
    );
    // A data function of the same name is another thing.
    write(
        dir.path(),
        "echo",
        "function call(request) return 'function' end\n",
    );
    let engine = start(dir.path(), 2000);
    let ann = LuaCaller {
        id: "12D3KooWAnn".into(),
        label: "Ann".into(),
        email: String::new(),
        owner: false,
    };

    let names: Vec<String> = engine.commands().into_iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        ["count", "echo", "long", "once", "peek", "quiet", "table"]
    );
    assert_eq!(engine.commands()[1].description, "Says it back.");
    let functions: Vec<String> = engine.list().into_iter().map(|f| f.name).collect();
    assert_eq!(functions, ["echo"]);

    assert_eq!(
        engine
            .dispatch("!echo  hello there ", ann.clone())
            .await
            .as_deref(),
        Some("Ann said: hello there (count,echo,long,once,peek,quiet,table)")
    );
    assert_eq!(
        engine.dispatch("!ECHO x", ann.clone()).await.as_deref(),
        Some("Ann said: x (count,echo,long,once,peek,quiet,table)")
    );
    let ran = engine.command("echo", "y", ann.clone()).await.unwrap();
    assert_eq!(
        ran.logs,
        [("info".to_owned(), "echo for 12D3KooWAnn".to_owned())]
    );
    assert_eq!(engine.dispatch("hello !echo", ann.clone()).await, None);
    assert_eq!(engine.dispatch("!", ann.clone()).await, None);
    assert_eq!(engine.dispatch("!quiet", ann.clone()).await, None);
    assert_eq!(
        engine.dispatch("!nope", ann.clone()).await.as_deref(),
        Some("Unknown command: nope")
    );
    assert_eq!(
        engine.command("nope", "", ann.clone()).await.unwrap_err(),
        LuaError::NoSuchCommand("nope".into())
    );
    // A function is no command, nor the other way round.
    assert_eq!(
        engine
            .command("count", "", ann.clone())
            .await
            .unwrap()
            .result,
        json!("42")
    );
    assert_eq!(
        engine
            .call("count", json!({}), ann.clone())
            .await
            .unwrap_err(),
        LuaError::NoSuchFunction("count".into())
    );
    assert_eq!(
        engine.dispatch("!count", ann.clone()).await.as_deref(),
        Some("42")
    );
    let long = engine.dispatch("!long", ann.clone()).await.unwrap();
    assert!(long.starts_with("abab"));
    assert_eq!(long.len(), 4096 + "… (truncated)".len());
    let peek = engine.dispatch("!peek", ann.clone()).await.unwrap();
    assert!(
        peek.starts_with("Script error:") && peek.contains("goop.db is for data functions"),
        "{peek}"
    );
    let table = engine.dispatch("!table", ann.clone()).await.unwrap();
    assert!(table.contains("replies with a string"), "{table}");

    assert_eq!(
        engine.dispatch("!once", ann.clone()).await.as_deref(),
        Some("once")
    );
    let limited = engine.dispatch("!once", ann.clone()).await.unwrap();
    assert!(limited.contains("too often"), "{limited}");
    // Another sender has an allowance of their own.
    let bob = LuaCaller {
        id: "12D3KooWBob".into(),
        ..ann.clone()
    };
    assert_eq!(engine.dispatch("!once", bob).await.as_deref(), Some("once"));

    // Commands reload like functions; a broken edit keeps the last good version.
    command("count", "function handle(args) return 'forty-three' end\n");
    engine.rescan();
    assert_eq!(
        engine.dispatch("!count", ann.clone()).await.as_deref(),
        Some("forty-three")
    );
    command("count", "function handle(args) return end end\n");
    engine.rescan();
    assert_eq!(
        engine.dispatch("!count", ann.clone()).await.as_deref(),
        Some("forty-three")
    );
    let broken = engine
        .commands()
        .into_iter()
        .find(|c| c.name == "count")
        .unwrap();
    assert!(broken.error.unwrap().starts_with("count.lua:1:"));
}

/// The data API of a fresh `data.db` in `dir`, with the owner's table `scores` (`who`, `points`).
pub async fn data_with_scores(
    dir: &std::path::Path,
) -> (
    goop2::store::peer::PeerStore,
    goop2::services::data::DataService,
) {
    let store = goop2::store::peer::PeerStore::open(&dir.join("data.db"))
        .await
        .unwrap();
    let (_tx, email) = tokio::sync::watch::channel(String::new());
    let data = goop2::services::data::DataService::new(
        store.data(),
        goop2::identity::PeerId::random(),
        email,
        std::sync::Arc::new(|_: &goop2::identity::PeerId| Box::pin(async { None })),
    );
    let create = json!({"op": "create-table", "schema": {"name": "scores", "columns": ["who TEXT NOT NULL", "points INTEGER"]}});
    data.handle(
        &goop2::services::data::Caller::Owner,
        serde_json::from_value(create).unwrap(),
    )
    .await
    .unwrap();
    (store, data)
}
