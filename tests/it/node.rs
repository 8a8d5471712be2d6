//! The libp2p node over real TCP on loopback: connection, signed gossip presence, forged
//! presence dropped, other network tags refused.

use std::time::Duration;

use goop2::identity::Keypair;
use goop2::services::hub::presence::{Presence, PresenceError, PresenceType};
use goop2::services::node::{Node, NodeEvent, NodeOptions};
use libp2p::Multiaddr;
use tokio::sync::mpsc::Receiver;

const WAIT: Duration = Duration::from_secs(10);

fn options(tag: &str) -> NodeOptions {
    NodeOptions {
        listen_ip: "127.0.0.1".parse().unwrap(),
        listen_port: 0,
        mdns: false,
        mdns_tag: tag.into(),
        presence_topic: "goop.presence.v1".into(),
    }
}

async fn spawn(tag: &str) -> (Node, Receiver<NodeEvent>, Keypair) {
    let keypair = Keypair::generate_ed25519();
    let (node, events) = Node::start(keypair.clone(), options(tag)).await.unwrap();
    (node, events, keypair)
}

/// The node's TCP address with its peer ID appended.
async fn tcp_addr(node: &Node) -> Multiaddr {
    let addrs = node.listen_addrs().await.unwrap();
    let tcp = addrs
        .into_iter()
        .find(|a| a.to_string().contains("/tcp/"))
        .expect("a TCP listener");
    format!("{tcp}/p2p/{}", node.peer_id()).parse().unwrap()
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
    alice.dial(tcp_addr(&bob).await).await.unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_of_another_network_tag_are_disconnected() {
    let (home, mut home_events, _) = spawn("goop-mdns").await;
    let (stranger, _stranger_events, _) = spawn("another-network").await;
    stranger.dial(tcp_addr(&home).await).await.unwrap();
    next_event(
        &mut home_events,
        |e| matches!(e, NodeEvent::Connected(p) if *p == stranger.peer_id()),
    )
    .await;
    next_event(
        &mut home_events,
        |e| matches!(e, NodeEvent::Disconnected(p) if *p == stranger.peer_id()),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(home.connected_peers().await.unwrap().is_empty());
}
