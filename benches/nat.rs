//! NAT traversal, across simulated home routers (network namespaces and nftables, as the
//! `nat::` tests build them; run as root): how fast one peer's console loads a file of another
//! peer's site over a direct connection (two hosts on the public network, no NAT), a
//! hole-punched one (two homes behind cone NATs, after DCUtR) and a relayed one (two homes
//! behind symmetric NATs, through the hub's circuit relay, whose byte budget is raised for the
//! run) — side by side in one run — and how long two NATed peers take from starting to their
//! first direct connection.
//!
//! `cargo bench --bench nat -- [--size-kib 1024] [--fetches 20]`

#[path = "../tests/it/support/netns_world.rs"]
mod netns_world;

mod common;

use std::time::{Duration, Instant};

use clap::Parser;
use netns_world::{
    CONSOLE, Nat, STEP, get_in, hub_dir, network, run_hub, start_peer_in, wait_for_site,
    wait_until, world,
};

/// Site file loads across a direct, a hole-punched and a relayed connection, in one run.
#[derive(Debug, Parser)]
#[command(name = "cargo bench --bench nat --")]
struct Arguments {
    /// The file's size in KiB.
    #[arg(long, default_value_t = 1024, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=16384))]
    size_kib: usize,
    /// Loads per connection kind.
    #[arg(long, default_value_t = 20, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1000))]
    fetches: usize,
}

/// Loads `url` `count` times from inside `ns`, one after another, with one client; each
/// load's time. Panics on anything but a whole file.
fn load(ns: &str, url: String, count: usize, size: usize) -> Vec<Duration> {
    netns_world::block_on_in(ns, move || async move {
        let client = reqwest::Client::new();
        let mut times = Vec::with_capacity(count);
        for _ in 0..count {
            let started = Instant::now();
            let response = client
                .get(&url)
                .timeout(Duration::from_secs(120))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{url}");
            let body = response.bytes().await.unwrap();
            assert_eq!(body.len(), size, "{url}");
            times.push(started.elapsed());
        }
        times
    })
}

/// One connection kind's figures.
struct Figures {
    kind: &'static str,
    mib_per_s: f64,
    p50_ms: f64,
    max_ms: f64,
}

fn figures(kind: &'static str, mut times: Vec<Duration>, size: usize) -> Figures {
    let total: f64 = times.iter().map(Duration::as_secs_f64).sum();
    times.sort();
    Figures {
        kind,
        mib_per_s: (size * times.len()) as f64 / (1024.0 * 1024.0) / total,
        p50_ms: times[times.len() / 2].as_secs_f64() * 1e3,
        max_ms: times[times.len() - 1].as_secs_f64() * 1e3,
    }
}

/// Writes the site file `big.bin` of `size` bytes into a peer's site.
fn big_file(dir: &tempfile::TempDir, size: usize) {
    let bytes: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(dir.path().join("site/big.bin"), bytes).unwrap();
}

/// The transports of the connections the console in `ns` holds to `peer`, as its peer page
/// lists them (`quic-v1`, `tcp`; a circuit: `p2p-circuit` or `relay`).
fn transports(ns: &str, peer: &str) -> String {
    let (_, page) = get_in(ns, &format!("/peer/{peer}"));
    let listed = page
        .split(r#"id="connected-via">"#)
        .nth(1)
        .and_then(|rest| rest.split("</dd>").next())
        .unwrap_or_default();
    let mut kinds: Vec<&str> = ["quic-v1", "tcp", "p2p-circuit"]
        .into_iter()
        .filter(|kind| listed.contains(&format!("/{kind}")))
        .collect();
    if kinds.is_empty() {
        // The side a circuit came in on knows only the relay's ID.
        kinds.push("relay");
    }
    kinds.join("+")
}

/// Waits until the console in `ns` reaches `peer` the way `kind` says.
fn wait_for_link(ns: &str, peer: &str, kind: &str) {
    wait_until(
        STEP,
        &format!("a {kind} connection to {peer}"),
        || (network(ns)["links"][peer] == kind).then_some(()),
        || network(ns).to_string(),
    );
}

fn main() {
    let arguments = common::arguments(Arguments {
        size_kib: 64,
        fetches: 2,
    });
    let size = arguments.size_kib * 1024;
    let fetches = arguments.fetches;
    let url = |peer: &str| format!("{CONSOLE}/p/{peer}/big.bin");

    // Cone NATs and two open hosts: the hole-punched and direct cases, and the time to the
    // first direct connection.
    let cone = world(Nat::Cone, 2);
    let hub_cone_dir = hub_dir(1024 * 1024 * 1024);
    let _hub_cone = run_hub(&cone, &hub_cone_dir);
    let started = Instant::now();
    let (_ann_dir, _ann, _) = start_peer_in(&cone.homes[0], "Ann", "Ann's kitchen");
    let (bea_dir, _bea, bea) = start_peer_in(&cone.homes[1], "Bea", "Bea's garden");
    wait_for_link(&cone.homes[0], &bea, "hole-punched");
    let to_direct = started.elapsed();
    big_file(&bea_dir, size);
    let (_cid_dir, _cid, _) = start_peer_in(&cone.open[0], "Cid", "Cid's porch");
    let (dot_dir, _dot, dot) = start_peer_in(&cone.open[1], "Dot", "Dot's attic");
    big_file(&dot_dir, size);
    wait_for_site(&cone.open[0], &dot, "Dot's attic");
    wait_for_link(&cone.open[0], &dot, "direct");

    // Symmetric NATs: the relayed case.
    let symmetric = world(Nat::Symmetric, 0);
    let hub_symmetric_dir = hub_dir(1024 * 1024 * 1024);
    let _hub_symmetric = run_hub(&symmetric, &hub_symmetric_dir);
    let (_eve_dir, _eve, _) = start_peer_in(&symmetric.homes[0], "Eve", "Eve's shed");
    let (fay_dir, _fay, fay) = start_peer_in(&symmetric.homes[1], "Fay", "Fay's loft");
    big_file(&fay_dir, size);
    wait_for_site(&symmetric.homes[0], &fay, "Fay's loft");
    wait_for_link(&symmetric.homes[0], &fay, "relayed");

    // Side by side: a warm-up load each, then the kinds in turn, twice, so that neither runs
    // only while the machine is busy.
    let cases: [(&'static str, &str, String); 3] = [
        ("direct", &cone.open[0], url(&dot)),
        ("hole-punched", &cone.homes[0], url(&bea)),
        ("relayed", &symmetric.homes[0], url(&fay)),
    ];
    let over = [
        transports(&cone.open[0], &dot),
        transports(&cone.homes[0], &bea),
        transports(&symmetric.homes[0], &fay),
    ];
    let mut times: [Vec<Duration>; 3] = Default::default();
    for (_, ns, url) in &cases {
        load(ns, url.clone(), 1, size);
    }
    for half in [fetches / 2, fetches - fetches / 2] {
        for (i, (_, ns, url)) in cases.iter().enumerate() {
            times[i].extend(load(ns, url.clone(), half, size));
        }
    }
    // Still the kind each was measured as.
    wait_for_link(&cone.homes[0], &bea, "hole-punched");
    wait_for_link(&symmetric.homes[0], &fay, "relayed");

    let results: Vec<Figures> = cases
        .iter()
        .zip(times)
        .map(|((kind, ..), times)| figures(kind, times, size))
        .collect();
    println!(
        "site file of {} KiB, {fetches} loads per kind through a peer's console:",
        arguments.size_kib
    );
    for (f, over) in results.iter().zip(&over) {
        println!(
            "  {:<13} {:<12} {:>8.1} MiB/s   p50 {:>7.1} ms   max {:>7.1} ms   ratio to direct {:.2}",
            f.kind,
            over,
            f.mib_per_s,
            f.p50_ms,
            f.max_ms,
            f.mib_per_s / results[0].mib_per_s
        );
    }
    println!(
        "two peers behind cone NATs, from starting to a hole-punched connection: {:.1} s",
        to_direct.as_secs_f64()
    );
}
