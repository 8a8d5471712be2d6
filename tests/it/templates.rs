//! App templates through the console of real peers: applying a built-in template and switching
//! between templates (the previous template's tables go, the owner's stay, a name clash is
//! refused before anything changes), an apply the database refuses half-way leaving the site as
//! it was, hostile bundles refused with their reason, a site exported with its rows and imported
//! on another peer, and a template installed from a hub's store.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::console::console;
use crate::hub_admin::{hostile_tar_gz, tar_gz};
use crate::support::{TestPeer, get_page, get_text, hidden, no_redirects, short_ttl};

/// The console's answer to a form: the notice it redirects with (or the page's text).
async fn form(base: &str, path: &str, fields: &[(&str, &str)]) -> String {
    let page = get_page(&format!("{base}/templates")).await;
    let mut fields: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    fields.push(("csrf".into(), hidden(&page, "csrf")));
    let response = no_redirects()
        .post(format!("{base}{path}"))
        .form(&fields)
        .send()
        .await
        .unwrap();
    notice_of(base, response).await
}

/// A multipart upload of `archive` (as field `archive`) with `fields`.
async fn upload(base: &str, path: &str, archive: Vec<u8>, fields: &[(&str, &str)]) -> String {
    let page = get_page(&format!("{base}/templates")).await;
    let mut multipart = reqwest::multipart::Form::new()
        .text("csrf", hidden(&page, "csrf"))
        .part(
            "archive",
            reqwest::multipart::Part::bytes(archive).file_name("bundle.tar.gz"),
        );
    for (name, value) in fields {
        multipart = multipart.text(name.to_string(), value.to_string());
    }
    let response = no_redirects()
        .post(format!("{base}{path}"))
        .multipart(multipart)
        .send()
        .await
        .unwrap();
    notice_of(base, response).await
}

async fn notice_of(base: &str, response: reqwest::Response) -> String {
    if response.status().as_u16() != 303 {
        return format!(
            "HTTP {}: {}",
            response.status(),
            response.text().await.unwrap()
        );
    }
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let html = get_text(&format!("{base}{location}")).await;
    html.split("id=\"notice\">")
        .nth(1)
        .and_then(|rest| rest.split("</p>").next())
        .unwrap_or_default()
        .replace("&#39;", "'")
        .replace("&quot;", "\"")
}

async fn api(base: &str, op: &str, body: Value) -> (u16, Value) {
    crate::support::post_with(
        &reqwest::Client::new(),
        &format!("{base}/api/data/{op}"),
        body.to_string(),
    )
    .await
}

async fn tables(base: &str) -> Vec<String> {
    let (status, list) = api(base, "tables", json!({})).await;
    assert_eq!(status, 200, "{list}");
    let mut names: Vec<String> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

async fn plan(base: &str, key: &str) -> String {
    get_text(&format!("{base}/templates/apply?key={key}")).await
}

/// Alice, who hosts a hub, and Bob, who uses it; each lists the other.
async fn alice_and_bob() -> (TestPeer, TestPeer) {
    crate::support::host_and_guest("Alice", "Bob", |_| {}).await
}

/// A template folder: a board of cards, with a Lua function and seed rows.
fn write_cards_template(root: &Path) {
    let file = |path: &str, text: &str| {
        let target = root.join(path);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, text).unwrap();
    };
    file(
        "manifest.json",
        r#"{"name": "Cards", "description": "A board of cards", "icon": "🃏", "version": "0.2.0"}"#,
    );
    file(
        "schemas/cards.json",
        r#"{"name": "cards", "columns": [{"name": "title", "type": "text", "required": true}, {"name": "pinned", "type": "integer", "default": 0}]}"#,
    );
    file("index.html", "<!doctype html><h1>Cards</h1>");
    std::fs::write(root.join("preview.png"), b"\x89PNG the gallery's picture").unwrap();
    file(
        "lua/functions/count.lua",
        "--- Counts the cards.\nfunction call(request)\n  return { cards = goop.db.scalar('SELECT COUNT(*) FROM cards') }\nend\n",
    );
    file(
        "seed.lua",
        "local rows = {}\nfor i = 1, 3 do rows[i] = { title = 'card ' .. i } end\nreturn { cards = rows }\n",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_switch_a_to_b_to_a_keeping_the_owners_own_tables() {
    let alice = TestPeer::spawn("Alice", |c| short_ttl(c, 6)).await;
    let base = console(&alice);
    let (status, made) = api(
        &base,
        "create-table",
        json!({"schema": {"name": "notes", "columns": ["text TEXT"]}}),
    )
    .await;
    assert_eq!(status, 200, "{made}");
    api(
        &base,
        "insert",
        json!({"table": "notes", "data": {"text": "mine"}}),
    )
    .await;

    let gallery = get_text(&format!("{base}/templates")).await;
    assert!(
        gallery.contains("data-key=\"builtin/guestbook\""),
        "{gallery}"
    );
    let shown = plan(&base, "builtin/guestbook").await;
    assert!(shown.contains("No table is dropped."), "{shown}");
    assert!(
        shown.contains("These tables are created: entries."),
        "{shown}"
    );
    let notice = form(&base, "/templates/apply", &[("key", "builtin/guestbook")]).await;
    assert_eq!(notice, "Applied Guestbook.");
    let site = alice.dir().path().join("site");
    assert!(
        std::fs::read_to_string(site.join("index.html"))
            .unwrap()
            .contains("<title>Guestbook</title>")
    );
    assert!(site.join("app.js").is_file());
    assert_eq!(tables(&base).await, ["entries", "notes"]);
    assert_eq!(
        alice.announcement.borrow().active_template.as_deref(),
        Some("guestbook"),
        "the active template is announced"
    );
    let (status, _) = api(
        &base,
        "insert",
        json!({"table": "entries", "data": {"name": "Alice", "message": "first"}}),
    )
    .await;
    assert_eq!(status, 200);

    // B: a template installed from a folder, with seed rows and a Lua function; Lua was off.
    let folder = tempfile::tempdir().unwrap();
    write_cards_template(folder.path());
    let notice = form(
        &base,
        "/templates/install-folder",
        &[("folder", folder.path().to_str().unwrap())],
    )
    .await;
    assert_eq!(
        notice,
        "Installed template cards; apply it from the gallery."
    );
    assert!(
        alice
            .dir()
            .path()
            .join("apps/cards/manifest.json")
            .is_file()
    );
    let shown = plan(&base, "installed/cards").await;
    assert!(
        shown.contains("<span data-table=\"entries\">entries (1 row)</span>"),
        "the plan names what is dropped: {shown}"
    );
    assert!(shown.contains("Lua is turned on"), "{shown}");
    let notice = form(&base, "/templates/apply", &[("key", "installed/cards")]).await;
    assert_eq!(
        notice,
        "Applied Cards. Dropped entries. Lua is now on (lua.enabled)."
    );
    assert_eq!(tables(&base).await, ["cards", "notes"]);
    assert!(
        !site.join("preview.png").exists(),
        "the preview is the gallery's, not the site's"
    );
    let (status, counted) = api(
        &base,
        "lua-call",
        json!({"function": "count", "params": {}}),
    )
    .await;
    assert_eq!(status, 200, "{counted}");
    assert_eq!(counted["data"]["cards"], 3, "the seed rows are there");
    let config = std::fs::read_to_string(alice.dir().path().join("goop.json")).unwrap();
    assert!(
        config.contains("\"enabled\": true"),
        "Lua stays on after a restart: {config}"
    );
    assert!(
        alice.dir().path().join("site-previous/app.js").is_file(),
        "the replaced site is kept"
    );

    // Back to A: B's tables go, the owner's notes stay with their row.
    let notice = form(&base, "/templates/apply", &[("key", "builtin/guestbook")]).await;
    assert_eq!(notice, "Applied Guestbook. Dropped cards.");
    assert_eq!(tables(&base).await, ["entries", "notes"]);
    let (_, notes) = api(&base, "query", json!({"table": "notes"})).await;
    assert_eq!(notes["data"][0]["text"], "mine");
    assert!(!site.join("lua/functions/count.lua").exists());

    // An owner's table with a name the template needs: refused, nothing changes.
    api(&base, "drop-table", json!({"table": "notes"})).await;
    let (status, _) = api(
        &base,
        "create-table",
        json!({"schema": {"name": "cards", "columns": ["x TEXT"]}}),
    )
    .await;
    assert_eq!(status, 200);
    let shown = plan(&base, "installed/cards").await;
    assert!(shown.contains("id=\"conflicts\""), "{shown}");
    assert!(!shown.contains("id=\"apply\""), "{shown}");
    let notice = form(&base, "/templates/apply", &[("key", "installed/cards")]).await;
    assert!(
        notice.starts_with("Nothing was changed: ") && notice.contains("cards"),
        "{notice}"
    );
    assert!(
        std::fs::read_to_string(site.join("index.html"))
            .unwrap()
            .contains("<title>Guestbook</title>")
    );
    assert_eq!(tables(&base).await, ["cards", "entries"]);
    alice.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_the_database_refuses_half_way_leaves_the_previous_site() {
    let alice = TestPeer::spawn("Alice", |c| short_ttl(c, 6)).await;
    let base = console(&alice);
    let site = alice.dir().path().join("site");
    let before = std::fs::read_to_string(site.join("index.html")).unwrap();

    // Another connection holds the database's write lock past the peer's busy timeout.
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(alice.dir().path().join("data.db"))
        .busy_timeout(Duration::from_secs(1));
    let mut holder = sqlx::ConnectOptions::connect(&options).await.unwrap();
    sqlx::Executor::execute(&mut holder, "BEGIN IMMEDIATE")
        .await
        .unwrap();
    let notice = tokio::time::timeout(
        Duration::from_secs(60),
        form(&base, "/templates/apply", &[("key", "builtin/guestbook")]),
    )
    .await
    .expect("the apply gives up");
    sqlx::Executor::execute(&mut holder, "ROLLBACK")
        .await
        .unwrap();
    assert!(notice.starts_with("Nothing was changed: "), "{notice}");
    assert_eq!(
        std::fs::read_to_string(site.join("index.html")).unwrap(),
        before,
        "the previous site is back"
    );
    assert!(!site.join("app.js").exists());
    assert!(tables(&base).await.is_empty());
    let gallery = get_text(&format!("{base}/templates")).await;
    assert!(gallery.contains("No template is applied"), "{gallery}");
    let leftovers: Vec<String> = std::fs::read_dir(alice.dir().path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with(".site"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Once the lock is gone the same apply works.
    let notice = form(&base, "/templates/apply", &[("key", "builtin/guestbook")]).await;
    assert_eq!(notice, "Applied Guestbook.");
    alice.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bundles_are_refused_with_their_reason_and_nothing_changes() {
    let alice = TestPeer::spawn("Alice", |c| short_ttl(c, 6)).await;
    let base = console(&alice);
    form(&base, "/templates/apply", &[("key", "builtin/guestbook")]).await;
    let site = alice.dir().path().join("site");
    let before = std::fs::read_to_string(site.join("index.html")).unwrap();
    let manifest: &[u8] = br#"{"name": "Evil"}"#;
    let page: &[u8] = b"<h1>evil</h1>";
    let zeros = vec![0u8; 70 * 1024 * 1024];
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            hostile_tar_gz("../escape.html", tar::EntryType::Regular, None),
            "leaves the template with '..'",
        ),
        (
            hostile_tar_gz("/etc/owned", tar::EntryType::Regular, None),
            "has an absolute path",
        ),
        (
            hostile_tar_gz("link", tar::EntryType::Symlink, Some("/etc/passwd")),
            "is a link",
        ),
        (
            hostile_tar_gz("dev", tar::EntryType::Char, None),
            "only files and directories are allowed",
        ),
        (
            tar_gz(&[("manifest.json", manifest), ("big.bin", &zeros)]),
            "is larger than 16 MiB",
        ),
        (
            tar_gz(&[("manifest.json", b"{\"name\": 7}"), ("index.html", page)]),
            "manifest.json",
        ),
        (
            tar_gz(&[
                ("manifest.json", manifest),
                ("index.html", page),
                (
                    "schemas/t.json",
                    br#"{"name": "t", "columns": ["a WIDGET"]}"#,
                ),
            ]),
            "unknown type `widget`",
        ),
        (
            tar_gz(&[
                ("manifest.json", manifest),
                ("index.html", page),
                ("lua/functions/f.lua", b"function call( end"),
            ]),
            "lua/functions/f.lua does not compile",
        ),
        (
            tar_gz(&[
                ("manifest.json", manifest),
                ("index.html", page),
                ("schema.sql", b"CREATE TABLE t (a TEXT); DROP TABLE _meta"),
            ]),
            "only hold CREATE TABLE",
        ),
        (b"not gzip at all".to_vec(), "tar.gz archive"),
    ];
    for (archive, reason) in cases {
        let notice = upload(
            &base,
            "/templates/install",
            archive.clone(),
            &[("name", "evil")],
        )
        .await;
        assert!(
            notice.starts_with("Not installed: the bundle was refused: ")
                && notice.contains(reason),
            "expected {reason:?} in {notice:?}"
        );
        let notice = upload(&base, "/templates/import", archive, &[("confirm", "yes")]).await;
        assert!(
            notice.starts_with("Nothing was changed: ") && notice.contains(reason),
            "expected {reason:?} in {notice:?}"
        );
    }
    let apps = alice.dir().path().join("apps");
    let left: Vec<_> = std::fs::read_dir(&apps)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "nothing was installed: {left:?}");
    assert!(!alice.dir().path().join("escape.html").exists());
    assert_eq!(
        std::fs::read_to_string(site.join("index.html")).unwrap(),
        before
    );
    assert_eq!(tables(&base).await, ["entries"]);
    alice.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_exported_with_its_rows_imports_on_another_peer() {
    let (alice, bob) = alice_and_bob().await;
    let (a_base, b_base) = (console(&alice), console(&bob));
    let a_id = alice.peer_id.to_base58();
    form(&a_base, "/templates/apply", &[("key", "builtin/guestbook")]).await;

    // Bob signs Alice's guestbook through his own peer, as a page of her site would.
    let page = get_page(&format!("{b_base}/p/{a_id}/")).await;
    assert!(page.contains("<title>Guestbook</title>"));
    assert_eq!(crate::support::meta(&page, "goop-self-label"), "Bob");
    let token = crate::support::meta(&page, "goop-site-token");
    let signed = no_redirects()
        .post(format!("{b_base}/api/p/{a_id}/data/insert"))
        .header("x-goop-site-token", token)
        .header("origin", "null")
        .header("sec-fetch-site", "cross-site")
        .json(&json!({"table": "entries", "data": {"name": "Bob", "message": "hello Alice"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status().as_u16(), 200);

    let export = |with_data: bool| {
        let url = format!(
            "{a_base}/templates/export{}",
            if with_data { "?data=1" } else { "" }
        );
        async move {
            let response = reqwest::get(url).await.unwrap();
            assert_eq!(response.status().as_u16(), 200);
            assert!(
                response.headers()["content-disposition"]
                    .to_str()
                    .unwrap()
                    .contains("alice-site")
            );
            response.bytes().await.unwrap().to_vec()
        }
    };
    std::fs::write(alice.dir().path().join("site/.env"), "SECRET=1").unwrap();
    let archive = export(true).await;
    let files = goop2::services::sitetemplates::store::read_archive(&archive).unwrap();
    assert!(
        !files.contains_key(".env"),
        "what visitors never see stays out"
    );
    let names: Vec<&String> = files.keys().collect();
    assert!(
        names.contains(&&"data/entries.json".to_string()),
        "{names:?}"
    );
    assert!(names.contains(&&"schemas/entries.json".to_string()));
    assert!(!export(false).await.is_empty());

    let carol = TestPeer::spawn("Carol", |c| short_ttl(c, 6)).await;
    let c_base = console(&carol);
    let notice = upload(&c_base, "/templates/import", archive.clone(), &[]).await;
    assert!(notice.contains("tick the box"), "{notice}");
    let notice = upload(&c_base, "/templates/import", archive, &[("confirm", "yes")]).await;
    assert_eq!(notice, "Imported Guestbook with 1 row(s).");
    let (_, rows) = api(&c_base, "query", json!({"table": "entries"})).await;
    assert_eq!(rows["data"][0]["message"], "hello Alice");
    assert_eq!(
        rows["data"][0]["_owner"],
        bob.peer_id.to_base58(),
        "the signer stays the signer"
    );
    assert_eq!(
        std::fs::read(carol.dir().path().join("site/app.js")).unwrap(),
        std::fs::read(alice.dir().path().join("site/app.js")).unwrap()
    );
    assert_eq!(
        carol.announcement.borrow().active_template.as_deref(),
        Some("guestbook")
    );
    carol.shutdown().await;
    bob.shutdown().await;
    alice.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_published_to_a_hubs_store_is_installed_by_another_peer() {
    let hub = crate::hub_admin::hub_with_admin().await;
    let hub_url = format!("{}/", hub.url);
    let peer = |label: &'static str| {
        let hub_url = hub_url.clone();
        TestPeer::spawn(label, move |c| {
            short_ttl(c, 6);
            c.presence.rendezvous_wan = hub_url;
        })
    };
    let (alice, bob) = (peer("Alice").await, peer("Bob").await);
    let (a_base, b_base) = (console(&alice), console(&bob));

    // Alice makes a site of her own template and publishes it through the hub's admin upload.
    let folder = tempfile::tempdir().unwrap();
    write_cards_template(folder.path());
    let path = folder.path().to_str().unwrap();
    form(&a_base, "/templates/install-folder", &[("folder", path)]).await;
    form(&a_base, "/templates/apply", &[("key", "installed/cards")]).await;
    let archive = reqwest::get(format!("{a_base}/templates/export?data=1"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let (cookie, csrf) = crate::hub_admin::sign_in(&hub).await;
    let notice = crate::hub_admin::upload(&hub, &cookie, &csrf, archive, "cards-board").await;
    assert_eq!(notice, "Installed template cards-board.");

    let gallery = get_text(&format!("{b_base}/templates")).await;
    assert!(
        gallery.contains(&format!("Browse the store of {hub_url}")),
        "{gallery}"
    );
    let encoded: String = url::form_urlencoded::byte_serialize(hub_url.as_bytes()).collect();
    let store = get_text(&format!("{b_base}/templates/store?hub={encoded}")).await;
    assert!(store.contains("data-name=\"cards-board\""), "{store}");
    assert!(store.contains("A board of cards"), "{store}");
    let notice = form(
        &b_base,
        "/templates/store",
        &[("hub", hub_url.as_str()), ("name", "cards-board")],
    )
    .await;
    assert_eq!(
        notice,
        "Installed template cards-board; apply it from the gallery."
    );
    let notice = form(
        &b_base,
        "/templates/store",
        &[("hub", "http://127.0.0.1:1/"), ("name", "cards")],
    )
    .await;
    assert!(notice.contains("is not a hub this peer uses"), "{notice}");
    let notice = form(
        &b_base,
        "/templates/apply",
        &[("key", "installed/cards-board")],
    )
    .await;
    assert!(notice.starts_with("Applied Cards."), "{notice}");
    assert_eq!(tables(&b_base).await, ["cards"]);
    let (_, counted) = api(
        &b_base,
        "lua-call",
        json!({"function": "count", "params": {}}),
    )
    .await;
    assert_eq!(
        counted["data"]["cards"], 3,
        "the rows came along: {counted}"
    );
    bob.shutdown().await;
    alice.shutdown().await;
}

/// Alice's site's Lua functions (`game` by default), called by Alice as its owner and by Bob
/// through his own peer. Answers `(status, data or error)`.
struct Table {
    a_base: String,
    b_base: String,
    a_id: String,
    token: String,
}

impl Table {
    async fn owner(&self, params: Value) -> (u16, Value) {
        let (status, answer) = api(
            &self.a_base,
            "lua-call",
            json!({"function": "game", "params": params}),
        )
        .await;
        (
            status,
            if status == 200 {
                answer["data"].clone()
            } else {
                answer["error"].clone()
            },
        )
    }

    async fn visitor(&self, params: Value) -> (u16, Value) {
        self.visitor_call("game", params).await
    }

    /// Bob calls Alice's Lua function `function` through his own peer.
    async fn visitor_call(&self, function: &str, params: Value) -> (u16, Value) {
        let response = no_redirects()
            .post(format!("{}/api/p/{}/data/lua/call", self.b_base, self.a_id))
            .header("x-goop-site-token", &self.token)
            .header("origin", "null")
            .header("sec-fetch-site", "cross-site")
            .json(&json!({"function": function, "params": params}))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap();
        (
            status,
            if status == 200 {
                answer["data"].clone()
            } else {
                answer["error"].clone()
            },
        )
    }
}

fn legal(moves: &Value) -> Vec<String> {
    let mut list: Vec<String> = moves["moves"]
        .as_array()
        .map(|m| m.iter().map(|m| m.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    list.sort();
    list
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chess_host_checks_every_move_and_finds_mate_and_stalemate() {
    let (alice, bob) = alice_and_bob().await;
    let (a_base, b_base) = (console(&alice), console(&bob));
    let a_id = alice.peer_id.to_base58();
    let notice = form(&a_base, "/templates/apply", &[("key", "builtin/chess")]).await;
    assert_eq!(notice, "Applied Chess. Lua is now on (lua.enabled).");
    let page = get_page(&format!("{b_base}/p/{a_id}/")).await;
    let table = Table {
        token: crate::support::meta(&page, "goop-site-token"),
        a_base,
        b_base,
        a_id,
    };
    let bob_id = bob.peer_id.to_base58();

    let (status, made) = table
        .owner(json!({"action": "create", "name": "Alice"}))
        .await;
    assert_eq!(status, 200, "{made}");
    let game = made["game"].as_i64().unwrap();
    let (_, joined) = table.visitor(json!({"action": "join", "game": game})).await;
    assert_eq!(joined["status"], "playing", "{joined}");
    assert_eq!(joined["black"], bob_id.as_str());
    let (_, again) = table.visitor(json!({"action": "join", "game": game})).await;
    assert!(again.as_str().unwrap().contains("not open"), "{again}");
    let (_, moves) = table.owner(json!({"action": "legal", "game": game})).await;
    assert_eq!(legal(&moves).len(), 20, "the twenty first moves");

    let (status, early) = table
        .visitor(json!({"action": "move", "game": game, "move": "e7e5"}))
        .await;
    assert_ne!(status, 200);
    assert!(early.as_str().unwrap().contains("not your turn"), "{early}");
    let (status, illegal) = table
        .owner(json!({"action": "move", "game": game, "move": "e2e5"}))
        .await;
    assert_ne!(status, 200);
    assert!(
        illegal.as_str().unwrap().contains("illegal move e2e5"),
        "{illegal}"
    );

    // Fool's mate.
    for (by_owner, mv) in [
        (true, "f2f3"),
        (false, "e7e5"),
        (true, "g2g4"),
        (false, "d8h4"),
    ] {
        let params = json!({"action": "move", "game": game, "move": mv});
        let (status, after) = if by_owner {
            table.owner(params).await
        } else {
            table.visitor(params).await
        };
        assert_eq!(status, 200, "{mv}: {after}");
    }
    let (_, over) = table.owner(json!({"action": "legal", "game": game})).await;
    assert!(legal(&over).is_empty());
    let (_, rows) = api(
        &table.a_base,
        "query",
        json!({"table": "games", "where": "_id = ?", "args": [game]}),
    )
    .await;
    let row = &rows["data"][0];
    assert_eq!(row["status"], "won");
    assert_eq!(row["result"], "checkmate");
    assert_eq!(row["winner"], bob_id.as_str());
    let (_, history) = api(
        &table.a_base,
        "count",
        json!({"table": "moves", "where": "game = ?", "args": [game]}),
    )
    .await;
    assert_eq!(history["data"], 4, "{history}");
    let (status, late) = table
        .owner(json!({"action": "move", "game": game, "move": "e2e4"}))
        .await;
    assert_ne!(status, 200);
    assert!(
        late.as_str().unwrap().contains("not being played"),
        "{late}"
    );

    // Positions set up by the owner: stalemate, castling, en passant, promotion.
    let set_up = async |fen: &str| {
        let (status, made) = table.owner(json!({"action": "create", "fen": fen})).await;
        assert_eq!(status, 200, "{made}");
        let game = made["game"].as_i64().unwrap();
        let (_, joined) = table.visitor(json!({"action": "join", "game": game})).await;
        assert_eq!(joined["status"], "playing");
        game
    };
    let (status, refused) = table
        .visitor(json!({"action": "create", "fen": "4k3/8/8/8/8/8/8/4K3 w - - 0 1"}))
        .await;
    assert_ne!(status, 200);
    assert!(refused.as_str().unwrap().contains("owner"), "{refused}");

    let stale = set_up("7k/8/6K1/8/8/8/5Q2/8 w - - 0 1").await;
    let (_, after) = table
        .owner(json!({"action": "move", "game": stale, "move": "f2f7"}))
        .await;
    assert_eq!(after["status"], "draw", "{after}");
    assert_eq!(after["result"], "stalemate");

    let castle = set_up("r3k2r/8/8/8/8/8/8/R3K2R w KQkq - 0 1").await;
    let (_, moves) = table
        .owner(json!({"action": "legal", "game": castle}))
        .await;
    let moves = legal(&moves);
    assert!(
        moves.contains(&"e1g1".to_owned()) && moves.contains(&"e1c1".to_owned()),
        "{moves:?}"
    );
    let (_, after) = table
        .owner(json!({"action": "move", "game": castle, "move": "e1g1"}))
        .await;
    assert_eq!(after["fen"], "r3k2r/8/8/8/8/8/8/R4RK1 b kq - 1 1");

    let passant = set_up("4k3/8/8/3pP3/8/8/8/4K3 w - d6 0 1").await;
    let (_, after) = table
        .owner(json!({"action": "move", "game": passant, "move": "e5d6"}))
        .await;
    assert_eq!(after["fen"], "4k3/8/3P4/8/8/8/8/4K3 b - - 0 1", "{after}");
    assert_eq!(
        after["status"], "playing",
        "a king and a pawn may still mate"
    );

    let promote = set_up("4k3/P7/8/8/8/8/8/4K3 w - - 0 1").await;
    let (_, after) = table
        .owner(json!({"action": "move", "game": promote, "move": "a7a8"}))
        .await;
    assert_eq!(
        after["fen"], "Q3k3/8/8/8/8/8/8/4K3 b - - 0 1",
        "a queen by default"
    );
    assert_eq!(after["check"], true);

    // Another template: the chess group goes with the chess tables.
    let hosts_chess = async || {
        alice
            .groups
            .hosted()
            .await
            .iter()
            .any(|group| group.meta.id == "chess")
    };
    assert!(hosts_chess().await);
    let shown = plan(&table.a_base, "builtin/guestbook").await;
    assert!(shown.contains("id=\"closes\""), "{shown}");
    form(
        &table.a_base,
        "/templates/apply",
        &[("key", "builtin/guestbook")],
    )
    .await;
    assert!(
        !hosts_chess().await,
        "the previous template's group is closed"
    );
    alice.shutdown().await;
    bob.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_blog_makes_its_atom_feed_for_a_visitor_on_request() {
    let (alice, bob) = crate::support::host_and_guest("Alice <&>", "Bob", |_| {}).await;
    let (a_base, b_base) = (console(&alice), console(&bob));
    let a_id = alice.peer_id.to_base58();
    let notice = form(&a_base, "/templates/apply", &[("key", "builtin/blog")]).await;
    assert!(notice.starts_with("Applied Blog."), "{notice}");
    let (status, _) = api(
        &a_base,
        "insert",
        json!({"table": "posts", "data": {"title": "Tags & <script>", "body": "x < y", "tags": "a, b"}}),
    )
    .await;
    assert_eq!(status, 200);

    for base in [&b_base, &a_base] {
        let response = reqwest::get(format!("{base}/p/{a_id}/feed.atom"))
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{base}");
        assert_eq!(
            response.headers()["content-type"],
            "application/atom+xml",
            "{base}"
        );
        let feed = response.text().await.unwrap();
        assert!(feed.starts_with("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\">"), "{feed}");
        assert!(
            feed.contains("<title>Alice &lt;&amp;&gt;&apos;s blog</title>"),
            "{feed}"
        );
        assert!(
            feed.contains("<title>Tags &amp; &lt;script&gt;</title>"),
            "{feed}"
        );
        assert!(
            feed.contains("<content type=\"text\">x &lt; y</content>"),
            "{feed}"
        );
        assert!(feed.contains("<category term=\"b\"/>"), "{feed}");
        assert!(
            feed.contains("<title>Hello from my peer</title>"),
            "the seeded post: {feed}"
        );
        let newest = feed.find("Tags &amp;").unwrap();
        assert!(
            newest < feed.find("Hello from my peer").unwrap(),
            "newest first"
        );
    }
    // Only the paths the template names are made on request.
    let missing = reqwest::get(format!("{b_base}/p/{a_id}/other.atom"))
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);
    // Another template, and the feed is gone with the blog.
    form(&a_base, "/templates/apply", &[("key", "builtin/guestbook")]).await;
    let gone = reqwest::get(format!("{b_base}/p/{a_id}/feed.atom"))
        .await
        .unwrap();
    assert_eq!(gone.status().as_u16(), 404);
    bob.shutdown().await;
    alice.shutdown().await;
}

/// What the quiz's `results` tells Bob.
async fn quiz_results(table: &Table) -> (u16, Value) {
    table.visitor_call("results", json!({})).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quiz_host_holds_answers_to_its_timer_and_to_being_open() {
    let (alice, bob) = alice_and_bob().await;
    let (a_base, b_base) = (console(&alice), console(&bob));
    let a_id = alice.peer_id.to_base58();
    form(&a_base, "/templates/apply", &[("key", "builtin/quiz")]).await;
    let page = get_page(&format!("{b_base}/p/{a_id}/")).await;
    let table = Table {
        token: crate::support::meta(&page, "goop-site-token"),
        a_base: a_base.clone(),
        b_base,
        a_id,
    };
    let quiz = async |params: Value| {
        let (status, answer) = table.visitor_call("quiz", params).await;
        (status, answer.to_string())
    };
    let settings = async |changes: Value| {
        let (status, answer) = api(
            &a_base,
            "update",
            json!({"table": "settings", "id": 1, "data": changes}),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
    };

    let (status, early) = quiz_results(&table).await;
    assert_eq!(status, 200, "{early}");
    assert!(
        early.get("questions").is_none() && early.get("leaderboard").is_none(),
        "no answers before answering: {early}"
    );
    settings(json!({"open": 0})).await;
    let (status, closed) = quiz(json!({"action": "start"})).await;
    assert_ne!(status, 200);
    assert!(closed.contains("this quiz is closed"), "{closed}");

    settings(json!({"open": 1, "time_limit": 1})).await;
    let (status, begun) = quiz(json!({"action": "start"})).await;
    assert_eq!(status, 200, "{begun}");
    assert!(begun.contains("\"time_limit\":1"), "{begun}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (status, late) = quiz(json!({"action": "submit", "answers": {"1": [1]}})).await;
    assert_ne!(status, 200);
    assert!(late.contains("the time is up"), "{late}");

    settings(json!({"time_limit": 0})).await;
    let (status, bad) = quiz(json!({"action": "submit", "answers": {"1": [7]}})).await;
    assert_ne!(status, 200);
    assert!(bad.contains("has no choice 7"), "{bad}");
    let (status, done) =
        quiz(json!({"action": "submit", "name": "Bob", "answers": {"1": [1], "3": "fun"}})).await;
    assert_eq!(status, 200, "{done}");
    let (status, again) = quiz(json!({"action": "submit", "answers": {"1": [1]}})).await;
    assert_ne!(status, 200);
    assert!(again.contains("answered already"), "{again}");
    let (_, after) = quiz_results(&table).await;
    assert_eq!(after["mine"]["score"], 1, "{after}");
    assert!(after["questions"][0]["correct"].is_array(), "{after}");
    let (_, rows) = api(&a_base, "query", json!({"table": "responses"})).await;
    assert_eq!(rows["data"].as_array().unwrap().len(), 1, "{rows}");
    assert_eq!(rows["data"][0]["_owner"], bob.peer_id.to_base58());
    bob.shutdown().await;
    alice.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_templates_chat_command_answers_at_once_when_applying_it_turned_lua_on() {
    let (alice, bob) = alice_and_bob().await;
    let (a_base, b_base) = (console(&alice), console(&bob));
    let folder = tempfile::tempdir().unwrap();
    write_cards_template(folder.path());
    std::fs::write(
        folder.path().join("lua/hello.lua"),
        "function handle(args)\n  return 'hello from the cards, ' .. goop.peer.label\nend\n",
    )
    .unwrap();
    let path = folder.path().to_str().unwrap();
    form(&a_base, "/templates/install-folder", &[("folder", path)]).await;
    let notice = form(&a_base, "/templates/apply", &[("key", "installed/cards")]).await;
    assert!(notice.contains("Lua is now on"), "{notice}");

    let url = format!("{b_base}/api/chat/{}", alice.peer_id);
    let (status, sent) = crate::support::post_with(
        &reqwest::Client::new(),
        &url,
        json!({"text": "!hello"}).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{sent}");
    let answered = crate::support::eventually(Duration::from_secs(10), async || {
        let history: Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
        history
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["outgoing"] == false && m["text"] == "hello from the cards, Bob")
    })
    .await;
    assert!(answered, "the command answered without a restart");
    bob.shutdown().await;
    alice.shutdown().await;
}
