//! The libp2p node over real TCP on loopback: connection, signed gossip presence, forged
//! presence dropped, peers of other network tags kept when met on purpose.

use std::time::Duration;

use goop2::identity::Keypair;
use goop2::services::hub::presence::{Presence, PresenceError, PresenceType};
use goop2::services::node::protocols::{FetchError, Served};
use goop2::services::node::{Node, NodeEvent, NodeOptions};
use goop2::services::site::Site;
use tokio::sync::mpsc::Receiver;

use crate::support::{eventually, loopback_tcp, nothing_served};

const WAIT: Duration = Duration::from_secs(10);

/// A node on 127.0.0.1 (any port, no mDNS) of network tag `tag`.
pub(crate) fn options(tag: &str) -> NodeOptions {
    NodeOptions {
        listen_ip: "127.0.0.1".parse().unwrap(),
        listen_port: 0,
        mdns: false,
        mdns_tag: tag.into(),
        presence_topic: "goop.presence.v1".into(),
        limits: Default::default(),
        gossip: Default::default(),
        relay: None,
    }
}

async fn spawn(tag: &str) -> (Node, Receiver<NodeEvent>, Keypair) {
    let keypair = Keypair::generate_ed25519();
    let (node, events) = Node::start(keypair.clone(), options(tag), nothing_served("a peer"))
        .await
        .unwrap();
    (node, events, keypair)
}

async fn next_event(
    events: &mut Receiver<NodeEvent>,
    pred: impl Fn(&NodeEvent) -> bool,
) -> NodeEvent {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("the expected node event within 10 s")
            .expect("the node is running");
        if pred(&event) {
            return event;
        }
    }
}

fn presence(keypair: &Keypair, label: &str, ts: i64) -> Presence {
    let mut presence = Presence::new(PresenceType::Online, keypair.public().to_peer_id());
    presence.content = Some(label.into());
    presence.ts = Some(ts);
    presence.sign(keypair);
    presence
}

/// Publishes until the mesh knows a subscriber (gossipsub refuses while it knows none).
async fn publish(node: &Node, message: &Presence) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while let Err(err) = node.publish_presence(message).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "could not publish: {err}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_presence_travels_over_gossipsub_and_forgeries_are_dropped() {
    let (alice, _alice_events, alice_key) = spawn("goop-mdns").await;
    let (bob, mut bob_events, _) = spawn("goop-mdns").await;
    alice.dial(loopback_tcp(&bob).await).await.unwrap();
    next_event(
        &mut bob_events,
        |e| matches!(e, NodeEvent::Connected(p) if *p == alice.peer_id()),
    )
    .await;
    assert_eq!(alice.connected_peers().await.unwrap(), vec![bob.peer_id()]);

    // Alice claims to be Carol: signed by Alice's key, naming Carol's peer ID.
    let carol = Keypair::generate_ed25519();
    let mut forged = presence(&carol, "Carol", goop2::services::hub::unix_ms());
    forged.sign(&alice_key);
    publish(&alice, &forged).await;
    match next_event(&mut bob_events, |e| {
        matches!(
            e,
            NodeEvent::Presence { .. } | NodeEvent::PresenceRefused { .. }
        )
    })
    .await
    {
        NodeEvent::PresenceRefused { via, reason } => {
            assert_eq!(via, alice.peer_id());
            assert!(
                matches!(reason, PresenceError::BadSignature(_)),
                "{reason:?}"
            );
        }
        other => panic!("the forgery was delivered: {other:?}"),
    }

    let genuine = presence(&alice_key, "Alice", goop2::services::hub::unix_ms());
    publish(&alice, &genuine).await;
    match next_event(&mut bob_events, |e| {
        matches!(
            e,
            NodeEvent::Presence { .. } | NodeEvent::PresenceRefused { .. }
        )
    })
    .await
    {
        NodeEvent::Presence { presence, via } => {
            assert_eq!(via, alice.peer_id());
            assert_eq!(presence.peer_id, alice.peer_id());
            assert!(presence.signed);
            assert_eq!(presence.presence.content.as_deref(), Some("Alice"));
        }
        other => panic!("expected Alice's presence, got {other:?}"),
    }
}

/// (A peer of another tag that mDNS alone found is let go: `netns::mdns_finds_a_peer_…`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_of_another_network_tag_dialled_on_purpose_is_kept_both_ways() {
    let (home, mut home_events, _) = spawn("goop-mdns").await;
    let (away, _away_events, _) = spawn("another-network").await;
    let away_id = away.peer_id();
    away.dial(loopback_tcp(&home).await).await.unwrap();
    next_event(
        &mut home_events,
        |e| matches!(e, NodeEvent::Connected(p) if *p == away_id),
    )
    .await;
    // Identify has said each side's tag by now: the connection stays, and both answer.
    assert!(
        eventually(WAIT, async || home
            .peer_details(away_id)
            .await
            .unwrap()
            .is_some())
        .await,
        "Identify never completed"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(home.connected_peers().await.unwrap().contains(&away_id));
    assert!(
        away.connected_peers()
            .await
            .unwrap()
            .contains(&home.peer_id())
    );
    let details = home.peer_details(away_id).await.unwrap().unwrap();
    assert_eq!(details.protocol_version, "/goop2/1.0.0/another-network");
    assert_eq!(home.fetch_content(away_id).await.unwrap(), "a peer");
    assert_eq!(away.fetch_content(home.peer_id()).await.unwrap(), "a peer");
}

/// A site with one of everything the site protocol must serve or refuse.
fn site_fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    std::fs::create_dir_all(site.join("css")).unwrap();
    std::fs::create_dir_all(site.join("lua/functions")).unwrap();
    std::fs::create_dir_all(site.join(".git")).unwrap();
    std::fs::write(site.join("index.html"), "<h1>Bob's site</h1>").unwrap();
    std::fs::write(site.join("css/app.css"), "h1 { color: red }").unwrap();
    std::fs::write(site.join("lua/functions/hello.lua"), "function call() end").unwrap();
    std::fs::write(site.join(".env"), "SECRET=1").unwrap();
    std::fs::write(site.join(".git/config"), "[core]").unwrap();
    std::fs::write(dir.path().join("goop.json"), "{}").unwrap();
    std::os::unix::fs::symlink(dir.path().join("goop.json"), site.join("escape.json")).unwrap();
    std::os::unix::fs::symlink(site.join("css/app.css"), site.join("inside.css")).unwrap();
    let big: Vec<u8> = (0..6 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    std::fs::write(site.join("big.bin"), big).unwrap();
    dir
}

/// Bob, labelled "Bob", serving [`site_fixture`] (kept alive by the returned directory).
async fn bob_serving_the_fixture() -> (Node, tempfile::TempDir) {
    let fixture = site_fixture();
    let served = Served {
        site: Some(Site::new(fixture.path().join("site"))),
        label: tokio::sync::watch::channel("Bob".to_owned()).1,
        avatar: None,
        data: None,
    };
    let (bob, _events) = Node::start(Keypair::generate_ed25519(), options("goop-mdns"), served)
        .await
        .unwrap();
    (bob, fixture)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_site_protocol_serves_files_and_refuses_what_is_not_public() {
    let fixture = site_fixture();
    let (_label_tx, label) = tokio::sync::watch::channel("Bob's node".to_owned());
    let served = Served {
        site: Some(Site::new(fixture.path().join("site"))),
        label,
        avatar: None,
        data: None,
    };
    let (bob, _bob_events) = Node::start(Keypair::generate_ed25519(), options("goop-mdns"), served)
        .await
        .unwrap();
    let (alice, mut alice_events, _) = spawn("goop-mdns").await;
    alice.dial(loopback_tcp(&bob).await).await.unwrap();
    next_event(&mut alice_events, |e| matches!(e, NodeEvent::Connected(_))).await;
    let peer = bob.peer_id();

    let index = alice.fetch_site(peer, "/").await.unwrap();
    assert_eq!(index.mime, "text/html");
    assert_eq!(index.body, b"<h1>Bob's site</h1>");
    let css = alice.fetch_site(peer, "/css/app.css").await.unwrap();
    assert_eq!(
        (css.mime.as_str(), css.body.as_slice()),
        ("text/css", &b"h1 { color: red }"[..])
    );
    let linked = alice.fetch_site(peer, "/inside.css").await.unwrap();
    assert_eq!(
        linked.body, css.body,
        "a link that stays inside the site is fine"
    );
    let big = alice.fetch_site(peer, "/big.bin").await.unwrap();
    assert_eq!(big.body.len(), 6 * 1024 * 1024);
    assert!(
        big.body
            .iter()
            .enumerate()
            .all(|(i, b)| *b == (i % 251) as u8),
        "intact"
    );
    assert_eq!(big.mime, "application/octet-stream");

    for (path, reason) in [
        ("/lua/functions/hello.lua", "forbidden"),
        ("/lua/", "forbidden"),
        ("/.env", "forbidden"),
        ("/.git/config", "forbidden"),
        ("/../goop.json", "forbidden"),
        ("/css/../../goop.json", "forbidden"),
        ("/%2e%2e/goop.json", "forbidden"),
        ("/escape.json", "forbidden"),
        ("/missing.html", "not found"),
    ] {
        match alice.fetch_site(peer, path).await {
            Err(FetchError::Refused(got)) => assert_eq!(got, reason, "{path}"),
            other => panic!("{path}: {other:?}"),
        }
    }

    assert_eq!(alice.fetch_content(peer).await.unwrap(), "Bob's node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_with_many_files_fetched_at_once_gets_every_one() {
    // A browser loads a page's files in parallel; the serving peer takes 8 streams per peer at
    // once and resets any more, so the fetching side must queue rather than fail.
    let (bob, _fixture) = bob_serving_the_fixture().await;
    let (alice, mut alice_events, _) = spawn("goop-mdns").await;
    alice.dial(loopback_tcp(&bob).await).await.unwrap();
    next_event(&mut alice_events, |e| matches!(e, NodeEvent::Connected(_))).await;
    let peer = bob.peer_id();
    for _ in 0..3 {
        let fetches = (0..24).map(|i| {
            let alice = alice.clone();
            let path = match i % 3 {
                0 => "/css/app.css",
                1 => "/index.html",
                _ => "/big.bin",
            };
            tokio::spawn(async move { alice.fetch_site(peer, path).await })
        });
        for fetched in futures_util::future::join_all(fetches).await {
            let reply = fetched.unwrap().unwrap();
            assert!(!reply.body.is_empty());
        }
        let labels = (0..16).map(|_| {
            let alice = alice.clone();
            tokio::spawn(async move { alice.fetch_content(peer).await })
        });
        for label in futures_util::future::join_all(labels).await {
            assert_eq!(label.unwrap().unwrap(), "Bob");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_peer_that_stops_reading_cannot_take_every_stream() {
    use futures_util::{AsyncReadExt, AsyncWriteExt};
    let (bob, _fixture) = bob_serving_the_fixture().await;
    let (greedy, mut greedy_events, _) = spawn("goop-mdns").await;
    let (polite, mut polite_events, _) = spawn("goop-mdns").await;
    for (node, events) in [(&greedy, &mut greedy_events), (&polite, &mut polite_events)] {
        node.dial(loopback_tcp(&bob).await).await.unwrap();
        next_event(events, |e| matches!(e, NodeEvent::Connected(_))).await;
    }
    let peer = bob.peer_id();
    let site = libp2p::StreamProtocol::new("/goop/site/1.0.0");

    // Eight big downloads that are never read: the per-peer limit.
    let mut stalled = Vec::new();
    for _ in 0..8 {
        let mut stream = greedy.open_stream(peer, site.clone()).await.unwrap();
        stream.write_all(b"GET /big.bin\n").await.unwrap();
        stream.flush().await.unwrap();
        let mut header = [0u8; 3];
        stream.read_exact(&mut header).await.unwrap();
        assert_eq!(&header, b"OK ");
        stalled.push(stream);
    }
    match greedy.fetch_site(peer, "/").await {
        Err(FetchError::Unreachable(_) | FetchError::NoAnswer | FetchError::Malformed(_)) => {}
        other => panic!("a ninth stream of the same peer was served: {other:?}"),
    }
    // Another peer is served meanwhile.
    let index = polite.fetch_site(peer, "/").await.unwrap();
    assert_eq!(index.body, b"<h1>Bob's site</h1>");

    // Once the greedy peer lets go, it is served again.
    drop(stalled);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match greedy.fetch_site(peer, "/").await {
            Ok(reply) => {
                assert_eq!(reply.body, b"<h1>Bob's site</h1>");
                break;
            }
            Err(err) => {
                assert!(tokio::time::Instant::now() < deadline, "{err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
