//! The data API between two running peers, over HTTP and libp2p: the console's proxy, the
//! caller being the connection's peer, site tokens, the wire protocol's bounds, many callers at
//! once.

use futures_util::{AsyncReadExt, AsyncWriteExt};
use goop2::identity::{Keypair, PeerId};
use goop2::services::data::limits::InsertLimits;
use goop2::services::data::{Caller, DataRequest, DataService};
use goop2::services::node::Node;
use goop2::services::node::protocols::Served;
use goop2::services::presence::peer_table::PeerState;
use goop2::store::peer::PeerStore;
use serde_json::{Value, json};

use crate::console::console;
use crate::support::{PeerDir, TestPeer, no_redirects, short_ttl};

/// Alice (embedded hub, console, a guestbook table) and Bob (console), once they see each other.
async fn alice_and_bob() -> (TestPeer, TestPeer) {
    let a_dir = PeerDir::new("Alice", |c| {
        short_ttl(c, 6);
        c.presence.rendezvous_host = true;
        c.lua.enabled = true;
    });
    let functions = a_dir.path().join("site/lua/functions");
    std::fs::create_dir_all(&functions).unwrap();
    std::fs::write(
        functions.join("whoami.lua"),
        "--- Says who is asking.\nfunction call(request)\n  return { caller = goop.peer.id, label = goop.peer.label, host = goop.self.id, host_label = goop.self.label, echo = request.params.echo }\nend\n",
    )
    .unwrap();
    std::fs::write(
        a_dir.path().join("site/index.html"),
        "<!DOCTYPE html><html><head><title>Guestbook</title></head><body>hi</body></html>",
    )
    .unwrap();
    let alice = TestPeer::start(a_dir).await;
    let hub = format!("http://{}", alice.hub.as_ref().unwrap().hub_addr);
    let tag = alice.dir().config().p2p.mdns_tag;
    let bob = TestPeer::spawn("Bob", |c| {
        short_ttl(c, 6);
        c.presence.rendezvous_wan = hub;
        c.p2p.mdns_tag = tag;
    })
    .await;
    for (viewer, other) in [(&alice, bob.peer_id), (&bob, alice.peer_id)] {
        let id = other.to_base58();
        assert!(crate::support::lists(viewer, &id, PeerState::Online).await);
    }
    let created = post(
        &format!("{}/api/data/create-table", console(&alice)),
        json!({"schema": {"name": "guestbook", "columns": ["message TEXT NOT NULL"]}}),
        None,
    )
    .await;
    assert_eq!(created.0, 200, "{}", created.1);
    (alice, bob)
}

async fn post(url: &str, body: Value, token: Option<&str>) -> (u16, Value) {
    let mut request = no_redirects().post(url).json(&body);
    if let Some(token) = token {
        request = request
            .header("x-goop-site-token", token)
            .header("origin", "null")
            .header("sec-fetch-site", "cross-site");
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The token a page of `peer`'s site gets from `console`.
async fn site_token(console: &str, peer: &str) -> String {
    let page = no_redirects()
        .get(format!("{console}/p/{peer}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.to_ascii_lowercase()
            .starts_with("<!doctype html><meta name=\"goop-site-token\""),
        "the tags follow the doctype: {page}"
    );
    crate::support::meta(&page, "goop-site-token")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_writes_into_the_hosts_database_as_itself() {
    let (alice, bob) = alice_and_bob().await;
    let (a_id, b_id) = (alice.peer_id.to_base58(), bob.peer_id.to_base58());
    let bob_console = console(&bob);
    let token = site_token(&bob_console, &a_id).await;

    // Alice's page, shown in Bob's console, inserts through Bob's proxy.
    let url = |op: &str| format!("{bob_console}/api/p/{a_id}/data/{op}");
    let inserted = post(
        &url("insert"),
        json!({"table": "guestbook", "data": {"message": "hello from Bob"}}),
        Some(&token),
    )
    .await;
    assert_eq!(inserted.0, 200, "{}", inserted.1);
    let row_id = inserted.1["data"]["_id"].as_i64().unwrap();

    // It landed in Alice's data.db, stamped with Bob's peer ID.
    let rows = post(
        &format!("{}/api/data/query", console(&alice)),
        json!({"table": "guestbook"}),
        None,
    )
    .await;
    assert_eq!(rows.1["data"][0]["_owner"], b_id, "{}", rows.1);
    assert_eq!(rows.1["data"][0]["message"], "hello from Bob");
    let db = alice.dir().path().join("data.db");
    assert!(db.is_file());

    // Alice's own row cannot be changed by Bob; his own can.
    let alices = post(
        &format!("{}/api/data/insert", console(&alice)),
        json!({"table": "guestbook", "data": {"message": "Alice's own"}}),
        None,
    )
    .await;
    let alices_id = alices.1["data"]["_id"].as_i64().unwrap();
    let refused = post(
        &url("update"),
        json!({"table": "guestbook", "id": alices_id, "data": {"message": "defaced"}}),
        Some(&token),
    )
    .await;
    assert_eq!(refused.0, 404, "{}", refused.1);
    assert!(
        refused.1["error"]
            .as_str()
            .unwrap()
            .contains("belongs to you")
    );
    let edited = post(
        &url("update"),
        json!({"table": "guestbook", "id": row_id, "data": {"message": "edited by Bob"}}),
        Some(&token),
    )
    .await;
    assert_eq!(edited.0, 200, "{}", edited.1);

    // Op errors keep their status; schema ops are the owner's.
    let missing = post(&url("query"), json!({"table": "nothing"}), Some(&token)).await;
    assert_eq!(missing.0, 404);
    let schema = post(
        &url("create-table"),
        json!({"schema": {"name": "x", "columns": ["a TEXT"]}}),
        Some(&token),
    )
    .await;
    assert_eq!(schema.0, 403, "{}", schema.1);
    let role = post(&url("role"), json!({}), Some(&token)).await;
    assert_eq!(role.1["data"]["peerId"], b_id);
    assert_eq!(role.1["data"]["hostId"], a_id);

    // A token is good for its own site only, and a page without one gets nothing.
    let own_token = site_token(&bob_console, &b_id).await;
    let wrong = post(&url("tables"), json!({}), Some(&own_token)).await;
    assert_eq!(wrong.0, 403, "{}", wrong.1);
    let forged = post(&url("tables"), json!({}), Some("4102444800.00")).await;
    assert_eq!(forged.0, 403);
    let anonymous = no_redirects()
        .post(url("tables"))
        .header("origin", "null")
        .header("sec-fetch-site", "cross-site")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 403);
    let owner_api = no_redirects()
        .post(format!("{bob_console}/api/data/tables"))
        .header("x-goop-site-token", &token)
        .header("origin", "null")
        .header("sec-fetch-site", "cross-site")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        owner_api.status().as_u16(),
        403,
        "a site never reaches the owner's API"
    );

    // The preflight a browser sends first lets only what the SDK needs through.
    let preflight = no_redirects()
        .request(reqwest::Method::OPTIONS, url("insert"))
        .header("origin", "null")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status().as_u16(), 204);
    assert_eq!(preflight.headers()["access-control-allow-origin"], "null");

    // Alice's Lua function, called from her page in Bob's console, sees Bob.
    let called = post(
        &url("lua/call"),
        json!({"function": "whoami", "params": {"echo": 7}}),
        Some(&token),
    )
    .await;
    assert_eq!(called.0, 200, "{}", called.1);
    assert_eq!(
        called.1["data"],
        json!({"caller": b_id, "label": "Bob", "host": a_id, "host_label": "Alice", "echo": 7})
    );
    let listed = post(&url("lua/list"), json!({}), Some(&token)).await;
    assert_eq!(listed.1["data"][0]["description"], "Says who is asking.");
    let missing = post(
        &url("lua/call"),
        json!({"function": "nothing"}),
        Some(&token),
    )
    .await;
    assert_eq!(missing.0, 404);

    // An unreachable peer is a gateway error.
    bob.shutdown().await;
    let unreachable = post(
        &format!("{}/api/p/{b_id}/data/tables", console(&alice)),
        json!({}),
        None,
    )
    .await;
    assert_eq!(unreachable.0, 502, "{}", unreachable.1);
    alice.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wire_protocol_takes_many_requests_per_stream_and_bounds_each() {
    let (alice, bob) = alice_and_bob().await;
    let protocol = libp2p::StreamProtocol::new("/goop/data/1.0.0");
    let mut stream = bob
        .node
        .open_stream(alice.peer_id, protocol.clone())
        .await
        .unwrap();
    let mut ask = async |line: &[u8]| -> Value {
        stream.write_all(line).await.unwrap();
        stream.flush().await.unwrap();
        let mut answer = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            stream.read_exact(&mut byte).await.unwrap();
            if byte[0] == b'\n' {
                break;
            }
            answer.push(byte[0]);
        }
        serde_json::from_slice(&answer).unwrap()
    };
    let role = ask(b"{\"op\":\"role\"}\n").await;
    assert_eq!(
        role["data"]["peerId"],
        bob.peer_id.to_base58(),
        "the caller is the connection's peer"
    );
    let garbage = ask(b"this is not json\n").await;
    assert_eq!(garbage["ok"], false);
    assert_eq!(garbage["code"], 400);
    let unknown_field = ask(b"{\"op\":\"query\",\"table\":\"guestbook\",\"raw\":\"x\"}\n").await;
    assert!(
        unknown_field["error"]
            .as_str()
            .unwrap()
            .contains("unknown field `raw`")
    );
    let sql = ask(b"{\"op\":\"sql\",\"sql\":\"SELECT * FROM _peer_cache\"}\n").await;
    assert_eq!(sql["code"], 403, "{sql}");
    let tables = ask(b"{\"op\":\"tables\"}\n").await;
    assert_eq!(tables["data"][0]["name"], "guestbook");

    // A caller that stops halfway through a request holds nothing: others write meanwhile.
    let mut stalled = bob
        .node
        .open_stream(alice.peer_id, protocol.clone())
        .await
        .unwrap();
    stalled
        .write_all(b"{\"op\":\"insert\",\"table\":\"guestbook\",\"data\":{\"mess")
        .await
        .unwrap();
    stalled.flush().await.unwrap();
    let inserted =
        ask(b"{\"op\":\"insert\",\"table\":\"guestbook\",\"data\":{\"message\":\"meanwhile\"}}\n")
            .await;
    assert_eq!(inserted["ok"], true, "{inserted}");
    drop(stalled);

    // An oversized request is refused and the stream closed.
    let mut huge = vec![b'x'; 70 * 1024];
    huge.push(b'\n');
    let too_big = ask(&huge).await;
    assert_eq!(too_big["code"], 413);
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest).await;
    assert!(rest.is_empty());
    bob.shutdown().await;
    alice.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_concurrent_callers_than_a_peer_serves_at_once_wait_their_turn() {
    // A peer serves 8 data streams per caller at once and resets any more; 32 callers in one
    // node share them without a single failure.
    let (host, visitor, _store) = data_host_and_visitor().await;
    let query = json!({"op": "query", "table": "posts", "where": "stars >= ?", "args": [0],
        "order": "_id DESC", "limit": 20});
    let insert = json!({"op": "insert", "table": "posts",
        "data": {"title": "one more", "body": "y".repeat(200), "stars": 3}});
    let remote_queries = answered(&visitor, host.peer_id(), query, 400, 32).await;
    let remote_inserts = answered(&visitor, host.peer_id(), insert, 400, 32).await;
    assert_eq!(remote_queries, 400);
    assert_eq!(remote_inserts, 400);
}

/// Two nodes on loopback, the visitor connected to the host; the host serves a `data.db` with a
/// `posts` table of 200 rows that anyone may read and add to, without limits on other peers'
/// inserts (so that a caller's hundreds of inserts meet no rate or quota).
async fn data_host_and_visitor() -> (Node, Node, (PeerStore, tempfile::TempDir)) {
    let dir = tempfile::tempdir().unwrap();
    let store = PeerStore::open(&dir.path().join("data.db")).await.unwrap();
    let host_key = Keypair::generate_ed25519();
    let data = DataService::new(
        store.data(),
        host_key.public().to_peer_id(),
        tokio::sync::watch::channel(String::new()).1,
        std::sync::Arc::new(|_: &PeerId| Box::pin(async { None })),
    )
    .with_limits(InsertLimits::unlimited());
    let request = |value: Value| -> DataRequest { serde_json::from_value(value).unwrap() };
    data.handle(
        &Caller::Owner,
        request(json!({"op": "create-table", "schema": {
            "name": "posts",
            "columns": ["title TEXT NOT NULL", "body TEXT", "stars INTEGER DEFAULT 0"],
            "access": {"read": "open", "insert": "open"}
        }})),
    )
    .await
    .unwrap();
    for i in 0..200 {
        data.handle(
            &Caller::Owner,
            request(json!({"op": "insert", "table": "posts",
                "data": {"title": format!("post {i}"), "body": "x".repeat(200), "stars": i % 5}})),
        )
        .await
        .unwrap();
    }
    let served = Served {
        data: Some(data),
        ..crate::support::nothing_served("host")
    };
    let (host, _) = Node::start(host_key, crate::node::options("goop-data"), served)
        .await
        .unwrap();
    let (visitor, _) = Node::start(
        Keypair::generate_ed25519(),
        crate::node::options("goop-data"),
        crate::support::nothing_served("visitor"),
    )
    .await
    .unwrap();
    visitor
        .dial(crate::support::loopback_tcp(&host).await)
        .await
        .unwrap();
    (host, visitor, (store, dir))
}

/// Sends `request` `total` times from `visitor` to `host` over `/goop/data/1.0.0`, from
/// `callers` tasks each sending its share one after another; how many were answered without
/// error (each error is printed).
async fn answered(
    visitor: &Node,
    host: PeerId,
    request: Value,
    total: usize,
    callers: usize,
) -> usize {
    let request: DataRequest = serde_json::from_value(request).unwrap();
    let tasks = (0..callers).map(|caller| {
        let (visitor, request) = (visitor.clone(), request.clone());
        let share = total / callers + usize::from(caller < total % callers);
        tokio::spawn(async move {
            let mut answered = 0;
            for _ in 0..share {
                match visitor.fetch_data(host, &request).await {
                    Ok(answer) => match answer {
                        Ok(_) => answered += 1,
                        Err(error) => eprintln!("refused: {error}"),
                    },
                    Err(error) => eprintln!("not answered: {error}"),
                }
            }
            answered
        })
    });
    futures_util::future::join_all(tasks)
        .await
        .into_iter()
        .map(|task| task.unwrap())
        .sum()
}
