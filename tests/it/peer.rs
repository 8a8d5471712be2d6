//! Whole peers (`goop2 peer`'s entry point) on loopback: finding each other through a hub,
//! fetching each other's sites, going offline.

use std::time::Duration;

use goop2::config::Config;
use goop2::modes::peer::{self, RunningPeer};
use goop2::services::presence::peer_table::PeerState;
use goop2::telemetry::LogBuffer;

use crate::support::eventually;

const WAIT: Duration = Duration::from_secs(15);

/// A peer directory made the way `goop2 init` makes one, adjusted by `edit`.
fn peer_dir(label: &str, edit: impl FnOnce(&mut Config)) -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap();
    goop2::modes::init::run(dir.path(), Some(label.into())).unwrap();
    let mut config = Config::load_dir(dir.path()).unwrap().config;
    config.viewer.http_addr = String::new();
    config.presence.rendezvous_port = 0;
    config.presence.ttl_seconds = 4;
    config.presence.heartbeat_seconds = 1;
    edit(&mut config);
    config.save(&dir.path().join("goop.json")).unwrap();
    (dir, config)
}

fn unique_tag() -> String {
    format!("test-{}", rand::random::<u32>())
}

async fn sees(peer: &RunningPeer, other: goop2::identity::PeerId, state: PeerState) -> bool {
    let id = other.to_base58();
    peer.table
        .snapshot()
        .await
        .iter()
        .any(|entry| entry.peer_id == id && entry.state == state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_peers_find_each_other_through_an_embedded_hub_and_read_each_others_sites() {
    let tag = unique_tag();
    let (a_dir, a_config) = peer_dir("Alice", |c| {
        c.presence.rendezvous_host = true;
        c.p2p.mdns_tag = tag.clone();
    });
    let alice = peer::start(a_dir.path(), &a_config, LogBuffer::new(100))
        .await
        .unwrap();
    let hub_url = format!("http://{}", alice.hub.as_ref().unwrap().hub_addr);

    let (b_dir, b_config) = peer_dir("Bob", |c| {
        c.presence.rendezvous_wan = hub_url.clone();
        c.p2p.mdns_tag = tag.clone();
    });
    std::fs::write(b_dir.path().join("site/index.html"), "<h1>Bob's page</h1>").unwrap();
    let bob = peer::start(b_dir.path(), &b_config, LogBuffer::new(100))
        .await
        .unwrap();

    assert!(
        eventually(WAIT, async || sees(&alice, bob.peer_id, PeerState::Online)
            .await)
        .await,
        "Alice sees Bob"
    );
    assert!(
        eventually(WAIT, async || sees(&bob, alice.peer_id, PeerState::Online)
            .await)
        .await,
        "Bob sees Alice"
    );
    let entry = alice
        .table
        .snapshot()
        .await
        .into_iter()
        .find(|e| e.peer_id == bob.peer_id.to_base58())
        .unwrap();
    assert_eq!(entry.label, "Bob");
    assert!(!entry.addrs.is_empty(), "Bob announced where to reach him");

    // The hub told Alice where Bob is; she dialled him and reads his site over libp2p.
    let page = alice.node.fetch_site(bob.peer_id, "/").await.unwrap();
    assert_eq!(page.body, b"<h1>Bob's page</h1>");
    assert_eq!(alice.node.fetch_content(bob.peer_id).await.unwrap(), "Bob");

    // Bob leaves politely: Alice sees him offline well before his TTL would run out.
    let bob_id = bob.peer_id;
    let leaving = tokio::time::Instant::now();
    bob.shutdown().await;
    assert!(
        eventually(WAIT, async || sees(&alice, bob_id, PeerState::Offline)
            .await)
        .await
    );
    assert!(
        leaving.elapsed() < Duration::from_secs(4),
        "sooner than the 4 s TTL: {:?}",
        leaving.elapsed()
    );
    alice.shutdown().await;
}

#[tokio::test]
async fn a_directory_without_goop_json_says_how_to_make_one() {
    let dir = tempfile::tempdir().unwrap();
    let error = peer::load_dir(dir.path()).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "{}/goop.json does not exist; create a peer directory with `goop2 init {}`",
            dir.path().display(),
            dir.path().display()
        )
    );
}
