//! Helpers: a hub on 127.0.0.1:0 in a temp dir, signing test peers, small HTTP/SSE clients, and
//! the `goop2` binary as a hub or a peer process with its peak memory.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::BytesMut;
use futures_util::StreamExt;
use goop2::config::Config;
use goop2::identity::Keypair;
use goop2::modes::rendezvous::{self, RunningHub};
use goop2::services::hub::HubOptions;
use goop2::services::hub::presence::{Presence, PresenceType};
use goop2::telemetry::LogBuffer;
use serde_json::Value;

pub mod netns_world;
pub mod postgres;

/// A hub started through the same entry point as `goop2 rendezvous`.
pub struct TestHub {
    pub running: Option<RunningHub>,
    pub addr: SocketAddr,
    pub url: String,
    pub dir: tempfile::TempDir,
    pub logs: LogBuffer,
    client: reqwest::Client,
}

impl TestHub {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}, |_| {}).await
    }

    pub async fn spawn_with(
        edit_config: impl FnOnce(&mut Config),
        edit_options: impl FnOnce(&mut HubOptions),
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = hub_config();
        // Tests publish fast from one address; the limiter has its own test.
        config.presence.publish_burst = 1_000_000;
        config.presence.publish_per_second = 1_000_000;
        edit_config(&mut config);
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        config.save(&dir.path().join("goop.json")).unwrap();
        let mut options = HubOptions::from_config(&config);
        edit_options(&mut options);
        let logs = LogBuffer::new(100);
        let running = rendezvous::start_with_options(dir.path(), &config, options, logs.clone())
            .await
            .unwrap();
        let addr = running.hub_addr;
        TestHub {
            running: Some(running),
            addr,
            url: format!("http://{addr}"),
            dir,
            logs,
            client: reqwest::Client::new(),
        }
    }

    /// The settings viewer's base URL (the config must set `viewer.http_addr`).
    pub fn viewer_url(&self) -> String {
        let addr = self
            .running
            .as_ref()
            .unwrap()
            .viewer_addr
            .expect("a viewer");
        format!("http://{addr}")
    }

    pub fn hub(&self) -> &goop2::services::hub::Hub {
        &self.running.as_ref().unwrap().hub
    }

    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
    }

    pub async fn publish(&self, body: impl Into<String>) -> (u16, Value) {
        post_with(&self.client, &format!("{}/publish", self.url), body.into()).await
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        get_text(&format!("{}/metrics", self.url)).await
    }

    pub async fn peers(&self) -> Vec<Value> {
        let text = reqwest::get(format!("{}/peers.json", self.url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        serde_json::from_str(&text).unwrap()
    }
}

/// Call before a test records logs with a subscriber of its own thread. tracing decides once per
/// log statement, for the whole process, whether it is worth building; while a single
/// subscriber is known, it asks the one of the thread that first reaches the statement — another
/// test's thread with none says "never", and the recording test loses that line. A process-wide
/// subscriber that wants what those tests record (and keeps nothing) keeps the answer "yes".
pub fn keep_log_interest() {
    use tracing_subscriber::layer::SubscriberExt;
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let wants =
            tracing_subscriber::filter::Targets::new().with_target("goop2", tracing::Level::DEBUG);
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(wants))
            .expect("no other process-wide subscriber in the test binary");
    });
}

/// How long [`read_response`] waits for the next bytes.
const RESPONSE_WAIT: Duration = Duration::from_secs(10);

/// One response read off `stream`: its head (lower-cased) and its body, read by its
/// `content-length` (none: empty).
pub async fn read_response(
    stream: &mut tokio::net::TcpStream,
    pending: &mut Vec<u8>,
) -> (String, String) {
    use tokio::io::AsyncReadExt;
    let mut buffer = [0u8; 4096];
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8(pending[..end + 4].to_vec())
                .unwrap()
                .to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length: "))
                .map(|n| n.trim().parse::<usize>().unwrap())
                .unwrap_or(0);
            if pending.len() >= end + 4 + length {
                let body = String::from_utf8(pending[end + 4..end + 4 + length].to_vec()).unwrap();
                pending.drain(..end + 4 + length);
                return (head, body);
            }
        }
        let read = tokio::time::timeout(RESPONSE_WAIT, stream.read(&mut buffer))
            .await
            .expect("an answer in time")
            .unwrap();
        assert!(
            read > 0,
            "closed early: {}",
            String::from_utf8_lossy(pending)
        );
        pending.extend_from_slice(&buffer[..read]);
    }
}

/// GETs `url` and returns the body as text.
pub async fn get_text(url: &str) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

/// GETs `url` without following a redirect and returns the body as text (a console page, to
/// read its form token).
pub async fn get_page(url: &str) -> String {
    no_redirects()
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// POSTs `body` with `client` (and its pooled connections); returns the status and the JSON
/// answer (`null` when empty).
pub async fn post_with(client: &reqwest::Client, url: &str, body: String) -> (u16, Value) {
    let response = client.post(url).body(body).send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let json = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, json)
}

/// A peer directory made by `goop2 init`, with a console on a free loopback port, an embedded
/// hub (if `edit` turns one on) on a free port and a network tag of its own (so its peer meets
/// only the peers a test introduces); `edit` is applied after those and saved to goop.json.
/// Removed when dropped.
pub struct PeerDir {
    dir: tempfile::TempDir,
}

impl PeerDir {
    pub fn new(label: &str, edit: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        goop2::services::scaffold::run(dir.path(), Some(label.into())).unwrap();
        let mut config = Config::load_dir(dir.path()).unwrap().config;
        config.viewer.http_addr = "127.0.0.1:0".into();
        config.presence.rendezvous_port = Some(0);
        config.p2p.mdns_tag = format!("peer-{}", rand::random::<u32>());
        edit(&mut config);
        config.save(&dir.path().join("goop.json")).unwrap();
        PeerDir { dir }
    }

    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The goop.json in the directory as it is now, read without the checks `goop2 peer` makes
    /// (a test may start a peer from settings the loader refuses).
    pub fn config(&self) -> Config {
        let text = std::fs::read(self.path().join("goop.json")).unwrap();
        serde_json::from_slice(&text).unwrap()
    }
}

/// A TTL of `seconds` and a heartbeat every second: peers are seen to come and go quickly.
pub fn short_ttl(config: &mut Config, seconds: u32) {
    config.presence.ttl_seconds = seconds;
    config.presence.heartbeat_seconds = 1;
}

/// A peer running in this process from a [`PeerDir`] of its own. Derefs to the
/// [`RunningPeer`](goop2::modes::peer::RunningPeer).
pub struct TestPeer {
    pub running: goop2::modes::peer::RunningPeer,
    dir: PeerDir,
}

impl TestPeer {
    /// Starts peer `label` in a new [`PeerDir`] with `edit` applied to its goop.json.
    pub async fn spawn(label: &str, edit: impl FnOnce(&mut Config)) -> Self {
        Self::start(PeerDir::new(label, edit)).await
    }

    /// Starts the peer of `dir` from its goop.json as it is now, logging into a buffer of its own.
    pub async fn start(dir: PeerDir) -> Self {
        Self::start_with_logs(dir, LogBuffer::new(100)).await
    }

    /// Like [`TestPeer::start`], logging into `logs`.
    pub async fn start_with_logs(dir: PeerDir, logs: LogBuffer) -> Self {
        Self::try_start(dir, logs).await.unwrap()
    }

    /// Like [`TestPeer::start_with_logs`], with the peer's refusal to start as an error.
    pub async fn try_start(dir: PeerDir, logs: LogBuffer) -> anyhow::Result<Self> {
        let running = goop2::modes::peer::start(dir.path(), &dir.config(), logs).await?;
        Ok(TestPeer { running, dir })
    }

    pub fn dir(&self) -> &PeerDir {
        &self.dir
    }

    /// Stops the peer as its owner would; its directory is handed back, to start it again.
    pub async fn shutdown(self) -> PeerDir {
        self.running.shutdown().await;
        self.dir
    }
}

impl std::ops::Deref for TestPeer {
    type Target = goop2::modes::peer::RunningPeer;

    fn deref(&self) -> &Self::Target {
        &self.running
    }
}

/// A bare node's options in tests: 127.0.0.1, a port of its own, no mDNS, default limits.
pub fn loopback_node_options() -> goop2::services::node::NodeOptions {
    goop2::services::node::NodeOptions {
        listen_ip: "127.0.0.1".parse().unwrap(),
        listen_port: 0,
        mdns: false,
        mdns_tag: "goop-mdns".into(),
        presence_topic: "goop.presence.v1".into(),
        limits: Default::default(),
        gossip: Default::default(),
        relay: None,
    }
}

/// What a bare node serves in tests: no site, no avatar, no database, only `label`.
pub fn nothing_served(label: &str) -> goop2::services::node::protocols::Served {
    goop2::services::node::protocols::Served {
        site: None,
        label: tokio::sync::watch::channel(label.to_owned()).1,
        avatar: None,
        data: None,
    }
}

/// A peer identity that signs presence with strictly increasing timestamps.
pub struct TestIdentity {
    pub keypair: Keypair,
    pub id: String,
    last_ts: i64,
}

impl TestIdentity {
    pub fn new() -> Self {
        let keypair = Keypair::generate_ed25519();
        let id = keypair.public().to_peer_id().to_base58();
        TestIdentity {
            keypair,
            id,
            last_ts: 0,
        }
    }

    pub fn next_ts(&mut self) -> i64 {
        let now = goop2::services::hub::unix_ms();
        self.last_ts = now.max(self.last_ts + 1);
        self.last_ts
    }

    /// An unsigned message with a fresh timestamp.
    pub fn unsigned(&mut self, kind: PresenceType, label: &str) -> Presence {
        let mut presence = Presence::new(kind, self.keypair.public().to_peer_id());
        presence.content = Some(label.to_owned());
        presence.addrs = Some(vec!["/ip4/127.0.0.1/tcp/4001".into()]);
        presence.ts = Some(self.next_ts());
        presence
    }

    /// A signed message with a fresh timestamp.
    pub fn signed(&mut self, kind: PresenceType, label: &str) -> Presence {
        let mut presence = self.unsigned(kind, label);
        presence.sign(&self.keypair);
        presence
    }

    pub fn json(&mut self, kind: PresenceType, label: &str) -> String {
        serde_json::to_string(&self.signed(kind, label)).unwrap()
    }
}

/// One parsed Server-Sent Event.
#[derive(Debug, Clone, Default)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap()
    }
}

/// A streaming SSE reader over a real HTTP connection.
pub struct SseClient {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    stream: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: BytesMut,
    pub comments: usize,
    pub last_retry: Option<String>,
    /// The stream's position as an `EventSource` keeps it: the last `id:` read, whether or not
    /// its frame carried data.
    pub last_id: Option<String>,
    pub ended: bool,
}

impl SseClient {
    pub async fn connect(url: &str, last_event_id: Option<&str>) -> Self {
        match last_event_id {
            Some(id) => Self::connect_with(url, &[("Last-Event-ID", id)]).await,
            None => Self::connect_with(url, &[]).await,
        }
    }

    /// Connects with extra request headers.
    pub async fn connect_with(url: &str, headers: &[(&str, &str)]) -> Self {
        Self::try_connect_with(url, headers).await.unwrap()
    }

    /// Like [`SseClient::connect_with`], with the connection's failure as an error.
    pub async fn try_connect_with(url: &str, headers: &[(&str, &str)]) -> reqwest::Result<Self> {
        let mut request = reqwest::Client::new().get(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await?;
        Ok(SseClient {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            stream: response.bytes_stream().boxed(),
            buffer: BytesMut::new(),
            comments: 0,
            last_retry: None,
            last_id: None,
            ended: false,
        })
    }

    /// Reads until the stream has told its first position (`id:`, which the hub sends once its
    /// snapshot is out), within `wait`: what is published from then on arrives live only.
    pub async fn past_snapshot(&mut self, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        while self.last_id.is_none() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no position within {wait:?}"
            );
            if let Some(event) = self.next(Duration::from_millis(50)).await {
                panic!("an event before the snapshot's position: {}", event.data);
            }
        }
    }

    /// The next event with data or a name, or `None` when the stream ends or `wait` passes.
    pub async fn next(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            while let Some(end) = find(&self.buffer, b"\n\n") {
                let frame = self.buffer.split_to(end + 2);
                let text = String::from_utf8_lossy(&frame[..end]).into_owned();
                let mut event = SseEvent::default();
                let mut has_data = false;
                for line in text.lines() {
                    if line.starts_with(':') {
                        self.comments += 1;
                    } else if let Some(v) = line.strip_prefix("retry: ") {
                        self.last_retry = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        event.id = Some(v.to_owned());
                        self.last_id = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        event.event = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        if has_data {
                            event.data.push('\n');
                        }
                        event.data.push_str(v);
                        has_data = true;
                    }
                }
                if has_data || event.event.is_some() {
                    return Some(event);
                }
            }
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Ok(Some(Ok(chunk))) => self.buffer.extend_from_slice(&chunk),
                Ok(Some(Err(_))) | Ok(None) => {
                    self.ended = true;
                    return None;
                }
                Err(_) => return None,
            }
        }
    }

    /// The next message of presence type `kind` (within 5 s), as JSON.
    pub async fn next_of_type(&mut self, kind: &str) -> Value {
        self.wait_for(Duration::from_secs(5), |e| e.json()["type"] == kind)
            .await
            .json()
    }

    /// Reads events until one satisfies `pred`, failing the test after `wait`.
    pub async fn wait_for(&mut self, wait: Duration, pred: impl Fn(&SseEvent) -> bool) -> SseEvent {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(event) if pred(&event) => return event,
                Some(_) => continue,
                None => panic!("no matching event within {wait:?} (ended: {})", self.ended),
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Polls `check` until it is true or `wait` passes.
pub async fn eventually(wait: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Whether `viewer` lists the peer `peer_id` in `state` within 15 s.
pub async fn lists(
    viewer: &goop2::modes::peer::RunningPeer,
    peer_id: &str,
    state: goop2::services::presence::peer_table::PeerState,
) -> bool {
    eventually(Duration::from_secs(15), async || {
        viewer
            .table
            .entry(&peer_id.parse().expect("a peer ID"))
            .await
            .is_some_and(|entry| entry.state == state)
    })
    .await
}

/// Signs in to an owner interface (console, settings viewer, launcher) at `base`; returns the
/// cookie.
pub async fn sign_in(base: &str, password: &str) -> String {
    login_cookie(&format!("{base}/login"), password).await
}

/// Signs in to a hub's administration at `base`; returns the cookie.
pub async fn hub_admin_cookie(base: &str, password: &str) -> String {
    login_cookie(&format!("{base}/admin/login"), password).await
}

/// POSTs `password` to login form `url`; the session cookie of its 303.
async fn login_cookie(url: &str, password: &str) -> String {
    let response = no_redirects()
        .post(url)
        .form(&[("password", password)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 303, "signing in at {url}");
    response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// A client that reports redirects instead of following them.
pub fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The value of hidden form input `name` in `html`.
pub fn hidden(html: &str, name: &str) -> String {
    html.split(&format!("name=\"{name}\" value=\""))
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no {name} in page"))
        .to_owned()
}

/// The `content` of `<meta name="{name}" …>` in `html`.
pub fn meta(html: &str, name: &str) -> String {
    html.split(&format!("<meta name=\"{name}\" content=\""))
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no meta {name} in page"))
        .to_owned()
}

/// A hub directory for the `goop2` binary: port 0, no viewer, the given TTL and peer database.
pub fn binary_hub_dir(ttl_seconds: u32, peer_db_path: &str) -> tempfile::TempDir {
    binary_hub_dir_with(|c| {
        c.presence.ttl_seconds = ttl_seconds;
        c.presence.peer_db_path = peer_db_path.into();
    })
}

/// A rendezvous-only hub's settings on a free port, without a viewer.
fn hub_config() -> Config {
    let mut config = Config::default();
    config.presence.rendezvous_only = true;
    config.presence.rendezvous_host = true;
    config.presence.rendezvous_port = Some(0);
    config.viewer.http_addr = String::new();
    config
}

/// Overwrites the SQLite database at `db` and its WAL and shared-memory files with garbage, as
/// something outside the program destroying them would.
///
/// Each file is overwritten in place (at least its first 8 KiB), never shortened: SQLite maps
/// the shared-memory file into the hub's process — here the test's own — and a mapped page cut
/// off by a truncation kills the process that touches it (SIGBUS).
pub fn destroy_sqlite_file(db: &std::path::Path) {
    use std::io::Write;
    for suffix in ["", "-wal", "-shm"] {
        let file = format!("{}{suffix}", db.display());
        if !std::path::Path::new(&file).exists() {
            continue;
        }
        let mut opened = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
        let length = opened.metadata().unwrap().len().max(8192);
        opened.write_all(&vec![0xA5u8; length as usize]).unwrap();
    }
}

/// A hub directory for the `goop2` binary (port 0, no viewer), with `edit` applied.
pub fn binary_hub_dir_with(edit: impl FnOnce(&mut Config)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut config = hub_config();
    edit(&mut config);
    config.save(&dir.path().join("goop.json")).unwrap();
    dir
}

/// The `goop2 rendezvous` binary, with its bound address read from its log.
pub struct HubProcess {
    pub child: Child,
    pub url: String,
    /// Everything it has written to standard output so far.
    pub output: std::sync::Arc<std::sync::Mutex<String>>,
}

impl HubProcess {
    pub fn start(dir: &std::path::Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_goop2"))
            .args(["rendezvous", dir.to_str().unwrap()])
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (found, addr) = std::sync::mpsc::channel();
        let output = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let output_for_reader = output.clone();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                {
                    let mut output = output_for_reader.lock().unwrap();
                    output.push_str(&line);
                    output.push('\n');
                }
                if !sent && let Some(rest) = line.split("listening on http://").nth(1) {
                    let _ = found.send(rest.split_whitespace().next().unwrap_or("").to_owned());
                    sent = true;
                }
            }
        });
        let addr = addr
            .recv_timeout(Duration::from_secs(20))
            .expect("the hub starts");
        HubProcess {
            child,
            url: format!("http://{addr}"),
            output,
        }
    }

    /// What the process has logged so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long a peer process may take to start or to stop.
const PROCESS_WAIT: Duration = Duration::from_secs(30);

/// `goop2 peer` as a process, its log in a file.
pub struct PeerProcess {
    pub child: Child,
    pub peer_id: libp2p::PeerId,
    log: std::path::PathBuf,
}

impl PeerProcess {
    pub fn start(dir: &std::path::Path) -> Self {
        let log = dir.join("peer.log");
        let child = Command::new(env!("CARGO_BIN_EXE_goop2"))
            .args(["peer", dir.to_str().unwrap()])
            .env("RUST_LOG", "info")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        let peer_id = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(rest) = text.split("Peer ").nth(1)
                && let Some(id) = rest
                    .split(" is running")
                    .next()
                    .filter(|_| rest.contains(" is running"))
            {
                break id.trim().parse().unwrap();
            }
            assert!(started.elapsed() < PROCESS_WAIT, "the peer starts: {text}");
            std::thread::sleep(Duration::from_millis(50));
        };
        PeerProcess {
            child,
            peer_id,
            log,
        }
    }

    pub fn log_text(&self) -> String {
        let mut text = String::new();
        std::fs::File::open(&self.log)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        text
    }

    /// Stops the peer as an owner would (it writes what it holds and says goodbye).
    pub fn stop(&mut self) {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let started = std::time::Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            assert!(started.elapsed() < PROCESS_WAIT, "the peer stops");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How much the peak RSS of a hub process (started from [`binary_hub_dir_with`], 1,000 streams
/// allowed per address) grows per connection over `count` connections that `open` makes to it
/// at the given address (see [`peak_rss_per_connection`]): KiB per connection, and in all. The
/// connections and the hub are closed once measured.
pub async fn hub_memory_per_connection<T, F, Fut>(block: u8, count: u32, mut open: F) -> (f64, u64)
where
    F: FnMut(SocketAddr, std::net::IpAddr) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let dir = binary_hub_dir_with(|c| c.presence.max_streams_per_ip = 1000);
    let hub = HubProcess::start(dir.path());
    let addr: SocketAddr = hub.url.trim_start_matches("http://").parse().unwrap();
    let (each, grown, connections) =
        peak_rss_per_connection(hub.child.id(), block, count, |from| open(addr, from)).await;
    drop(connections);
    (each, grown)
}

/// How much the peak RSS of process `pid` grew per connection over `count` connections that
/// `open` makes, each from a loopback address of its own (127.0.`block`.x for 50 opened first, to
/// warm up, then 127.0.`block + 1`.x onwards). The connections are returned, still open.
async fn peak_rss_per_connection<T, F, Fut>(
    pid: u32,
    block: u8,
    count: u32,
    mut open: F,
) -> (f64, u64, Vec<T>)
where
    F: FnMut(std::net::IpAddr) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    use std::net::Ipv4Addr;
    let mut held = Vec::new();
    // The first connections allocate what every later one shares.
    for n in 0..50u8 {
        held.push(open(Ipv4Addr::new(127, 0, block, 1 + n).into()).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = peak_rss_kib(pid);
    for n in 0..count {
        let from = Ipv4Addr::new(127, 0, block + 1 + (n / 200) as u8, 1 + (n % 200) as u8);
        held.push(open(from.into()).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let grown = peak_rss_kib(pid).saturating_sub(before);
    (grown as f64 / f64::from(count), grown, held)
}

/// Peak resident memory of a process, in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A port free on 127.0.0.1 right now, for TCP and UDP alike, for a process to bind later (and
/// bind again after a restart). See [`free_ports`].
pub fn free_port() -> u16 {
    free_ports(1)
}

/// The first of `count` consecutive ports free on 127.0.0.1 right now, TCP and UDP alike, for
/// processes to bind later. They are taken below the kernel's ephemeral range (32768 and up), so
/// no outgoing connection of another test is given one in between, and no later call of this
/// process hands them out again.
pub fn free_ports(count: u16) -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    const FIRST: u16 = 20_000;
    const SPAN: u16 = 12_000;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        (std::process::id() % u32::from(SPAN)) as u16 + 1,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    let free = |port: u16| {
        std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
    };
    for _ in 0..SPAN {
        let first = FIRST + NEXT.fetch_add(count, Ordering::SeqCst) % SPAN;
        if first
            .checked_add(count)
            .is_some_and(|end| end <= FIRST + SPAN)
            && (first..first + count).all(free)
        {
            return first;
        }
    }
    panic!("no {count} free ports in {FIRST}..{}", FIRST + SPAN)
}

/// A node's loopback TCP address with its peer ID.
pub async fn loopback_tcp(node: &goop2::services::node::Node) -> libp2p::Multiaddr {
    let tcp = node
        .listen_addrs()
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.to_string().starts_with("/ip4/127.0.0.1/tcp/"))
        .expect("a loopback TCP listener");
    format!("{tcp}/p2p/{}", node.peer_id()).parse().unwrap()
}

/// A peer labelled `host` that hosts a hub and one labelled `guest` that uses it (with
/// `edit_guest` applied), each listing the other.
pub async fn host_and_guest(
    host: &str,
    guest: &str,
    edit_guest: impl FnOnce(&mut Config),
) -> (TestPeer, TestPeer) {
    use goop2::services::presence::peer_table::PeerState;
    let host = TestPeer::spawn(host, |c| {
        short_ttl(c, 6);
        c.presence.rendezvous_host = true;
    })
    .await;
    let hub = format!("http://{}", host.hub.as_ref().unwrap().hub_addr);
    let guest = TestPeer::spawn(guest, |c| {
        short_ttl(c, 6);
        c.presence.rendezvous_wan = hub;
        edit_guest(c);
    })
    .await;
    assert!(lists(&host, &guest.peer_id.to_base58(), PeerState::Online).await);
    assert!(lists(&guest, &host.peer_id.to_base58(), PeerState::Online).await);
    (host, guest)
}

/// A bare node with the message transport and nothing else, connected to `to` (which vouches
/// for it): it sends what it likes; subscribe, then serve the returned sessions to hear back.
pub async fn mq_stranger(
    to: &TestPeer,
) -> (
    goop2::services::node::Node,
    goop2::services::mq::Mq,
    tokio::sync::mpsc::Receiver<goop2::services::node::protocols::Session>,
    tokio::sync::watch::Sender<bool>,
) {
    use goop2::services::node::protocols::{Protocols, mq as wire};
    let mut protocols = Protocols::new();
    let sessions = protocols.sessions(wire::PROTOCOL, wire::limits());
    let node = goop2::services::node::Node::start(
        Keypair::generate_ed25519(),
        loopback_node_options(),
        protocols,
    )
    .await
    .unwrap()
    .0;
    node.dial(loopback_tcp(&to.node).await).await.unwrap();
    to.node.vouch(node.peer_id(), Vec::new()).await.unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mq = goop2::services::mq::Mq::new(
        node.clone(),
        goop2::services::mq::MqOptions::default(),
        stopped,
    );
    (node, mq, sessions, stop)
}
