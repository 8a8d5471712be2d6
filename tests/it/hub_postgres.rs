//! Hub instances sharing PostgreSQL (`presence.peer_db_url`): peers, bans, templates and stream
//! positions carried between instances; a lost database; credentials never shown.
//!
//! These tests need a PostgreSQL server: `GOOP2_TEST_POSTGRES` names a role that may create
//! databases (`.ci/postgres` starts one), and each test makes a database of its own. The
//! restart test runs a server of its own from `GOOP2_TEST_POSTGRES_BIN`.

use std::time::{Duration, Instant};

use goop2::config::Secret;
use goop2::services::auth;
use goop2::services::hub::presence::PresenceType;
use serde_json::Value;

use crate::hub_admin::{PASSWORD, tar_gz, upload};
use crate::support::postgres::{PrivatePostgres, TestDatabase};
use crate::support::{SseClient, TestHub, TestIdentity, eventually};

const WAIT: Duration = Duration::from_secs(5);

async fn instance(url: &str) -> TestHub {
    let url = url.to_owned();
    TestHub::spawn_with(|c| c.presence.peer_db_url = Secret::new(url), |_| {}).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_on_postgres_share_admin_sessions() {
    let db = TestDatabase::create().await;
    let instance = async || {
        crate::hub_admin::hub_with_admin_and(|c| {
            c.presence.peer_db_url = Secret::new(db.url.clone())
        })
        .await
    };
    let first = instance().await;
    let second = instance().await;
    crate::hub_admin::instances_share_admin_sessions(&first, &second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_on_one_instance_sees_a_publish_on_another_within_a_second() {
    let db = TestDatabase::create().await;
    let first = instance(&db.url).await;
    let second = instance(&db.url).await;
    crate::hub_persist::instances_share_presence(&first, &second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_event_id_from_one_instance_resumes_on_another() {
    let db = TestDatabase::create().await;
    let first = instance(&db.url).await;
    let second = instance(&db.url).await;
    let mut alice = TestIdentity::new();
    let mut bob = TestIdentity::new();
    let mut carol = TestIdentity::new();
    for (peer, label) in [(&mut alice, "Alice"), (&mut bob, "Bob")] {
        assert_eq!(
            first
                .publish(peer.json(PresenceType::Online, label))
                .await
                .0,
            204
        );
    }
    // A subscriber on the first instance reads the snapshot; the position that follows its last
    // frame is where it stopped.
    let mut events = SseClient::connect(&format!("{}/events", first.url), None).await;
    for _ in 0..2 {
        events.next(WAIT).await.unwrap();
    }
    events.next(Duration::from_millis(300)).await;
    let last_id = events.last_id.clone().unwrap();
    drop(events);
    // Both instances have read everything so far.
    assert!(eventually(WAIT, async || second.peers().await.len() == 2).await);

    // While it is away: Bob leaves through the second instance, Carol joins through the first,
    // Alice changes her label through the second.
    assert_eq!(
        second
            .publish(bob.json(PresenceType::Offline, "Bob"))
            .await
            .0,
        204
    );
    assert_eq!(
        first
            .publish(carol.json(PresenceType::Online, "Carol"))
            .await
            .0,
        204
    );
    assert_eq!(
        second
            .publish(alice.json(PresenceType::Update, "Alice, renamed"))
            .await
            .0,
        204
    );
    assert!(
        eventually(WAIT, async || {
            let peers = second.peers().await;
            peers.len() == 2 && peers.iter().any(|p| p["peerId"] == carol.id.as_str())
        })
        .await
    );

    // It comes back through the second instance: resumed, not reset, with what it missed.
    let mut resumed = SseClient::connect(&format!("{}/events", second.url), Some(&last_id)).await;
    let mut missed: Vec<Value> = Vec::new();
    while let Some(event) = resumed.next(Duration::from_millis(700)).await {
        assert_ne!(
            event.event.as_deref(),
            Some("reset"),
            "the stream was reset"
        );
        missed.push(event.json());
    }
    let about = |id: &str| -> Vec<&Value> { missed.iter().filter(|e| e["peerId"] == id).collect() };
    assert!(
        about(&bob.id).iter().any(|e| e["type"] == "offline"),
        "Bob's departure: {missed:?}"
    );
    assert!(
        about(&carol.id).iter().any(|e| e["content"] == "Carol"),
        "Carol's arrival: {missed:?}"
    );
    assert_eq!(
        about(&alice.id).last().unwrap()["content"],
        "Alice, renamed",
        "{missed:?}"
    );

    // An id from another database, or from before anything this instance can answer for,
    // gets a reset and a snapshot.
    let mut foreign = SseClient::connect(
        &format!("{}/events", second.url),
        Some("abc-3-000000000000-1"),
    )
    .await;
    assert_eq!(
        foreign.next(WAIT).await.unwrap().event.as_deref(),
        Some("reset")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_on_one_instance_applies_on_every_instance() {
    let db = TestDatabase::create().await;
    let first = instance(&db.url).await;
    let second = instance(&db.url).await;
    let mut mallory = TestIdentity::new();
    assert_eq!(
        second
            .publish(mallory.json(PresenceType::Online, "Mallory"))
            .await
            .0,
        204
    );
    assert!(eventually(WAIT, async || first.peers().await.len() == 1).await);
    let id = mallory.id.parse().unwrap();

    let banned = Instant::now();
    first
        .hub()
        .ban(id, Duration::from_secs(3600))
        .await
        .expect("the ban is stored");
    assert!(
        eventually(Duration::from_secs(1), async || second
            .peers()
            .await
            .is_empty())
        .await,
        "the other instance dropped the peer within a second"
    );
    assert!(banned.elapsed() < Duration::from_secs(1));
    let (status, _) = second
        .publish(mallory.json(PresenceType::Online, "Mallory"))
        .await;
    assert_eq!(status, 403, "the other instance refuses the banned peer");

    // Lifting it is carried too.
    assert_eq!(first.hub().unban(&id).await, Ok(true));
    assert!(
        eventually(WAIT, async || second.hub().bans().is_empty()).await,
        "the ban was lifted on the other instance"
    );
    assert_eq!(
        second
            .publish(mallory.json(PresenceType::Online, "Mallory"))
            .await
            .0,
        204
    );

    // A new instance starts with the bans in force.
    first
        .hub()
        .ban(id, Duration::from_secs(3600))
        .await
        .unwrap();
    let third = instance(&db.url).await;
    assert_eq!(third.hub().bans().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_uploaded_through_one_instance_are_served_by_every_instance() {
    let db = TestDatabase::create().await;
    let hash = auth::hash_password(PASSWORD).unwrap();
    let with_admin = |c: &mut goop2::config::Config| {
        c.presence.peer_db_url = Secret::new(db.url.clone());
        c.presence.admin_password = Secret::new(hash.clone());
    };
    let first = TestHub::spawn_with(with_admin, |_| {}).await;
    let second = TestHub::spawn_with(with_admin, |_| {}).await;
    let (cookie, csrf) = crate::hub_admin::sign_in(&first).await;
    let bundle = tar_gz(&[
        (
            "corkboard/manifest.json",
            br#"{"name": "Corkboard", "version": "1"}"#,
        ),
        ("corkboard/index.html", b"<h1>pins</h1>"),
    ]);
    let notice = upload(&first, &cookie, &csrf, bundle, "").await;
    assert_eq!(notice, "Installed template corkboard.");
    // Nothing was written to the instances' template directories.
    assert!(!first.dir.path().join("templates").exists());

    let list: Vec<Value> = reqwest::get(format!("{}/api/templates", second.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["dir"], "corkboard");
    assert_eq!(list[0]["name"], "Corkboard");
    let response = reqwest::get(format!("{}/api/templates/corkboard/bundle", second.url))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    let bytes = response.bytes().await.unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
    let mut names: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["index.html", "manifest.json"]);
    // The same bytes from either instance.
    let again = reqwest::Client::new()
        .get(format!("{}/api/templates/corkboard/bundle", first.url))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 304);

    // Deleted through one, gone from the other.
    let deleted = crate::hub_admin::admin_post(
        &first,
        &cookie,
        "/admin/templates/delete",
        &[("name", "corkboard"), ("csrf", &csrf)],
    )
    .await;
    assert_eq!(deleted.status().as_u16(), 303);
    let missing = reqwest::get(format!(
        "{}/api/templates/corkboard/manifest.json",
        second.url
    ))
    .await
    .unwrap();
    assert_eq!(missing.status().as_u16(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_password_appears_in_no_log_line_error_or_page() {
    let db = TestDatabase::create().await;
    let password = db.password();
    assert!(!password.is_empty(), "the test role has a password");

    // A running instance: its log and its admin configuration page.
    let hash = auth::hash_password(PASSWORD).unwrap();
    let url = db.url.clone();
    let hub = TestHub::spawn_with(
        |c| {
            c.presence.peer_db_url = Secret::new(url);
            c.presence.admin_password = Secret::new(hash);
        },
        |_| {},
    )
    .await;
    let (cookie, _) = crate::hub_admin::sign_in(&hub).await;
    let page = crate::support::no_redirects()
        .get(format!("{}/admin/config", hub.url))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("peer_db_url"), "the key is listed");
    assert!(
        !page.contains(&password),
        "the admin page shows the password"
    );
    let mut config = goop2::config::Config::default();
    config.presence.peer_db_url = Secret::new(db.url.clone());
    assert!(!format!("{config:?}").contains(&password), "Debug shows it");

    // The binary, started with a wrong password and then against no server at all: the
    // errors name the database without the password, and say what went wrong.
    for (url, why) in [
        (
            db.url.replace(&password, "wrong-secret-42"),
            "password authentication failed",
        ),
        (
            "postgres://goop:unreachable-secret-42@127.0.0.1:1/goop".to_owned(),
            "Connection refused",
        ),
    ] {
        let dir = crate::support::binary_hub_dir_with(|c| {
            c.presence.peer_db_url = Secret::new(url.clone());
        });
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_goop2"))
            .args(["rendezvous", dir.path().to_str().unwrap()])
            .env("RUST_LOG", "debug")
            .output()
            .unwrap();
        assert!(!output.status.success(), "the hub does not start");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(text.contains("presence.peer_db_url"), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
        assert!(text.contains(why), "{text}");
        assert!(
            !text.contains("-secret-42"),
            "the password was shown: {text}"
        );
    }

    // A running binary's own log.
    let dir = crate::support::binary_hub_dir_with(|c| {
        c.presence.peer_db_url = Secret::new(db.url.clone());
    });
    let process = crate::support::HubProcess::start(dir.path());
    let log = process.output();
    assert!(log.contains("PostgreSQL"), "{log}");
    assert!(
        !log.contains(&password),
        "the log shows the password: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_turns_healthz_503_then_200_and_loses_nothing() {
    let server = PrivatePostgres::start();
    let first = instance(&server.url).await;
    let second = instance(&server.url).await;
    let health = async |hub: &TestHub| {
        let response = reqwest::get(format!("{}/healthz", hub.url)).await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    };
    assert_eq!(health(&first).await.0, 200);
    let mut watcher = SseClient::connect(&format!("{}/events?changes=1", first.url), None).await;
    let mut alice = TestIdentity::new();
    assert_eq!(
        first
            .publish(alice.json(PresenceType::Online, "Alice"))
            .await
            .0,
        204
    );
    assert!(eventually(WAIT, async || second.peers().await.len() == 1).await);

    server.stop();
    // Publishes go on from memory, and this instance's subscribers see them.
    let mut bob = TestIdentity::new();
    let started = Instant::now();
    assert_eq!(
        first.publish(bob.json(PresenceType::Online, "Bob")).await.0,
        204
    );
    assert!(started.elapsed() < Duration::from_secs(1), "publish waited");
    watcher
        .wait_for(WAIT, |e| e.json()["peerId"] == bob.id.as_str())
        .await;
    let reported = eventually(Duration::from_secs(15), async || {
        health(&first).await.0 == 503 && health(&second).await.0 == 503
    })
    .await;
    assert!(
        reported,
        "healthz did not notice: {:?}",
        health(&first).await
    );
    let (_, reason) = health(&first).await;
    assert!(reason.starts_with("the peer database"), "{reason}");
    assert!(!reason.contains(&server.password()), "{reason}");
    // Why, not only that a pooled connection did not come.
    for hub in [&first, &second] {
        let (_, reason) = health(hub).await;
        assert!(!reason.contains("pool timed out"), "{reason}");
    }
    // More while it is away, beyond what a single retry would hold.
    let mut others: Vec<TestIdentity> = (0..20).map(|_| TestIdentity::new()).collect();
    for (index, peer) in others.iter_mut().enumerate() {
        assert_eq!(
            first
                .publish(peer.json(PresenceType::Online, &format!("P{index}")))
                .await
                .0,
            204
        );
    }
    assert_eq!(
        first
            .publish(alice.json(PresenceType::Update, "Alice during the outage"))
            .await
            .0,
        204
    );

    server.resume();
    let recovered = eventually(Duration::from_secs(20), async || {
        health(&first).await.0 == 200 && health(&second).await.0 == 200
    })
    .await;
    assert!(recovered, "healthz: {:?}", health(&first).await);
    // Everything accepted during the outage reaches the other instance.
    let caught_up = eventually(Duration::from_secs(10), async || {
        let peers = second.peers().await;
        peers.len() == 22
            && peers
                .iter()
                .any(|p| p["content"] == "Alice during the outage")
    })
    .await;
    assert!(caught_up, "{:?}", second.peers().await);
    // And a publish after the restart travels as before.
    let mut carol = TestIdentity::new();
    assert_eq!(
        second
            .publish(carol.json(PresenceType::Online, "Carol"))
            .await
            .0,
        204
    );
    watcher
        .wait_for(WAIT, |e| e.json()["peerId"] == carol.id.as_str())
        .await;
}

/// `peer` heartbeats on `hub` every half second for `time`, each acknowledged.
async fn beat_for(hub: &TestHub, peer: &mut TestIdentity, label: &str, time: Duration) {
    let beating = Instant::now();
    while beating.elapsed() < time {
        assert_eq!(
            hub.publish(peer.json(PresenceType::Update, label)).await.0,
            204
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// While the database is away no instance hears the others: the peers announced through
/// another instance stay listed as they were, rather than expiring and splitting the community
/// into each instance's own peers. A peer heard here that falls silent still expires. Once the
/// database is back, what changed meanwhile arrives: a departure leaves, a peer that kept its
/// heartbeats stays, never having been said offline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_of_other_instances_stay_listed_while_the_database_is_away() {
    const TTL: Duration = Duration::from_secs(6);
    let server = PrivatePostgres::start();
    let spawn = async || {
        let url = server.url.clone();
        TestHub::spawn_with(
            |c| {
                c.presence.peer_db_url = Secret::new(url);
                c.presence.ttl_seconds = TTL.as_secs() as u32;
            },
            |_| {},
        )
        .await
    };
    let first = spawn().await;
    let second = spawn().await;
    let listed = async |hub: &TestHub, peer: &TestIdentity| {
        hub.peers()
            .await
            .iter()
            .any(|p| p["peerId"] == peer.id.as_str())
    };
    let mut watcher = SseClient::connect(&format!("{}/events", second.url), None).await;
    let (mut alice, mut bob, mut carol) = (
        TestIdentity::new(),
        TestIdentity::new(),
        TestIdentity::new(),
    );
    for (hub, peer, label) in [
        (&first, &mut alice, "Alice"),
        (&first, &mut bob, "Bob"),
        (&second, &mut carol, "Carol"),
    ] {
        assert_eq!(
            hub.publish(peer.json(PresenceType::Online, label)).await.0,
            204
        );
    }
    assert!(
        eventually(WAIT, async || listed(&second, &alice).await
            && listed(&second, &bob).await)
        .await
    );

    // Alice's last heartbeat before the outage, then the database goes.
    assert_eq!(
        first
            .publish(alice.json(PresenceType::Update, "Alice"))
            .await
            .0,
        204
    );
    server.stop();
    // Bob says goodbye on the first instance; Alice goes on beating there for two TTLs.
    assert_eq!(
        first
            .publish(bob.json(PresenceType::Offline, "Bob"))
            .await
            .0,
        204
    );
    beat_for(&first, &mut alice, "Alice", TTL * 2).await;
    assert!(listed(&second, &alice).await, "{:?}", second.peers().await);
    assert!(listed(&second, &bob).await, "{:?}", second.peers().await);
    assert!(!listed(&second, &carol).await, "Carol fell silent here");

    server.resume();
    let caught_up = eventually(Duration::from_secs(20), async || {
        !listed(&second, &bob).await && listed(&second, &alice).await
    })
    .await;
    assert!(caught_up, "{:?}", second.peers().await);
    // Past the hold's grace, Alice's heartbeats, written again, keep her listed.
    beat_for(&first, &mut alice, "Alice", TTL + Duration::from_secs(2)).await;
    assert!(listed(&second, &alice).await, "{:?}", second.peers().await);

    let mut left = Vec::new();
    while let Some(event) = watcher.next(Duration::from_millis(300)).await {
        let json = event.json();
        if json["type"] == "offline" {
            left.push(json["peerId"].as_str().unwrap_or_default().to_owned());
        }
    }
    assert!(
        !left.contains(&alice.id),
        "Alice was said offline: {left:?}"
    );
    assert!(left.contains(&bob.id), "{left:?}");
    assert!(left.contains(&carol.id), "{left:?}");
}
