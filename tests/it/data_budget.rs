//! Other peers' data requests cost a peer bounded memory, over real libp2p streams: a result is
//! bounded while it is read, not after.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{AsyncReadExt, AsyncWriteExt};
use goop2::config::Config;
use goop2::modes::peer::{self, RunningPeer};
use goop2::services::data::{Caller, DataService};
use goop2::store::peer::PeerStore;
use goop2::telemetry::LogBuffer;
use libp2p::{PeerId, StreamProtocol};
use serde_json::{Value, json};

use crate::console::peer_dir;
use crate::support::{PeerProcess, free_port, peak_rss_kib};

const DATA: StreamProtocol = StreamProtocol::new("/goop/data/1.0.0");

/// A new table `notes` (one text column, open to everyone) in the peer database of `dir`, with
/// `rows` rows of `text`, written as the owner before the peer starts.
async fn fill(dir: &Path, rows: usize, text: &str) {
    let store = PeerStore::open(&dir.join("data.db")).await.unwrap();
    let (_email_tx, email) = tokio::sync::watch::channel(String::new());
    let data = DataService::new(
        store.data(),
        "12D3KooWSelf".into(),
        email,
        Arc::new(|_: &str| Box::pin(async { None })),
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

/// Bob, on the network of the peer configured as `host` (a peer of another network tag is let
/// go after Identify), without a console.
async fn visitor(host: &Config) -> (RunningPeer, tempfile::TempDir) {
    let (dir, config) = peer_dir("Bob", |c| {
        c.viewer.http_addr = String::new();
        c.p2p.mdns_tag = host.p2p.mdns_tag.clone();
    });
    let bob = peer::start(dir.path(), &config, LogBuffer::new(100))
        .await
        .unwrap();
    (bob, dir)
}

/// A `/goop/data/1.0.0` stream from `from` to `to`, its request sent.
async fn send(from: &RunningPeer, to: PeerId, request: &Value) -> libp2p::Stream {
    let mut stream = from.node.open_stream(to, DATA).await.unwrap();
    let mut line = serde_json::to_vec(request).unwrap();
    line.push(b'\n');
    stream.write_all(&line).await.unwrap();
    stream.flush().await.unwrap();
    stream
}

/// The next answer on `stream`, or `None` if none came within `wait`.
async fn answer(stream: &mut libp2p::Stream, wait: Duration) -> Option<Value> {
    tokio::time::timeout(wait, async {
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
    })
    .await
    .ok()
}

/// The same request from `from` to `to` on a new stream, answered within `wait`.
async fn ask(from: &RunningPeer, to: PeerId, request: &Value, wait: Duration) -> Option<Value> {
    let mut stream = send(from, to, request).await;
    answer(&mut stream, wait).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_of_many_large_rows_is_refused_without_reading_them_all() {
    // 1,000 rows of 64 KiB: 64 MiB, where an answer holds at most 1 MiB.
    let p2p_port = free_port();
    let (dir, config) = peer_dir("Alice", |c| {
        c.viewer.http_addr = String::new();
        c.p2p.listen_port = p2p_port;
    });
    fill(dir.path(), 1000, &"x".repeat(64 * 1024)).await;
    let alice = PeerProcess::start(dir.path());
    let (bob, _bob_dir) = visitor(&config).await;
    let address = format!("/ip4/127.0.0.1/tcp/{p2p_port}/p2p/{}", alice.peer_id);
    bob.node.dial(address.parse().unwrap()).await.unwrap();
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
            let answered = answer(stream, wait).await.expect("an answer");
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
