//! What the benchmarks share: their command line, their runtime, two connected nodes on
//! loopback, and the timing of concurrent callers.
//!
//! A benchmark runs with `cargo bench --bench NAME -- [options]`, and cargo adds `--bench` to the
//! arguments. Started without it — `cargo test --benches` or `--all-targets` runs a benchmark's
//! `main` too, in a debug build, with that test run's filters as arguments — a benchmark ignores
//! its arguments and runs once at a small size, as a check that it still works.

// Each benchmark is its own crate and uses part of this module.
#![allow(dead_code)]

use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use goop2::identity::Keypair;
use goop2::services::data::DataRequest;
use goop2::services::node::protocols::Served;
use goop2::services::node::{Node, NodeOptions};
use tokio::sync::watch;

/// The options after `--` of `cargo bench`, or `quick` when cargo did not start a benchmark
/// run.
pub fn arguments<A: clap::Parser>(quick: A) -> A {
    let arguments: Vec<String> = std::env::args().collect();
    if arguments.iter().skip(1).any(|a| a == "--bench") {
        A::parse_from(arguments.into_iter().filter(|a| a != "--bench"))
    } else {
        eprintln!(
            "not started by `cargo bench`: one small run, as a check that it works \
             (its figures measure nothing)"
        );
        quick
    }
}

/// The runtime `goop2` runs its modes on: multi-threaded, a worker per core.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// What a benchmark node serves by default: nothing but a label.
pub fn served_nothing() -> Served {
    Served {
        site: None,
        label: watch::channel(String::from("bench")).1,
        avatar: None,
        data: None,
    }
}

/// Two nodes on 127.0.0.1 (no mDNS), the client already connected to the server.
pub async fn local_pair(server_key: Keypair, served: Served) -> anyhow::Result<(Node, Node)> {
    let options = NodeOptions {
        listen_ip: IpAddr::from([127, 0, 0, 1]),
        listen_port: 0,
        mdns: false,
        mdns_tag: "bench".into(),
        presence_topic: "goop.presence.v1".into(),
        limits: Default::default(),
        gossip: Default::default(),
        relay: None,
    };
    // The nodes live as long as their handles; their events are not needed.
    let (server, _) = Node::start(server_key, options.clone(), served).await?;
    let (client, _) = Node::start(Keypair::generate_ed25519(), options, served_nothing()).await?;
    let tcp_addr = server
        .listen_addrs()
        .await?
        .into_iter()
        .find(|a| a.to_string().contains("/tcp/"))
        .context("no TCP listener")?;
    client
        .dial(format!("{tcp_addr}/p2p/{}", server.peer_id()).parse()?)
        .await?;
    Ok((server, client))
}

/// A data request written as JSON.
pub fn request(value: serde_json::Value) -> DataRequest {
    serde_json::from_value(value).expect("a well-formed benchmark request")
}

/// One workload's figures.
#[derive(Debug, Clone)]
pub struct Figures {
    pub ops: usize,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
}

impl Figures {
    pub fn per_second(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    /// The workload's line of a report.
    pub fn line(&self, name: &str) -> String {
        format!(
            "{name:<28} {:>9.0} ops/s   p50 {:>7.2} ms   p99 {:>7.2} ms",
            self.per_second(),
            self.p50.as_secs_f64() * 1000.0,
            self.p99.as_secs_f64() * 1000.0
        )
    }
}

/// Runs `ops` calls of `op` spread over `callers` tasks, each making its share one after another;
/// the latency of each call. The first failed call fails the run.
pub async fn measure<F, Fut>(ops: usize, callers: usize, op: F) -> anyhow::Result<Figures>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let started = Instant::now();
    let mut tasks = Vec::new();
    for caller in 0..callers {
        let share = ops / callers + usize::from(caller < ops % callers);
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(share);
            for _ in 0..share {
                let begun = Instant::now();
                op().await?;
                latencies.push(begun.elapsed());
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(ops);
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Ok(Figures {
        ops,
        elapsed,
        p50: at(0.50),
        p99: at(0.99),
    })
}
