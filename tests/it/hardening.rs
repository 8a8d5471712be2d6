//! What an attack on the hub broke, each kept fixed: partial request heads that held
//! connections, a WebSocket ping flood, a crowd of wrong logins, limits that an IPv6 client
//! escaped by changing its address, timestamps outside any sane range, an oversized header,
//! and bans acknowledged before they were stored.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use goop2::config::Secret;
use goop2::services::auth;
use goop2::services::hub::presence::PresenceType;
use goop2::store::hub::HubStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support::{
    HubProcess, SseClient, TestHub, TestIdentity, binary_hub_dir_with, peak_rss_kib,
};

const WAIT: Duration = Duration::from_secs(5);

/// Reads until the server closes the connection; `None` if it is still open after `wait`.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> Option<Vec<u8>> {
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(seen),
            Ok(Ok(read)) => seen.extend_from_slice(&buffer[..read]),
            Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_request_head_is_let_go_when_its_client_leaves() {
    // A header deadline far away: only noticing the client's leaving can close these.
    let hub =
        TestHub::spawn_with(|_| {}, |o| o.header_read_timeout = Duration::from_secs(120)).await;
    for partial in [
        &b"G"[..],
        b"GET /ev",
        b"GET /events HTTP/1.1\r\nHost: hub\r\n",
        b"GET /events?changes=1 HTTP/1.1\r\nHost: hub\r\nLast-Event-ID: 1",
    ] {
        let mut stream = TcpStream::connect(hub.addr).await.unwrap();
        stream.write_all(partial).await.unwrap();
        stream.shutdown().await.unwrap();
        assert!(
            closed_within(&mut stream, WAIT).await.is_some(),
            "the hub still holds a connection whose client sent {:?} and left",
            String::from_utf8_lossy(partial)
        );
    }
    // Many of them leave nothing behind: the hub still answers at once.
    let mut left = Vec::new();
    for _ in 0..300 {
        let mut stream = TcpStream::connect(hub.addr).await.unwrap();
        stream.write_all(b"GET /e").await.unwrap();
        stream.shutdown().await.unwrap();
        left.push(stream);
    }
    for stream in &mut left {
        assert!(closed_within(stream, WAIT).await.is_some());
    }
    let health = tokio::time::timeout(WAIT, reqwest::get(format!("{}/healthz", hub.url)))
        .await
        .expect("the hub answers")
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_request_head_is_closed_at_the_header_deadline() {
    let hub = TestHub::spawn_with(|_| {}, |o| o.header_read_timeout = Duration::from_secs(1)).await;
    for partial in [
        &b""[..],
        b"G",
        b"GET /events HTTP/1.1\r\nHost: hub\r\n",
        // Not for the stream route: hyper's own deadline.
        b"POST /publish HTTP/1.1\r\nHost: hub\r\n",
    ] {
        let mut stream = TcpStream::connect(hub.addr).await.unwrap();
        stream.write_all(partial).await.unwrap();
        // The client stays, silent: the deadline alone closes it.
        assert!(
            closed_within(&mut stream, WAIT).await.is_some(),
            "a connection that sent {:?} outlived a 1 s header deadline",
            String::from_utf8_lossy(partial)
        );
    }
    // A complete request sent slowly, byte by byte inside the deadline, is still served.
    let mut stream = TcpStream::connect(hub.addr).await.unwrap();
    for byte in b"GET /events HTTP/1.1\r\nHost: hub\r\n\r\n" {
        stream.write_all(&[*byte]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut head = [0u8; 64];
    let read = tokio::time::timeout(WAIT, stream.read(&mut head))
        .await
        .unwrap()
        .unwrap();
    assert!(head[..read].starts_with(b"HTTP/1.1 200 OK"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_ping_flood_closes_the_socket_and_others_are_served() {
    let hub = TestHub::spawn().await;
    let mut watcher = SseClient::connect(&format!("{}/events?changes=1", hub.url), None).await;
    let flooder = TestIdentity::new();
    let url = format!("ws://{}/ws?peer_id={}", hub.addr, flooder.id);
    let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    // Pings as fast as the socket takes them, never reading the pongs.
    let mut sent = 0;
    for _ in 0..5_000 {
        if socket
            .send(Message::Ping(vec![7; 100].into()))
            .await
            .is_err()
        {
            break;
        }
        sent += 1;
    }
    assert!(sent > 20, "only {sent} pings went out");
    // Reading now: a few pongs, then the hub's close.
    let mut pongs = 0;
    let close = tokio::time::timeout(WAIT, async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Pong(_))) => pongs += 1,
                Some(Ok(Message::Close(frame))) => break frame,
                Some(Ok(_)) => {}
                Some(Err(err)) => panic!("the socket failed instead of closing: {err}"),
                None => panic!("the socket ended without a close frame"),
            }
        }
    })
    .await
    .expect("the hub closes a socket that floods it with pings")
    .expect("a close frame with a code");
    assert_eq!(close.code, CloseCode::Policy);
    assert_eq!(close.reason.as_str(), "too many pings");
    assert!(pongs <= 25, "{pongs} pongs answered a flood");

    // Everybody else is served as before.
    let mut alice = TestIdentity::new();
    assert_eq!(
        hub.publish(alice.json(PresenceType::Online, "Alice"))
            .await
            .0,
        204
    );
    let online = watcher.next_of_type("online").await;
    assert_eq!(online["peerId"], alice.id.as_str());
}

async fn wrong_login(client: &reqwest::Client, url: &str, from: &str) -> (u16, String) {
    let response = client
        .post(format!("{url}/admin/login"))
        .header("x-forwarded-for", from)
        .form(&[("password", "not the password")])
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_of_wrong_logins_is_bounded_per_client_overall_and_in_memory() {
    let hash = auth::hash_password("the real password").unwrap();
    let dir = binary_hub_dir_with(|c| {
        c.presence.admin_password = Secret::new(hash);
        c.presence.trusted_proxies = vec!["127.0.0.1".into()];
    });
    let hub = HubProcess::start(dir.path());
    let client = reqwest::Client::new();

    // An IPv6 client counts by its /64: new addresses in it share one budget.
    for n in 1..=5 {
        let (status, _) = wrong_login(&client, &hub.url, &format!("2001:db8:7:7::{n}")).await;
        assert_eq!(status, 401, "attempt {n}");
    }
    let (status, page) = wrong_login(&client, &hub.url, "2001:db8:7:7:ffff::6").await;
    assert_eq!(status, 429, "the sixth address of the /64");
    assert!(page.contains("Too many attempts."), "{page}");
    let (status, _) = wrong_login(&client, &hub.url, "2001:db8:7:8::1").await;
    assert_eq!(status, 401, "another /64 has its own budget");

    // 150 addresses at once, each within its own budget.
    let before = peak_rss_kib(hub.child.id());
    let attempts = (0..150).map(|n| {
        let client = client.clone();
        let url = hub.url.clone();
        async move { wrong_login(&client, &url, &format!("198.51.{}.{}", n / 200, n % 200)).await }
    });
    let answers = futures_util::future::join_all(attempts).await;
    let grew_mib = (peak_rss_kib(hub.child.id()).saturating_sub(before)) / 1024;

    let checked = answers.iter().filter(|(status, _)| *status == 401).count();
    let overall: Vec<_> = answers
        .iter()
        .filter(|(status, page)| *status == 429 && page.contains("from everyone together"))
        .collect();
    let busy = answers.iter().filter(|(status, _)| *status == 503).count();
    assert_eq!(
        checked + overall.len() + busy,
        answers.len(),
        "every attempt is a wrong password, over the overall budget, or busy: {:?}",
        answers.iter().map(|a| a.0).collect::<Vec<_>>()
    );
    // The overall budget is 30 attempts at once, 6 of them spent above.
    assert!(
        checked <= 24 + 2,
        "{checked} passwords were checked for a crowd"
    );
    assert!(overall.len() >= 120, "{} refused overall", overall.len());
    // Two argon2 checks run at once (about 19 MiB each), however many arrive.
    assert!(
        grew_mib < 60,
        "the hub's peak memory grew by {grew_mib} MiB during the crowd"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_and_streams_count_an_ipv6_client_by_its_64() {
    let hub = TestHub::spawn_with(
        |c| {
            c.presence.trusted_proxies = vec!["127.0.0.1".into()];
            c.presence.publish_burst = 3;
            c.presence.publish_per_second = 1;
            c.presence.max_streams_per_ip = 2;
        },
        |_| {},
    )
    .await;
    let client = reqwest::Client::new();
    let publish = |from: &'static str| {
        let client = client.clone();
        let url = hub.url.clone();
        let mut peer = TestIdentity::new();
        async move {
            client
                .post(format!("{url}/publish"))
                .header("x-forwarded-for", from)
                .body(peer.json(PresenceType::Online, "v6"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    for from in ["2001:db8:5:6::1", "2001:db8:5:6::2", "2001:db8:5:6:abcd::3"] {
        assert_eq!(publish(from).await, 204, "{from}");
    }
    assert_eq!(
        publish("2001:db8:5:6::4").await,
        429,
        "a fourth address of the /64"
    );
    assert_eq!(publish("2001:db8:5:7::1").await, 204, "another /64");
    assert_eq!(publish("::ffff:192.0.2.1").await, 204);

    let stream = |from: &'static str| {
        let url = format!("{}/events", hub.url);
        async move { SseClient::connect_with(&url, &[("x-forwarded-for", from)]).await }
    };
    let first = stream("2001:db8:9:9::1").await;
    let second = stream("2001:db8:9:9::2").await;
    assert_eq!((first.status, second.status), (200, 200));
    assert_eq!(stream("2001:db8:9:9::3").await.status, 429);
    assert_eq!(stream("2001:db8:9:a::1").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_outside_a_sane_range_are_refused_before_any_arithmetic() {
    let hub = TestHub::spawn().await;
    let mut peer = TestIdentity::new();
    let now = goop2::services::hub::unix_ms();
    for ts in [i64::MIN + now, i64::MIN, -1, (1 << 53) + 1, i64::MAX] {
        let mut presence = peer.unsigned(PresenceType::Online, "Skewed");
        presence.ts = Some(ts);
        presence.sign(&peer.keypair);
        let (status, body) = hub.publish(serde_json::to_string(&presence).unwrap()).await;
        assert_eq!(status, 400, "ts {ts}: {body}");
        assert_eq!(
            body["error"],
            format!("ts {ts} is not milliseconds since 1970 (0 to 2^53 − 1)")
        );
    }
    assert!(hub.peers().await.is_empty());
    assert!(
        hub.metrics()
            .await
            .contains("goop_hub_rejects_total{reason=\"bad_ts\"} 5"),
        "{}",
        hub.metrics().await
    );
    // A timestamp of now still passes.
    assert_eq!(
        hub.publish(peer.json(PresenceType::Online, "Fine")).await.0,
        204
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_heads_over_64_kib_are_refused() {
    let hub = TestHub::spawn().await;
    let client = reqwest::Client::new();
    let fits = client
        .get(format!("{}/healthz", hub.url))
        .header("x-filler", "a".repeat(60 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(fits.status().as_u16(), 200);
    for size in [65 * 1024, 100 * 1024] {
        let answer = client
            .get(format!("{}/healthz", hub.url))
            .header("x-filler", "a".repeat(size))
            .send()
            .await;
        match answer {
            Ok(response) => assert_eq!(response.status().as_u16(), 431, "{size} bytes"),
            // The hub may close the connection before the client finished sending.
            Err(err) => assert!(err.is_request() || err.is_body(), "{err}"),
        }
    }
    // The same head on every kind of route, sent raw.
    for head in [
        "GET /events HTTP/1.1",
        "GET /ws?peer_id=x HTTP/1.1",
        "POST /publish HTTP/1.1",
        "GET /admin HTTP/1.1",
    ] {
        let mut stream = TcpStream::connect(hub.addr).await.unwrap();
        let filler = "b".repeat(100 * 1024);
        let request = format!("{head}\r\nHost: hub\r\nX-Filler: {filler}\r\n\r\n");
        let _ = stream.write_all(request.as_bytes()).await;
        let answer = closed_within(&mut stream, WAIT).await.expect("answered");
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
            "{head}: {}",
            answer.lines().next().unwrap_or("")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_is_in_the_database_when_it_is_acknowledged() {
    let shared = tempfile::tempdir().unwrap();
    let db = shared.path().join("peers.db");
    let path = db.display().to_string();
    let hub = TestHub::spawn_with(|c| c.presence.peer_db_path = path.clone(), |_| {}).await;
    let peer = TestIdentity::new();
    let id: libp2p_identity::PeerId = peer.id.parse().unwrap();

    hub.hub()
        .ban(id, Duration::from_secs(3600))
        .await
        .expect("the ban is stored");
    // No waiting: acknowledged means written.
    let store = HubStore::open(&db).await.unwrap();
    let bans = store.bans(goop2::services::hub::unix_ms()).await.unwrap();
    assert!(
        bans.iter().any(|(banned, _)| banned == &peer.id),
        "{bans:?}"
    );

    assert_eq!(hub.hub().unban(&id).await, Ok(true));
    let bans = store.bans(goop2::services::hub::unix_ms()).await.unwrap();
    assert!(
        bans.iter().all(|(banned, _)| banned != &peer.id),
        "{bans:?}"
    );
}
