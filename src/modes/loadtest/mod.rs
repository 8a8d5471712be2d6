//! `goop2 loadtest <hub-url>`: drives a hub with signed publishes from generated identities and
//! with SSE subscribers, and reports throughput and latencies. Bounded in count and time; it
//! stops by itself.
//!
//! Each publish carries a sequence number in its label, so every subscriber can tell which
//! publish an event belongs to; the fan-out latency of a publish is the time until the *last*
//! subscriber has it. Subscribers connect from many 127.x.y.z source addresses so the hub's
//! per-address stream cap does not stop them (loopback hubs only).

pub mod baseline;
pub mod community;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use libp2p_identity::Keypair;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

use crate::services::hub::presence::{Presence, PresenceType};
use crate::services::hub::unix_ms;

/// Hard bounds, whatever the command line says.
pub const MAX_SUBSCRIBERS: usize = 60_000;
pub const MAX_PUBLISHERS: usize = 10_000;
pub const MAX_DURATION: Duration = Duration::from_secs(600);
/// How long stragglers may take after the last publish.
const GRACE: Duration = Duration::from_secs(3);

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub url: String,
    pub subscribers: usize,
    pub publishers: usize,
    /// Publishes per second, all publishers together.
    pub rate: u32,
    pub duration: Duration,
    /// Subscribe to `?changes=1` (every publish here is a change, so both streams carry it).
    pub changes_only: bool,
    /// Streams opened per source address.
    pub streams_per_address: usize,
    /// Read the hub's resident memory from `/proc/<pid>/status` (several: the instances of
    /// one hub, their memory added up).
    pub hub_pids: Vec<u32>,
}

/// What was measured.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub attempted: u64,
    pub accepted: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub publish_p50: Duration,
    pub publish_p99: Duration,
    pub fanout_p50: Option<Duration>,
    pub fanout_p99: Option<Duration>,
    /// Publishes every subscriber received, of those accepted.
    pub fully_delivered: u64,
    pub subscribers_connected: usize,
    /// Hub memory before the subscribers connected, once they all had, and at the end.
    pub hub_rss_before_kib: Option<u64>,
    pub hub_rss_idle_kib: Option<u64>,
    pub hub_rss_kib: Option<u64>,
}

impl LoadReport {
    pub fn accepted_per_second(&self) -> f64 {
        self.accepted as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The report as the command prints it.
    pub fn render(&self) -> String {
        let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1000.0);
        let mut out = format!(
            "publishes: {} attempted, {} accepted, {} errors in {:.1} s\n\
             accepted publishes/s: {:.0}\n\
             publish latency: p50 {}, p99 {}\n",
            self.attempted,
            self.accepted,
            self.errors,
            self.elapsed.as_secs_f64(),
            self.accepted_per_second(),
            ms(self.publish_p50),
            ms(self.publish_p99),
        );
        if self.subscribers_connected > 0 {
            out += &format!(
                "subscribers: {} connected; {} of {} publishes reached every subscriber\n",
                self.subscribers_connected, self.fully_delivered, self.accepted
            );
            if let (Some(p50), Some(p99)) = (self.fanout_p50, self.fanout_p99) {
                out += &format!(
                    "fan-out latency (publish to last subscriber): p50 {}, p99 {}\n",
                    ms(p50),
                    ms(p99)
                );
            }
        }
        if let (Some(before), Some(idle), Some(end)) = (
            self.hub_rss_before_kib,
            self.hub_rss_idle_kib,
            self.hub_rss_kib,
        ) {
            out += &format!(
                "hub RSS: {before} KiB before subscribers, {idle} KiB with them idle, {end} KiB at the end\n"
            );
            if self.subscribers_connected > 0 {
                let per = (idle as f64 - before as f64) / self.subscribers_connected as f64;
                out += &format!("hub memory per idle subscriber: {per:.2} KiB\n");
            }
        }
        out
    }
}

/// Per-publish bookkeeping shared by publishers and subscribers.
struct Ledger {
    start: Instant,
    /// Microseconds after `start` when publish `n` was sent (0 = not sent).
    sent: Vec<AtomicU64>,
    /// Latest receipt, in microseconds after `start`.
    last_seen: Vec<AtomicU64>,
    receipts: Vec<AtomicU32>,
}

impl Ledger {
    fn micros(&self) -> u64 {
        self.start.elapsed().as_micros() as u64 + 1
    }
}

/// Runs the load and returns the measurements.
pub async fn run(options: LoadOptions) -> anyhow::Result<LoadReport> {
    if options.subscribers > MAX_SUBSCRIBERS || options.publishers > MAX_PUBLISHERS {
        bail!("at most {MAX_SUBSCRIBERS} subscribers and {MAX_PUBLISHERS} publishers");
    }
    if options.duration > MAX_DURATION || options.duration.is_zero() {
        bail!(
            "--duration must be between 1 and {} s",
            MAX_DURATION.as_secs()
        );
    }
    if options.publishers == 0 || options.rate == 0 {
        bail!("--publishers and --rate must be at least 1");
    }
    let (hub, hub_ip) = hub_address(&options.url)?;
    let _ = rlimit::increase_nofile_limit(u64::MAX);

    let total = (options.rate as u64 * options.duration.as_secs().max(1)) as usize;
    let ledger = Arc::new(Ledger {
        start: Instant::now(),
        sent: (0..total).map(|_| AtomicU64::new(0)).collect(),
        last_seen: (0..total).map(|_| AtomicU64::new(0)).collect(),
        receipts: (0..total).map(|_| AtomicU32::new(0)).collect(),
    });

    let rss_before = rss_kib(&options.hub_pids);
    let connected = Arc::new(AtomicU64::new(0));
    let path = if options.changes_only {
        "/events?changes=1"
    } else {
        "/events"
    };
    let mut subscribers = Vec::with_capacity(options.subscribers);
    let per_address = options.streams_per_address.max(1);
    for index in 0..options.subscribers {
        let source = source_address(hub_ip, index / per_address);
        let ledger = ledger.clone();
        let connected = connected.clone();
        subscribers.push(tokio::spawn(subscribe(
            hub, source, path, ledger, connected,
        )));
        if index % 500 == 499 {
            // Let the accept queue drain.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while (connected.load(Ordering::Relaxed) as usize) < options.subscribers
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let subscribers_connected = connected.load(Ordering::Relaxed) as usize;
    if subscribers_connected < options.subscribers {
        tracing::warn!(
            connected = subscribers_connected,
            wanted = options.subscribers,
            "not every subscriber connected"
        );
    }
    // Let snapshots settle before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle = rss_kib(&options.hub_pids);

    let publish_url = format!("{}publish", ensure_slash(&options.url));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(options.publishers)
        .build()?;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(options.publishers);
    let per_publisher = options.rate as f64 / options.publishers as f64;
    for index in 0..options.publishers {
        let client = client.clone();
        let url = publish_url.clone();
        let ledger = ledger.clone();
        let duration = options.duration;
        let count = options.publishers;
        tasks.push(tokio::spawn(async move {
            publish_loop(client, url, ledger, index, count, per_publisher, duration).await
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    let (mut attempted, mut errors) = (0u64, 0u64);
    for publisher in tasks {
        let (lat, att, err) = publisher.await.unwrap_or_default();
        latencies.extend(lat);
        attempted += att;
        errors += err;
    }
    let elapsed = started.elapsed();
    tokio::time::sleep(if subscribers_connected > 0 {
        GRACE
    } else {
        Duration::ZERO
    })
    .await;
    let hub_rss_kib = rss_kib(&options.hub_pids);
    for subscriber in &subscribers {
        subscriber.abort();
    }

    latencies.sort_unstable();
    let accepted = latencies.len() as u64;
    let mut fanout = Vec::new();
    let mut fully_delivered = 0;
    if subscribers_connected > 0 {
        for n in 0..total {
            let sent = ledger.sent[n].load(Ordering::Relaxed);
            if sent == 0 {
                continue;
            }
            if ledger.receipts[n].load(Ordering::Relaxed) as usize >= subscribers_connected {
                fully_delivered += 1;
                let last = ledger.last_seen[n].load(Ordering::Relaxed);
                fanout.push(Duration::from_micros(last.saturating_sub(sent)));
            }
        }
        fanout.sort_unstable();
    }
    Ok(LoadReport {
        attempted,
        accepted,
        errors,
        elapsed,
        publish_p50: percentile(&latencies, 0.50).unwrap_or_default(),
        publish_p99: percentile(&latencies, 0.99).unwrap_or_default(),
        fanout_p50: percentile(&fanout, 0.50),
        fanout_p99: percentile(&fanout, 0.99),
        fully_delivered,
        subscribers_connected,
        hub_rss_before_kib: rss_before,
        hub_rss_idle_kib: rss_idle,
        hub_rss_kib,
    })
}

/// The hub's socket address and IP from its base URL (plain http, an IP address or
/// `localhost`).
pub(crate) fn hub_address(url: &str) -> anyhow::Result<(SocketAddr, IpAddr)> {
    let url = url::Url::parse(url).context("the hub URL does not parse")?;
    if url.scheme() != "http" {
        bail!("loadtest speaks plain http; run it next to the hub, e.g. http://127.0.0.1:8787");
    }
    let host = url.host_str().context("the hub URL has no host")?;
    let hub_ip: IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .or_else(|_| {
            if host == "localhost" {
                Ok(IpAddr::from([127, 0, 0, 1]))
            } else {
                Err(())
            }
        })
        .map_err(|_| anyhow::anyhow!("use the hub's IP address (a loopback one) in the URL"))?;
    Ok((
        SocketAddr::new(hub_ip, url.port_or_known_default().unwrap_or(80)),
        hub_ip,
    ))
}

fn ensure_slash(url: &str) -> String {
    if url.ends_with('/') {
        url.to_owned()
    } else {
        format!("{url}/")
    }
}

/// The `index`-th source address: 127.0.0.1, 127.0.0.2, … 127.0.0.254, 127.0.1.1, … — every
/// index its own address, none ending in .0 or .255 (IPv6 hubs use ::1 only).
pub(crate) fn source_address(hub: IpAddr, index: usize) -> IpAddr {
    match hub {
        IpAddr::V4(_) => {
            let last = (index % 254) as u8 + 1;
            let rest = index / 254;
            IpAddr::V4(Ipv4Addr::new(
                127,
                ((rest >> 8) & 0xff) as u8,
                (rest & 0xff) as u8,
                last,
            ))
        }
        IpAddr::V6(_) => IpAddr::from([0, 0, 0, 0, 0, 0, 0, 1u16]),
    }
}

/// One SSE subscriber over a raw connection: records which publishes it saw, and when.
async fn subscribe(
    hub: SocketAddr,
    source: IpAddr,
    path: &'static str,
    ledger: Arc<Ledger>,
    connected: Arc<AtomicU64>,
) {
    let Ok(socket) = (if hub.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }) else {
        return;
    };
    if socket.bind(SocketAddr::new(source, 0)).is_err() {
        return;
    }
    let Ok(mut stream) = socket.connect(hub).await else {
        return;
    };
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {hub}\r\nAccept: text/event-stream\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return;
    }
    const MARKER: &[u8] = b"\"content\":\"lt ";
    let mut buffer = vec![0u8; 2048];
    let mut carry: Vec<u8> = Vec::with_capacity(4096);
    let mut counted = false;
    loop {
        let read = match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        if !counted {
            if !buffer[..read].starts_with(b"HTTP/1.1 200") {
                return;
            }
            connected.fetch_add(1, Ordering::Relaxed);
            counted = true;
        }
        let now = ledger.micros();
        carry.extend_from_slice(&buffer[..read]);
        let mut consumed = 0;
        while let Some(at) = find(&carry[consumed..], MARKER) {
            let digits_start = consumed + at + MARKER.len();
            let digits_end = carry[digits_start..]
                .iter()
                .position(|b| !b.is_ascii_digit())
                .map(|p| digits_start + p);
            let Some(digits_end) = digits_end else { break };
            if let Ok(n) = std::str::from_utf8(&carry[digits_start..digits_end])
                .unwrap_or("")
                .parse::<usize>()
                && n < ledger.receipts.len()
            {
                ledger.receipts[n].fetch_add(1, Ordering::Relaxed);
                ledger.last_seen[n].fetch_max(now, Ordering::Relaxed);
            }
            consumed = digits_end;
        }
        // Keep only a tail that may hold the start of a split marker.
        let keep_from = consumed.max(carry.len().saturating_sub(MARKER.len() + 24));
        carry.drain(..keep_from);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One publisher: signed `update`s at its share of the rate, each labelled with a global
/// sequence number. Returns the latencies of accepted publishes, attempts and errors.
async fn publish_loop(
    client: reqwest::Client,
    url: String,
    ledger: Arc<Ledger>,
    index: usize,
    publishers: usize,
    per_second: f64,
    duration: Duration,
) -> (Vec<Duration>, u64, u64) {
    let keypair = Keypair::generate_ed25519();
    let peer_id = keypair.public().to_peer_id();
    let mut last_ts = 0i64;
    let mut latencies = Vec::new();
    let (mut attempted, mut errors) = (0u64, 0u64);
    let interval = Duration::from_secs_f64(1.0 / per_second.max(0.001));
    // Spread the publishers' first ticks over one interval.
    let offset = interval.mul_f64(index as f64 / publishers as f64);
    let start = tokio::time::Instant::now() + offset;
    let mut ticker = tokio::time::interval_at(start, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let end = tokio::time::Instant::now() + duration;
    let mut round = 0usize;
    loop {
        ticker.tick().await;
        if tokio::time::Instant::now() >= end {
            break;
        }
        let n = round * publishers + index;
        round += 1;
        if n >= ledger.sent.len() {
            break;
        }
        let mut presence = Presence::new(PresenceType::Update, peer_id);
        presence.content = Some(format!("lt {n}"));
        presence.addrs = Some(vec![format!("/ip4/127.0.0.1/tcp/{}", 10_000 + index)]);
        last_ts = unix_ms().max(last_ts + 1);
        presence.ts = Some(last_ts);
        presence.sign(&keypair);
        let body = serde_json::to_vec(&presence).expect("serializes");
        attempted += 1;
        let sent = Instant::now();
        ledger.sent[n].store(ledger.micros(), Ordering::Relaxed);
        match client.post(&url).body(body).send().await {
            Ok(response) if response.status().as_u16() == 204 => latencies.push(sent.elapsed()),
            Ok(_) | Err(_) => {
                ledger.sent[n].store(0, Ordering::Relaxed);
                errors += 1;
            }
        }
    }
    (latencies, attempted, errors)
}

pub(crate) fn percentile(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let index = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[index])
}

/// Resident memory of process `pid`, from `/proc`.
/// Resident memory in KiB, of several processes added up (`None` when there are none, or one
/// cannot be read).
pub fn rss_kib(pids: &[u32]) -> Option<u64> {
    status_kib(pids, "VmRSS:")
}

/// A process's anonymous resident memory in KiB (`RssAnon`: what it allocated, without the
/// pages of its executable and libraries, which are read in as code paths are first taken).
pub fn anon_kib(pids: &[u32]) -> Option<u64> {
    status_kib(pids, "RssAnon:")
}

fn status_kib(pids: &[u32], field: &str) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter()
        .map(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            status
                .lines()
                .find_map(|line| line.strip_prefix(field))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse::<u64>().ok())
        })
        .sum()
}

/// The CPU time the processes have used so far (user and system), in seconds.
pub fn cpu_seconds(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter()
        .map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            cpu_ticks(&stat).map(|ticks| ticks as f64 / USER_HZ)
        })
        .sum()
}

/// The unit of `/proc/<pid>/stat`'s times (`USER_HZ`: 100 on the architectures Linux runs us on).
const USER_HZ: f64 = 100.0;

/// User and system time in a `/proc/<pid>/stat` line, in ticks. The command name (second field)
/// is in parentheses and may hold spaces and parentheses itself: fields are counted from the
/// last `)`.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_past_a_command_name_with_spaces() {
        let stat = "4242 (goop2 (hub) x) S 1 4242 4242 0 -1 4194560 900 0 0 0 1234 567 0 0 20 0 \
                    3 0 100 1000000 500 18446744073709551615";
        assert_eq!(cpu_ticks(stat), Some(1234 + 567));
        assert_eq!(cpu_ticks("4242 (cut"), None);
        let own = cpu_seconds(&[std::process::id()]).expect("this process's own times");
        assert!(own >= 0.0);
    }

    #[test]
    fn source_addresses_are_distinct_usable_loopback_addresses() {
        let hub = IpAddr::from([127, 0, 0, 1]);
        let addresses: std::collections::HashSet<IpAddr> =
            (0..2000).map(|i| source_address(hub, i)).collect();
        assert_eq!(addresses.len(), 2000);
        for address in &addresses {
            let IpAddr::V4(v4) = address else { panic!() };
            assert!(v4.is_loopback());
            assert!(v4.octets()[3] != 0 && v4.octets()[3] != 255, "{v4}");
        }
        assert_eq!(source_address(hub, 0), IpAddr::from([127, 0, 0, 1]));
        assert_eq!(source_address(hub, 254), IpAddr::from([127, 0, 1, 1]));
    }
}
