//! The hub's `/admin` pages and the template store, over real HTTP.

use std::io::Write;
use std::time::Duration;

use flate2::Compression;
use flate2::write::GzEncoder;
use goop2::config::Secret;
use goop2::services::auth;
use goop2::services::hub::presence::PresenceType;
use serde_json::Value;

use crate::support::{SseClient, TestHub, TestIdentity, hidden, no_redirects};

pub const PASSWORD: &str = "correct horse battery staple";
const WAIT: Duration = Duration::from_secs(5);

pub async fn hub_with_admin() -> TestHub {
    hub_with_admin_and(|_| {}).await
}

/// A hub with the admin password and `edit` applied (a peer database, say).
pub async fn hub_with_admin_and(edit: impl FnOnce(&mut goop2::config::Config)) -> TestHub {
    let hash = auth::hash_password(PASSWORD).unwrap();
    let config = |c: &mut goop2::config::Config| {
        c.presence.admin_password = Secret::new(hash);
        edit(c);
    };
    TestHub::spawn_with(config, |_| {}).await
}

/// The page at `path` as the session of `cookie` sees it.
pub async fn admin_page(hub: &TestHub, cookie: &str, path: &str) -> String {
    admin_get(hub, cookie, path).await.text().await.unwrap()
}

/// Signs in; returns the cookie header value and the CSRF token of the admin page.
pub async fn sign_in(hub: &TestHub) -> (String, String) {
    let cookie = crate::support::hub_admin_cookie(&hub.url, PASSWORD).await;
    let page = admin_get(hub, &cookie, "/admin")
        .await
        .text()
        .await
        .unwrap();
    let csrf = hidden(&page, "csrf");
    (cookie, csrf)
}

/// GETs `path` with the session cookie; returns the response.
async fn admin_get(hub: &TestHub, cookie: &str, path: &str) -> reqwest::Response {
    no_redirects()
        .get(format!("{}{path}", hub.url))
        .header("Cookie", cookie)
        .send()
        .await
        .unwrap()
}

pub async fn admin_post(
    hub: &TestHub,
    cookie: &str,
    path: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    no_redirects()
        .post(format!("{}{path}", hub.url))
        .header("Cookie", cookie)
        .form(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_is_disabled_without_a_password_and_says_how_to_enable_it() {
    let hub = TestHub::spawn().await;
    let response = reqwest::get(format!("{}/admin", hub.url)).await.unwrap();
    assert_eq!(response.status().as_u16(), 403);
    let page = response.text().await.unwrap();
    assert!(page.contains("Administration is disabled"), "{page}");
    assert!(page.contains("presence.admin_password"), "{page}");
    assert!(page.contains("goop2 hash-password"), "{page}");
    let login = no_redirects()
        .post(format!("{}/admin/login", hub.url))
        .form(&[("password", "")])
        .send()
        .await
        .unwrap();
    assert!(login.headers().get("set-cookie").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_sets_a_strict_http_only_cookie_and_sign_out_ends_the_session() {
    let hub = hub_with_admin().await;
    let page = reqwest::get(format!("{}/admin", hub.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("type=\"password\""),
        "anonymous visitors get the login form"
    );

    let wrong = no_redirects()
        .post(format!("{}/admin/login", hub.url))
        .form(&[("password", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());
    assert!(wrong.text().await.unwrap().contains("Wrong password."));

    let response = no_redirects()
        .post(format!("{}/admin/login", hub.url))
        .header("X-Forwarded-Proto", "https")
        .form(&[("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    let cookie = response.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with("goop_admin="), "{cookie}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Secure"] {
        assert!(
            cookie.contains(attribute),
            "{attribute} missing from {cookie}"
        );
    }

    let (cookie, csrf) = sign_in(&hub).await;
    // Signing out needs the CSRF token too.
    let refused = admin_post(&hub, &cookie, "/admin/logout", &[]).await;
    assert_eq!(refused.status().as_u16(), 403);
    let out = admin_post(&hub, &cookie, "/admin/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status().as_u16(), 303);
    assert!(
        out.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let after = admin_get(&hub, &cookie, "/admin/logs").await;
    assert_eq!(
        after.status().as_u16(),
        303,
        "the old cookie no longer works"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_attempts_are_rate_limited_per_address() {
    let hub = hub_with_admin().await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let response = no_redirects()
            .post(format!("{}/admin/login", hub.url))
            .form(&[("password", "guess")])
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
        if response.status().as_u16() == 429 {
            assert!(response.headers().contains_key("retry-after"));
        }
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429]);
    // Even the right password waits its turn.
    let response = no_redirects()
        .post(format!("{}/admin/login", hub.url))
        .form(&[("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_sees_emails_and_can_kick_and_ban() {
    let hub = hub_with_admin().await;
    let mut alice = TestIdentity::new();
    let mut message = alice.unsigned(PresenceType::Online, "Alice");
    message.email = Some("alice@example.org".into());
    message.sign(&alice.keypair);
    assert_eq!(
        hub.publish(serde_json::to_string(&message).unwrap())
            .await
            .0,
        204
    );

    let public: Vec<Value> = reqwest::get(format!("{}/peers.json", hub.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(public[0].get("email").is_none());

    let (cookie, csrf) = sign_in(&hub).await;
    let private: Vec<Value> = admin_get(&hub, &cookie, "/peers.json")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(private[0]["email"], "alice@example.org");
    let page = admin_get(&hub, &cookie, "/admin")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("alice@example.org"));

    // Without the CSRF token nothing happens.
    let refused = admin_post(
        &hub,
        &cookie,
        "/admin/peers/kick",
        &[("peer_id", &alice.id)],
    )
    .await;
    assert_eq!(refused.status().as_u16(), 403);
    assert_eq!(hub.peers().await.len(), 1);
    // Without a session, neither.
    let anonymous = admin_post(
        &hub,
        "goop_admin=forged",
        "/admin/peers/kick",
        &[("peer_id", &alice.id), ("csrf", &csrf)],
    )
    .await;
    assert_eq!(anonymous.status().as_u16(), 303);
    assert_eq!(hub.peers().await.len(), 1);

    let mut watcher = SseClient::connect(&format!("{}/events?changes=1", hub.url), None).await;
    watcher
        .next(Duration::from_secs(2))
        .await
        .expect("snapshot");
    let kicked = admin_post(
        &hub,
        &cookie,
        "/admin/peers/kick",
        &[("peer_id", &alice.id), ("csrf", &csrf)],
    )
    .await;
    assert_eq!(kicked.status().as_u16(), 303);
    let offline = watcher
        .wait_for(Duration::from_secs(5), |e| e.json()["type"] == "offline")
        .await;
    assert_eq!(offline.json()["peerId"], alice.id.as_str());
    assert!(hub.peers().await.is_empty());

    // A kicked peer may come back; a banned one may not.
    assert_eq!(
        hub.publish(alice.json(PresenceType::Online, "Alice"))
            .await
            .0,
        204
    );
    let banned = admin_post(
        &hub,
        &cookie,
        "/admin/peers/ban",
        &[("peer_id", &alice.id), ("minutes", "60"), ("csrf", &csrf)],
    )
    .await;
    assert_eq!(banned.status().as_u16(), 303);
    assert!(hub.peers().await.is_empty());
    let (status, body) = hub.publish(alice.json(PresenceType::Online, "Alice")).await;
    assert_eq!(status, 403);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with(&format!("peer {} is banned from this hub for", alice.id))
    );
    let page = admin_get(&hub, &cookie, "/admin")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(&format!("<code>{}</code> for", alice.id)),
        "the ban is listed"
    );

    let lifted = admin_post(
        &hub,
        &cookie,
        "/admin/peers/unban",
        &[("peer_id", &alice.id), ("csrf", &csrf)],
    )
    .await;
    assert_eq!(lifted.status().as_u16(), 303);
    assert_eq!(
        hub.publish(alice.json(PresenceType::Online, "Alice"))
            .await
            .0,
        204
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_and_config_are_for_the_admin_only_and_secrets_stay_hidden() {
    let hub = hub_with_admin().await;
    let anonymous = reqwest::Client::new()
        .get(format!("{}/logs.json", hub.url))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);

    let (cookie, _) = sign_in(&hub).await;
    let logs: Vec<Value> = admin_get(&hub, &cookie, "/logs.json")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        logs.iter()
            .all(|r| r["seq"].is_u64() && r["level"].is_string())
    );

    let config = admin_get(&hub, &cookie, "/admin/config")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        config.contains("&#34;admin_password&#34;: &#34;&#60;redacted&#62;&#34;"),
        "{config}"
    );
    assert!(!config.contains("$argon2"), "the hash is not shown");
}

pub fn tar_gz(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    for (path, bytes) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, path, *bytes).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

/// A bundle with one entry whose header says exactly `name` and `kind`, bypassing the tar
/// crate's own path checks, as an attacker's tool would.
pub fn hostile_tar_gz(name: &str, kind: tar::EntryType, link: Option<&str>) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    if let Some(target) = link {
        header.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
    }
    header.set_mode(0o644);
    header.set_entry_type(kind);
    let body: &[u8] = if kind == tar::EntryType::Regular {
        b"owned"
    } else {
        b""
    };
    header.set_size(body.len() as u64);
    header.set_cksum();
    raw.extend_from_slice(header.as_bytes());
    raw.extend_from_slice(body);
    raw.resize(raw.len().div_ceil(512) * 512, 0);
    // A manifest too, so only the hostile entry can be the reason for refusal.
    let manifest = br#"{"name": "Evil"}"#;
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..13].copy_from_slice(b"manifest.json");
    header.set_mode(0o644);
    header.set_size(manifest.len() as u64);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    raw.extend_from_slice(header.as_bytes());
    raw.extend_from_slice(manifest);
    raw.resize(raw.len().div_ceil(512) * 512 + 1024, 0);
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(&raw).unwrap();
    gz.finish().unwrap()
}

pub async fn upload(
    hub: &TestHub,
    cookie: &str,
    csrf: &str,
    bundle: Vec<u8>,
    name: &str,
) -> String {
    let form = reqwest::multipart::Form::new()
        .text("csrf", csrf.to_owned())
        .text("name", name.to_owned())
        .part(
            "bundle",
            reqwest::multipart::Part::bytes(bundle).file_name("t.tar.gz"),
        );
    let response = no_redirects()
        .post(format!("{}/admin/templates", hub.url))
        .header("Cookie", cookie)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 303);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(location, "/admin/templates");
    let page = admin_get(hub, cookie, &location)
        .await
        .text()
        .await
        .unwrap();
    flash(&page).unwrap_or_default()
}

/// The notice a page shows, unescaped.
fn flash(page: &str) -> Option<String> {
    let text = page
        .split("<p class=\"flash\" role=\"status\">")
        .nth(1)?
        .split("</p>")
        .next()?;
    Some(
        text.replace("&#39;", "'")
            .replace("&#34;", "\"")
            .replace("&quot;", "\"")
            .replace("&#60;", "<")
            .replace("&lt;", "<")
            .replace("&#62;", ">")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_notices_come_from_the_hub_not_from_the_link() {
    let hub = hub_with_admin().await;
    let (cookie, csrf) = sign_in(&hub).await;
    for path in ["/admin", "/admin/templates"] {
        let page = admin_get(
            &hub,
            &cookie,
            &format!("{path}?notice=Your+hub+was+hacked%2C+call+0800-SCAM"),
        )
        .await
        .text()
        .await
        .unwrap();
        assert!(!page.contains("hacked"), "{path} showed the link's text");
        assert_eq!(flash(&page), None, "{path}");
    }

    // The hub's own notice shows once, on the page the action leads to.
    let nobody = TestIdentity::new();
    let kicked = admin_post(
        &hub,
        &cookie,
        "/admin/peers/kick",
        &[("peer_id", &nobody.id), ("csrf", &csrf)],
    )
    .await;
    assert_eq!(kicked.status().as_u16(), 303);
    assert_eq!(kicked.headers()["location"], "/admin");
    let page = admin_get(&hub, &cookie, "/admin?notice=forged")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(
        flash(&page).as_deref(),
        Some(format!("{} was not online.", nobody.id).as_str())
    );
    assert!(!page.contains("forged"));
    let again = admin_get(&hub, &cookie, "/admin")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(flash(&again), None, "a notice is shown once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_template_store_lists_serves_and_caches_bundles() {
    let hub = TestHub::spawn().await;
    let store = hub.dir.path().join("templates");
    std::fs::create_dir_all(store.join("corkboard/js")).unwrap();
    std::fs::write(
        store.join("corkboard/manifest.json"),
        r#"{"name": "Corkboard", "description": "Pin notes", "version": "1.0.0"}"#,
    )
    .unwrap();
    std::fs::write(store.join("corkboard/index.html"), "<h1>Corkboard</h1>").unwrap();
    std::fs::write(store.join("corkboard/js/app.js"), "console.log('hi')").unwrap();
    // Broken ones are skipped, not fatal.
    std::fs::create_dir_all(store.join("broken")).unwrap();
    std::fs::write(store.join("broken/manifest.json"), "{ nope").unwrap();
    std::fs::create_dir_all(store.join("empty")).unwrap();

    let list: Vec<Value> = reqwest::get(format!("{}/api/templates", hub.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["dir"], "corkboard");
    assert_eq!(list[0]["name"], "Corkboard");

    let manifest: Value =
        reqwest::get(format!("{}/api/templates/corkboard/manifest.json", hub.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(manifest["version"], "1.0.0");
    let missing = reqwest::get(format!("{}/api/templates/nothing/manifest.json", hub.url))
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);
    let bad = reqwest::get(format!("{}/api/templates/..%2Fetc/bundle", hub.url))
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);

    let response = reqwest::get(format!("{}/api/templates/corkboard/bundle", hub.url))
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "application/gzip");
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    let bytes = response.bytes().await.unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
    let mut names: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["index.html", "js/app.js", "manifest.json"]);

    let cached = reqwest::Client::new()
        .get(format!("{}/api/templates/corkboard/bundle", hub.url))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status().as_u16(), 304);

    std::fs::write(store.join("corkboard/index.html"), "<h1>Corkboard v2</h1>").unwrap();
    let changed = reqwest::Client::new()
        .get(format!("{}/api/templates/corkboard/bundle", hub.url))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status().as_u16(), 200, "an edit changes the ETag");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_install_templates_and_hostile_bundles_are_refused() {
    let hub = hub_with_admin().await;
    let (cookie, csrf) = sign_in(&hub).await;

    let good = tar_gz(&[
        ("manifest.json", br#"{"name": "Quiz", "version": "2.0.0"}"#),
        ("index.html", b"<h1>Quiz</h1>"),
    ]);
    assert_eq!(
        upload(&hub, &cookie, &csrf, good, "").await,
        "Installed template quiz."
    );
    let list: Vec<Value> = reqwest::get(format!("{}/api/templates", hub.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["dir"], "quiz");

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
            hostile_tar_gz("hard", tar::EntryType::Link, Some("manifest.json")),
            "is a link",
        ),
        (
            tar_gz(&[("index.html", b"no manifest")]),
            "it has no manifest.json at its root",
        ),
        (
            tar_gz(&[("manifest.json", b"[1, 2]")]),
            "manifest.json must be a JSON object",
        ),
        (b"definitely not gzip".to_vec(), "the bundle was refused"),
    ];
    for (bundle, reason) in cases {
        let notice = upload(&hub, &cookie, &csrf, bundle, "evil").await;
        assert!(notice.starts_with("the bundle was refused: "), "{notice}");
        assert!(notice.contains(reason), "expected {reason:?} in {notice:?}");
    }
    assert!(!hub.dir.path().join("escape.html").exists());
    assert!(!hub.dir.path().join("templates/evil").exists());
    let leftovers: Vec<_> = std::fs::read_dir(hub.dir.path().join("templates"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        leftovers,
        ["quiz"],
        "no staging directories are left behind"
    );

    let bad_name = upload(
        &hub,
        &cookie,
        &csrf,
        tar_gz(&[("manifest.json", br#"{"name": "X"}"#)]),
        "../x",
    )
    .await;
    assert!(
        bad_name.contains("is not a valid template name"),
        "{bad_name}"
    );

    let deleted = admin_post(
        &hub,
        &cookie,
        "/admin/templates/delete",
        &[("name", "quiz"), ("csrf", &csrf)],
    )
    .await;
    assert_eq!(deleted.status().as_u16(), 303);
    let list: Vec<Value> = reqwest::get(format!("{}/api/templates", hub.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(list.is_empty());
}

/// Two instances of one peer database share administrators' sessions: a sign-in on the first is
/// good on the second — its pages, its forms (whose notice the first shows), its event streams
/// (emails in the snapshot) — and a sign-out on the second ends the session on the first: for
/// requests at once, for a stream already open within [`auth::SESSION_REFRESH`].
pub async fn instances_share_admin_sessions(first: &TestHub, second: &TestHub) {
    const EMAIL: &str = "alice@example.org";
    let mut alice = TestIdentity::new();
    let mut publish_alice = async |label: &str| {
        let mut message = alice.unsigned(PresenceType::Online, label);
        message.email = Some(EMAIL.into());
        message.sign(&alice.keypair);
        let (status, body) = first
            .publish(serde_json::to_string(&message).unwrap())
            .await;
        assert_eq!(status, 204, "{body}");
    };
    publish_alice("Alice").await;
    assert!(crate::support::eventually(WAIT, async || second.peers().await.len() == 1).await);

    let cookie = crate::support::hub_admin_cookie(&first.url, PASSWORD).await;
    // Streams opened with the session on either instance carry emails from their snapshot on
    // (the second has not been asked about the session yet: the stream asks the database).
    let mut streams = Vec::new();
    for hub in [first, second] {
        let url = format!("{}/events", hub.url);
        let mut stream = SseClient::connect_with(&url, &[("Cookie", &cookie)]).await;
        let seen = stream
            .wait_for(WAIT, |e| {
                !e.data.is_empty() && e.json()["content"] == "Alice"
            })
            .await;
        assert_eq!(seen.json()["email"], EMAIL, "{}", hub.url);
        streams.push(stream);
    }

    let page = admin_get(second, &cookie, "/admin").await;
    assert_eq!(page.status().as_u16(), 200);
    let page = page.text().await.unwrap();
    assert!(
        page.contains(EMAIL),
        "the second instance knows the session: {page}"
    );
    let csrf = hidden(&page, "csrf");

    // A form sent to the second; the page it leaves a notice for is served by the first.
    let mallory = TestIdentity::new().id;
    let form = [
        ("peer_id", mallory.as_str()),
        ("minutes", "5"),
        ("csrf", &csrf),
    ];
    let banned = admin_post(second, &cookie, "/admin/peers/ban", &form).await;
    assert_eq!(banned.status().as_u16(), 303);
    let page = admin_page(first, &cookie, "/admin").await;
    assert!(
        page.contains(&format!("Banned {mallory} for 5 min.")),
        "{page}"
    );
    let page = admin_page(second, &cookie, "/admin").await;
    assert!(
        !page.contains("for 5 min."),
        "a notice is shown once: {page}"
    );

    // Signed out through the second: the first refuses the cookie at once.
    let signed_out = admin_post(second, &cookie, "/admin/logout", &[("csrf", &csrf)]).await;
    assert_eq!(signed_out.status().as_u16(), 303);
    let page = admin_page(first, &cookie, "/admin").await;
    assert!(
        !page.contains(EMAIL),
        "the first instance ended the session: {page}"
    );
    assert!(crate::support::eventually(WAIT, async || first.hub().bans().len() == 1).await);
    let form = [("peer_id", mallory.as_str()), ("csrf", &csrf)];
    let refused = admin_post(first, &cookie, "/admin/peers/unban", &form).await;
    assert_eq!(refused.headers()["location"], "/admin");
    assert_eq!(
        first.hub().bans().len(),
        1,
        "the form of a session ended elsewhere is refused"
    );

    // The streams carry public frames once each instance has read the sessions again.
    tokio::time::sleep(auth::SESSION_REFRESH + Duration::from_millis(500)).await;
    publish_alice("Alice later").await;
    for (hub, stream) in [first, second].iter().zip(&mut streams) {
        let later = stream
            .wait_for(WAIT, |e| {
                !e.data.is_empty() && e.json()["content"] == "Alice later"
            })
            .await;
        assert!(
            later.json().get("email").is_none(),
            "{}: {:?}",
            hub.url,
            later.data
        );
    }
}
