//! The data API against a real `data.db`: every op under every policy for the owner and for
//! another peer, owner scoping and stamping, schemas, and filters that try to escape.

use std::sync::Arc;

use goop2::identity::PeerId;
use goop2::services::data::{Caller, DataError, DataRequest, DataService};
use goop2::store::peer::PeerStore;
use serde_json::{Value, json};

const ME: &str = "12D3KooWQQjgKbDFL6cPWbKicnBWv2Gae79aHvU7ZuxfQrVCBcZ1";
pub const BOB: &str = "12D3KooWQN9sZuzTnKgEagUUYUsdQYSjSHG3dqpCizptWpwjbZXT";
const CAROL: &str = "12D3KooWDpUje6VWr3ub6CvmstneM8bDd6YPWBQMV1gngGshFQuw";

pub async fn service() -> (DataService, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = PeerStore::open(&dir.path().join("data.db")).await.unwrap();
    let (_tx, own_email) = tokio::sync::watch::channel("owner@example.org".to_owned());
    std::mem::forget(_tx);
    let data = DataService::new(
        store.data(),
        ME.parse().unwrap(),
        own_email,
        Arc::new(|peer: &PeerId| {
            let known = (peer.to_base58() == BOB).then(|| goop2::services::data::PeerIdentity {
                label: "Bob".into(),
                verified_email: Some("bob@example.org".to_owned()),
            });
            Box::pin(async move { known })
        }),
    );
    (data, dir)
}

fn request(value: Value) -> DataRequest {
    serde_json::from_value(value).unwrap()
}

pub async fn run(data: &DataService, caller: &Caller, value: Value) -> Result<Value, DataError> {
    data.handle(caller, request(value)).await
}

pub fn peer(id: &str) -> Caller {
    Caller::Peer(id.parse().expect("a peer ID"))
}

pub async fn notes_table(data: &DataService, access: Value) {
    run(
        data,
        &Caller::Owner,
        json!({"op": "create-table", "schema": {
            "name": "notes",
            "columns": [
                {"name": "title", "type": "text", "required": true},
                {"name": "stars", "type": "integer", "default": 0},
                "body TEXT"
            ],
            "access": access
        }}),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn every_op_under_every_policy_for_the_owner_and_for_a_visitor() {
    // (policy, may a visitor read/insert/update/delete, do reads and changes see only own rows)
    for policy in ["local", "owner", "group", "open"] {
        let (data, _dir) = service().await;
        notes_table(
            &data,
            json!({"read": policy, "insert": policy, "update": policy, "delete": policy}),
        )
        .await;
        // The owner may do everything whatever the policy, on every row.
        let mine = run(
            &data,
            &Caller::Owner,
            json!({"op": "insert", "table": "notes", "data": {"title": "owner's"}}),
        )
        .await
        .unwrap()["_id"]
            .as_i64()
            .unwrap();
        let visitor_may = matches!(policy, "owner" | "open");
        let own_rows_only = policy == "owner";

        // insert
        let inserted = run(
            &data,
            &peer(BOB),
            json!({"op": "insert", "table": "notes", "data": {"title": "bob's"}}),
        )
        .await;
        assert_eq!(
            inserted.is_ok(),
            visitor_may,
            "{policy}: insert {inserted:?}"
        );
        if !visitor_may {
            assert!(matches!(inserted, Err(DataError::Forbidden(_))), "{policy}");
            assert!(inserted.unwrap_err().to_string().contains(policy));
            // The owner adds Bob's row for the read checks below.
            continue_with_reads_denied(&data, policy).await;
            continue;
        }
        let bobs = inserted.unwrap()["_id"].as_i64().unwrap();

        // query / query-one / count
        let rows = run(
            &data,
            &peer(BOB),
            json!({"op": "query", "table": "notes", "order": "_id"}),
        )
        .await
        .unwrap();
        let titles: Vec<&str> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["title"].as_str().unwrap())
            .collect();
        if own_rows_only {
            assert_eq!(titles, ["bob's"], "{policy}");
        } else {
            assert_eq!(titles, ["owner's", "bob's"], "{policy}");
        }
        let count = run(&data, &peer(BOB), json!({"op": "count", "table": "notes"}))
            .await
            .unwrap();
        assert_eq!(count, if own_rows_only { 1 } else { 2 }, "{policy}");
        let one = run(
            &data,
            &peer(BOB),
            json!({"op": "query-one", "table": "notes", "where": "_id = ?", "args": [mine]}),
        )
        .await
        .unwrap();
        assert_eq!(one.is_null(), own_rows_only, "{policy}: {one}");

        // update / delete of someone else's row
        let touch = run(
            &data,
            &peer(BOB),
            json!({"op": "update", "table": "notes", "id": mine, "data": {"title": "hacked"}}),
        )
        .await;
        assert_eq!(touch.is_err(), own_rows_only, "{policy}: {touch:?}");
        if own_rows_only {
            assert!(
                matches!(touch, Err(DataError::NotFound(ref m)) if m.contains("belongs to you"))
            );
        }
        let owner_row = run(
            &data,
            &Caller::Owner,
            json!({"op": "query-one", "table": "notes", "where": "_id = ?", "args": [mine]}),
        )
        .await
        .unwrap();
        assert_eq!(
            owner_row["title"],
            if own_rows_only { "owner's" } else { "hacked" },
            "{policy}"
        );

        // update / delete of its own row
        let renamed = run(&data, &peer(BOB), json!({"op": "update", "table": "notes", "id": bobs, "data": {"title": "bob's, edited", "stars": 3}})).await.unwrap();
        assert_eq!(renamed["updated"], 1);
        let removed = run(
            &data,
            &peer(CAROL),
            json!({"op": "delete", "table": "notes", "id": bobs}),
        )
        .await;
        assert_eq!(
            removed.is_err(),
            own_rows_only,
            "{policy}: carol deletes bob's row"
        );
        if own_rows_only {
            let gone = run(
                &data,
                &peer(BOB),
                json!({"op": "delete", "table": "notes", "id": bobs}),
            )
            .await
            .unwrap();
            assert_eq!(gone["deleted"], 1);
        }
        let owner_delete = run(
            &data,
            &Caller::Owner,
            json!({"op": "delete", "table": "notes", "id": mine}),
        )
        .await
        .unwrap();
        assert_eq!(owner_delete["deleted"], 1);

        // role
        let role = run(&data, &peer(BOB), json!({"op": "role", "table": "notes"}))
            .await
            .unwrap();
        assert_eq!(role["role"], "visitor");
        assert_eq!(role["peerId"], BOB);
        assert_eq!(role["hostId"], ME);
        let expected = if own_rows_only { "own" } else { "all" };
        assert_eq!(role["permissions"]["read"], expected, "{policy}");
        assert_eq!(role["permissions"]["insert"], "all", "{policy}");
        let owner_role = run(
            &data,
            &Caller::Owner,
            json!({"op": "role", "table": "notes"}),
        )
        .await
        .unwrap();
        assert_eq!(owner_role["role"], "owner");
        assert_eq!(owner_role["permissions"]["delete"], "all");
    }
}

/// Under `local` and `group`, a visitor can do nothing at all.
async fn continue_with_reads_denied(data: &DataService, policy: &str) {
    for op in [
        json!({"op": "query", "table": "notes"}),
        json!({"op": "query-one", "table": "notes"}),
        json!({"op": "count", "table": "notes"}),
        json!({"op": "update", "table": "notes", "id": 1, "data": {"title": "x"}}),
        json!({"op": "delete", "table": "notes", "id": 1}),
    ] {
        let result = run(data, &peer(BOB), op.clone()).await;
        assert!(
            matches!(result, Err(DataError::Forbidden(_))),
            "{policy}: {op} → {result:?}"
        );
    }
    let role = run(data, &peer(BOB), json!({"op": "role", "table": "notes"}))
        .await
        .unwrap();
    assert_eq!(role["permissions"]["read"], "none", "{policy}");
    // tables and describe stay open: they say what exists, not what is in it.
    assert!(run(data, &peer(BOB), json!({"op": "tables"})).await.is_ok());
    assert!(
        run(
            data,
            &peer(BOB),
            json!({"op": "describe", "table": "notes"})
        )
        .await
        .is_ok()
    );
}

#[tokio::test]
async fn inserts_are_checked_and_stamped_with_the_caller() {
    let (data, _dir) = service().await;
    notes_table(&data, json!({})).await;
    let owner = run(
        &data,
        &Caller::Owner,
        json!({"op": "insert", "table": "notes", "data": {"title": "mine"}}),
    )
    .await
    .unwrap();
    let bob = run(
        &data,
        &peer(BOB),
        json!({"op": "insert", "table": "notes", "data": {"title": "bob"}}),
    )
    .await
    .unwrap();
    let carol = run(
        &data,
        &peer(CAROL),
        json!({"op": "insert", "table": "notes", "data": {"title": "carol"}}),
    )
    .await
    .unwrap();
    let rows = run(
        &data,
        &Caller::Owner,
        json!({"op": "query", "table": "notes", "order": "_id"}),
    )
    .await
    .unwrap();
    let stamps: Vec<(Value, Value, Value)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["_id"].clone(),
                r["_owner"].clone(),
                r["_owner_email"].clone(),
            )
        })
        .collect();
    assert_eq!(
        stamps,
        [
            (owner["_id"].clone(), json!(ME), json!("owner@example.org")),
            (bob["_id"].clone(), json!(BOB), json!("bob@example.org")),
            (carol["_id"].clone(), json!(CAROL), json!("")),
        ],
        "only a hub-verified visitor's email is stamped"
    );
    let first = &rows[0];
    assert_eq!(first["stars"], 0, "defaults apply");
    assert!(first["_created_at"].as_str().unwrap().ends_with('Z'));

    for (bad, message) in [
        (
            json!({"title": "x", "_owner": ME}),
            "`_owner` is kept by the peer",
        ),
        (json!({"stars": 1}), "`title` is required"),
        (json!({"title": 5}), "`title` must be a string"),
        (
            json!({"title": "x", "stars": "many"}),
            "`stars` must be an integer",
        ),
        (
            json!({"title": "x", "colour": "red"}),
            "unknown column `colour`",
        ),
        (json!(["title"]), "must be a JSON object"),
    ] {
        let result = run(
            &data,
            &peer(BOB),
            json!({"op": "insert", "table": "notes", "data": bad}),
        )
        .await;
        match result {
            Err(DataError::BadRequest(got)) => assert!(got.contains(message), "{got}"),
            other => panic!("{bad}: {other:?}"),
        }
    }
    // _updated_at moves on update.
    let before = run(
        &data,
        &Caller::Owner,
        json!({"op": "query-one", "table": "notes", "where": "title = 'mine'"}),
    )
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    run(
        &data,
        &Caller::Owner,
        json!({"op": "update", "table": "notes", "id": before["_id"], "data": {"stars": 5}}),
    )
    .await
    .unwrap();
    let after = run(
        &data,
        &Caller::Owner,
        json!({"op": "query-one", "table": "notes", "where": "title = 'mine'"}),
    )
    .await
    .unwrap();
    assert_ne!(before["_updated_at"], after["_updated_at"]);
    assert_eq!(before["_created_at"], after["_created_at"]);
}

#[tokio::test]
async fn schemas_are_validated_with_precise_messages() {
    let (data, _dir) = service().await;
    let create = |schema: Value| {
        run(
            &data,
            &Caller::Owner,
            json!({"op": "create-table", "schema": schema}),
        )
    };
    let full = create(json!({
        "name": "events",
        "columns": [
            {"name": "code", "type": "guid", "auto": true, "required": true},
            {"name": "at", "type": "datetime", "auto": true},
            {"name": "day", "type": "date"},
            {"name": "start", "type": "time"},
            {"name": "kind", "type": "enum", "values": ["talk", "party"], "default": "talk"},
            {"name": "price", "type": "real"},
            {"name": "poster", "type": "blob"}
        ],
        "access": {"read": "open", "insert": "open"}
    }))
    .await
    .unwrap();
    assert_eq!(
        full["access"]["update"], "owner",
        "unsaid policies take their defaults"
    );
    let row = run(&data, &peer(BOB), json!({"op": "insert", "table": "events", "data": {"day": "2026-11-22", "start": "19:30", "poster": "iVBORw0K"}})).await.unwrap();
    let stored = run(
        &data,
        &Caller::Owner,
        json!({"op": "query-one", "table": "events", "where": "_id = ?", "args": [row["_id"]]}),
    )
    .await
    .unwrap();
    assert_eq!(
        stored["code"].as_str().unwrap().len(),
        36,
        "a GUID was filled in"
    );
    assert!(stored["at"].as_str().unwrap().starts_with("20"));
    assert_eq!(stored["kind"], "talk");
    assert_eq!(
        stored["poster"], "iVBORw0K",
        "blobs go in and out as base64"
    );
    for (data_in, message) in [
        (json!({"kind": "concert"}), "must be one of: talk, party"),
        (json!({"day": "22/11/2026"}), "must be a date"),
        (json!({"start": "7pm"}), "must be a time"),
        (json!({"code": "not-a-guid"}), "must be a GUID"),
        (json!({"at": "yesterday"}), "must be a date and time"),
        (json!({"poster": "***"}), "must be base64"),
    ] {
        let result = run(
            &data,
            &peer(BOB),
            json!({"op": "insert", "table": "events", "data": data_in}),
        )
        .await;
        assert!(
            matches!(&result, Err(DataError::BadRequest(m)) if m.contains(message)),
            "{result:?}"
        );
    }

    for (schema, message) in [
        (
            json!({"name": "_secret", "columns": ["a TEXT"]}),
            "reserved for the system",
        ),
        (
            json!({"name": "sqlite_x", "columns": ["a TEXT"]}),
            "belong to SQLite",
        ),
        (
            json!({"name": "bad name", "columns": ["a TEXT"]}),
            "use a letter",
        ),
        (json!({"name": "t", "columns": []}), "`columns` is empty"),
        (
            json!({"name": "t", "columns": ["a VARCHAR(20)"]}),
            "unknown type `varchar(20)`",
        ),
        (
            json!({"name": "t", "columns": ["a TEXT", "A INTEGER"]}),
            "appears twice",
        ),
        (
            json!({"name": "t", "columns": [{"name": "e", "type": "enum"}]}),
            "an enum needs `values`",
        ),
        (
            json!({"name": "t", "columns": [{"name": "n", "type": "integer", "auto": true}]}),
            "`auto` fills",
        ),
        (
            json!({"name": "t", "columns": [{"name": "n", "type": "integer", "default": "x"}]}),
            "default: `n` must be an integer",
        ),
        (
            json!({"name": "t", "columns": ["a TEXT"], "access": {"read": "everyone"}}),
            "access:",
        ),
        (
            json!({"name": "t", "columns": ["a TEXT"], "extra": 1}),
            "unknown key `extra`",
        ),
        (
            json!({"name": "events", "columns": ["a TEXT"]}),
            "already exists",
        ),
    ] {
        match create(schema.clone()).await {
            Err(DataError::BadRequest(got)) => assert!(got.contains(message), "{schema}: {got}"),
            other => panic!("{schema}: {other:?}"),
        }
    }
    let refused = run(
        &data,
        &peer(BOB),
        json!({"op": "create-table", "schema": {"name": "t", "columns": ["a TEXT"]}}),
    )
    .await;
    assert!(matches!(refused, Err(DataError::Forbidden(_))));
}

#[tokio::test]
async fn filters_that_try_to_escape_are_refused_by_name() {
    let (data, _dir) = service().await;
    notes_table(&data, json!({})).await;
    run(
        &data,
        &Caller::Owner,
        json!({"op": "insert", "table": "notes", "data": {"title": "a", "stars": 2}}),
    )
    .await
    .unwrap();
    run(
        &data,
        &peer(BOB),
        json!({"op": "insert", "table": "notes", "data": {"title": "b", "stars": 5}}),
    )
    .await
    .unwrap();

    // What is allowed works.
    let found = run(&data, &peer(BOB), json!({
        "op": "query", "table": "notes",
        "where": "(stars BETWEEN ? AND 10 OR title IN ('x', 'a')) AND lower(title) LIKE ? AND body IS NULL",
        "args": [3, "%"], "order": "stars DESC, _id", "columns": ["title", "stars"]
    }))
    .await
    .unwrap();
    assert_eq!(
        found,
        json!([{"title": "b", "stars": 5}, {"title": "a", "stars": 2}])
    );
    let quoted = run(
        &data,
        &peer(BOB),
        json!({"op": "count", "table": "notes", "where": "title = 'it''s'"}),
    )
    .await
    .unwrap();
    assert_eq!(quoted, 0);

    for (filter, message) in [
        ("1=1) OR (1=1", "unexpected `)`"),
        ("1=1; DROP TABLE notes", "unexpected `;`"),
        (
            "title = (SELECT title FROM notes)",
            "subqueries are not allowed",
        ),
        (
            "_id IN (SELECT _id FROM _tables)",
            "subqueries are not allowed",
        ),
        ("EXISTS (SELECT 1)", "subqueries are not allowed"),
        ("name = 'x' AND type = 'table'", "unknown column `name`"),
        (
            "sqlite_master.name = 'x'",
            "qualified names are not allowed",
        ),
        (
            "load_extension('x')",
            "function `load_extension` is not allowed",
        ),
        ("count(*) > 0", "function `count` is not allowed"),
        ("title = ?1", "use plain `?` placeholders"),
        ("title = :name", "use plain `?` placeholders"),
        ("stars", ""),
    ] {
        let result = run(
            &data,
            &peer(BOB),
            json!({"op": "query", "table": "notes", "where": filter}),
        )
        .await;
        if message.is_empty() {
            assert!(result.is_ok(), "{filter}: {result:?}");
            continue;
        }
        match result {
            Err(DataError::BadRequest(got)) => assert!(got.contains(message), "{filter}: {got}"),
            other => panic!("{filter}: {other:?}"),
        }
    }
    for (request, message) in [
        (
            json!({"op": "query", "table": "_tables"}),
            "is a system table",
        ),
        (
            json!({"op": "query", "table": "_peer_cache"}),
            "is a system table",
        ),
        (
            json!({"op": "query", "table": "sqlite_master"}),
            "is a system table",
        ),
        (
            json!({"op": "query", "table": "notes; ATTACH DATABASE 'x' AS y"}),
            "there is no table",
        ),
        (
            json!({"op": "query", "table": "notes", "order": "stars; PRAGMA writable_schema"}),
            "unexpected `;`",
        ),
        (
            json!({"op": "query", "table": "notes", "order": "title = ?"}),
            "not allowed here",
        ),
        (
            json!({"op": "query", "table": "notes", "limit": 1001}),
            "limit 1001 is out of range",
        ),
        (
            json!({"op": "query", "table": "notes", "limit": 0}),
            "out of range",
        ),
        (
            json!({"op": "query", "table": "notes", "columns": ["password"]}),
            "unknown column `password`",
        ),
        (
            json!({"op": "query", "table": "notes", "where": "stars > ?", "args": []}),
            "1 `?` placeholders but `args` holds 0",
        ),
        (
            json!({"op": "query", "table": "notes", "where": "x".repeat(5000)}),
            "longer than 4096 bytes",
        ),
        (
            json!({"op": "pragma", "table": "notes"}),
            "unknown op `pragma`",
        ),
        (
            json!({"op": "lua-call", "function": "hello"}),
            "lua is not enabled",
        ),
    ] {
        let result = run(&data, &peer(BOB), request.clone()).await;
        let got = result.expect_err(&request.to_string()).to_string();
        assert!(got.contains(message), "{request}: {got}");
    }
    // The tables are intact.
    let count = run(
        &data,
        &Caller::Owner,
        json!({"op": "count", "table": "notes"}),
    )
    .await
    .unwrap();
    assert_eq!(count, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_inserts_survive_kill_9() {
    use std::io::BufRead;
    let dir = crate::support::PeerDir::new("Durable", |c| crate::support::short_ttl(c, 6));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_goop2"))
        .args(["peer", dir.path().to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let console = loop {
        let line = lines.next().expect("the peer prints its console").unwrap();
        if let Some(url) = line.strip_prefix("Console: ") {
            break url.trim_end_matches('/').to_owned();
        }
    };
    let client = crate::support::no_redirects();
    let created = client
        .post(format!("{console}/api/data/create-table"))
        .json(&json!({"schema": {"name": "ledger", "columns": ["n INTEGER NOT NULL"]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 200);

    // Four writers insert as fast as they are answered; the process is killed meanwhile.
    let acknowledged = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut writers = Vec::new();
    for writer in 0..4i64 {
        let (client, console, acknowledged) =
            (client.clone(), console.clone(), acknowledged.clone());
        writers.push(tokio::spawn(async move {
            for i in 0..100_000i64 {
                let sent = client
                    .post(format!("{console}/api/data/insert"))
                    .json(&json!({"table": "ledger", "data": {"n": writer * 1_000_000 + i}}))
                    .send()
                    .await;
                let Ok(response) = sent else { return };
                if response.status().as_u16() != 200 {
                    return;
                }
                let Ok(body) = response.json::<Value>().await else {
                    return;
                };
                acknowledged
                    .lock()
                    .unwrap()
                    .push(body["data"]["_id"].as_i64().unwrap());
            }
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    for writer in writers {
        writer.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() > 50,
        "only {} inserts were answered",
        acknowledged.len()
    );

    // The peer again, from the same directory: every acknowledged row is there.
    let mut again = std::process::Command::new(env!("CARGO_BIN_EXE_goop2"))
        .args(["peer", dir.path().to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(again.stdout.take().unwrap()).lines();
    let console = loop {
        let line = lines.next().expect("the peer prints its console").unwrap();
        if let Some(url) = line.strip_prefix("Console: ") {
            break url.trim_end_matches('/').to_owned();
        }
    };
    let mut present = std::collections::HashSet::new();
    let mut offset = 0;
    loop {
        let page: Value = client
            .post(format!("{console}/api/data/query"))
            .json(&json!({"table": "ledger", "columns": ["_id"], "limit": 1000, "offset": offset, "order": "_id"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let rows = page["data"].as_array().expect("rows").clone();
        present.extend(rows.iter().map(|r| r["_id"].as_i64().unwrap()));
        if rows.len() < 1000 {
            break;
        }
        offset += 1000;
    }
    let _ = again.kill();
    let _ = again.wait();
    let lost: Vec<i64> = acknowledged
        .iter()
        .copied()
        .filter(|id| !present.contains(id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged rows lost after kill -9: {lost:?}",
        lost.len()
    );
}

#[tokio::test]
async fn the_owner_reshapes_tables_and_reads_with_sql_that_cannot_write() {
    let (data, _dir) = service().await;
    notes_table(&data, json!({})).await;
    let owner = &Caller::Owner;
    run(
        &data,
        owner,
        json!({"op": "insert", "table": "notes", "data": {"title": "a"}}),
    )
    .await
    .unwrap();

    // add-column: a required one needs a default.
    let refused = run(
        &data,
        owner,
        json!({"op": "add-column", "table": "notes", "column": "tag TEXT NOT NULL"}),
    )
    .await;
    assert!(
        matches!(&refused, Err(DataError::BadRequest(m)) if m.contains("needs a default")),
        "{refused:?}"
    );
    run(
        &data,
        owner,
        json!({"op": "add-column", "table": "notes", "column": "tag TEXT NOT NULL DEFAULT 'none'"}),
    )
    .await
    .unwrap();
    let row = run(&data, owner, json!({"op": "query-one", "table": "notes"}))
        .await
        .unwrap();
    assert_eq!(row["tag"], "none", "{row}");
    run(
        &data,
        owner,
        json!({"op": "insert", "table": "notes", "data": {"title": "b", "tag": "x"}}),
    )
    .await
    .unwrap();

    // drop-column, rename-table, set-policy.
    run(
        &data,
        owner,
        json!({"op": "drop-column", "table": "notes", "name": "body"}),
    )
    .await
    .unwrap();
    let described = run(&data, owner, json!({"op": "describe", "table": "notes"}))
        .await
        .unwrap();
    let names: Vec<&str> = described["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["title", "stars", "tag"]);
    let system = run(
        &data,
        owner,
        json!({"op": "drop-column", "table": "notes", "name": "_owner"}),
    )
    .await;
    assert!(system.is_err(), "system columns stay");
    run(
        &data,
        owner,
        json!({"op": "rename-table", "table": "notes", "name": "memos"}),
    )
    .await
    .unwrap();
    assert!(matches!(
        run(&data, owner, json!({"op": "count", "table": "notes"})).await,
        Err(DataError::NotFound(_))
    ));
    assert_eq!(
        run(&data, owner, json!({"op": "count", "table": "memos"}))
            .await
            .unwrap(),
        2
    );
    let before = run(
        &data,
        owner,
        json!({"op": "query-one", "table": "memos", "where": "title = 'a'"}),
    )
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    run(
        &data,
        owner,
        json!({"op": "update", "table": "memos", "id": before["_id"], "data": {"stars": 1}}),
    )
    .await
    .unwrap();
    let after = run(
        &data,
        owner,
        json!({"op": "query-one", "table": "memos", "where": "title = 'a'"}),
    )
    .await
    .unwrap();
    assert_ne!(
        before["_updated_at"], after["_updated_at"],
        "the trigger followed the rename"
    );
    run(&data, owner, json!({"op": "set-policy", "table": "memos", "access": {"read": "local", "insert": "local", "update": "local", "delete": "local"}})).await.unwrap();
    let denied = run(&data, &peer(BOB), json!({"op": "query", "table": "memos"})).await;
    assert!(
        matches!(denied, Err(DataError::Forbidden(_))),
        "the new policy applies at once"
    );

    // Read-only SQL.
    let result = run(&data, owner, json!({"op": "sql", "sql": "WITH t AS (SELECT title FROM memos) SELECT count(*) AS n FROM t"})).await.unwrap();
    assert_eq!(result["rows"][0]["n"], 2);
    for (sql, message) in [
        ("DELETE FROM memos", "only a SELECT"),
        ("SELECT 1; DROP TABLE memos", "one statement at a time"),
        ("PRAGMA writable_schema = 1", "only a SELECT"),
        ("ATTACH DATABASE '/tmp/x.db' AS x", "only a SELECT"),
    ] {
        let refused = run(&data, owner, json!({"op": "sql", "sql": sql})).await;
        assert!(
            matches!(&refused, Err(DataError::BadRequest(m)) if m.contains(message)),
            "{sql}: {refused:?}"
        );
    }
    // Even a SELECT that writes through a function is stopped by the read-only connection.
    let sneaky = run(
        &data,
        owner,
        json!({"op": "sql", "sql": "SELECT * FROM memos WHERE load_extension('x') IS NULL"}),
    )
    .await;
    assert!(sneaky.is_err());
    let many = run(&data, owner, json!({"op": "sql", "sql": "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n LIMIT 5000) SELECT i FROM n"})).await.unwrap();
    assert_eq!(many["rows"].as_array().unwrap().len(), 1000);
    assert_eq!(many["truncated"], true);

    // drop-table.
    run(&data, owner, json!({"op": "drop-table", "table": "memos"}))
        .await
        .unwrap();
    assert_eq!(
        run(&data, owner, json!({"op": "tables"})).await.unwrap(),
        json!([])
    );
    for op in [
        "drop-table",
        "rename-table",
        "add-column",
        "drop-column",
        "set-policy",
        "sql",
    ] {
        let refused = run(&data, &peer(BOB), json!({"op": op, "table": "memos"})).await;
        assert!(matches!(refused, Err(DataError::Forbidden(_))), "{op}");
    }
}

#[tokio::test]
async fn results_are_bounded_in_bytes_as_well_as_rows() {
    let (data, _dir) = service().await;
    notes_table(&data, json!({})).await;
    let body = "x".repeat(4096);
    for i in 0..300 {
        run(&data, &Caller::Owner, json!({"op": "insert", "table": "notes", "data": {"title": format!("n{i}"), "body": body}}))
            .await
            .unwrap();
    }
    let too_big = run(
        &data,
        &peer(BOB),
        json!({"op": "query", "table": "notes", "limit": 1000}),
    )
    .await;
    match too_big {
        Err(DataError::TooLarge(message)) => assert!(
            message.contains("ask for fewer rows or columns"),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }
    // The same rows without the big column fit.
    let slim = run(
        &data,
        &peer(BOB),
        json!({"op": "query", "table": "notes", "limit": 1000, "columns": ["_id", "title"]}),
    )
    .await
    .unwrap();
    assert_eq!(slim.as_array().unwrap().len(), 300);
}

#[tokio::test]
async fn add_column_keeps_a_table_to_a_hundred_columns_of_its_own() {
    let (data, _dir) = service().await;
    let columns: Vec<String> = (1..=99).map(|i| format!("c{i} TEXT")).collect();
    run(
        &data,
        &Caller::Owner,
        json!({"op": "create-table", "schema": {"name": "wide", "columns": columns}}),
    )
    .await
    .unwrap();
    let add = |name: &str| {
        run(
            &data,
            &Caller::Owner,
            json!({"op": "add-column", "table": "wide", "column": format!("{name} TEXT")}),
        )
    };
    add("c100").await.unwrap();
    match add("c101").await {
        Err(DataError::BadRequest(message)) => assert!(
            message.contains("already has 100 columns of its own; at most 100 are allowed"),
            "{message}"
        ),
        other => panic!("the 101st column: {other:?}"),
    }
    let described = run(
        &data,
        &Caller::Owner,
        json!({"op": "describe", "table": "wide"}),
    )
    .await
    .unwrap();
    assert_eq!(described["columns"].as_array().unwrap().len(), 100);
    // The same bound as at creation.
    let columns: Vec<String> = (1..=101).map(|i| format!("c{i} TEXT")).collect();
    let refused = run(
        &data,
        &Caller::Owner,
        json!({"op": "create-table", "schema": {"name": "wider", "columns": columns}}),
    )
    .await;
    assert!(
        matches!(&refused, Err(DataError::BadRequest(m)) if m.contains("at most 100 columns")),
        "{refused:?}"
    );
}

#[tokio::test]
async fn each_caller_gets_a_steady_share_of_requests() {
    let (data, _dir) = service().await;
    notes_table(&data, json!({})).await;
    let count = json!({"op": "count", "table": "notes"});
    let mut answered = 0;
    let started = std::time::Instant::now();
    let refusal = loop {
        match run(&data, &peer(BOB), count.clone()).await {
            Ok(_) => answered += 1,
            Err(error) => break error,
        }
        assert!(answered <= 1000, "no limit on one caller's requests");
    };
    // The burst (100), and the few the bucket refilled (50 a second) while they ran.
    let refilled = (started.elapsed().as_secs_f64() * 50.0).ceil() as usize;
    assert!(
        (100..=100 + refilled).contains(&answered),
        "{answered} answered, {refilled} refilled"
    );
    let DataError::TooMany(message) = &refusal else {
        panic!("{refusal:?}");
    };
    assert!(
        message.starts_with(&format!(
            "rate: caller {BOB} may make at most 50 requests per second (bursts of 100)"
        )),
        "{message}"
    );
    assert_eq!(refusal.code(), 429);
    // Another caller and the owner are served meanwhile.
    run(&data, &peer(CAROL), count.clone()).await.unwrap();
    run(&data, &Caller::Owner, count).await.unwrap();
}

#[tokio::test]
async fn a_request_with_several_problems_is_told_the_first_in_a_fixed_order() {
    // Rights to the op first, then Lua being off, then the table (missing, system, unknown) and
    // its policy, and only then the request's own fields, in the order each op reads them.
    let (data, _dir) = service().await;
    notes_table(&data, json!({"insert": "local"})).await;
    let owner = &Caller::Owner;
    let bob = &peer(BOB);
    for (caller, request, code, message) in [
        (
            bob,
            json!({"op": "create-table"}),
            403,
            "`create-table` is for the peer's owner only",
        ),
        (
            bob,
            json!({"op": "drop-table"}),
            403,
            "`drop-table` is for the peer's owner only",
        ),
        (
            bob,
            json!({"op": "sql"}),
            403,
            "`sql` is for the peer's owner only",
        ),
        (owner, json!({}), 400, "`op` is missing"),
        (owner, json!({"op": "insert"}), 400, "`table` is missing"),
        (
            owner,
            json!({"op": "insert", "table": "nope"}),
            404,
            "there is no table `nope`",
        ),
        (
            owner,
            json!({"op": "insert", "table": "_tables"}),
            403,
            "is a system table",
        ),
        (
            bob,
            json!({"op": "insert", "table": "notes"}),
            403,
            "(policy: local)",
        ),
        (
            owner,
            json!({"op": "insert", "table": "notes"}),
            400,
            "`data` is missing",
        ),
        (
            owner,
            json!({"op": "update", "table": "notes"}),
            400,
            "`id` (the row's _id) is missing",
        ),
        (
            owner,
            json!({"op": "update", "table": "notes", "id": 1}),
            400,
            "`data` is missing",
        ),
        (
            owner,
            json!({"op": "delete", "table": "nope"}),
            404,
            "there is no table `nope`",
        ),
        (bob, json!({"op": "lua-call"}), 501, "lua is not enabled"),
        (
            owner,
            json!({"op": "create-table"}),
            400,
            "`schema` is missing",
        ),
        (owner, json!({"op": "sql"}), 400, "`sql` is missing"),
        (
            owner,
            json!({"op": "rename-table", "table": "nope"}),
            404,
            "there is no table `nope`",
        ),
        (
            owner,
            json!({"op": "rename-table", "table": "notes"}),
            400,
            "`name` (the new name) is missing",
        ),
        (
            owner,
            json!({"op": "drop-column", "table": "notes"}),
            400,
            "`name` (the column) is missing",
        ),
        (
            owner,
            json!({"op": "add-column", "table": "_tables", "column": "x BOGUS"}),
            403,
            "is a system table",
        ),
        (
            owner,
            json!({"op": "add-column", "table": "notes", "column": "x BOGUS"}),
            400,
            "unknown type `bogus`",
        ),
        (
            owner,
            json!({"op": "set-policy", "table": "nope", "access": {"read": "x"}}),
            404,
            "there is no table `nope`",
        ),
        (
            owner,
            json!({"op": "set-policy", "table": "notes", "access": {"read": "x"}}),
            400,
            "access: unknown variant `x`",
        ),
        (
            owner,
            json!({"op": "set-limits", "table": "notes"}),
            400,
            "`limits` is missing",
        ),
        (
            owner,
            json!({"op": "set-limits", "table": "nope", "limits": 5}),
            404,
            "there is no table `nope`",
        ),
    ] {
        let refusal = run(&data, caller, request.clone())
            .await
            .expect_err(&request.to_string());
        assert_eq!(refusal.code(), code, "{request}: {refusal}");
        assert!(
            refusal.to_string().contains(message),
            "{request}: {refusal}"
        );
    }
}

#[tokio::test]
async fn a_unique_set_lets_each_peer_vote_once_per_link() {
    let (data, _dir) = service().await;
    let bob = Caller::Peer(BOB.parse().unwrap());
    let carol = Caller::Peer(CAROL.parse().unwrap());
    run(
        &data,
        &Caller::Owner,
        json!({"op": "create-table", "schema": {
            "name": "votes",
            "columns": ["link INTEGER NOT NULL", "value INTEGER NOT NULL"],
            "unique": [["_owner", "link"]]
        }}),
    )
    .await
    .unwrap();
    let vote =
        |link: i64| json!({"op": "insert", "table": "votes", "data": {"link": link, "value": 1}});
    run(&data, &bob, vote(1)).await.unwrap();
    run(&data, &bob, vote(2)).await.unwrap();
    run(&data, &carol, vote(1)).await.unwrap();
    let again = run(&data, &bob, vote(1)).await.unwrap_err();
    assert!(
        matches!(&again, DataError::BadRequest(m) if m.contains("UNIQUE")),
        "{again:?}"
    );
    let described = run(
        &data,
        &Caller::Owner,
        json!({"op": "describe", "table": "votes"}),
    )
    .await
    .unwrap();
    assert_eq!(
        described["unique"],
        json!([["_owner", "link"]]),
        "{described}"
    );
    let dropped = run(
        &data,
        &Caller::Owner,
        json!({"op": "drop-column", "table": "votes", "name": "link"}),
    )
    .await
    .unwrap_err();
    assert!(format!("{dropped:?}").contains("unique set"), "{dropped:?}");
    for bad in [json!([["nope"]]), json!([[]]), json!("link")] {
        let refused = run(
            &data,
            &Caller::Owner,
            json!({"op": "create-table", "schema": {"name": "v2", "columns": ["link INTEGER"], "unique": bad}}),
        )
        .await
        .unwrap_err();
        assert!(format!("{refused:?}").contains("unique"), "{refused:?}");
    }
}

#[tokio::test]
async fn a_table_made_again_under_its_name_is_read_with_its_new_columns() {
    let (data, _dir) = service().await;
    let owner = &Caller::Owner;
    let make = |columns: Value| json!({"op": "create-table", "schema": {"name": "games", "columns": columns}});
    run(&data, owner, make(json!(["white TEXT", "status TEXT"])))
        .await
        .unwrap();
    run(
        &data,
        owner,
        json!({"op": "insert", "table": "games", "data": {"white": "w", "status": "won"}}),
    )
    .await
    .unwrap();
    let read = json!({"op": "query", "table": "games", "where": "_id = ?", "args": [1]});
    let rows = run(&data, owner, read.clone()).await.unwrap();
    assert_eq!(rows[0]["status"], "won");
    let sql = "SELECT * FROM games WHERE _id = 1";
    // Statements written by others run on read-only connections of their own.
    for _ in 0..4 {
        assert_eq!(data.sql(sql).await.unwrap().rows[0]["status"], "won");
    }
    run(&data, owner, json!({"op": "drop-table", "table": "games"}))
        .await
        .unwrap();
    run(
        &data,
        owner,
        make(json!(["x TEXT", "board TEXT", "status TEXT"])),
    )
    .await
    .unwrap();
    run(&data, owner, json!({"op": "insert", "table": "games", "data": {"x": "p", "board": ".........", "status": "open"}}))
        .await
        .unwrap();
    let rows = run(&data, owner, read).await.unwrap();
    assert_eq!(rows[0]["status"], "open", "{rows}");
    assert_eq!(rows[0]["board"], ".........", "{rows}");
    assert!(rows[0].get("white").is_none(), "{rows}");
    for _ in 0..4 {
        let rows = data.sql(sql).await.unwrap().rows;
        assert_eq!(rows[0]["status"], "open", "{rows:?}");
        assert!(rows[0].get("white").is_none(), "{rows:?}");
    }
}

#[tokio::test]
async fn a_table_that_requires_an_email_takes_rows_only_from_peers_a_hub_vouched_for() {
    let (data, _dir) = service().await;
    run(
        &data,
        &Caller::Owner,
        json!({"op": "create-table", "schema": {
            "name": "signups", "columns": ["note TEXT"], "require_email": true
        }}),
    )
    .await
    .unwrap();
    let insert = json!({"op": "insert", "table": "signups", "data": {"note": "hi"}});
    run(&data, &peer(BOB), insert.clone()).await.unwrap();
    let refused = run(&data, &peer(CAROL), insert.clone()).await.unwrap_err();
    assert!(
        matches!(&refused, DataError::Forbidden(m) if m.contains("email a hub vouched for")),
        "{refused:?}"
    );
    run(&data, &Caller::Owner, insert).await.unwrap();
    let rows = run(
        &data,
        &Caller::Owner,
        json!({"op": "query", "table": "signups", "order": "_id"}),
    )
    .await
    .unwrap();
    assert_eq!(rows[0]["_owner_email"], "bob@example.org");
    assert_eq!(rows.as_array().unwrap().len(), 2);
}
