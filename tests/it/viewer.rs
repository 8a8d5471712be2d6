//! The rendezvous node's settings viewer: `/self` and `/logs`, open on loopback or behind a
//! password.

use std::time::Duration;

use goop2::config::{Config, Secret};
use goop2::services::auth;

use crate::support::{SseClient, TestHub, hidden, no_redirects};

async fn open_viewer() -> TestHub {
    TestHub::spawn_with(|c| c.viewer.http_addr = "127.0.0.1:0".into(), |_| {}).await
}

fn settings_form(
    csrf: &str,
    fingerprint: &str,
    ttl: &str,
    heartbeat: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("csrf", csrf.into()),
        ("fingerprint", fingerprint.into()),
        ("label", "Community hub".into()),
        ("email", "ops@example.org".into()),
        ("ttl_seconds", ttl.into()),
        ("heartbeat_seconds", heartbeat.into()),
        ("rendezvous_bind", "127.0.0.1".into()),
        ("rendezvous_port", "8787".into()),
        ("rendezvous_wan", "".into()),
        ("peer_db_path", "".into()),
        ("templates_dir", "templates".into()),
        ("trusted_proxies", "127.0.0.1, 10.0.0.0/8".into()),
        ("publish_burst", "60".into()),
        ("publish_per_second", "1".into()),
        ("max_streams", "20000".into()),
        ("max_streams_per_ip", "30".into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_are_validated_and_saved_keeping_unknown_keys() {
    let hub = open_viewer().await;
    let path = hub.dir.path().join("goop.json");
    // A key this version does not know, added by hand.
    let mut raw: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    raw["presence"]["future_knob"] = serde_json::json!(7);
    std::fs::write(&path, raw.to_string()).unwrap();

    let page = no_redirects()
        .get(format!("{}/self", hub.viewer_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.unwrap();
    let csrf = hidden(&html, "csrf");
    let fingerprint = hidden(&html, "fingerprint");

    // Invalid: nothing is written and the message names the rule.
    let before = std::fs::read_to_string(&path).unwrap();
    let refused = no_redirects()
        .post(format!("{}/self", hub.viewer_url()))
        .form(&settings_form(&csrf, &fingerprint, "20", "30"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 422);
    let text = refused.text().await.unwrap();
    assert!(
        text.contains(
            "presence.heartbeat_seconds (30) must be less than presence.ttl_seconds (20)"
        ),
        "{text}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), before);

    let not_a_number = no_redirects()
        .post(format!("{}/self", hub.viewer_url()))
        .form(&settings_form(&csrf, &fingerprint, "soon", "5"))
        .send()
        .await
        .unwrap();
    assert_eq!(not_a_number.status().as_u16(), 422);
    assert!(
        not_a_number
            .text()
            .await
            .unwrap()
            .contains("presence.ttl_seconds (&#34;soon&#34;) must be a whole number")
    );

    // Without the CSRF token: refused.
    let forged = no_redirects()
        .post(format!("{}/self", hub.viewer_url()))
        .form(&settings_form("", &fingerprint, "40", "5"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403);

    let saved = no_redirects()
        .post(format!("{}/self", hub.viewer_url()))
        .form(&settings_form(&csrf, &fingerprint, "40", "5"))
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status().as_u16(), 303);
    let config = Config::load(&path).unwrap();
    assert_eq!(config.config.presence.ttl_seconds, 40);
    assert_eq!(config.config.profile.label, "Community hub");
    assert_eq!(
        config.config.presence.trusted_proxies,
        ["127.0.0.1", "10.0.0.0/8"]
    );
    assert_eq!(
        config.config.presence.extra["future_knob"], 7,
        "unknown keys survive"
    );
    let after = no_redirects()
        .get(format!("{}/self?saved=1", hub.viewer_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(after.contains("take effect when the hub restarts"));

    // The file changed by hand after the page was opened: no silent overwrite.
    let stale = no_redirects()
        .post(format!("{}/self", hub.viewer_url()))
        .form(&settings_form(&csrf, &fingerprint, "50", "5"))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status().as_u16(), 409);
    assert_eq!(Config::load(&path).unwrap().config.presence.ttl_seconds, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_less_viewer_answers_only_local_requests() {
    let hub = open_viewer().await;
    let url = format!("{}/self", hub.viewer_url());
    let rebinding = no_redirects()
        .get(&url)
        .header("Host", "attacker.example:9090")
        .send()
        .await
        .unwrap();
    assert_eq!(rebinding.status().as_u16(), 403);
    let proxied = no_redirects()
        .get(&url)
        .header("X-Forwarded-For", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(proxied.status().as_u16(), 403);
    assert!(
        proxied
            .text()
            .await
            .unwrap()
            .contains("viewer.admin_password")
    );
    let local = no_redirects()
        .get(&url)
        .header("Host", "localhost:9090")
        .send()
        .await
        .unwrap();
    assert_eq!(local.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_off_loopback_needs_a_password() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.presence.rendezvous_only = true;
    config.presence.rendezvous_host = true;
    config.presence.rendezvous_port = Some(0);
    config.viewer.http_addr = "0.0.0.0:0".into();
    let error =
        goop2::modes::rendezvous::start(dir.path(), &config, goop2::telemetry::LogBuffer::new(10))
            .await
            .err()
            .expect("refused");
    assert_eq!(
        error.to_string(),
        "viewer.http_addr (0.0.0.0:0) is not a loopback address, so viewer.admin_password must be \
         set; create one with `goop2 hash-password`"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protected_viewer_needs_a_session_and_shows_live_logs() {
    let hash = auth::hash_password("s3cret").unwrap();
    let hub = TestHub::spawn_with(
        |c| {
            c.viewer.http_addr = "127.0.0.1:0".into();
            c.viewer.admin_password = Secret::new(hash);
        },
        |_| {},
    )
    .await;
    let base = hub.viewer_url();
    let anonymous = no_redirects()
        .get(format!("{base}/self"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 303);
    assert_eq!(anonymous.headers()["location"], "/login");
    let wrong = no_redirects()
        .post(format!("{base}/login"))
        .form(&[("password", "nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);

    let cookie = crate::support::sign_in(&base, "s3cret").await;
    let page = no_redirects()
        .get(format!("{base}/logs"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("id=\"logs\""));

    // The live tail carries new records.
    let mut tail = SseClient::connect_with(
        &format!("{base}/logs/stream?after=999999999"),
        &[("Cookie", cookie.as_str())],
    )
    .await;
    assert_eq!(tail.status, 200);
    hub.logs
        .push("WARN", "goop2::test", "hello from the tail".into(), vec![]);
    let record = tail
        .next(Duration::from_secs(5))
        .await
        .expect("a live record")
        .json();
    assert_eq!(record["message"], "hello from the tail");
    assert_eq!(record["level"], "WARN");

    let csrf = hidden(&html, "csrf");
    let bad = no_redirects()
        .post(format!("{base}/self"))
        .header("Cookie", &cookie)
        .form(&[("csrf", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 403);
    let out = no_redirects()
        .post(format!("{base}/logout"))
        .header("Cookie", &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status().as_u16(), 303);
    let after = no_redirects()
        .get(format!("{base}/self"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status().as_u16(), 303);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_port_leaves_the_hub_port_to_the_platform() {
    let hub = open_viewer().await;
    let path = hub.dir.path().join("goop.json");
    let html = no_redirects()
        .get(format!("{}/self", hub.viewer_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (csrf, fingerprint) = (hidden(&html, "csrf"), hidden(&html, "fingerprint"));
    let mut form = settings_form(&csrf, &fingerprint, "20", "5");
    for (name, value) in form.iter_mut() {
        if *name == "rendezvous_port" {
            *value = " ".into();
        }
    }
    let saved = no_redirects()
        .post(format!("{}/self", hub.viewer_url()))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status().as_u16(), 303);
    let written = std::fs::read_to_string(&path).unwrap();
    assert!(!written.contains("rendezvous_port"), "{written}");
    assert_eq!(
        Config::load(&path).unwrap().config.presence.rendezvous_port,
        None
    );
    let page = no_redirects()
        .get(format!("{}/self", hub.viewer_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("name=\"rendezvous_port\" value=\"\""),
        "shown empty, not as a number"
    );
}
