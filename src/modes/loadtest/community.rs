//! `goop2 loadtest <hub> --community N`: a hub under the load a real community puts on it. N
//! simulated peers each hold the stream our peers hold — a WebSocket carrying both ways, or an
//! event stream (`?changes=1`) plus `POST /publish` — publish signed `online`, an `update` every
//! heartbeat, change their label now and then, and leave and come back (churn). A prober
//! publishes beside them to time `/publish` under that load. At the end, optionally, every
//! peer drops its connection at once and comes back (a reconnect storm).
//!
//! Reported: hub memory per live peer (in all, and what each peer added: the community joins in
//! two halves and the hub's anonymous memory is read after each), publish p50/p99, the delay
//! from a label change to each peer that was live to receive it (p50/p99; changes made once the
//! whole community is online), the hub's CPU meanwhile, the storm's length, and errors by kind.
//! Bounded in peers and time; it stops by itself.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use futures_util::{SinkExt, StreamExt};
use libp2p_identity::Keypair;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::services::hub::presence::{Presence, PresenceType};
use crate::services::hub::unix_ms;

/// Hard bounds, whatever the command line says.
pub const MAX_PEERS: usize = 20_000;
pub const MAX_DURATION: Duration = Duration::from_secs(600);
/// Longest time `--join-rate` may spread the community's joining over.
pub const MAX_JOIN_SPREAD: Duration = Duration::from_secs(1800);
/// How long every peer has to connect and say `online`: this, and [`CONNECT_WAIT_PER_PEER`]
/// more for each peer (every peer that joins is sent every peer already online).
const CONNECT_WAIT: Duration = Duration::from_secs(60);
const CONNECT_WAIT_PER_PEER: Duration = Duration::from_millis(40);
/// How long the peers have, all together, to say `offline` and stop at the end.
const FINISH_WAIT: Duration = Duration::from_secs(20);
/// How long a reconnect storm may take before it is reported unfinished.
const STORM_WAIT: Duration = Duration::from_secs(120);
/// The prober's publishes, one every this long, from this many addresses in turn.
const PROBE_EVERY: Duration = Duration::from_millis(100);
const PROBE_ADDRESSES: usize = 20;
/// Label changes remembered for fan-out timing.
const MAX_CHANGES: usize = 1 << 20;
/// Delay histogram: 100 µs buckets up to 30 s.
const BUCKET_MICROS: u64 = 100;
const BUCKETS: usize = 300_000;

/// How simulated peers reach the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// `/ws`: publishes and events on one WebSocket, as our peers connect first.
    Ws,
    /// `/events?changes=1` plus `POST /publish`: the fallback.
    Sse,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct CommunityOptions {
    pub url: String,
    pub peers: usize,
    pub transport: Transport,
    pub duration: Duration,
    pub heartbeat: Duration,
    /// Mean time between one peer's label changes.
    pub change_every: Duration,
    /// Mean time between one peer leaving and coming back.
    pub churn_every: Duration,
    /// End with a reconnect storm.
    pub storm: bool,
    /// Peers that start joining each second (0: as fast as the hub accepts them). A community
    /// grows over time; joined all at once, the snapshots every newcomer reads (each as long as
    /// the community so far) arrive together.
    pub join_rate: u32,
    /// Read the hub's resident memory from `/proc/<pid>/status` (several: the instances of
    /// one hub, their memory added up).
    pub hub_pids: Vec<u32>,
}

/// What was measured.
#[derive(Debug, Clone, Default)]
pub struct CommunityReport {
    pub peers: usize,
    /// Peers online with their stream open once all had connected.
    pub live: usize,
    pub hub_rss_before_kib: Option<u64>,
    pub hub_rss_live_kib: Option<u64>,
    pub hub_rss_end_kib: Option<u64>,
    /// From the first peer connecting to the last having read its snapshot (`None`: not all
    /// did within the time allowed).
    pub joined: Option<Duration>,
    /// Peers live, and the hub's anonymous memory, once the first half had joined.
    pub half_live: usize,
    pub hub_anon_half_kib: Option<u64>,
    /// The hub's anonymous memory once every peer had joined.
    pub hub_anon_live_kib: Option<u64>,
    pub publishes: u64,
    pub publish_p50: Option<Duration>,
    pub publish_p99: Option<Duration>,
    pub changes: u64,
    /// Label changes made once the whole community was online: those whose delivery is timed.
    pub timed_changes: u64,
    /// Timed label changes received, all peers together.
    pub receipts: u64,
    pub fanout_p50: Option<Duration>,
    pub fanout_p99: Option<Duration>,
    /// The hub's CPU time while the whole community was live (heartbeats, changes, the
    /// prober), per second: 1.0 is one core kept busy.
    pub hub_cpu_steady: Option<f64>,
    /// The hub's own fan-out over the same time, from its `/metrics` (one instance: the one
    /// the URL reaches).
    pub hub_fanout: Option<HubFanout>,
    pub churned: u64,
    /// From every peer dropping its connection to the last one seen online again.
    pub storm: Option<Duration>,
    /// Peers back at the end of the storm's wait (all of them when it finished).
    pub storm_back: usize,
    /// Reconnects that resumed where they were cut, and those the hub reset (a whole snapshot).
    pub resumed: u64,
    pub resets: u64,
    /// Errors of all kinds, and how many of each.
    pub errors: u64,
    /// Indexed by [`Failure`].
    pub failures: [u64; Failure::ALL.len()],
}

/// What went wrong for a simulated peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Its stream could not be opened (connection, upgrade or `/events` answer).
    Connect,
    /// A publish was not accepted (a `POST /publish` not answered 204, or a WebSocket send
    /// that failed).
    Publish,
    /// The hub sent an error frame on the WebSocket for a publish.
    Refused,
    /// Its stream ended without the run asking: the hub cut it off (for falling behind, say),
    /// closed it, or went away.
    Lost,
    /// It had not stopped when the run ended.
    NotStopped,
}

/// How many errors of each kind, as the report says them after the total (nothing when there
/// were none).
fn by_kind(failures: &[u64; Failure::ALL.len()]) -> String {
    if failures.iter().all(|&n| n == 0) {
        return String::new();
    }
    let kinds: Vec<String> = Failure::ALL
        .iter()
        .zip(failures)
        .map(|(failure, n)| format!("{} {n}", failure.label()))
        .collect();
    format!(" ({})", kinds.join(", "))
}

impl Failure {
    pub const ALL: [Failure; 5] = [
        Failure::Connect,
        Failure::Publish,
        Failure::Refused,
        Failure::Lost,
        Failure::NotStopped,
    ];

    fn label(self) -> &'static str {
        match self {
            Failure::Connect => "connect",
            Failure::Publish => "publish",
            Failure::Refused => "refused",
            Failure::Lost => "stream lost",
            Failure::NotStopped => "not stopped",
        }
    }
}

impl CommunityReport {
    /// Hub memory per live peer, in KiB.
    pub fn kib_per_peer(&self) -> Option<f64> {
        let (before, live) = (self.hub_rss_before_kib?, self.hub_rss_live_kib?);
        (self.live > 0).then(|| (live as f64 - before as f64) / self.live as f64)
    }

    /// What each peer of the second half added to the hub's anonymous memory, in KiB: the cost
    /// of one more live peer, without what the hub holds whatever the community's size (its
    /// code pages, its replay ring).
    pub fn added_kib_per_peer(&self) -> Option<f64> {
        let (half, live) = (self.hub_anon_half_kib?, self.hub_anon_live_kib?);
        let added = self.live.checked_sub(self.half_live).filter(|&n| n > 0)?;
        Some((live as f64 - half as f64) / added as f64)
    }

    /// The report as the command prints it.
    pub fn render(&self) -> String {
        let ms = |d: Option<Duration>| {
            d.map_or("n/a".to_owned(), |d| {
                format!("{:.2} ms", d.as_secs_f64() * 1000.0)
            })
        };
        let mut out = format!(
            "community: {} peers, {} live; {}\n\
             publish latency (prober, under load): p50 {}, p99 {} ({} publishes)\n\
             label changes: {} sent, {} once all were live, {} receipts of those; \
             change to peer: p50 {}, p99 {}\n\
             churn: {} peers left and came back\n\
             reconnects: {} resumed, {} reset (sent a whole snapshot)\n\
             errors: {}{}\n",
            self.peers,
            self.live,
            self.joined
                .map_or("not all had read their snapshot in time".to_owned(), |d| {
                    format!(
                        "all joined and read their snapshot in {:.2} s",
                        d.as_secs_f64()
                    )
                }),
            ms(self.publish_p50),
            ms(self.publish_p99),
            self.publishes,
            self.changes,
            self.timed_changes,
            self.receipts,
            ms(self.fanout_p50),
            ms(self.fanout_p99),
            self.churned,
            self.resumed,
            self.resets,
            self.errors,
            by_kind(&self.failures),
        );
        if let (Some(before), Some(live), Some(end)) = (
            self.hub_rss_before_kib,
            self.hub_rss_live_kib,
            self.hub_rss_end_kib,
        ) {
            out += &format!(
                "hub RSS: {before} KiB before, {live} KiB with every peer live, {end} KiB at the end\n"
            );
            if let Some(per) = self.kib_per_peer() {
                out += &format!("hub memory per live peer: {per:.2} KiB\n");
            }
        }
        if let Some(share) = self.hub_cpu_steady {
            out += &format!(
                "hub CPU while every peer was live: {:.1} % of one core\n",
                share * 100.0
            );
        }
        if let Some(fanout) = &self.hub_fanout {
            let bound = |seconds: f64| {
                if seconds.is_finite() {
                    format!("≤ {:.0} ms", seconds * 1000.0)
                } else {
                    "over the largest bucket".to_owned()
                }
            };
            out += &format!(
                "hub's own fan-out while every peer was live (publish accepted to event handed \
                 to the socket, its /metrics): p50 {}, p99 {} ({} events handed)\n",
                bound(fanout.p50),
                bound(fanout.p99),
                fanout.count
            );
        }
        if let (Some(half), Some(live), Some(added)) = (
            self.hub_anon_half_kib,
            self.hub_anon_live_kib,
            self.added_kib_per_peer(),
        ) {
            out += &format!(
                "hub anonymous memory: {half} KiB with {} peers live, {live} KiB with {}: \
                 {added:.2} KiB per added peer\n",
                self.half_live, self.live
            );
        }
        match self.storm {
            Some(storm) => {
                out += &format!(
                    "reconnect storm: all {} peers back in {:.2} s\n",
                    self.storm_back,
                    storm.as_secs_f64()
                )
            }
            None if self.storm_back > 0 => {
                out += &format!(
                    "reconnect storm: only {} of {} peers back within {} s\n",
                    self.storm_back,
                    self.live,
                    STORM_WAIT.as_secs()
                )
            }
            None => {}
        }
        out
    }
}

/// Shared bookkeeping.
struct Ledger {
    start: Instant,
    /// Microseconds after `start` when change `n` was published (0: not yet).
    changes: Vec<AtomicU64>,
    next_change: AtomicU64,
    timed_changes: AtomicU64,
    /// Change-to-peer delays.
    delays: Histogram,
    /// Microseconds after `start` from which changes are timed (0: not yet): once the whole
    /// community is online, so that what is timed is fan-out, not the joining.
    steady_from: AtomicU64,
    receipts: AtomicU64,
    /// Peers online with an open stream.
    live: AtomicU64,
    /// Peers that have read all their first stream started with (the snapshot).
    caught_up: AtomicU64,
    churned: AtomicU64,
    /// Errors by [`Failure`].
    errors: [AtomicU64; Failure::ALL.len()],
    resumed: AtomicU64,
    resets: AtomicU64,
    /// Peers seen online again since the storm began, one flag each.
    back: Vec<AtomicU64>,
    back_count: AtomicU64,
}

impl Ledger {
    fn micros(&self) -> u64 {
        self.start.elapsed().as_micros() as u64 + 1
    }

    fn error(&self, failure: Failure) {
        self.errors[failure as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Reads label markers in `bytes`, heard on a link whose snapshot was all read at `since`
    /// (`None` while it is still being read): changes (`lc <n>`) made since then, and once the
    /// community was all online, are timed — older ones came in the snapshot, a replay, or
    /// queued behind them, which is the cost of connecting and is what the storm measures — and
    /// storm returns (`ls <i>`) counted. A change is timed at its first receipt on a link
    /// (`timed` holds those): the label stays in what its peer sends later — a return after
    /// churn, a departure — which is not the change arriving.
    fn observe(&self, bytes: &[u8], since: Option<u64>, timed: &mut HashSet<usize>) {
        let now = self.micros();
        if memchr::memmem::find(bytes, b"event: reset\n").is_some()
            || bytes.starts_with(br#"{"type":"reset"}"#)
        {
            self.resets.fetch_add(1, Ordering::Relaxed);
        }
        // The hub refused a publish sent over the WebSocket.
        if bytes.starts_with(b"{\"error\"") {
            self.error(Failure::Refused);
            return;
        }
        let steady = self.steady_from.load(Ordering::Relaxed);
        for n in numbers_after(bytes, b"\"content\":\"lc ") {
            if let Some(since) = since
                && let Some(sent) = self.changes.get(n).map(|s| s.load(Ordering::Relaxed))
                && sent >= since
                && sent > 0
                && steady > 0
                && sent >= steady
                && timed.insert(n)
            {
                self.delays.record(now.saturating_sub(sent));
                self.receipts.fetch_add(1, Ordering::Relaxed);
            }
        }
        for index in numbers_after(bytes, b"\"content\":\"ls ") {
            if let Some(flag) = self.back.get(index)
                && flag.swap(1, Ordering::Relaxed) == 0
            {
                self.back_count.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A lock-free histogram of delays.
struct Histogram(Vec<AtomicU64>);

impl Histogram {
    fn new() -> Self {
        Histogram((0..BUCKETS).map(|_| AtomicU64::new(0)).collect())
    }

    fn record(&self, micros: u64) {
        let bucket = ((micros / BUCKET_MICROS) as usize).min(BUCKETS - 1);
        self.0[bucket].fetch_add(1, Ordering::Relaxed);
    }

    fn percentile(&self, q: f64) -> Option<Duration> {
        let counts: Vec<u64> = self.0.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let wanted = ((total as f64 * q).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (bucket, count) in counts.iter().enumerate() {
            seen += count;
            if seen >= wanted {
                return Some(Duration::from_micros((bucket as u64 + 1) * BUCKET_MICROS));
            }
        }
        None
    }
}

/// The numbers that follow each `marker` in `bytes`.
fn numbers_after<'a>(bytes: &'a [u8], marker: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    let mut from = 0;
    std::iter::from_fn(move || {
        loop {
            // Every frame every peer reads is searched: a naive window scan here cost the tool
            // as much as reading the frame.
            let at = memchr::memmem::find(&bytes[from..], marker)?;
            let start = from + at + marker.len();
            let end = bytes[start..]
                .iter()
                .position(|b| !b.is_ascii_digit())
                .map_or(bytes.len(), |p| start + p);
            from = end;
            if let Ok(n) = std::str::from_utf8(&bytes[start..end])
                .unwrap_or("")
                .parse()
            {
                return Some(n);
            }
        }
    })
}

/// What each simulated peer is told about the run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// Heartbeats, changes and churn.
    Running,
    /// Drop the connection now and come back at once.
    Storm,
    /// Say `offline` and stop.
    Done,
}

/// Runs the community and returns the measurements.
pub async fn run(options: CommunityOptions) -> anyhow::Result<CommunityReport> {
    if options.peers == 0 || options.peers > MAX_PEERS {
        bail!("--community takes 1 to {MAX_PEERS} peers");
    }
    if options.duration.is_zero() || options.duration > MAX_DURATION {
        bail!(
            "--duration must be between 1 and {} s",
            MAX_DURATION.as_secs()
        );
    }
    if options.heartbeat.is_zero() {
        bail!("--heartbeat must be at least 1 s");
    }
    let spread = match options.join_rate {
        0 => Duration::ZERO,
        rate => Duration::from_secs_f64(options.peers as f64 / f64::from(rate)),
    };
    if spread > MAX_JOIN_SPREAD {
        bail!(
            "--join-rate {} would take {} s to join {} peers; at most {} s are allowed",
            options.join_rate,
            spread.as_secs(),
            options.peers,
            MAX_JOIN_SPREAD.as_secs()
        );
    }
    let (hub, hub_ip) = super::hub_address(&options.url)?;
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let ledger = Arc::new(Ledger {
        start: Instant::now(),
        changes: (0..MAX_CHANGES).map(|_| AtomicU64::new(0)).collect(),
        next_change: AtomicU64::new(0),
        timed_changes: AtomicU64::new(0),
        delays: Histogram::new(),
        steady_from: AtomicU64::new(0),
        receipts: AtomicU64::new(0),
        live: AtomicU64::new(0),
        caught_up: AtomicU64::new(0),
        churned: AtomicU64::new(0),
        errors: Default::default(),
        resumed: AtomicU64::new(0),
        resets: AtomicU64::new(0),
        back: (0..options.peers).map(|_| AtomicU64::new(0)).collect(),
        back_count: AtomicU64::new(0),
    });
    let hub_rss_before_kib = super::rss_kib(&options.hub_pids);
    let (phase_tx, phase) = watch::channel(Phase::Running);
    let mut peers = Vec::with_capacity(options.peers);
    let began = Instant::now();
    let deadline =
        Instant::now() + CONNECT_WAIT + CONNECT_WAIT_PER_PEER * options.peers as u32 + spread;
    // The community joins in two halves; the hub's memory is read after each.
    let half = options.peers / 2;
    let mut half_live = 0;
    let mut hub_anon_half_kib = None;
    for index in 0..options.peers {
        if index == half && half > 0 {
            half_live = settle(&ledger, half, deadline).await.0;
            hub_anon_half_kib = super::anon_kib(&options.hub_pids);
        }
        let peer = SimulatedPeer {
            index,
            keypair: Keypair::generate_ed25519(),
            hub,
            // Every peer its own address, as in a real community (the hub's per-address
            // limits are for crowds behind one address).
            source: super::source_address(hub_ip, index),
            options: options.clone(),
            ledger: ledger.clone(),
            last_ts: 0,
            position: None,
            caught_up: false,
        };
        peers.push(tokio::spawn(peer.run(phase.clone())));
        if options.join_rate > 0 {
            let due = index as f64 / f64::from(options.join_rate);
            tokio::time::sleep_until((began + Duration::from_secs_f64(due)).into()).await;
        } else if index % 250 == 249 {
            // Let the accept queue drain.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let (live, caught_up) = settle(&ledger, options.peers, deadline).await;
    let joined = caught_up.map(|at| at.duration_since(began));
    let hub_rss_live_kib = super::rss_kib(&options.hub_pids);
    let hub_anon_live_kib = super::anon_kib(&options.hub_pids);
    ledger.steady_from.store(ledger.micros(), Ordering::Relaxed);
    let (steady_began, hub_cpu_began) = (Instant::now(), super::cpu_seconds(&options.hub_pids));
    let fanout_began = hub_fanout_buckets(hub).await;

    let probe_sources = (0..PROBE_ADDRESSES)
        .map(|k| super::source_address(hub_ip, options.peers + k))
        .collect();
    // The prober has a thread and a runtime of its own: its timings are the hub's answers,
    // not waits behind the thousands of simulated peers this process also runs.
    let duration = options.duration;
    let prober = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map(|runtime| runtime.block_on(probe(hub, probe_sources, duration)))
            .unwrap_or_default()
    });
    tokio::time::sleep(options.duration).await;
    let hub_cpu_steady = super::cpu_seconds(&options.hub_pids)
        .zip(hub_cpu_began)
        .map(|(end, began)| (end - began) / steady_began.elapsed().as_secs_f64());
    let hub_fanout = match (fanout_began, hub_fanout_buckets(hub).await) {
        (Some(began), Some(end)) => HubFanout::between(&began, &end),
        _ => None,
    };
    let latencies = tokio::task::spawn_blocking(move || prober.join().unwrap_or_default())
        .await
        .unwrap_or_default();

    let (mut storm, mut storm_back) = (None, 0);
    if options.storm {
        let began = Instant::now();
        phase_tx.send_replace(Phase::Storm);
        let deadline = began + STORM_WAIT;
        while (ledger.back_count.load(Ordering::Relaxed) as usize) < live
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        storm_back = ledger.back_count.load(Ordering::Relaxed) as usize;
        if storm_back >= live {
            storm = Some(began.elapsed());
        }
    }
    let hub_rss_end_kib = super::rss_kib(&options.hub_pids);
    phase_tx.send_replace(Phase::Done);
    // Peers say `offline` and stop; those that have not within the bound (all of them
    // together, not each) are stopped and counted as errors.
    let finish_by = tokio::time::Instant::now() + FINISH_WAIT;
    for mut peer in peers {
        if tokio::time::timeout_at(finish_by, &mut peer).await.is_err() {
            peer.abort();
            ledger.error(Failure::NotStopped);
        }
    }
    let mut sorted = latencies;
    sorted.sort_unstable();
    Ok(CommunityReport {
        peers: options.peers,
        live,
        hub_rss_before_kib,
        hub_rss_live_kib,
        hub_rss_end_kib,
        joined,
        half_live,
        hub_anon_half_kib,
        hub_anon_live_kib,
        publishes: sorted.len() as u64,
        publish_p50: super::percentile(&sorted, 0.50),
        publish_p99: super::percentile(&sorted, 0.99),
        changes: ledger.next_change.load(Ordering::Relaxed),
        timed_changes: ledger.timed_changes.load(Ordering::Relaxed),
        receipts: ledger.receipts.load(Ordering::Relaxed),
        fanout_p50: ledger.delays.percentile(0.50),
        fanout_p99: ledger.delays.percentile(0.99),
        hub_cpu_steady,
        hub_fanout,
        churned: ledger.churned.load(Ordering::Relaxed),
        storm,
        storm_back,
        resumed: ledger
            .resumed
            .load(Ordering::Relaxed)
            .saturating_sub(ledger.resets.load(Ordering::Relaxed)),
        resets: ledger.resets.load(Ordering::Relaxed),
        errors: ledger
            .errors
            .iter()
            .map(|e| e.load(Ordering::Relaxed))
            .sum(),
        failures: Failure::ALL.map(|f| ledger.errors[f as usize].load(Ordering::Relaxed)),
    })
}

/// What the hub's fan-out histogram counted over a while: how many events it handed to
/// subscribers, and the upper bounds (seconds; infinite past the largest bucket) of the buckets
/// that hold the median and the 99th percentile.
#[derive(Debug, Clone, PartialEq)]
pub struct HubFanout {
    pub count: u64,
    pub p50: f64,
    pub p99: f64,
}

impl HubFanout {
    /// From two readings of the cumulative buckets; `None` when nothing was counted between.
    fn between(began: &[(f64, u64)], end: &[(f64, u64)]) -> Option<HubFanout> {
        let counts: Vec<(f64, u64)> = end
            .iter()
            .map(|&(bound, total)| {
                let before = began
                    .iter()
                    .find(|(b, _)| *b == bound)
                    .map_or(0, |(_, count)| *count);
                (bound, total.saturating_sub(before))
            })
            .collect();
        let count = counts.iter().map(|(_, c)| *c).max().filter(|c| *c > 0)?;
        let quantile = |q: f64| {
            let wanted = (q * count as f64).ceil() as u64;
            counts
                .iter()
                .find(|(_, cumulative)| *cumulative >= wanted)
                .map_or(f64::INFINITY, |(bound, _)| *bound)
        };
        Some(HubFanout {
            count,
            p50: quantile(0.50),
            p99: quantile(0.99),
        })
    }
}

/// The hub's `goop_hub_fanout_seconds` buckets as its `/metrics` gives them now (cumulative,
/// by upper bound); `None` when they cannot be read.
async fn hub_fanout_buckets(hub: SocketAddr) -> Option<Vec<(f64, u64)>> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .ok()?;
    let response = client
        .get(format!("http://{hub}/metrics"))
        .send()
        .await
        .ok()?;
    let text = response.error_for_status().ok()?.text().await.ok()?;
    let buckets = fanout_buckets(&text);
    (!buckets.is_empty()).then_some(buckets)
}

fn fanout_buckets(metrics: &str) -> Vec<(f64, u64)> {
    metrics
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("goop_hub_fanout_seconds_bucket{le=\"")?;
            let (bound, count) = rest.split_once("\"} ")?;
            let bound = match bound {
                "+Inf" => f64::INFINITY,
                bound => bound.parse().ok()?,
            };
            Some((bound, count.trim().parse().ok()?))
        })
        .collect()
}

/// Waits until `wanted` peers are live and have read their snapshots (or `deadline`), then two
/// seconds more for first writes to settle. Returns the peers live, and when all were caught up
/// (`None`: not by the deadline).
async fn settle(ledger: &Ledger, wanted: usize, deadline: Instant) -> (usize, Option<Instant>) {
    let done = |counter: &AtomicU64| counter.load(Ordering::Relaxed) as usize >= wanted;
    while !(done(&ledger.live) && done(&ledger.caught_up)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reached = (done(&ledger.live) && done(&ledger.caught_up)).then(Instant::now);
    tokio::time::sleep(Duration::from_secs(2)).await;
    (ledger.live.load(Ordering::Relaxed) as usize, reached)
}

/// Publishes an `update` every [`PROBE_EVERY`] for `duration` and times each answer; each
/// publish comes from the next of `sources` under an identity of its own, so the hub's
/// per-address rate never refuses one.
async fn probe(hub: SocketAddr, sources: Vec<IpAddr>, duration: Duration) -> Vec<Duration> {
    let publish = format!("http://{hub}/publish");
    let probers: Vec<(reqwest::Client, Keypair)> = sources
        .into_iter()
        .filter_map(|source| {
            let client = reqwest::Client::builder()
                .local_address(source)
                .build()
                .ok()?;
            Some((client, Keypair::generate_ed25519()))
        })
        .collect();
    let mut latencies = Vec::new();
    let mut last_ts = 0;
    let end = Instant::now() + duration;
    let mut tick = tokio::time::interval(PROBE_EVERY);
    for (client, keypair) in probers.iter().cycle() {
        tick.tick().await;
        if Instant::now() >= end {
            break;
        }
        let mut presence = Presence::new(PresenceType::Update, keypair.public().to_peer_id());
        presence.content = Some("prober".into());
        last_ts = unix_ms().max(last_ts + 1);
        presence.ts = Some(last_ts);
        presence.sign(keypair);
        let body = serde_json::to_vec(&presence).expect("serializes");
        let sent = Instant::now();
        if let Ok(response) = client.post(&publish).body(body).send().await
            && response.status().as_u16() == 204
        {
            latencies.push(sent.elapsed());
        }
    }
    latencies
}

/// One member of the community.
struct SimulatedPeer {
    index: usize,
    keypair: Keypair,
    hub: SocketAddr,
    source: IpAddr,
    options: CommunityOptions,
    ledger: Arc<Ledger>,
    last_ts: i64,
    /// The last stream position the hub gave (SSE `id:`, a WebSocket's `position`), which the
    /// peer reconnects with, as our peers do.
    position: Option<String>,
    /// Whether this peer has been counted in [`Ledger::caught_up`].
    caught_up: bool,
}

/// A peer's link: where it publishes and hears.
enum Link {
    Ws(Box<tokio_tungstenite::WebSocketStream<TcpStream>>),
    /// The event stream; publishes go over `client`.
    Sse(TcpStream, reqwest::Client),
}

/// Why a link's loop ended.
enum Ended {
    Churn,
    Storm,
    Done,
    Lost,
}

impl SimulatedPeer {
    async fn run(mut self, mut phase: watch::Receiver<Phase>) {
        let mut label = format!("lp {}", self.index);
        let mut first = true;
        loop {
            let Some(mut link) = self.connect().await else {
                self.ledger.error(Failure::Connect);
                if *phase.borrow() == Phase::Done {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            };
            // Seen now: `hold` waits for the next change of phase only.
            match *phase.borrow_and_update() {
                Phase::Storm => label = format!("ls {}", self.index),
                Phase::Done => return,
                Phase::Running => {}
            }
            if !self.publish(&mut link, PresenceType::Online, &label).await {
                self.ledger.error(Failure::Publish);
                continue;
            }
            if first {
                self.ledger.live.fetch_add(1, Ordering::Relaxed);
                first = false;
            } else if self.position.is_some() {
                // Counted as resumed here; a reset the hub sends is counted back out.
                self.ledger.resumed.fetch_add(1, Ordering::Relaxed);
            }
            match self.hold(&mut link, &mut label, &mut phase).await {
                Ended::Churn => {
                    self.publish(&mut link, PresenceType::Offline, &label).await;
                    drop(link);
                    self.ledger.churned.fetch_add(1, Ordering::Relaxed);
                    let away = Duration::from_millis(500 + rand::random::<u64>() % 2000);
                    tokio::time::sleep(away).await;
                }
                // Dropped without a word, as a hub restart would: back at once.
                Ended::Storm => drop(link),
                Ended::Done => {
                    self.publish(&mut link, PresenceType::Offline, &label).await;
                    return;
                }
                Ended::Lost => {
                    self.ledger.error(Failure::Lost);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    async fn connect(&self) -> Option<Link> {
        let socket = match self.hub {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }
        .ok()?;
        socket.bind(SocketAddr::new(self.source, 0)).ok()?;
        let mut stream = tokio::time::timeout(Duration::from_secs(10), socket.connect(self.hub))
            .await
            .ok()?
            .ok()?;
        let peer_id = self.keypair.public().to_peer_id();
        match self.options.transport {
            Transport::Ws => {
                let mut url = format!(
                    "ws://{}/ws?peer_id={peer_id}&changes=1&positions=1",
                    self.hub
                );
                if let Some(position) = &self.position {
                    url.push_str("&last_event_id=");
                    url.push_str(position);
                }
                // Small buffers, as a peer's link needs: thousands of these share the machine.
                let config = WebSocketConfig::default()
                    .read_buffer_size(4096)
                    .write_buffer_size(0);
                let (socket, _) = tokio::time::timeout(
                    Duration::from_secs(10),
                    tokio_tungstenite::client_async_with_config(url, stream, Some(config)),
                )
                .await
                .ok()?
                .ok()?;
                Some(Link::Ws(Box::new(socket)))
            }
            Transport::Sse => {
                let resume = match &self.position {
                    Some(position) => format!("Last-Event-ID: {position}\r\n"),
                    None => String::new(),
                };
                let request = format!(
                    "GET /events?changes=1 HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n{resume}\r\n",
                    self.hub
                );
                stream.write_all(request.as_bytes()).await.ok()?;
                let mut head = [0u8; 12];
                tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut head))
                    .await
                    .ok()?
                    .ok()?;
                if &head != b"HTTP/1.1 200" {
                    return None;
                }
                let client = reqwest::Client::builder()
                    .local_address(self.source)
                    .pool_max_idle_per_host(1)
                    .build()
                    .ok()?;
                Some(Link::Sse(stream, client))
            }
        }
    }

    /// Publishes one signed message; false when the hub refused it or the link failed.
    async fn publish(&mut self, link: &mut Link, kind: PresenceType, label: &str) -> bool {
        let mut presence = Presence::new(kind, self.keypair.public().to_peer_id());
        presence.content = Some(label.to_owned());
        presence.addrs = Some(vec![format!(
            "/ip4/127.0.0.1/tcp/{}",
            10_000 + self.index % 50_000
        )]);
        presence.goop_client_version = Some(env!("CARGO_PKG_VERSION").into());
        self.last_ts = unix_ms().max(self.last_ts + 1);
        presence.ts = Some(self.last_ts);
        presence.sign(&self.keypair);
        let body = serde_json::to_string(&presence).expect("serializes");
        match link {
            Link::Ws(socket) => socket.send(Message::Text(body.into())).await.is_ok(),
            Link::Sse(_, client) => {
                let url = format!("http://{}/publish", self.hub);
                matches!(
                    client.post(url).body(body).send().await,
                    Ok(response) if response.status().as_u16() == 204
                )
            }
        }
    }

    /// Heartbeats, label changes and reading until the peer churns, the run says otherwise or
    /// the link is lost.
    async fn hold(
        &mut self,
        link: &mut Link,
        label: &mut String,
        phase: &mut watch::Receiver<Phase>,
    ) -> Ended {
        // When the snapshot has been read: on SSE the first `id:` (snapshot frames have none),
        // on a WebSocket the hub's echo of this peer's own `online`, which was queued behind it.
        let mut since = None;
        let mut timed = HashSet::new();
        let me = self.keypair.public().to_peer_id().to_base58();
        let heartbeat = self.options.heartbeat;
        let start =
            tokio::time::Instant::now() + heartbeat.mul_f64(rand::random::<f64>().clamp(0.05, 1.0));
        let mut beat = tokio::time::interval_at(start, heartbeat);
        // Once the storm has begun, peers only come back and keep their heartbeat: changes and
        // churn would blur what is timed.
        let calm = *phase.borrow() != Phase::Running;
        let every = |mean: Duration| if calm { Duration::ZERO } else { mean };
        let change = sleep_for(every(self.options.change_every));
        let churn = sleep_for(every(self.options.churn_every));
        tokio::pin!(change, churn);
        let mut buffer = vec![0u8; 4096];
        loop {
            let heard = tokio::select! {
                _ = phase.changed() => match *phase.borrow_and_update() {
                    Phase::Running => continue,
                    Phase::Storm => return Ended::Storm,
                    Phase::Done => return Ended::Done,
                },
                _ = beat.tick() => {
                    let text = label.clone();
                    if !self.publish(link, PresenceType::Update, &text).await {
                        self.ledger.error(Failure::Publish);
                    }
                    continue;
                }
                _ = &mut change => {
                    let n = self.ledger.next_change.fetch_add(1, Ordering::Relaxed) as usize;
                    if n < MAX_CHANGES {
                        *label = format!("lc {n}");
                        self.ledger.changes[n].store(self.ledger.micros(), Ordering::Relaxed);
                        if self.ledger.steady_from.load(Ordering::Relaxed) > 0 {
                            self.ledger.timed_changes.fetch_add(1, Ordering::Relaxed);
                        }
                        let text = label.clone();
                        if !self.publish(link, PresenceType::Update, &text).await {
                            self.ledger.error(Failure::Publish);
                        }
                    }
                    change.set(sleep_for(every(self.options.change_every)));
                    continue;
                }
                _ = &mut churn => return Ended::Churn,
                heard = read(link, &mut buffer) => heard,
            };
            let Some(bytes) = heard else {
                return Ended::Lost;
            };
            if since.is_none() {
                let marker = match link {
                    Link::Ws(_) => me.as_bytes(),
                    Link::Sse(..) => b"id: ".as_slice(),
                };
                if memchr::memmem::find(&bytes, marker).is_some() {
                    since = Some(self.ledger.micros());
                    if !self.caught_up {
                        self.caught_up = true;
                        self.ledger.caught_up.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            if let Some(position) = last_position(&bytes) {
                self.position = Some(position);
            }
            self.ledger.observe(&bytes, since, &mut timed);
        }
    }
}

/// What the hub sent next; `None` once the link is gone.
async fn read(link: &mut Link, buffer: &mut [u8]) -> Option<Vec<u8>> {
    match link {
        Link::Ws(socket) => loop {
            match socket.next().await? {
                Ok(Message::Text(text)) => return Some(text.as_bytes().to_vec()),
                Ok(Message::Binary(bytes)) => return Some(bytes.to_vec()),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        },
        Link::Sse(stream, _) => match stream.read(buffer).await {
            Ok(0) | Err(_) => None,
            Ok(read) => Some(buffer[..read].to_vec()),
        },
    }
}

/// The last stream position in what the hub sent: an SSE `id:` line, or a WebSocket's
/// `{"type":"position","id":…}`. (An SSE read may end inside a line; the id is only taken up to
/// a newline.)
fn last_position(bytes: &[u8]) -> Option<String> {
    let (marker, end): (&[u8], u8) = if bytes.starts_with(b"{") {
        (b"{\"type\":\"position\",\"id\":\"", b'"')
    } else {
        (b"id: ", b'\n')
    };
    let start = memchr::memmem::rfind(bytes, marker)? + marker.len();
    let len = memchr::memchr(end, &bytes[start..])?;
    std::str::from_utf8(&bytes[start..start + len])
        .ok()
        .map(str::to_owned)
}

/// A sleep until the next event of a process with `mean` time between events (exponential:
/// peers change and leave at any time, not in step); never, for a zero mean.
fn sleep_for(mean: Duration) -> std::pin::Pin<Box<tokio::time::Sleep>> {
    if mean.is_zero() {
        return Box::pin(tokio::time::sleep(Duration::from_secs(86_400 * 365)));
    }
    let uniform = rand::random::<f64>().max(f64::MIN_POSITIVE);
    let wait = mean.mul_f64((-uniform.ln()).min(50.0));
    Box::pin(tokio::time::sleep(wait))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_told_by_kind() {
        assert_eq!(by_kind(&[0; Failure::ALL.len()]), "");
        let some = Failure::ALL.map(|f| u64::from(f == Failure::Lost) * 3);
        assert_eq!(
            by_kind(&some),
            " (connect 0, publish 0, refused 0, stream lost 3, not stopped 0)"
        );
    }

    #[test]
    fn positions_are_read_from_either_stream() {
        let sse = b"data: {}\n\nid: e1-4\ndata: {}\n\nid: e1-5\ndata: {\"x\"";
        assert_eq!(last_position(sse).as_deref(), Some("e1-5"));
        assert_eq!(last_position(b"id: e1-6").as_deref(), None, "cut mid-line");
        let ws = br#"{"type":"position","id":"e1-7-c0-9"}"#;
        assert_eq!(last_position(ws).as_deref(), Some("e1-7-c0-9"));
        assert_eq!(last_position(br#"{"type":"online","peerId":"x"}"#), None);
    }

    #[test]
    fn markers_are_read_wherever_they_are() {
        let frame =
            br#"{"type":"update","content":"lc 17"}data: {"content":"ls 4"}{"content":"lc 2x"}"#;
        assert_eq!(
            numbers_after(frame, b"\"content\":\"lc ").collect::<Vec<_>>(),
            [17, 2]
        );
        assert_eq!(
            numbers_after(frame, b"\"content\":\"ls ").collect::<Vec<_>>(),
            [4]
        );
    }

    #[test]
    fn the_hubs_fanout_is_read_between_two_readings_of_its_buckets() {
        let reading = |counts: [u64; 4]| {
            format!(
                "# TYPE goop_hub_fanout_seconds histogram\n\
                 goop_hub_fanout_seconds_bucket{{le=\"0.05\"}} {}\n\
                 goop_hub_fanout_seconds_bucket{{le=\"0.1\"}} {}\n\
                 goop_hub_fanout_seconds_bucket{{le=\"0.25\"}} {}\n\
                 goop_hub_fanout_seconds_bucket{{le=\"+Inf\"}} {}\n\
                 goop_hub_fanout_seconds_sum 1.5\ngoop_hub_fanout_seconds_count {}\n",
                counts[0], counts[1], counts[2], counts[3], counts[3]
            )
        };
        let began = fanout_buckets(&reading([10, 10, 10, 10]));
        assert_eq!(began.len(), 4);
        // 100 more: 60 within 50 ms, 39 within 100 ms, 1 within 250 ms.
        let end = fanout_buckets(&reading([70, 109, 110, 110]));
        let fanout = HubFanout::between(&began, &end).unwrap();
        assert_eq!(fanout.count, 100);
        assert_eq!(fanout.p50, 0.05);
        assert_eq!(fanout.p99, 0.1);
        // One more past the largest bound: the 99th percentile is no longer within it.
        let end = fanout_buckets(&reading([70, 108, 109, 111]));
        let fanout = HubFanout::between(&began, &end).unwrap();
        assert_eq!(fanout.p99, f64::INFINITY);
        assert_eq!(HubFanout::between(&began, &began), None);
    }

    #[test]
    fn the_histogram_gives_percentiles_to_its_resolution() {
        let histogram = Histogram::new();
        for micros in [50, 150, 250, 10_000] {
            histogram.record(micros);
        }
        assert_eq!(histogram.percentile(0.5), Some(Duration::from_micros(200)));
        assert_eq!(
            histogram.percentile(1.0),
            Some(Duration::from_micros(10_100))
        );
    }
}
