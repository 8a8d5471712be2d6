//! The peer's browser console over real HTTP: peers, peer pages, sandboxed sites, the
//! cross-site rule, access rules, refusals (the error page, the JSON error shape, CORS).

use std::time::Duration;

use goop2::config::{Config, Secret};
use goop2::modes::peer::RunningPeer;
use goop2::services::auth;
use goop2::services::presence::peer_table::PeerState;
use goop2::telemetry::LogBuffer;

use crate::support::{PeerDir, SseClient, TestPeer, eventually, hidden, no_redirects, short_ttl};

const WAIT: Duration = Duration::from_secs(15);

/// Alice (embedded hub, console) and Bob (joins Alice's hub), once Alice sees Bob.
async fn alice_and_bob() -> (TestPeer, TestPeer) {
    let alice = TestPeer::spawn("Alice", |c| {
        short_ttl(c, 6);
        c.presence.rendezvous_host = true;
    })
    .await;
    let hub = format!("http://{}", alice.hub.as_ref().unwrap().hub_addr);
    let tag = alice.dir().config().p2p.mdns_tag;
    let b_dir = PeerDir::new("Bob", |c| {
        short_ttl(c, 6);
        c.presence.rendezvous_wan = hub;
        c.p2p.mdns_tag = tag;
        c.viewer.http_addr = String::new();
    });
    std::fs::write(b_dir.path().join("site/index.html"), "<h1>Bob's page</h1>").unwrap();
    let bob = TestPeer::start(b_dir).await;
    let bob_id = bob.peer_id.to_base58();
    assert!(crate::support::lists(&alice, &bob_id, PeerState::Online).await);
    (alice, bob)
}

pub fn console(peer: &RunningPeer) -> String {
    format!("http://{}", peer.console_addr.expect("a console"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_lists_peers_and_shows_their_sites_sandboxed() {
    let (alice, bob) = alice_and_bob().await;
    let base = console(&alice);
    let bob_id = bob.peer_id.to_base58();

    let page = no_redirects().get(format!("{base}/")).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains(&format!("data-peer-id=\"{bob_id}\"")),
        "{html}"
    );
    assert!(html.contains(">Bob</a>"));

    let peers: Vec<serde_json::Value> = no_redirects()
        .get(format!("{base}/api/peers"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        peers
            .iter()
            .any(|p| p["peer_id"] == bob_id.as_str() && p["label"] == "Bob")
    );

    let site = no_redirects()
        .get(format!("{base}/p/{bob_id}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(site.status().as_u16(), 200);
    assert_eq!(site.headers()["content-type"], "text/html");
    let policy = site.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(policy.starts_with("sandbox allow-scripts"), "{policy}");
    assert!(
        !policy.contains("allow-same-origin"),
        "the site must get an opaque origin"
    );
    let html = site.text().await.unwrap();
    assert!(
        html.starts_with("<meta name=\"goop-site-token\" content=\""),
        "the data token comes first: {html}"
    );
    assert!(html.ends_with("\"><h1>Bob's page</h1>"), "{html}");

    let mine = no_redirects()
        .get(format!("{base}/p/{}/", alice.peer_id))
        .send()
        .await
        .unwrap();
    assert_eq!(mine.status().as_u16(), 200);
    assert!(mine.text().await.unwrap().contains("Hello from my peer"));

    let refused = no_redirects()
        .get(format!("{base}/p/{bob_id}/lua/functions/x.lua"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 403);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("This site does not share /lua/functions/x.lua.")
    );

    let details = no_redirects()
        .get(format!("{base}/peer/{bob_id}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        details.contains("class=\"reach reachable\">yes, "),
        "{details}"
    );
    assert!(
        details.contains("<code>/goop/site/1.0.0</code>"),
        "{details}"
    );
    assert!(details.contains("<code>goop2/"), "{details}");

    bob.shutdown().await;
    alice.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn favourites_and_known_peers_survive_a_restart_and_reachability_is_probed() {
    let (alice, bob) = alice_and_bob().await;
    let base = console(&alice);
    let bob_id = bob.peer_id.to_base58();

    // The prober finds Bob reachable without anyone opening his page.
    assert!(
        eventually(WAIT, async || {
            let peers: Vec<serde_json::Value> = no_redirects()
                .get(format!("{base}/api/peers"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            peers.iter().any(|p| {
                p["peer_id"] == bob_id.as_str() && p["reachability"]["status"] == "reachable"
            })
        })
        .await
    );

    let html = no_redirects()
        .get(format!("{base}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("class=\"reach reachable\""), "{html}");
    let csrf = hidden(&html, "csrf");
    let url = format!("{base}/peer/{bob_id}/favorite");
    let forged = no_redirects()
        .post(&url)
        .form(&[("favorite", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403, "no CSRF token, no change");
    let unknown = no_redirects()
        .post(format!("{base}/peer/{}/favorite", alice.peer_id))
        .form(&[("favorite", "1"), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 404);
    let marked = no_redirects()
        .post(&url)
        .form(&[("favorite", "1"), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(marked.status().as_u16(), 303);
    let entry = |peers: Vec<goop2::services::presence::peer_table::PeerEntry>| {
        peers.into_iter().find(|p| p.peer_id.to_base58() == bob_id)
    };
    assert!(entry(alice.table.snapshot().await).unwrap().favorite);

    bob.shutdown().await;
    let a_dir = alice.shutdown().await;

    // Alice again, alone: Bob is listed from data.db, offline, still a favourite.
    let alice = TestPeer::start(a_dir).await;
    let bob_again = entry(alice.table.snapshot().await).expect("Bob remembered");
    assert_eq!(bob_again.label, "Bob");
    assert!(bob_again.favorite);
    assert_eq!(bob_again.state, PeerState::Offline);
    let html = no_redirects()
        .get(format!("{}/", console(&alice)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("aria-pressed=\"true\""), "{html}");
    alice.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_peer_gets_a_clear_error_page() {
    let lonely = TestPeer::spawn("Lonely", |c| short_ttl(c, 6)).await;
    let nobody = goop2::identity::PeerId::random();
    let response = no_redirects()
        .get(format!("{}/p/{nobody}/", console(&lonely)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 502);
    let html = response.text().await.unwrap();
    // Said in words; what libp2p said is folded away under "Details".
    assert!(
        html.contains("This peer is not answering, and this console has not heard of it"),
        "{html}"
    );
    let (said, folded) = html
        .split_once("<details>")
        .expect("the detail is folded away");
    assert!(
        !said.contains("libp2p") && !said.contains("Failed"),
        "{said}"
    );
    assert!(folded.contains("the peer could not be reached"), "{folded}");
    let bad = no_redirects()
        .get(format!("{}/p/not-a-peer/", console(&lonely)))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    lonely.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_refuses_requests_other_origins_start() {
    let peer = TestPeer::spawn("Guarded", |c| short_ttl(c, 6)).await;
    let base = console(&peer);
    // A sandboxed site's fetch carries `Origin: null`.
    let from_site = no_redirects()
        .get(format!("{base}/api/peers"))
        .header("Origin", "null")
        .send()
        .await
        .unwrap();
    assert_eq!(from_site.status().as_u16(), 403);
    let from_elsewhere = no_redirects()
        .post(format!("{base}/logout"))
        .header("Sec-Fetch-Site", "cross-site")
        .header("Sec-Fetch-Mode", "cors")
        .send()
        .await
        .unwrap();
    assert_eq!(from_elsewhere.status().as_u16(), 403);
    // Following a link from elsewhere is fine.
    let navigation = no_redirects()
        .get(format!("{base}/"))
        .header("Sec-Fetch-Site", "cross-site")
        .header("Sec-Fetch-Mode", "navigate")
        .send()
        .await
        .unwrap();
    assert_eq!(navigation.status().as_u16(), 200);
    let same_origin = no_redirects()
        .get(format!("{base}/api/peers"))
        .header("Origin", base.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(same_origin.status().as_u16(), 200);
    peer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_form_gets_the_error_page_and_a_refused_api_call_the_json_error_shape() {
    let peer = TestPeer::spawn("Refusing", |c| short_ttl(c, 6)).await;
    let base = console(&peer);
    let refusal = "The CSRF token is missing or stale; reload the page and try again.";

    let form = no_redirects()
        .post(format!("{base}/edit/new"))
        .form(&[("path", "x.txt"), ("kind", "file")])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status().as_u16(), 403);
    assert!(
        form.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = form.text().await.unwrap();
    assert!(html.contains("<h1>403 Forbidden</h1>"), "{html}");
    assert!(html.contains(refusal), "{html}");

    let api = no_redirects()
        .put(format!("{base}/api/site/file?path=x.txt"))
        .header("if-none-match", "*")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(api.status().as_u16(), 403);
    let body: serde_json::Value = api.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"error": refusal, "code": 403}));

    // The cross-site rule answers an API call in JSON and a page with the page.
    let api = no_redirects()
        .get(format!("{base}/api/peers"))
        .header("Origin", "null")
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = api.json().await.unwrap();
    assert_eq!(body["code"], 403);
    let page = no_redirects()
        .post(format!("{base}/lua/run"))
        .header("Origin", "null")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 403);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("<h1>403 Forbidden</h1>")
    );

    // A site's preflight to the data proxy: only what the SDK needs, for an opaque origin.
    let me = peer.peer_id.to_base58();
    let preflight = no_redirects()
        .request(
            reqwest::Method::OPTIONS,
            format!("{base}/api/p/{me}/data/insert"),
        )
        .header("origin", "null")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type, x-goop-site-token",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status().as_u16(), 204);
    let header = |name: &str| preflight.headers()[name].to_str().unwrap().to_owned();
    assert_eq!(header("access-control-allow-origin"), "null");
    assert_eq!(header("access-control-allow-methods"), "POST");
    assert_eq!(
        header("access-control-allow-headers"),
        "content-type,x-goop-site-token"
    );
    assert_eq!(header("access-control-max-age"), "600");
    // The console's own pages need no CORS, and get none.
    let own = no_redirects()
        .post(format!("{base}/api/p/{me}/data/tables"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(own.status().as_u16(), 200);
    assert!(!own.headers().contains_key("access-control-allow-origin"));
    peer.shutdown().await;
}

/// A refusal's status and JSON body, which must be the JSON error shape (`code` is the status)
/// with an `error` that names `problem`.
async fn json_refusal(response: reqwest::Response, problem: &str) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    let text = response.text().await.unwrap();
    assert!(
        content_type.starts_with("application/json"),
        "{status} {content_type}: {text}"
    );
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["code"], status, "{body}");
    let error = body["error"].as_str().unwrap_or_else(|| panic!("{body}"));
    assert!(error.contains(problem), "{problem:?} in {body}");
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_calls_the_console_cannot_read_are_refused_in_the_json_error_shape() {
    let peer = TestPeer::spawn("Unreadable", |c| short_ttl(c, 6)).await;
    let base = console(&peer);
    let client = no_redirects();
    let get = |path: &str| client.get(format!("{base}{path}"));

    // A query parameter that is not a number, or one that is missing.
    let (status, _) =
        json_refusal(get("/api/peers?limit=many").send().await.unwrap(), "limit").await;
    assert_eq!(status, 400);
    let by_accept = get("/peers?limit=many")
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    let (status, _) = json_refusal(by_accept, "limit").await;
    assert_eq!(status, 400);
    let (status, _) =
        json_refusal(get("/api/logs?after=soon").send().await.unwrap(), "after").await;
    assert_eq!(status, 400);
    let (status, _) = json_refusal(get("/api/site/file").send().await.unwrap(), "path").await;
    assert_eq!(status, 400);

    // The data API answers with its own reply, which carries the same members.
    let huge = client
        .post(format!("{base}/api/data/query"))
        .header("content-type", "application/json")
        .body(vec![b' '; 70 * 1024])
        .send()
        .await
        .unwrap();
    let (status, body) = json_refusal(huge, "length limit").await;
    assert_eq!(status, 413);
    assert_eq!(body["ok"], false, "{body}");
    let not_utf8 = client
        .post(format!("{base}/api/p/%FF/data/tables"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    let (status, body) = json_refusal(not_utf8, "URL").await;
    assert_eq!(status, 400);
    assert_eq!(body["ok"], false, "{body}");
    peer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_off_loopback_needs_a_password_and_with_one_needs_a_session() {
    let dir = PeerDir::new("Exposed", |c| {
        short_ttl(c, 6);
        c.viewer.http_addr = "0.0.0.0:0".into();
    });
    let error = TestPeer::try_start(dir, LogBuffer::new(10))
        .await
        .err()
        .expect("refused");
    assert_eq!(
        error.to_string(),
        "viewer.http_addr (0.0.0.0:0) is not a loopback address, so viewer.admin_password must be \
         set; create one with `goop2 hash-password`"
    );

    let hash = auth::hash_password("console secret").unwrap();
    let peer = TestPeer::spawn("Locked", |c| {
        short_ttl(c, 6);
        c.viewer.admin_password = Secret::new(hash);
    })
    .await;
    let base = console(&peer);
    let anonymous = no_redirects().get(format!("{base}/")).send().await.unwrap();
    assert_eq!(anonymous.status().as_u16(), 303);
    assert_eq!(anonymous.headers()["location"], "/login");
    let api = no_redirects()
        .get(format!("{base}/api/peers"))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status().as_u16(), 401);
    let cookie = crate::support::sign_in(&base, "console secret").await;
    let page = no_redirects()
        .get(format!("{base}/"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    // CSRF: signing out without the token is refused.
    let no_token = no_redirects()
        .post(format!("{base}/logout"))
        .header("Cookie", &cookie)
        .form(&[("csrf", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status().as_u16(), 403);
    peer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_list_updates_live() {
    let alice = TestPeer::spawn("Alice", |c| {
        short_ttl(c, 6);
        c.presence.rendezvous_host = true;
    })
    .await;
    let mut events =
        SseClient::connect(&format!("{}/api/peers/events", console(&alice)), None).await;
    assert_eq!(events.status, 200);
    let hub = format!("http://{}", alice.hub.as_ref().unwrap().hub_addr);
    let tag = alice.dir().config().p2p.mdns_tag;
    let carol = TestPeer::spawn("Carol", |c| {
        short_ttl(c, 6);
        c.presence.rendezvous_wan = hub;
        c.p2p.mdns_tag = tag;
        c.viewer.http_addr = String::new();
    })
    .await;
    let update = events
        .wait_for(WAIT, |e| e.json()["change"] == "updated")
        .await
        .json();
    assert_eq!(update["peer"]["label"], "Carol");
    assert_eq!(update["peer"]["peer_id"], carol.peer_id.to_base58());
    let carol_id = carol.peer_id.to_base58();
    carol.shutdown().await;
    let gone = events
        .wait_for(WAIT, |e| e.json()["change"] == "offline")
        .await
        .json();
    assert_eq!(gone["peerId"], carol_id.as_str());
    alice.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_page_filters_by_level_and_tails_live() {
    let dir = PeerDir::new("Logger", |c| short_ttl(c, 6));
    let logs = LogBuffer::new(100);
    logs.push("INFO", "goop2::test", "an ordinary day".into(), vec![]);
    logs.push("ERROR", "goop2::test", "something broke".into(), vec![]);
    let peer = TestPeer::start_with_logs(dir, logs.clone()).await;
    let base = console(&peer);

    let page = no_redirects()
        .get(format!("{base}/logs?level=error"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("something broke"), "{page}");
    assert!(!page.contains("an ordinary day"), "INFO is below ERROR");
    assert!(page.contains("<option selected>ERROR</option>"));

    let mut tail = SseClient::connect(&format!("{base}/logs/stream?after=999999"), None).await;
    logs.push(
        "WARN",
        "goop2::test",
        "live and well".into(),
        vec![("peer.id".into(), "x".into())],
    );
    let record = tail
        .next(Duration::from_secs(5))
        .await
        .expect("a live record")
        .json();
    assert_eq!(record["message"], "live and well");
    assert_eq!(record["fields"][0][0], "peer.id");
    peer.shutdown().await;
}

fn settings(
    csrf: &str,
    fingerprint: &str,
    label: &str,
    wan: &str,
    heartbeat: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("csrf", csrf.into()),
        ("fingerprint", fingerprint.into()),
        ("label", label.into()),
        ("email", "alice@example.org".into()),
        ("rendezvous_wan", wan.into()),
        ("rendezvous_host", "on".into()),
        ("listen_port", "0".into()),
        ("mdns_tag", "goop-mdns".into()),
        ("ttl_seconds", "6".into()),
        ("heartbeat_seconds", heartbeat.into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_save_atomically_and_the_label_is_announced_at_once() {
    let alice = TestPeer::spawn("Alice", |c| {
        short_ttl(c, 6);
        c.presence.rendezvous_host = true;
    })
    .await;
    let base = console(&alice);
    let hub = format!("http://{}", alice.hub.as_ref().unwrap().hub_addr);
    let path = alice.dir().path().join("goop.json");

    let html = no_redirects()
        .get(format!("{base}/self"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (csrf, fingerprint) = (hidden(&html, "csrf"), hidden(&html, "fingerprint"));

    let invalid = no_redirects()
        .post(format!("{base}/self"))
        .form(&settings(&csrf, &fingerprint, "Alice", "", "9"))
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.status().as_u16(), 422);
    assert!(
        invalid
            .text()
            .await
            .unwrap()
            .contains("presence.heartbeat_seconds (9) must be less than presence.ttl_seconds (6)")
    );

    let forged = no_redirects()
        .post(format!("{base}/self"))
        .form(&settings("nope", &fingerprint, "Mallory", "", "1"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403);

    let saved = no_redirects()
        .post(format!("{base}/self"))
        .form(&settings(
            &csrf,
            &fingerprint,
            "Alice Cooper",
            "http://127.0.0.1:1",
            "1",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status().as_u16(), 303);
    let location = saved.headers()["location"].to_str().unwrap().to_owned();
    let notice = no_redirects()
        .get(format!("{base}{location}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        notice.contains(
            "presence.rendezvous_wan, the p2p settings take effect when the peer restarts"
        ),
        "{notice}"
    );
    let stored = Config::load(&path).unwrap().config;
    assert_eq!(stored.profile.label, "Alice Cooper");
    assert_eq!(stored.presence.rendezvous_wan, "http://127.0.0.1:1");

    // Announced without a restart: the hub shows the new label.
    let me = alice.peer_id.to_base58();
    assert!(
        eventually(WAIT, async || {
            let peers: Vec<serde_json::Value> = reqwest::get(format!("{hub}/peers.json"))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            peers
                .iter()
                .any(|p| p["peerId"] == me.as_str() && p["content"] == "Alice Cooper")
        })
        .await
    );

    // The old form is stale now: no silent overwrite.
    let stale = no_redirects()
        .post(format!("{base}/self"))
        .form(&settings(&csrf, &fingerprint, "Alice again", "", "1"))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status().as_u16(), 409);
    alice.shutdown().await;
}

/// A minimal PNG header: signature and an IHDR chunk of `width`×`height`.
fn png(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
    bytes.extend_from_slice(&width.to_be_bytes());
    bytes.extend_from_slice(&height.to_be_bytes());
    bytes.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
    bytes
}

async fn upload_avatar(base: &str, csrf: &str, image: Vec<u8>) -> reqwest::Response {
    let form = reqwest::multipart::Form::new()
        .text("csrf", csrf.to_owned())
        .part(
            "avatar",
            reqwest::multipart::Part::bytes(image).file_name("me.png"),
        );
    no_redirects()
        .post(format!("{base}/self/avatar"))
        .multipart(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_avatar_is_checked_served_to_peers_and_announced() {
    let (alice, bob) = alice_and_bob().await;
    let base = console(&alice);
    let hub = format!("http://{}", alice.hub.as_ref().unwrap().hub_addr);
    let html = no_redirects()
        .get(format!("{base}/self"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = hidden(&html, "csrf");
    assert_eq!(
        bob.node.fetch_avatar(alice.peer_id).await.unwrap(),
        None,
        "none yet"
    );

    let text = upload_avatar(&base, &csrf, b"definitely not an image".to_vec()).await;
    assert_eq!(text.status().as_u16(), 400);
    assert_eq!(
        text.text().await.unwrap(),
        "the image is not a PNG or JPEG file"
    );
    let huge = upload_avatar(&base, &csrf, png(10_000, 10)).await;
    assert_eq!(huge.status().as_u16(), 400);
    assert_eq!(
        huge.text().await.unwrap(),
        "the image's size (10000×10) is outside 1 to 4096 pixels a side"
    );
    let mut heavy = png(64, 64);
    heavy.resize(300 * 1024, 0);
    let heavy = upload_avatar(&base, &csrf, heavy).await;
    assert_eq!(heavy.status().as_u16(), 413);
    let forged = upload_avatar(&base, "wrong", png(64, 64)).await;
    assert_eq!(forged.status().as_u16(), 403);

    let image = png(64, 64);
    let stored = upload_avatar(&base, &csrf, image.clone()).await;
    assert_eq!(stored.status().as_u16(), 303);
    assert_eq!(
        bob.node.fetch_avatar(alice.peer_id).await.unwrap(),
        Some(image.clone())
    );
    let shown = no_redirects()
        .get(format!("{base}/self/avatar"))
        .send()
        .await
        .unwrap();
    assert_eq!(shown.headers()["content-type"], "image/png");
    assert_eq!(shown.bytes().await.unwrap().to_vec(), image);

    // The new hash goes out with Alice's presence.
    let me = alice.peer_id.to_base58();
    assert!(
        eventually(WAIT, async || {
            let peers: Vec<serde_json::Value> = reqwest::get(format!("{hub}/peers.json"))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            peers.iter().any(|p| {
                p["peerId"] == me.as_str()
                    && p["avatarHash"].as_str().is_some_and(|h| h.len() == 32)
            })
        })
        .await
    );
    bob.shutdown().await;
    alice.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_each_hub_with_how_its_link_stands() {
    let mut hub = crate::support::TestHub::spawn().await;
    let hub_url = hub.url.clone();
    let alice = TestPeer::spawn("Alice", |c| {
        short_ttl(c, 6);
        c.presence.rendezvous_wan = hub_url.clone();
    })
    .await;
    let console = format!("http://{}", alice.console_addr.unwrap());
    let state = async || {
        let hubs: serde_json::Value = reqwest::get(format!("{console}/api/hubs"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(hubs.as_array().unwrap().len(), 1, "{hubs}");
        assert!(
            hubs[0]["url"].as_str().unwrap().starts_with(&hub_url),
            "{hubs}"
        );
        hubs[0]["state"].as_str().unwrap().to_owned()
    };
    assert!(eventually(WAIT, async || state().await == "connected").await);
    for page in ["/", "/self"] {
        let html = reqwest::get(format!("{console}{page}"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(html.contains("class=\"hub connected\""), "{page}: {html}");
        assert!(html.contains("connected (WebSocket) since"), "{page}");
    }
    hub.stop().await;
    assert!(eventually(WAIT, async || state().await == "down").await);
    let html = reqwest::get(format!("{console}/self"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("class=\"hub down\""), "{html}");
    assert!(html.contains("not connected since"), "{html}");
    alice.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_left_is_named_offline_on_its_error_page() {
    let (alice, bob) = alice_and_bob().await;
    let bob_id = bob.peer_id.to_base58();
    bob.shutdown().await;
    assert!(crate::support::lists(&alice, &bob_id, PeerState::Offline).await);
    let response = no_redirects()
        .get(format!("{}/p/{bob_id}/", console(&alice)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 502);
    let html = response.text().await.unwrap();
    assert!(
        html.contains("Bob is not answering: it is offline; last heard of "),
        "{html}"
    );
    alice.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_viewer_api_of_the_original_lists_peers_by_accept_header_and_logs_as_json() {
    let (alice, bob) = alice_and_bob().await;
    let base = console(&alice);
    let client = no_redirects();
    let json: serde_json::Value = client
        .get(format!("{base}/peers"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        json.as_array()
            .unwrap()
            .iter()
            .any(|p| p["peer_id"] == bob.peer_id.to_base58() && p["label"] == "Bob"),
        "{json}"
    );
    let page = client
        .get(format!("{base}/peers"))
        .header("accept", "text/html,application/xhtml+xml,*/*")
        .send()
        .await
        .unwrap();
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.text().await.unwrap().contains("<table id=\"peers\">"));

    let logs: serde_json::Value = client
        .get(format!("{base}/api/logs"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let records = logs.as_array().expect("an array of records");
    for record in records {
        for field in ["seq", "ts", "level", "target", "message"] {
            assert!(!record[field].is_null(), "{field} in {record}");
        }
    }
    let warnings: serde_json::Value = client
        .get(format!("{base}/api/logs?level=warn"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        warnings
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["level"] == "WARN" || r["level"] == "ERROR"),
        "{warnings}"
    );
    bob.shutdown().await;
    alice.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_pages_show_only_notices_the_console_wrote() {
    let alice = TestPeer::spawn("Alice", |c| short_ttl(c, 6)).await;
    let config = alice.dir().config();
    let base = console(&alice);
    let planted = "Your hub asks you to paste your password here";
    for page in ["/", "/self", "/edit", "/database", "/lua"] {
        for query in [
            format!("notice={planted}"),
            format!("notice=0123456789abcdef0123456789abcdef.{planted}"),
            format!("saved=1&restart={planted}"),
        ] {
            let html = no_redirects()
                .get(format!("{base}{page}?{query}"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            assert!(!html.contains(planted), "{page}?{query} shows it");
        }
    }
    // What the console itself says after a form still shows.
    let page = no_redirects()
        .get(format!("{base}/self"))
        .send()
        .await
        .unwrap();
    let html = page.text().await.unwrap();
    let form = [
        ("csrf", hidden(&html, "csrf")),
        ("fingerprint", hidden(&html, "fingerprint")),
        ("label", "Alice".to_owned()),
        ("email", String::new()),
        ("rendezvous_wan", String::new()),
        ("listen_port", "0".to_owned()),
        ("mdns_tag", config.p2p.mdns_tag.clone()),
        ("ttl_seconds", "6".to_owned()),
        ("heartbeat_seconds", "1".to_owned()),
    ];
    let saved = no_redirects()
        .post(format!("{base}/self"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status().as_u16(), 303);
    let location = saved.headers()["location"].to_str().unwrap().to_owned();
    let html = reqwest::get(format!("{base}{location}"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("Saved and announced."), "{html}");
    alice.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visited_site_is_framed_under_a_bar_that_says_whose_it_is() {
    let (alice, bob) = alice_and_bob().await;
    let base = console(&alice);
    let bob_id = bob.peer_id.to_base58();
    let page = no_redirects()
        .get(format!("{base}/visit/{bob_id}/notes/a%20b.html"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    assert_eq!(page.headers()["referrer-policy"], "same-origin");
    let html = page.text().await.unwrap();
    assert!(html.contains("Site of <strong>Bob</strong>"), "{html}");
    assert!(html.contains("not verified"), "{html}");
    assert!(html.contains("href=\"/\""), "a way back: {html}");
    assert!(
        html.contains(&format!("src=\"/p/{bob_id}/notes/a%20b.html\"")),
        "{html}"
    );
    assert!(
        html.contains(
            "sandbox=\"allow-scripts allow-forms allow-popups allow-modals allow-downloads\""
        ),
        "{html}"
    );
    // The site may be framed by the console's own pages only; it keeps its sandbox.
    let site = no_redirects()
        .get(format!("{base}/p/{bob_id}/"))
        .send()
        .await
        .unwrap();
    let policy = site.headers()["content-security-policy"].to_str().unwrap();
    assert!(policy.starts_with("sandbox allow-scripts"), "{policy}");
    assert!(!policy.contains("allow-same-origin"), "{policy}");
    assert!(policy.contains("frame-ancestors 'self'"), "{policy}");
    assert_eq!(site.headers()["x-frame-options"], "SAMEORIGIN");
    // A remote site's URLs must not leak to the sites it links to.
    assert_eq!(site.headers()["referrer-policy"], "no-referrer");
    assert_eq!(site.headers()["x-content-type-options"], "nosniff");
    // The peer list opens sites this way.
    let list = reqwest::get(format!("{base}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        list.contains(&format!("href=\"/visit/{bob_id}/\"")),
        "{list}"
    );
    bob.shutdown().await;
    alice.shutdown().await;
}
