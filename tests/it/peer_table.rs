//! The PeerTable: merging sources, who may say "verified", each source's liveness rule on its
//! own (LAN only, hub only, both), expiry, stale and replayed messages, messages whose peer ID
//! cannot be read, and the list's order.

use std::time::Duration;

use goop2::identity::{Keypair, PeerId};
use goop2::services::hub::presence::{Presence, PresenceType};
use goop2::services::presence::peer_table::{
    KnownPeer, PeerChange, PeerEntry, PeerState, PeerTable, Reachability, Source, TableOptions,
};
use tokio::sync::broadcast::Receiver;

fn options(ttl_ms: u64, grace_ms: u64) -> TableOptions {
    TableOptions {
        ttl: Duration::from_millis(ttl_ms),
        grace: Duration::from_millis(grace_ms),
        tick: Duration::from_millis(20),
        hold: Duration::from_millis(ttl_ms),
        max_peers: 2_000,
        max_strangers: 500,
    }
}

thread_local! {
    /// Each test's start, in Unix ms: message times are counted from it (gossip far from the
    /// clock is not news).
    static T0: i64 = goop2::services::hub::unix_ms();
}

/// A message whose `ts` is `ts` ms after the test's start.
fn message(peer: &PeerId, kind: PresenceType, label: &str, ts: i64) -> Presence {
    let mut presence = Presence::new(kind, *peer);
    presence.content = Some(label.into());
    presence.ts = Some(T0.with(|t0| *t0) + ts);
    presence
}

async fn entry(table: &PeerTable, peer: &PeerId) -> PeerEntry {
    let id = *peer;
    table
        .snapshot()
        .await
        .into_iter()
        .find(|entry| entry.peer_id == id)
        .expect("the peer is listed")
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

    // Bob is on the LAN and at the hub: his goodbye counts once each has passed it on.
    let mut changes = table.watch();
    table
        .observe(message(&bob, PresenceType::Offline, "Bob v2", 30), hub())
        .await;
    assert_eq!(table.snapshot().await[0].state, PeerState::Online);
    table
        .observe(
            message(&bob, PresenceType::Offline, "Bob v2", 30),
            Source::Gossip,
        )
        .await;
    loop {
        match next_change(&mut changes).await {
            PeerChange::Updated(entry) => assert_eq!(entry.sources.len(), 1, "{entry:?}"),
            change => {
                assert_eq!(change, PeerChange::Offline(bob));
                break;
            }
        }
    }
    assert_eq!(table.snapshot().await[0].state, PeerState::Offline);
}

#[tokio::test]
async fn quiet_peers_go_offline_after_the_ttl_and_are_removed_after_the_grace() {
    let table = PeerTable::start(PeerId::random(), options(200, 300));
    let carol = Keypair::generate_ed25519().public().to_peer_id();
    let mut changes = table.watch();
    let started = tokio::time::Instant::now();
    table
        .observe(
            message(&carol, PresenceType::Online, "Carol", 1),
            Source::Gossip,
        )
        .await;
    match next_change(&mut changes).await {
        PeerChange::Updated(entry) => assert_eq!(entry.label, "Carol"),
        other => panic!("{other:?}"),
    }
    assert_eq!(next_change(&mut changes).await, PeerChange::Offline(carol));
    match next_change(&mut changes).await {
        PeerChange::Updated(entry) => assert!(entry.sources.is_empty(), "{entry:?}"),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(next_change(&mut changes).await, PeerChange::Removed(carol));
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
        peer_id: *peer,
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
        .find(|p| p.peer_id == alice)
        .unwrap();
    assert_eq!(alice_now.state, PeerState::Online);
    assert_eq!(alice_now.label, "Alice 2");
    assert!(alice_now.favorite);

    // Past TTL and grace the ordinary peer is gone; the favourite stays, offline.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let peers = table.snapshot().await;
    assert_eq!(peers.len(), 1, "{peers:?}");
    assert_eq!(peers[0].peer_id, alice);
    assert_eq!(peers[0].state, PeerState::Offline);

    // Unmarked, it expires like anyone.
    assert!(table.set_favorite(&alice, false).await);
    assert!(!table.set_favorite(&bob, true).await, "Bob is gone");
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
    let id = alice;
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

#[tokio::test]
async fn a_peer_only_a_hub_lists_stays_online_until_the_hub_says_offline() {
    let table = PeerTable::start(PeerId::random(), options(200, 60_000));
    let dora = Keypair::generate_ed25519().public().to_peer_id();
    table
        .observe(message(&dora, PresenceType::Online, "Dora", 1), hub())
        .await;
    // The hub's stream carries changes only: no heartbeats, for many TTLs.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let listed = entry(&table, &dora).await;
    assert_eq!(listed.state, PeerState::Online, "{listed:?}");
    assert_eq!(listed.sources.iter().collect::<Vec<_>>(), vec![&hub()]);

    let mut changes = table.watch();
    let mut gone = Presence::new(PresenceType::Offline, dora);
    gone.ts = Some(1); // the hub's own clock may be behind the peer's: its word still counts
    table.observe(gone, hub()).await;
    assert_eq!(next_change(&mut changes).await, PeerChange::Offline(dora));
    assert_eq!(entry(&table, &dora).await.state, PeerState::Offline);
}

#[tokio::test]
async fn a_peer_on_the_lan_and_at_a_hub_outlives_its_lan_heartbeats_while_the_hub_lists_it() {
    let table = PeerTable::start(PeerId::random(), options(200, 60_000));
    let eve = Keypair::generate_ed25519().public().to_peer_id();
    table
        .observe(
            message(&eve, PresenceType::Online, "Eve", 1),
            Source::Gossip,
        )
        .await;
    table
        .observe(message(&eve, PresenceType::Online, "Eve", 2), hub())
        .await;
    assert_eq!(entry(&table, &eve).await.sources.len(), 2);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let listed = entry(&table, &eve).await;
    assert_eq!(listed.state, PeerState::Online);
    assert_eq!(
        listed.sources.iter().collect::<Vec<_>>(),
        vec![&hub()],
        "the LAN's word lapsed with its heartbeats"
    );
    // And the other way round: the hub lets go, the LAN keeps her while it hears her.
    for ts in 3..8 {
        table
            .observe(
                message(&eve, PresenceType::Update, "Eve", ts),
                Source::Gossip,
            )
            .await;
    }
    let mut gone = Presence::new(PresenceType::Offline, eve);
    gone.ts = Some(1);
    table.observe(gone, hub()).await;
    let listed = entry(&table, &eve).await;
    assert_eq!(listed.state, PeerState::Online);
    assert_eq!(
        listed.sources.iter().collect::<Vec<_>>(),
        vec![&Source::Gossip]
    );
}

#[tokio::test]
async fn a_lost_hub_link_holds_its_word_for_a_while_and_a_resumed_stream_confirms_it() {
    let table = PeerTable::start(PeerId::random(), options(300, 60_000));
    let fay = Keypair::generate_ed25519().public().to_peer_id();
    let gus = Keypair::generate_ed25519().public().to_peer_id();
    for (peer, label) in [(&fay, "Fay"), (&gus, "Gus")] {
        table
            .observe(message(peer, PresenceType::Online, label, 1), hub())
            .await;
    }
    // The link drops and comes back resumed: the hub's word holds again, for good.
    table.source_unconfirmed(hub()).await;
    table.source_confirmed(hub()).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(entry(&table, &fay).await.state, PeerState::Online);

    // The link drops and the hub cannot resume: its snapshot lists Fay only.
    table.source_unconfirmed(hub()).await;
    table
        .observe(message(&fay, PresenceType::Online, "Fay", 2), hub())
        .await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(entry(&table, &gus).await.state, PeerState::Online, "held");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(entry(&table, &fay).await.state, PeerState::Online);
    assert_eq!(entry(&table, &gus).await.state, PeerState::Offline);
}

#[tokio::test]
async fn an_offline_peer_forgets_its_reachability_and_late_probes_do_not_revive_it() {
    let table = PeerTable::start(PeerId::random(), options(150, 60_000));
    let hal = Keypair::generate_ed25519().public().to_peer_id();
    let id = hal;
    table
        .observe(
            message(&hal, PresenceType::Online, "Hal", 1),
            Source::Gossip,
        )
        .await;
    table
        .set_reachability(&id, Reachability::Reachable { rtt_ms: 2 })
        .await;
    assert_eq!(
        entry(&table, &hal).await.reachability,
        Reachability::Reachable { rtt_ms: 2 }
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let listed = entry(&table, &hal).await;
    assert_eq!(listed.state, PeerState::Offline);
    assert_eq!(listed.reachability, Reachability::Unknown);
    // A probe started while it was online and answered after: not news about the peer now.
    table
        .set_reachability(&id, Reachability::Reachable { rtt_ms: 2 })
        .await;
    assert_eq!(
        entry(&table, &hal).await.reachability,
        Reachability::Unknown
    );
}

#[tokio::test]
async fn only_emails_a_hub_vouched_for_leave_the_table() {
    let table = PeerTable::start(PeerId::random(), options(60_000, 60_000));
    let ivy = Keypair::generate_ed25519().public().to_peer_id();
    let mut claim = message(&ivy, PresenceType::Online, "Ivy", 1);
    claim.email = Some("ivy@example.org".into());
    table.observe(claim.clone(), Source::Gossip).await;
    assert_eq!(entry(&table, &ivy).await.email, "");
    claim.ts = claim.ts.map(|ts| ts + 1);
    table.observe(claim.clone(), hub()).await;
    assert_eq!(entry(&table, &ivy).await.email, "", "not verified");
    assert_eq!(table.identity(&ivy).await.unwrap().verified_email, None);
    claim.ts = claim.ts.map(|ts| ts + 1);
    claim.verified = Some(true);
    table.observe(claim, hub()).await;
    assert_eq!(entry(&table, &ivy).await.email, "ivy@example.org");
    let json = serde_json::to_value(entry(&table, &ivy).await).unwrap();
    assert_eq!(json["email"], "ivy@example.org");
}

#[tokio::test]
async fn replayed_or_stale_gossip_keeps_nobody_alive() {
    let table = PeerTable::start(PeerId::random(), options(200, 60_000));
    let jay = Keypair::generate_ed25519().public().to_peer_id();
    let online = message(&jay, PresenceType::Online, "Jay", 1);
    table.observe(online.clone(), Source::Gossip).await;
    assert_eq!(entry(&table, &jay).await.state, PeerState::Online);
    // The same message again and again (a replay) does not refresh the LAN's word.
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(60)).await;
        table.observe(online.clone(), Source::Gossip).await;
    }
    assert_eq!(entry(&table, &jay).await.state, PeerState::Offline);

    // A message captured more than five minutes ago is not news, however new to the table.
    let kay = Keypair::generate_ed25519().public().to_peer_id();
    let old = message(&kay, PresenceType::Online, "Kay", -6 * 60 * 1000);
    table.observe(old, Source::Gossip).await;
    assert!(
        table.snapshot().await.iter().all(|e| e.peer_id != kay),
        "an old message lists nobody"
    );
}

#[tokio::test]
async fn a_message_whose_peer_id_is_not_one_lists_nobody() {
    let table = PeerTable::start(PeerId::random(), options(60_000, 60_000));
    let mut forged = message(&PeerId::random(), PresenceType::Online, "Nobody", 1);
    forged.peer_id = "not-a-peer-id".into();
    table.observe(forged.clone(), hub()).await;
    table.observe(forged, Source::Gossip).await;
    let lea = Keypair::generate_ed25519().public().to_peer_id();
    table
        .observe(message(&lea, PresenceType::Online, "Lea", 1), hub())
        .await;
    let peers = table.snapshot().await;
    assert_eq!(peers.len(), 1, "{peers:?}");
    let json = serde_json::to_value(&peers[0]).unwrap();
    assert_eq!(
        json["peer_id"],
        lea.to_base58(),
        "JSON carries the base58 text"
    );
}

#[tokio::test]
async fn peers_of_one_label_are_listed_in_the_order_of_their_ids_text() {
    // Two IDs whose bytes and whose text sort the other way round: 00 02 00 00 is "1f…",
    // 00 02 ff ff is "12…".
    let low = PeerId::from_bytes(&[0x00, 0x02, 0x00, 0x00]).unwrap();
    let high = PeerId::from_bytes(&[0x00, 0x02, 0xff, 0xff]).unwrap();
    assert!(low.to_bytes() < high.to_bytes());
    assert!(low.to_base58() > high.to_base58());
    let table = PeerTable::start(PeerId::random(), options(60_000, 60_000));
    for peer in [&low, &high] {
        table
            .observe(message(peer, PresenceType::Online, "Same", 1), hub())
            .await;
    }
    let listed: Vec<PeerId> = table.snapshot().await.iter().map(|e| e.peer_id).collect();
    assert_eq!(listed, [high, low]);
}
