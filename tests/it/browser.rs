//! The hub's pages and the peer console in a real headless Chromium (Debian `chromium`, driven by playwright-core
//! from `tests/browser`; `.ci/run` installs both).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use goop2::config::Secret;
use goop2::services::auth;
use goop2::services::hub::presence::PresenceType;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::support::{PeerDir, TestHub, TestIdentity, TestPeer, short_ttl};

mod screens;
mod sdk;

/// Fails with instructions when the browser tooling is missing, instead of passing silently.
fn require_browser_tooling() {
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        scripts.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run `npm ci --prefix tests/browser` (.ci/run does)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: install Debian's chromium package (.ci/run does)"
    );
}

/// Runs `tests/browser/<script>` with node and `args`; its standard output, once it exited
/// successfully (else the test fails with both outputs).
async fn run_node(script: &str, args: Vec<std::ffi::OsString>) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/browser")
        .join(script);
    let output = tokio::process::Command::new("node")
        .arg(&path)
        .args(args)
        .output()
        .await
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    report
}

/// One argument of a script.
fn arg(value: impl AsRef<std::ffi::OsStr>) -> std::ffi::OsString {
    value.as_ref().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_updates_live_and_the_admin_signs_in_with_a_real_browser() {
    require_browser_tooling();
    let password = "browser test password";
    let hash = auth::hash_password(password).unwrap();
    let hub = TestHub::spawn_with(|c| c.presence.admin_password = Secret::new(hash), |_| {}).await;

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/hub_dashboard.mjs");
    let mut node = tokio::process::Command::new("node")
        .arg(&script)
        .arg(&hub.url)
        .arg(password)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut stdin = node.stdin.take().unwrap();
    let mut stdout = BufReader::new(node.stdout.take().unwrap()).lines();
    let mut stderr = node.stderr.take().unwrap();
    let mut next_line =
        async || match tokio::time::timeout(Duration::from_secs(60), stdout.next_line()).await {
            Ok(Ok(Some(line))) => line,
            other => {
                use tokio::io::AsyncReadExt;
                let mut errors = String::new();
                let _ = stderr.read_to_string(&mut errors).await;
                panic!("the browser script stopped ({other:?}): {errors}");
            }
        };

    assert_eq!(next_line().await, "READY");
    let mut peer = TestIdentity::new();
    let mut message = peer.unsigned(PresenceType::Online, "Browser Bob");
    message.email = Some("browser@example.org".into());
    message.sign(&peer.keypair);
    assert_eq!(
        hub.publish(serde_json::to_string(&message).unwrap())
            .await
            .0,
        204
    );
    stdin.write_all(b"Browser Bob\n").await.unwrap();
    stdin.flush().await.unwrap();
    assert_eq!(next_line().await, "SEEN");
    assert_eq!(next_line().await, "ADMIN OK");
    let status = node.wait().await.unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_peer_site_cannot_reach_the_console_or_other_sites() {
    use goop2::config::Config;
    use goop2::services::presence::peer_table::PeerState;

    require_browser_tooling();
    let password = "owner password";
    let tag = format!("browser-{}", rand::random::<u32>());
    // Peers of this test's own network.
    let dir_of = |label: &str, edit: &dyn Fn(&mut Config)| {
        PeerDir::new(label, |c| {
            short_ttl(c, 6);
            c.viewer.http_addr = String::new();
            c.p2p.mdns_tag = tag.clone();
            edit(c);
        })
    };
    let hash = auth::hash_password(password).unwrap();
    let owner = TestPeer::start(dir_of("Owner", &|c| {
        c.presence.rendezvous_host = true;
        c.viewer.http_addr = "127.0.0.1:0".into();
        c.viewer.admin_password = Secret::new(hash.clone());
    }))
    .await;
    let hub = format!("http://{}", owner.hub.as_ref().unwrap().hub_addr);
    let mallory_dir = dir_of("Mallory", &|c| c.presence.rendezvous_wan = hub.clone());
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/hostile_site.html"),
        mallory_dir.path().join("site/index.html"),
    )
    .unwrap();
    let mallory = TestPeer::start(mallory_dir).await;
    let friend_dir = dir_of("Friend", &|c| c.presence.rendezvous_wan = hub.clone());
    std::fs::write(
        friend_dir.path().join("site/index.html"),
        "<p>private notes</p>",
    )
    .unwrap();
    let friend = TestPeer::start(friend_dir).await;
    for id in [mallory.peer_id.to_base58(), friend.peer_id.to_base58()] {
        assert!(crate::support::lists(&owner, &id, PeerState::Online).await);
    }

    let report = run_node(
        "hostile_site.mjs",
        vec![
            arg(format!("http://{}", owner.console_addr.unwrap())),
            arg(password),
            arg(mallory.peer_id.to_base58()),
            arg(friend.peer_id.to_base58()),
        ],
    )
    .await;
    let report: serde_json::Value = serde_json::from_str(report.trim()).unwrap();
    for attempt in [
        "console API",
        "console page",
        "cookie",
        "console storage",
        "other peer's site",
        "sign out the owner",
        "other peer's data",
        "owner's data API",
    ] {
        assert!(
            report[attempt]
                .as_str()
                .is_some_and(|o| o.starts_with("blocked")),
            "{attempt}: {report}"
        );
    }
    assert_eq!(report["own data"], "allowed: []", "{report}");
    friend.shutdown().await;
    mallory.shutdown().await;
    owner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_in_owner_sees_a_peer_arrive_live_opens_its_site_and_edits_their_own() {
    use goop2::config::Config;

    require_browser_tooling();
    let password = "owner password";
    let tag = format!("live-{}", rand::random::<u32>());
    // Peers of this test's own network.
    let dir_of = |label: &str, edit: &dyn Fn(&mut Config)| {
        PeerDir::new(label, |c| {
            short_ttl(c, 6);
            c.viewer.http_addr = String::new();
            c.p2p.mdns_tag = tag.clone();
            edit(c);
        })
    };
    let hash = auth::hash_password(password).unwrap();
    let owner = TestPeer::start(dir_of("Owner", &|c| {
        c.presence.rendezvous_host = true;
        c.viewer.http_addr = "127.0.0.1:0".into();
        c.viewer.admin_password = Secret::new(hash.clone());
    }))
    .await;
    let owner_dir = owner.dir();
    let hub = format!("http://{}", owner.hub.as_ref().unwrap().hub_addr);

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/console_live.mjs");
    let mut node = tokio::process::Command::new("node")
        .arg(&script)
        .arg(format!("http://{}", owner.console_addr.unwrap()))
        .arg(password)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut stdin = node.stdin.take().unwrap();
    let mut stdout = BufReader::new(node.stdout.take().unwrap()).lines();
    let mut stderr = node.stderr.take().unwrap();
    let mut next_line =
        async || match tokio::time::timeout(Duration::from_secs(60), stdout.next_line()).await {
            Ok(Ok(Some(line))) => line,
            other => {
                use tokio::io::AsyncReadExt;
                let mut errors = String::new();
                let _ = stderr.read_to_string(&mut errors).await;
                panic!("the browser script stopped ({other:?}): {errors}");
            }
        };
    assert_eq!(next_line().await, "READY");

    // Bob starts only now, while the owner watches.
    let bob_dir = dir_of("Bob", &|c| c.presence.rendezvous_wan = hub.clone());
    std::fs::write(
        bob_dir.path().join("site/index.html"),
        "<h1>Bob's page</h1>",
    )
    .unwrap();
    let bob = TestPeer::start(bob_dir).await;
    stdin
        .write_all(format!("{} Bob\n", bob.peer_id).as_bytes())
        .await
        .unwrap();
    stdin.flush().await.unwrap();
    assert_eq!(next_line().await, "SEEN");
    assert_eq!(next_line().await, "FAVOURITE");
    assert!(
        owner
            .table
            .snapshot()
            .await
            .iter()
            .any(|e| e.peer_id == bob.peer_id && e.favorite)
    );
    assert_eq!(next_line().await, "SITE");
    assert_eq!(next_line().await, "EDITED");
    assert_eq!(
        std::fs::read_to_string(owner_dir.path().join("site/index.html")).unwrap(),
        "<h1>Edited</h1>\n<p>in a browser</p>\n",
        "the browser's CRLF line ends were saved as the file's LF"
    );
    let status = node.wait().await.unwrap();
    let mut errors = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut errors)
        .await
        .unwrap();
    assert!(status.success(), "{errors}");
    bob.shutdown().await;
    owner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_signs_a_peers_guestbook_through_goop_data_js() {
    use goop2::config::Config;
    use goop2::services::presence::peer_table::PeerState;

    require_browser_tooling();
    let tag = format!("guestbook-{}", rand::random::<u32>());
    // Peers of this test's own network.
    let dir_of = |label: &str, edit: &dyn Fn(&mut Config)| {
        PeerDir::new(label, |c| {
            short_ttl(c, 6);
            c.p2p.mdns_tag = tag.clone();
            edit(c);
        })
    };
    let host_dir = dir_of("Host", &|c| {
        c.presence.rendezvous_host = true;
        c.lua.enabled = true;
    });
    let functions = host_dir.path().join("site/lua/functions");
    std::fs::create_dir_all(&functions).unwrap();
    std::fs::write(
        functions.join("hello.lua"),
        "function call(request)\n  return { greeting = 'Hello, ' .. request.params.name, caller = goop.peer.id }\nend\n",
    )
    .unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/guestbook.html"),
        host_dir.path().join("site/index.html"),
    )
    .unwrap();
    let host = TestPeer::start(host_dir).await;
    let host_console = format!("http://{}", host.console_addr.unwrap());
    let client = reqwest::Client::new();
    let created = client
        .post(format!("{host_console}/api/data/create-table"))
        .json(&serde_json::json!({"schema": {"name": "guestbook", "columns": ["message TEXT NOT NULL"]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 200);
    let owners = client
        .post(format!("{host_console}/api/data/insert"))
        .json(
            &serde_json::json!({"table": "guestbook", "data": {"message": "the host's own entry"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(owners.status().as_u16(), 200);

    let hub = format!("http://{}", host.hub.as_ref().unwrap().hub_addr);
    let visitor = TestPeer::start(dir_of("Visitor", &|c| {
        c.presence.rendezvous_wan = hub.clone()
    }))
    .await;
    let host_id = host.peer_id.to_base58();
    assert!(crate::support::lists(&visitor, &host_id, PeerState::Online).await);

    let report = run_node(
        "guestbook.mjs",
        vec![
            arg(format!("http://{}", visitor.console_addr.unwrap())),
            arg(&host_id),
        ],
    )
    .await;
    let report: serde_json::Value = serde_json::from_str(report.trim()).unwrap();
    let visitor_id = visitor.peer_id.to_base58();
    assert_eq!(report["visitor"], visitor_id.as_str());
    assert_eq!(report["host"], host_id.as_str());
    assert_eq!(
        report["hello"],
        format!("Hello, guest / {visitor_id}"),
        "Goop.data.call ran the host's Lua as the visitor"
    );
    let status = report["status"].as_str().unwrap();
    assert!(status.contains("other entries refused"), "{status}");
    assert!(status.contains("belongs to you"), "{status}");
    assert_eq!(report["entries"].as_array().unwrap().len(), 2, "{report}");

    // The row is in the host's database, stamped with the visitor's peer ID; the host's own
    // entry is untouched.
    let rows: serde_json::Value = client
        .post(format!("{host_console}/api/data/query"))
        .json(&serde_json::json!({"table": "guestbook", "order": "_id"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rows = rows["data"].as_array().unwrap().clone();
    assert_eq!(rows[0]["message"], "the host's own entry");
    assert_eq!(rows[1]["message"], "Signed in a browser");
    assert_eq!(rows[1]["_owner"], visitor_id.as_str());
    // The host's database editor shows the visitor's row.
    let editor = client
        .get(format!("{host_console}/database/t/guestbook"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        editor.contains("Signed in a browser") && editor.contains(&visitor_id),
        "{editor}"
    );
    visitor.shutdown().await;
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_editor_creates_edits_deletes_and_imports_in_a_browser() {
    require_browser_tooling();
    let running = TestPeer::spawn("Editor", |_| {}).await;
    let console = format!("http://{}", running.console_addr.unwrap());
    run_node("database_editor.mjs", vec![arg(&console)]).await;
    // What the browser did is in data.db.
    let rows: serde_json::Value = reqwest::Client::new()
        .post(format!("{console}/api/data/query"))
        .json(&serde_json::json!({"table": "books", "order": "title"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let titles: Vec<&str> = rows["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Alpha", "Delta"]);
    assert_eq!(rows["data"][1]["pages"], 4);
    let described: serde_json::Value = reqwest::Client::new()
        .post(format!("{console}/api/data/describe"))
        .json(&serde_json::json!({"table": "books"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(described["data"]["access"]["insert"], "local");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitors_site_joins_its_hosts_group_and_two_consoles_chat_live() {
    use goop2::services::presence::peer_table::PeerState;

    require_browser_tooling();
    let host_dir = PeerDir::new("Host", |c| {
        short_ttl(c, 6);
        c.presence.rendezvous_host = true;
    });
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/group_site.html"),
        host_dir.path().join("site/index.html"),
    )
    .unwrap();
    let host = TestPeer::start(host_dir).await;
    let host_console = format!("http://{}", host.console_addr.unwrap());
    let hub = format!("http://{}", host.hub.as_ref().unwrap().hub_addr);
    let visitor = TestPeer::spawn("Visitor", |c| {
        short_ttl(c, 6);
        c.presence.rendezvous_wan = hub;
    })
    .await;
    let (host_id, visitor_id) = (host.peer_id.to_base58(), visitor.peer_id.to_base58());
    assert!(crate::support::lists(&visitor, &host_id, PeerState::Online).await);
    assert!(crate::support::lists(&host, &visitor_id, PeerState::Online).await);
    let client = reqwest::Client::new();
    let created = client
        .post(format!("{host_console}/api/groups"))
        .json(&serde_json::json!({"id": "lobby", "name": "The lobby", "history": 100}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 200);
    let mut host_hears =
        crate::support::SseClient::connect(&format!("{host_console}/api/groups/events"), None)
            .await;

    let report = run_node(
        "group_site.mjs",
        vec![
            arg(format!("http://{}", visitor.console_addr.unwrap())),
            arg(&host_id),
            arg(&host_console),
            arg(&visitor_id),
        ],
    )
    .await;
    let report: serde_json::Value = serde_json::from_str(report.trim()).unwrap();
    assert_eq!(report["joined"]["group"], "lobby", "{report}");
    assert_eq!(report["joined"]["text"], "in The lobby as member");
    assert_eq!(report["joined"]["members"], 2, "the host and the visitor");
    assert_eq!(
        report["navigations"], 1,
        "the chat arrived without a reload"
    );
    assert_eq!(
        report["history"],
        serde_json::json!(["welcome, visitor", "hello from the page"]),
        "the room showed what was said before it opened"
    );
    assert_eq!(
        report["roomNavigations"], 1,
        "the room is live without reloads"
    );
    // The page's message reached the host, from the visitor's own peer.
    let said = host_hears
        .wait_for(Duration::from_secs(10), |e| {
            e.data.contains("hello from the page")
        })
        .await;
    let said: serde_json::Value = serde_json::from_str(&said.data).unwrap();
    assert_eq!(said["from"], visitor_id.as_str());
    assert_eq!(said["group"], "lobby");
    visitor.shutdown().await;
    host.shutdown().await;
}

/// Where the template screenshots go: `docs/screenshots/` when `GOOP_UPDATE_SCREENSHOTS` is set
/// (the README's gallery), else a temporary folder.
fn screenshot_dir() -> (std::path::PathBuf, Option<tempfile::TempDir>) {
    if std::env::var_os("GOOP_UPDATE_SCREENSHOTS").is_some() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        (dir, None)
    } else {
        let temp = tempfile::tempdir().unwrap();
        (temp.path().to_owned(), Some(temp))
    }
}

/// A host (with its hub) and a visitor that lists it, each with a console, on a network of
/// their own.
async fn host_and_visitor(tag: &str) -> (TestPeer, TestPeer) {
    use goop2::services::presence::peer_table::PeerState;
    let tag = format!("{tag}-{}", rand::random::<u32>());
    let host = TestPeer::start(PeerDir::new("Host", |c| {
        short_ttl(c, 6);
        c.p2p.mdns_tag = tag.clone();
        c.presence.rendezvous_host = true;
    }))
    .await;
    let hub = format!("http://{}", host.hub.as_ref().unwrap().hub_addr);
    let visitor = TestPeer::start(PeerDir::new("Visitor", |c| {
        short_ttl(c, 6);
        c.p2p.mdns_tag = tag.clone();
        c.presence.rendezvous_wan = hub;
    }))
    .await;
    assert!(crate::support::lists(&visitor, &host.peer_id.to_base58(), PeerState::Online).await);
    (host, visitor)
}

/// Runs tests/browser/templates.mjs for `steps`; its JSON report.
async fn template_flows(host: &TestPeer, visitor: &TestPeer, steps: &[&str]) -> serde_json::Value {
    let (shots, _temp) = screenshot_dir();
    let report = run_node(
        "templates.mjs",
        [
            vec![
                arg(format!("http://{}", visitor.console_addr.unwrap())),
                arg(host.peer_id.to_base58()),
                arg(format!("http://{}", host.console_addr.unwrap())),
                arg(visitor.peer_id.to_base58()),
                arg(&shots),
            ],
            steps.iter().map(arg).collect(),
        ]
        .concat(),
    )
    .await;
    for step in steps {
        assert!(shots.join(format!("{step}.png")).is_file(), "{step}.png");
    }
    serde_json::from_str(report.trim()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guestbook_corkboard_and_blog_templates_work_for_owner_and_visitor() {
    require_browser_tooling();
    let (host, visitor) = host_and_visitor("templates").await;
    let report = template_flows(&host, &visitor, &["guestbook", "corkboard", "blog"]).await;
    let visitor_id = visitor.peer_id.to_base58();

    let guestbook = &report["guestbook"];
    assert_eq!(
        guestbook["prefilled"], "Visitor",
        "the visitor's label fills the name"
    );
    assert_eq!(guestbook["emptyShown"], true);
    assert_eq!(guestbook["entry"]["owner"], visitor_id.as_str());
    assert!(
        guestbook["entry"]["badge"]
            .as_str()
            .unwrap()
            .contains(&visitor_id[..8])
    );
    assert_eq!(guestbook["ownerCanModerate"], true);

    let corkboard = &report["corkboard"];
    assert!(
        corkboard["applied"]
            .as_str()
            .unwrap()
            .contains("Dropped entries"),
        "{corkboard}"
    );
    assert!(
        corkboard["ownerEmpty"]
            .as_str()
            .unwrap()
            .contains("Your corkboard is empty")
    );
    let notes = corkboard["notes"].as_array().unwrap();
    assert_eq!(notes.len(), 2, "{corkboard}");
    assert_eq!(notes[0]["title"], "Street party Saturday");
    assert!(notes[0]["category"].as_str().unwrap().contains("cat-event"));
    assert_eq!(
        notes[0]["removable"], true,
        "the visitor may unpin their own note"
    );
    assert_eq!(notes[1]["removable"], false, "but not the host's");
    assert_eq!(corkboard["filtered"], 1);

    let blog = &report["blog"];
    assert_eq!(blog["seeded"], 1, "the welcome post");
    let titles: Vec<&str> = blog["visitorTitles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        ["Notes from the garden", "Hello from my peer"],
        "no draft"
    );
    assert_eq!(blog["visitorHasOwnerNav"], false);
    // A post's summary in the list is its text without marks, blocks apart.
    let summaries = &blog["summaries"];
    let garden = summaries[0].as_str().unwrap();
    assert!(
        garden.starts_with("The tomatoes are up. basil mint <script>"),
        "{summaries}"
    );
    let welcome = summaries[1].as_str().unwrap();
    assert!(
        welcome.starts_with(
            "This blog lives on my own peer: no server, no platform. Writing Open My site"
        ),
        "{summaries}"
    );
    assert!(
        welcome.contains("**bold**, *emphasis*, `code` and links"),
        "{summaries}"
    );
    let rendered = &blog["rendered"];
    assert_eq!(rendered["strong"], "tomatoes");
    assert_eq!(rendered["items"], serde_json::json!(["basil", "mint"]));
    assert_eq!(rendered["scripts"], 0, "markup stays text: {rendered}");
    assert_eq!(rendered["owned"], 0, "no script ran");
    assert_eq!(rendered["text"], true, "the markup is shown as text");
    assert_eq!(
        rendered["links"],
        serde_json::json!(["https://example.org/"]),
        "a javascript: link is not a link"
    );
    assert_eq!(blog["comment"]["owner"], visitor_id.as_str());
    assert_eq!(blog["commentsAfterModeration"], 0);
    visitor.shutdown().await;
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quiz_link_board_wiki_and_kanban_templates_work_for_owner_and_visitor() {
    require_browser_tooling();
    let (host, visitor) = host_and_visitor("templates").await;
    let report = template_flows(&host, &visitor, &["quiz", "linkboard", "wiki", "kanban"]).await;
    let visitor_id = visitor.peer_id.to_base58();

    let quiz = &report["quiz"];
    assert!(
        quiz["applied"].as_str().unwrap().contains("Lua is now on"),
        "{quiz}"
    );
    assert_eq!(quiz["questions"], 4, "three seeded and one added");
    assert_eq!(quiz["score"], "3", "{quiz}");
    assert_eq!(
        quiz["leaderboard"],
        serde_json::json!([visitor_id.as_str()])
    );
    let second = quiz["second"].as_str().unwrap();
    assert!(
        second.contains("answered already"),
        "one response per peer: {second}"
    );
    let direct = quiz["direct"].as_str().unwrap();
    assert!(
        direct.starts_with("403"),
        "responses go through the host's rules: {direct}"
    );
    assert_eq!(quiz["afterReload"], "You have answered this quiz.");
    assert_eq!(quiz["ownerSees"], "1 response");

    let links = &report["linkboard"];
    let second = links["second"].as_str().unwrap();
    assert!(
        second.contains("UNIQUE"),
        "a second vote is refused: {second}"
    );
    assert_eq!(
        links["ranked"],
        serde_json::json!([["Another link", 1], ["Peer-to-peer, explained", 0]]),
        "{links}"
    );

    let wiki = &report["wiki"];
    assert_eq!(wiki["home"], "Home");
    assert_eq!(
        wiki["history"],
        serde_json::json!([visitor_id.as_str(), host.peer_id.to_base58()]),
        "the visitor's edit, then the seeded first version"
    );
    assert_eq!(
        wiki["linkMissing"], false,
        "the page it links to exists now"
    );

    let kanban = &report["kanban"];
    assert_eq!(kanban["role"], "viewer");
    assert_eq!(kanban["viewerSees"], "3");
    assert!(
        kanban["viewerMove"].as_str().unwrap().starts_with("403"),
        "a viewer may not move a card: {kanban}"
    );
    assert_eq!(kanban["roleAfter"], "member");
    assert_eq!(
        kanban["ownerNavigations"], 1,
        "the owner's board updated live"
    );
    visitor.shutdown().await;
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tic_tac_toe_and_chess_are_played_live_between_two_consoles() {
    require_browser_tooling();
    let (host, visitor) = host_and_visitor("games").await;
    let report = template_flows(&host, &visitor, &["chess", "tictactoe"]).await;
    let (host_id, visitor_id) = (host.peer_id.to_base58(), visitor.peer_id.to_base58());

    let ttt = &report["tictactoe"];
    assert_eq!(ttt["board"], "xxxoo....", "{ttt}");
    assert_eq!(ttt["winner"], host_id.as_str());
    assert_eq!(ttt["ownerSays"], "You win!");
    assert!(
        ttt["taken"].as_str().unwrap().contains("not being played"),
        "{ttt}"
    );

    let chess = &report["chess"];
    assert!(
        chess["illegal"]
            .as_str()
            .unwrap()
            .contains("illegal move d8d4"),
        "{chess}"
    );
    assert_eq!(chess["result"], "checkmate");
    assert_eq!(chess["winner"], visitor_id.as_str());
    assert!(
        chess["text"].as_str().unwrap().starts_with("Checkmate!"),
        "{chess}"
    );
    assert_eq!(
        chess["fen"],
        "rnb1kbnr/pppp1ppp/8/4p3/6Pq/5P2/PPPPP2P/RNBQKBNR w KQkq - 1 3"
    );
    assert_eq!(
        chess["moves"],
        serde_json::json!(["f2f3", "e7e5", "g2g4", "d8h4"])
    );
    assert_eq!(
        chess["ownerNavigations"], 1,
        "the owner's board followed live"
    );
    visitor.shutdown().await;
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_launcher_creates_starts_opens_deletes_and_restores_peers_in_a_browser() {
    require_browser_tooling();
    let dir = crate::launcher::launcher_dir(serde_json::json!({}));
    let launcher = crate::launcher::LauncherProcess::start(dir.path()).await;
    let report = run_node("launcher.mjs", vec![arg(&launcher.base)]).await;
    assert!(report.contains("\"ok\":true"), "{report}");
    // What the page did is what the launcher has.
    let state = launcher.state().await;
    let names: Vec<&str> = state["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hub", "reader", "web"]);
    assert_eq!(state["theme"], "light");
    assert_eq!(state["peers"][0]["kind"], "rendezvous");
    assert_eq!(state["peers"][2]["label"], "Web <b>site</b>");
    assert_eq!(state["peers"][2]["template"], "blog");
    for peer in state["peers"].as_array().unwrap() {
        assert_eq!(peer["process"]["phase"], "stopped", "{peer}");
    }
}
