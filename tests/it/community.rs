//! `goop2 loadtest --community` against a real hub: a small community whose numbers must add
//! up — every peer live, every label change heard by the peers online, churn and a reconnect
//! storm survived, over both kinds of stream.

use std::time::Duration;

use goop2::modes::loadtest::community::{self, CommunityOptions, Transport};

use crate::support::TestHub;

const PEERS: usize = 40;

async fn run(transport: Transport) -> community::CommunityReport {
    run_joining(transport, 0).await
}

async fn run_joining(transport: Transport, join_rate: u32) -> community::CommunityReport {
    let hub = TestHub::spawn().await;
    community::run(CommunityOptions {
        url: hub.url.clone(),
        peers: PEERS,
        transport,
        duration: Duration::from_secs(4),
        heartbeat: Duration::from_secs(1),
        change_every: Duration::from_secs(2),
        churn_every: Duration::from_secs(3),
        storm: true,
        join_rate,
        hub_pids: vec![std::process::id()],
    })
    .await
    .unwrap()
}

fn check(report: &community::CommunityReport) {
    let text = report.render();
    assert_eq!(report.live, PEERS, "{text}");
    assert!(report.joined.is_some(), "{text}");
    assert_eq!(report.errors, 0, "{text}");
    assert!(report.changes >= PEERS as u64, "{text}");
    assert!(report.timed_changes >= PEERS as u64 / 2, "{text}");
    assert!(report.timed_changes <= report.changes, "{text}");
    // Each timed change reaches the peers online when it is made: most of the community.
    assert!(
        report.receipts >= report.timed_changes * (PEERS as u64 / 2),
        "{text}"
    );
    assert!(
        report.fanout_p50.is_some() && report.fanout_p99 >= report.fanout_p50,
        "{text}"
    );
    assert!(report.churned > 0, "{text}");
    assert!(report.publishes > 10, "{text}");
    assert_eq!(report.storm_back, PEERS, "{text}");
    assert!(report.storm.is_some(), "{text}");
    assert!(report.kib_per_peer().is_some(), "{text}");
    assert!(text.contains("hub memory per live peer: "), "{text}");
    // The community joined in two halves, the hub's memory read after each.
    assert_eq!(report.half_live, PEERS / 2, "{text}");
    assert!(report.added_kib_per_peer().is_some(), "{text}");
    assert!(text.contains("KiB per added peer"), "{text}");
    // The hub (this process, here) was busy while the community was live, and on at most the
    // cores this machine has.
    let share = report.hub_cpu_steady.expect("the hub's CPU time is read");
    let cores = std::thread::available_parallelism().unwrap().get() as f64;
    assert!(share > 0.0 && share <= cores * 1.1, "{text}");
    assert!(text.contains("% of one core"), "{text}");
    // The hub's own count of what it handed to subscribers meanwhile: at least the changes
    // the peers received, each within a bucket of its histogram.
    let fanout = report
        .hub_fanout
        .as_ref()
        .expect("the hub's /metrics is read");
    assert!(fanout.count >= report.receipts / 2, "{text}");
    assert!(fanout.p50 <= fanout.p99 && fanout.p99.is_finite(), "{text}");
    assert!(text.contains("hub's own fan-out"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_community_over_websockets_is_measured_whole() {
    check(&run(Transport::Ws).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_community_over_event_streams_and_posts_is_measured_whole() {
    check(&run(Transport::Sse).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_community_that_joins_at_a_rate_takes_the_time_that_rate_gives() {
    let report = run_joining(Transport::Ws, 20).await;
    check(&report);
    // The last of 40 peers starts 39/20 s after the first.
    let joined = report.joined.expect("joined");
    assert!(
        joined >= Duration::from_millis(1950),
        "joined in {joined:?}: {}",
        report.render()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_community_run_is_bounded() {
    let options = CommunityOptions {
        url: "http://127.0.0.1:1".into(),
        peers: community::MAX_PEERS + 1,
        transport: Transport::Ws,
        duration: Duration::from_secs(1),
        heartbeat: Duration::from_secs(1),
        change_every: Duration::ZERO,
        churn_every: Duration::ZERO,
        storm: false,
        join_rate: 0,
        hub_pids: Vec::new(),
    };
    let error = community::run(options.clone()).await.unwrap_err();
    assert!(
        error.to_string().contains("--community takes 1 to"),
        "{error}"
    );
    let error = community::run(CommunityOptions {
        peers: 1,
        duration: Duration::from_secs(601),
        ..options.clone()
    })
    .await
    .unwrap_err();
    assert!(error.to_string().contains("--duration"), "{error}");
    let error = community::run(CommunityOptions {
        peers: 2000,
        join_rate: 1,
        ..options
    })
    .await
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("--join-rate 1 would take 2000 s"),
        "{error}"
    );
}
