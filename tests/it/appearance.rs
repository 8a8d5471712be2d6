//! How the console's pages look without a browser: the configured theme on every page, the
//! avatar placeholder, counts with their nouns in the right number. (Phone widths and the theme
//! switch are checked in Chromium, in `browser::screens`.)

use goop2::config::{Config, Theme};
use serde_json::json;

use crate::console::console;
use crate::support::{TestHub, TestPeer, get_page, hidden, no_redirects, short_ttl};

async fn lone_peer(edit: impl FnOnce(&mut Config)) -> TestPeer {
    TestPeer::spawn("Looks", |c| {
        short_ttl(c, 6);
        edit(c);
    })
    .await
}

#[test]
fn the_theme_is_dark_unless_goop_json_says_light() {
    assert_eq!(Config::default().viewer.color_theme(), Theme::Dark);
    let mut config = Config::default();
    config.viewer.theme = "light".into();
    assert_eq!(config.viewer.color_theme(), Theme::Light);
    assert_eq!(Theme::Light.as_str(), "light");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_console_page_carries_the_configured_theme_and_the_switch_script() {
    let running = lone_peer(|c| c.viewer.theme = "light".into()).await;
    let base = console(&running);
    let me = running.peer_id.to_base58();
    for path in ["/", "/self", "/database", "/edit", "/logs", "/lua"] {
        let html = get_page(&format!("{base}{path}")).await;
        assert!(
            html.contains(r#"<html lang="en" data-theme="light">"#),
            "{path}: {html}"
        );
        assert!(
            html.contains(r#"<script src="/assets/theme.js"></script>"#),
            "{path}"
        );
        assert!(
            html.contains(r#"<button type="button" id="theme-toggle" hidden>"#),
            "{path}: the switch stays hidden until its script shows it"
        );
    }
    // The page shown when a site cannot be shown follows the theme too.
    let missing = get_page(&format!("{base}/p/{me}/no-such-page.html")).await;
    assert!(missing.contains(r#"data-theme="light""#), "{missing}");
    let script = no_redirects()
        .get(format!("{base}/assets/theme.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        script.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert!(script.text().await.unwrap().contains("goop.theme"));
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_page_and_a_hubs_settings_viewer_follow_the_theme_too() {
    let hash = goop2::services::auth::hash_password("a password").unwrap();
    let running = lone_peer(|c| {
        c.viewer.theme = "light".into();
        c.viewer.admin_password = goop2::config::Secret::new(hash);
    })
    .await;
    let login = get_page(&format!("{}/login", console(&running))).await;
    assert!(login.contains(r#"data-theme="light""#), "{login}");
    running.shutdown().await;

    let hub = TestHub::spawn_with(
        |c| {
            c.viewer.http_addr = "127.0.0.1:0".into();
            c.viewer.theme = "light".into();
        },
        |_| {},
    )
    .await;
    for path in ["/self", "/logs"] {
        let html = get_page(&format!("{}{path}", hub.viewer_url())).await;
        assert!(
            html.contains(r#"<html lang="en" data-theme="light">"#),
            "{path}: {html}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_settings_page_shows_a_placeholder_until_an_avatar_is_uploaded() {
    let running = lone_peer(|_| {}).await;
    let base = console(&running);
    let before = get_page(&format!("{base}/self")).await;
    assert!(before.contains(r#"data-theme="dark""#), "the default theme");
    assert!(before.contains(r#"id="no-avatar""#), "{before}");
    assert!(
        !before.contains(r#"src="/self/avatar""#),
        "no image that can only fail to load"
    );

    // A minimal PNG: signature and an IHDR chunk of 8×8.
    let mut png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
    png.extend_from_slice(&8u32.to_be_bytes());
    png.extend_from_slice(&8u32.to_be_bytes());
    png.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
    let form = reqwest::multipart::Form::new()
        .text("csrf", hidden(&before, "csrf"))
        .part(
            "avatar",
            reqwest::multipart::Part::bytes(png).file_name("me.png"),
        );
    let uploaded = no_redirects()
        .post(format!("{base}/self/avatar"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status().as_u16(), 303);
    let after = get_page(&format!("{base}/self")).await;
    assert!(
        after.contains(r#"<img class="avatar" src="/self/avatar""#),
        "{after}"
    );
    assert!(!after.contains(r#"id="no-avatar""#));
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_read_one_row_and_two_rows() {
    let running = lone_peer(|_| {}).await;
    let base = console(&running);
    let client = reqwest::Client::new();
    let created = client
        .post(format!("{base}/api/data/create-table"))
        .json(&json!({"schema": {"name": "notes", "columns": ["title TEXT"]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 200);
    let insert = async || {
        let inserted = client
            .post(format!("{base}/api/data/insert"))
            .json(&json!({"table": "notes", "data": {"title": "a note"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(inserted.status().as_u16(), 200);
    };
    insert().await;
    let one = get_page(&format!("{base}/database/t/notes")).await;
    assert!(
        one.contains(r#"<small class="muted">1 row</small>"#),
        "{one}"
    );
    insert().await;
    let two = get_page(&format!("{base}/database/t/notes")).await;
    assert!(
        two.contains(r#"<small class="muted">2 rows</small>"#),
        "{two}"
    );

    // A CSV import of one good line says "1 row", before and after.
    let import = |step: &'static str| {
        let csrf = hidden(&two, "csrf");
        let client = client.clone();
        let base = base.clone();
        async move {
            client
                .post(format!("{base}/database/t/notes/import"))
                .form(&[
                    ("csrf", csrf.as_str()),
                    ("step", step),
                    ("csv", "title\nimported\n"),
                ])
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let preview = import("preview").await;
    assert!(
        preview.contains("Preview: 1 row can be imported."),
        "{preview}"
    );
    assert!(
        preview.contains("Import the good row</button>"),
        "{preview}"
    );
    let imported = import("import").await;
    assert!(imported.contains("1 row imported."), "{imported}");
    assert!(imported.contains("Imported 1 row."), "{imported}");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_files_have_one_route_with_their_type_an_etag_and_304() {
    let peer = lone_peer(|_| {}).await;
    let base = console(&peer);
    let client = reqwest::Client::new();
    for (path, content_type) in [
        ("/assets/style.css", "text/css; charset=utf-8"),
        ("/assets/theme.js", "text/javascript; charset=utf-8"),
        ("/sdk/goop-data.js", "text/javascript; charset=utf-8"),
    ] {
        let first = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(first.status(), 200, "{path}");
        assert_eq!(first.headers()["content-type"], content_type, "{path}");
        assert_eq!(first.headers()["cache-control"], "no-cache", "{path}");
        let etag = first.headers()["etag"].to_str().unwrap().to_owned();
        assert!(etag.starts_with('"') && etag.len() == 34, "{path}: {etag}");
        assert!(!first.bytes().await.unwrap().is_empty(), "{path}");
        let again = client
            .get(format!("{base}{path}"))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path}");
        assert_eq!(again.headers()["etag"], etag.as_str());
        assert!(again.bytes().await.unwrap().is_empty());
        let changed = client
            .get(format!("{base}{path}"))
            .header("if-none-match", "\"0000\"")
            .send()
            .await
            .unwrap();
        assert_eq!(changed.status(), 200, "{path}");
    }
    // The hub's pages link the same stylesheet, from the same route.
    let hub = TestHub::spawn().await;
    let css = client
        .get(format!("{}/assets/style.css", hub.url))
        .send()
        .await
        .unwrap();
    assert_eq!(css.status(), 200);
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
    for missing in [
        "/assets/nope.css",
        "/assets/..%2Fgoop.json",
        "/sdk/..%2F..%2FCargo.toml",
    ] {
        let response = client.get(format!("{base}{missing}")).send().await.unwrap();
        assert_eq!(response.status(), 404, "{missing}");
    }
    peer.shutdown().await;
}
