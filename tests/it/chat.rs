//! Chat between real peers met through a hub, over `/goop/mq/1.0.0` on loopback: direct
//! messages both ways kept across a restart with their read state, what the sender hears when a
//! message cannot be delivered, the block list, Lua chat commands, broadcasts, the live stream
//! and the pages that work without JavaScript.

use std::time::Duration;

use goop2::services::presence::peer_table::PeerState;
use serde_json::{Value, json};

use crate::console::console;
use crate::support::{SseClient, TestPeer, hidden, lists, no_redirects, short_ttl};

/// Alice (who hosts the hub) and Bob, each listing the other; with `edit` applied to Bob.
async fn alice_and_bob(edit_bob: impl FnOnce(&mut goop2::config::Config)) -> (TestPeer, TestPeer) {
    crate::support::host_and_guest("Alice", "Bob", edit_bob).await
}

async fn see_each_other(a: &TestPeer, b: &TestPeer) {
    assert!(lists(a, &b.peer_id.to_base58(), PeerState::Online).await);
    assert!(lists(b, &a.peer_id.to_base58(), PeerState::Online).await);
}

async fn send(from: &TestPeer, to: &TestPeer, text: &str) -> (u16, Value) {
    post(
        &format!("{}/api/chat/{}", console(from), to.peer_id),
        json!({ "text": text }),
    )
    .await
}

async fn post(url: &str, body: Value) -> (u16, Value) {
    crate::support::post_with(&reqwest::Client::new(), url, body.to_string()).await
}

async fn get(url: &str) -> Value {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    response.json().await.unwrap()
}

async fn history(of: &TestPeer, with: &TestPeer) -> Vec<Value> {
    let url = format!("{}/api/chat/{}", console(of), with.peer_id);
    get(&url).await.as_array().unwrap().clone()
}

fn texts(messages: &[Value]) -> Vec<(bool, String)> {
    messages
        .iter()
        .map(|m| {
            (
                m["outgoing"].as_bool().unwrap(),
                m["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_messages_go_both_ways_and_are_kept_across_a_restart() {
    let (alice, bob) = alice_and_bob(|_| {}).await;
    let mut live = SseClient::connect(&format!("{}/api/chat/events", console(&bob)), None).await;

    let (status, sent) = send(&alice, &bob, "Hi Bob").await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["status"], "delivered", "{sent}");
    assert_eq!(sent["outgoing"], true);

    // Bob's console hears it live, from Alice, and counts it unread.
    let heard = live
        .wait_for(Duration::from_secs(10), |e| e.data.contains("Hi Bob"))
        .await;
    let heard: Value = serde_json::from_str(&heard.data).unwrap();
    assert_eq!(heard["kind"], "message");
    assert_eq!(heard["message"]["peer_id"], alice.peer_id.to_base58());
    assert_eq!(heard["message"]["outgoing"], false);
    let overview = get(&format!("{}/api/chat", console(&bob))).await;
    assert_eq!(overview["unread"][alice.peer_id.to_base58()], 1);
    let list = crate::support::get_page(&format!("{}/", console(&bob))).await;
    assert!(
        list.contains(r#"class="badge unread""#),
        "the peer list shows the unread count"
    );

    let (status, reply) = send(&bob, &alice, "Hello Alice").await;
    assert_eq!((status, &reply["status"]), (200, &json!("delivered")));
    assert_eq!(
        texts(&history(&alice, &bob).await),
        [(true, "Hi Bob".into()), (false, "Hello Alice".into())]
    );

    // The peer's page shows the conversation and marks it read.
    let page = crate::support::get_page(&format!("{}/peer/{}", console(&bob), alice.peer_id)).await;
    assert!(page.contains("Hi Bob") && page.contains("Hello Alice"));
    let overview = get(&format!("{}/api/chat", console(&bob))).await;
    assert_eq!(overview["unread"], json!({}));

    // Bob restarts: the conversation is still there, and goes on.
    let dir = bob.shutdown().await;
    let bob = TestPeer::start(dir).await;
    see_each_other(&alice, &bob).await;
    assert_eq!(
        texts(&history(&bob, &alice).await),
        [(false, "Hi Bob".into()), (true, "Hello Alice".into())]
    );
    let (status, again) = send(&alice, &bob, "Welcome back").await;
    assert_eq!(
        (status, &again["status"]),
        (200, &json!("delivered")),
        "{again}"
    );
    assert_eq!(history(&bob, &alice).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_to_a_peer_that_stopped_is_reported_and_kept_as_not_delivered() {
    let (alice, bob) = alice_and_bob(|_| {}).await;
    let bob_id = bob.peer_id;
    bob.shutdown().await;
    let url = format!("{}/api/chat/{bob_id}", console(&alice));
    let started = std::time::Instant::now();
    let (status, sent) = post(&url, json!({"text": "are you there?"})).await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["status"], "failed", "{sent}");
    assert!(
        sent["error"].as_str().unwrap().starts_with("not delivered"),
        "{sent}"
    );
    assert!(started.elapsed() < Duration::from_secs(35));
    let kept = get(&url).await;
    assert_eq!(kept[0]["status"], "failed");
    assert_eq!(kept[0]["error"], sent["error"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_peer_cannot_message_until_unblocked() {
    let (alice, bob) = alice_and_bob(|_| {}).await;
    let block = format!("{}/api/chat/{}/block", console(&bob), alice.peer_id);
    assert_eq!(post(&block, json!({"blocked": true})).await.0, 204);
    let blocked = get(&format!("{}/api/chat/blocked", console(&bob))).await;
    assert_eq!(blocked, json!([alice.peer_id.to_base58()]));

    let (status, sent) = send(&alice, &bob, "let me in").await;
    assert_eq!(status, 200);
    assert_eq!(sent["status"], "failed");
    assert!(
        sent["error"].as_str().unwrap().contains("blocked"),
        "{sent}"
    );
    assert!(history(&bob, &alice).await.is_empty(), "nothing kept");
    // Bob cannot write to whom he blocked either, until he unblocks.
    assert_eq!(send(&bob, &alice, "hm").await.0, 409);
    // Nor does Bob's data API or any function of his answer Alice.
    let (status, refused) = post(
        &format!("{}/api/p/{}/data/tables", console(&alice), bob.peer_id),
        json!({}),
    )
    .await;
    assert_eq!(status, 403, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("does not take requests from you"),
        "{refused}"
    );

    assert_eq!(post(&block, json!({"blocked": false})).await.0, 204);
    let (_, sent) = send(&alice, &bob, "hello again").await;
    assert_eq!(sent["status"], "delivered", "{sent}");
    let (status, tables) = post(
        &format!("{}/api/p/{}/data/tables", console(&alice), bob.peer_id),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{tables}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_command_is_answered_by_the_owners_lua_script() {
    let (alice, bob) = alice_and_bob(|c| c.lua.enabled = true).await;
    let scripts = bob.dir().path().join("site/lua");
    std::fs::create_dir_all(&scripts).unwrap();
    std::fs::write(
        scripts.join("help.lua"),
        "--- Lists the commands.\nfunction handle(args)\n  return 'Commands: ' .. table.concat(goop.commands(), ', ') .. ' (asked by ' .. goop.peer.label .. ')'\nend\n",
    )
    .unwrap();
    // The engine picks a new script up within a second or so.
    let mut answer = None;
    for _ in 0..20 {
        let (_, sent) = send(&alice, &bob, "!help").await;
        assert_eq!(sent["status"], "delivered", "{sent}");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let replies: Vec<String> = history(&alice, &bob)
            .await
            .iter()
            .filter(|m| m["outgoing"] == false)
            .map(|m| m["text"].as_str().unwrap().to_owned())
            .collect();
        if let Some(reply) = replies.into_iter().find(|t| t.starts_with("Commands:")) {
            answer = Some(reply);
            break;
        }
    }
    let answer = answer.expect("the command answered");
    assert_eq!(answer, "Commands: help (asked by Alice)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_reaches_every_online_peer_of_the_hub() {
    let (alice, bob) = alice_and_bob(|_| {}).await;
    let hub = format!("http://{}", alice.hub.as_ref().unwrap().hub_addr);
    // Carol is on another LAN tag: known to the others only through the hub.
    let carol = TestPeer::spawn("Carol", |c| {
        short_ttl(c, 6);
        c.presence.rendezvous_wan = hub;
    })
    .await;
    see_each_other(&alice, &carol).await;
    see_each_other(&bob, &carol).await;

    // Everyone else Alice lists online: Bob and Carol, and any peer of another test that found
    // her hub on a port its own hub had left (tests run side by side).
    let mut online = Vec::new();
    for peer in alice.table.snapshot().await {
        if peer.state == PeerState::Online && !peer.stranger && peer.peer_id != alice.peer_id {
            online.push(peer.peer_id);
        }
    }
    assert!(online.contains(&bob.peer_id) && online.contains(&carol.peer_id));
    let (status, outcome) = post(
        &format!("{}/api/chat/broadcast", console(&alice)),
        json!({"text": "Meeting at noon"}),
    )
    .await;
    assert_eq!(status, 200, "{outcome}");
    let n = online.len();
    assert_eq!(
        outcome,
        json!({"sent": n, "delivered": n, "failed": 0}),
        "to {online:?}"
    );
    for peer in [&bob, &carol] {
        let heard = get(&format!("{}/api/chat/broadcasts", console(peer))).await;
        assert_eq!(heard[0]["text"], "Meeting at noon");
        assert_eq!(heard[0]["from"], alice.peer_id.to_base58());
    }
    // Not a conversation: nothing is kept per peer.
    assert!(history(&bob, &alice).await.is_empty());

    // The sender's own rate: ten a minute.
    let mut limited = None;
    for n in 0..12 {
        let (status, body) = post(
            &format!("{}/api/chat/broadcast", console(&bob)),
            json!({"text": format!("spam {n}")}),
        )
        .await;
        if status == 429 {
            limited = Some(body);
            break;
        }
    }
    let limited = limited.expect("refused past the rate");
    assert!(
        limited["error"]
            .as_str()
            .unwrap()
            .contains("too many broadcasts")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_send_and_block_without_javascript_and_bad_input_is_named() {
    let (alice, bob) = alice_and_bob(|_| {}).await;
    let base = console(&alice);
    let page = crate::support::get_page(&format!("{base}/peer/{}", bob.peer_id)).await;
    let csrf = hidden(&page, "csrf");
    let client = no_redirects();
    let response = client
        .post(format!("{base}/peer/{}/chat", bob.peer_id))
        .form(&[("csrf", csrf.as_str()), ("text", "from a form")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.ends_with("#chat"), "{location}");
    let page = crate::support::get_page(&format!("{base}{location}")).await;
    assert!(page.contains("Delivered."), "the notice says so");
    assert!(page.contains("from a form"));
    let bobs = crate::support::get_page(&format!("{}/chat", console(&bob))).await;
    assert!(
        bobs.contains("from a form"),
        "Bob's chat page lists the conversation"
    );

    // Bad input names the problem.
    let url = format!("{base}/api/chat/{}", bob.peer_id);
    let (status, body) = post(&url, json!({})).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("text"), "{body}");
    let (status, body) = post(&url, json!({"text": "x".repeat(5000)})).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("at most 4096 bytes"),
        "{body}"
    );
    let (status, body) = post(&url, json!({"text": "   "})).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = post(
        &format!("{base}/api/chat/not-a-peer"),
        json!({"text": "hi"}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("not a peer ID"),
        "{body}"
    );

    // Block from the peer's page.
    let response = client
        .post(format!("{base}/peer/{}/block", bob.peer_id))
        .form(&[("csrf", csrf.as_str()), ("blocked", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let page = crate::support::get_page(&format!("{base}/peer/{}", bob.peer_id)).await;
    assert!(page.contains("You blocked this peer"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sites_own_topics_reach_a_listening_page_of_the_other_peer() {
    let (alice, bob) = alice_and_bob(|_| {}).await;
    let send = format!("{}/api/mq/send", console(&bob));
    let move_ =
        json!({"peer": alice.peer_id.to_base58(), "topic": "app.chess", "payload": {"move": "e4"}});
    // Nobody listens at Alice's: Bob hears so.
    let (status, body) = post(&send, move_.clone()).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no page of this peer listens"),
        "{body}"
    );
    // A page of Alice's listens now.
    let mut page = SseClient::connect(&format!("{}/api/mq/events", console(&alice)), None).await;
    let (status, body) = post(&send, move_).await;
    assert_eq!(status, 204, "{body}");
    let heard = page
        .wait_for(Duration::from_secs(10), |e| e.data.contains("app.chess"))
        .await;
    let heard: Value = serde_json::from_str(&heard.data).unwrap();
    assert_eq!(heard["from"], bob.peer_id.to_base58());
    assert_eq!(heard["payload"], json!({"move": "e4"}));
    // A site's topics are its own: not chat's, not the groups'.
    let (status, body) = post(
        &send,
        json!({"peer": alice.peer_id.to_base58(), "topic": "chat", "payload": {"text": "sneaky"}}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("start with \"app.\""),
        "{body}"
    );
    // Alice's site, shown in Bob's console, sends with its token to Alice only.
    let site = crate::support::get_page(&format!("{}/p/{}/", console(&bob), alice.peer_id)).await;
    let token = crate::support::meta(&site, "goop-site-token");
    let response = reqwest::Client::new()
        .post(format!("{}/api/p/{}/mq/send", console(&bob), alice.peer_id))
        .header("origin", "null")
        .header("x-goop-site-token", &token)
        .json(&json!({"topic": "app.chess", "payload": {"move": "d4"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    page.wait_for(Duration::from_secs(10), |e| e.data.contains("d4"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_asked_who_it_is_answers_with_what_it_announces_but_its_email() {
    let (alice, bob) = alice_and_bob(|_| {}).await;
    let mut answers = bob.mq.subscribe("identity.response");
    bob.mq
        .send(alice.peer_id, "identity", json!({}))
        .await
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), answers.recv())
        .await
        .expect("an answer within 10 s")
        .unwrap();
    assert_eq!(answer.from, alice.peer_id);
    assert_eq!(answer.payload["peerId"], alice.peer_id.to_base58());
    assert_eq!(answer.payload["content"], "Alice");
    assert_eq!(
        answer.payload["goopClientVersion"],
        env!("CARGO_PKG_VERSION")
    );
    assert!(answer.payload.get("email").is_none(), "{}", answer.payload);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_no_presence_names_is_asked_who_it_is() {
    use goop2::services::mq::MqError;

    let (alice, _bob) = alice_and_bob(|_| {}).await;
    // A peer with the transport that no hub and no LAN announced.
    let (_node, stranger, sessions, _stop) = crate::support::mq_stranger(&alice).await;
    let mut asked = stranger.subscribe("identity");
    stranger.serve(sessions);
    // An answer nobody asked for is refused.
    assert_eq!(
        stranger
            .send(
                alice.peer_id,
                "identity.response",
                json!({"content": "Impostor"})
            )
            .await,
        Err(MqError::Refused("not asked".into()))
    );
    stranger
        .send(alice.peer_id, "chat", json!({"text": "hello from nowhere"}))
        .await
        .unwrap();
    let question = tokio::time::timeout(Duration::from_secs(10), asked.recv())
        .await
        .expect("Alice asks who wrote")
        .unwrap();
    assert_eq!(question.from, alice.peer_id);
    question.reply.accept();
    stranger
        .send(
            alice.peer_id,
            "identity.response",
            json!({"content": "Stranger Sam"}),
        )
        .await
        .unwrap();
    let page = crate::support::get_page(&format!("{}/chat", console(&alice))).await;
    assert!(page.contains("Stranger Sam"), "{page}");
}
