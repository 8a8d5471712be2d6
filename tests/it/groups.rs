//! Host-relayed groups between real peers met through a hub, over `/goop/mq/1.0.0` on
//! loopback: joining, relays with the sender set by the host, state, roles, limits, invitations,
//! what non-members and forgers meet, a member that stops reading, and a host killed and
//! restarted.

use std::time::Duration;

use goop2::services::mq::MqError;
use goop2::services::presence::peer_table::PeerState;
use serde_json::{Value, json};

use crate::console::console;
use crate::support::{PeerDir, PeerProcess, SseClient, TestPeer, free_port, lists, short_ttl};

const WAIT: Duration = Duration::from_secs(10);

/// Alice hosts the hub; Bob and Carol (on another LAN tag: known through the hub only) use it.
async fn three_peers() -> (TestPeer, TestPeer, TestPeer) {
    let alice = TestPeer::spawn("Alice", |c| {
        short_ttl(c, 6);
        c.presence.rendezvous_host = true;
    })
    .await;
    let hub = format!("http://{}", alice.hub.as_ref().unwrap().hub_addr);
    let bob = TestPeer::spawn("Bob", |c| {
        short_ttl(c, 6);
        c.presence.rendezvous_wan = hub.clone();
    })
    .await;
    let carol = TestPeer::spawn("Carol", |c| {
        short_ttl(c, 6);
        c.presence.rendezvous_wan = hub;
    })
    .await;
    for (a, b) in [(&alice, &bob), (&alice, &carol), (&bob, &carol)] {
        assert!(lists(a, &b.peer_id.to_base58(), PeerState::Online).await);
        assert!(lists(b, &a.peer_id.to_base58(), PeerState::Online).await);
    }
    (alice, bob, carol)
}

async fn post(base: &str, path: &str, body: Value) -> (u16, Value) {
    let url = format!("{base}{path}");
    crate::support::post_with(&reqwest::Client::new(), &url, body.to_string()).await
}

async fn groups_of(base: &str) -> Value {
    reqwest::get(format!("{base}/api/groups"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn create(host: &TestPeer, group: Value) -> Value {
    let (status, meta) = post(&console(host), "/api/groups", group).await;
    assert_eq!(status, 200, "{meta}");
    meta
}

async fn join(member: &TestPeer, host: &TestPeer, group: &str) -> (u16, Value) {
    post(
        &console(member),
        "/api/groups/join",
        json!({"host": host.peer_id.to_base58(), "group": group}),
    )
    .await
}

async fn events(peer: &TestPeer) -> SseClient {
    SseClient::connect(&format!("{}/api/groups/events", console(peer)), None).await
}

/// The next event of `kind` (skipping others), within 10 s.
async fn next_event(stream: &mut SseClient, kind: &str) -> Value {
    let kind = format!(r#""kind":"{kind}""#);
    let event = stream.wait_for(WAIT, |e| e.data.contains(&kind)).await;
    serde_json::from_str(&event.data).unwrap()
}

fn member_ids(members: &Value) -> Vec<String> {
    members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["peer_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_join_and_the_host_relays_messages_and_state_from_the_connection() {
    let (alice, bob, carol) = three_peers().await;
    create(&alice, json!({"id": "chess-1", "name": "Chess", "app_type": "chess", "roles": ["player", "spectator"]})).await;
    let mut bob_hears = events(&bob).await;
    let mut carol_hears = events(&carol).await;
    let mut alice_hears = events(&alice).await;

    let (status, joined) = join(&bob, &alice, "chess-1").await;
    assert_eq!(status, 200, "{joined}");
    assert_eq!(joined["connected"], true);
    assert_eq!(joined["role"], "player", "the first role is the default");
    assert_eq!(joined["name"], "Chess");
    assert_eq!(
        member_ids(&joined["members"]),
        [alice.peer_id.to_base58(), bob.peer_id.to_base58()]
    );
    let (status, joined) = join(&carol, &alice, "chess-1").await;
    assert_eq!(status, 200, "{joined}");
    // Bob hears Carol came.
    let members = loop {
        let event = next_event(&mut bob_hears, "members").await;
        if event["members"].as_array().unwrap().len() == 3 {
            break event;
        }
    };
    assert!(member_ids(&members["members"]).contains(&carol.peer_id.to_base58()));

    // Bob's message reaches Carol and the host, from Bob — whatever the payload claims.
    let (status, body) = post(
        &console(&bob),
        "/api/groups/send",
        json!({"host": alice.peer_id.to_base58(), "group": "chess-1", "payload": {"move": "e2e4", "from": carol.peer_id.to_base58()}}),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    for stream in [&mut carol_hears, &mut alice_hears] {
        let msg = next_event(stream, "msg").await;
        assert_eq!(msg["from"], bob.peer_id.to_base58());
        assert_eq!(msg["group"], "chess-1");
        assert_eq!(msg["host"], alice.peer_id.to_base58());
        assert_eq!(msg["payload"]["move"], "e2e4");
    }
    // The host's own message reaches both.
    let (status, _) = post(
        &console(&alice),
        "/api/groups/send",
        json!({"host": alice.peer_id.to_base58(), "group": "chess-1", "payload": "your move"}),
    )
    .await;
    assert_eq!(status, 204);
    // Bob's own pages heard his message too, as his (in whichever order with the host's).
    let mut heard = [
        next_event(&mut bob_hears, "msg").await,
        next_event(&mut bob_hears, "msg").await,
    ];
    heard.sort_by_key(|msg| msg["from"] != bob.peer_id.to_base58());
    assert_eq!(heard[0]["payload"]["move"], "e2e4");
    assert_eq!(heard[1]["from"], alice.peer_id.to_base58());
    assert_eq!(heard[1]["payload"], "your move");
    let msg = next_event(&mut carol_hears, "msg").await;
    assert_eq!(msg["from"], alice.peer_id.to_base58());
    assert_eq!(msg["payload"], "your move");
    // State from a member is kept by the host and relayed.
    let (status, _) = post(
        &console(&carol),
        "/api/groups/state",
        json!({"host": alice.peer_id.to_base58(), "group": "chess-1", "state": {"board": "after e4"}}),
    )
    .await;
    assert_eq!(status, 204);
    let state = next_event(&mut bob_hears, "state").await;
    assert_eq!(state["from"], carol.peer_id.to_base58());
    assert_eq!(state["state"], json!({"board": "after e4"}));
    let hosted = groups_of(&console(&alice)).await;
    assert_eq!(hosted["hosted"][0]["state"], json!({"board": "after e4"}));

    // The host renames the group: the members hear the new meta.
    let (status, meta) = post(
        &console(&alice),
        "/api/groups/chess-1/meta",
        json!({"name": "Chess night"}),
    )
    .await;
    assert_eq!(status, 200, "{meta}");
    let heard = next_event(&mut bob_hears, "meta").await;
    assert_eq!(heard["meta"]["name"], "Chess night");
    assert_eq!(
        groups_of(&console(&bob)).await["joined"][0]["name"],
        "Chess night"
    );

    // Roles: the host gives Carol another one; everyone sees it.
    let (status, body) = post(
        &console(&alice),
        "/api/groups/chess-1/role",
        json!({"peer": carol.peer_id.to_base58(), "role": "spectator"}),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let members = loop {
        let event = next_event(&mut bob_hears, "members").await;
        if event.to_string().contains("spectator") {
            break event;
        }
    };
    let carol_role = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["peer_id"] == carol.peer_id.to_base58())
        .unwrap()["role"]
        .clone();
    assert_eq!(carol_role, "spectator");
    assert_eq!(
        alice
            .groups
            .role_of("chess-1", carol.peer_id)
            .await
            .as_deref(),
        Some("spectator")
    );
    let (status, body) = post(
        &console(&alice),
        "/api/groups/chess-1/role",
        json!({"peer": carol.peer_id.to_base58(), "role": "king"}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("not one of the group's roles")
    );

    // Bob leaves: the others hear it, and he no longer lists the group.
    let (status, _) = post(
        &console(&bob),
        "/api/groups/leave",
        json!({"host": alice.peer_id.to_base58(), "group": "chess-1"}),
    )
    .await;
    assert_eq!(status, 204);
    let members = loop {
        let event = next_event(&mut carol_hears, "members").await;
        if event["members"].as_array().unwrap().len() == 2 {
            break event;
        }
    };
    assert!(!member_ids(&members["members"]).contains(&bob.peer_id.to_base58()));
    assert_eq!(groups_of(&console(&bob)).await["joined"], json!([]));

    // The host closes it: Carol hears so.
    let (status, _) = post(&console(&alice), "/api/groups/chess-1/close", json!({})).await;
    assert_eq!(status, 204);
    let closed = next_event(&mut carol_hears, "closed").await;
    assert_eq!(closed["group"], "chess-1");
    assert_eq!(closed["reason"], "closed by the host");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_group_an_invite_only_group_kicks_and_bans_are_enforced_by_the_host() {
    let (alice, bob, carol) = three_peers().await;
    create(&alice, json!({"id": "duel", "max_members": 1})).await;
    assert_eq!(join(&bob, &alice, "duel").await.0, 200);
    let (status, body) = join(&carol, &alice, "duel").await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "the host refused: full");
    let (status, body) = join(&carol, &alice, "nope").await;
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (404, "the host refused: not_found")
    );

    // Invite-only: Carol needs an invitation, which she accepts in her console.
    create(
        &alice,
        json!({"id": "secret", "invite_only": true, "persistent": true}),
    )
    .await;
    let (status, body) = join(&carol, &alice, "secret").await;
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (409, "the host refused: not_invited")
    );
    let mut carol_hears = events(&carol).await;
    let (status, body) = post(
        &console(&alice),
        "/api/groups/secret/invite",
        json!({"peer": carol.peer_id.to_base58()}),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let invite = next_event(&mut carol_hears, "invite").await;
    assert_eq!(invite["group"], "secret");
    let invites = groups_of(&console(&carol)).await["invites"].clone();
    assert_eq!(invites[0]["group_id"], "secret");
    let (status, body) = post(
        &console(&carol),
        "/api/groups/answer",
        json!({"host": alice.peer_id.to_base58(), "group": "secret", "accept": true}),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let joined = groups_of(&console(&carol)).await;
    assert_eq!(joined["joined"][0]["id"], "secret");
    assert_eq!(joined["joined"][0]["connected"], true);
    assert_eq!(joined["invites"], json!([]));

    // Kicked: Carol hears she was removed; banned: she cannot come back.
    let (status, _) = post(
        &console(&alice),
        "/api/groups/secret/kick",
        json!({"peer": carol.peer_id.to_base58(), "ban": true}),
    )
    .await;
    assert_eq!(status, 204);
    let closed = next_event(&mut carol_hears, "closed").await;
    assert_eq!(closed["reason"], "banned by the host");
    let (status, body) = join(&carol, &alice, "secret").await;
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (409, "the host refused: banned")
    );
    let hosted = groups_of(&console(&alice)).await["hosted"].clone();
    let secret = hosted
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == "secret")
        .unwrap();
    assert_eq!(secret["banned"], json!([carol.peer_id.to_base58()]));

    // Bad input names the problem.
    let (status, body) = post(&console(&alice), "/api/groups", json!({"id": "bad id"})).await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("1 to 64 letters"),
        "{body}"
    );
    let (status, body) = post(&console(&alice), "/api/groups", json!({"id": "duel"})).await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("exists already"),
        "{body}"
    );
    let (status, body) = post(&console(&bob), "/api/groups/join", json!({"host": "x"})).await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("the body must be"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_members_and_non_hosts_are_refused_and_counted() {
    let (alice, bob, _carol) = three_peers().await;
    create(&alice, json!({"id": "club"})).await;
    assert_eq!(join(&bob, &alice, "club").await.0, 200);
    let (_node, mallory, _streams, _stop) = crate::support::mq_stranger(&alice).await;

    // Not a member: its message to the host is refused, and nothing is relayed.
    let mut bob_hears = events(&bob).await;
    let refused = mallory
        .send(alice.peer_id, "group:club:msg", json!("spam"))
        .await;
    assert_eq!(refused, Err(MqError::Refused("not_member".into())));
    // Nor may it pretend to be the host of Bob's group.
    let (_node2, mallory_to_bob, _s2, _stop2) = crate::support::mq_stranger(&bob).await;
    let refused = mallory_to_bob
        .send(bob.peer_id, "group:club:close", json!({"reason": "fake"}))
        .await;
    assert_eq!(refused, Err(MqError::Refused("not_member".into())));
    let refused = mallory_to_bob
        .send(bob.peer_id, "group:club:members", json!({"members": []}))
        .await;
    assert_eq!(refused, Err(MqError::Refused("not_member".into())));
    assert_eq!(alice.groups.stats().await.dropped, 1);
    assert_eq!(bob.groups.stats().await.dropped, 2);
    // Bob is still in the group, and hears the host.
    post(
        &console(&alice),
        "/api/groups/send",
        json!({"host": alice.peer_id.to_base58(), "group": "club", "payload": "still here"}),
    )
    .await;
    let msg = next_event(&mut bob_hears, "msg").await;
    assert_eq!(msg["payload"], "still here");
    assert_eq!(
        groups_of(&console(&bob)).await["joined"][0]["connected"],
        true
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_stops_reading_is_dropped_while_the_others_keep_up() {
    let (alice, bob, _carol) = three_peers().await;
    create(&alice, json!({"id": "feed"})).await;
    assert_eq!(join(&bob, &alice, "feed").await.0, 200);
    // The stalled member joins, then never reads what the host sends it.
    let (_node, stalled, _never_read, _stop) = crate::support::mq_stranger(&alice).await;
    stalled
        .send(alice.peer_id, "group:feed:join", json!({}))
        .await
        .unwrap();
    let mut bob_hears = events(&bob).await;
    // More than the stalled member's queue and window hold, within the transport's burst.
    let sent = 400;
    let client = reqwest::Client::new();
    for n in 0..sent {
        let response = client
            .post(format!("{}/api/groups/send", console(&alice)))
            .json(&json!({"host": alice.peer_id.to_base58(), "group": "feed", "payload": n}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204);
    }
    let mut heard = 0;
    while heard < sent {
        let msg = next_event(&mut bob_hears, "msg").await;
        assert_eq!(msg["payload"], heard, "in order, none lost");
        heard += 1;
    }
    // Dropped for its full queue, or for not answering the host's ping, whichever came first.
    let stats = alice.groups.stats().await;
    assert_eq!(
        stats.dropped_slow + stats.dropped_unanswered,
        1,
        "{stats:?}"
    );
    let hosted = groups_of(&console(&alice)).await["hosted"][0].clone();
    assert_eq!(
        member_ids(&hosted["members"]),
        [alice.peer_id.to_base58(), bob.peer_id.to_base58()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_notice_a_killed_host_and_rejoin_when_it_is_back() {
    // Bob hosts the hub; Alice is a peer process with a persistent group.
    let bob = TestPeer::spawn("Bob", |c| {
        short_ttl(c, 6);
        c.presence.rendezvous_host = true;
    })
    .await;
    let hub = format!("http://{}", bob.hub.as_ref().unwrap().hub_addr);
    let console_port = free_port();
    let p2p_port = free_port();
    let alice_dir = PeerDir::new("Alice", |c| {
        short_ttl(c, 6);
        c.presence.rendezvous_wan = hub;
        c.viewer.http_addr = format!("127.0.0.1:{console_port}");
        c.p2p.listen_port = p2p_port;
    });
    let alice_console = format!("http://127.0.0.1:{console_port}");
    let mut alice = PeerProcess::start(alice_dir.path());
    assert!(lists(&bob, &alice.peer_id.to_base58(), PeerState::Online).await);
    let (status, body) = post(
        &alice_console,
        "/api/groups",
        json!({"id": "study", "name": "Study group", "persistent": true}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(
        &console(&bob),
        "/api/groups/join",
        json!({"host": alice.peer_id.to_base58(), "group": "study"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = post(
        &alice_console,
        "/api/groups/state",
        json!({"host": alice.peer_id.to_base58(), "group": "study", "state": {"chapter": 3}}),
    )
    .await;
    assert_eq!(status, 204);
    let mut bob_hears = events(&bob).await;

    alice.child.kill().unwrap();
    alice.child.wait().unwrap();
    let killed = std::time::Instant::now();
    let offline = bob_hears
        .wait_for(Duration::from_secs(20), |e| {
            e.data.contains(r#""kind":"host_offline""#)
        })
        .await;
    let noticed = killed.elapsed();
    assert!(offline.data.contains("study"));
    assert!(
        noticed <= Duration::from_secs(15),
        "noticed after {noticed:?}"
    );
    assert_eq!(
        groups_of(&console(&bob)).await["joined"][0]["connected"],
        false
    );

    // Back: Bob rejoins by himself, and the group kept its members and state.
    let alice = PeerProcess::start(alice_dir.path());
    let welcome = bob_hears
        .wait_for(Duration::from_secs(40), |e| {
            e.data.contains(r#""kind":"welcome""#)
        })
        .await;
    let welcome: Value = serde_json::from_str(&welcome.data).unwrap();
    assert_eq!(welcome["group"], "study");
    assert_eq!(welcome["state"], json!({"chapter": 3}));
    let hosted = groups_of(&alice_console).await["hosted"][0].clone();
    assert_eq!(hosted["name"], "Study group");
    assert_eq!(
        member_ids(&hosted["members"]),
        [alice.peer_id.to_base58(), bob.peer_id.to_base58()]
    );
    drop(alice);
}

async fn remote(caller: &TestPeer, host: &TestPeer, op: &str, body: Value) -> (u16, Value) {
    post(
        &console(caller),
        &format!("/api/p/{}/data/{op}", host.peer_id),
        body,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_policy_admits_members_with_the_rights_of_their_role() {
    let (alice, bob, carol) = three_peers().await;
    create(&alice, json!({"id": "quiz", "name": "Friday quiz", "app_type": "quiz", "roles": ["student", "teacher"]})).await;
    create(&alice, json!({"id": "staff", "invite_only": true})).await;
    let (status, body) = post(
        &console(&alice),
        "/api/data/create-table",
        json!({"schema": {
            "name": "answers",
            "columns": ["answer TEXT NOT NULL"],
            "access": {
                "read": "group", "insert": "group", "update": "group", "delete": "owner",
                "group": {"id": "quiz", "roles": {"teacher": ["read", "insert", "update"], "student": ["insert"]}}
            }
        }}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(join(&bob, &alice, "quiz").await.0, 200);

    // A student may insert, not read.
    let (status, body) = remote(
        &bob,
        &alice,
        "insert",
        json!({"table": "answers", "data": {"answer": "42"}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = remote(&bob, &alice, "query", json!({"table": "answers"})).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("your role `student` in group `quiz` may not read"),
        "{body}"
    );
    // Not a member: nothing.
    let (status, body) = remote(
        &carol,
        &alice,
        "insert",
        json!({"table": "answers", "data": {"answer": "7"}}),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("only members of group `quiz`"),
        "{body}"
    );
    // A teacher reads everyone's: the owner makes Bob one on the Groups page.
    let page = crate::support::get_page(&format!("{}/groups", console(&alice))).await;
    assert!(
        page.contains(r#"<option value="teacher">teacher</option>"#),
        "a role picker"
    );
    let csrf = crate::support::hidden(&page, "csrf");
    let response = crate::support::no_redirects()
        .post(format!("{}/groups/quiz/role", console(&alice)))
        .form(&[
            ("csrf", csrf.as_str()),
            ("peer", &bob.peer_id.to_base58()),
            ("role", "teacher"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let (status, body) = remote(&bob, &alice, "query", json!({"table": "answers"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"][0]["answer"], "42");
    assert_eq!(body["data"][0]["_owner"], bob.peer_id.to_base58());
    // Removed from the group: admitted no more.
    let (status, _) = post(
        &console(&alice),
        "/api/groups/quiz/kick",
        json!({"peer": bob.peer_id.to_base58()}),
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = remote(&bob, &alice, "query", json!({"table": "answers"})).await;
    assert_eq!(status, 403);

    // Anyone may list the open groups; the invite-only one is not shown.
    let (status, body) = remote(&carol, &alice, "query", json!({"table": "_groups"})).await;
    assert_eq!(status, 200, "{body}");
    let listed = body["data"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{body}");
    assert_eq!(listed[0]["id"], "quiz");
    assert_eq!(listed[0]["name"], "Friday quiz");
    assert_eq!(listed[0]["app_type"], "quiz");
    assert_eq!(listed[0]["host"], alice.peer_id.to_base58());
    let (status, body) = remote(
        &carol,
        &alice,
        "query",
        json!({"table": "_groups", "where": "id = ?", "args": ["quiz"]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    // The stored groups themselves stay out of reach.
    let (status, _) = remote(&carol, &alice, "query", json!({"table": "_group_members"})).await;
    assert_eq!(status, 403);
    // A binding that names no group id is refused with the reason.
    let (status, body) = post(
        &console(&alice),
        "/api/data/set-policy",
        json!({"table": "answers", "access": {"read": "group", "group": {"id": "no such id!"}}}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("is not a group id"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_reaches_only_its_own_peers_groups() {
    let (alice, bob, carol) = three_peers().await;
    create(&alice, json!({"id": "lobby"})).await;
    create(&carol, json!({"id": "lobby"})).await;
    // Bob shows Alice's site: its page carries a token for Alice.
    let page = crate::support::get_page(&format!("{}/p/{}/", console(&bob), alice.peer_id)).await;
    let token = crate::support::meta(&page, "goop-site-token");
    assert!(!token.is_empty());
    let client = reqwest::Client::new();
    let call = |host: String, op: &'static str, token: Option<String>| {
        let client = client.clone();
        let base = console(&bob);
        async move {
            let mut request = client
                .post(format!("{base}/api/p/{host}/groups/{op}"))
                .header("origin", "null")
                .json(&json!({"group": "lobby"}));
            if let Some(token) = token {
                request = request.header("x-goop-site-token", token);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, joined) = call(alice.peer_id.to_base58(), "join", Some(token.clone())).await;
    assert_eq!(status, 200, "{joined}");
    assert_eq!(joined["host"], alice.peer_id.to_base58());
    // Alice's token does not open Carol's groups, and a sandboxed page without one gets nothing.
    let (status, body) = call(carol.peer_id.to_base58(), "join", Some(token)).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("a site reaches only its own peer")
    );
    let (status, _) = call(carol.peer_id.to_base58(), "join", None).await;
    assert_eq!(status, 403);
    assert_eq!(
        groups_of(&console(&bob)).await["joined"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // The event stream wants the token too.
    let response = reqwest::Client::new()
        .get(format!(
            "{}/api/p/{}/groups/events",
            console(&bob),
            carol.peer_id
        ))
        .header("origin", "null")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_function_hosts_a_game_through_goop_group() {
    let alice = TestPeer::spawn("Alice", |c| {
        short_ttl(c, 6);
        c.presence.rendezvous_host = true;
        c.lua.enabled = true;
    })
    .await;
    let functions = alice.dir().path().join("site/lua/functions");
    std::fs::create_dir_all(&functions).unwrap();
    std::fs::write(
        functions.join("game.lua"),
        r#"function call(request)
  local p = request.params
  if p.action == "start" then
    local g = goop.group.create({ id = "game-" .. p.n, name = "Game " .. p.n, invite_only = true })
    goop.group.invite(g.id, goop.peer.id)
    return { id = g.id, invite_only = g.invite_only }
  elseif p.action == "members" then
    return { members = goop.group.members(p.id), me = goop.group.is_member(p.id), checked = pcall(goop.group.is_member, p.id, "not-a-peer") }
  elseif p.action == "say" then
    goop.group.send(p.id, { text = "from lua" })
    return { ok = true }
  elseif p.action == "close" then
    goop.group.close(p.id)
    return { ok = true }
  end
end
"#,
    )
    .unwrap();
    let hub = format!("http://{}", alice.hub.as_ref().unwrap().hub_addr);
    let bob = TestPeer::spawn("Bob", |c| {
        short_ttl(c, 6);
        c.presence.rendezvous_wan = hub;
    })
    .await;
    assert!(lists(&bob, &alice.peer_id.to_base58(), PeerState::Online).await);
    assert!(lists(&alice, &bob.peer_id.to_base58(), PeerState::Online).await);
    let mut bob_hears = events(&bob).await;
    let game = async |params: Value| {
        let (status, body) = remote(
            &bob,
            &alice,
            "lua/call",
            json!({"function": "game", "params": params}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        body["data"].clone()
    };

    // The engine finds a new script within a second or so.
    let mut started = Value::Null;
    for _ in 0..40 {
        let (status, body) = remote(
            &bob,
            &alice,
            "lua/call",
            json!({"function": "game", "params": {"action": "start", "n": 1}}),
        )
        .await;
        if status == 200 {
            started = body["data"].clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(started, json!({"id": "game-1", "invite_only": true}));
    let invite = next_event(&mut bob_hears, "invite").await;
    assert_eq!(invite["group"], "game-1");
    let (status, body) = post(
        &console(&bob),
        "/api/groups/answer",
        json!({"host": alice.peer_id.to_base58(), "group": "game-1", "accept": true}),
    )
    .await;
    assert_eq!(status, 204, "{body}");

    let members = game(json!({"action": "members", "id": "game-1"})).await;
    assert_eq!(
        member_ids(&members["members"]),
        [alice.peer_id.to_base58(), bob.peer_id.to_base58()]
    );
    assert_eq!(members["me"], true, "the caller is a member");
    assert_eq!(
        members["checked"], false,
        "an ID that is no peer is an error"
    );
    game(json!({"action": "say", "id": "game-1"})).await;
    let said = next_event(&mut bob_hears, "msg").await;
    assert_eq!(said["payload"], json!({"text": "from lua"}));
    assert_eq!(said["from"], alice.peer_id.to_base58());
    game(json!({"action": "close", "id": "game-1"})).await;
    let closed = next_event(&mut bob_hears, "closed").await;
    assert_eq!(closed["group"], "game-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_room_keeps_its_last_messages_for_those_who_join_later() {
    let (alice, bob, carol) = three_peers().await;
    // Created from the page, as an owner would.
    let base = console(&alice);
    let page = crate::support::get_page(&format!("{base}/groups")).await;
    let csrf = crate::support::hidden(&page, "csrf");
    let client = crate::support::no_redirects();
    let response = client
        .post(format!("{base}/groups"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("name", "Town square"),
            ("id", "square"),
            ("room", "1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let hosted = groups_of(&base).await["hosted"][0].clone();
    assert_eq!(
        (
            hosted["app_type"].as_str(),
            hosted["history"].as_array().map(Vec::len)
        ),
        (Some("chat"), Some(0))
    );
    assert_eq!(join(&bob, &alice, "square").await.0, 200);
    // Bob says something from his room page's form; Alice from the API.
    let bob_base = console(&bob);
    let room = format!("{bob_base}/groups/{}/square", alice.peer_id);
    let page = crate::support::get_page(&room).await;
    let csrf = crate::support::hidden(&page, "csrf");
    let response = client
        .post(format!("{room}/say"))
        .form(&[("csrf", csrf.as_str()), ("text", "first!")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let (status, _) = post(&base, "/api/groups/send", json!({"host": alice.peer_id.to_base58(), "group": "square", "payload": {"text": "welcome all"}})).await;
    assert_eq!(status, 204);

    // Carol comes later and is told what was said.
    let (status, joined) = join(&carol, &alice, "square").await;
    assert_eq!(status, 200, "{joined}");
    let said: Vec<&str> = joined["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["payload"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(said, ["first!", "welcome all"]);
    assert_eq!(joined["history"][0]["from"], bob.peer_id.to_base58());
    let page = crate::support::get_page(&format!(
        "{}/groups/{}/square",
        console(&carol),
        alice.peer_id
    ))
    .await;
    assert!(
        page.contains("first!") && page.contains("welcome all"),
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_room_speaks_on_chat_room_topics_and_takes_either() {
    let (alice, bob, _carol) = three_peers().await;
    create(
        &alice,
        json!({"id": "square", "app_type": "chat", "history": 10}),
    )
    .await;
    assert_eq!(join(&bob, &alice, "square").await.0, 200);
    // A bare peer with the transport joins on the room's own topic and hears the room on it.
    let (_node, mq, sessions, _stop) = crate::support::mq_stranger(&alice).await;
    let mut heard = mq.subscribe("chat.room:*");
    mq.serve(sessions);
    mq.send(alice.peer_id, "chat.room:square:join", json!({}))
        .await
        .unwrap();
    let mut topics = Vec::new();
    let (status, _) = post(
        &console(&bob),
        "/api/groups/send",
        json!({"host": alice.peer_id.to_base58(), "group": "square", "payload": {"text": "hi room"}}),
    )
    .await;
    assert_eq!(status, 204);
    while !topics.iter().any(|t: &String| t.ends_with(":msg")) {
        let message = tokio::time::timeout(WAIT, heard.recv())
            .await
            .expect("the room's messages within 10 s")
            .unwrap();
        topics.push(message.topic.clone());
        if message.topic.ends_with(":msg") {
            assert_eq!(message.payload["payload"]["text"], "hi room");
            assert_eq!(message.payload["from"], bob.peer_id.to_base58());
        }
        message.reply.accept();
    }
    assert_eq!(topics[0], "chat.room:square:welcome", "{topics:?}");
    assert!(
        topics.iter().all(|t| t.starts_with("chat.room:square:")),
        "{topics:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_notices_a_member_that_is_gone_by_its_own_pings() {
    let (alice, bob, _carol) = three_peers().await;
    create(&alice, json!({"id": "watch"})).await;
    assert_eq!(join(&bob, &alice, "watch").await.0, 200);
    let mut alice_hears = events(&alice).await;
    let gone = std::time::Instant::now();
    // Bob stops without leaving (his membership is kept for his next start).
    bob.shutdown().await;
    let alone = format!(
        r#""members":[{{"peer_id":"{}","role":"host"}}]"#,
        alice.peer_id
    );
    alice_hears
        .wait_for(Duration::from_secs(30), |e| e.data.contains(&alone))
        .await;
    let noticed = gone.elapsed();
    assert!(
        noticed <= Duration::from_secs(15),
        "noticed after {noticed:?}"
    );
    // By the host's own ping, not by the 15 s of silence that would drop it otherwise.
    let stats = alice.groups.stats().await;
    assert_eq!(stats.dropped_unanswered, 1, "{stats:?}");
    assert_eq!(stats.dropped_silent, 0, "{stats:?}");
}

#[tokio::test]
async fn one_host_cannot_push_out_everyone_elses_invitations() {
    use goop2::store::groups::SubscriptionRow;
    let dir = tempfile::tempdir().unwrap();
    let store = goop2::store::peer::PeerStore::open(&dir.path().join("data.db"))
        .await
        .unwrap();
    let groups = store.groups();
    let invite = |host: &str, n: i64| SubscriptionRow {
        host_peer_id: host.into(),
        group_id: format!("g{n}"),
        group_name: format!("Group {n}"),
        app_type: String::new(),
        role: String::new(),
        subscribed_ms: n,
    };
    groups
        .add_invite(&invite("friend", 0), 10, 100)
        .await
        .unwrap();
    for n in 1..=50 {
        groups
            .add_invite(&invite("flooder", n), 10, 100)
            .await
            .unwrap();
    }
    let kept = groups.invites().await.unwrap();
    let of = |host: &str| kept.iter().filter(|i| i.host_peer_id == host).count();
    assert_eq!(of("flooder"), 10, "the newest ten of one host");
    assert_eq!(of("friend"), 1, "the others' are kept");
    assert!(kept.iter().any(|i| i.group_id == "g50") && !kept.iter().any(|i| i.group_id == "g40"));
    store.close().await;
}
