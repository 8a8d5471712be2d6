//! Emails reach signed-in administrators only, on every stream: `/events` (served straight off
//! the socket and through the router), `/ws`, snapshots and `Last-Event-ID` replays.

use std::time::Duration;

use futures_util::StreamExt;
use goop2::services::hub::presence::PresenceType;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::hub_admin::{PASSWORD, hub_with_admin, sign_in};
use crate::support::{SseClient, TestHub, TestIdentity};

const WAIT: Duration = Duration::from_secs(5);
const EMAIL: &str = "alice@example.org";

/// Publishes a signed message from `peer` with `label`, carrying `email` when given.
async fn publish(
    hub: &TestHub,
    peer: &mut TestIdentity,
    kind: PresenceType,
    label: &str,
    email: bool,
) {
    let mut message = peer.unsigned(kind, label);
    if email {
        message.email = Some(EMAIL.into());
    }
    message.sign(&peer.keypair);
    let (status, body) = hub.publish(serde_json::to_string(&message).unwrap()).await;
    assert_eq!(status, 204, "{body}");
}

/// Asserts what the public sees of a message that carried an email: neither the email nor the
/// peer's signature (which covers the email), but the hub's word that it checked one.
fn assert_public(message: &Value) {
    assert!(message.get("email").is_none(), "an email leaked: {message}");
    assert!(
        message.get("sig").is_none(),
        "a sig that no longer covers the message: {message}"
    );
    assert_eq!(message["signed"], true, "{message}");
}

fn assert_full(message: &Value) {
    assert_eq!(message["email"], EMAIL, "{message}");
    assert!(message["sig"].is_string(), "{message}");
}

/// The message about the peer labelled `label` among the next events of `stream`.
async fn message_about(stream: &mut SseClient, label: &str) -> Value {
    stream
        .wait_for(WAIT, |e| !e.data.is_empty() && e.json()["content"] == label)
        .await
        .json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_show_emails_to_a_signed_in_admin_only() {
    let hub = hub_with_admin().await;
    let (cookie, _) = sign_in(&hub).await;
    let mut alice = TestIdentity::new();
    let mut bob = TestIdentity::new();
    publish(&hub, &mut alice, PresenceType::Online, "Alice", true).await;
    publish(&hub, &mut bob, PresenceType::Online, "Bob", false).await;

    let url = format!("{}/events", hub.url);
    let mut anonymous = SseClient::connect(&url, None).await;
    let mut forged = SseClient::connect_with(&url, &[("Cookie", "goop_admin=forged")]).await;
    let mut admin = SseClient::connect_with(&url, &[("Cookie", &cookie)]).await;

    // The snapshot.
    assert_public(&message_about(&mut anonymous, "Alice").await);
    assert_public(&message_about(&mut forged, "Alice").await);
    assert_full(&message_about(&mut admin, "Alice").await);
    // A message without an email keeps its signature for everybody.
    let mut again = SseClient::connect(&url, None).await;
    let bob_seen = message_about(&mut again, "Bob").await;
    assert!(bob_seen["sig"].is_string(), "{bob_seen}");
    assert!(bob_seen.get("email").is_none());

    // Live events.
    publish(&hub, &mut alice, PresenceType::Update, "Alice live", true).await;
    assert_public(&message_about(&mut anonymous, "Alice live").await);
    assert_public(&message_about(&mut forged, "Alice live").await);
    let live = admin
        .wait_for(WAIT, |e| e.json()["content"] == "Alice live")
        .await;
    assert_full(&live.json());

    // A replay after a reconnect.
    let resume = live.id.expect("events have ids");
    publish(&hub, &mut alice, PresenceType::Update, "Alice missed", true).await;
    let mut anonymous = SseClient::connect(&url, Some(&resume)).await;
    let replayed = anonymous.next(WAIT).await.unwrap();
    assert_eq!(replayed.event, None, "a replay, not a reset");
    assert_eq!(replayed.json()["content"], "Alice missed");
    assert_public(&replayed.json());
    let mut admin = SseClient::connect_with(
        &url,
        &[
            ("Cookie", cookie.as_str()),
            ("Last-Event-ID", resume.as_str()),
        ],
    )
    .await;
    let replayed = admin.next(WAIT).await.unwrap();
    assert_eq!(replayed.json()["content"], "Alice missed");
    assert_full(&replayed.json());
}

/// `/events` as the second request of a kept-alive connection, which the router answers; returns
/// the first message about `label`.
async fn routed_event_about(hub: &TestHub, cookie: Option<&str>, label: &str) -> Value {
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
    let mut request = client.get(format!("{}/events", hub.url));
    if let Some(cookie) = cookie {
        request = request.header("Cookie", cookie);
    }
    let mut body = request.send().await.unwrap().bytes_stream();
    let mut text = String::new();
    let needle = format!("\"content\":\"{label}\"");
    loop {
        if let Some(line) = text
            .lines()
            .filter_map(|line| line.strip_prefix("data: "))
            .find(|data| data.contains(&needle))
        {
            return serde_json::from_str(line).unwrap();
        }
        let chunk = tokio::time::timeout(WAIT, body.next())
            .await
            .expect("an event in time")
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_routed_event_stream_also_keeps_emails_for_the_admin() {
    let hub = hub_with_admin().await;
    let (cookie, _) = sign_in(&hub).await;
    let mut alice = TestIdentity::new();
    publish(&hub, &mut alice, PresenceType::Online, "Alice", true).await;

    assert_public(&routed_event_about(&hub, None, "Alice").await);
    assert_public(&routed_event_about(&hub, Some("goop_admin=forged"), "Alice").await);
    assert_full(&routed_event_about(&hub, Some(&cookie), "Alice").await);
}

/// Opens `/ws` for a fresh peer ID, with `cookie` when given, and returns the first text frame
/// about `label`.
async fn websocket_message_about(hub: &TestHub, cookie: Option<&str>, label: &str) -> Value {
    let watcher = TestIdentity::new();
    let mut request = format!("ws://{}/ws?peer_id={}", hub.addr, watcher.id)
        .into_client_request()
        .unwrap();
    if let Some(cookie) = cookie {
        request
            .headers_mut()
            .insert("Cookie", cookie.parse().unwrap());
    }
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    loop {
        let frame = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("a frame in time")
            .unwrap()
            .unwrap();
        if let Message::Text(text) = frame {
            let message: Value = serde_json::from_str(&text).unwrap();
            if message["content"] == label {
                return message;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_show_emails_to_a_signed_in_admin_only() {
    let hub = hub_with_admin().await;
    let (cookie, _) = sign_in(&hub).await;
    let mut alice = TestIdentity::new();
    publish(&hub, &mut alice, PresenceType::Online, "Alice", true).await;

    assert_public(&websocket_message_about(&hub, None, "Alice").await);
    assert_public(&websocket_message_about(&hub, Some("goop_admin=forged"), "Alice").await);
    assert_full(&websocket_message_about(&hub, Some(&cookie), "Alice").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instance_keeps_the_email_for_its_admin_and_from_its_public() {
    let shared = tempfile::tempdir().unwrap();
    let db = shared.path().join("peers.db").display().to_string();
    let hash = goop2::services::auth::hash_password(PASSWORD).unwrap();
    let setup = |c: &mut goop2::config::Config| {
        c.presence.peer_db_path = db.clone();
        c.presence.admin_password = goop2::config::Secret::new(hash.clone());
    };
    let first = TestHub::spawn_with(setup, |_| {}).await;
    let second = TestHub::spawn_with(setup, |_| {}).await;
    let url = format!("{}/events", second.url);
    let mut anonymous = SseClient::connect(&url, None).await;

    let mut alice = TestIdentity::new();
    publish(&first, &mut alice, PresenceType::Online, "Alice", true).await;
    assert_public(&message_about(&mut anonymous, "Alice").await);
    let (cookie, _) = sign_in(&second).await;
    let mut admin = SseClient::connect_with(&url, &[("Cookie", &cookie)]).await;
    assert_full(&message_about(&mut admin, "Alice").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_an_admin_opened_carry_no_emails_once_the_admin_signs_out() {
    let hub = hub_with_admin().await;
    let (cookie, csrf) = sign_in(&hub).await;
    let mut alice = TestIdentity::new();
    let mut sse = SseClient::connect_with(
        &format!("{}/events?changes=1", hub.url),
        &[("Cookie", cookie.as_str())],
    )
    .await;
    let watcher = TestIdentity::new();
    let mut request = format!("ws://{}/ws?peer_id={}", hub.addr, watcher.id)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Cookie", cookie.parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let mut next_on_socket = async |label: &str| loop {
        let frame = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("a frame in time")
            .unwrap()
            .unwrap();
        if let Message::Text(text) = frame {
            let message: Value = serde_json::from_str(&text).unwrap();
            if message["content"] == label {
                return message;
            }
        }
    };

    publish(&hub, &mut alice, PresenceType::Online, "Signed in", true).await;
    assert_full(&message_about(&mut sse, "Signed in").await);
    assert_full(&next_on_socket("Signed in").await);

    let out =
        crate::hub_admin::admin_post(&hub, &cookie, "/admin/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status().as_u16(), 303);
    publish(&hub, &mut alice, PresenceType::Update, "Signed out", true).await;
    assert_public(&message_about(&mut sse, "Signed out").await);
    assert_public(&next_on_socket("Signed out").await);
}
