//! The PeerTable: merging sources, who may say "verified", expiry, stale messages.

use std::time::Duration;

use goop2::identity::{Keypair, PeerId};
use goop2::services::hub::presence::{Presence, PresenceType};
use goop2::services::presence::peer_table::{
    KnownPeer, PeerChange, PeerState, PeerTable, Reachability, Source, TableOptions,
};
use tokio::sync::broadcast::Receiver;

fn options(ttl_ms: u64, grace_ms: u64) -> TableOptions {
    TableOptions {
        ttl: Duration::from_millis(ttl_ms),
        grace: Duration::from_millis(grace_ms),
        tick: Duration::from_millis(20),
    }
}

fn message(peer: &PeerId, kind: PresenceType, label: &str, ts: i64) -> Presence {
    let mut presence = Presence::new(kind, *peer);
    presence.content = Some(label.into());
    presence.ts = Some(ts);
    presence
}

fn hub() -> Source {
    Source::Hub("http://127.0.0.1:8787".into())
}

async fn next_change(changes: &mut Receiver<PeerChange>) -> PeerChange {
    tokio::time::timeout(Duration::from_secs(5), changes.recv())
        .await
        .expect("a change within 5 s")
        .unwrap()
}

#[tokio::test]
async fn sources_merge_and_only_a_hub_can_verify() {
    let me = PeerId::random();
    let table = PeerTable::start(me, options(60_000, 60_000));
    let alice = Keypair::generate_ed25519().public().to_peer_id();

    let mut claim = message(&alice, PresenceType::Online, "Alice", 1);
    claim.verified = Some(true);
    table.observe(claim, Source::Gossip).await;
    let peers = table.snapshot().await;
    assert_eq!(peers.len(), 1);
    assert!(!peers[0].verified, "gossip cannot verify");

    let mut vouched = message(&alice, PresenceType::Update, "Alice", 2);
    vouched.verified = Some(true);
    table.observe(vouched, hub()).await;
    let gossip_again = message(&alice, PresenceType::Update, "Alice", 3);
    table.observe(gossip_again, Source::Gossip).await;
    let peers = table.snapshot().await;
    assert!(
        peers[0].verified,
        "a hub's word stands until a hub says otherwise"
    );
    assert_eq!(peers[0].sources.len(), 2);
    assert_eq!(peers[0].state, PeerState::Online);

    // Our own presence is not a peer.
    table
        .observe(message(&me, PresenceType::Online, "Me", 1), hub())
        .await;
    assert_eq!(table.snapshot().await.len(), 1);
}

#[tokio::test]
async fn stale_messages_are_ignored_and_offline_is_immediate() {
    let table = PeerTable::start(PeerId::random(), options(60_000, 60_000));
    let bob = Keypair::generate_ed25519().public().to_peer_id();
    table
        .observe(message(&bob, PresenceType::Online, "Bob v2", 20), hub())
        .await;
    table
        .observe(
            message(&bob, PresenceType::Update, "Bob v1", 10),
            Source::Gossip,
        )
        .await;
    assert_eq!(table.snapshot().await[0].label, "Bob v2");

    let mut changes = table.watch();
    table
        .observe(
            message(&bob, PresenceType::Offline, "Bob v2", 30),
            Source::Gossip,
        )
        .await;
    assert_eq!(
        next_change(&mut changes).await,
        PeerChange::Offline(bob.to_base58())
    );
    assert_eq!(table.snapshot().await[0].state, PeerState::Offline);
}

#[tokio::test]
async fn quiet_peers_go_offline_after_the_ttl_and_are_removed_after_the_grace() {
    let table = PeerTable::start(PeerId::random(), options(200, 300));
    let carol = Keypair::generate_ed25519().public().to_peer_id();
    let mut changes = table.watch();
    let started = tokio::time::Instant::now();
    table
        .observe(message(&carol, PresenceType::Online, "Carol", 1), hub())
        .await;
    match next_change(&mut changes).await {
        PeerChange::Updated(entry) => assert_eq!(entry.label, "Carol"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        next_change(&mut changes).await,
        PeerChange::Offline(carol.to_base58())
    );
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(
        next_change(&mut changes).await,
        PeerChange::Removed(carol.to_base58())
    );
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert!(table.snapshot().await.is_empty());
}

#[tokio::test]
async fn a_heartbeat_that_changes_nothing_is_not_a_change() {
    let table = PeerTable::start(PeerId::random(), options(60_000, 60_000));
    let dave = Keypair::generate_ed25519().public().to_peer_id();
    let mut changes = table.watch();
    table
        .observe(message(&dave, PresenceType::Online, "Dave", 1), hub())
        .await;
    table
        .observe(message(&dave, PresenceType::Update, "Dave", 2), hub())
        .await;
    table
        .observe(message(&dave, PresenceType::Update, "Dave!", 3), hub())
        .await;
    let first = next_change(&mut changes).await;
    let second = next_change(&mut changes).await;
    assert!(matches!(first, PeerChange::Updated(ref e) if e.label == "Dave"));
    assert!(
        matches!(second, PeerChange::Updated(ref e) if e.label == "Dave!"),
        "{second:?}"
    );
    assert!(changes.try_recv().is_err(), "the heartbeat made no change");
}

#[tokio::test]
async fn restored_peers_are_offline_until_heard_and_favourites_outlive_expiry() {
    let me = PeerId::random();
    let table = PeerTable::start(me, options(200, 200));
    let alice = Keypair::generate_ed25519().public().to_peer_id();
    let bob = Keypair::generate_ed25519().public().to_peer_id();
    let known = |peer: &PeerId, label: &str, favorite: bool| KnownPeer {
        peer_id: peer.to_base58(),
        label: label.into(),
        email: String::new(),
        avatar_hash: None,
        addrs: vec!["/ip4/127.0.0.1/tcp/1".into()],
        verified: false,
        favorite,
    };
    table
        .restore(vec![
            known(&alice, "Alice", true),
            known(&bob, "Bob", false),
            known(&me, "me", false),
        ])
        .await;
    let peers = table.snapshot().await;
    assert_eq!(peers.len(), 2, "never itself: {peers:?}");
    assert!(peers.iter().all(|p| p.state == PeerState::Offline));
    assert!(peers.iter().all(|p| p.sources.is_empty()));

    // Heard again: online, and still a favourite.
    table
        .observe(
            message(&alice, PresenceType::Online, "Alice 2", 5),
            Source::Gossip,
        )
        .await;
    let alice_now = table
        .snapshot()
        .await
        .into_iter()
        .find(|p| p.peer_id == alice.to_base58())
        .unwrap();
    assert_eq!(alice_now.state, PeerState::Online);
    assert_eq!(alice_now.label, "Alice 2");
    assert!(alice_now.favorite);

    // Past TTL and grace the ordinary peer is gone; the favourite stays, offline.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let peers = table.snapshot().await;
    assert_eq!(peers.len(), 1, "{peers:?}");
    assert_eq!(peers[0].peer_id, alice.to_base58());
    assert_eq!(peers[0].state, PeerState::Offline);

    // Unmarked, it expires like anyone.
    assert!(table.set_favorite(&alice.to_base58(), false).await);
    assert!(
        !table.set_favorite(&bob.to_base58(), true).await,
        "Bob is gone"
    );
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(table.snapshot().await.is_empty());
}

#[tokio::test]
async fn reachability_results_are_announced() {
    let table = PeerTable::start(PeerId::random(), options(60_000, 60_000));
    let alice = Keypair::generate_ed25519().public().to_peer_id();
    table
        .observe(message(&alice, PresenceType::Online, "Alice", 1), hub())
        .await;
    // Once the table has answered, the observation is behind us.
    assert_eq!(table.snapshot().await.len(), 1);
    let mut changes = table.watch();
    let id = alice.to_base58();
    table
        .set_reachability(&id, Reachability::Reachable { rtt_ms: 3 })
        .await;
    match next_change(&mut changes).await {
        PeerChange::Updated(entry) => {
            assert_eq!(entry.reachability, Reachability::Reachable { rtt_ms: 3 })
        }
        other => panic!("{other:?}"),
    }
    // The same result again is no news.
    table
        .set_reachability(&id, Reachability::Reachable { rtt_ms: 3 })
        .await;
    table
        .set_reachability(
            &id,
            Reachability::Unreachable {
                reason: "gone".into(),
            },
        )
        .await;
    match next_change(&mut changes).await {
        PeerChange::Updated(entry) => assert_eq!(
            entry.reachability,
            Reachability::Unreachable {
                reason: "gone".into()
            }
        ),
        other => panic!("{other:?}"),
    }
}
