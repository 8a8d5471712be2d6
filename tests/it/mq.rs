//! The message transport `/goop/mq/1.0.0` between real nodes over TCP on loopback: ordered,
//! acknowledged delivery with the connection's peer as the sender, refusals with a reason,
//! retries without duplicates, and the bounds a hostile peer meets (malformed and oversized
//! lines, flooding, a subscriber that never answers).

use std::time::Duration;

use goop2::identity::{Keypair, PeerId};
use goop2::services::mq::{Mq, MqError, MqOptions};
use goop2::services::node::protocols::mq::{self as wire, Line};
use goop2::services::node::protocols::{Protocols, Session};
use goop2::services::node::{Node, NodeOptions};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::support::{loopback_tcp, nothing_served};

const WAIT: Duration = Duration::from_secs(10);

fn options() -> NodeOptions {
    crate::support::loopback_node_options()
}

/// A node with the transport, as a peer wires it, and the stop that ends it.
struct Messenger {
    node: Node,
    mq: Mq,
    stop: watch::Sender<bool>,
}

async fn messenger(options_of_mq: MqOptions) -> Messenger {
    let mut protocols = Protocols::standard(nothing_served("m"));
    let sessions = protocols.sessions(wire::PROTOCOL, wire::limits());
    let node = Node::start(Keypair::generate_ed25519(), options(), protocols)
        .await
        .unwrap()
        .0;
    let (stop, stopped) = watch::channel(false);
    let mq = Mq::new(node.clone(), options_of_mq, stopped);
    mq.serve(sessions);
    Messenger { node, mq, stop }
}

/// A bare node that takes mq streams itself, to play a peer that misbehaves.
async fn raw_receiver() -> (Node, mpsc::Receiver<Session>) {
    let mut protocols = Protocols::new();
    let sessions = protocols.sessions(wire::PROTOCOL, wire::limits());
    let node = Node::start(Keypair::generate_ed25519(), options(), protocols)
        .await
        .unwrap()
        .0;
    (node, sessions)
}

/// Takes every message of `pattern` as it arrives: what it carried, and who sent it.
fn taking(mq: &Mq, pattern: &str) -> mpsc::UnboundedReceiver<(PeerId, Value)> {
    let mut incoming = mq.subscribe(pattern);
    let (taken, received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(message) = incoming.recv().await {
            let _ = taken.send((message.from, message.payload));
            message.reply.accept();
        }
    });
    received
}

async fn connect(from: &Node, to: &Node) {
    from.dial(loopback_tcp(to).await).await.unwrap();
}

async fn next_line(session: &mut Session) -> Option<Line> {
    let line = tokio::time::timeout(WAIT, session.receiver.recv())
        .await
        .expect("a line within 10 s");
    match line {
        Ok(Some(line)) => Some(serde_json::from_slice(&line).unwrap()),
        _ => None,
    }
}

fn msg(id: &str, topic: &str, payload: Value) -> Line {
    Line::Msg {
        id: id.into(),
        seq: 1,
        topic: topic.into(),
        payload,
    }
}

#[tokio::test]
async fn messages_arrive_in_order_acknowledged_from_the_connections_peer() {
    let alice = messenger(MqOptions::default()).await;
    let bob = messenger(MqOptions {
        inbound_burst: 500,
        ..MqOptions::default()
    })
    .await;
    let mut inbox = bob.mq.subscribe("test.order");
    connect(&alice.node, &bob.node).await;

    let sent: Vec<_> = (0..200)
        .map(|n| {
            alice
                .mq
                .enqueue(bob.node.peer_id(), "test.order", json!({ "n": n }))
                .unwrap()
        })
        .collect();
    for n in 0..200 {
        let incoming = tokio::time::timeout(WAIT, inbox.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(incoming.from, alice.node.peer_id());
        assert_eq!(incoming.topic, "test.order");
        assert_eq!(incoming.payload, json!({ "n": n }), "in the order sent");
        incoming.reply.accept();
    }
    for done in sent {
        assert_eq!(done.await.unwrap(), Ok(()));
    }
    // One stream carried them all, and each was delivered once.
    assert_eq!(bob.mq.stats().delivered, 200);
    assert_eq!(alice.mq.links(), 1);
    let _ = (alice.stop, bob.stop);
}

#[tokio::test]
async fn a_message_nobody_takes_is_refused_with_the_reason() {
    let alice = messenger(MqOptions::default()).await;
    let bob = messenger(MqOptions::default()).await;
    let mut strict = bob.mq.subscribe("strict");
    connect(&alice.node, &bob.node).await;

    let unknown = alice.mq.send(bob.node.peer_id(), "nobody.here", json!(1));
    assert_eq!(unknown.await, Err(MqError::Refused("unknown topic".into())));

    let refused = tokio::spawn({
        let mq = alice.mq.clone();
        let bob = bob.node.peer_id();
        async move { mq.send(bob, "strict", json!("no")).await }
    });
    let incoming = tokio::time::timeout(WAIT, strict.recv())
        .await
        .unwrap()
        .unwrap();
    incoming.reply.refuse("not today");
    assert_eq!(
        refused.await.unwrap(),
        Err(MqError::Refused("not today".into()))
    );
    assert_eq!(bob.mq.stats().unknown_topic, 1);
    assert_eq!(bob.mq.stats().refused, 1);

    // Bounds the sender checks before anything leaves.
    let big = json!("x".repeat(wire::MAX_PAYLOAD_BYTES));
    assert_eq!(
        alice.mq.send(bob.node.peer_id(), "strict", big).await,
        Err(MqError::TooLarge)
    );
    assert!(matches!(
        alice.mq.send(bob.node.peer_id(), "", json!(1)).await,
        Err(MqError::InvalidTopic(_))
    ));
    assert_eq!(
        alice
            .mq
            .send(alice.node.peer_id(), "strict", json!(1))
            .await,
        Err(MqError::ToSelf)
    );
    let _ = (alice.stop, bob.stop);
}

#[tokio::test]
async fn a_message_to_a_peer_that_is_gone_is_reported_as_not_delivered() {
    let alice = messenger(MqOptions {
        deadline: Duration::from_secs(5),
        ..MqOptions::default()
    })
    .await;
    let bob = messenger(MqOptions::default()).await;
    let _inbox = taking(&bob.mq, "chat");
    connect(&alice.node, &bob.node).await;
    alice
        .mq
        .send(bob.node.peer_id(), "chat", json!("first"))
        .await
        .unwrap();

    let bob_id = bob.node.peer_id();
    bob.stop.send_replace(true);
    bob.node.shutdown(Duration::from_secs(1)).await;
    let started = std::time::Instant::now();
    let outcome = alice.mq.send(bob_id, "chat", json!("second")).await;
    assert!(
        matches!(
            outcome,
            Err(MqError::Unreachable(_)) | Err(MqError::NotAcknowledged(_))
        ),
        "{outcome:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the sender hears within its deadline"
    );
    let _ = alice.stop;
}

#[tokio::test]
async fn a_message_whose_ack_was_lost_is_sent_again_and_the_retry_is_not_delivered_twice() {
    let alice = messenger(MqOptions {
        ack_timeout: Duration::from_millis(500),
        ..MqOptions::default()
    })
    .await;
    let (bob, mut streams) = raw_receiver().await;
    connect(&alice.node, &bob).await;

    let sending = tokio::spawn({
        let mq = alice.mq.clone();
        let bob = bob.peer_id();
        async move { mq.send(bob, "chat", json!("hello")).await }
    });
    // The first stream swallows the message and never answers.
    let mut first = tokio::time::timeout(WAIT, streams.recv())
        .await
        .unwrap()
        .unwrap();
    let Some(Line::Msg { id, topic, .. }) = next_line(&mut first).await else {
        panic!("a message");
    };
    assert_eq!(topic, "chat");
    // After the ack timeout the link gives up on that stream and sends it again on another.
    let mut second = tokio::time::timeout(WAIT, streams.recv())
        .await
        .unwrap()
        .unwrap();
    let Some(Line::Msg { id: again, seq, .. }) = next_line(&mut second).await else {
        panic!("the message again");
    };
    assert_eq!(again, id, "the same message, so the receiver can tell");
    second
        .sender
        .send_json(&Line::Ack {
            id: again,
            seq,
            error: None,
        })
        .await
        .unwrap();
    assert_eq!(sending.await.unwrap(), Ok(()));
    drop(first);

    // A real receiver acknowledges a retry it already took without delivering it again.
    let carol = messenger(MqOptions::default()).await;
    let mut inbox = taking(&carol.mq, "chat");
    let (dave, _) = raw_receiver().await;
    connect(&dave, &carol.node).await;
    let mut stream = dave
        .open_session(carol.node.peer_id(), wire::PROTOCOL, wire::limits())
        .await
        .unwrap();
    for _ in 0..2 {
        stream
            .sender
            .send_json(&msg("m-1", "chat", json!("once")))
            .await
            .unwrap();
        let ack = next_line(&mut stream).await;
        assert!(
            matches!(ack, Some(Line::Ack { ref id, error: None, .. }) if id == "m-1"),
            "{ack:?}"
        );
    }
    let (_, first) = inbox.recv().await.unwrap();
    assert_eq!(first, json!("once"));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), inbox.recv())
            .await
            .is_err(),
        "delivered once"
    );
    assert_eq!(carol.mq.stats().duplicates, 1);
    let _ = (alice.stop, carol.stop);
}

#[tokio::test]
async fn a_message_never_acknowledged_is_given_up_after_its_tries() {
    let alice = messenger(MqOptions {
        ack_timeout: Duration::from_millis(300),
        tries: 3,
        ..MqOptions::default()
    })
    .await;
    let (bob, mut streams) = raw_receiver().await;
    connect(&alice.node, &bob).await;
    let sending = tokio::spawn({
        let mq = alice.mq.clone();
        let bob = bob.peer_id();
        async move { mq.send(bob, "chat", json!("into the void")).await }
    });
    let mut held = Vec::new();
    let outcome = loop {
        tokio::select! {
            stream = streams.recv() => held.push(stream.unwrap()),
            outcome = async { tokio::time::sleep(Duration::from_millis(50)).await; sending.is_finished() } => {
                if outcome { break sending.await.unwrap(); }
            }
        }
    };
    assert!(
        matches!(outcome, Err(MqError::NotAcknowledged(ref why)) if why.contains("3 tries")),
        "{outcome:?}"
    );
    assert_eq!(held.len(), 3, "one stream per try");
    let _ = alice.stop;
}

#[tokio::test]
async fn the_sender_is_the_connection_whatever_the_message_says() {
    let bob = messenger(MqOptions::default()).await;
    let mut inbox = taking(&bob.mq, "chat");
    let (mallory, _) = raw_receiver().await;
    connect(&mallory, &bob.node).await;
    let mut stream = mallory
        .open_session(bob.node.peer_id(), wire::PROTOCOL, wire::limits())
        .await
        .unwrap();
    let forged = format!(
        r#"{{"type":"msg","id":"f1","seq":1,"topic":"chat","from":"{}","payload":"it was me"}}"#,
        bob.node.peer_id()
    );
    stream.sender.send(forged).await.unwrap();
    assert!(matches!(
        next_line(&mut stream).await,
        Some(Line::Ack { error: None, .. })
    ));
    let (from, _) = inbox.recv().await.unwrap();
    assert_eq!(from, mallory.peer_id());
    let _ = bob.stop;
}

#[tokio::test]
async fn a_malformed_or_oversized_line_ends_that_stream_with_a_reason_and_nothing_else() {
    let bob = messenger(MqOptions::default()).await;
    let mut inbox = taking(&bob.mq, "chat");
    let (mallory, _) = raw_receiver().await;
    connect(&mallory, &bob.node).await;

    let mut stream = mallory
        .open_session(bob.node.peer_id(), wire::PROTOCOL, wire::limits())
        .await
        .unwrap();
    stream.sender.send("{not json").await.unwrap();
    let answer = next_line(&mut stream).await;
    assert!(
        matches!(answer, Some(Line::Error { ref reason }) if reason.contains("not a message")),
        "{answer:?}"
    );
    assert_eq!(next_line(&mut stream).await, None, "and the stream ends");

    // A line past the bound (the sender's own check is bypassed with a larger limit).
    let mut stream = mallory
        .open_session(
            bob.node.peer_id(),
            wire::PROTOCOL,
            goop2::services::node::protocols::SessionLimits {
                max_line_bytes: 1 << 20,
                ..wire::limits()
            },
        )
        .await
        .unwrap();
    let huge = serde_json::to_vec(&msg("big", "chat", json!("x".repeat(200 * 1024)))).unwrap();
    stream.sender.send(huge).await.unwrap();
    let answer = next_line(&mut stream).await;
    assert!(
        matches!(answer, Some(Line::Error { ref reason }) if reason.contains("longer than")),
        "{answer:?}"
    );
    assert_eq!(next_line(&mut stream).await, None);

    // Nothing reached the subscriber, and a well-formed stream is still served.
    let alice = messenger(MqOptions::default()).await;
    connect(&alice.node, &bob.node).await;
    alice
        .mq
        .send(bob.node.peer_id(), "chat", json!("fine"))
        .await
        .unwrap();
    assert_eq!(inbox.recv().await.unwrap().1, json!("fine"));
    assert_eq!(bob.mq.stats().malformed_streams, 2);
    let _ = (alice.stop, bob.stop);
}

#[tokio::test]
async fn a_flooding_peer_is_rate_limited_without_slowing_others() {
    let bob = messenger(MqOptions {
        inbound_per_second: 20,
        inbound_burst: 50,
        ..MqOptions::default()
    })
    .await;
    let mut inbox = taking(&bob.mq, "chat");
    let (mallory, _) = raw_receiver().await;
    connect(&mallory, &bob.node).await;
    let alice = messenger(MqOptions::default()).await;
    connect(&alice.node, &bob.node).await;

    let mut flood = mallory
        .open_session(bob.node.peer_id(), wire::PROTOCOL, wire::limits())
        .await
        .unwrap();
    let sender = flood.sender.clone();
    tokio::spawn(async move {
        for n in 0..300 {
            let line = msg(&format!("f{n}"), "chat", json!(n));
            if sender.send_json(&line).await.is_err() {
                return;
            }
        }
    });
    let mut accepted = 0;
    let mut limited = 0;
    for _ in 0..300 {
        match next_line(&mut flood).await {
            Some(Line::Ack { error: None, .. }) => accepted += 1,
            Some(Line::Ack { error: Some(e), .. }) if e == "rate limited" => limited += 1,
            other => panic!("{other:?}"),
        }
    }
    // The burst, and what the rate refilled while the flood lasted.
    assert!(
        accepted >= 50 && limited >= 200,
        "{accepted} taken, {limited} limited"
    );
    assert_eq!(accepted + limited, 300);

    // Alice, meanwhile, is not limited by Mallory's flood.
    let started = std::time::Instant::now();
    for n in 0..20 {
        alice
            .mq
            .send(bob.node.peer_id(), "chat", json!({ "alice": n }))
            .await
            .unwrap();
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    let mut from_alice = 0;
    while let Ok(Some((from, _))) =
        tokio::time::timeout(Duration::from_millis(500), inbox.recv()).await
    {
        if from == alice.node.peer_id() {
            from_alice += 1;
        }
    }
    assert_eq!(from_alice, 20);
    let _ = (alice.stop, bob.stop);
}

#[tokio::test]
async fn a_subscriber_that_does_not_keep_up_makes_its_topic_busy_not_the_others() {
    let bob = messenger(MqOptions {
        subscriber_queue: 4,
        answer_wait: Duration::from_millis(300),
        inbound_burst: 500,
        ..MqOptions::default()
    })
    .await;
    // Never read.
    let _stuck = bob.mq.subscribe("stuck");
    let mut fine = bob.mq.subscribe("fine");
    let alice = messenger(MqOptions::default()).await;
    connect(&alice.node, &bob.node).await;

    let stuck: Vec<_> = (0..6)
        .map(|n| {
            alice
                .mq
                .enqueue(bob.node.peer_id(), "stuck", json!(n))
                .unwrap()
        })
        .collect();
    let mut busy = 0;
    for done in stuck {
        if done.await.unwrap() == Err(MqError::Refused("busy".into())) {
            busy += 1;
        }
    }
    assert_eq!(
        busy, 6,
        "taken by nobody: each waits its bound and is refused"
    );
    let answering = tokio::spawn(async move {
        let incoming = fine.recv().await.unwrap();
        let payload = incoming.payload.clone();
        incoming.reply.accept();
        payload
    });
    alice
        .mq
        .send(bob.node.peer_id(), "fine", json!("still here"))
        .await
        .unwrap();
    assert_eq!(answering.await.unwrap(), json!("still here"));
    let _ = (alice.stop, bob.stop);
}

#[tokio::test]
async fn an_idle_link_closes_its_stream() {
    let alice = messenger(MqOptions {
        idle_close: Duration::from_millis(500),
        ..MqOptions::default()
    })
    .await;
    let (bob, mut streams) = raw_receiver().await;
    connect(&alice.node, &bob).await;
    let sending = tokio::spawn({
        let mq = alice.mq.clone();
        let bob = bob.peer_id();
        async move { mq.send(bob, "chat", json!("hi")).await }
    });
    let mut stream = streams.recv().await.unwrap();
    let Some(Line::Msg { id, seq, .. }) = next_line(&mut stream).await else {
        panic!()
    };
    stream
        .sender
        .send_json(&Line::Ack {
            id,
            seq,
            error: None,
        })
        .await
        .unwrap();
    assert_eq!(sending.await.unwrap(), Ok(()));
    assert_eq!(alice.mq.links(), 1);
    // Idle past the bound: the stream ends and the link is gone.
    assert_eq!(next_line(&mut stream).await, None);
    assert_eq!(alice.mq.links(), 0);
    let _ = alice.stop;
}

#[tokio::test]
async fn a_message_its_subscriber_drops_unanswered_is_refused_not_delivered() {
    let alice = messenger(MqOptions::default()).await;
    let bob = messenger(MqOptions::default()).await;
    let mut careless = bob.mq.subscribe("careless");
    connect(&alice.node, &bob.node).await;
    tokio::spawn(async move {
        // Takes the message and drops it without a word (a subscriber that stopped).
        let _ = careless.recv().await;
    });
    assert_eq!(
        alice
            .mq
            .send(bob.node.peer_id(), "careless", json!("lost?"))
            .await,
        Err(MqError::Refused("not taken".into()))
    );
    let _ = (alice.stop, bob.stop);
}
