//! Whole peers (`goop2 peer`'s entry point) on loopback: finding each other through a hub,
//! fetching each other's sites, going offline.

use std::time::Duration;

use goop2::config::Config;
use goop2::modes::peer::{self, RunningPeer};
use goop2::services::presence::peer_table::{PeerState, Source};
use goop2::telemetry::LogBuffer;

use crate::support::{PeerDir, TestPeer, eventually, free_port, short_ttl};

const WAIT: Duration = Duration::from_secs(15);

/// What the peers of these tests start from: no console, a 4 s TTL.
fn quiet(c: &mut Config) {
    c.viewer.http_addr = String::new();
    short_ttl(c, 4);
}

fn unique_tag() -> String {
    format!("test-{}", rand::random::<u32>())
}

async fn sees(peer: &RunningPeer, other: goop2::identity::PeerId, state: PeerState) -> bool {
    let entry = peer.table.entry(&other).await;
    entry.is_some_and(|entry| entry.state == state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_peers_find_each_other_through_an_embedded_hub_and_read_each_others_sites() {
    let tag = unique_tag();
    let alice = TestPeer::spawn("Alice", |c| {
        quiet(c);
        c.presence.rendezvous_host = true;
        c.p2p.mdns_tag = tag.clone();
    })
    .await;
    let hub_url = format!("http://{}", alice.hub.as_ref().unwrap().hub_addr);

    let b_dir = PeerDir::new("Bob", |c| {
        quiet(c);
        c.presence.rendezvous_wan = hub_url.clone();
        c.p2p.mdns_tag = tag.clone();
    });
    std::fs::write(b_dir.path().join("site/index.html"), "<h1>Bob's page</h1>").unwrap();
    let bob = TestPeer::start(b_dir).await;

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
        .find(|e| e.peer_id == bob.peer_id)
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
        quiet(c);
        c.presence.rendezvous_wan = wan.clone();
        c.p2p.mdns_tag = tag.clone();
        c.presence.ttl_seconds = 3;
    };
    let a_dir = PeerDir::new("Ann", join);
    let c_dir = PeerDir::new("Cid", join);
    let b_dir = PeerDir::new("Ben", join);
    let ann = TestPeer::start(a_dir).await;
    let cid = TestPeer::start(c_dir).await;

    // Ben runs as the real binary, so he can be killed without a goodbye.
    let ben = PeerProcess::start(b_dir.path());
    let ben_id = ben.peer_id;

    for (viewer, others) in [(&ann, [cid.peer_id, ben_id]), (&cid, [ann.peer_id, ben_id])] {
        for other in others {
            assert!(
                eventually(WAIT, async || sees(viewer, other, PeerState::Online).await).await,
                "{} does not see {other}",
                viewer.peer_id
            );
        }
    }

    ben.stop("-KILL"); // no offline message
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
    let dir = PeerDir::new("Tls", |c| {
        quiet(c);
        c.presence.rendezvous_wan = "ftp://127.0.0.1/".into();
    });
    let logs = LogBuffer::new(100);
    let tls = TestPeer::start_with_logs(dir, logs.clone()).await;
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

/// A peer run as the real binary, stopped with SIGINT (a goodbye) or SIGKILL (none).
struct PeerProcess {
    child: std::process::Child,
    peer_id: goop2::identity::PeerId,
    console: String,
}

impl PeerProcess {
    fn start(dir: &std::path::Path) -> Self {
        use std::io::{BufRead, BufReader};
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_goop2"))
            .args(["peer", dir.to_str().unwrap()])
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut first_line = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        // Warnings may come first; nothing after this line is read (the pipe closes, which the
        // peer must survive).
        while !first_line.starts_with("Peer ") {
            first_line.clear();
            assert!(
                out.read_line(&mut first_line).unwrap() > 0,
                "the peer stopped"
            );
        }

        let peer_id = first_line
            .trim()
            .strip_prefix("Peer ")
            .and_then(|rest| rest.strip_suffix(" is running"))
            .unwrap_or_else(|| panic!("unexpected first line {first_line:?}"))
            .parse()
            .unwrap();
        let config = Config::load_dir(dir).unwrap().config;
        PeerProcess {
            child,
            peer_id,
            console: format!("http://{}", config.viewer.http_addr),
        }
    }

    fn stop(mut self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.child.wait().unwrap();
    }
}

/// A test that fails midway leaves no peer running behind it.
impl Drop for PeerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `viewer` hears `other` on the LAN (GossipSub) right now.
async fn hears_on_the_lan(viewer: &RunningPeer, other: goop2::identity::PeerId) -> bool {
    let id = other;
    viewer
        .table
        .snapshot()
        .await
        .iter()
        .any(|entry| entry.peer_id == id && entry.sources.contains(&Source::Gossip))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_running_peers_keep_hearing_a_peer_that_restarts_again_and_again() {
    let hub = crate::support::TestHub::spawn_with(
        |c| {
            c.presence.ttl_seconds = 3;
            c.presence.heartbeat_seconds = 1;
            // Three peers on one address, each publishing every second for a minute.
            c.presence.publish_per_second = 10;
        },
        |_| {},
    )
    .await;
    let tag = unique_tag();
    let wan = hub.url.clone();
    let join = |c: &mut Config| {
        quiet(c);
        c.presence.rendezvous_wan = wan.clone();
        c.p2p.mdns_tag = tag.clone();
        c.presence.ttl_seconds = 3;
    };
    let a_dir = PeerDir::new("Ann", join);
    let c_dir = PeerDir::new("Cid", join);
    let console_port = free_port();
    let b_dir = PeerDir::new("Ben", |c| {
        join(c);
        c.viewer.http_addr = format!("127.0.0.1:{console_port}");
    });
    let ann = TestPeer::start(a_dir).await;
    let cid = TestPeer::start(c_dir).await;

    // Stopped politely, killed, and politely again; each time started again at once.
    for (round, signal) in ["-INT", "-KILL", "-INT", "-KILL"].into_iter().enumerate() {
        let ben = PeerProcess::start(b_dir.path());
        for viewer in [&ann, &cid] {
            assert!(
                eventually(WAIT, async || hears_on_the_lan(viewer, ben.peer_id).await).await,
                "round {round}: {} does not hear Ben on the LAN: {:?}; the hub lists {:?}; connected {:?} via {:?}",
                viewer.peer_id,
                viewer.table.snapshot().await,
                hub.peers().await,
                viewer.node.connected_peers().await,
                viewer.node.peer_details(ben.peer_id).await,
            );
            // A second connection, over QUIC, as a LAN's mDNS makes: after a crash it is the
            // one that outlives the process until its idle timeout.
            let quic = viewer
                .table
                .snapshot()
                .await
                .into_iter()
                .find(|e| e.peer_id == ben.peer_id)
                .and_then(|e| e.addrs.into_iter().find(|a| a.contains("/quic-v1/")))
                .expect("Ben announces a QUIC address");
            viewer.node.dial(quic.parse().unwrap()).await.unwrap();
        }
        let ben_api = format!("{}/api/peers", ben.console);
        let ben_hears = async |other: goop2::identity::PeerId| {
            let Ok(response) = reqwest::get(&ben_api).await else {
                return false;
            };
            let peers: serde_json::Value = response.json().await.unwrap_or_default();
            peers.as_array().into_iter().flatten().any(|p| {
                p["peer_id"] == other.to_base58()
                    && p["sources"]
                        .as_array()
                        .is_some_and(|s| s.contains(&"Gossip".into()))
            })
        };
        for other in [ann.peer_id, cid.peer_id] {
            assert!(
                eventually(WAIT, async || ben_hears(other).await).await,
                "round {round}: Ben does not hear {other} on the LAN"
            );
        }
        // Still heard more than two TTLs later: the heartbeats keep coming over the connection
        // that replaced the first one, not a lucky first one. (The replacement itself may lose
        // a heartbeat or two; the hub keeps Ben listed meanwhile.)
        tokio::time::sleep(Duration::from_secs(7)).await;
        for viewer in [&ann, &cid] {
            assert!(
                eventually(Duration::from_secs(5), async || hears_on_the_lan(
                    viewer,
                    ben.peer_id
                )
                .await)
                .await,
                "round {round}: {} stopped hearing Ben's heartbeats (connected to Ben via {:?})",
                viewer.peer_id,
                viewer.node.peer_details(ben.peer_id).await,
            );
        }
        assert!(hears_on_the_lan(&ann, cid.peer_id).await);
        ben.stop(signal);
    }
    cid.shutdown().await;
    ann.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_hosting_its_own_hub_and_joined_to_another_starts_and_serves_both() {
    let wan = crate::support::TestHub::spawn().await;
    let hub_port = free_port();
    let console_port = free_port();
    let dir = PeerDir::new("Host", |c| {
        quiet(c);
        c.presence.rendezvous_host = true;
        c.presence.rendezvous_port = Some(hub_port);
        c.presence.rendezvous_wan = wan.url.clone();
        c.viewer.http_addr = format!("127.0.0.1:{console_port}");
    });
    let host = PeerProcess::start(dir.path());
    // The console is the peer's settings page; its own hub answers beside it.
    let console = reqwest::get(format!("{}/self", host.console))
        .await
        .unwrap();
    assert_eq!(console.status(), 200);
    assert!(console.text().await.unwrap().contains("Host"));
    let health = reqwest::get(format!("http://127.0.0.1:{hub_port}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    // It announces itself at its own hub and at the other one.
    let own_hub = format!("http://127.0.0.1:{hub_port}/peers.json");
    let at = async |url: &str| {
        let peers: serde_json::Value = reqwest::get(url).await.unwrap().json().await.unwrap();
        peers
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["peerId"] == host.peer_id.to_base58()))
    };
    assert!(eventually(WAIT, async || at(&own_hub).await).await);
    let wan_peers = format!("{}/peers.json", wan.url);
    assert!(eventually(WAIT, async || at(&wan_peers).await).await);
    host.stop("-INT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_known_only_through_a_hub_stays_online_for_many_ttls_and_leaves_when_the_hub_says() {
    let hub = crate::support::TestHub::spawn_with(
        |c| {
            c.presence.ttl_seconds = 2;
            c.presence.heartbeat_seconds = 1;
        },
        |_| {},
    )
    .await;
    // Two networks: nothing reaches Ann about Dan but the hub. Another network tag each keeps
    // the LAN apart, and another presence topic each keeps the mesh of the connection the hub
    // brings about from relaying Dan's heartbeats.
    let wan = hub.url.clone();
    let a_dir = PeerDir::new("Ann", |c| {
        quiet(c);
        c.presence.rendezvous_wan = wan.clone();
        c.presence.ttl_seconds = 2;
        c.presence.topic = "goop.presence.ann".into();
    });
    let d_dir = PeerDir::new("Dan", |c| {
        quiet(c);
        c.presence.rendezvous_wan = wan.clone();
        c.presence.ttl_seconds = 2;
        c.presence.topic = "goop.presence.dan".into();
    });
    let ann = TestPeer::start(a_dir).await;
    let dan = TestPeer::start(d_dir).await;
    let dan_id = dan.peer_id;
    assert!(eventually(WAIT, async || sees(&ann, dan_id, PeerState::Online).await).await);
    // Four TTLs later Dan is still online at Ann, through the hub alone.
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let entry = ann
            .table
            .snapshot()
            .await
            .into_iter()
            .find(|e| e.peer_id == dan_id)
            .expect("Dan stays listed");
        assert_eq!(entry.state, PeerState::Online, "{entry:?}");
        assert!(
            entry.sources.iter().all(|s| matches!(s, Source::Hub(_))),
            "{entry:?}"
        );
    }
    // Dan leaves; the hub says so, and Ann follows.
    dan.shutdown().await;
    assert!(eventually(WAIT, async || sees(&ann, dan_id, PeerState::Offline).await).await);
    ann.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_of_two_network_tags_met_through_a_hub_stay_connected_and_read_each_other() {
    let hub = crate::support::TestHub::spawn().await;
    // Another network tag each, as a production peer with its own tag has: the hub is how
    // they meet.
    let ann = TestPeer::spawn("Ann", |c| c.presence.rendezvous_wan = hub.url.clone()).await;
    let dan = TestPeer::spawn("Dan", |c| c.presence.rendezvous_wan = hub.url.clone()).await;
    let (ann_id, dan_id) = (ann.peer_id, dan.peer_id);
    assert!(eventually(WAIT, async || sees(&ann, dan_id, PeerState::Online).await).await);
    assert!(eventually(WAIT, async || sees(&dan, ann_id, PeerState::Online).await).await);
    assert_eq!(ann.node.fetch_content(dan_id).await.unwrap(), "Dan");
    assert_eq!(dan.node.fetch_content(ann_id).await.unwrap(), "Ann");
    // Identify has long said each other's tag: the connection stays.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let connected = ann.node.connected_peers().await.unwrap();
    assert!(connected.contains(&dan_id), "Ann let Dan go: {connected:?}");
    let connected = dan.node.connected_peers().await.unwrap();
    assert!(connected.contains(&ann_id), "Dan let Ann go: {connected:?}");
    assert_eq!(ann.node.fetch_content(dan_id).await.unwrap(), "Dan");
    ann.shutdown().await;
    dan.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_stops_on_sigterm_while_endless_statements_and_scripts_run() {
    const ENDLESS: &str =
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";
    let console_port = free_port();
    let dir = PeerDir::new("Runaway", |c| {
        quiet(c);
        c.viewer.http_addr = format!("127.0.0.1:{console_port}");
        c.lua.enabled = true;
        // The longest budget there is: nothing here ends by itself before the test gives up.
        c.lua.timeout_seconds = 60;
    });
    let functions = dir.path().join("site/lua/functions");
    std::fs::create_dir_all(&functions).unwrap();
    std::fs::write(
        functions.join("count.lua"),
        format!("function call(request)\n  return goop.db.scalar('{ENDLESS}')\nend\n"),
    )
    .unwrap();
    std::fs::write(
        functions.join("spin.lua"),
        "function call(request)\n  while true do end\nend\n",
    )
    .unwrap();
    let mut peer = PeerProcess::start(dir.path());
    let api = |op: &str, body: serde_json::Value| {
        let url = format!("{}/api/data/{op}", peer.console);
        tokio::spawn(async move { reqwest::Client::new().post(url).json(&body).send().await })
    };
    let running = [
        api("sql", serde_json::json!({"sql": ENDLESS})),
        api(
            "lua-call",
            serde_json::json!({"function": "count", "params": {}}),
        ),
        api(
            "lua-call",
            serde_json::json!({"function": "spin", "params": {}}),
        ),
    ];
    // Long enough for all three to be under way.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(running.iter().all(|request| !request.is_finished()));
    let status = std::process::Command::new("kill")
        .args(["-TERM", &peer.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let signalled = std::time::Instant::now();
    let exited = loop {
        if let Some(exit) = peer.child.try_wait().unwrap() {
            break exit;
        }
        if signalled.elapsed() > Duration::from_secs(20) {
            peer.child.kill().unwrap();
            panic!("the peer still runs 20 s after SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let took = signalled.elapsed();
    assert!(exited.success(), "{exited:?}");
    assert!(took < Duration::from_secs(5), "stopped after {took:?}");
}
