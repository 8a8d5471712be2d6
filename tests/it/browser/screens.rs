//! The console's and the hub's pages on a phone (390×844 in Chromium): nothing wider than the
//! screen, no broken images; and the console's theme switch, kept per browser.

use std::path::Path;

use goop2::config::{Config, Secret};
use goop2::services::auth;
use goop2::services::presence::peer_table::PeerState;
use serde_json::{Value, json};

use crate::support::{PeerDir, TestPeer, short_ttl};

const PHONE_WIDTH: u64 = 390;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_and_hub_pages_fit_a_phone_and_the_theme_switch_is_kept_per_browser() {
    super::require_browser_tooling();
    let password = "hub admin password";
    let hash = auth::hash_password(password).unwrap();
    let tag = format!("screens-{}", rand::random::<u32>());
    let dir_of = |label: &str, edit: &dyn Fn(&mut Config)| {
        PeerDir::new(label, |c| {
            short_ttl(c, 6);
            c.p2p.mdns_tag = tag.clone();
            edit(c);
        })
    };
    let owner = TestPeer::start(dir_of("Owner of a peer with a long-winded name", &|c| {
        c.presence.rendezvous_host = true;
        c.presence.admin_password = Secret::new(hash.clone());
    }))
    .await;
    let hub = format!("http://{}", owner.hub.as_ref().unwrap().hub_addr);
    let bob = TestPeer::start(dir_of(
        "Bob, whose label is also rather long for a phone",
        &|c| {
            c.presence.rendezvous_wan = hub.clone();
            c.viewer.http_addr = String::new();
        },
    ))
    .await;
    let bob_id = bob.peer_id.to_base58();
    assert!(crate::support::lists(&owner, &bob_id, PeerState::Online).await);

    // A table with more columns than a phone shows at once, and a long value.
    let console = format!("http://{}", owner.console_addr.unwrap());
    let client = reqwest::Client::new();
    for (op, body) in [
        (
            "create-table",
            json!({"schema": {"name": "books", "columns": [
                "title TEXT NOT NULL", "author TEXT", "publisher TEXT", "isbn TEXT",
                "pages INTEGER", "summary TEXT"]}}),
        ),
        (
            "insert",
            json!({"table": "books", "data": {
                "title": "A title long enough to need more than one line on a phone",
                "author": "Somebody Withalongname", "publisher": "Publisher of Books",
                "isbn": "978-0-00-000000-0", "pages": 1,
                "summary": "https://example.org/an/address/without/any/spaces/that/does/not/wrap/by/itself"}}),
        ),
    ] {
        let answer = client
            .post(format!("{console}/api/data/{op}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 200, "{op}");
    }

    let paths = [
        "/".to_owned(),
        "/self".to_owned(),
        "/database".to_owned(),
        "/database/t/books".to_owned(),
        "/edit".to_owned(),
        "/edit/file?path=index.html".to_owned(),
        "/logs".to_owned(),
        "/lua".to_owned(),
        format!("/peer/{bob_id}"),
        "hub:/".to_owned(),
        "hub:/admin".to_owned(),
        "hub:/admin/templates".to_owned(),
        "hub:/admin/logs".to_owned(),
        "hub:/admin/config".to_owned(),
    ];
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/screens.mjs");
    let output = tokio::process::Command::new("node")
        .arg(&script)
        .arg(&console)
        .arg(&hub)
        .arg(password)
        .args(&paths)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(stdout.trim()).unwrap();
    for path in &paths {
        let shown = &report["pages"][path.as_str()];
        let width = shown["scrollWidth"].as_u64().unwrap();
        assert!(
            width <= PHONE_WIDTH,
            "{path} is {width} px wide on a {PHONE_WIDTH} px screen: {shown}"
        );
        assert_eq!(shown["brokenImages"], json!([]), "{path}");
    }

    let theme = &report["theme"];
    assert_eq!(theme["initial"], "dark", "viewer.theme's default: {theme}");
    assert_eq!(theme["toggleShown"], true, "{theme}");
    assert_eq!(theme["afterClick"], "light", "{theme}");
    assert_eq!(theme["backgroundChanged"], true, "{theme}");
    assert_eq!(theme["stored"], "light", "{theme}");
    assert_eq!(
        theme["afterReload"], "light",
        "kept across a reload: {theme}"
    );
    assert_eq!(theme["onAnotherPage"], "light", "{theme}");
    assert_eq!(theme["afterSecondClick"], "dark", "{theme}");
    assert_eq!(
        theme["storedAfterSecondClick"],
        Value::Null,
        "back to the configured theme, nothing is kept: {theme}"
    );
    assert_eq!(theme["withoutScript"], "dark", "{theme}");
    assert_eq!(theme["toggleWithoutScript"], false, "{theme}");
    bob.shutdown().await;
    owner.shutdown().await;
}
