//! The hub's log: every join and leave at INFO with the peer's short ID and label, and a ban
//! once — when it is applied and when the banned peer first tries again — not on every
//! heartbeat the banned peer keeps sending; a lost peer database once, not at every health
//! check.

use std::sync::Arc;
use std::time::Duration;

use futures_util::SinkExt;
use goop2::config::Secret;
use goop2::services::auth;
use goop2::services::hub::presence::PresenceType;
use goop2::telemetry::{LogBuffer, LogRecord};
use tokio_tungstenite::tungstenite::Message;
use tracing_subscriber::layer::SubscriberExt;

use crate::hub_admin::{PASSWORD, sign_in};
use crate::support::{
    PeerDir, TestHub, TestIdentity, TestPeer, eventually, no_redirects, short_ttl,
};

const WAIT: Duration = Duration::from_secs(5);

/// Sends this thread's log records from `goop2`, DEBUG and up, to `logs`. The test runs on a
/// current-thread runtime, so the hub's tasks log on this thread too.
fn record_logs(logs: &LogBuffer) -> tracing::subscriber::DefaultGuard {
    crate::support::keep_log_interest();
    let subscriber = tracing_subscriber::registry()
        .with(
            tracing_subscriber::filter::Targets::new().with_target("goop2", tracing::Level::DEBUG),
        )
        .with(logs.layer());
    tracing::subscriber::set_default(subscriber)
}

/// The short form the log uses: the first 8 and last 6 characters.
fn short(peer: &TestIdentity) -> String {
    format!("{}…{}", &peer.id[..8], &peer.id[peer.id.len() - 6..])
}

fn field<'a>(record: &'a LogRecord, name: &str) -> Option<&'a str> {
    record
        .fields
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// INFO records saying `message` about `peer`, with `label` (as the log quotes it).
fn said(logs: &LogBuffer, peer: &TestIdentity, message: &str) -> Vec<Arc<LogRecord>> {
    logs.snapshot()
        .into_iter()
        .filter(|r| r.level == "INFO" && r.message == message)
        .filter(|r| field(r, "peer") == Some(short(peer).as_str()))
        .collect()
}

async fn publish(hub: &TestHub, peer: &mut TestIdentity, kind: PresenceType, label: &str) -> u16 {
    hub.publish(peer.json(kind, label)).await.0
}

#[tokio::test]
async fn joins_and_leaves_are_logged_with_the_short_peer_id_and_label() {
    let logs = LogBuffer::new(10_000);
    let _recording = record_logs(&logs);
    let hub = TestHub::spawn().await;

    let mut alice = TestIdentity::new();
    assert_eq!(
        publish(&hub, &mut alice, PresenceType::Online, "Alice").await,
        204
    );
    assert_eq!(
        publish(&hub, &mut alice, PresenceType::Update, "Alice").await,
        204
    );
    let joined = said(&logs, &alice, "peer online");
    assert_eq!(joined.len(), 1, "one join, heartbeats are not joins");
    assert_eq!(field(&joined[0], "label"), Some("\"Alice\""));
    assert_eq!(joined[0].target, "goop2::services::hub");
    assert_eq!(
        publish(&hub, &mut alice, PresenceType::Offline, "Alice").await,
        204
    );
    let left = said(&logs, &alice, "peer went offline");
    assert_eq!(left.len(), 1);
    assert_eq!(field(&left[0], "label"), Some("\"Alice\""));

    // Expiry, on a hub with a short TTL.
    let forgetful = TestHub::spawn_with(|_| {}, |o| o.ttl = Duration::from_millis(300)).await;
    let mut bob = TestIdentity::new();
    assert_eq!(
        publish(&forgetful, &mut bob, PresenceType::Online, "Bob").await,
        204
    );
    assert!(
        eventually(WAIT, async || {
            !said(&logs, &bob, "peer expired: no heartbeat within the TTL").is_empty()
        })
        .await,
        "the expiry is logged"
    );

    let mut carol = TestIdentity::new();
    assert_eq!(
        publish(&hub, &mut carol, PresenceType::Online, "Carol").await,
        204
    );
    assert!(hub.hub().kick(&carol.keypair.public().to_peer_id()));
    assert_eq!(
        said(&logs, &carol, "peer kicked by the administrator").len(),
        1
    );

    let mut dave = TestIdentity::new();
    let url = format!("ws://{}/ws?peer_id={}", hub.addr, dave.id);
    let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    socket
        .send(Message::text(
            dave.json(PresenceType::Online, "Dave over WS"),
        ))
        .await
        .unwrap();
    assert!(
        eventually(WAIT, async || !said(&logs, &dave, "peer online").is_empty()).await,
        "a join over the WebSocket is logged"
    );
    socket.close(None).await.unwrap();
    drop(socket);
    assert!(
        eventually(WAIT, async || {
            said(&logs, &dave, "peer went offline: its WebSocket closed").len() == 1
        })
        .await,
        "a closed WebSocket is logged as a leave"
    );
}

#[tokio::test]
async fn a_ban_is_logged_when_applied_and_at_the_first_refusal_only() {
    let logs = LogBuffer::new(10_000);
    let _recording = record_logs(&logs);
    let hash = auth::hash_password(PASSWORD).unwrap();
    let hub = TestHub::spawn_with(|c| c.presence.admin_password = Secret::new(hash), |_| {}).await;
    let (cookie, csrf) = sign_in(&hub).await;

    let mut carol = TestIdentity::new();
    assert_eq!(
        publish(&hub, &mut carol, PresenceType::Online, "Carol").await,
        204
    );
    let banned = no_redirects()
        .post(format!("{}/admin/peers/ban", hub.url))
        .header("Cookie", &cookie)
        .form(&[
            ("peer_id", carol.id.as_str()),
            ("minutes", "60"),
            ("csrf", &csrf),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(banned.status().as_u16(), 303);
    let applied = said(&logs, &carol, "peer banned");
    assert_eq!(applied.len(), 1);
    assert_eq!(field(&applied[0], "label"), Some("\"Carol\""));
    assert_eq!(field(&applied[0], "duration"), Some("1h"));

    for _ in 0..5 {
        assert_eq!(
            publish(&hub, &mut carol, PresenceType::Update, "Carol").await,
            403
        );
    }
    let refused = said(
        &logs,
        &carol,
        "a banned peer tried to publish; refused until the ban ends",
    );
    assert_eq!(refused.len(), 1, "logged at the first refusal only");
    let about_the_ban: Vec<String> = logs
        .snapshot()
        .iter()
        .filter(|r| r.message.contains("ban") || r.line().contains(&carol.id))
        .map(|r| r.line())
        .collect();
    assert_eq!(
        about_the_ban.len(),
        2,
        "the ban, once applied and once refused, at any level: {about_the_ban:#?}"
    );
}

#[tokio::test]
async fn refused_logins_are_logged_once_a_minute_not_once_each() {
    let logs = LogBuffer::new(10_000);
    let _recording = record_logs(&logs);
    let hash = auth::hash_password(PASSWORD).unwrap();
    let hub = TestHub::spawn_with(|c| c.presence.admin_password = Secret::new(hash), |_| {}).await;
    let mut statuses = Vec::new();
    for _ in 0..60 {
        let response = no_redirects()
            .post(format!("{}/admin/login", hub.url))
            .form(&[("password", "guess")])
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 5);
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 55);
    let records = logs.snapshot();
    let failed = records
        .iter()
        .filter(|r| r.message == "failed login")
        .count();
    let refused = records
        .iter()
        .filter(|r| r.message.starts_with("login rate-limited"))
        .count();
    assert_eq!(
        (failed, refused),
        (5, 1),
        "each wrong password, the first refusal"
    );
}

/// Request records: those of `route`, with their span's fields.
fn requests(logs: &LogBuffer, route: &str) -> Vec<Arc<LogRecord>> {
    logs.snapshot()
        .into_iter()
        .filter(|r| r.target == "goop2::http::request" && field(r, "route") == Some(route))
        .collect()
}

#[tokio::test]
async fn every_request_has_a_span_with_method_route_status_and_latency() {
    let logs = LogBuffer::new(10_000);
    let _recording = record_logs(&logs);
    let hub = TestHub::spawn().await;
    let mut alice = TestIdentity::new();
    assert_eq!(
        publish(&hub, &mut alice, PresenceType::Online, "Alice").await,
        204
    );
    let published = requests(&logs, "/publish");
    assert_eq!(published.len(), 1, "{published:?}");
    let record = &published[0];
    assert_eq!(field(record, "method"), Some("POST"));
    assert_eq!(field(record, "status"), Some("204"));
    assert!(field(record, "latency_ms").is_some_and(|ms| ms.parse::<u64>().is_ok()));
    // A hub's heartbeats would bury everything else at INFO.
    assert_eq!(record.level, "DEBUG");

    // The route's pattern is logged, never the path with its names or IDs.
    let manifest = reqwest::get(format!(
        "{}/api/templates/secret-{}/manifest.json",
        hub.url, alice.id
    ))
    .await
    .unwrap();
    let refused = manifest.status().as_u16();
    assert!(refused >= 400, "{refused}");
    let asked = requests(&logs, "/api/templates/{name}/manifest.json");
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(
        field(&asked[0], "status"),
        Some(refused.to_string().as_str())
    );
    let unknown = reqwest::get(format!("{}/no/such/{}", hub.url, alice.id))
        .await
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 404);
    assert_eq!(requests(&logs, "(none)").len(), 1);
    for record in logs.snapshot() {
        assert!(!record.line().contains(&alice.id), "{}", record.line());
    }
}

/// A proxy checks `/healthz` every few seconds: while the peer database is away each check
/// answers 503 with the reason, and the log says what happened once, as an error, instead of a
/// failed request at every check.
#[tokio::test]
async fn a_lost_peer_database_is_logged_once_not_at_every_health_check() {
    let logs = LogBuffer::new(10_000);
    let _recording = record_logs(&logs);
    let shared = tempfile::tempdir().unwrap();
    let db = shared.path().join("peers.db");
    let path = db.display().to_string();
    let hub = TestHub::spawn_with(|c| c.presence.peer_db_path = path.clone(), |_| {}).await;
    let health = async || {
        reqwest::get(format!("{}/healthz", hub.url))
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(health().await, 200);

    crate::support::destroy_sqlite_file(&db);
    let mut peer = TestIdentity::new();
    assert_eq!(
        publish(&hub, &mut peer, PresenceType::Online, "P").await,
        204
    );
    assert!(eventually(Duration::from_secs(10), async || health().await == 503).await);
    for _ in 0..5 {
        assert_eq!(health().await, 503);
    }

    let checks = requests(&logs, "/healthz");
    let failed: Vec<_> = checks
        .iter()
        .filter(|r| field(r, "status") == Some("503"))
        .collect();
    assert!(failed.len() >= 6, "{checks:?}");
    assert!(
        failed.iter().all(|r| r.level == "DEBUG"),
        "{:?}",
        failed.iter().map(|r| r.line()).collect::<Vec<_>>()
    );
    let said: Vec<_> = logs
        .snapshot()
        .into_iter()
        .filter(|r| r.message.starts_with("the peer database is not writable: "))
        .collect();
    assert_eq!(said.len(), 1, "{said:?}");
    assert_eq!(said[0].level, "ERROR");
}

#[tokio::test]
async fn a_consoles_requests_are_logged_at_info_and_shown_in_its_log() {
    let logs = LogBuffer::new(10_000);
    let _recording = record_logs(&logs);
    let dir = PeerDir::new("Alice", |c| short_ttl(c, 6));
    let alice = TestPeer::start_with_logs(dir, logs.clone()).await;
    let base = crate::console::console(&alice);
    let page = reqwest::get(format!("{base}/")).await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let home = requests(&logs, "/");
    assert_eq!(home.len(), 1, "{home:?}");
    assert_eq!(home[0].level, "INFO");
    assert_eq!(field(&home[0], "method"), Some("GET"));
    assert_eq!(field(&home[0], "status"), Some("200"));
    let shown = crate::support::get_text(&format!("{base}/logs?level=info")).await;
    assert!(
        shown.contains("goop2::http::request: request method=GET route=/ status=200"),
        "{shown}"
    );
    alice.shutdown().await;
}
