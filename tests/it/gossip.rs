//! Hostile gossip: a libp2p node this suite controls (plain GossipSub, none of our checks) floods
//! a peer with fake presence, sends invalid presence for it to pass on, and replays a stopped
//! peer's captured presence. Each time a well-behaved peer keeps working, and the victim's
//! table, memory and log stay bounded.

use std::time::Duration;

use futures_util::StreamExt;
use goop2::config::Config;
use goop2::identity::Keypair;
use goop2::services::hub::presence::{Presence, PresenceType};
use goop2::services::hub::unix_ms;
use goop2::services::node::protocols::Served;
use goop2::services::node::{GossipLimits, Node, NodeEvent, NodeOptions};
use goop2::services::presence::peer_table::PeerState;
use goop2::store::peer::{CachedPeer, PeerStore};
use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity, ValidationMode};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, SwarmBuilder, noise, tcp, yamux};
use tokio::sync::{mpsc, oneshot};

use crate::support::{
    PeerDir, PeerProcess, TestPeer, eventually, free_port, get_text, lists, loopback_tcp,
    peak_rss_kib, short_ttl,
};

const TOPIC: &str = "goop.presence.v1";
const WAIT: Duration = Duration::from_secs(15);

enum RawCommand {
    Dial(Multiaddr),
    /// Publishes the bytes; false while no subscriber is known or the queue is full.
    Publish(Vec<u8>, oneshot::Sender<bool>),
}

/// A plain GossipSub node on loopback: it signs what it publishes with its own key (as the
/// protocol requires) but checks nothing of what it relays or receives.
struct RawGossip {
    peer_id: PeerId,
    commands: mpsc::Sender<RawCommand>,
    /// The data of every message received (bounded; the tests read it as they go).
    received: mpsc::Receiver<Vec<u8>>,
    /// Messages read while waiting for another, kept for [`RawGossip::drain`].
    passed_over: Vec<Vec<u8>>,
}

impl RawGossip {
    fn start() -> Self {
        let mut swarm = SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .unwrap()
            .with_behaviour(|key| {
                let config = gossipsub::ConfigBuilder::default()
                    .heartbeat_interval(Duration::from_secs(1))
                    .validation_mode(ValidationMode::Strict)
                    .max_transmit_size(64 * 1024)
                    .connection_handler_queue_len(20_000)
                    .build()
                    .unwrap();
                gossipsub::Behaviour::<
                    gossipsub::IdentityTransform,
                    gossipsub::AllowAllSubscriptionFilter,
                >::new(MessageAuthenticity::Signed(key.clone()), config)
                .unwrap()
            })
            .unwrap()
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
        let topic = IdentTopic::new(TOPIC);
        swarm.behaviour_mut().subscribe(&topic).unwrap();
        let peer_id = *swarm.local_peer_id();
        let (commands, mut command_rx) = mpsc::channel::<RawCommand>(64);
        let (delivered, received) = mpsc::channel(8192);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    command = command_rx.recv() => match command {
                        Some(RawCommand::Dial(addr)) => swarm.dial(addr).unwrap(),
                        Some(RawCommand::Publish(data, reply)) => {
                            let sent = swarm.behaviour_mut().publish(topic.clone(), data).is_ok();
                            let _ = reply.send(sent);
                        }
                        None => return,
                    },
                    event = swarm.select_next_some() => {
                        if let SwarmEvent::Behaviour(gossipsub::Event::Message { message, .. }) = event {
                            let _ = delivered.try_send(message.data);
                        }
                    }
                }
            }
        });
        RawGossip {
            peer_id,
            commands,
            received,
            passed_over: Vec::new(),
        }
    }

    async fn dial(&self, addr: Multiaddr) {
        self.commands.send(RawCommand::Dial(addr)).await.unwrap();
    }

    /// Publishes `data`, retrying for a while until a subscriber is known and the queue has
    /// room; false if it never was.
    async fn publish(&self, data: Vec<u8>) -> bool {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (reply, sent) = oneshot::channel();
            let command = RawCommand::Publish(data.clone(), reply);
            self.commands.send(command).await.unwrap();
            if sent.await.unwrap() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Everything received so far.
    fn drain(&mut self) -> Vec<Vec<u8>> {
        let mut all = std::mem::take(&mut self.passed_over);
        while let Ok(data) = self.received.try_recv() {
            all.push(data);
        }
        all
    }

    /// Waits until a received message satisfies `pred`; returns it.
    async fn wait_for(&mut self, wait: Duration, pred: impl Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.received.recv()).await {
                Ok(Some(data)) if pred(&data) => return Some(data),
                Ok(Some(data)) => self.passed_over.push(data),
                _ => return None,
            }
        }
    }
}

/// The peer ID a message names, if it is presence JSON.
fn named_peer(data: &[u8]) -> Option<String> {
    serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .and_then(|value| value["peerId"].as_str().map(str::to_owned))
}

/// Signed `online` presence for `keypair`, labelled `label`, at `ts`.
fn signed(keypair: &Keypair, label: &str, ts: i64) -> Presence {
    let mut presence = Presence::new(PresenceType::Online, keypair.public().to_peer_id());
    presence.content = Some(label.into());
    presence.ts = Some(ts);
    presence.sign(keypair);
    presence
}

fn node_options(gossip: GossipLimits) -> NodeOptions {
    NodeOptions {
        listen_ip: "127.0.0.1".parse().unwrap(),
        listen_port: 0,
        mdns: false,
        mdns_tag: "goop-mdns".into(),
        presence_topic: TOPIC.into(),
        limits: Default::default(),
        gossip,
        relay: None,
    }
}

async fn start_node_with(gossip: GossipLimits) -> (Node, mpsc::Receiver<NodeEvent>, Keypair) {
    let keypair = Keypair::generate_ed25519();
    let served = Served {
        site: None,
        label: tokio::sync::watch::channel("a peer".to_owned()).1,
        avatar: None,
        data: None,
    };
    let (node, events) = Node::start(keypair.clone(), node_options(gossip), served)
        .await
        .unwrap();
    (node, events, keypair)
}

async fn start_node() -> (Node, Keypair) {
    let (node, mut events, keypair) = start_node_with(GossipLimits::default()).await;
    // Nobody reads these here; keep the queue moving.
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    (node, keypair)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_presence_is_not_passed_on_and_its_sender_loses_standing() {
    let (victim, _) = start_node().await;
    let (honest, honest_key) = start_node().await;
    let attacker = RawGossip::start();
    let mut third = RawGossip::start();
    let victim_addr = loopback_tcp(&victim).await;
    attacker.dial(victim_addr.clone()).await;
    third.dial(victim_addr.clone()).await;
    honest.dial(victim_addr).await.unwrap();

    // The victim passes good presence on: the honest peer's reaches the third node through it.
    let honest_id = honest.peer_id().to_base58();
    let mut passed_on = None;
    for _ in 0..50 {
        let _ = honest
            .publish_presence(&signed(&honest_key, "Honest", unix_ms()))
            .await;
        passed_on = third
            .wait_for(Duration::from_millis(200), |data| {
                named_peer(data).as_deref() == Some(honest_id.as_str())
            })
            .await;
        if passed_on.is_some() {
            break;
        }
    }
    assert!(passed_on.is_some(), "the mesh formed and relays good news");

    // 200 messages with a signature by another key, 200 that are not JSON.
    let forger = Keypair::generate_ed25519();
    for n in 0..200 {
        let mut forged = signed(
            &Keypair::generate_ed25519(),
            &format!("forged {n}"),
            unix_ms(),
        );
        forged.sign(&forger);
        assert!(attacker.publish(serde_json::to_vec(&forged).unwrap()).await);
        let garbage = format!("not json {n} {}", "x".repeat(100)).into_bytes();
        assert!(attacker.publish(garbage).await);
    }

    // Meanwhile the honest peer keeps being heard, through the victim.
    let mut heard_again = false;
    for _ in 0..50 {
        let fresh = signed(&honest_key, "Honest, later", unix_ms());
        let _ = honest.publish_presence(&fresh).await;
        if third
            .wait_for(Duration::from_millis(200), |data| {
                String::from_utf8_lossy(data).contains("Honest, later")
            })
            .await
            .is_some()
        {
            heard_again = true;
            break;
        }
    }
    assert!(heard_again, "the honest peer is still relayed");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let relayed: Vec<String> = third
        .drain()
        .iter()
        .map(|data| String::from_utf8_lossy(data).into_owned())
        .filter(|text| text.contains("forged") || text.starts_with("not json"))
        .collect();
    assert!(
        relayed.is_empty(),
        "{} invalid messages were passed on, e.g. {:.80}",
        relayed.len(),
        relayed[0]
    );
    let score = victim.gossip_score(attacker.peer_id).await.unwrap();
    assert!(
        score.is_some_and(|score| score < -80.0),
        "the sender of invalid presence is below the graylist threshold: {score:?}"
    );
    let honest_score = victim.gossip_score(honest.peer_id()).await.unwrap();
    assert!(
        honest_score.is_some_and(|score| score >= 0.0),
        "{honest_score:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_neighbour_is_heard_at_its_rate_and_no_faster() {
    let limits = GossipLimits {
        burst: 20,
        per_second: 5,
    };
    let (victim, mut events, _) = start_node_with(limits).await;
    let (honest, honest_key) = start_node().await;
    let attacker = RawGossip::start();
    let victim_addr = loopback_tcp(&victim).await;
    attacker.dial(victim_addr.clone()).await;
    honest.dial(victim_addr).await.unwrap();

    // 200 valid messages, each from a new key, as fast as the attacker can sign them.
    let started = tokio::time::Instant::now();
    for n in 0..200 {
        let fake = signed(
            &Keypair::generate_ed25519(),
            &format!("fake {n}"),
            unix_ms(),
        );
        assert!(attacker.publish(serde_json::to_vec(&fake).unwrap()).await);
    }
    // Meanwhile the honest peer, on its own connection, is heard.
    let honest_id = honest.peer_id();
    let mut honest_heard = false;
    let mut believed = 0;
    let mut over_rate = 0;
    // Until all 200 are answered (or, on a busy machine, for at most 30 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !honest_heard || (believed + over_rate < 200 && tokio::time::Instant::now() < deadline) {
        let _ = honest
            .publish_presence(&signed(&honest_key, "Honest", unix_ms()))
            .await;
        let wait = tokio::time::sleep(Duration::from_millis(200));
        tokio::pin!(wait);
        loop {
            tokio::select! {
                _ = &mut wait => break,
                event = events.recv() => match event.expect("the node runs") {
                    NodeEvent::Presence { via, .. } if via == attacker.peer_id => believed += 1,
                    NodeEvent::Presence { presence, .. } if presence.peer_id == honest_id => {
                        honest_heard = true
                    }
                    NodeEvent::PresenceRefused { via, reason } if via == attacker.peer_id => {
                        assert_eq!(reason.reason(), "rate_limited");
                        over_rate += 1;
                    }
                    _ => {}
                },
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the honest peer is heard within a minute"
        );
    }
    let seconds = started.elapsed().as_secs() + 1;
    assert!(
        believed <= 20 + 5 * seconds,
        "{believed} of 200 believed in {seconds} s from one neighbour (burst 20, 5 a second)"
    );
    assert!(over_rate > 0, "the rest was refused as over the rate");
}

/// What the peers of these tests share: no console, a 2 s TTL, the network tag `tag`.
fn lan_peer(tag: &str) -> impl Fn(&mut Config) + Copy {
    move |c| {
        short_ttl(c, 2);
        c.viewer.http_addr = String::new();
        c.p2p.mdns_tag = tag.into();
    }
}

fn unique_tag() -> String {
    format!("gossip-{}", rand::random::<u32>())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_peers_captured_presence_replayed_keeps_it_offline() {
    let tag = unique_tag();
    let victim_dir = PeerDir::new("Victim", lan_peer(&tag));
    let bob_dir = PeerDir::new("Bob", lan_peer(&tag));
    let carol_dir = PeerDir::new("Carol", lan_peer(&tag));
    let victim = TestPeer::start(victim_dir).await;
    let bob = TestPeer::start(bob_dir).await;
    let carol = TestPeer::start(carol_dir).await;
    let victim_addr = loopback_tcp(&victim.node).await;
    bob.node.dial(victim_addr.clone()).await.unwrap();
    carol.node.dial(victim_addr.clone()).await.unwrap();
    let mut attacker = RawGossip::start();
    attacker.dial(loopback_tcp(&bob.node).await).await;
    attacker.dial(victim_addr).await;

    let bob_id = bob.peer_id.to_base58();
    let carol_id = carol.peer_id.to_base58();
    let (bob_peer, carol_peer) = (bob.peer_id, carol.peer_id);
    assert!(lists(&victim, &bob_id, PeerState::Online).await);
    assert!(lists(&victim, &carol_id, PeerState::Online).await);
    // The attacker captures one of Bob's heartbeats.
    let captured = attacker
        .wait_for(WAIT, |data| {
            named_peer(data).as_deref() == Some(bob_id.as_str())
        })
        .await
        .expect("Bob's presence reaches the attacker");
    let bob_key = goop2::identity::load_or_create(&bob.dir().path().join("data/identity.key"))
        .unwrap()
        .keypair;

    // Bob stops; the victim lists him offline, then forgets him (TTL 2 s, grace 6 s).
    bob.shutdown().await;
    assert!(lists(&victim, &bob_id, PeerState::Offline).await);
    assert!(
        eventually(WAIT, async || victim.table.entry(&bob_peer).await.is_none()).await,
        "the victim forgets Bob after the grace"
    );

    // The captured heartbeat, and one signed 314 s ago, replayed for 5 s.
    let old = serde_json::to_vec(&signed(&bob_key, "Bob", unix_ms() - 314_000)).unwrap();
    let replays = tokio::time::Instant::now();
    while replays.elapsed() < Duration::from_secs(5) {
        assert!(attacker.publish(captured.clone()).await);
        assert!(attacker.publish(old.clone()).await);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let listed = victim.table.entry(&bob_peer).await;
        assert!(
            listed
                .as_ref()
                .is_none_or(|e| e.state == PeerState::Offline),
            "a replay brought Bob back: {listed:?}"
        );
    }
    // Carol, who is still there, is listed all along.
    assert_eq!(
        victim.table.entry(&carol_peer).await.map(|e| e.state),
        Some(PeerState::Online)
    );
    carol.shutdown().await;
    victim.shutdown().await;
}

/// The fake peers' label: 4 KiB, the most a message may carry.
fn flood_label(n: usize) -> String {
    let head = format!("FLOODLABEL-{n}-");
    format!("{head}{}", "x".repeat(4096 - head.len()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_fake_peers_is_bounded_and_a_known_peer_keeps_its_place() {
    const FLOOD: usize = 800;
    const STRANGERS: u32 = 200;
    let tag = unique_tag();
    let console_port = free_port();
    let p2p_port = free_port();
    let victim_dir = PeerDir::new("Victim", |c| {
        lan_peer(&tag)(c);
        c.viewer.http_addr = format!("127.0.0.1:{console_port}");
        c.p2p.listen_port = p2p_port;
        c.presence.ttl_seconds = 20;
        c.presence.heartbeat_seconds = 1;
        c.presence.max_gossip_strangers = STRANGERS;
    });
    // Peers the victim knew before: they must outlive the flood in its cache.
    let known: Vec<CachedPeer> = (0..5)
        .map(|n| CachedPeer {
            peer_id: Keypair::generate_ed25519()
                .public()
                .to_peer_id()
                .to_base58(),
            label: format!("Known {n}"),
            email: String::new(),
            avatar_hash: None,
            addrs: "[]".into(),
            verified: false,
            last_seen_ms: unix_ms() - 60_000,
        })
        .collect();
    {
        let store = PeerStore::open(&victim_dir.path().join("data.db"))
            .await
            .unwrap();
        store.remember_peers(&known).await.unwrap();
    }
    let mut victim = PeerProcess::start(victim_dir.path());
    let console = format!("http://127.0.0.1:{console_port}");
    let victim_addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/{p2p_port}/p2p/{}", victim.peer_id)
        .parse()
        .unwrap();

    // A well-behaved peer on the victim's LAN.
    let friend = TestPeer::spawn("Friend", lan_peer(&tag)).await;
    let friend_id = friend.peer_id.to_base58();
    friend.node.dial(victim_addr.clone()).await.unwrap();
    let client = reqwest::Client::new();
    let listed_online = async |id: &str| {
        let peer: serde_json::Value = match client
            .get(format!("{console}/api/peers?limit=1000"))
            .send()
            .await
        {
            Ok(response) => response
                .json::<Vec<serde_json::Value>>()
                .await
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        }
        .into_iter()
        .find(|p| p["peer_id"] == id)
        .unwrap_or_default();
        peer["state"] == "online"
    };
    assert!(eventually(WAIT, async || listed_online(&friend_id).await).await);
    let before_kib = peak_rss_kib(victim.child.id());

    // The attack: fake peers, each a new key, a 4 KiB label and 20 addresses, on one connection.
    let attacker = RawGossip::start();
    attacker.dial(victim_addr).await;
    let attack = tokio::time::Instant::now();
    for n in 0..FLOOD {
        let key = Keypair::generate_ed25519();
        let mut fake = Presence::new(PresenceType::Online, key.public().to_peer_id());
        fake.content = Some(flood_label(n));
        fake.addrs = Some(
            (0..20)
                .map(|a| {
                    format!(
                        "/ip4/203.0.113.{a}/tcp/{}/p2p/{}",
                        4000 + n % 1000,
                        key.public().to_peer_id()
                    )
                })
                .collect(),
        );
        fake.ts = Some(unix_ms());
        fake.sign(&key);
        assert!(attacker.publish(serde_json::to_vec(&fake).unwrap()).await);
        if attack.elapsed() > Duration::from_secs(20) {
            break;
        }
    }
    // Whatever of it arrives is handled within a few seconds.
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The friend is still listed online and answers; the list is bounded and paged.
    assert!(eventually(WAIT, async || listed_online(&friend_id).await).await);
    let page = get_text(&format!("{console}/peer/{friend_id}")).await;
    assert!(page.contains("yes, "), "the friend answers a probe");
    let response = client
        .get(format!("{console}/api/peers?limit=1000"))
        .send()
        .await
        .unwrap();
    let total: usize = response.headers()["x-total-count"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let listed: Vec<serde_json::Value> = response.json().await.unwrap();
    let strangers = listed.iter().filter(|p| p["stranger"] == true).count();
    assert!(
        strangers <= STRANGERS as usize,
        "{strangers} strangers listed, at most {STRANGERS} allowed"
    );
    // The friend, the five known peers and the strangers.
    assert!(total <= STRANGERS as usize + 6, "{total} peers listed");
    let home = get_text(&console).await;
    assert!(
        home.matches("<tr data-peer-id").count() <= 100,
        "one page of the list"
    );
    let grew_mib = peak_rss_kib(victim.child.id()).saturating_sub(before_kib) / 1024;

    victim.stop();
    let log = victim.log_text();
    let cached: Vec<String> = PeerStore::open(&victim_dir.path().join("data.db"))
        .await
        .unwrap()
        .cached_peers()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.peer_id)
        .collect();
    for peer in &known {
        assert!(
            cached.contains(&peer.peer_id),
            "{} was pushed out of the cache",
            peer.label
        );
    }
    assert!(cached.contains(&friend_id), "the friend is remembered");
    assert!(
        cached.len() <= 6,
        "{} peers cached: strangers are not",
        cached.len()
    );
    assert_eq!(
        log.matches("FLOODLABEL").count(),
        0,
        "fake peers' labels in the INFO log"
    );
    assert!(log.len() < 256 * 1024, "{} bytes of log", log.len());
    assert!(
        grew_mib < 100,
        "the victim's peak memory grew by {grew_mib} MiB during the flood"
    );
    friend.shutdown().await;
}
