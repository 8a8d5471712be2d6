//! `goop2 loadtest` against a real hub and against its hello-world baseline: small, bounded runs
//! whose numbers must add up.

use std::time::Duration;

use goop2::modes::loadtest::baseline::HelloServer;
use goop2::modes::loadtest::{self, LoadOptions};

use crate::support::TestHub;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_tool_measures_publishes_and_fan_out() {
    let hub = TestHub::spawn_with(|c| c.presence.max_streams_per_ip = 10, |_| {}).await;
    let report = loadtest::run(LoadOptions {
        url: hub.url.clone(),
        subscribers: 40,
        publishers: 4,
        rate: 40,
        duration: Duration::from_secs(2),
        changes_only: true,
        streams_per_address: 10,
        hub_pids: vec![std::process::id()],
    })
    .await
    .unwrap();
    assert_eq!(
        report.subscribers_connected, 40,
        "four source addresses, ten streams each"
    );
    assert_eq!(report.errors, 0);
    assert_eq!(report.accepted, report.attempted);
    assert!(
        (70..=80).contains(&report.accepted),
        "40/s for 2 s: {}",
        report.accepted
    );
    assert_eq!(
        report.fully_delivered, report.accepted,
        "every subscriber got every publish"
    );
    assert!(report.fanout_p99.unwrap() >= report.fanout_p50.unwrap());
    assert!(report.publish_p99 >= report.publish_p50);
    assert!(report.hub_rss_kib.unwrap() > 1000);
    let text = report.render();
    assert!(text.contains("accepted publishes/s: "), "{text}");
    assert!(
        text.contains("fan-out latency (publish to last subscriber): p50 "),
        "{text}"
    );
    assert!(
        hub.hub()
            .metrics()
            .publishes
            .load(std::sync::atomic::Ordering::Relaxed)
            >= report.accepted
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_baseline_server_takes_the_publish_load_and_stops_when_dropped() {
    let baseline = HelloServer::start().unwrap();
    let report = loadtest::run(LoadOptions {
        url: baseline.url().to_owned(),
        subscribers: 0,
        publishers: 2,
        rate: 20,
        duration: Duration::from_secs(1),
        changes_only: true,
        streams_per_address: 10,
        hub_pids: Vec::new(),
    })
    .await
    .unwrap();
    assert_eq!(report.errors, 0);
    assert_eq!(report.accepted, report.attempted);
    assert!(
        (15..=20).contains(&report.accepted),
        "20/s for 1 s: {}",
        report.accepted
    );
    let addr = baseline.url().trim_start_matches("http://").to_owned();
    drop(baseline);
    assert!(
        crate::support::eventually(Duration::from_secs(5), async || {
            tokio::net::TcpStream::connect(&addr).await.is_err()
        })
        .await,
        "nothing listens once the server is dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_tool_refuses_unbounded_runs() {
    let options = LoadOptions {
        url: "http://127.0.0.1:1".into(),
        subscribers: 1_000_000,
        publishers: 1,
        rate: 1,
        duration: Duration::from_secs(1),
        changes_only: true,
        streams_per_address: 10,
        hub_pids: Vec::new(),
    };
    let error = loadtest::run(options.clone()).await.unwrap_err();
    assert!(
        error.to_string().starts_with("at most 60000 subscribers"),
        "{error}"
    );
    let error = loadtest::run(LoadOptions {
        subscribers: 1,
        duration: Duration::from_secs(7200),
        ..options.clone()
    })
    .await
    .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("--duration must be between 1 and 600 s"),
        "{error}"
    );
    let error = loadtest::run(LoadOptions {
        subscribers: 1,
        url: "https://hub.example".into(),
        ..options
    })
    .await
    .unwrap_err();
    assert!(
        error.to_string().starts_with("loadtest speaks plain http"),
        "{error}"
    );
}
