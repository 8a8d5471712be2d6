//! Whole statements written by others — a site script's `goop.db` and the owner's SQL box — reach
//! the site's own tables and nothing else, whatever quoting, case, schema prefix, nesting or
//! `WITH` name they use.

use std::sync::Arc;

use goop2::services::data::{Caller, DataError, DataService};
use goop2::store::data::DataStore;
use goop2::store::peer::PeerStore;
use serde_json::{Value, json};

/// A store with a `local` table `posts` (one row), a `_lua_kv` entry, and its data service.
async fn store() -> (PeerStore, DataService, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = PeerStore::open(&dir.path().join("data.db")).await.unwrap();
    let (_tx, email) = tokio::sync::watch::channel(String::new());
    std::mem::forget(_tx);
    let data = DataService::new(
        store.data(),
        goop2::identity::PeerId::random(),
        email,
        Arc::new(|_: &goop2::identity::PeerId| Box::pin(async { None })),
    );
    let access = json!({"read": "local", "insert": "local", "update": "local", "delete": "local"});
    owner(&data, json!({"op": "create-table", "schema": {"name": "posts", "columns": ["title TEXT"], "access": access}}))
        .await
        .unwrap();
    owner(
        &data,
        json!({"op": "insert", "table": "posts", "data": {"title": "first"}}),
    )
    .await
    .unwrap();
    store
        .lua_kv()
        .set("notes", "secret", "\"kept\"")
        .await
        .unwrap();
    (store, data, dir)
}

async fn owner(data: &DataService, request: Value) -> Result<Value, DataError> {
    data.handle(&Caller::Owner, serde_json::from_value(request).unwrap())
        .await
}

/// Every way SQLite lets a statement spell `name`.
fn spellings(name: &str) -> Vec<String> {
    let upper = name.to_ascii_uppercase();
    vec![
        name.to_owned(),
        upper.clone(),
        format!("\"{name}\""),
        format!("[{name}]"),
        format!("[{upper}]"),
        format!("`{name}`"),
        format!("'{name}'"),
        format!("main.{name}"),
        format!("\"main\".\"{name}\""),
        format!("[main].`{name}`"),
        format!("temp.{name}"),
    ]
}

/// The statements each spelling is tried in, and which check sees them: (sql, kind).
fn statements(table: &str) -> Vec<(String, &'static str)> {
    vec![
        (format!("SELECT * FROM {table}"), "query"),
        (format!("SELECT * FROM posts JOIN {table} ON 1"), "query"),
        (
            format!("SELECT * FROM posts WHERE title IN (SELECT 1 FROM {table})"),
            "query",
        ),
        (
            format!("SELECT (SELECT count(*) FROM {table}) AS n"),
            "query",
        ),
        (
            format!("WITH c AS (SELECT * FROM {table}) SELECT * FROM c"),
            "query",
        ),
        (
            format!("SELECT * FROM (SELECT * FROM {table}) AS sub"),
            "query",
        ),
        (
            format!("SELECT title FROM posts UNION SELECT 1 FROM {table}"),
            "query",
        ),
        (format!("DELETE FROM {table}"), "write"),
        (format!("UPDATE {table} SET read_policy = 'open'"), "write"),
        (format!("INSERT INTO {table} (key) VALUES ('x')"), "write"),
        (
            format!("INSERT INTO posts (title) SELECT 1 FROM {table}"),
            "write",
        ),
        (
            format!("UPDATE posts SET title = 'x' FROM {table} WHERE 1"),
            "write",
        ),
        (
            format!("DELETE FROM posts WHERE _id IN (SELECT 1 FROM {table})"),
            "write",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_quoting_case_or_schema_reaches_a_system_table() {
    let (store, data, _dir) = store().await;
    let tables: DataStore = store.data();
    let mut tried = 0;
    for system in [
        "_tables",
        "_lua_kv",
        "_peer_cache",
        "_meta",
        "sqlite_master",
        "sqlite_schema",
        "sqlite_sequence",
        "pragma_table_list",
    ] {
        for spelling in spellings(system) {
            for (sql, kind) in statements(&spelling) {
                tried += 1;
                let refused = match kind {
                    "query" => tables.user_query(&sql, &[], 10, soon()).await.err(),
                    _ => tables.user_write(&sql, &[], soon()).await.err(),
                };
                let Some(refused) = refused else {
                    panic!("{sql}: a script got through");
                };
                let message = refused.to_string();
                assert!(
                    message.contains("system table")
                        || message.contains("without a schema")
                        || message.contains("no table"),
                    "{sql}: {message}"
                );
                if kind == "query" {
                    let boxed = owner(&data, json!({"op": "sql", "sql": sql})).await;
                    assert!(
                        matches!(&boxed, Err(DataError::BadRequest(_))),
                        "{sql}: the owner's SQL box ran it: {boxed:?}"
                    );
                }
            }
        }
    }
    assert!(tried > 1000, "{tried}");
    // Nothing changed: the policy is still local, the script's key still there.
    let described = owner(&data, json!({"op": "describe", "table": "posts"}))
        .await
        .unwrap();
    assert_eq!(described["access"]["read"], "local");
    assert_eq!(
        store
            .lua_kv()
            .get("notes", "secret")
            .await
            .unwrap()
            .as_deref(),
        Some("\"kept\"")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_tables_resolve_under_every_quoting_and_nothing_else_does() {
    let (store, data, _dir) = store().await;
    let tables = store.data();
    for spelling in [
        "posts",
        "POSTS",
        "\"posts\"",
        "[Posts]",
        "`posts`",
        "'posts'",
    ] {
        let (rows, _) = tables
            .user_query(&format!("SELECT title FROM {spelling}"), &[], 10, soon())
            .await
            .unwrap_or_else(|e| panic!("{spelling}: {e}"));
        assert_eq!(rows[0]["title"], "first", "{spelling}");
    }
    for allowed in [
        "SELECT 1 AS one",
        "WITH c AS (SELECT title FROM posts) SELECT * FROM c",
        "WITH a AS (SELECT * FROM b), b AS (SELECT title FROM posts) SELECT * FROM a",
        "SELECT * FROM posts p JOIN (SELECT _id FROM posts) q ON p._id = q._id",
    ] {
        tables
            .user_query(allowed, &[], 10, soon())
            .await
            .unwrap_or_else(|e| panic!("{allowed}: {e}"));
        owner(&data, json!({"op": "sql", "sql": allowed}))
            .await
            .unwrap_or_else(|e| panic!("{allowed}: {e}"));
    }
    for (sql, message) in [
        (
            "SELECT * FROM pragma_table_info('posts')",
            "is a system table",
        ),
        ("SELECT * FROM json_each('[1]')", "no table `json_each`"),
        ("SELECT * FROM posts(1)", "table-valued functions"),
        ("SELECT * FROM nothing", "no table `nothing`"),
        (
            "WITH _tables AS (SELECT 1) SELECT * FROM _tables",
            "a WITH name may not start with",
        ),
        (
            "SELECT * FROM c, (WITH c AS (SELECT 1) SELECT * FROM c) AS x",
            "no table `c`",
        ),
        ("WITH c AS (SELECT 1) DELETE FROM posts", "only a SELECT"),
        ("SELECT * FROM posts WHERE 1 IN _tables", ""),
    ] {
        let refused = tables.user_query(sql, &[], 10, soon()).await;
        match &refused {
            Err(error) => assert!(error.to_string().contains(message), "{sql}: {error}"),
            Ok(rows) => panic!("{sql}: a script read {rows:?}"),
        }
        let boxed = owner(&data, json!({"op": "sql", "sql": sql})).await;
        assert!(
            matches!(&boxed, Err(DataError::BadRequest(m)) if m.contains(message)),
            "{sql}: {boxed:?}"
        );
    }
    let written = tables
        .user_write(
            "UPDATE [posts] SET title = ? WHERE _id = 1",
            &[goop2::store::data::SqlValue::Text("changed".into())],
            soon(),
        )
        .await
        .unwrap();
    assert_eq!(written, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_cannot_open_a_policy_or_wipe_the_key_value_store() {
    let (store, data, dir) = store().await;
    let functions = dir.path().join("lua/functions");
    std::fs::create_dir_all(&functions).unwrap();
    for (name, statement) in [
        (
            "open",
            "goop.db.exec(\"UPDATE `_tables` SET read_policy = 'open', delete_policy = 'open'\")",
        ),
        ("wipe", "goop.db.exec('DELETE FROM [_lua_kv]')"),
        ("peek", "goop.db.query(\"SELECT * FROM '_lua_kv'\")"),
    ] {
        std::fs::write(
            functions.join(format!("{name}.lua")),
            format!("function call(request)\n  return {statement}\nend\n"),
        )
        .unwrap();
    }
    let engine = crate::lua::start_setup(goop2::services::lua::LuaSetup {
        db: Some(store.data()),
        ..crate::lua::setup(&dir.path().join("lua"), 2000, 10_000, 10_000)
    });
    for name in ["open", "wipe", "peek"] {
        match crate::lua::call(&engine, name, json!({})).await {
            Err(goop2::services::lua::LuaError::Script(message)) => {
                assert!(message.contains("is a system table"), "{name}: {message}")
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    let described = owner(&data, json!({"op": "describe", "table": "posts"}))
        .await
        .unwrap();
    assert_eq!(described["access"]["read"], "local");
    assert_eq!(described["access"]["delete"], "local");
    assert_eq!(
        store
            .lua_kv()
            .get("notes", "secret")
            .await
            .unwrap()
            .as_deref(),
        Some("\"kept\"")
    );
}

/// A deadline no statement here comes near.
fn soon() -> std::time::Instant {
    std::time::Instant::now() + std::time::Duration::from_secs(30)
}
