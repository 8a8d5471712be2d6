//! `cargo bench --bench mq -- [--messages N] [--senders S] [--seconds T] [--rate R]`: the message
//! transport and groups, on loopback, in one process.
//!
//! 1. **Direct messages**: S senders on one peer send N acknowledged messages in all to another
//!    (`/goop/mq/1.0.0`, one message at a time per sender); beside them, in the same run, the
//!    same number of no-op data requests (`role`) over `/goop/data/1.0.0` between the same two
//!    nodes — the cheapest request and answer the peer has. msgs/s, p50, p99 and the ratio.
//! 2. **Group fan-out**: a host (the real groups service) with 30, then 100 members (nodes with
//!    the transport that take every message) sends R messages/s for T seconds to its group;
//!    deliveries/s and the relay latency from the host's `send` to each member's receipt
//!    (p50, p99). Each size runs twice: without, then with one member that joined and never
//!    reads its stream; the ratio of deliveries/s says what the stalled member costs the rest.
//!
//! Rate limits of the receivers are lifted: the run measures the path, not the bounds on
//! visitors. Bounded: a fixed number of messages, a fixed time.

mod common;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use common::{measure, request};
use goop2::identity::Keypair;
use goop2::services::blocklist::BlockList;
use goop2::services::data::{DataService, limits::InsertLimits};
use goop2::services::groups::{GroupDirectory, GroupOptions, GroupSetup, Groups, NewGroup};
use goop2::services::mq::{Mq, MqOptions};
use goop2::services::node::budget::{AddressLimits, NodeLimits};
use goop2::services::node::protocols::{Protocols, Served, Session, SessionLimits, mq as wire};
use goop2::services::node::{Node, NodeOptions};
use goop2::services::presence::peer_table::{PeerTable, TableOptions};
use goop2::store::peer::PeerStore;
use serde_json::json;
use tokio::sync::{mpsc, watch};

#[derive(Debug, Parser)]
#[command(name = "cargo bench --bench mq --")]
struct Arguments {
    /// Direct messages in all (100–500,000).
    #[arg(long, default_value_t = 40_000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(100..=500_000))]
    messages: usize,
    /// Concurrent senders (1–64).
    #[arg(long, default_value_t = 8, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64))]
    senders: usize,
    /// Seconds each group run sends (1–60).
    #[arg(long, default_value_t = 5, value_parser = clap::builder::RangedU64ValueParser::<u64>::new().range(1..=60))]
    seconds: u64,
    /// Group messages per second (1–1,000).
    #[arg(long, default_value_t = 100, value_parser = clap::builder::RangedU64ValueParser::<u64>::new().range(1..=1000))]
    rate: u64,
}

fn main() -> anyhow::Result<()> {
    let arguments = common::arguments(Arguments {
        messages: 200,
        senders: 4,
        seconds: 1,
        rate: 20,
    });
    common::runtime()?.block_on(run(arguments))
}

/// The bounds of a benchmark node's transport: no rate limit to speak of, the rest as a peer
/// has them (a member that stops reading fills its queue of 256 and is dropped).
fn unlimited() -> MqOptions {
    MqOptions {
        inbound_per_second: 10_000_000,
        inbound_burst: 10_000_000,
        ..MqOptions::default()
    }
}

fn node_options() -> NodeOptions {
    NodeOptions {
        listen_ip: IpAddr::from([127, 0, 0, 1]),
        listen_port: 0,
        mdns: false,
        mdns_tag: "bench".into(),
        presence_topic: "goop.presence.v1".into(),
        // Every member comes from 127.0.0.1: the host takes them all from that one address.
        limits: NodeLimits {
            per_address: AddressLimits {
                established: 1000,
                pending: 1000,
            },
            ..NodeLimits::default()
        },
        gossip: Default::default(),
        relay: None,
    }
}

/// A node with the transport, served; `served` adds what else it serves.
async fn messenger(
    served: Served,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<(Node, Mq, mpsc::Receiver<Session>)> {
    let mut protocols = Protocols::standard(served);
    // Every member comes from 127.0.0.1: a host takes all their streams from that one address.
    let limits = SessionLimits {
        max_sessions: 1000,
        per_address: 1000,
        ..wire::limits()
    };
    let sessions = protocols.sessions(wire::PROTOCOL, limits);
    let (node, _) = Node::start(Keypair::generate_ed25519(), node_options(), protocols).await?;
    let mq = Mq::new(node.clone(), unlimited(), stop.clone());
    Ok((node, mq, sessions))
}

async fn tcp_addr(node: &Node) -> anyhow::Result<libp2p::Multiaddr> {
    let tcp = node
        .listen_addrs()
        .await?
        .into_iter()
        .find(|a| a.to_string().contains("/tcp/"))
        .context("no TCP listener")?;
    Ok(format!("{tcp}/p2p/{}", node.peer_id()).parse()?)
}

async fn run(arguments: Arguments) -> anyhow::Result<()> {
    let (_stop, stop) = watch::channel(false);
    direct(&arguments, &stop).await?;
    for members in [30, 100] {
        let without = fan_out(&arguments, members, false, &stop).await?;
        let with = fan_out(&arguments, members, true, &stop).await?;
        println!("{}", without.line(&format!("{members} members")));
        println!("{}", with.line(&format!("{members} members + 1 stalled")));
        println!(
            "ratio with / without the stalled member ({members} members): deliveries/s {:.2}, \
             p99 {:.2}",
            with.per_second() / without.per_second(),
            with.p99.as_secs_f64() / without.p99.as_secs_f64(),
        );
    }
    Ok(())
}

/// Direct messages against no-op data requests between the same two nodes.
async fn direct(arguments: &Arguments, stop: &watch::Receiver<bool>) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = PeerStore::open(&dir.path().join("data.db")).await?;
    let (receiver_node, receiver, sessions) = messenger(common::served_nothing(), stop).await?;
    let data = DataService::new(
        store.data(),
        receiver_node.peer_id(),
        watch::channel(String::new()).1,
        Arc::new(|_: &goop2::identity::PeerId| Box::pin(async { None })),
    )
    .with_limits(InsertLimits::unlimited());
    // The data requests go to a node of their own with the same transport stack.
    let (data_node, _, _data_sessions) = messenger(
        Served {
            data: Some(data),
            ..common::served_nothing()
        },
        stop,
    )
    .await?;
    let mut inbox = receiver.subscribe("bench");
    receiver.serve(sessions);
    tokio::spawn(async move {
        while let Some(message) = inbox.recv().await {
            message.reply.accept();
        }
    });
    let (sender_node, sender, _) = messenger(common::served_nothing(), stop).await?;
    let to = receiver.peer_id();
    sender_node.dial(tcp_addr(&receiver_node).await?).await?;
    sender_node.dial(tcp_addr(&data_node).await?).await?;
    let data_peer = data_node.peer_id();
    let payload = json!({"text": "a chat message of ordinary length, about sixty bytes"});
    // Warm up both paths.
    sender.send(to, "bench", payload.clone()).await?;
    let noop = request(json!({"op": "role"}));
    sender_node
        .fetch_data(data_peer, &noop)
        .await?
        .map_err(|e| anyhow::anyhow!("{e}"))?;

    let messages = {
        let sender = sender.clone();
        let payload = payload.clone();
        move || {
            let (sender, payload) = (sender.clone(), payload.clone());
            async move {
                sender.send(to, "bench", payload).await?;
                Ok(())
            }
        }
    };
    let requests = {
        let node = sender_node.clone();
        move || {
            let (node, noop) = (node.clone(), noop.clone());
            async move {
                node.fetch_data(data_peer, &noop)
                    .await?
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                Ok(())
            }
        }
    };
    let (n, s) = (arguments.messages, arguments.senders);
    let mq = measure(n, s, messages).await?;
    let data = measure(n, s, requests).await?;
    println!("{s} concurrent senders");
    println!("{}", mq.line("direct message, acked"));
    println!("{}", data.line("no-op data request"));
    println!(
        "ratio message / data request: {:.2}",
        mq.per_second() / data.per_second()
    );
    Ok(())
}

/// One fan-out run's figures.
struct FanOut {
    /// Members the host dropped because their queue was full.
    dropped: u64,
    deliveries: usize,
    expected: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
}

impl FanOut {
    fn per_second(&self) -> f64 {
        self.deliveries as f64 / self.elapsed.as_secs_f64()
    }

    fn line(&self, name: &str) -> String {
        format!(
            "group fan-out, {name:<26} {:>8.0} deliveries/s ({} of {})   relay p50 {:>6.2} ms   p99 {:>6.2} ms   dropped as slow: {}",
            self.per_second(),
            self.deliveries,
            self.expected,
            self.p50.as_secs_f64() * 1000.0,
            self.p99.as_secs_f64() * 1000.0,
            self.dropped,
        )
    }
}

/// A host with `members` members sends `rate` messages a second for `seconds`.
async fn fan_out(
    arguments: &Arguments,
    members: usize,
    stalled: bool,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<FanOut> {
    let dir = tempfile::tempdir()?;
    let store = PeerStore::open(&dir.path().join("data.db")).await?;
    let (host_node, host_mq, sessions) = messenger(common::served_nothing(), stop).await?;
    let host_addr = tcp_addr(&host_node).await?;
    let groups = Groups::start(
        GroupSetup {
            store: store.groups(),
            mq: host_mq.clone(),
            table: PeerTable::start(
                host_node.peer_id(),
                TableOptions::for_ttl(Duration::from_secs(60)),
            ),
            blocked: BlockList::load(store.chat()).await?,
            options: GroupOptions {
                max_members: 1000,
                // The members do not ping: the run is shorter than this.
                lost_after: Duration::from_secs(600),
                ..GroupOptions::default()
            },
            directory: GroupDirectory::default(),
        },
        stop.clone(),
    )
    .await?;
    host_mq.serve(sessions);
    groups
        .create(NewGroup {
            id: Some("bench".into()),
            name: "bench".into(),
            ..NewGroup::default()
        })
        .await?;

    // Members: nodes that take every message, noting when each relayed one arrived.
    let (latencies_tx, mut latencies) = mpsc::unbounded_channel::<Duration>();
    let started = Instant::now();
    let mut keep = Vec::new();
    for _ in 0..members {
        let (node, mq, sessions) = messenger(common::served_nothing(), stop).await?;
        let mut inbox = mq.subscribe("group:*");
        mq.serve(sessions);
        let latencies = latencies_tx.clone();
        tokio::spawn(async move {
            while let Some(message) = inbox.recv().await {
                if message.topic.ends_with(":msg")
                    && let Some(sent) = message.payload["payload"]["t"].as_u64()
                {
                    let now = started.elapsed().as_micros() as u64;
                    let _ = latencies.send(Duration::from_micros(now.saturating_sub(sent)));
                }
                message.reply.accept();
            }
        });
        // Members a host meets are vouched for (a hub, the LAN), not strangers.
        host_node.vouch(node.peer_id(), Vec::new()).await?;
        node.dial(host_addr.clone()).await?;
        mq.send(host_node.peer_id(), "group:bench:join", json!({}))
            .await?;
        keep.push((node, mq));
    }
    drop(latencies_tx);
    if stalled {
        // Takes the streams the host opens, never reads them.
        let mut protocols = Protocols::new();
        let never_read = protocols.sessions(wire::PROTOCOL, wire::limits());
        let (node, _) = Node::start(Keypair::generate_ed25519(), node_options(), protocols).await?;
        let mq = Mq::new(node.clone(), unlimited(), stop.clone());
        host_node.vouch(node.peer_id(), Vec::new()).await?;
        node.dial(host_addr.clone()).await?;
        mq.send(host_node.peer_id(), "group:bench:join", json!({}))
            .await?;
        keep.push((node, mq));
        std::mem::forget(never_read);
    }
    // Let the welcomes and member lists settle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    while latencies.try_recv().is_ok() {}

    let total = (arguments.rate * arguments.seconds) as usize;
    let every = Duration::from_secs(1) / arguments.rate as u32;
    let me = groups.peer_id();
    let began = Instant::now();
    let mut tick = tokio::time::interval(every);
    for _ in 0..total {
        tick.tick().await;
        let t = started.elapsed().as_micros() as u64;
        groups.send(me, "bench", json!({ "t": t })).await?;
    }
    let expected = total * members;
    let mut seen = Vec::with_capacity(expected);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.len() < expected {
        match tokio::time::timeout_at(deadline, latencies.recv()).await {
            Ok(Some(latency)) => seen.push(latency),
            _ => break,
        }
    }
    let elapsed = began.elapsed();
    seen.sort_unstable();
    let at = |q: f64| {
        seen.get(((seen.len() as f64 * q) as usize).min(seen.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Ok(FanOut {
        dropped: groups.stats().await.dropped_slow,
        deliveries: seen.len(),
        expected,
        elapsed,
        p50: at(0.50),
        p99: at(0.99),
    })
}
