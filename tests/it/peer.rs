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
    config.presence.rendezvous_port = Some(0);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_peers_meet_at_a_standalone_hub_and_a_killed_one_goes_offline() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let hub = crate::support::TestHub::spawn_with(
        |c| {
            c.presence.ttl_seconds = 3;
            c.presence.heartbeat_seconds = 1;
        },
        |_| {},
    )
    .await;
    let tag = unique_tag();
    let wan = hub.url.clone();
    let join = |c: &mut Config| {
        c.presence.rendezvous_wan = wan.clone();
        c.p2p.mdns_tag = tag.clone();
        c.presence.ttl_seconds = 3;
    };
    let (a_dir, a_config) = peer_dir("Ann", join);
    let (c_dir, c_config) = peer_dir("Cid", join);
    let (b_dir, _) = peer_dir("Ben", join);
    let ann = peer::start(a_dir.path(), &a_config, LogBuffer::new(10))
        .await
        .unwrap();
    let cid = peer::start(c_dir.path(), &c_config, LogBuffer::new(10))
        .await
        .unwrap();

    // Ben runs as the real binary, so he can be killed without a goodbye.
    let mut ben = Command::new(env!("CARGO_BIN_EXE_goop2"))
        .args(["peer", b_dir.path().to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first_line = String::new();
    BufReader::new(ben.stdout.take().unwrap())
        .read_line(&mut first_line)
        .unwrap();
    let ben_id: goop2::identity::PeerId = first_line
        .trim()
        .strip_prefix("Peer ")
        .and_then(|rest| rest.strip_suffix(" is running"))
        .unwrap_or_else(|| panic!("unexpected first line {first_line:?}"))
        .parse()
        .unwrap();

    for (viewer, others) in [(&ann, [cid.peer_id, ben_id]), (&cid, [ann.peer_id, ben_id])] {
        for other in others {
            assert!(
                eventually(WAIT, async || sees(viewer, other, PeerState::Online).await).await,
                "{} does not see {other}",
                viewer.peer_id
            );
        }
    }

    ben.kill().unwrap(); // SIGKILL: no offline message
    ben.wait().unwrap();
    let killed = tokio::time::Instant::now();
    for viewer in [&ann, &cid] {
        assert!(
            eventually(WAIT, async || sees(viewer, ben_id, PeerState::Offline)
                .await)
            .await
        );
    }
    // The kernel closes a killed process's sockets, so the hub sees Ben's WebSocket drop and
    // reports him offline at once; without that (a lost network) the TTL would, within 3 s.
    let after = killed.elapsed();
    assert!(after < Duration::from_secs(6), "{after:?}");
    cid.shutdown().await;
    ann.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_url_that_cannot_be_used_does_not_keep_the_peer_from_starting() {
    let (dir, config) = peer_dir("Tls", |c| {
        c.presence.rendezvous_wan = "ftp://127.0.0.1/".into();
        c.p2p.mdns_tag = unique_tag();
    });
    let logs = LogBuffer::new(100);
    let tls = peer::start(dir.path(), &config, logs.clone())
        .await
        .unwrap();
    assert!(
        tls.node.listen_addrs().await.unwrap().len() >= 2,
        "TCP and QUIC listen"
    );
    tls.shutdown().await;
}

#[test]
fn hub_urls_are_http_or_https_with_a_host() {
    use goop2::services::presence::hub_client::parse_hub_url;
    for good in ["http://127.0.0.1:8787", "https://rv.example.org/hub/"] {
        assert!(parse_hub_url(good).is_ok(), "{good}");
    }
    for (bad, why) in [
        ("ftp://127.0.0.1/", "http:// or https://"),
        ("rv.example.org", "is not a URL"),
        ("http://", "is not a URL"),
    ] {
        let message = format!("{:#}", parse_hub_url(bad).unwrap_err());
        assert!(message.contains(why), "{bad}: {message}");
    }
}
