//! The hub's pages in a real headless Chromium (Debian `chromium`, driven by playwright-core
//! from `tests/browser`; `.ci/run` installs both).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use goop2::config::Secret;
use goop2::services::auth;
use goop2::services::hub::presence::PresenceType;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::support::{TestHub, TestPeer};

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
    let mut peer = TestPeer::new();
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
