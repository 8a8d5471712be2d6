//! Time limits that hold: work inside library functions (string patterns, `string.rep`, the
//! table functions) and database statements end at a call's time budget, as loops in Lua do, or
//! when the caller leaves, and the engine and the database keep answering afterwards.

use std::time::{Duration, Instant};

use goop2::services::lua::{LuaEngine, LuaError, LuaSetup};
use serde_json::{Value, json};

use crate::lua::{call, data_with_scores, setup, start_setup, write};

/// How long a call may take at most here, whatever its budget: every budget below is 1 s, and
/// the runaways used to run for minutes or forever.
const BOUND: Duration = Duration::from_secs(10);

/// Calls `name`, failing the test if the call still runs after [`BOUND`].
async fn call_bounded(
    engine: &LuaEngine,
    name: &str,
    params: Value,
) -> (Result<Value, LuaError>, Duration) {
    let started = Instant::now();
    let result = tokio::time::timeout(BOUND, call(engine, name, params))
        .await
        .unwrap_or_else(|_| panic!("`{name}` still runs after {BOUND:?}"));
    (result, started.elapsed())
}

fn function(dir: &std::path::Path, name: &str, body: &str) {
    write(
        dir,
        name,
        &format!("function call(request)\n  {body}\nend\n"),
    );
}

/// One second per call; 10 MiB of memory.
fn engine(dir: &std::path::Path, db: Option<goop2::store::data::DataStore>) -> LuaEngine {
    start_setup(LuaSetup {
        db,
        ..setup(dir, 1000, 10_000, 10_000)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitors_pattern_that_backtracks_for_minutes_ends_at_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    function(
        dir.path(),
        "search",
        "return { string.find(request.params.subject, request.params.pattern) }",
    );
    let engine = engine(dir.path(), None);
    let attack = json!({"subject": "a".repeat(300), "pattern": "a*".repeat(4) + "b"});
    let (result, took) = call_bounded(&engine, "search", attack).await;
    assert_eq!(result, Err(LuaError::Timeout(1)), "after {took:?}");
    // The engine keeps answering, with the same function.
    let (result, _) = call_bounded(
        &engine,
        "search",
        json!({"subject": "key=value", "pattern": "(%w+)=(%w+)"}),
    )
    .await;
    assert_eq!(result.unwrap(), json!([1, 9, "key", "value"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn library_functions_that_loop_in_c_end_at_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let runaways = [
        (
            "gsub",
            "return (string.gsub(string.rep('a', 300), string.rep('a*', 4) .. 'b', 'x'))",
        ),
        (
            "gmatch",
            "for m in string.rep('a', 300):gmatch(string.rep('a-', 4) .. 'b') do end",
        ),
        (
            "match",
            "return string.rep('a', 300):match(string.rep('(a*)', 4) .. 'b')",
        ),
        (
            "balance",
            "return string.find(string.rep('(', 200000), '%b()')",
        ),
        (
            "insert",
            "table.insert(setmetatable({}, { __len = function() return math.maxinteger - 1 end }), 1, 'x')",
        ),
        (
            "remove",
            "return table.remove(setmetatable({}, { __len = function() return math.maxinteger - 1 end }), 1)",
        ),
        ("move", "table.move({}, 1, 1e15, 2)"),
        (
            "sort",
            "table.sort(setmetatable({}, { __len = function() return 2^31 - 2 end, __index = type, __newindex = rawequal }))",
        ),
    ];
    for (name, body) in runaways {
        function(dir.path(), name, body);
    }
    function(
        dir.path(),
        "rep",
        "return { #string.rep('', 1e15), #string.rep('', 1e15, ''), string.rep('ab', 3, ','), string.rep('x', 0) }",
    );
    function(dir.path(), "huge", "return #string.rep('x', 1e15)");
    let engine = engine(dir.path(), None);
    // Every runaway is tried, and all that do not end in time are named together.
    let mut failures = Vec::new();
    for (name, _) in runaways {
        match tokio::time::timeout(BOUND, call(&engine, name, json!({}))).await {
            Ok(Err(LuaError::Timeout(1))) => {}
            // Sorting through a copy fills the memory first.
            Ok(Err(LuaError::Memory(10))) if name == "sort" => {}
            Ok(other) => failures.push(format!("{name}: {other:?}")),
            Err(_) => failures.push(format!("{name} still runs after {BOUND:?}")),
        }
    }
    // An empty string repeated any number of times is empty at once; a repeat beyond the memory
    // limit is refused before it starts.
    for (name, expected) in [
        ("rep", Ok(json!([0, 0, "ab,ab,ab", ""]))),
        ("huge", Err(LuaError::Memory(10))),
    ] {
        match tokio::time::timeout(BOUND, call(&engine, name, json!({}))).await {
            Ok(result) if result == expected => {}
            Ok(other) => failures.push(format!("{name}: {other:?}")),
            Err(_) => failures.push(format!("{name} still runs after {BOUND:?}")),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordinary_patterns_and_table_functions_work_as_in_lua() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "forms",
        r#"function call(request)
  local out = {}
  out.find = { ("hello world"):find("o w") }
  out.plain = { string.find("a.b", ".", 1, true) }
  out.digits = { string.match("order 66, row 7", "(%d+)%D+(%d+)") }
  out.trim = string.match("  trim me  ", "^%s*(.-)%s*$")
  out.date = { string.match("2024-01-15", "^(%d+)-(%d+)-(%d+)$") }
  out.unanchored = string.find("xhello", "^hello") == nil
  out.positions = { string.match("hello", "()ll()") }
  out.words = { string.gsub("hello world", "(%w+)", "<%1>") }
  out.table = string.gsub("$name is $age", "%$(%w+)", { name = "Ann", age = 30 })
  out.func = string.gsub("abc", "%w", function(c) return c:upper() .. "." end)
  out.keep = string.gsub("a b", "%w", function() return nil end)
  out.limit = { string.gsub("aaa", "a", "b", 2) }
  out.frontier = string.gsub("THE (quick) fox", "%f[%a]%a+", "X")
  out.balanced = { string.find("f(a(b)c)d", "%b()") }
  local pairs_seen = {}
  for k, v in string.gmatch("a=1, b=2, c=3", "(%w+)=(%w+)") do
    pairs_seen[#pairs_seen + 1] = k .. v
  end
  out.gmatch = pairs_seen
  local ok, err = pcall(string.find, "a", "[a")
  out.malformed = { ok, tostring(err):match("malformed pattern %(missing ']'%)") }
  local list = { 3, 1, 2 }
  table.insert(list, 4)
  table.insert(list, 1, 0)
  local removed = table.remove(list, 2)
  table.sort(list)
  out.list = list
  out.removed = removed
  out.moved = table.move({ 1, 2, 3 }, 1, 3, 2)
  local proxy = setmetatable({}, { __index = { 5, 4, 6 }, __len = function() return 3 end })
  table.sort(proxy, function(a, b) return a > b end)
  out.proxy = { rawget(proxy, 1), rawget(proxy, 2), rawget(proxy, 3) }
  return out
end
"#,
    );
    let engine = engine(dir.path(), None);
    let (result, _) = call_bounded(&engine, "forms", json!({})).await;
    assert_eq!(
        result.unwrap(),
        json!({
            "find": [5, 7],
            "plain": [2, 2],
            "digits": ["66", "7"],
            "trim": "trim me",
            "date": ["2024", "01", "15"],
            "unanchored": true,
            "positions": [3, 5],
            "words": ["<hello> <world>", 2],
            "table": "Ann is 30",
            "func": "A.B.C.",
            "keep": "a b",
            "limit": ["bba", 2],
            "frontier": "X (X) X",
            "balanced": [2, 8],
            "gmatch": ["a1", "b2", "c3"],
            "malformed": [false, "malformed pattern (missing ']')"],
            "list": [0, 1, 2, 4],
            "removed": 3,
            "moved": [1, 1, 2, 3],
            "proxy": [6, 5, 4],
        })
    );
}

/// A statement that never ends: it counts an endless recursive sequence.
const ENDLESS: &str =
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_statements_end_at_the_calls_budget_and_the_database_keeps_answering() {
    let dir = tempfile::tempdir().unwrap();
    let (store, data) = data_with_scores(dir.path()).await;
    let owner = goop2::services::data::Caller::Owner;
    let request = |value: Value| serde_json::from_value(value).unwrap();
    for who in 0..1000 {
        data.handle(
            &owner,
            request(json!({"op": "insert", "table": "scores", "data": {"who": who.to_string(), "points": 0}})),
        )
        .await
        .unwrap();
    }
    function(
        dir.path(),
        "scalar",
        &format!("return goop.db.scalar('{ENDLESS}')"),
    );
    function(
        dir.path(),
        "query",
        &format!("return goop.db.query('{ENDLESS}')"),
    );
    function(
        dir.path(),
        "exec",
        &format!("return goop.db.exec('UPDATE scores SET points = ({ENDLESS})')"),
    );
    // Catching the error does not buy more time.
    function(
        dir.path(),
        "caught",
        &format!("pcall(goop.db.scalar, '{ENDLESS}')\n  return 'more'"),
    );
    function(
        dir.path(),
        "total",
        "goop.db.exec('UPDATE scores SET points = points + 1')\n  return goop.db.scalar('SELECT sum(points) FROM scores')",
    );
    let engine = engine(dir.path(), Some(store.data()));
    for name in ["scalar", "query", "exec", "caught"] {
        let (result, took) = call_bounded(&engine, name, json!({})).await;
        assert_eq!(result, Err(LuaError::Timeout(1)), "{name} after {took:?}");
    }
    // Every connection of the pool in turn (it hands out the longest idle first) runs statements
    // of many steps with no deadline of their own: none is stopped by a deadline left over.
    for _ in 0..8 {
        let count = data
            .handle(
                &owner,
                request(
                    json!({"op": "count", "table": "scores", "where": "points >= ?", "args": [0]}),
                ),
            )
            .await
            .unwrap();
        assert_eq!(count, 1000);
    }
    let (result, _) = call_bounded(&engine, "total", json!({})).await;
    assert_eq!(result.unwrap(), json!(1000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_caller_leaves_ends_with_its_statement() {
    let dir = tempfile::tempdir().unwrap();
    let store = goop2::store::peer::PeerStore::open(&dir.path().join("data.db"))
        .await
        .unwrap();
    function(
        dir.path(),
        "endless",
        &format!("return goop.db.scalar('{ENDLESS}')"),
    );
    function(
        dir.path(),
        "counter",
        "if request.params.read then return goop.kv.get('n') end\n  while true do goop.kv.set('n', (goop.kv.get('n') or 0) + 1) end",
    );
    function(
        dir.path(),
        "one",
        "return goop.db.scalar('WITH t(x) AS (SELECT 1) SELECT x FROM t')",
    );
    // A budget far longer than the test: only the callers' leaving can end these calls.
    let engine = start_setup(LuaSetup {
        db: Some(store.data()),
        kv: Some(store.lua_kv()),
        ..setup(dir.path(), 60_000, 10_000, 10_000)
    });
    // As many endless statements as there are read-only connections, and an endless loop over
    // goop.kv; every caller gives up after half a second.
    let mut calls = Vec::new();
    for name in ["endless", "endless", "endless", "endless", "counter"] {
        calls.push(tokio::time::timeout(
            Duration::from_millis(500),
            call(&engine, name, json!({})),
        ));
    }
    for gone in futures_util::future::join_all(calls).await {
        assert!(gone.is_err(), "the call ended by itself: {gone:?}");
    }
    // The statements ended with their calls: the read-only connections answer at once.
    let (result, took) = call_bounded(&engine, "one", json!({})).await;
    assert_eq!(result, Ok(json!(1)), "after {took:?}");
    assert!(
        took < Duration::from_secs(3),
        "the next statement waited {took:?}"
    );
    // The loop ended too: its counter stays where it was.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = call(&engine, "counter", json!({"read": true}))
        .await
        .unwrap();
    assert!(before.as_i64().unwrap_or(0) > 0, "the loop ran: {before}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = call(&engine, "counter", json!({"read": true}))
        .await
        .unwrap();
    assert_eq!(before, after, "the loop went on without its caller");
}
