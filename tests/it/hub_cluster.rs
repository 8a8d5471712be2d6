//! Three `goop2 rendezvous` processes sharing PostgreSQL behind nginx's round robin, as
//! deploy/ sets them up: publish on one and stream from another, `kill -9` of one during
//! publishes, a rolling restart — and the rolling restart and a database outage behind Caddy
//! running the Caddyfile deploy/ ships.
//!
//! Needs PostgreSQL (`GOOP2_TEST_POSTGRES`, see hub_postgres.rs), nginx and Caddy (`apt-get
//! install nginx caddy`); .ci/run provides them.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use goop2::config::Secret;
use goop2::services::hub::presence::PresenceType;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::support::postgres::{Caddy, Nginx, PrivatePostgres, Seen, Subscriber, TestDatabase};
use crate::support::{
    HubProcess, SseClient, TestIdentity, binary_hub_dir_with, eventually, free_port,
};

const WAIT: Duration = Duration::from_secs(10);

/// One instance: its directory (kept across restarts), its fixed port, the process.
struct Instance {
    dir: tempfile::TempDir,
    port: u16,
    process: Option<HubProcess>,
}

impl Instance {
    fn start(db_url: &str) -> Self {
        let port = free_port();
        let dir = binary_hub_dir_with(|c| {
            c.presence.rendezvous_port = Some(port);
            c.presence.peer_db_url = Secret::new(db_url.to_owned());
            c.presence.trusted_proxies = vec!["127.0.0.1".into()];
            c.presence.ttl_seconds = 30;
            c.presence.publish_burst = 1_000_000;
            c.presence.publish_per_second = 1_000_000;
        });
        let process = Some(HubProcess::start(dir.path()));
        Instance { dir, port, process }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn pid(&self) -> String {
        self.process.as_ref().unwrap().child.id().to_string()
    }

    /// `kill -9`: no flush, no goodbye.
    fn kill(&mut self) {
        let mut process = self.process.take().unwrap();
        process.child.kill().unwrap();
        process.child.wait().unwrap();
    }

    /// SIGTERM, as systemd stops it; waits for the exit.
    async fn stop(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid()])
            .status()
            .unwrap();
        assert!(status.success());
        let mut process = self.process.take().unwrap();
        let exit = tokio::task::spawn_blocking(move || process.child.wait().unwrap())
            .await
            .unwrap();
        assert!(exit.success(), "{exit:?}");
    }

    fn restart(&mut self) {
        self.process = Some(HubProcess::start(self.dir.path()));
    }

    async fn peers(&self) -> Vec<Value> {
        match reqwest::get(format!("{}/peers.json", self.url())).await {
            Ok(response) => response.json().await.unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }
}

async fn cluster(db: &TestDatabase) -> (Vec<Instance>, Nginx) {
    let instances: Vec<Instance> = (0..3).map(|_| Instance::start(&db.url)).collect();
    let ports: Vec<u16> = instances.iter().map(|i| i.port).collect();
    (instances, Nginx::start(&ports))
}

/// Each peer's label as the events seen so far leave it (`None` once offline).
fn view(seen: &Seen) -> HashMap<String, Option<String>> {
    let mut view = HashMap::new();
    for event in &seen.events {
        let json = event.json();
        let peer = json["peerId"].as_str().unwrap_or_default().to_owned();
        let label = match json["type"].as_str() {
            Some("offline") => None,
            _ => json["content"].as_str().map(str::to_owned),
        };
        view.insert(peer, label);
    }
    view
}

/// Peers that publish every `every` through `url`, like peers' heartbeats, each remembering
/// the last label the hub acknowledged. A publish that fails (an instance going away) is
/// simply sent again on the next beat, as a peer's link does.
struct Publishers {
    peers: Vec<TestIdentity>,
    acknowledged: HashMap<String, String>,
    client: reqwest::Client,
}

impl Publishers {
    fn new(count: usize) -> Self {
        Publishers {
            peers: (0..count).map(|_| TestIdentity::new()).collect(),
            acknowledged: HashMap::new(),
            client: reqwest::Client::new(),
        }
    }

    /// One beat of every peer; returns how many were acknowledged.
    async fn beat(&mut self, url: &str, round: usize) -> usize {
        let mut sends = Vec::new();
        for (index, peer) in self.peers.iter_mut().enumerate() {
            let label = format!("peer {index} beat {round}");
            let kind = if round == 0 {
                PresenceType::Online
            } else {
                PresenceType::Update
            };
            let body = peer.json(kind, &label);
            let request = self.client.post(format!("{url}/publish")).body(body).send();
            sends.push(async move {
                let ok = matches!(request.await, Ok(r) if r.status().as_u16() == 204);
                (peer.id.clone(), label, ok)
            });
        }
        let mut acknowledged = 0;
        for (peer, label, ok) in futures_util::future::join_all(sends).await {
            if ok {
                self.acknowledged.insert(peer, label);
                acknowledged += 1;
            }
        }
        acknowledged
    }

    /// Whether `peers` (a peers.json) shows every peer with its last acknowledged label.
    fn all_current(&self, peers: &[Value]) -> bool {
        self.acknowledged.len() == self.peers.len()
            && self.acknowledged.iter().all(|(id, label)| {
                peers
                    .iter()
                    .any(|p| p["peerId"] == id.as_str() && p["content"] == label.as_str())
            })
    }

    fn missing_from(&self, view: &HashMap<String, Option<String>>) -> Vec<String> {
        self.acknowledged
            .iter()
            .filter(|(id, label)| view.get(*id) != Some(&Some((*label).clone())))
            .map(|(id, label)| format!("{label} ({id}): {:?}", view.get(id)))
            .collect()
    }
}

/// A new peer's WebSocket to the hub at `url` (a proxy), its `online` as `label` sent.
async fn online_over_websocket(
    url: &str,
    label: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut peer = TestIdentity::new();
    let ws_url = format!("{}/ws?peer_id={}", url.replace("http://", "ws://"), peer.id);
    let (mut socket, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    socket
        .send(Message::text(peer.json(PresenceType::Online, label)))
        .await
        .unwrap();
    socket
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx_a_publish_on_one_instance_streams_from_the_others() {
    let db = TestDatabase::create().await;
    let (instances, nginx) = cluster(&db).await;
    let mut direct = Vec::new();
    for instance in &instances {
        direct
            .push(SseClient::connect(&format!("{}/events?changes=1", instance.url()), None).await);
    }
    let through_proxy = Subscriber::spawn(&format!("{}/events?changes=1", nginx.url));

    // Published on each instance in turn, seen on every instance within a second.
    for (from, instance) in instances.iter().enumerate() {
        let mut peer = TestIdentity::new();
        let status = reqwest::Client::new()
            .post(format!("{}/publish", instance.url()))
            .body(peer.json(PresenceType::Online, &format!("from {from}")))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status.as_u16(), 204);
        let published = Instant::now();
        for (at, stream) in direct.iter_mut().enumerate() {
            stream
                .wait_for(Duration::from_secs(1), |e| {
                    e.json()["peerId"] == peer.id.as_str()
                })
                .await;
            assert!(
                published.elapsed() < Duration::from_secs(1),
                "instance {at} saw instance {from}'s publish after {:?}",
                published.elapsed()
            );
        }
    }

    // Publishes spread over the instances by the proxy reach every instance.
    let mut publishers = Publishers::new(30);
    assert_eq!(publishers.beat(&nginx.url, 0).await, 30);
    for instance in &instances {
        assert!(
            eventually(WAIT, async || publishers
                .all_current(&instance.peers().await))
            .await,
            "instance on {} lacks peers",
            instance.port
        );
    }
    assert!(
        through_proxy
            .until(WAIT, |seen| publishers.missing_from(&view(seen)).is_empty())
            .await
    );

    // A WebSocket through the proxy: upgraded, its presence seen everywhere, the stream read.
    let mut socket = online_over_websocket(&nginx.url, "Walter over WS").await;
    for instance in &instances {
        assert!(
            eventually(WAIT, async || {
                instance
                    .peers()
                    .await
                    .iter()
                    .any(|p| p["content"] == "Walter over WS")
            })
            .await
        );
    }
    let frame = tokio::time::timeout(WAIT, socket.next()).await.unwrap();
    assert!(matches!(frame, Some(Ok(Message::Text(_)))), "{frame:?}");
    let seen = through_proxy.stop().await;
    assert_eq!(seen.resets, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_an_instance_during_publishes_loses_no_acknowledged_publish() {
    let db = TestDatabase::create().await;
    let (mut instances, nginx) = cluster(&db).await;
    // Three subscribers through the proxy: round robin puts one on each instance.
    let subscribers: Vec<Subscriber> = (0..3)
        .map(|_| Subscriber::spawn(&format!("{}/events", nginx.url)))
        .collect();
    for subscriber in &subscribers {
        assert!(subscriber.until(WAIT, |s| s.connections == 1).await);
    }
    let mut publishers = Publishers::new(30);
    let mut failed = 0;
    for round in 0..24 {
        let acknowledged = publishers.beat(&nginx.url, round).await;
        failed += 30 - acknowledged;
        if round == 8 {
            instances[1].kill();
            // A publish is acknowledged once committed: before any further beat could repair
            // it, both survivors read every acknowledged state (a second is the cross-instance
            // promise).
            for instance in [&instances[0], &instances[2]] {
                let current = eventually(Duration::from_secs(3), async || {
                    publishers.all_current(&instance.peers().await)
                })
                .await;
                assert!(
                    current,
                    "instance on {} lacks an acknowledged publish right after the kill",
                    instance.port
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    // Every peer's last acknowledged state is on both survivors and in every stream.
    for instance in [&instances[0], &instances[2]] {
        let current = eventually(WAIT, async || {
            publishers.all_current(&instance.peers().await)
        })
        .await;
        assert!(current, "instance on {} lost a publish", instance.port);
    }
    let mut moved = 0;
    for subscriber in subscribers {
        let complete = subscriber
            .until(WAIT, |seen| publishers.missing_from(&view(seen)).is_empty())
            .await;
        let seen = subscriber.stop().await;
        assert!(
            complete,
            "a subscriber lacks {:?}",
            publishers.missing_from(&view(&seen))
        );
        // Resumed on another instance from its Last-Event-ID, without starting over.
        assert_eq!(seen.resets, 0, "a stream was reset");
        if seen.connections > 1 {
            moved += 1;
        }
    }
    assert!(moved >= 1, "the killed instance's subscriber moved");
    eprintln!("publishes refused while the proxy noticed the kill: {failed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_behind_nginx_loses_no_peer() {
    let db = TestDatabase::create().await;
    let (instances, nginx) = cluster(&db).await;
    let url = nginx.url.clone();
    rolling_restart_loses_no_peer(instances, &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_behind_the_shipped_caddyfile_loses_no_peer() {
    let db = TestDatabase::create().await;
    let instances: Vec<Instance> = (0..3).map(|_| Instance::start(&db.url)).collect();
    let ports: Vec<u16> = instances.iter().map(|i| i.port).collect();
    let caddy = Caddy::start(&ports);
    // Every instance answers through Caddy before the test leans on it.
    let client = reqwest::Client::new();
    let healthy = eventually(WAIT, async || {
        matches!(client.get(format!("{}/healthz", caddy.url)).send().await,
            Ok(r) if r.status().is_success())
    })
    .await;
    assert!(healthy, "no healthy hub behind Caddy: {}", caddy.log());
    rolling_restart_loses_no_peer(instances, &caddy.url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_the_shipped_caddyfile_instances_that_all_lost_the_database_still_serve() {
    let server = PrivatePostgres::start();
    let instances: Vec<Instance> = (0..3).map(|_| Instance::start(&server.url)).collect();
    let ports: Vec<u16> = instances.iter().map(|i| i.port).collect();
    let caddy = Caddy::start(&ports);
    let client = reqwest::Client::new();
    let health = async || {
        let response = client
            .get(format!("{}/healthz", caddy.url))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    };
    assert!(
        eventually(WAIT, async || health().await.0 == 200).await,
        "no healthy hub behind Caddy: {}",
        caddy.log()
    );
    let mut publishers = Publishers::new(10);
    assert_eq!(publishers.beat(&caddy.url, 0).await, 10);

    server.stop();
    // Each instance's /healthz says so, and Caddy's health checks take every one of them out
    // of the rotation.
    let all_out = eventually(Duration::from_secs(30), async || {
        let log = caddy.log();
        ports.iter().all(|port| {
            log.lines().any(|line| {
                line.contains("unexpected status code")
                    && line.contains(&format!("\"127.0.0.1:{port}\""))
            })
        })
    })
    .await;
    assert!(
        all_out,
        "Caddy did not see every /healthz fail: {}",
        caddy.log()
    );

    // Yet the instances serve from memory, and Caddy still sends them every kind of request.
    let (status, reason) = health().await;
    assert_eq!(status, 503, "{reason}");
    assert!(reason.starts_with("the peer database"), "{reason}");
    assert_eq!(
        publishers.beat(&caddy.url, 1).await,
        10,
        "publishes through Caddy: {}",
        caddy.log()
    );
    let peers = client
        .get(format!("{}/peers.json", caddy.url))
        .send()
        .await
        .unwrap();
    assert_eq!(peers.status().as_u16(), 200);
    let mut stream = SseClient::connect(&format!("{}/events", caddy.url), None).await;
    assert_eq!(stream.status, 200);
    stream
        .wait_for(WAIT, |e| e.json()["type"] == "online")
        .await;
    let mut socket = online_over_websocket(&caddy.url, "Walter").await;
    let frame = tokio::time::timeout(WAIT, socket.next()).await.unwrap();
    assert!(matches!(frame, Some(Ok(Message::Text(_)))), "{frame:?}");

    // Back with the database: in the rotation again, and every instance has every last beat.
    server.resume();
    assert!(
        eventually(Duration::from_secs(30), async || health().await.0 == 200).await,
        "{:?}",
        health().await
    );
    for instance in &instances {
        let current = eventually(WAIT, async || {
            publishers.all_current(&instance.peers().await)
        })
        .await;
        assert!(current, "instance on {} is behind", instance.port);
    }
}

/// Stops and restarts each instance in turn behind the proxy at `url` while 30 peers keep
/// publishing and three subscribers stream: no instance that is up ever lists fewer peers, and
/// every subscriber ends with every peer's last label, never told a peer left, never reset.
async fn rolling_restart_loses_no_peer(mut instances: Vec<Instance>, url: &str) {
    let subscribers: Vec<Subscriber> = (0..3)
        .map(|_| Subscriber::spawn(&format!("{url}/events?changes=1")))
        .collect();
    let mut publishers = Publishers::new(30);
    assert_eq!(publishers.beat(url, 0).await, 30);
    for instance in &instances {
        let all = eventually(WAIT, async || instance.peers().await.len() == 30).await;
        assert!(
            all,
            "{} lists {}: {}",
            instance.port,
            instance.peers().await.len(),
            instance.process.as_ref().unwrap().output()
        );
    }

    // Every stream is open (it has seen every peer) before the first instance goes: a stream
    // opened later could land on an instance already restarted and never need to move.
    for subscriber in &subscribers {
        let open = subscriber
            .until(WAIT, |seen| publishers.missing_from(&view(seen)).is_empty())
            .await;
        assert!(open, "a subscriber's stream opened");
    }

    let mut round = 1;
    for index in 0..instances.len() {
        instances[index].stop().await;
        // Heartbeats go on while it is down.
        for _ in 0..3 {
            publishers.beat(url, round).await;
            round += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        instances[index].restart();
        // Back with every peer at once (restored from the database), before taking traffic.
        let restored = instances[index].peers().await;
        assert_eq!(
            restored.len(),
            30,
            "restarted instance {index}: {restored:?}"
        );
        for _ in 0..3 {
            publishers.beat(url, round).await;
            round += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // No instance that is up ever lists fewer peers.
        for instance in &instances {
            assert_eq!(instance.peers().await.len(), 30);
        }
    }
    for instance in &instances {
        let current = eventually(WAIT, async || {
            publishers.all_current(&instance.peers().await)
        })
        .await;
        assert!(current, "instance on {} is behind", instance.port);
    }
    for subscriber in subscribers {
        let complete = subscriber
            .until(WAIT, |seen| publishers.missing_from(&view(seen)).is_empty())
            .await;
        let seen = subscriber.stop().await;
        assert!(complete, "{:?}", publishers.missing_from(&view(&seen)));
        assert!(
            seen.events.iter().all(|e| e.json()["type"] != "offline"),
            "a subscriber was told a peer left"
        );
        assert_eq!(seen.resets, 0, "a stream was reset");
        assert!(seen.connections > 1, "every stream moved at least once");
    }
}
