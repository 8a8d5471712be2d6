//! What other peers may store in a peer's tables, over the network: the insert rate per caller
//! and the quotas per table (rows and bytes per caller, rows and bytes in all), with defaults from
//! goop.json and overrides from the database editor; a refusal names the limit, and other
//! visitors are still served.

use goop2::modes::peer::RunningPeer;
use goop2::services::presence::peer_table::PeerState;
use serde_json::{Value, json};

use crate::console::console;
use crate::support::{PeerDir, TestPeer, get_page, hidden, no_redirects, short_ttl};

/// Alice (embedded hub; her goop.json's `data` section as given) and two visitors, Bob and Carol,
/// once they all see each other.
async fn alice_and_visitors(data: Value) -> (TestPeer, [TestPeer; 2]) {
    let a_dir = PeerDir::new("Alice", |c| {
        short_ttl(c, 6);
        c.presence.rendezvous_host = true;
    });
    // The limits are written into goop.json as an owner would, and read back from it.
    let file = a_dir.path().join("goop.json");
    let mut raw: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    raw["data"] = data;
    std::fs::write(&file, serde_json::to_vec_pretty(&raw).unwrap()).unwrap();
    let alice = TestPeer::start(a_dir).await;
    let hub = format!("http://{}", alice.hub.as_ref().unwrap().hub_addr);
    let tag = alice.dir().config().p2p.mdns_tag;
    let mut visitors = Vec::new();
    for label in ["Bob", "Carol"] {
        let running = TestPeer::spawn(label, |c| {
            short_ttl(c, 6);
            c.presence.rendezvous_wan = hub.clone();
            c.p2p.mdns_tag = tag.clone();
        })
        .await;
        let id = alice.peer_id.to_base58();
        assert!(crate::support::lists(&running, &id, PeerState::Online).await);
        visitors.push(running);
    }
    let [bob, carol] = <[TestPeer; 2]>::try_from(visitors).ok().unwrap();
    (alice, [bob, carol])
}

async fn post(url: &str, body: Value) -> (u16, Value) {
    let response = no_redirects().post(url).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `op` on Alice's database, from `visitor`'s console (the caller is the visitor's peer ID).
async fn visit(visitor: &RunningPeer, alice: &RunningPeer, op: &str, body: Value) -> (u16, Value) {
    let url = format!(
        "{}/api/p/{}/data/{op}",
        console(visitor),
        alice.peer_id.to_base58()
    );
    post(&url, body).await
}

async fn insert(
    visitor: &RunningPeer,
    alice: &RunningPeer,
    table: &str,
    text: &str,
) -> (u16, Value) {
    visit(
        visitor,
        alice,
        "insert",
        json!({"table": table, "data": {"message": text}}),
    )
    .await
}

/// Alice's own op.
async fn own(alice: &RunningPeer, op: &str, body: Value) -> Value {
    let (status, answer) = post(&format!("{}/api/data/{op}", console(alice)), body).await;
    assert_eq!(status, 200, "{op}: {answer}");
    answer["data"].clone()
}

async fn create(alice: &RunningPeer, table: &str) {
    own(
        alice,
        "create-table",
        json!({"schema": {"name": table, "columns": ["message TEXT"]}}),
    )
    .await;
}

/// Sets a table's own limits through the database editor's form, as the owner would.
async fn set_limits_in_editor(alice: &RunningPeer, table: &str, fields: &[(&str, &str)]) -> String {
    let base = console(alice);
    let page = get_page(&format!("{base}/database/t/{table}")).await;
    let mut form = vec![
        ("csrf".to_owned(), hidden(&page, "csrf")),
        ("action".to_owned(), "limits".to_owned()),
    ];
    for key in ["rows_per_caller", "bytes_per_caller", "rows", "bytes"] {
        let value = fields
            .iter()
            .find(|(k, _)| *k == key)
            .map_or("", |(_, v)| *v);
        form.push((key.to_owned(), value.to_owned()));
    }
    let saved = no_redirects()
        .post(format!("{base}/database/t/{table}/change"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(
        saved.status().as_u16(),
        303,
        "{}",
        saved.text().await.unwrap()
    );
    get_page(&format!("{base}/database/t/{table}")).await
}

fn error(answer: &Value) -> &str {
    answer["error"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visitors_are_held_to_the_quotas_of_goop_json_and_of_the_editor() {
    let (alice, [bob, carol]) = alice_and_visitors(json!({
        "insert_per_second": 1000,
        "insert_burst": 1000,
        "max_rows_per_caller": 3,
    }))
    .await;
    let (b_id, c_id) = (bob.peer_id.to_base58(), carol.peer_id.to_base58());
    create(&alice, "guestbook").await;

    // goop.json's default: three rows per caller.
    for i in 0..3 {
        let (status, answer) = insert(&bob, &alice, "guestbook", &format!("bob {i}")).await;
        assert_eq!(status, 200, "{answer}");
    }
    let (status, refused) = insert(&bob, &alice, "guestbook", "one too many").await;
    assert_eq!(status, 507, "{refused}");
    assert_eq!(
        error(&refused),
        format!("quota: caller {b_id} may keep at most 3 rows in `guestbook`")
    );
    // Another visitor is still served, and the owner is never held to it.
    let (status, answer) = insert(&carol, &alice, "guestbook", "carol").await;
    assert_eq!(status, 200, "{answer}");
    for i in 0..4 {
        own(
            &alice,
            "insert",
            json!({"table": "guestbook", "data": {"message": format!("alice {i}")}}),
        )
        .await;
    }
    // A row Bob deletes no longer counts.
    let first = own(
        &alice,
        "query-one",
        json!({"table": "guestbook", "where": "_owner = ?", "args": [b_id]}),
    )
    .await;
    let (status, answer) = visit(
        &bob,
        &alice,
        "delete",
        json!({"table": "guestbook", "id": first["_id"]}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = insert(&bob, &alice, "guestbook", "again").await;
    assert_eq!(status, 200, "{answer}");

    // The editor raises the table's own quota to five rows per caller.
    let page = set_limits_in_editor(&alice, "guestbook", &[("rows_per_caller", "5")]).await;
    assert!(
        page.contains("name=\"rows_per_caller\" value=\"5\""),
        "the form shows the table's own value"
    );
    assert!(
        page.contains(
            "name=\"bytes_per_caller\" value=\"\" inputmode=\"numeric\" placeholder=\"1048576\""
        ),
        "and the default where the table has none"
    );
    for i in 0..2 {
        let (status, answer) = insert(&bob, &alice, "guestbook", &format!("more {i}")).await;
        assert_eq!(status, 200, "{answer}");
    }
    let (status, refused) = insert(&bob, &alice, "guestbook", "past five").await;
    assert_eq!(status, 507, "{refused}");
    assert_eq!(
        error(&refused),
        format!("quota: caller {b_id} may keep at most 5 rows in `guestbook`")
    );
    let described = own(&alice, "describe", json!({"table": "guestbook"})).await;
    assert_eq!(described["limits"]["rows_per_caller"], 5);
    assert_eq!(described["own_limits"]["rows_per_caller"], 5);
    assert_eq!(described["own_limits"]["rows"], Value::Null);

    // Bytes per caller: 100 bytes of values in `notes`.
    create(&alice, "notes").await;
    set_limits_in_editor(&alice, "notes", &[("bytes_per_caller", "100")]).await;
    let sixty = "x".repeat(60);
    let (status, answer) = insert(&bob, &alice, "notes", &sixty).await;
    assert_eq!(status, 200, "{answer}");
    let (status, refused) = insert(&bob, &alice, "notes", &sixty).await;
    assert_eq!(status, 507, "{refused}");
    assert_eq!(
        error(&refused),
        format!(
            "quota: caller {b_id} may keep at most 100 bytes in `notes`; it keeps 60 and this row \
             is 60"
        )
    );
    // An update cannot grow a row past it either.
    let mine = own(
        &alice,
        "query-one",
        json!({"table": "notes", "where": "_owner = ?", "args": [b_id]}),
    )
    .await;
    let (status, refused) = visit(
        &bob,
        &alice,
        "update",
        json!({"table": "notes", "id": mine["_id"], "data": {"message": "y".repeat(200)}}),
    )
    .await;
    assert_eq!(status, 507, "{refused}");
    assert!(error(&refused).contains("at most 100 bytes"), "{refused}");
    let (status, answer) = insert(&carol, &alice, "notes", &sixty).await;
    assert_eq!(status, 200, "{answer}");

    // The table's totals: two rows from everyone, then 150 bytes.
    create(&alice, "board").await;
    set_limits_in_editor(&alice, "board", &[("rows", "2")]).await;
    assert_eq!(insert(&bob, &alice, "board", "b").await.0, 200);
    assert_eq!(insert(&carol, &alice, "board", "c").await.0, 200);
    let (status, refused) = insert(&carol, &alice, "board", "full").await;
    assert_eq!(status, 507, "{refused}");
    assert_eq!(
        error(&refused),
        "quota: `board` holds at most 2 rows from everyone together, and it is full"
    );
    set_limits_in_editor(&alice, "board", &[("bytes", "150")]).await;
    assert_eq!(insert(&carol, &alice, "board", &sixty).await.0, 200);
    let (status, refused) = insert(&bob, &alice, "board", &"z".repeat(100)).await;
    assert_eq!(status, 507, "{refused}");
    assert_eq!(
        error(&refused),
        "quota: `board` holds at most 150 bytes from everyone together; it holds 62 and this row \
         is 100"
    );
    assert_eq!(
        own(&alice, "count", json!({"table": "board"})).await,
        3,
        "nothing refused was stored"
    );

    // A quota the form cannot read is named.
    let base = console(&alice);
    let page = get_page(&format!("{base}/database/t/board")).await;
    let bad = no_redirects()
        .post(format!("{base}/database/t/board/change"))
        .form(&[
            ("csrf", hidden(&page, "csrf").as_str()),
            ("action", "limits"),
            ("rows", "-1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    assert!(
        bad.text()
            .await
            .unwrap()
            .contains("limits.rows (-1) must be a whole number")
    );
    let _ = c_id;
    for peer in [bob, carol, alice] {
        peer.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_past_the_insert_rate_waits_while_another_is_served() {
    let (alice, [bob, carol]) = alice_and_visitors(json!({
        "insert_per_second": 1,
        "insert_burst": 5,
    }))
    .await;
    let b_id = bob.peer_id.to_base58();
    create(&alice, "guestbook").await;
    // Twenty at once: the burst is served, the rest (but what a second's refill allows) refused.
    let started = std::time::Instant::now();
    let texts: Vec<String> = (0..20).map(|i| format!("bob {i}")).collect();
    let answers = futures_util::future::join_all(
        texts
            .iter()
            .map(|text| insert(&bob, &alice, "guestbook", text)),
    )
    .await;
    let seconds = started.elapsed().as_secs() as usize;
    let served = answers.iter().filter(|(status, _)| *status == 200).count();
    assert!(
        (5..=6 + seconds).contains(&served),
        "{served} served in {seconds} s"
    );
    for (status, answer) in answers.iter().filter(|(status, _)| *status != 200) {
        assert_eq!(*status, 429, "{answer}");
        let message = error(answer);
        assert!(
            message.starts_with(&format!(
                "rate: caller {b_id} may make at most 1 inserts per second (bursts of 5) into \
                 this peer's tables; try again in "
            )),
            "{message}"
        );
    }
    // Carol has her own bucket.
    for i in 0..5 {
        let (status, answer) = insert(&carol, &alice, "guestbook", &format!("carol {i}")).await;
        assert_eq!(status, 200, "{answer}");
    }
    // The owner is not rate limited.
    for i in 0..10 {
        own(
            &alice,
            "insert",
            json!({"table": "guestbook", "data": {"message": format!("alice {i}")}}),
        )
        .await;
    }
    // A second later Bob may insert again.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(insert(&bob, &alice, "guestbook", "later").await.0, 200);
    for peer in [bob, carol, alice] {
        peer.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_follows_every_writer_and_tables_older_than_it_are_counted_at_open() {
    use goop2::services::data::{Caller, DataService};
    use goop2::store::data::Usage;
    use goop2::store::peer::PeerStore;

    const BOB: &str = "12D3KooWQN9sZuzTnKgEagUUYUsdQYSjSHG3dqpCizptWpwjbZXT";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.db");
    let service = |store: &PeerStore| {
        let (_tx, email) = tokio::sync::watch::channel(String::new());
        std::mem::forget(_tx);
        DataService::new(
            store.data(),
            goop2::identity::PeerId::random(),
            email,
            std::sync::Arc::new(|_: &goop2::identity::PeerId| Box::pin(async { None })),
        )
    };
    let run = async |data: &DataService, caller: &Caller, request: Value| {
        data.handle(caller, serde_json::from_value(request).unwrap())
            .await
            .unwrap()
    };
    let bob = Caller::Peer(BOB.parse().unwrap());
    let store = PeerStore::open(&path).await.unwrap();
    let data = service(&store);
    run(&data, &Caller::Owner, json!({"op": "create-table", "schema": {"name": "posts", "columns": ["title TEXT", "stars INTEGER"], "access": {"update": "open"}}})).await;
    for title in ["abc", "defgh"] {
        run(
            &data,
            &bob,
            json!({"op": "insert", "table": "posts", "data": {"title": title, "stars": 10}}),
        )
        .await;
    }
    let usage = |store: &PeerStore| {
        let tables = store.data();
        async move { tables.usage("posts", BOB).await.unwrap().0 }
    };
    assert_eq!(usage(&store).await, Usage { rows: 2, bytes: 12 });

    // Every writer counts: the owner's update of Bob's row, a script's statement, a column
    // added with a default, a rename.
    run(
        &data,
        &Caller::Owner,
        json!({"op": "update", "table": "posts", "id": 1, "data": {"title": "a"}}),
    )
    .await;
    assert_eq!(usage(&store).await, Usage { rows: 2, bytes: 10 });
    store
        .data()
        .user_write(
            "INSERT INTO posts (_owner, title) VALUES (?, 'xyz')",
            &[goop2::store::data::SqlValue::Text(BOB.into())],
            std::time::Instant::now() + std::time::Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(usage(&store).await, Usage { rows: 3, bytes: 13 });
    run(
        &data,
        &Caller::Owner,
        json!({"op": "add-column", "table": "posts", "column": "mood TEXT DEFAULT 'ok'"}),
    )
    .await;
    assert_eq!(usage(&store).await, Usage { rows: 3, bytes: 19 });
    run(
        &data,
        &Caller::Owner,
        json!({"op": "drop-column", "table": "posts", "name": "stars"}),
    )
    .await;
    assert_eq!(usage(&store).await, Usage { rows: 3, bytes: 15 });
    run(
        &data,
        &Caller::Owner,
        json!({"op": "delete", "table": "posts", "id": 3}),
    )
    .await;
    assert_eq!(usage(&store).await, Usage { rows: 2, bytes: 10 });
    store.close().await;

    // A table made before usage was counted: no triggers, no counts. The peer still opens.
    let raw = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    for kind in ["insert", "update", "delete"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP TRIGGER \"_usage_{kind}_posts\""
        )))
        .execute(&raw)
        .await
        .unwrap();
    }
    sqlx::query("DELETE FROM _usage")
        .execute(&raw)
        .await
        .unwrap();
    // And registry entries that name no user table, as a script could once write them.
    sqlx::query(
        "INSERT INTO _tables (name, schema, created_ms) VALUES ('_lua_kv', '{}', 0), \
         ('ghost', '{}', 0)",
    )
    .execute(&raw)
    .await
    .unwrap();
    raw.close().await;
    let store = PeerStore::open(&path).await.unwrap();
    assert_eq!(usage(&store).await, Usage { rows: 2, bytes: 10 });
    let data = service(&store);
    run(
        &data,
        &bob,
        json!({"op": "insert", "table": "posts", "data": {"title": "new"}}),
    )
    .await;
    assert_eq!(
        usage(&store).await,
        Usage { rows: 3, bytes: 15 },
        "and kept from then on"
    );
}
