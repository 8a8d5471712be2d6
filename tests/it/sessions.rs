//! The protocol seam of the node, over real TCP on loopback: a service adds a request/response
//! protocol beside the standard ones, and long-lived sessions of lines carry JSON both ways
//! with backpressure, bounded lines, an idle deadline and a per-peer budget.

use std::time::Duration;

use futures_util::{AsyncReadExt, AsyncWriteExt};
use goop2::identity::Keypair;
use goop2::services::node::protocols::{Protocols, Session, SessionError, SessionLimits};
use goop2::services::node::{Node, NodeOptions};
use libp2p::{PeerId, StreamProtocol};
use serde_json::json;
use tokio::sync::mpsc::Receiver;

use crate::support::{loopback_tcp, nothing_served};

const ECHO: StreamProtocol = StreamProtocol::new("/goop-test/echo/1.0.0");
const TALK: StreamProtocol = StreamProtocol::new("/goop-test/talk/1.0.0");
const WAIT: Duration = Duration::from_secs(10);

fn options() -> NodeOptions {
    crate::support::loopback_node_options()
}

async fn start(protocols: Protocols) -> Node {
    Node::start(Keypair::generate_ed25519(), options(), protocols)
        .await
        .unwrap()
        .0
}

/// A node that takes sessions of [`TALK`] within `limits`, and one that dialled it.
async fn talking_pair(limits: SessionLimits) -> (Node, Receiver<Session>, Node) {
    let mut protocols = Protocols::standard(nothing_served("bob"));
    let sessions = protocols.sessions(TALK, limits);
    let bob = start(protocols).await;
    let alice = start(Protocols::new()).await;
    alice.dial(loopback_tcp(&bob).await).await.unwrap();
    (bob, sessions, alice)
}

async fn taken(sessions: &mut Receiver<Session>) -> Session {
    tokio::time::timeout(WAIT, sessions.recv())
        .await
        .expect("a session within 10 s")
        .expect("the node is running")
}

#[tokio::test]
async fn a_service_adds_a_request_protocol_beside_the_standard_ones() {
    let mut protocols = Protocols::standard(nothing_served("bob"));
    protocols.serve(
        ECHO,
        |peer: PeerId, mut stream: libp2p::Stream| async move {
            let mut line = String::new();
            let mut byte = [0u8; 1];
            while stream.read(&mut byte).await? == 1 && byte[0] != b'\n' {
                line.push(byte[0] as char);
            }
            let answer = format!("{} from {peer}\n", line.to_uppercase());
            stream.write_all(answer.as_bytes()).await?;
            stream.close().await
        },
    );
    let bob = start(protocols).await;
    let alice = start(Protocols::new()).await;
    alice.dial(loopback_tcp(&bob).await).await.unwrap();

    let mut stream = alice.open_stream(bob.peer_id(), ECHO).await.unwrap();
    stream.write_all(b"hello\n").await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert_eq!(answer, format!("HELLO from {}\n", alice.peer_id()));
    // The standard protocols are served beside it.
    assert_eq!(alice.fetch_content(bob.peer_id()).await.unwrap(), "bob");
    // A node without them refuses them.
    assert!(bob.fetch_content(alice.peer_id()).await.is_err());
}

#[tokio::test]
async fn a_protocol_registered_twice_stops_the_node_from_starting() {
    let mut protocols = Protocols::new();
    protocols.sessions(TALK, SessionLimits::default());
    protocols.sessions(TALK, SessionLimits::default());
    let error = Node::start(Keypair::generate_ed25519(), options(), protocols)
        .await
        .err()
        .expect("a second registration of one protocol is refused");
    assert!(error.to_string().contains("registered twice"), "{error}");
}

#[tokio::test]
async fn a_session_carries_json_both_ways_until_a_side_closes() {
    let (bob, mut sessions, alice) = talking_pair(SessionLimits::default()).await;
    let mut opened = alice
        .open_session(bob.peer_id(), TALK, SessionLimits::default())
        .await
        .unwrap();
    opened
        .sender
        .send_json(&json!({"say": "hi"}))
        .await
        .unwrap();
    let mut accepted = taken(&mut sessions).await;
    assert_eq!(accepted.peer, alice.peer_id());
    assert_eq!(opened.peer, bob.peer_id());
    let heard: serde_json::Value = accepted.receiver.recv_json().await.unwrap().unwrap();
    assert_eq!(heard, json!({"say": "hi"}));

    for n in 0..50 {
        accepted.sender.send_json(&json!({ "n": n })).await.unwrap();
    }
    for n in 0..50 {
        let line: serde_json::Value = tokio::time::timeout(WAIT, opened.receiver.recv_json())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(line, json!({ "n": n }));
    }
    // A line is one line.
    assert_eq!(
        opened.sender.send("two\nlines").await,
        Err(SessionError::Newline)
    );

    // Alice closes her side: Bob reads the end, and can still answer.
    drop(opened.sender);
    let end = tokio::time::timeout(WAIT, accepted.receiver.recv()).await;
    assert_eq!(end.unwrap(), Ok(None));
    accepted.sender.send("bye").await.unwrap();
    let last = tokio::time::timeout(WAIT, opened.receiver.recv()).await;
    assert_eq!(last.unwrap(), Ok(Some(b"bye".to_vec())));
}

#[tokio::test]
async fn a_receiver_that_does_not_read_makes_the_sender_wait_and_loses_nothing() {
    let limits = SessionLimits {
        queue: 4,
        ..SessionLimits::default()
    };
    let (bob, mut sessions, alice) = talking_pair(limits).await;
    let opened = alice
        .open_session(bob.peer_id(), TALK, limits)
        .await
        .unwrap();
    const LINES: usize = 400;
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = sent.clone();
    let sender = opened.sender.clone();
    let writing = tokio::spawn(async move {
        let padding = "x".repeat(16 * 1024);
        for n in 0..LINES {
            sender
                .send_json(&json!({ "n": n, "padding": padding }))
                .await
                .unwrap();
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let mut accepted = taken(&mut sessions).await;
    // Bob reads nothing for a while: Alice's sender waits once the queues and the stream's
    // window are full, far short of the 6.4 MB she wants to send.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = sent.load(std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let waiting = sent.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(before, waiting, "the sender keeps sending to nobody");
    assert!(waiting < 100, "{waiting} lines of 16 KiB buffered");

    for n in 0..LINES {
        let line: serde_json::Value = tokio::time::timeout(WAIT, accepted.receiver.recv_json())
            .await
            .expect("the next line within 10 s")
            .unwrap()
            .unwrap();
        assert_eq!(line["n"], n, "lines arrive whole and in order");
    }
    tokio::time::timeout(WAIT, writing).await.unwrap().unwrap();
    assert_eq!(sent.load(std::sync::atomic::Ordering::SeqCst), LINES);
}

/// Bob takes lines of up to 1 KiB; Alice, who dialled him, opens a session to him allowing
/// herself longer ones.
async fn a_strict_bob() -> (Node, Receiver<Session>, Node, Session, SessionLimits) {
    let limits = SessionLimits {
        max_line_bytes: 1024,
        ..SessionLimits::default()
    };
    let (bob, sessions, alice) = talking_pair(limits).await;
    let opened = alice
        .open_session(bob.peer_id(), TALK, SessionLimits::default())
        .await
        .unwrap();
    (bob, sessions, alice, opened, limits)
}

#[tokio::test]
async fn a_line_over_the_limit_ends_the_session_and_names_the_limit() {
    let (bob, mut sessions, alice, mut opened, limits) = a_strict_bob().await;
    opened.sender.send("fine").await.unwrap();
    opened.sender.send("y".repeat(2000)).await.unwrap();
    let mut accepted = taken(&mut sessions).await;
    assert_eq!(accepted.receiver.recv().await, Ok(Some(b"fine".to_vec())));
    let ended = tokio::time::timeout(WAIT, accepted.receiver.recv()).await;
    assert_eq!(ended.unwrap(), Err(SessionError::LineTooLong(1024)));
    assert_eq!(
        SessionError::LineTooLong(1024).to_string(),
        "a line is longer than 1024 bytes"
    );
    // Bob's side is gone: Alice's session ends too.
    let gone = tokio::time::timeout(WAIT, opened.receiver.recv())
        .await
        .expect("Alice sees the end within 10 s");
    assert!(!matches!(gone, Ok(Some(_))), "{gone:?}");
    // Her own long lines are refused before they leave.
    let next = alice
        .open_session(bob.peer_id(), TALK, limits)
        .await
        .unwrap();
    assert_eq!(
        next.sender.send("z".repeat(1025)).await,
        Err(SessionError::LineTooLong(1024))
    );
    // And the next session works.
    next.sender.send("again").await.unwrap();
    let mut again = taken(&mut sessions).await;
    assert_eq!(again.receiver.recv().await, Ok(Some(b"again".to_vec())));
    drop(next.receiver);
}

#[tokio::test]
async fn a_session_that_refused_a_line_can_still_say_why_before_it_ends() {
    let (_bob, mut sessions, _alice, mut opened, _) = a_strict_bob().await;
    opened.sender.send("y".repeat(2000)).await.unwrap();
    let mut accepted = taken(&mut sessions).await;
    let ended = tokio::time::timeout(WAIT, accepted.receiver.recv()).await;
    assert_eq!(ended.unwrap(), Err(SessionError::LineTooLong(1024)));
    // Bob answers with the reason; Alice reads it, then the end of the session.
    accepted
        .sender
        .send(r#"{"type":"error","reason":"line longer than 1024 bytes"}"#)
        .await
        .unwrap();
    let reason = tokio::time::timeout(WAIT, opened.receiver.recv())
        .await
        .unwrap();
    assert_eq!(
        reason,
        Ok(Some(
            br#"{"type":"error","reason":"line longer than 1024 bytes"}"#.to_vec()
        ))
    );
    let end = tokio::time::timeout(WAIT, opened.receiver.recv())
        .await
        .unwrap();
    assert!(!matches!(end, Ok(Some(_))), "{end:?}");
    // Whatever Bob sends after the farewell is refused.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(accepted.sender.send("late").await.is_err());
}

#[tokio::test]
async fn a_quiet_session_ends_at_its_idle_deadline() {
    let limits = SessionLimits {
        idle_timeout: Duration::from_secs(1),
        ..SessionLimits::default()
    };
    let (bob, mut sessions, alice) = talking_pair(limits).await;
    let opened = alice
        .open_session(bob.peer_id(), TALK, SessionLimits::default())
        .await
        .unwrap();
    opened.sender.send("hello").await.unwrap();
    let mut accepted = taken(&mut sessions).await;
    assert_eq!(accepted.receiver.recv().await, Ok(Some(b"hello".to_vec())));
    let ended = tokio::time::timeout(WAIT, accepted.receiver.recv()).await;
    assert_eq!(ended.unwrap(), Err(SessionError::Idle(1)));
}

#[tokio::test]
async fn sessions_of_one_peer_are_bounded() {
    let limits = SessionLimits {
        per_peer: 2,
        ..SessionLimits::default()
    };
    let (bob, mut sessions, alice) = talking_pair(limits).await;
    let mut open = Vec::new();
    for n in 0..3 {
        let session = alice
            .open_session(bob.peer_id(), TALK, limits)
            .await
            .unwrap();
        session.sender.send(format!("session {n}")).await.unwrap();
        open.push(session);
    }
    let mut first = taken(&mut sessions).await;
    let mut second = taken(&mut sessions).await;
    let mut heard = vec![
        first.receiver.recv().await.unwrap().unwrap(),
        second.receiver.recv().await.unwrap().unwrap(),
    ];
    heard.sort();
    assert_eq!(heard, [b"session 0".to_vec(), b"session 1".to_vec()]);
    // The third was refused: Alice sees it end, and Bob never gets it.
    let third = tokio::time::timeout(WAIT, open[2].receiver.recv())
        .await
        .expect("the refused session ends within 10 s");
    assert!(!matches!(third, Ok(Some(_))), "{third:?}");
    assert!(
        tokio::time::timeout(Duration::from_millis(500), sessions.recv())
            .await
            .is_err()
    );

    // Once one ends, there is room for another.
    drop(first);
    drop(open.remove(0));
    let mut fourth = None;
    for _ in 0..50 {
        let session = alice
            .open_session(bob.peer_id(), TALK, limits)
            .await
            .unwrap();
        session.sender.send("session 3").await.unwrap();
        if let Ok(Some(mut accepted)) =
            tokio::time::timeout(Duration::from_millis(200), sessions.recv()).await
        {
            fourth = Some(accepted.receiver.recv().await.unwrap().unwrap());
            break;
        }
    }
    assert_eq!(fourth, Some(b"session 3".to_vec()));
}
