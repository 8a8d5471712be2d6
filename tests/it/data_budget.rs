//! Other peers' data requests cost a peer bounded time and memory, over real libp2p streams:
//! each request stops at its time budget (`data.timeout_seconds`) with a clear error, runs on
//! connections of its own so that the owner's console keeps answering, stops when its caller
//! leaves, and a result is bounded while it is read, not after.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{AsyncReadExt, AsyncWriteExt};
use goop2::config::Config;
use goop2::modes::peer::RunningPeer;
use goop2::services::data::{Caller, DataService};
use goop2::store::peer::PeerStore;
use libp2p::{PeerId, StreamProtocol};
use serde_json::{Value, json};

use crate::console::console;
use crate::support::{
    PeerDir, PeerProcess, TestPeer, free_port, loopback_tcp, no_redirects, peak_rss_kib, short_ttl,
};

const DATA: StreamProtocol = StreamProtocol::new("/goop/data/1.0.0");

/// Rows of the table the slow filter scans.
const SLOW_ROWS: usize = 2000;

/// What every row of that table holds: the slow filter's patterns never match it, but ruling
/// each one out takes SQLite tens of thousands of comparisons.
fn slow_text() -> String {
    "a".repeat(2000)
}

/// A `query` with 128 `LIKE` terms in a balanced tree of `OR`s (7 levels), each pattern bound:
/// on [`SLOW_ROWS`] rows of [`slow_text`] it runs for minutes unless something stops it.
fn slow_query() -> Value {
    let mut terms = vec!["message LIKE ?".to_owned(); 128];
    while terms.len() > 1 {
        terms = terms
            .chunks(2)
            .map(|pair| format!("({} OR {})", pair[0], pair[1]))
            .collect();
    }
    let pattern = format!("%{}b%", "a".repeat(40));
    json!({"op": "query", "table": "notes", "where": terms[0], "args": vec![pattern; 128], "limit": 10})
}

/// A new table `notes` (one text column, open to everyone) in the peer database of `dir`, with
/// `rows` rows of `text`, written as the owner before the peer starts.
async fn fill(dir: &Path, rows: usize, text: &str) {
    let store = PeerStore::open(&dir.join("data.db")).await.unwrap();
    let (_email_tx, email) = tokio::sync::watch::channel(String::new());
    let data = DataService::new(
        store.data(),
        goop2::identity::PeerId::random(),
        email,
        Arc::new(|_: &goop2::identity::PeerId| Box::pin(async { None })),
    );
    let request = |value: Value| serde_json::from_value(value).unwrap();
    data.handle(
        &Caller::Owner,
        request(
            json!({"op": "create-table", "schema": {"name": "notes", "columns": ["message TEXT"]}}),
        ),
    )
    .await
    .unwrap();
    for _ in 0..rows {
        data.handle(
            &Caller::Owner,
            request(json!({"op": "insert", "table": "notes", "data": {"message": text}})),
        )
        .await
        .unwrap();
    }
    store.close().await;
}

/// Alice (console; `data.timeout_seconds` as given, written into goop.json as an owner would)
/// with the slow table, and Bob connected to her.
async fn alice_and_bob(timeout_seconds: u32) -> (TestPeer, TestPeer) {
    let a_dir = PeerDir::new("Alice", |c| short_ttl(c, 6));
    let file = a_dir.path().join("goop.json");
    let mut raw: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    raw["data"]["timeout_seconds"] = json!(timeout_seconds);
    std::fs::write(&file, serde_json::to_vec_pretty(&raw).unwrap()).unwrap();
    fill(a_dir.path(), SLOW_ROWS, &slow_text()).await;
    let alice = TestPeer::start(a_dir).await;
    let bob = visitor(&alice.dir().config()).await;
    bob.node
        .dial(loopback_tcp(&alice.node).await)
        .await
        .unwrap();
    settle(&bob, alice.peer_id).await;
    (alice, bob)
}

/// Bob, on the network of the peer configured as `host` (a peer of another network tag is let
/// go after Identify), without a console.
async fn visitor(host: &Config) -> TestPeer {
    TestPeer::spawn("Bob", |c| {
        short_ttl(c, 6);
        c.viewer.http_addr = String::new();
        c.p2p.mdns_tag = host.p2p.mdns_tag.clone();
    })
    .await
}

/// A `/goop/data/1.0.0` stream from `from` to `to`, its request sent. The peers also find each
/// other over mDNS, and the dials crossing at start leave connections that close soon after: a
/// stream that lands on one of those is opened again.
async fn send(from: &RunningPeer, to: PeerId, request: &Value) -> libp2p::Stream {
    let mut line = serde_json::to_vec(request).unwrap();
    line.push(b'\n');
    for _ in 0..20 {
        if let Ok(mut stream) = from.node.open_stream(to, DATA).await
            && stream.write_all(&line).await.is_ok()
            && stream.flush().await.is_ok()
        {
            return stream;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no stream to {to}");
}

/// Asks `to` who `from` is until it answers, so that the connections between them have
/// settled.
async fn settle(from: &RunningPeer, to: PeerId) {
    for _ in 0..20 {
        let mut stream = send(from, to, &json!({"op": "role"})).await;
        if answer(&mut stream, Duration::from_secs(5)).await.is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{to} never answered");
}

/// The next answer on `stream`, or `None` if none came within `wait` (or the stream ended).
async fn answer(stream: &mut libp2p::Stream, wait: Duration) -> Option<Value> {
    tokio::time::timeout(wait, async {
        let mut answer = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            stream.read_exact(&mut byte).await.ok()?;
            if byte[0] == b'\n' {
                break;
            }
            answer.push(byte[0]);
        }
        serde_json::from_slice(&answer).ok()
    })
    .await
    .ok()
    .flatten()
}

/// The same request from `from` to `to` on a new stream, answered within `wait`.
async fn ask(from: &RunningPeer, to: PeerId, request: &Value, wait: Duration) -> Option<Value> {
    let mut stream = send(from, to, request).await;
    answer(&mut stream, wait).await
}

/// The owner's `op` through Alice's console, or `None` if it took longer than `wait`.
async fn own(alice: &RunningPeer, op: &str, body: Value, wait: Duration) -> Option<(u16, Value)> {
    let request = no_redirects()
        .post(format!("{}/api/data/{op}", console(alice)))
        .json(&body)
        .timeout(wait)
        .send();
    let response = request.await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.json().await.unwrap_or(Value::Null)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitors_slow_filter_ends_at_its_time_budget_with_a_clear_error() {
    let (alice, bob) = alice_and_bob(1).await;
    let budget = Duration::from_secs(1);
    // Three at once: more than the visitors' connections, so some also wait for one.
    let started = Instant::now();
    let mut streams = Vec::new();
    for _ in 0..3 {
        streams.push(send(&bob, alice.peer_id, &slow_query()).await);
    }
    for stream in &mut streams {
        let answered = answer(stream, 3 * budget)
            .await
            .unwrap_or_else(|| panic!("no answer after {:?}", started.elapsed()));
        assert_eq!(answered["ok"], false, "{answered}");
        let error = answered["error"].as_str().unwrap();
        assert!(error.contains("time budget (1 s)"), "{answered}");
    }
    let took = started.elapsed();
    assert!(took < 3 * budget, "stopped after {took:?}");

    // The same connections answer the next request as ever.
    let rows = ask(
        &bob,
        alice.peer_id,
        &json!({"op": "query", "table": "notes", "columns": ["_id"], "limit": 5}),
        Duration::from_secs(5),
    )
    .await
    .expect("an answer");
    assert_eq!(rows["data"].as_array().map(Vec::len), Some(5), "{rows}");
    bob.shutdown().await;
    alice.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owners_console_answers_while_visitors_keep_the_database_busy() {
    // A generous budget: the visitors' statements run all through the owner's requests.
    let (alice, bob) = alice_and_bob(30).await;
    let mut streams = Vec::new();
    for _ in 0..6 {
        streams.push(send(&bob, alice.peer_id, &slow_query()).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let wait = Duration::from_secs(3);
    let (status, tables) = own(&alice, "tables", json!({}), wait)
        .await
        .expect("the owner's table list answers while visitors' statements run");
    assert_eq!(status, 200, "{tables}");
    let (status, count) = own(&alice, "count", json!({"table": "notes"}), wait)
        .await
        .expect("the owner's count answers while visitors' statements run");
    assert_eq!(
        (status, &count["data"]),
        (200, &json!(SLOW_ROWS)),
        "{count}"
    );
    let (status, sql) = own(
        &alice,
        "sql",
        json!({"sql": "SELECT count(*) AS n FROM notes"}),
        wait,
    )
    .await
    .expect("the owner's SQL box answers while visitors' statements run");
    assert_eq!(status, 200, "{sql}");
    drop(streams);
    bob.shutdown().await;
    alice.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_that_leaves_stops_its_statements() {
    // A generous budget: only the caller's leaving can stop its statements early.
    let (alice, bob) = alice_and_bob(30).await;
    let mut streams = Vec::new();
    for _ in 0..4 {
        streams.push(send(&bob, alice.peer_id, &slow_query()).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The caller goes: its streams are reset.
    drop(streams);
    // The database is free for the next visitor at once, not after the budget.
    let started = Instant::now();
    let rows = ask(
        &bob,
        alice.peer_id,
        &json!({"op": "count", "table": "notes"}),
        Duration::from_secs(5),
    )
    .await
    .unwrap_or_else(|| {
        panic!(
            "the next request waits for the abandoned ones after {:?}",
            started.elapsed()
        )
    });
    assert_eq!(rows["data"], json!(SLOW_ROWS), "{rows}");
    bob.shutdown().await;
    alice.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_of_many_large_rows_is_refused_without_reading_them_all() {
    // 1,000 rows of 64 KiB: 64 MiB, where an answer holds at most 1 MiB.
    let p2p_port = free_port();
    let dir = PeerDir::new("Alice", |c| {
        short_ttl(c, 6);
        c.viewer.http_addr = String::new();
        c.p2p.listen_port = p2p_port;
    });
    fill(dir.path(), 1000, &"x".repeat(64 * 1024)).await;
    let alice = PeerProcess::start(dir.path());
    let bob = visitor(&dir.config()).await;
    let address = format!("/ip4/127.0.0.1/tcp/{p2p_port}/p2p/{}", alice.peer_id);
    bob.node.dial(address.parse().unwrap()).await.unwrap();
    settle(&bob, alice.peer_id).await;
    let wait = Duration::from_secs(20);
    let small = json!({"op": "query", "table": "notes", "columns": ["_id"], "limit": 1000});
    let ids = ask(&bob, alice.peer_id, &small, wait)
        .await
        .expect("an answer");
    assert_eq!(ids["data"].as_array().map(Vec::len), Some(1000), "{ids}");
    let before_kib = peak_rss_kib(alice.child.id());

    let large = json!({"op": "query", "table": "notes", "limit": 1000});
    for _ in 0..2 {
        let mut streams = Vec::new();
        for _ in 0..4 {
            streams.push(send(&bob, alice.peer_id, &large).await);
        }
        for stream in &mut streams {
            let mut answered = answer(stream, wait).await;
            // The peer takes new streams one at a time and resets one that came meanwhile
            // (a loaded machine makes that likelier): that request never ran; ask again.
            for _ in 0..5 {
                if answered.is_some() {
                    break;
                }
                *stream = send(&bob, alice.peer_id, &large).await;
                answered = answer(stream, wait).await;
            }
            let answered = answered.expect("an answer");
            assert_eq!(answered["code"], 413, "{}", answered["error"]);
            assert!(
                answered["error"]
                    .as_str()
                    .unwrap()
                    .contains("larger than 1048576 bytes"),
                "{}",
                answered["error"]
            );
        }
    }
    let grew_mib = peak_rss_kib(alice.child.id()).saturating_sub(before_kib) / 1024;
    assert!(
        grew_mib < 32,
        "eight queries of 64 MiB grew the peak memory by {grew_mib} MiB"
    );
    bob.shutdown().await;
}
