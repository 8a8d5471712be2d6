//! The rendezvous hub over real HTTP, SSE and WebSocket connections on 127.0.0.1:0.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use goop2::services::hub::presence::PresenceType;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{SseClient, TestHub, TestIdentity, eventually, post_with};

const WAIT: Duration = Duration::from_secs(5);

fn error_of(body: &Value) -> &str {
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error in {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_publish_is_listed_and_streamed() {
    let hub = TestHub::spawn().await;
    let mut events = SseClient::connect(&format!("{}/events", hub.url), None).await;
    assert_eq!(events.status, 200);
    assert_eq!(events.headers["content-type"], "text/event-stream");
    assert_eq!(events.headers["x-accel-buffering"], "no");
    // The (empty) snapshot's position: what follows is live. (A peer that publishes while a
    // snapshot is still being read may come in it, as a frame without an id, and live after.)
    events.next(Duration::from_millis(300)).await;
    assert!(events.last_id.is_some());

    let mut alice = TestIdentity::new();
    let (status, body) = hub.publish(alice.json(PresenceType::Online, "Alice")).await;
    assert_eq!((status, &body), (204, &Value::Null));

    let event = events.wait_for(WAIT, |e| !e.data.is_empty()).await;
    let message = event.json();
    assert_eq!(message["type"], "online");
    assert_eq!(message["peerId"], alice.id.as_str());
    assert_eq!(message["content"], "Alice");
    assert_eq!(message["signed"], true);
    assert_eq!(message["verified"], false);
    let id = event.id.expect("every event has an id");
    assert!(id.starts_with(&format!("{}-", hub.hub().epoch())), "{id}");

    let peers = hub.peers().await;
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0]["peerId"], alice.id.as_str());
    assert_eq!(peers[0]["content"], "Alice");
    assert_eq!(peers[0]["signed"], true);
    assert_eq!(peers[0]["addrs"], json!(["/ip4/127.0.0.1/tcp/4001"]));
    assert!(peers[0].get("email").is_none(), "emails are not public");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_refused_with_a_reason() {
    let hub = TestHub::spawn().await;
    let mut peer = TestIdentity::new();

    let (status, body) = hub.publish("{not json").await;
    assert_eq!(status, 400);
    assert!(
        error_of(&body).starts_with("the body is not a valid presence message: "),
        "{body}"
    );

    let mut message = serde_json::to_value(peer.signed(PresenceType::Online, "x")).unwrap();
    message["type"] = json!("dance");
    let (status, body) = hub.publish(message.to_string()).await;
    assert_eq!(
        (status, error_of(&body)),
        (400, "type \"dance\" is not one of online, update, offline")
    );

    let (status, body) = hub.publish(peer.json(PresenceType::Punch, "x")).await;
    assert_eq!(
        (status, error_of(&body)),
        (400, "type \"punch\" is sent by hubs only")
    );

    let (status, body) = hub
        .publish(json!({"type": "online", "peerId": "not-a-peer", "ts": 1}).to_string())
        .await;
    assert_eq!(status, 400);
    assert!(
        error_of(&body).starts_with("peerId \"not-a-peer\" is not a valid peer ID: "),
        "{body}"
    );

    let (status, body) = hub
        .publish(json!({"type": "online", "ts": 1}).to_string())
        .await;
    assert_eq!(status, 400);
    assert!(error_of(&body).contains("missing field `peerId`"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_over_their_limits_are_refused() {
    let hub = TestHub::spawn().await;
    let mut peer = TestIdentity::new();

    let mut message = peer.unsigned(PresenceType::Online, &"x".repeat(4097));
    message.sign(&peer.keypair);
    let (status, body) = hub.publish(serde_json::to_string(&message).unwrap()).await;
    assert_eq!(
        (status, error_of(&body)),
        (400, "content is 4097 bytes long; at most 4096 are allowed")
    );

    let mut message = peer.unsigned(PresenceType::Online, "ok");
    message.email = Some(format!("{}@example.org", "a".repeat(320)));
    message.sign(&peer.keypair);
    let (status, body) = hub.publish(serde_json::to_string(&message).unwrap()).await;
    assert_eq!(
        (status, error_of(&body)),
        (400, "email is 332 bytes long; at most 320 are allowed")
    );

    let mut message = peer.unsigned(PresenceType::Online, "ok");
    message.addrs = Some((0..21).map(|i| format!("/ip4/10.0.0.{i}/tcp/1")).collect());
    message.sign(&peer.keypair);
    let (status, body) = hub.publish(serde_json::to_string(&message).unwrap()).await;
    assert_eq!(
        (status, error_of(&body)),
        (400, "addrs has 21 entries; at most 20 are allowed")
    );

    let mut message = peer.unsigned(PresenceType::Online, "ok");
    message.addrs = Some(vec![format!("/dns4/{}/tcp/1", "a".repeat(260))]);
    message.sign(&peer.keypair);
    let (status, body) = hub.publish(serde_json::to_string(&message).unwrap()).await;
    assert_eq!(
        (status, error_of(&body)),
        (400, "addrs[] is 272 bytes long; at most 256 are allowed")
    );

    let huge = json!({"type": "online", "peerId": peer.id, "content": "y".repeat(70_000)});
    let (status, body) = hub.publish(huge.to_string()).await;
    assert_eq!(
        (status, error_of(&body)),
        (413, "the body is larger than 65536 bytes")
    );

    assert!(hub.peers().await.is_empty(), "nothing was registered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_unsigned_presence_is_refused() {
    let hub = TestHub::spawn().await;
    let mut alice = TestIdentity::new();
    let mallory = TestIdentity::new();

    // Changed after signing.
    let mut message = alice.signed(PresenceType::Online, "Alice");
    message.content = Some("Mallory".into());
    let (status, body) = hub.publish(serde_json::to_string(&message).unwrap()).await;
    assert_eq!(status, 401);
    assert_eq!(
        error_of(&body),
        format!("sig does not verify against the key of peerId {}", alice.id)
    );

    // Signed by another key.
    let mut message = alice.unsigned(PresenceType::Online, "Alice");
    message.sign(&mallory.keypair);
    let (status, _) = hub.publish(serde_json::to_string(&message).unwrap()).await;
    assert_eq!(status, 401);

    // Not base64.
    let mut message = alice.unsigned(PresenceType::Online, "Alice");
    message.sig = Some("!!!".into());
    let (status, body) = hub.publish(serde_json::to_string(&message).unwrap()).await;
    assert_eq!(
        (status, error_of(&body)),
        (
            401,
            "sig is not standard padded base64 of a 64-byte signature"
        )
    );

    // Unsigned, on a hub that requires signatures.
    let message = alice.unsigned(PresenceType::Online, "Alice");
    let (status, body) = hub.publish(serde_json::to_string(&message).unwrap()).await;
    assert_eq!(
        (status, error_of(&body)),
        (
            401,
            "presence is unsigned (no sig) and this hub requires signatures"
        )
    );

    // Signed without a timestamp.
    let mut message = alice.unsigned(PresenceType::Online, "Alice");
    message.ts = None;
    message.sign(&alice.keypair);
    let (status, body) = hub.publish(serde_json::to_string(&message).unwrap()).await;
    assert_eq!(
        (status, error_of(&body)),
        (400, "ts is required in signed presence")
    );

    assert!(hub.peers().await.is_empty());
    let metrics = hub.metrics().await;
    assert!(
        metrics.contains("goop_hub_rejects_total{reason=\"bad_signature\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("goop_hub_rejects_total{reason=\"unsigned\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_and_stale_timestamps_are_refused() {
    let hub = TestHub::spawn().await;
    let mut alice = TestIdentity::new();

    let first = alice.json(PresenceType::Online, "Alice");
    assert_eq!(hub.publish(first.clone()).await.0, 204);
    let (status, body) = hub.publish(first).await;
    assert_eq!(status, 401);
    assert!(
        error_of(&body).contains("is not newer than the last accepted presence"),
        "{body}"
    );

    // Older than the last accepted one, though well inside the clock window.
    let mut older = alice.unsigned(PresenceType::Update, "Alice");
    older.ts = Some(older.ts.unwrap() - 1000);
    older.sign(&alice.keypair);
    let (status, _) = hub.publish(serde_json::to_string(&older).unwrap()).await;
    assert_eq!(status, 401);

    // Outside the five-minute window of the hub's clock.
    let mut bob = TestIdentity::new();
    let mut stale = bob.unsigned(PresenceType::Online, "Bob");
    stale.ts = Some(stale.ts.unwrap() - 6 * 60 * 1000);
    stale.sign(&bob.keypair);
    let (status, body) = hub.publish(serde_json::to_string(&stale).unwrap()).await;
    assert_eq!(status, 401);
    assert!(
        error_of(&body).contains("is more than 5 minutes from the hub's clock"),
        "{body}"
    );

    // An offline message ends the session; replaying the earlier online must not revive it.
    let online = alice.json(PresenceType::Update, "Alice");
    assert_eq!(hub.publish(online.clone()).await.0, 204);
    assert_eq!(
        hub.publish(alice.json(PresenceType::Offline, "Alice"))
            .await
            .0,
        204
    );
    assert_eq!(hub.publish(online).await.0, 401);
    assert!(hub.peers().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_presence_is_accepted_only_when_allowed_and_never_over_a_signed_peer() {
    let hub = TestHub::spawn_with(|c| c.presence.allow_unsigned = true, |_| {}).await;
    let mut legacy = TestIdentity::new();
    // The original peers spell the field `peerID` and do not sign.
    let message = json!({
        "type": "online", "peerID": legacy.id, "content": "Legacy", "ts": legacy.next_ts(),
        "verified": true
    });
    assert_eq!(hub.publish(message.to_string()).await.0, 204);
    let peers = hub.peers().await;
    assert_eq!(peers[0]["peerId"], legacy.id.as_str());
    assert_eq!(peers[0]["signed"], false);
    assert_eq!(
        peers[0]["verified"], false,
        "verified is set by the hub only"
    );

    let mut alice = TestIdentity::new();
    assert_eq!(
        hub.publish(alice.json(PresenceType::Online, "Alice"))
            .await
            .0,
        204
    );
    let forged = alice.unsigned(PresenceType::Update, "Not Alice");
    let (status, body) = hub.publish(serde_json::to_string(&forged).unwrap()).await;
    assert_eq!(status, 401);
    assert_eq!(
        error_of(&body),
        format!(
            "unsigned presence for {}, whose presence is signed, is refused",
            alice.id
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_expire_after_the_ttl_and_offline_removes_at_once() {
    let hub = TestHub::spawn_with(
        |c| {
            c.presence.ttl_seconds = 2;
            c.presence.heartbeat_seconds = 1;
        },
        |_| {},
    )
    .await;
    let mut events = SseClient::connect(&format!("{}/events?changes=1", hub.url), None).await;
    let mut alice = TestIdentity::new();
    let mut bob = TestIdentity::new();
    assert_eq!(
        hub.publish(alice.json(PresenceType::Online, "Alice"))
            .await
            .0,
        204
    );
    assert_eq!(
        hub.publish(bob.json(PresenceType::Online, "Bob")).await.0,
        204
    );

    // Bob keeps sending heartbeats; Alice goes quiet.
    let started = Instant::now();
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            hub.publish(bob.json(PresenceType::Update, "Bob")).await.0,
            204
        );
    }
    let offline = events.next_of_type("offline").await;
    assert_eq!(offline["peerId"], alice.id.as_str());
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(2),
        "expired too early: {elapsed:?}"
    );
    let peers = hub.peers().await;
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0]["peerId"], bob.id.as_str());

    assert_eq!(
        hub.publish(bob.json(PresenceType::Offline, "Bob")).await.0,
        204
    );
    let offline = events.next_of_type("offline").await;
    assert_eq!(offline["peerId"], bob.id.as_str());
    assert!(hub.peers().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_changes_stream_leaves_out_pure_heartbeats() {
    let hub = TestHub::spawn().await;
    let mut all = SseClient::connect(&format!("{}/events", hub.url), None).await;
    let mut changes = SseClient::connect(&format!("{}/events?changes=1", hub.url), None).await;
    // Both streams' (empty) snapshots are out: every publish below arrives live, once.
    all.past_snapshot(WAIT).await;
    changes.past_snapshot(WAIT).await;
    let mut alice = TestIdentity::new();
    for (kind, label) in [
        (PresenceType::Online, "Alice"),
        (PresenceType::Update, "Alice"),
        (PresenceType::Update, "Alice"),
        (PresenceType::Update, "Alice in Wonderland"),
        (PresenceType::Offline, "Alice in Wonderland"),
    ] {
        assert_eq!(hub.publish(alice.json(kind, label)).await.0, 204);
    }
    let mut seen_all = Vec::new();
    while seen_all.len() < 5 {
        let event = all
            .next(WAIT)
            .await
            .expect("five events on the full stream");
        seen_all.push(event.json()["type"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        seen_all,
        ["online", "update", "update", "update", "offline"]
    );

    let mut seen_changes = Vec::new();
    while let Some(event) = changes.next(Duration::from_millis(700)).await {
        let message = event.json();
        seen_changes.push(format!(
            "{} {}",
            message["type"].as_str().unwrap(),
            message["content"].as_str().unwrap_or("")
        ));
    }
    assert_eq!(
        seen_changes,
        [
            "online Alice",
            "update Alice in Wonderland",
            "offline Alice in Wonderland"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_subscriber_gets_a_snapshot_of_online_peers() {
    let hub = TestHub::spawn().await;
    let mut alice = TestIdentity::new();
    let mut bob = TestIdentity::new();
    hub.publish(alice.json(PresenceType::Online, "Alice")).await;
    hub.publish(bob.json(PresenceType::Update, "Bob")).await;

    let mut events = SseClient::connect(&format!("{}/events", hub.url), None).await;
    let mut snapshot = Vec::new();
    for _ in 0..2 {
        let message = events.next(WAIT).await.unwrap().json();
        assert_eq!(
            message["type"], "online",
            "snapshot entries are online messages"
        );
        snapshot.push(message["content"].as_str().unwrap().to_owned());
    }
    snapshot.sort();
    assert_eq!(snapshot, ["Alice", "Bob"]);
    assert!(events.next(Duration::from_millis(300)).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_event_id_replays_exactly_the_missed_events_across_100_reconnects() {
    let total = 400usize;
    // Four peers online: the ring is to hold every gap, however far the reader falls behind.
    let hub = TestHub::spawn_with(|_| {}, |o| o.ring_floor = total).await;
    let url = format!("{}/events", hub.url);

    // Subscribed before anything is published: the first connection's snapshot is empty, so
    // every label arrives as an event with an id to resume from.
    let mut first = Some(SseClient::connect(&url, None).await);
    let publisher_url = hub.url.clone();
    let publisher = tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut peers: Vec<TestIdentity> = (0..4).map(|_| TestIdentity::new()).collect();
        for i in 0..total {
            let peer = &mut peers[i % 4];
            let body = peer.json(PresenceType::Update, &format!("label {i}"));
            let (status, _) = post_with(&client, &format!("{publisher_url}/publish"), body).await;
            assert_eq!(status, 204);
            if i % 8 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });

    let mut received: Vec<String> = Vec::new();
    let mut last_id: Option<String> = None;
    let mut reconnects = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while received.len() < total && Instant::now() < deadline {
        let mut client = match first.take() {
            Some(client) => client,
            None => SseClient::connect(&url, last_id.as_deref()).await,
        };
        // Read a few events, then drop the connection mid-stream.
        let take = if reconnects < 100 {
            1 + reconnects % 4
        } else {
            usize::MAX
        };
        let mut taken = 0;
        while taken < take {
            let Some(event) = client.next(Duration::from_secs(2)).await else {
                break;
            };
            assert_ne!(
                event.event.as_deref(),
                Some("reset"),
                "the ring covers every gap"
            );
            let message = event.json();
            last_id = event.id.clone();
            taken += 1;
            // On a slow run the hub may expire the publishers once they are done: that news
            // is replayed too, but what the publishers said is what is counted.
            if message["type"] == "offline" {
                continue;
            }
            received.push(message["content"].as_str().unwrap().to_owned());
            if received.len() == total {
                break;
            }
        }
        reconnects += 1;
    }
    publisher.await.unwrap();
    assert!(reconnects >= 100, "only {reconnects} reconnects");
    let expected: Vec<String> = (0..total).map(|i| format!("label {i}")).collect();
    assert_eq!(received.len(), total, "lost events");
    assert_eq!(received, expected, "events arrive once each, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_resume_point_gets_a_reset_and_a_snapshot() {
    let hub = TestHub::spawn_with(|_| {}, |o| o.ring_capacity = 4).await;
    let mut alice = TestIdentity::new();
    hub.publish(alice.json(PresenceType::Online, "Alice")).await;

    // Another epoch: the hub restarted since this id was issued.
    let mut events = SseClient::connect(&format!("{}/events", hub.url), Some("deadbeef-3")).await;
    let reset = events.next(WAIT).await.unwrap();
    assert_eq!(reset.event.as_deref(), Some("reset"));
    let snapshot = events.next(WAIT).await.unwrap().json();
    assert_eq!(
        (snapshot["type"].as_str(), snapshot["content"].as_str()),
        (Some("online"), Some("Alice"))
    );

    // Same epoch, but the missed events have left the ring.
    for i in 0..10 {
        hub.publish(alice.json(PresenceType::Update, &format!("v{i}")))
            .await;
    }
    let old = format!("{}-1", hub.hub().epoch());
    let mut events = SseClient::connect(&format!("{}/events", hub.url), Some(&old)).await;
    assert_eq!(
        events.next(WAIT).await.unwrap().event.as_deref(),
        Some("reset")
    );
    assert_eq!(events.next(WAIT).await.unwrap().json()["content"], "v9");

    // Still in the ring: no reset, just the missed events.
    let recent = format!("{}-9", hub.hub().epoch());
    let mut events = SseClient::connect(&format!("{}/events", hub.url), Some(&recent)).await;
    let first = events.next(WAIT).await.unwrap();
    assert_eq!(first.event, None);
    assert_eq!(first.json()["content"], "v8");
    assert_eq!(events.next(WAIT).await.unwrap().json()["content"], "v9");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replay_ring_keeps_no_more_changes_than_peers_online_above_its_floor() {
    use goop2::services::hub::DEFAULT_RING_FLOOR as FLOOR;
    use goop2::services::hub::presence::Presence;
    let hub = TestHub::spawn().await;
    let apply = |body: String| {
        let checked = Presence::parse_and_check(body.as_bytes()).unwrap();
        hub.hub().apply(checked).unwrap();
    };
    // One peer online changes its label a thousand times (events 1 to 1,001).
    let mut alice = TestIdentity::new();
    apply(alice.json(PresenceType::Online, "v0"));
    for i in 1..=1000 {
        apply(alice.json(PresenceType::Update, &format!("v{i}")));
    }
    let ring = "goop_hub_event_ring_events";
    assert_eq!(gauge(&hub, ring).await, FLOOR as u64);

    // The last FLOOR changes are replayed to a stream that missed them...
    let epoch = hub.hub().epoch().to_owned();
    let oldest_held = 1001 - FLOOR as u64 + 1;
    let resume = format!("{epoch}-{}", oldest_held - 1);
    let mut events =
        SseClient::connect(&format!("{}/events?changes=1", hub.url), Some(&resume)).await;
    for i in (1000 - FLOOR + 1)..=1000 {
        let event = events.next(WAIT).await.expect("a replayed change");
        assert_eq!(event.event, None, "the ring holds this gap");
        assert_eq!(event.json()["content"], format!("v{i}"));
    }
    // ...and one that missed more is sent the peer's state instead.
    let older = format!("{epoch}-{}", oldest_held - 2);
    let mut events =
        SseClient::connect(&format!("{}/events?changes=1", hub.url), Some(&older)).await;
    assert_eq!(
        events.next(WAIT).await.unwrap().event.as_deref(),
        Some("reset")
    );
    assert_eq!(events.next(WAIT).await.unwrap().json()["content"], "v1000");

    // With more peers online than the floor, as many changes are kept as there are peers...
    let mut others: Vec<TestIdentity> = (0..400).map(|_| TestIdentity::new()).collect();
    for (n, peer) in others.iter_mut().enumerate() {
        apply(peer.json(PresenceType::Online, &format!("peer {n}")));
    }
    assert_eq!(gauge(&hub, ring).await, 401);
    // ...and no more once they left.
    for peer in &mut others {
        apply(peer.json(PresenceType::Offline, ""));
    }
    assert_eq!(gauge(&hub, ring).await, FLOOR as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_carries_presence_both_ways_and_its_close_takes_the_peer_offline() {
    let hub = TestHub::spawn().await;
    let mut alice = TestIdentity::new();
    let mut watcher = SseClient::connect(&format!("{}/events?changes=1", hub.url), None).await;

    let url = format!("ws://{}/ws?peer_id={}", hub.addr, alice.id);
    let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    socket
        .send(Message::text(
            alice.json(PresenceType::Online, "Alice over WS"),
        ))
        .await
        .unwrap();
    // The socket receives the stream, including its own presence.
    let echoed = next_json(&mut socket, WAIT)
        .await
        .expect("a message in time");
    assert_eq!(echoed["content"], "Alice over WS");
    assert_eq!(hub.peers().await.len(), 1);

    // A message for another peer is refused on this socket.
    let mut bob = TestIdentity::new();
    socket
        .send(Message::text(bob.json(PresenceType::Online, "Bob")))
        .await
        .unwrap();
    let refusal = loop {
        let value = next_json(&mut socket, WAIT)
            .await
            .expect("a message in time");
        if value.get("error").is_some() {
            break value;
        }
    };
    assert_eq!(
        refusal["error"],
        format!(
            "this connection publishes for {}; presence for {} is refused",
            alice.id, bob.id
        )
    );

    socket.close(None).await.unwrap();
    drop(socket);
    let offline = watcher.next_of_type("offline").await;
    assert_eq!(offline["peerId"], alice.id.as_str());
    assert!(hub.peers().await.is_empty());
}

/// A client may send its first message right behind its upgrade request, before the `101`:
/// the bytes hyper read past the request reach the WebSocket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_in_the_same_write_as_the_upgrade_request_is_published() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::protocol::Role;
    let hub = TestHub::spawn().await;
    let mut alice = TestIdentity::new();
    let text = alice.json(PresenceType::Online, "Alice, without waiting");
    let mut bytes = format!(
        "GET /ws?peer_id={} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n",
        alice.id, hub.addr
    )
    .into_bytes();
    // A masked text frame, as a client sends it (RFC 6455 §5.2).
    let mask = [0x1f, 0x2e, 0x3d, 0x4c];
    bytes.extend([0x81, 0x80 | 126]);
    bytes.extend(u16::try_from(text.len()).unwrap().to_be_bytes());
    bytes.extend(mask);
    bytes.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    let mut stream = tokio::net::TcpStream::connect(hub.addr).await.unwrap();
    stream.write_all(&bytes).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "the hub closed");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );

    let mut socket =
        tokio_tungstenite::WebSocketStream::from_raw_socket(stream, Role::Client, None).await;
    let echoed = next_json(&mut socket, WAIT)
        .await
        .expect("a message in time");
    assert_eq!(echoed["content"], "Alice, without waiting");
    assert_eq!(hub.peers().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_needs_a_valid_peer_id() {
    let hub = TestHub::spawn().await;
    let client = reqwest::Client::new();
    let response = client
        .get(format!("{}/ws?peer_id=bogus", hub.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let response = client.get(format!("{}/ws", hub.url)).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "the peer_id query parameter is required");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_request_that_cannot_upgrade_is_told_what_is_missing() {
    let hub = TestHub::spawn().await;
    let peer_id = TestIdentity::new().id;
    for (headers, problem) in [
        ("", "the Connection header does not include 'upgrade'"),
        (
            "Connection: upgrade\r\nUpgrade: h2c\r\n",
            "the Upgrade header does not include 'websocket'",
        ),
        (
            "Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 8\r\n",
            "the Sec-WebSocket-Version header must be 13",
        ),
        (
            "Connection: Upgrade\r\nUpgrade: WebSocket\r\nSec-WebSocket-Version: 13\r\n",
            "the Sec-WebSocket-Key header is missing",
        ),
    ] {
        let request = format!(
            "GET /ws?peer_id={peer_id} HTTP/1.1\r\nHost: {}\r\n{headers}\r\n",
            hub.addr
        );
        let (status, body) = raw_exchange(hub.addr, &request).await;
        assert_eq!(status, 400, "{headers:?}: {body}");
        assert_eq!(
            error_of(&body),
            format!("/ws needs a WebSocket upgrade: {problem}"),
            "{headers:?}"
        );
    }
}

/// Sends `request` on a connection of its own and reads the JSON answer (by its length).
async fn raw_exchange(hub: std::net::SocketAddr, request: &str) -> (u16, Value) {
    let mut stream = tokio::net::TcpStream::connect(hub).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let (head, body) = crate::support::read_response(&mut stream, &mut Vec::new()).await;
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(&body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_snapshot_of_many_peers_arrives_message_by_message() {
    let hub = TestHub::spawn().await;
    // More peers than one write carries, with messages of many lengths.
    let mut labels = Vec::new();
    for i in 0..100 {
        let label = format!("peer {i} {}", "x".repeat(i * 7));
        let (status, body) = hub
            .publish(TestIdentity::new().json(PresenceType::Online, &label))
            .await;
        assert_eq!(status, 204, "{body}");
        labels.push(label);
    }
    let watcher = TestIdentity::new();
    let url = format!("ws://{}/ws?peer_id={}", hub.addr, watcher.id);
    let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let mut received = Vec::new();
    for _ in 0..labels.len() {
        let message = next_json(&mut socket, WAIT)
            .await
            .expect("a message in time");
        assert_eq!(message["type"], "online", "{message}");
        received.push(message["content"].as_str().unwrap().to_owned());
    }
    received.sort();
    labels.sort();
    assert_eq!(received, labels);

    // Live events follow the snapshot on the same socket.
    let mut late = TestIdentity::new();
    hub.publish(late.json(PresenceType::Online, "late")).await;
    let message = next_json(&mut socket, WAIT)
        .await
        .expect("a message in time");
    assert_eq!(message["content"], "late");
    assert_eq!(message["peerId"], late.id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_calls_the_hub_cannot_read_are_refused_in_the_json_error_shape() {
    let hub = TestHub::spawn().await;
    for (path, problem) in [
        // A query string that does not decode: the same parameter twice.
        ("/ws?peer_id=a&peer_id=b", "peer_id"),
        // The same on the event stream, served off the socket as a connection's first request.
        ("/events?changes=1&changes=1", "changes"),
        // A path segment that is not UTF-8.
        ("/api/templates/%FF/manifest.json", "URL"),
    ] {
        let response = reqwest::get(format!("{}{path}", hub.url)).await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{path}: {status} is not JSON: {text}"));
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["code"], 400, "{path}: {body}");
        assert!(error_of(&body).contains(problem), "{path}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_is_cut_off_while_others_keep_up() {
    let hub = TestHub::spawn_with(
        |_| {},
        |o| {
            o.subscriber_queue = 32;
            o.write_stall_timeout = Duration::from_secs(1);
        },
    )
    .await;

    // A client that sends its request and then never reads, with a tiny receive buffer.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(hub.addr).await.unwrap();
    use tokio::io::AsyncWriteExt;
    stalled
        .write_all(b"GET /events HTTP/1.1\r\nHost: hub\r\n\r\n")
        .await
        .unwrap();
    let mut healthy = SseClient::connect(&format!("{}/events", hub.url), None).await;
    assert!(eventually(WAIT, async || hub.hub().open_streams() == 2).await);

    let mut peer = TestIdentity::new();
    let label = "z".repeat(4000);
    // Enough to overflow the kernel's socket buffers (up to 4 MiB on loopback) several times.
    let total = 3000;
    let reader = tokio::spawn(async move {
        let mut late = Duration::ZERO;
        for i in 0..total {
            let started = Instant::now();
            let event = healthy
                .next(Duration::from_secs(10))
                .await
                .unwrap_or_else(|| panic!("event {i} missing"));
            late = late.max(started.elapsed());
            assert!(
                event.json()["content"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("#{i}"))
            );
        }
        (late, healthy)
    });
    for i in 0..total {
        let body = peer.json(PresenceType::Update, &format!("{label}#{i}"));
        assert_eq!(hub.publish(body).await.0, 204);
    }
    let (longest_wait, _healthy) = reader.await.unwrap();
    assert!(
        longest_wait < Duration::from_secs(5),
        "the healthy reader waited {longest_wait:?}"
    );
    assert!(
        eventually(WAIT, async || hub.hub().open_streams() == 1).await,
        "the stalled subscriber was not disconnected: {} streams open",
        hub.hub().open_streams()
    );
    let metrics = hub.metrics().await;
    assert!(
        metrics.contains("goop_hub_dropped_slow_subscribers_total 1"),
        "{metrics}"
    );
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_are_rate_limited_per_address() {
    let hub = TestHub::spawn_with(
        |c| {
            c.presence.publish_burst = 3;
            c.presence.publish_per_second = 1;
        },
        |_| {},
    )
    .await;
    let mut peer = TestIdentity::new();
    for _ in 0..3 {
        assert_eq!(
            hub.publish(peer.json(PresenceType::Update, "p")).await.0,
            204
        );
    }
    let response = reqwest::Client::new()
        .post(format!("{}/publish", hub.url))
        .body(peer.json(PresenceType::Update, "p"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    let body: Value = response.json().await.unwrap();
    assert!(
        error_of(&body).starts_with("too many publishes from this address"),
        "{body}"
    );

    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        hub.publish(peer.json(PresenceType::Update, "p")).await.0,
        204
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_capped_per_address_and_in_total() {
    let hub = TestHub::spawn_with(
        |c| {
            c.presence.max_streams = 3;
            c.presence.max_streams_per_ip = 2;
        },
        |_| {},
    )
    .await;
    let url = format!("{}/events", hub.url);
    let first = SseClient::connect(&url, None).await;
    let second = SseClient::connect(&url, None).await;
    assert_eq!((first.status, second.status), (200, 200));
    let third = SseClient::connect(&url, None).await;
    assert_eq!(third.status, 429);
    assert_eq!(third.headers["retry-after"], "10");

    // Another source address still gets a slot, until the hub is full.
    let other = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let response = other.get(&url).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let full = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 3]))
        .build()
        .unwrap()
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(full.status().as_u16(), 503);
    let body: Value = full.json().await.unwrap();
    assert_eq!(
        body["error"],
        "this hub serves its maximum of 3 streams; retry later"
    );

    // Closing a stream frees its slot.
    drop(first);
    assert!(eventually(WAIT, async || hub.hub().open_streams() == 2).await);
    assert_eq!(SseClient::connect(&url, None).await.status, 200);
    drop(response);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    async fn publish_via(hub: &TestHub, peer: &mut TestIdentity, forwarded_for: &str) -> u16 {
        reqwest::Client::new()
            .post(format!("{}/publish", hub.url))
            .header("X-Forwarded-For", forwarded_for)
            .body(peer.json(PresenceType::Update, "p"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
    let limited = |c: &mut goop2::config::Config| {
        c.presence.publish_burst = 1;
        c.presence.publish_per_second = 1;
    };
    let mut peer = TestIdentity::new();

    // Behind a trusted proxy each client address has its own bucket.
    let hub = TestHub::spawn_with(
        |c| {
            limited(c);
            c.presence.trusted_proxies = vec!["127.0.0.1".into()];
        },
        |_| {},
    )
    .await;
    assert_eq!(publish_via(&hub, &mut peer, "203.0.113.5").await, 204);
    assert_eq!(publish_via(&hub, &mut peer, "203.0.113.6").await, 204);
    assert_eq!(publish_via(&hub, &mut peer, "203.0.113.5").await, 429);
    // The client cannot pick its address by prepending entries: the proxy's own entry wins.
    assert_eq!(
        publish_via(&hub, &mut peer, "198.51.100.1, 203.0.113.6").await,
        429
    );

    // Without trust the header is ignored: everything is 127.0.0.1.
    let hub = TestHub::spawn_with(limited, |_| {}).await;
    assert_eq!(publish_via(&hub, &mut peer, "203.0.113.7").await, 204);
    assert_eq!(publish_via(&hub, &mut peer, "203.0.113.8").await, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_and_dashboard_answer() {
    let hub = TestHub::spawn().await;
    let health = reqwest::get(format!("{}/healthz", hub.url)).await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    assert_eq!(health.text().await.unwrap(), "ok");

    let mut peer = TestIdentity::new();
    hub.publish(peer.json(PresenceType::Online, "<script>alert(1)</script> Alice"))
        .await;
    let page = reqwest::get(format!("{}/", hub.url)).await.unwrap();
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    let html = page.text().await.unwrap();
    assert!(
        html.contains("&#60;script&#62;alert(1)&#60;/script&#62; Alice"),
        "labels are escaped: {html}"
    );
    assert!(!html.contains("<script>alert(1)"));
    assert!(html.contains(&format!("title=\"{}\"", peer.id)));
    assert!(
        html.contains("<span id=\"peer-count\">1</span> <span id=\"peer-noun\">peer</span> online")
    );

    let metrics = hub.metrics().await;
    assert!(metrics.contains("goop_hub_peers 1\n"), "{metrics}");
    assert!(
        metrics.contains("goop_hub_publishes_total 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("# TYPE goop_hub_fanout_seconds histogram"),
        "{metrics}"
    );

    let script = reqwest::get(format!("{}/assets/dashboard.js", hub.url))
        .await
        .unwrap();
    assert_eq!(script.status().as_u16(), 200);
    assert!(
        script
            .text()
            .await
            .unwrap()
            .contains("new EventSource(\"/events?changes=1\")")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_tells_streams_to_reconnect_and_finishes_quickly() {
    let mut hub = TestHub::spawn().await;
    let mut events = SseClient::connect(&format!("{}/events", hub.url), None).await;
    let started = Instant::now();
    hub.stop().await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(events.next(WAIT).await.is_none());
    assert!(events.ended, "the stream ends after the reconnect hint");
    assert_eq!(events.last_retry.as_deref(), Some("1000"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_also_stream_on_a_reused_keep_alive_connection() {
    // The first request of a connection may be served straight off the socket; a later one
    // on a kept-alive connection goes through the router. Both must behave the same.
    let hub = TestHub::spawn().await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let health = client
        .get(format!("{}/healthz", hub.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.text().await.unwrap(), "ok");
    let response = client
        .get(format!("{}/events?changes=1", hub.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["x-accel-buffering"], "no");
    assert_eq!(hub.hub().open_streams(), 1);
    let mut body = response.bytes_stream();
    let mut alice = TestIdentity::new();
    assert_eq!(
        hub.publish(alice.json(PresenceType::Online, "Alice"))
            .await
            .0,
        204
    );
    let mut text = String::new();
    while !text.contains("\"content\":\"Alice\"") {
        let chunk = tokio::time::timeout(WAIT, body.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.starts_with("retry: 2000\n\n"), "{text}");
    assert!(
        text.contains(&format!("id: {}-1\ndata: {{", hub.hub().epoch())),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_streams_get_keep_alive_comments() {
    let hub = TestHub::spawn_with(|_| {}, |o| o.keepalive = Duration::from_millis(300)).await;
    let mut events = SseClient::connect(&format!("{}/events", hub.url), None).await;
    assert!(
        events.next(Duration::from_millis(1200)).await.is_none(),
        "no events, only comments"
    );
    assert!(!events.ended);
    assert!(
        events.comments >= 2,
        "{} keep-alives in 1.2 s",
        events.comments
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_that_stops_answering_pings_is_closed_and_its_peer_goes_offline() {
    let hub = TestHub::spawn_with(|_| {}, |o| o.ws_ping = Duration::from_millis(200)).await;
    let mut alice = TestIdentity::new();
    let url = format!("ws://{}/ws?peer_id={}", hub.addr, alice.id);

    // A live client answers pings (tungstenite replies while it reads) and stays online.
    let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    socket
        .send(Message::text(alice.json(PresenceType::Online, "Alice")))
        .await
        .unwrap();
    let mut pings = 0;
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        if let Ok(Some(Ok(Message::Ping(_)))) =
            tokio::time::timeout(Duration::from_millis(100), socket.next()).await
        {
            pings += 1;
        }
    }
    assert!(pings >= 3, "{pings} pings in 1.5 s");
    assert_eq!(
        hub.peers().await.len(),
        1,
        "a client that answers stays online"
    );

    // Now it goes silent: no reads, so no pongs.
    let mut watcher = SseClient::connect(&format!("{}/events?changes=1", hub.url), None).await;
    let offline = watcher.next_of_type("offline").await;
    assert_eq!(offline["peerId"], alice.id.as_str());
    drop(socket);
}

/// Sends `request` (its `{addr}` filled in) to the hub at `addr` from `from`, reads the
/// response head, checks that it starts with `status` and leaves the connection idle.
async fn idle_stream(
    addr: std::net::SocketAddr,
    from: std::net::IpAddr,
    request: impl FnOnce(std::net::SocketAddr) -> String,
    status: &str,
) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((from, 0).into()).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    stream.write_all(request(addr).as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "the hub closed");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with(status), "{head}");
    stream
}

/// Opens a WebSocket subscription (`/ws?peer_id=…`) from `from` and completes the handshake,
/// then leaves it idle.
async fn idle_websocket(
    hub: std::net::SocketAddr,
    from: std::net::IpAddr,
    peer_id: &str,
) -> tokio::net::TcpStream {
    let request = |addr| {
        format!(
            "GET /ws?peer_id={peer_id} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        )
    };
    idle_stream(hub, from, request, "HTTP/1.1 101").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_websocket_subscriber_costs_the_hub_a_few_kib() {
    let peer_id = TestIdentity::new().id;
    const SOCKETS: u32 = 500;
    let (each, grown) = crate::support::hub_memory_per_connection(3, SOCKETS, |hub, from| {
        idle_websocket(hub, from, &peer_id)
    })
    .await;
    // tungstenite's default buffers made it ≈136 KiB.
    assert!(
        each < 40.0,
        "{each:.1} KiB per idle WebSocket ({grown} KiB for {SOCKETS})"
    );
}

/// Opens an event stream (`/events?changes=1`) from `from` with the headers a browser sends
/// (2 KiB of them, a cookie among them), reads its head and leaves it idle.
async fn idle_event_stream(
    hub: std::net::SocketAddr,
    from: std::net::IpAddr,
) -> tokio::net::TcpStream {
    let request = |addr| {
        format!(
            "GET /events?changes=1 HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\
             User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
             Chrome/131.0.0.0 Safari/537.36\r\nAccept-Language: en-GB,en;q=0.9,fr;q=0.8\r\n\
             Cache-Control: no-cache\r\nReferer: http://{addr}/admin\r\nCookie: theme=dark; \
             tracking={}\r\n\r\n",
            "t".repeat(1800)
        )
    };
    idle_stream(hub, from, request, "HTTP/1.1 200").await
}

/// A stream lives for hours; what its request said is read when it opens and let go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_event_stream_costs_the_hub_a_few_kib_whatever_its_request_said() {
    const STREAMS: u32 = 500;
    let (each, grown) =
        crate::support::hub_memory_per_connection(7, STREAMS, idle_event_stream).await;
    // Keeping each stream's request (its 2 KiB of headers) made it 8.6 KiB; 5.2 without; 3.2
    // once the stream's task held neither the hub's app nor room for a snapshot it has sent.
    assert!(
        each < 4.5,
        "{each:.1} KiB per idle event stream ({grown} KiB for {STREAMS})"
    );
}

/// Opens an event stream (`/events`) from `from` and reads until `events` events have come.
async fn sse_holding(hub: &str, from: std::net::IpAddr, events: usize) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr: std::net::SocketAddr = hub.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((from, 0).into()).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let request = format!("GET /events HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let (mut seen, mut buffer) = (0, vec![0u8; 64 * 1024]);
    let mut tail = Vec::new();
    while seen < events {
        let read = tokio::time::timeout(WAIT, stream.read(&mut buffer))
            .await
            .expect("the snapshot in time")
            .unwrap();
        assert!(read > 0, "the hub closed the stream after {seen} events");
        tail.extend_from_slice(&buffer[..read]);
        seen += tail.windows(7).filter(|w| w == b"\ndata: ").count();
        // Keep only what could begin a marker cut in two.
        tail.drain(..tail.len().saturating_sub(6));
    }
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_holds_no_part_of_the_snapshot_once_it_is_sent() {
    let dir = crate::support::binary_hub_dir_with(|c| {
        c.presence.max_streams_per_ip = 1000;
        c.presence.publish_burst = 100_000;
        c.presence.publish_per_second = 100_000;
    });
    let hub = crate::support::HubProcess::start(dir.path());
    let pid = hub.child.id();
    let client = reqwest::Client::new();
    let publish = async |peer: &mut TestIdentity, kind: PresenceType, label: &str| {
        let body = peer.json(kind, label);
        let (status, reply) = post_with(&client, &format!("{}/publish", hub.url), body).await;
        assert_eq!(status, 204, "{reply}");
    };
    // 200 peers online, each with a label of 500 bytes.
    const PEERS: usize = 200;
    let mut peers: Vec<TestIdentity> = (0..PEERS).map(|_| TestIdentity::new()).collect();
    for (n, peer) in peers.iter_mut().enumerate() {
        publish(
            peer,
            PresenceType::Online,
            &format!("{n:03}{}", "x".repeat(497)),
        )
        .await;
    }
    // Warm up, then 300 subscribers, each reading the whole snapshot.
    let mut open = Vec::new();
    for n in 0..20u32 {
        let from = std::net::Ipv4Addr::new(127, 0, 5, 1 + n as u8).into();
        open.push(sse_holding(&hub.url, from, PEERS).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = crate::support::peak_rss_kib(pid);
    const SUBSCRIBERS: u32 = 300;
    for n in 0..SUBSCRIBERS {
        let from = std::net::Ipv4Addr::new(127, 0, 6 + (n / 200) as u8, 1 + (n % 200) as u8);
        open.push(sse_holding(&hub.url, from.into(), PEERS).await);
    }
    // Every peer says something new: the registry lets go of the events of the snapshot.
    for (n, peer) in peers.iter_mut().enumerate() {
        publish(
            peer,
            PresenceType::Update,
            &format!("{n:03}{}", "y".repeat(497)),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let grown = crate::support::peak_rss_kib(pid).saturating_sub(before);
    let each = grown as f64 / f64::from(SUBSCRIBERS);
    // Holding its snapshot's events made it 442.6 KiB here.
    assert!(
        each < 40.0,
        "{each:.1} KiB per subscriber with {PEERS} peers online ({grown} KiB for {SUBSCRIBERS})"
    );
    drop(open);
}

/// The response head of `GET path` read off a raw socket (the event stream never ends).
async fn raw_head(hub: &TestHub, path: &str, headers: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = hub.url.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let read = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut byte))
            .await
            .expect("a response head within 5 s")
            .unwrap();
        assert_eq!(
            read,
            1,
            "the head ended early: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap().to_ascii_lowercase()
}

fn header_value<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .find_map(|line| line.strip_prefix(&format!("{name}: ")))
        .map(str::trim)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_direct_event_stream_carries_the_security_headers_of_every_other_route() {
    let hub = TestHub::spawn().await;
    let routed = raw_head(&hub, "/healthz", "Connection: close\r\n").await;
    let direct = raw_head(&hub, "/events", "").await;
    assert!(direct.starts_with("http/1.1 200"), "{direct}");
    assert_eq!(
        header_value(&direct, "content-type"),
        Some("text/event-stream")
    );
    for name in [
        "x-content-type-options",
        "x-frame-options",
        "referrer-policy",
        "content-security-policy",
    ] {
        assert!(header_value(&routed, name).is_some(), "{name} in {routed}");
        assert_eq!(
            header_value(&direct, name),
            header_value(&routed, name),
            "{name}"
        );
    }
    // An event stream is never compressed, whatever the client accepts.
    let accepted = raw_head(&hub, "/events", "Accept-Encoding: gzip\r\n").await;
    assert_eq!(header_value(&accepted, "content-encoding"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_json_are_compressed_for_clients_that_accept_it() {
    let hub = TestHub::spawn().await;
    let mut peer = TestIdentity::new();
    hub.publish(peer.json(PresenceType::Online, "Alice")).await;
    for path in ["/", "/peers.json"] {
        let plain = raw_head(&hub, path, "Connection: close\r\n").await;
        assert_eq!(header_value(&plain, "content-encoding"), None, "{path}");
        let gzip = raw_head(&hub, path, "Accept-Encoding: gzip\r\nConnection: close\r\n").await;
        assert_eq!(
            header_value(&gzip, "content-encoding"),
            Some("gzip"),
            "{path}: {gzip}"
        );
    }
    // A body of a few bytes is not worth it.
    let health = raw_head(
        &hub,
        "/healthz",
        "Accept-Encoding: gzip\r\nConnection: close\r\n",
    )
    .await;
    assert_eq!(header_value(&health, "content-encoding"), None);
}

/// The value of the gauge `name` in the hub's `/metrics`.
pub async fn gauge(hub: &TestHub, name: &str) -> u64 {
    let metrics = hub.metrics().await;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in {metrics}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_holds_a_page_of_the_snapshot_however_many_peers_are_online() {
    use goop2::services::hub::snapshot::SNAPSHOT_PAGE;
    let hub = TestHub::spawn_with(|c| c.presence.max_streams_per_ip = 100, |_| {}).await;
    // 3,000 peers online with labels of 3,000 bytes: a 9 MiB snapshot, more than a socket's
    // buffers hold for a subscriber that does not read.
    const PEERS: usize = 3000;
    put_online_with_long_labels(hub.hub(), PEERS);
    let head = format!("{}-{PEERS}", hub.hub().epoch());

    // Twenty subscribers ask for the stream and read nothing.
    const STALLED: u64 = 20;
    let mut stalled = Vec::new();
    for _ in 0..STALLED {
        stalled.push(stalled_event_stream(hub.addr, None).await);
    }
    assert!(
        eventually(WAIT, async || hub.hub().open_streams() == STALLED as usize).await,
        "{} streams open",
        hub.hub().open_streams()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = gauge(&hub, "goop_hub_snapshot_frames_held").await;
    assert!(
        held > 0,
        "the subscribers are stalled halfway through the snapshot"
    );
    assert!(
        held <= STALLED * SNAPSHOT_PAGE as u64,
        "{held} snapshot frames held by {STALLED} subscribers, with {PEERS} peers online"
    );

    // A subscriber that reads is sent every peer once, then the snapshot's position.
    let mut reader = SseClient::connect(&format!("{}/events", hub.url), None).await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..PEERS {
        let event = reader.next(WAIT).await.expect("the whole snapshot");
        assert_eq!(
            event.id, None,
            "a snapshot frame is not a position to resume from"
        );
        let message = event.json();
        assert_eq!(message["type"], "online");
        seen.insert(message["content"].as_str().unwrap()[..4].to_owned());
    }
    assert_eq!(seen.len(), PEERS);
    assert!(reader.next(Duration::from_millis(300)).await.is_none());
    assert_eq!(reader.last_id.as_deref(), Some(head.as_str()));

    // Subscribers that leave let go of their pages.
    drop(stalled);
    drop(reader);
    assert!(
        eventually(WAIT, async || gauge(&hub, "goop_hub_snapshot_frames_held")
            .await
            == 0)
        .await,
        "frames still held after every subscriber left"
    );
}

/// The next text message on a WebSocket, as JSON; `None` if none comes within `wait`.
async fn next_json<S>(socket: &mut S, wait: Duration) -> Option<Value>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let frame = tokio::time::timeout_at(deadline, socket.next())
            .await
            .ok()??;
        if let Ok(Message::Text(text)) = frame {
            return Some(serde_json::from_str(&text).unwrap());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_that_asks_for_positions_resumes_with_only_what_it_missed() {
    let hub = TestHub::spawn_with(|_| {}, |o| o.keepalive = Duration::from_millis(300)).await;
    let mut others: Vec<TestIdentity> = (0..3).map(|_| TestIdentity::new()).collect();
    for (index, peer) in others.iter_mut().enumerate() {
        hub.publish(peer.json(PresenceType::Online, &format!("peer {index}")))
            .await;
    }
    let alice = TestIdentity::new();
    let base = format!("ws://{}/ws?peer_id={}&changes=1", hub.addr, alice.id);

    // A first connection: the snapshot, then its position.
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("{base}&positions=1"))
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(
            next_json(&mut socket, WAIT).await.unwrap()["type"],
            "online"
        );
    }
    let first = next_json(&mut socket, WAIT).await.unwrap();
    assert_eq!(first["type"], "position", "{first}");
    // A change, then with the keep-alive the position after it.
    hub.publish(others[0].json(PresenceType::Update, "peer 0, renamed"))
        .await;
    assert_eq!(
        next_json(&mut socket, WAIT).await.unwrap()["content"],
        "peer 0, renamed"
    );
    let after = next_json(&mut socket, WAIT).await.unwrap();
    assert_eq!(after["type"], "position", "{after}");
    assert_ne!(after["id"], first["id"]);
    // Nothing new: no further position.
    assert_eq!(
        next_json(&mut socket, Duration::from_millis(800)).await,
        None
    );
    drop(socket);

    // Missed while away: one rename and one departure (and heartbeats, which a stream of
    // changes does not carry).
    hub.publish(others[1].json(PresenceType::Update, "peer 1, renamed"))
        .await;
    hub.publish(others[2].json(PresenceType::Update, "peer 2"))
        .await;
    hub.publish(others[2].json(PresenceType::Offline, "peer 2"))
        .await;
    let id = after["id"].as_str().unwrap();
    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("{base}&positions=1&last_event_id={id}"))
            .await
            .unwrap();
    let mut missed = Vec::new();
    loop {
        let message = next_json(&mut socket, WAIT).await.unwrap();
        if message["type"] == "position" {
            break;
        }
        missed.push(format!("{} {}", message["type"], message["content"]));
    }
    assert_eq!(
        missed,
        ["\"update\" \"peer 1, renamed\"", "\"offline\" \"peer 2\""],
        "exactly what was missed, then the position"
    );

    // A position the hub cannot resume from: reset first, then the snapshot.
    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("{base}&positions=1&last_event_id=nowhere-7"))
            .await
            .unwrap();
    assert_eq!(next_json(&mut socket, WAIT).await.unwrap()["type"], "reset");
    for _ in 0..2 {
        assert_eq!(
            next_json(&mut socket, WAIT).await.unwrap()["type"],
            "online"
        );
    }
    assert_eq!(
        next_json(&mut socket, WAIT).await.unwrap()["type"],
        "position"
    );

    // Without `positions=1` a client is sent presence only, as before.
    let (mut socket, _) = tokio_tungstenite::connect_async(&base).await.unwrap();
    for _ in 0..2 {
        assert_eq!(
            next_json(&mut socket, WAIT).await.unwrap()["type"],
            "online"
        );
    }
    hub.publish(others[0].json(PresenceType::Update, "peer 0, again"))
        .await;
    assert_eq!(
        next_json(&mut socket, WAIT).await.unwrap()["content"],
        "peer 0, again"
    );
    assert_eq!(
        next_json(&mut socket, Duration::from_millis(800)).await,
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_gap_is_replayed_whole_and_in_order_then_live_events_follow_once() {
    // More missed events than a replay reads at a time (64), over both kinds of stream.
    const MISSED: usize = 150;
    let hub = TestHub::spawn_with(|_| {}, |o| o.ring_capacity = 1000).await;
    let mut peers: Vec<TestIdentity> = (0..3).map(|_| TestIdentity::new()).collect();
    for i in 0..MISSED {
        let body = peers[i % 3].json(PresenceType::Update, &format!("label {i}"));
        hub.publish(body).await;
    }
    let from_start = format!("{}-0", hub.hub().epoch());
    let mut sse =
        SseClient::connect(&format!("{}/events?changes=1", hub.url), Some(&from_start)).await;
    let alice = TestIdentity::new();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!(
        "ws://{}/ws?peer_id={}&changes=1&positions=1&last_event_id={from_start}",
        hub.addr, alice.id
    ))
    .await
    .unwrap();
    let expected: Vec<String> = (0..MISSED).map(|i| format!("label {i}")).collect();
    let mut over_sse = Vec::new();
    for _ in 0..MISSED {
        let event = sse.next(WAIT).await.expect("a replayed event");
        assert_ne!(
            event.event.as_deref(),
            Some("reset"),
            "the ring holds the gap"
        );
        over_sse.push(event.json()["content"].as_str().unwrap().to_owned());
    }
    assert_eq!(over_sse, expected);
    // Over a WebSocket that asked for positions, one follows each page of the replay (the last
    // says where the whole replay ends): a cut in a long replay resumes from there.
    let mut over_ws = Vec::new();
    let mut positions = Vec::new();
    while over_ws.len() < MISSED || positions.len() < 3 {
        let message = next_json(&mut ws, WAIT).await.expect("a replayed message");
        match message["type"].as_str() {
            Some("position") => positions.push((over_ws.len(), message["id"].clone())),
            _ => over_ws.push(message["content"].as_str().unwrap().to_owned()),
        }
    }
    assert_eq!(over_ws, expected);
    let counts: Vec<usize> = positions.iter().map(|(count, _)| *count).collect();
    assert_eq!(counts, [64, 128, MISSED], "{positions:?}");
    let ws_resume = format!(
        "ws://{}/ws?peer_id={}&changes=1&positions=1&last_event_id={}",
        hub.addr,
        alice.id,
        positions[2].1.as_str().unwrap()
    );
    // What comes after the replay comes live, once.
    hub.publish(peers[0].json(PresenceType::Update, "after"))
        .await;
    assert_eq!(sse.next(WAIT).await.unwrap().json()["content"], "after");
    assert_eq!(next_json(&mut ws, WAIT).await.unwrap()["content"], "after");
    assert!(sse.next(Duration::from_millis(500)).await.is_none());
    assert_eq!(next_json(&mut ws, Duration::from_millis(500)).await, None);
    // Resuming from the replay's last position gives only what came after it.
    drop(ws);
    let (mut again, _) = tokio_tungstenite::connect_async(ws_resume).await.unwrap();
    assert_eq!(
        next_json(&mut again, WAIT).await.unwrap()["content"],
        "after"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_the_rings_let_go_of_before_it_was_written_ends_the_stream() {
    // Two clients resume from the start of a gap and read nothing: their replays stop once the
    // socket buffers are full (4 KiB events, twice what the hub's send buffer may grow to), and
    // a second gap as long as the ring pushes what they have not yet been sent out of it.
    let send_buffer_max: usize = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|limits| limits.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or(4 << 20);
    let ring = (2 * send_buffer_max / 4000).max(2_000);
    let hub = TestHub::spawn_with(
        |_| {},
        |o| {
            o.ring_capacity = ring;
            o.ring_floor = ring;
            // Neither the live queue nor the write watchdog may end these streams first.
            o.subscriber_queue = 4 * ring;
            o.write_stall_timeout = Duration::from_secs(600);
        },
    )
    .await;
    let mut peers: Vec<TestIdentity> = (0..3).map(|_| TestIdentity::new()).collect();
    let padding = "x".repeat(4000);
    for i in 0..ring {
        let body = peers[i % 3].json(PresenceType::Update, &format!("label {i} {padding}"));
        assert_eq!(hub.publish(body).await.0, 204);
    }
    let from_start = format!("{}-0", hub.hub().epoch());
    let alice = TestIdentity::new();
    let (mut ws, _) = tokio_tungstenite::client_async(
        format!(
            "ws://{}/ws?peer_id={}&changes=1&positions=1&last_event_id={from_start}",
            hub.addr, alice.id
        ),
        slow_reader(hub.addr).await,
    )
    .await
    .unwrap();
    let mut sse = slow_reader(hub.addr).await;
    sse.write_all(
        format!(
            "GET /events?changes=1 HTTP/1.1\r\nHost: {}\r\nLast-Event-ID: {from_start}\r\n\r\n",
            hub.addr
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Eight other peers, each publishing in order.
    let statuses: Vec<u16> = futures_util::future::join_all((0..8).map(|_| {
        let mut peer = TestIdentity::new();
        let (hub, padding) = (&hub, &padding);
        async move {
            let mut statuses = Vec::new();
            for i in 0..ring / 8 {
                let body = peer.json(PresenceType::Update, &format!("later {i} {padding}"));
                statuses.push(hub.publish(body).await.0);
            }
            statuses
        }
    }))
    .await
    .concat();
    assert!(statuses.iter().all(|&s| s == 204), "{statuses:?}");

    // Over the WebSocket: a whole, in-order start of the gap, then 1013.
    let mut over_ws = Vec::new();
    let mut last_position = None;
    let close = loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("the stream goes on or ends")
            .expect("a close frame before the end")
            .unwrap();
        match frame {
            Message::Text(text) => {
                let message: Value = serde_json::from_str(&text).unwrap();
                if message["type"] == "position" {
                    last_position = Some(message["id"].as_str().unwrap().to_owned());
                } else {
                    over_ws.push(label_number(&message["content"]));
                }
            }
            Message::Close(close) => break close.expect("a close code"),
            _ => {}
        }
    };
    assert_eq!(u16::from(close.code), 1013, "{close:?}");
    assert!(
        !over_ws.is_empty() && over_ws.len() < ring,
        "{}",
        over_ws.len()
    );
    assert_eq!(over_ws, (0..over_ws.len()).collect::<Vec<_>>());
    // Where it got to is gone too: resuming from there starts over with a snapshot.
    let (mut again, _) = tokio_tungstenite::connect_async(format!(
        "ws://{}/ws?peer_id={}&changes=1&positions=1&last_event_id={}",
        hub.addr,
        alice.id,
        last_position.expect("a position after the first page")
    ))
    .await
    .unwrap();
    assert_eq!(next_json(&mut again, WAIT).await.unwrap()["type"], "reset");

    // Over SSE: the same, and the response ends.
    let body = read_body_to_end(&mut sse, Duration::from_secs(30)).await;
    let body = String::from_utf8(body).unwrap();
    let mut over_sse = Vec::new();
    let mut last_id = None;
    for frame in body.split("\n\n").filter(|f| !f.trim().is_empty()) {
        for line in frame.lines() {
            if let Some(id) = line.strip_prefix("id: ") {
                last_id = Some(id.to_owned());
            } else if let Some(data) = line.strip_prefix("data: ") {
                let event: Value = serde_json::from_str(data).unwrap();
                over_sse.push(label_number(&event["content"]));
            }
        }
    }
    assert!(
        !over_sse.is_empty() && over_sse.len() < ring,
        "{}",
        over_sse.len()
    );
    assert_eq!(over_sse, (0..over_sse.len()).collect::<Vec<_>>());
    let mut resumed = SseClient::connect(
        &format!("{}/events?changes=1", hub.url),
        Some(&last_id.expect("an id")),
    )
    .await;
    assert_eq!(
        resumed.next(WAIT).await.unwrap().event.as_deref(),
        Some("reset")
    );
    assert!(
        hub.metrics()
            .await
            .contains("goop_hub_dropped_slow_subscribers_total 2"),
        "both streams counted as dropped"
    );
}

/// Puts `peers` signed peers online through `hub`, each labelled with its number (four digits)
/// and 2,996 bytes more.
pub fn put_online_with_long_labels(hub: &goop2::services::hub::Hub, peers: usize) {
    use goop2::services::hub::presence::Presence;
    for n in 0..peers {
        let label = format!("{n:04}{}", "x".repeat(2996));
        let body = TestIdentity::new().json(PresenceType::Online, &label);
        let checked = Presence::parse_and_check(body.as_bytes()).unwrap();
        hub.apply(checked).unwrap();
    }
}

/// A connection whose receive buffer is small and stays so: the writer's progress stops when
/// its reader stops reading.
async fn slow_reader(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(addr).await.unwrap()
}

/// `GET /events` (resuming from `last_event_id`, if given) on a [`slow_reader`] that then reads
/// nothing.
pub async fn stalled_event_stream(
    addr: std::net::SocketAddr,
    last_event_id: Option<&str>,
) -> tokio::net::TcpStream {
    let mut stream = slow_reader(addr).await;
    let resume = last_event_id.map_or(String::new(), |id| format!("Last-Event-ID: {id}\r\n"));
    let request = format!("GET /events HTTP/1.1\r\nHost: {addr}\r\n{resume}\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// `label N …` → N.
fn label_number(content: &Value) -> usize {
    let text = content.as_str().unwrap();
    let number = text.split(' ').nth(1).unwrap();
    assert!(text.starts_with("label "), "{text:.20}");
    number.parse().unwrap()
}

/// An HTTP/1.1 response read until its body ends: its last chunk, or (`connection: close`)
/// the end of the connection; returns the body.
async fn read_body_to_end(stream: &mut tokio::net::TcpStream, wait: Duration) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let deadline = tokio::time::Instant::now() + wait;
    let mut raw = Vec::new();
    let mut buffer = vec![0; 64 * 1024];
    loop {
        if let Some(body) = dechunk(&raw) {
            return body;
        }
        let read = tokio::time::timeout_at(deadline, stream.read(&mut buffer))
            .await
            .expect("the response ends in time")
            .unwrap();
        if read == 0 {
            let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            let head = String::from_utf8_lossy(&raw[..head_end]).to_lowercase();
            assert!(
                !head.contains("chunked"),
                "the connection closed before the last chunk"
            );
            return raw.split_off(head_end);
        }
        raw.extend_from_slice(&buffer[..read]);
    }
}

/// The body of a complete chunked response, `None` while its last chunk has not arrived (or
/// the response is not chunked).
fn dechunk(raw: &[u8]) -> Option<Vec<u8>> {
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    if !String::from_utf8_lossy(&raw[..head_end])
        .to_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return None;
    }
    let mut at = head_end;
    let mut body = Vec::new();
    loop {
        let line_end = at + raw[at..].windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&raw[at..line_end]).unwrap();
        let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            return Some(body);
        }
        let start = line_end + 2;
        if raw.len() < start + size + 2 {
            return None;
        }
        body.extend_from_slice(&raw[start..start + size]);
        at = start + size + 2;
    }
}
