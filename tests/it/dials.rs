//! Where a peer dials: only addresses a trusted source vouched for, and never more than its dial
//! budget. Traps are plain TCP listeners on loopback that count who connects.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use goop2::identity::Keypair;
use goop2::services::hub::unix_ms;
use goop2::services::node::vouched::DialLimits;
use goop2::services::node::{Node, NodeOptions};
use goop2::store::peer::{CachedPeer, PeerStore};
use libp2p::{Multiaddr, PeerId};

use crate::support::{PeerDir, TestPeer, eventually};

const WAIT: Duration = Duration::from_secs(10);

/// A TCP listener that counts the connections made to it.
struct Trap {
    port: u16,
    connects: Arc<AtomicUsize>,
}

impl Trap {
    async fn start() -> Trap {
        Trap::on(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap())
    }

    fn on(listener: tokio::net::TcpListener) -> Trap {
        let port = listener.local_addr().unwrap().port();
        let connects = Arc::new(AtomicUsize::new(0));
        let counted = connects.clone();
        tokio::spawn(async move {
            // Held until the test ends, so a dialler waits instead of retrying.
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                held.push(socket);
            }
        });
        Trap { port, connects }
    }

    fn addr_for(&self, peer: PeerId) -> String {
        format!("/ip4/127.0.0.1/tcp/{}/p2p/{peer}", self.port)
    }

    fn connects(&self) -> usize {
        self.connects.load(Ordering::SeqCst)
    }
}

fn random_peer() -> PeerId {
    Keypair::generate_ed25519().public().to_peer_id()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_peer_dials_its_favourites_and_no_address_gossip_left_in_its_cache() {
    let dir = PeerDir::new("Victim", |c| {
        c.viewer.http_addr = String::new();
        c.presence.rendezvous_host = false;
        c.presence.rendezvous_wan = String::new();
    });

    // Last run's cache: 1,000 peers pointing at one trap, and a favourite at another.
    let crowd = Trap::start().await;
    let friend_trap = Trap::start().await;
    let friend = random_peer();
    let mut cached: Vec<CachedPeer> = (0..1000)
        .map(|n| {
            let id = random_peer();
            CachedPeer {
                peer_id: id.to_base58(),
                label: format!("Cached {n}"),
                email: String::new(),
                avatar_hash: None,
                addrs: serde_json::to_string(&[crowd.addr_for(id)]).unwrap(),
                verified: n % 2 == 0,
                last_seen_ms: unix_ms() - 60_000,
            }
        })
        .collect();
    cached.push(CachedPeer {
        peer_id: friend.to_base58(),
        label: "Friend".into(),
        email: String::new(),
        avatar_hash: None,
        addrs: serde_json::to_string(&[friend_trap.addr_for(friend)]).unwrap(),
        verified: false,
        last_seen_ms: unix_ms() - 60_000,
    });
    {
        let store = PeerStore::open(&dir.path().join("data.db")).await.unwrap();
        store.remember_peers(&cached).await.unwrap();
        store
            .set_favorite(&friend.to_base58(), true, unix_ms())
            .await
            .unwrap();
        store.close().await;
    }

    let running = TestPeer::start(dir).await;
    assert!(
        eventually(WAIT, async || friend_trap.connects() > 0).await,
        "the favourite was not dialled"
    );
    // Give any other dial the same time again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        crowd.connects(),
        0,
        "peers nothing vouched for were dialled after a restart"
    );
    running.shutdown().await;
}

fn options(limits: goop2::services::node::budget::NodeLimits) -> NodeOptions {
    NodeOptions {
        listen_ip: "127.0.0.1".parse().unwrap(),
        listen_port: 0,
        mdns: false,
        mdns_tag: "dials".into(),
        presence_topic: "goop.presence.v1".into(),
        limits,
        gossip: Default::default(),
        relay: None,
    }
}

async fn node(limits: goop2::services::node::budget::NodeLimits) -> Node {
    let (node, _events) = Node::start(
        Keypair::generate_ed25519(),
        options(limits),
        crate::support::nothing_served("a peer"),
    )
    .await
    .unwrap();
    node
}

async fn tcp_listen_addr(node: &Node) -> Multiaddr {
    node.listen_addrs()
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.to_string().contains("/tcp/"))
        .expect("a TCP listener")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_peer_said_of_its_own_addresses_is_not_dialled_once_it_left() {
    let alice = node(Default::default()).await;
    let bob = node(Default::default()).await;
    let bob_id = bob.peer_id();
    let bob_tcp = tcp_listen_addr(&bob).await;
    let alice_tcp = tcp_listen_addr(&alice).await;
    // Bob connects to Alice and tells her, over Identify, where he listens.
    bob.dial(
        format!("{alice_tcp}/p2p/{}", alice.peer_id())
            .parse()
            .unwrap(),
    )
    .await
    .unwrap();
    assert!(
        eventually(WAIT, async || alice
            .peer_details(bob_id)
            .await
            .unwrap()
            .is_some_and(|d| d.listen_addrs.contains(&bob_tcp)))
        .await,
        "Alice never heard where Bob listens"
    );
    bob.shutdown(Duration::from_secs(1)).await;
    drop(bob);
    assert!(
        eventually(WAIT, async || !alice
            .connected_peers()
            .await
            .unwrap()
            .contains(&bob_id))
        .await
    );

    // Whoever listens where Bob said he did now counts Alice's dials.
    let port = bob_tcp
        .iter()
        .find_map(|p| match p {
            libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .unwrap();
    let mut listener = None;
    for _ in 0..50 {
        if let Ok(bound) = tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
            listener = Some(bound);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let trap = Trap::on(listener.expect("Bob's old port is free again"));
    let refused = alice.fetch_content(bob_id).await;
    assert!(refused.is_err(), "{refused:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        trap.connects(),
        0,
        "Alice dialled where Bob said he listens"
    );

    // Vouched for (a hub listed it there, say), the same address is dialled.
    alice
        .vouch(bob_id, vec![trap.addr_for(bob_id).parse().unwrap()])
        .await
        .unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(2), alice.fetch_content(bob_id)).await;
    assert!(
        eventually(WAIT, async || trap.connects() > 0).await,
        "a vouched address was not dialled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dials_beyond_the_budget_are_refused_until_it_refills() {
    let limits = goop2::services::node::budget::NodeLimits {
        dials: DialLimits {
            burst: 20,
            per_second: 2,
        },
        ..Default::default()
    };
    let alice = node(limits).await;
    let trap = Trap::start().await;
    let peers: Vec<PeerId> = (0..100).map(|_| random_peer()).collect();
    let mut refused = 0;
    for peer in &peers {
        alice
            .vouch(*peer, vec![trap.addr_for(*peer).parse().unwrap()])
            .await
            .unwrap();
        if let Err(err) = alice.dial_peer(*peer).await {
            assert!(format!("{err:#}").contains("too many dials"), "{err:#}");
            refused += 1;
        }
    }
    assert!(
        (70..=80).contains(&refused),
        "{refused} of 100 dials refused with a burst of 20"
    );
    assert!(
        eventually(WAIT, async || trap.connects() >= 20).await,
        "{} dials reached the trap",
        trap.connects()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(trap.connects() <= 30, "{} dials", trap.connects());

    // The budget refills: a dial a moment later goes out.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let late = random_peer();
    alice
        .vouch(late, vec![trap.addr_for(late).parse().unwrap()])
        .await
        .unwrap();
    alice.dial_peer(late).await.unwrap();
}
