//! Hub state in a shared SQLite file: several instances, restarts, `kill -9`.

use std::process::Command;
use std::time::{Duration, Instant};

use goop2::services::hub::COMMIT_WAIT;
use goop2::services::hub::presence::PresenceType;
use goop2::store::hub::HubStore;
use serde_json::Value;

use crate::hub_admin::{admin_page, hub_with_admin_and};
use crate::support::{HubProcess, SseClient, TestHub, TestIdentity, binary_hub_dir, eventually};

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_sharing_a_peer_db_see_each_others_peers_within_a_second() {
    let shared = tempfile::tempdir().unwrap();
    let db = shared.path().join("peers.db").display().to_string();
    let first = TestHub::spawn_with(|c| c.presence.peer_db_path = db.clone(), |_| {}).await;
    let second = TestHub::spawn_with(|c| c.presence.peer_db_path = db.clone(), |_| {}).await;
    instances_share_presence(&first, &second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_sharing_a_peer_db_share_admin_sessions() {
    let shared = tempfile::tempdir().unwrap();
    let db = shared.path().join("peers.db").display().to_string();
    let instance = async || hub_with_admin_and(|c| c.presence.peer_db_path = db.clone()).await;
    let mut first = instance().await;
    let mut second = instance().await;
    crate::hub_admin::instances_share_admin_sessions(&first, &second).await;

    // A session outlives the instances that knew it.
    let cookie = crate::support::hub_admin_cookie(&first.url, crate::hub_admin::PASSWORD).await;
    first.stop().await;
    second.stop().await;
    let restarted = instance().await;
    let page = admin_page(&restarted, &cookie, "/admin").await;
    assert!(page.contains("name=\"csrf\""), "still signed in: {page}");
}

/// Made-up admin cookies cost the database a bounded number of lookups: past the budget an
/// unknown cookie names no session — a real one among them too, until the budget refills or
/// the sessions are read again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_admin_cookies_are_looked_up_within_a_budget() {
    use goop2::services::auth::SessionStore;
    let dir = tempfile::tempdir().unwrap();
    let store = HubStore::open(&dir.path().join("peers.db")).await.unwrap();
    let elsewhere = SessionStore::shared(store.clone());
    let real = elsewhere.create().await.unwrap();
    // Two lookups a second: the budget refills long after the next few requests.
    let here = SessionStore::shared_with_lookups(store, 2);

    for n in 0..2 {
        assert!(here.fetch(&format!("made-up-{n}")).await.is_none());
    }
    assert!(
        here.fetch(&real.token).await.is_none(),
        "the budget is spent"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(here.fetch(&real.token).await, Some(real.clone()));
    // Known now: asked about again without taking from the budget.
    for n in 0..3 {
        assert!(here.fetch(&format!("made-up-again-{n}")).await.is_none());
    }
    assert_eq!(here.fetch(&real.token).await, Some(real.clone()));
    // Signed out elsewhere: gone here at once for requests.
    elsewhere.remove(&real.token).await;
    assert!(here.fetch(&real.token).await.is_none());
}

/// A hub stopped gracefully (SIGTERM, a rolling restart) does not take its WebSocket peers
/// offline: they have not left, and the restarted hub still lists them while they reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_keeps_websocket_peers_for_the_restarted_hub() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let shared = tempfile::tempdir().unwrap();
    let db = shared.path().join("peers.db").display().to_string();
    let instance = async || {
        let setup = |c: &mut goop2::config::Config| {
            c.presence.peer_db_path = db.clone();
            c.presence.ttl_seconds = 120;
        };
        TestHub::spawn_with(setup, |_| {}).await
    };
    let mut hub = instance().await;
    let mut alice = TestIdentity::new();
    let url = format!("ws://{}/ws?peer_id={}", hub.addr, alice.id);
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let hello = alice.json(PresenceType::Online, "Alice");
    socket.send(Message::text(hello)).await.unwrap();
    assert!(eventually(WAIT, async || hub.peers().await.len() == 1).await);

    let registry = hub.hub().clone();
    hub.stop().await;
    let mut closed_with = None;
    // Read to the end, which answers the hub's close: its session is over once this ends.
    while let Ok(Some(Ok(message))) = tokio::time::timeout(WAIT, socket.next()).await {
        if let Message::Close(frame) = message {
            closed_with = frame.map(|f| u16::from(f.code));
        }
    }
    assert_eq!(closed_with, Some(1012), "told the hub is restarting");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(registry.peers().len(), 1, "the stopped hub kept the peer");
    let restarted = instance().await;
    let peers = restarted.peers().await;
    assert_eq!(peers.len(), 1, "{peers:?}");
    assert_eq!(peers[0]["peerId"], alice.id.as_str());
}

/// Two instances of one peer database: a publish on either is seen on the other within a
/// second, a departure reaches the other, and a replay through the other is refused.
pub async fn instances_share_presence(first: &TestHub, second: &TestHub) {
    let mut watcher = SseClient::connect(&format!("{}/events?changes=1", second.url), None).await;

    let mut alice = TestIdentity::new();
    let published = Instant::now();
    assert_eq!(
        first
            .publish(alice.json(PresenceType::Online, "Alice"))
            .await
            .0,
        204
    );
    let online = watcher.next_of_type("online").await;
    let lag = published.elapsed();
    assert_eq!(online["peerId"], alice.id.as_str());
    assert!(
        lag < Duration::from_secs(1),
        "the other instance saw the peer after {lag:?}"
    );
    assert_eq!(second.peers().await.len(), 1);

    // A change made through the second instance reaches the first.
    let mut bob = TestIdentity::new();
    assert_eq!(
        second
            .publish(bob.json(PresenceType::Online, "Bob"))
            .await
            .0,
        204
    );
    assert!(eventually(WAIT, async || first.peers().await.len() == 2).await);

    // Leaving through one instance removes the peer from the other.
    assert_eq!(
        first
            .publish(alice.json(PresenceType::Offline, "Alice"))
            .await
            .0,
        204
    );
    let offline = watcher.next_of_type("offline").await;
    assert_eq!(offline["peerId"], alice.id.as_str());
    let remaining = second.peers().await;
    assert_eq!(remaining.len(), 1);
    assert_eq!(remaining[0]["peerId"], bob.id.as_str());

    // A replay of Alice's old message through the other instance is refused too.
    let mut stale = alice.unsigned(PresenceType::Online, "Alice");
    stale.ts = Some(stale.ts.unwrap() - 10_000);
    stale.sign(&alice.keypair);
    assert_eq!(
        second
            .publish(serde_json::to_string(&stale).unwrap())
            .await
            .0,
        401
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_peers_survive_kill_9_and_subscribers_resynchronize() {
    let dir = binary_hub_dir(120, "data/peers.db");

    let hub = HubProcess::start(dir.path());
    let client = reqwest::Client::new();
    let mut alice = TestIdentity::new();
    let mut bob = TestIdentity::new();
    for (peer, label) in [(&mut alice, "Alice"), (&mut bob, "Bob")] {
        let response = client
            .post(format!("{}/publish", hub.url))
            .body(peer.json(PresenceType::Online, label))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 204);
    }
    assert_eq!(
        client
            .post(format!("{}/publish", hub.url))
            .body(bob.json(PresenceType::Offline, "Bob"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        204
    );
    let mut events = SseClient::connect(&format!("{}/events", hub.url), None).await;
    events.next(WAIT).await.unwrap();
    // The snapshot's position follows its last frame.
    events.next(Duration::from_millis(300)).await;
    let old_id = events.last_id.clone().unwrap();
    // What the subscriber misses: Alice's new label.
    publish(
        &client,
        &hub.url,
        alice.json(PresenceType::Update, "Alice renamed"),
    )
    .await;
    let peers_before: Vec<Value> = client
        .get(format!("{}/peers.json", hub.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    // A publish is acknowledged once the database has it.
    let store = HubStore::open(&dir.path().join("data/peers.db"))
        .await
        .unwrap();
    let live = store
        .live_peers(goop2::services::hub::unix_ms())
        .await
        .unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].peer_id, alice.id);

    let mut hub = hub;
    hub.child.kill().unwrap(); // SIGKILL: no chance to flush or say goodbye
    hub.child.wait().unwrap();
    drop(hub);

    let restarted = HubProcess::start(dir.path());
    let peers = listed(&client, &restarted.url).await;
    assert_eq!(peers.len(), 1, "Alice is back, Bob stays gone: {peers:?}");
    assert_eq!(peers[0]["peerId"], alice.id.as_str());
    assert_eq!(
        peers[0]["lastSeen"], peers_before[0]["lastSeen"],
        "with her original last-seen time"
    );

    // A subscriber from before the crash resumes from its place in the database (its id
    // names it): no reset, Alice's new label and nothing that contradicts what it knew.
    let mut events = SseClient::connect(&format!("{}/events", restarted.url), Some(&old_id)).await;
    let mut missed = Vec::new();
    while let Some(event) = events.next(Duration::from_millis(500)).await {
        assert_ne!(event.event.as_deref(), Some("reset"));
        missed.push(event.json());
    }
    assert!(
        missed
            .iter()
            .any(|e| e["peerId"] == alice.id.as_str() && e["content"] == "Alice renamed"),
        "{missed:?}"
    );
    assert!(
        missed
            .iter()
            .filter(|e| e["peerId"] == bob.id.as_str())
            .all(|e| e["type"] == "offline"),
        "{missed:?}"
    );
    // An id of the instance that died, without a database position, starts over.
    let epoch_only = old_id.split('-').take(2).collect::<Vec<_>>().join("-");
    let mut events =
        SseClient::connect(&format!("{}/events", restarted.url), Some(&epoch_only)).await;
    assert_eq!(
        events.next(WAIT).await.unwrap().event.as_deref(),
        Some("reset")
    );
    assert_eq!(
        events.next(WAIT).await.unwrap().json()["peerId"],
        alice.id.as_str()
    );

    // Replay protection survives the restart too.
    let mut replay = alice.unsigned(PresenceType::Update, "Alice");
    replay.ts = Some(replay.ts.unwrap() - 60_000);
    replay.sign(&alice.keypair);
    let status = client
        .post(format!("{}/publish", restarted.url))
        .body(serde_json::to_string(&replay).unwrap())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 401);
}

/// A hub directory `goop2 rendezvous` makes keeps its state in a file: its peers come back
/// after `kill -9` and a stream resumes where it was rather than starting over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_directory_goop2_makes_keeps_its_peers_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = goop2::modes::rendezvous::prepare_dir(dir.path())
        .unwrap()
        .config;
    assert_eq!(config.presence.peer_db_path, goop2::config::HUB_PEER_DB);
    // A free port and no settings viewer, so that tests may run side by side; the rest as made.
    config.presence.rendezvous_port = Some(0);
    config.viewer.http_addr.clear();
    config.save(&dir.path().join("goop.json")).unwrap();

    let hub = HubProcess::start(dir.path());
    let client = reqwest::Client::new();
    let mut alice = TestIdentity::new();
    publish(&client, &hub.url, alice.json(PresenceType::Online, "Alice")).await;
    let mut events = SseClient::connect(&format!("{}/events", hub.url), None).await;
    events.next(WAIT).await.unwrap();
    events.next(Duration::from_millis(300)).await;
    let position = events.last_id.clone().unwrap();
    let mut hub = hub;
    hub.child.kill().unwrap();
    hub.child.wait().unwrap();
    drop(hub);
    assert!(dir.path().join(goop2::config::HUB_PEER_DB).exists());

    let restarted = HubProcess::start(dir.path());
    let peers = listed(&client, &restarted.url).await;
    assert_eq!(peers.len(), 1, "{peers:?}");
    assert_eq!(peers[0]["peerId"], alice.id.as_str());
    let mut resumed =
        SseClient::connect(&format!("{}/events", restarted.url), Some(&position)).await;
    while let Some(event) = resumed.next(Duration::from_millis(500)).await {
        assert_ne!(event.event.as_deref(), Some("reset"), "{event:?}");
    }
}

/// The hub's `/peers.json`.
async fn listed(client: &reqwest::Client, url: &str) -> Vec<Value> {
    let response = client
        .get(format!("{url}/peers.json"))
        .send()
        .await
        .unwrap();
    response.json().await.unwrap()
}

/// Publishes one message and expects it acknowledged.
async fn publish(client: &reqwest::Client, url: &str, body: String) {
    let status = client
        .post(format!("{url}/publish"))
        .body(body)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_changes_resumed_after_a_restart_hears_of_changes_not_of_heartbeats() {
    let dir = binary_hub_dir(120, "data/peers.db");
    let hub = HubProcess::start(dir.path());
    let client = reqwest::Client::new();
    let mut peers: Vec<TestIdentity> = (0..5).map(|_| TestIdentity::new()).collect();
    for (index, peer) in peers.iter_mut().enumerate() {
        let body = peer.json(PresenceType::Online, &format!("peer {index}"));
        publish(&client, &hub.url, body).await;
    }
    let mut events = SseClient::connect(&format!("{}/events?changes=1", hub.url), None).await;
    let mut snapshot = 0;
    while events.next(Duration::from_millis(500)).await.is_some() {
        snapshot += 1;
    }
    assert_eq!(snapshot, 5);
    let old_id = events.last_id.clone().unwrap();
    // Heartbeats from everyone (twice), a new label from peer 0, and peer 1 leaves.
    for round in 0..2 {
        for (index, peer) in peers.iter_mut().enumerate().skip(1) {
            let body = peer.json(PresenceType::Update, &format!("peer {index}"));
            publish(&client, &hub.url, body).await;
        }
        let label = if round == 0 {
            "peer 0"
        } else {
            "peer 0, renamed"
        };
        let body = peers[0].json(PresenceType::Update, label);
        publish(&client, &hub.url, body).await;
    }
    let body = peers[1].json(PresenceType::Offline, "peer 1");
    publish(&client, &hub.url, body).await;

    let mut hub = hub;
    hub.child.kill().unwrap();
    hub.child.wait().unwrap();
    drop(hub);
    let restarted = HubProcess::start(dir.path());
    let mut events = SseClient::connect(
        &format!("{}/events?changes=1", restarted.url),
        Some(&old_id),
    )
    .await;
    let mut missed = Vec::new();
    while let Some(event) = events.next(Duration::from_millis(500)).await {
        assert_ne!(event.event.as_deref(), Some("reset"));
        let json = event.json();
        missed.push(format!("{} {}", json["type"], json["content"]));
    }
    missed.sort();
    assert_eq!(
        missed,
        ["\"offline\" null", "\"online\" \"peer 0, renamed\""],
        "only the rename and the departure, not the peers that sent heartbeats"
    );

    // A stream of every event resumes with every peer whose row moved.
    let mut all = SseClient::connect(&format!("{}/events", restarted.url), Some(&old_id)).await;
    let mut count = 0;
    while all.next(Duration::from_millis(500)).await.is_some() {
        count += 1;
    }
    assert_eq!(count, 5, "four peers online and one departure");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_reports_an_unwritable_peer_db() {
    let shared = tempfile::tempdir().unwrap();
    let db = shared.path().join("peers.db");
    let path = db.display().to_string();
    let hub = TestHub::spawn_with(|c| c.presence.peer_db_path = path.clone(), |_| {}).await;
    let health = reqwest::get(format!("{}/healthz", hub.url)).await.unwrap();
    assert_eq!(health.status().as_u16(), 200);

    crate::support::destroy_sqlite_file(&db);
    let mut peer = TestIdentity::new();
    assert_eq!(
        hub.publish(peer.json(PresenceType::Online, "P")).await.0,
        204
    );
    let reported = eventually(Duration::from_secs(10), async || {
        let response = reqwest::get(format!("{}/healthz", hub.url)).await.unwrap();
        response.status().as_u16() == 503
    })
    .await;
    assert!(reported, "healthz did not notice");
    let body = reqwest::get(format!("{}/healthz", hub.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        body.starts_with("the peer database is not writable: "),
        "{body}"
    );
}

/// While the peer database is unusable, signing in answers 503 and says why, and an
/// administrator signed in before stays signed in on this instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_needs_the_peer_db_and_a_session_outlives_its_loss() {
    let shared = tempfile::tempdir().unwrap();
    let db = shared.path().join("peers.db");
    let path = db.display().to_string();
    let hub = hub_with_admin_and(|c| c.presence.peer_db_path = path.clone()).await;
    let cookie = crate::support::hub_admin_cookie(&hub.url, crate::hub_admin::PASSWORD).await;

    crate::support::destroy_sqlite_file(&db);
    let refused = crate::support::no_redirects()
        .post(format!("{}/admin/login", hub.url))
        .form(&[("password", crate::hub_admin::PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    assert!(refused.headers().get("set-cookie").is_none());
    let page = refused.text().await.unwrap();
    assert!(
        page.contains("The database that keeps sign-ins cannot be reached"),
        "{page}"
    );
    let page = admin_page(&hub, &cookie, "/admin").await;
    assert!(page.contains("name=\"csrf\""), "still signed in: {page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_streams_with_a_retry_hint_flushes_and_exits_cleanly() {
    let dir = binary_hub_dir(120, "peers.db");

    let mut hub = HubProcess::start(dir.path());
    let mut events = SseClient::connect(&format!("{}/events", hub.url), None).await;
    let mut alice = TestIdentity::new();
    let status = reqwest::Client::new()
        .post(format!("{}/publish", hub.url))
        .body(alice.json(PresenceType::Online, "Alice"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 204);
    let stopping = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &hub.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    // The stream ends with a reconnect hint.
    while events.next(WAIT).await.is_some() {}
    assert!(events.ended, "the stream was closed");
    assert_eq!(events.last_retry.as_deref(), Some("1000"));
    let exit = tokio::task::spawn_blocking(move || {
        let status = hub.child.wait().unwrap();
        drop(hub);
        status
    })
    .await
    .unwrap();
    assert!(exit.success(), "exit status {exit:?}");
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "took {:?}",
        stopping.elapsed()
    );

    // What was acknowledged before the signal is in the database.
    let store = HubStore::open(&dir.path().join("peers.db")).await.unwrap();
    let live = store
        .live_peers(goop2::services::hub::unix_ms())
        .await
        .unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].peer_id, alice.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_succeed_while_another_process_holds_the_database_write_lock() {
    use sqlx::Connection;
    let shared = tempfile::tempdir().unwrap();
    let db = shared.path().join("peers.db");
    let path = db.display().to_string();
    let hub = TestHub::spawn_with(|c| c.presence.peer_db_path = path.clone(), |_| {}).await;

    // Another instance (here: a plain connection) sits on the write lock.
    let mut locker = sqlx::SqliteConnection::connect(&format!("sqlite://{path}"))
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut locker)
        .await
        .unwrap();
    let mut alice = TestIdentity::new();
    // The first publish waits for its commit, at most COMMIT_WAIT; the ones after it are
    // answered from memory until the writer commits again.
    let mut waits = Vec::new();
    for label in ["Alice", "Alice 2", "Alice 3"] {
        let started = Instant::now();
        assert_eq!(
            hub.publish(alice.json(PresenceType::Update, label)).await.0,
            204
        );
        waits.push(started.elapsed());
    }
    assert!(waits[0] < COMMIT_WAIT + Duration::from_secs(1), "{waits:?}");
    assert!(
        waits[1..].iter().all(|w| *w < Duration::from_millis(500)),
        "publishes after the first did not wait for the lock: {waits:?}"
    );
    assert_eq!(hub.peers().await[0]["content"], "Alice 3");
    tokio::time::sleep(Duration::from_millis(500)).await;
    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();

    // Once the lock is gone the writer catches up.
    let store = HubStore::open(&db).await.unwrap();
    assert!(
        eventually(WAIT, async || {
            let live = store
                .live_peers(goop2::services::hub::unix_ms())
                .await
                .unwrap();
            live.len() == 1 && live[0].presence.contains("Alice 3")
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_db_from_before_versions_and_shared_bans_is_upgraded_in_place() {
    use sqlx::sqlite::SqliteConnectOptions;
    use std::str::FromStr;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("peers.db");
    // The database as the first migration left it, with a peer and a ban in it.
    let first = tempfile::tempdir().unwrap();
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/migrations/hub-sqlite/0001_peers.sql"
        ),
        first.path().join("0001_peers.sql"),
    )
    .unwrap();
    let options = SqliteConnectOptions::from_str("sqlite://")
        .unwrap()
        .filename(&db)
        .create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    sqlx::migrate::Migrator::new(first.path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    let now = goop2::services::hub::unix_ms();
    let mut alice = TestIdentity::new();
    let presence = alice.json(PresenceType::Online, "Alice");
    sqlx::query("INSERT INTO peers VALUES (?1, ?2, 1, 0, ?3, ?3, 1, ?4, 'old', 41)")
        .bind(&alice.id)
        .bind(&presence)
        .bind(now)
        .bind(now + 60_000)
        .execute(&pool)
        .await
        .unwrap();
    let mallory = TestIdentity::new();
    sqlx::query("INSERT INTO bans VALUES (?1, ?2)")
        .bind(&mallory.id)
        .bind(now + 3_600_000)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let store = HubStore::open(&db).await.unwrap();
    let live = store.live_peers(now).await.unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].peer_id, alice.id);
    assert_eq!(store.bans(now).await.unwrap()[0].0, mallory.id);
    let versions = store.versions().await.unwrap();
    assert_eq!(
        versions.peer_version, 41,
        "versions go on from the old ones"
    );
    // A hub on the upgraded file has both, and its writes take newer versions.
    let hub = TestHub::spawn_with(
        |c| c.presence.peer_db_path = db.display().to_string(),
        |_| {},
    )
    .await;
    assert_eq!(hub.peers().await.len(), 1);
    assert_eq!(hub.hub().bans().len(), 1);
    assert_eq!(
        hub.publish(alice.json(PresenceType::Update, "Alice again"))
            .await
            .0,
        204
    );
    hub.hub().flush().await;
    let rows = store.changes_since(41, "nobody", 10).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0].presence.contains("Alice again"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catch_up_on_another_instance_passes_over_unchanged_peers_and_misses_nothing() {
    // More peers than one page of a catch-up looks at (1,024); a few of them change, leave or
    // join, spread over the registry's order.
    const PEERS: usize = 1_300;
    let shared = tempfile::tempdir().unwrap();
    let db = shared.path().join("peers.db").display().to_string();
    let first = TestHub::spawn_with(|c| c.presence.peer_db_path = db.clone(), |_| {}).await;
    let second = TestHub::spawn_with(|c| c.presence.peer_db_path = db.clone(), |_| {}).await;
    let client = reqwest::Client::new();
    let mut peers: Vec<TestIdentity> = (0..PEERS).map(|_| TestIdentity::new()).collect();
    for (i, peer) in peers.iter_mut().enumerate() {
        publish(
            &client,
            &first.url,
            peer.json(PresenceType::Online, &format!("peer {i}")),
        )
        .await;
    }
    assert!(eventually(WAIT, async || second.peers().await.len() == PEERS).await);
    // A stream of changes reads its snapshot on the first instance; where it stopped names
    // the database's position, which the second answers for from the registry.
    let mut events = SseClient::connect(&format!("{}/events?changes=1", first.url), None).await;
    for _ in 0..PEERS {
        events.next(WAIT).await.expect("a snapshot frame");
    }
    events.next(Duration::from_millis(300)).await;
    let last_id = events.last_id.clone().expect("the snapshot's position");
    drop(events);

    // While it is away, through the first instance: every 13th peer renames itself, the one
    // after it leaves, and ten peers join.
    let (mut renamed, mut left) = (Vec::new(), Vec::new());
    for (i, peer) in peers.iter_mut().enumerate() {
        match i % 13 {
            0 => {
                let label = format!("renamed {i}");
                publish(&client, &first.url, peer.json(PresenceType::Update, &label)).await;
                renamed.push((peer.id.clone(), label));
            }
            1 => {
                publish(&client, &first.url, peer.json(PresenceType::Offline, "")).await;
                left.push(peer.id.clone());
            }
            _ => {}
        }
    }
    let mut joined = Vec::new();
    for i in 0..10 {
        let mut peer = TestIdentity::new();
        let label = format!("new {i}");
        publish(&client, &first.url, peer.json(PresenceType::Online, &label)).await;
        joined.push((peer.id.clone(), label));
    }
    let online = PEERS - left.len() + joined.len();
    assert!(
        eventually(WAIT, async || {
            let listed = second.peers().await;
            listed.len() == online && listed.iter().any(|p| p["content"] == "new 9")
        })
        .await
    );

    // Back through the second instance: resumed, not reset, with exactly what it missed.
    let mut resumed =
        SseClient::connect(&format!("{}/events?changes=1", second.url), Some(&last_id)).await;
    let mut missed = std::collections::HashMap::new();
    while let Some(event) = resumed.next(Duration::from_millis(700)).await {
        assert_ne!(
            event.event.as_deref(),
            Some("reset"),
            "the stream was reset"
        );
        let event = event.json();
        let peer = event["peerId"].as_str().unwrap().to_owned();
        assert!(
            missed.insert(peer, event).is_none(),
            "a peer was given twice"
        );
    }
    assert_eq!(missed.len(), renamed.len() + left.len() + joined.len());
    for (peer, label) in renamed.iter().chain(&joined) {
        let event = &missed[peer.as_str()];
        assert_eq!(
            (&event["type"], &event["content"]),
            (&"online".into(), &label.as_str().into())
        );
    }
    for peer in &left {
        assert_eq!(missed[peer.as_str()]["type"], "offline");
    }
    assert!(
        resumed.last_id.as_deref().is_some_and(|id| id != last_id),
        "the catch-up ends with the stream's new position"
    );
    // Nothing of it is held once it is written.
    assert!(
        second
            .metrics()
            .await
            .contains("goop_hub_snapshot_frames_held 0")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_catching_up_on_another_instance_holds_a_page_of_it() {
    use goop2::services::hub::snapshot::SNAPSHOT_PAGE;
    let shared = tempfile::tempdir().unwrap();
    let db = shared.path().join("peers.db").display().to_string();
    let first = TestHub::spawn_with(|c| c.presence.peer_db_path = db.clone(), |_| {}).await;
    let second = TestHub::spawn_with(
        |c| {
            c.presence.peer_db_path = db.clone();
            c.presence.max_streams_per_ip = 100;
        },
        |_| {},
    )
    .await;
    // A stream's position on the first instance, before anyone is online.
    let mut events = SseClient::connect(&format!("{}/events", first.url), None).await;
    events.next(Duration::from_millis(300)).await;
    let last_id = events
        .last_id
        .clone()
        .expect("the empty snapshot's position");
    drop(events);
    // Then 3,000 peers come online with labels of 3,000 bytes: a 9 MiB catch-up, more than a
    // socket's buffers hold for a subscriber that does not read.
    const PEERS: usize = 3000;
    crate::hub::put_online_with_long_labels(first.hub(), PEERS);
    assert!(
        eventually(Duration::from_secs(30), async || {
            crate::hub::gauge(&second, "goop_hub_peers").await == PEERS as u64
        })
        .await
    );

    // Twenty subscribers resume on the second instance and read nothing.
    const STALLED: u64 = 20;
    let mut stalled = Vec::new();
    for _ in 0..STALLED {
        stalled.push(crate::hub::stalled_event_stream(second.addr, Some(&last_id)).await);
    }
    assert!(
        eventually(WAIT, async || second.hub().open_streams()
            == STALLED as usize)
        .await
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = crate::hub::gauge(&second, "goop_hub_snapshot_frames_held").await;
    assert!(
        held > 0,
        "the subscribers are stalled halfway through the catch-up"
    );
    assert!(
        held <= STALLED * SNAPSHOT_PAGE as u64,
        "{held} frames held by {STALLED} subscribers catching up on {PEERS} peers"
    );

    // One that reads is sent every peer once, without a reset.
    let mut reader = SseClient::connect(&format!("{}/events", second.url), Some(&last_id)).await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..PEERS {
        let event = reader.next(WAIT).await.expect("the whole catch-up");
        assert_ne!(event.event.as_deref(), Some("reset"));
        seen.insert(event.json()["content"].as_str().unwrap()[..4].to_owned());
    }
    assert_eq!(seen.len(), PEERS);
    drop(stalled);
    drop(reader);
    assert!(
        eventually(WAIT, async || crate::hub::gauge(
            &second,
            "goop_hub_snapshot_frames_held"
        )
        .await
            == 0)
        .await,
        "frames still held after every subscriber left"
    );
}
