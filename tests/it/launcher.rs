//! The launcher (`goop2 launch`) as its owner uses it, through its HTTP API: peers created,
//! started as child processes, stopped, restarted, deleted to the trash and restored; a crashing
//! child restarted with backoff and its error shown; peers run by hand left alone; a launcher
//! killed with `kill -9` leaving no child behind. Every process is the real binary.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{eventually, free_ports, get_text, sign_in};

/// How long a launcher, or a peer it starts, has to come up.
const WAIT: Duration = Duration::from_secs(30);

/// A `goop2 launch` process on a directory of its own, whose new peers take ports from a block
/// of free ones.
pub(crate) struct LauncherProcess {
    child: Child,
    pub base: String,
    client: reqwest::Client,
    csrf: String,
}

/// A fresh directory for a launcher, with `launcher.json` setting where ports start (and
/// `extra` settings).
pub(crate) fn launcher_dir(extra: Value) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let first = free_ports(30);
    let mut settings = json!({"ports": {"console": first, "p2p": first + 10, "hub": first + 20}});
    for (key, value) in extra.as_object().unwrap() {
        settings[key] = value.clone();
    }
    std::fs::write(
        dir.path().join("launcher.json"),
        serde_json::to_vec_pretty(&settings).unwrap(),
    )
    .unwrap();
    dir
}

impl LauncherProcess {
    pub async fn start(dir: &Path) -> LauncherProcess {
        let mut launcher = Self::spawn(dir, &[]);
        launcher.csrf = page_csrf(&get_text(&launcher.base).await);
        launcher
    }

    /// Starts the launcher and waits for its URL, without reading the page.
    fn spawn(dir: &Path, args: &[&str]) -> LauncherProcess {
        let log = dir.join("launcher.log");
        let child = Command::new(env!("CARGO_BIN_EXE_goop2"))
            .args(["launch", "--dir", dir.to_str().unwrap(), "--no-browser"])
            .args(["--addr", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let base = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(url) = text
                .lines()
                .find_map(|line| line.strip_prefix("Launcher: "))
            {
                break url.trim_end_matches('/').to_owned();
            }
            assert!(started.elapsed() < WAIT, "the launcher starts: {text}");
            std::thread::sleep(Duration::from_millis(50));
        };
        LauncherProcess {
            child,
            base,
            client: reqwest::Client::new(),
            csrf: String::new(),
        }
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header("x-csrf-token", &self.csrf)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn state(&self) -> Value {
        serde_json::from_str(&get_text(&format!("{}/api/peers", self.base)).await).unwrap()
    }

    async fn peer(&self, name: &str) -> Value {
        self.state().await["peers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    }

    async fn create(&self, body: Value) -> Value {
        let (status, peer) = self.post("/api/peers", body).await;
        assert_eq!(status, 201, "{peer}");
        peer
    }

    /// Waits until peer `name` is in `phase`; returns it then.
    async fn wait_phase(&self, name: &str, phase: &str, wait: Duration) -> Value {
        let started = Instant::now();
        loop {
            let peer = self.peer(name).await;
            if peer["process"]["phase"] == phase {
                return peer;
            }
            assert!(started.elapsed() < wait, "{name} never {phase}: {peer}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Peer `name`'s output, read live until it contains `needle`.
    async fn output_until(&self, name: &str, needle: &str) -> String {
        use futures_util::StreamExt;
        let response = self
            .client
            .get(format!("{}/api/peers/{name}/logs", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let mut stream = response.bytes_stream();
        let mut seen = String::new();
        while !seen.contains(needle) {
            match tokio::time::timeout(WAIT, stream.next()).await {
                Ok(Some(Ok(chunk))) => seen.push_str(&String::from_utf8_lossy(&chunk)),
                _ => panic!("no {needle:?} in {name}'s output: {seen}"),
            }
        }
        seen
    }

    /// Stops the launcher as its owner would (Ctrl-C); its children stop with it.
    fn stop(&mut self) {
        signal(self.child.id(), "-TERM");
        let started = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            assert!(started.elapsed() < WAIT, "the launcher stops");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for LauncherProcess {
    fn drop(&mut self) {
        if self.child.try_wait().unwrap().is_none() {
            signal(self.child.id(), "-TERM");
            let started = Instant::now();
            while self.child.try_wait().unwrap().is_none() && started.elapsed() < WAIT {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn signal(pid: u32, which: &str) {
    Command::new("kill")
        .args([which, &pid.to_string()])
        .status()
        .unwrap();
}

/// The CSRF token of the launcher's page.
fn page_csrf(html: &str) -> String {
    html.split("data-csrf=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page carries its token")
        .to_owned()
}

/// True while process `pid` exists and is not a zombie.
fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(") ")
                .and_then(|(_, rest)| rest.chars().next())
        })
        .is_some_and(|state| state != 'Z' && state != 'X')
}

async fn wait_dead(pid: u64) -> bool {
    eventually(WAIT, async || !alive(pid)).await
}

fn pid_of(peer: &Value) -> u64 {
    peer["process"]["pid"]
        .as_u64()
        .expect("a running child has a pid")
}

fn console_of(peer: &Value) -> String {
    format!("http://{}", peer["console"].as_str().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_are_created_started_stopped_restarted_deleted_and_restored() {
    let dir = launcher_dir(json!({}));
    let launcher = LauncherProcess::start(dir.path()).await;
    assert_eq!(launcher.state().await["peers"], json!([]));

    // Created: a peer with a template hosting a hub, and one joined to that hub.
    let alice = launcher
        .create(
            json!({"name": "alice", "label": "Alice", "template": "guestbook", "host_hub": true}),
        )
        .await;
    assert_eq!(alice["label"], "Alice");
    assert_eq!(alice["process"]["phase"], "stopped");
    assert_eq!(alice["template"], "builtin/guestbook (at the first start)");
    let hub = format!("http://127.0.0.1:{}", alice["hub_port"]);
    let bob = launcher
        .create(json!({"name": "bob", "hub": hub, "autostart": true}))
        .await;
    assert_eq!(bob["label"], "bob");
    assert_eq!(bob["joins"], hub.as_str());
    assert_eq!(bob["autostart"], true);
    // No two ports alike.
    let mut ports: Vec<u64> = [&alice, &bob]
        .iter()
        .flat_map(|p| {
            [
                p["console"]
                    .as_str()
                    .unwrap()
                    .rsplit(':')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap(),
                p["p2p_port"].as_u64().unwrap(),
            ]
        })
        .chain(alice["hub_port"].as_u64())
        .collect();
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), 5, "{alice} {bob}");
    // Each directory is a complete peer, its identity included.
    let made = goop2::config::Config::load_dir(&dir.path().join("alice"))
        .unwrap()
        .config;
    assert!(made.presence.rendezvous_host);
    assert!(dir.path().join("bob/data/identity.key").is_file());

    // Refused, with nothing changed: bad names, a name taken, a missing token.
    for name in ["../escape", "", "a b", ".hidden", &"x".repeat(41)] {
        let (status, body) = launcher.post("/api/peers", json!({"name": name})).await;
        assert_eq!(status, 400, "{name:?}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("peer name"),
            "{body}"
        );
    }
    let (status, body) = launcher.post("/api/peers", json!({"name": "alice"})).await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = launcher
        .post(
            "/api/peers",
            json!({"name": "carol", "template": "no-such-template"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no built-in template"),
        "{body}"
    );
    let refused = launcher
        .client
        .post(format!("{}/api/peers/alice/start", launcher.base))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 403);
    let names: Vec<Value> = launcher.state().await["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].clone())
        .collect();
    assert_eq!(names, [json!("alice"), json!("bob")]);

    // Each on a LAN tag of its own: they can meet only at Alice's hub.
    for name in ["alice", "bob"] {
        let path = dir.path().join(name).join("goop.json");
        let mut config = goop2::config::Config::load(&path).unwrap().config;
        config.p2p.mdns_tag = format!("{name}-{}", rand::random::<u32>());
        config.save(&path).unwrap();
    }

    // Started: both run as children; Bob meets Alice at her hub and reads her site, made from
    // the template she was created with.
    let (status, body) = launcher.post("/api/start-all", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let alice = launcher.wait_phase("alice", "running", WAIT).await;
    let bob = launcher.wait_phase("bob", "running", WAIT).await;
    let alice_id = alice["peer_id"].as_str().unwrap().to_owned();
    let bob_console = console_of(&bob);
    let alice_site = format!("{bob_console}/p/{alice_id}/");
    assert!(
        eventually(WAIT, async || {
            reqwest::get(&alice_site)
                .await
                .ok()
                .filter(|r| r.status().is_success())
                .is_some()
        })
        .await,
        "Bob reads Alice's site"
    );
    assert!(
        eventually(WAIT, async || {
            launcher.peer("alice").await["template"] == "guestbook"
        })
        .await,
        "the template was applied: {}",
        launcher.peer("alice").await
    );
    let index = get_text(&alice_site).await;
    assert!(index.to_lowercase().contains("guestbook"), "{index}");
    // The lock of a running peer names its process.
    let lock: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("alice/goop.lock")).unwrap())
            .unwrap();
    assert_eq!(lock["pid"], alice["process"]["pid"]);

    // Its output is kept and streamed.
    launcher
        .output_until("alice", &format!("Peer {alice_id} is running"))
        .await;

    // Stopped: the process is gone and the directory is free.
    let bob_pid = pid_of(&bob);
    let (status, stopped) = launcher.post("/api/peers/bob/stop", json!({})).await;
    assert_eq!(status, 200, "{stopped}");
    assert_eq!(stopped["process"]["phase"], "stopped");
    assert!(!alive(bob_pid));
    // It stopped on SIGTERM, cleanly, not killed.
    launcher
        .output_until("bob", "stopped; the process exited with status 0")
        .await;
    assert!(goop2::services::dirlock::holder(&dir.path().join("bob")).is_none());

    // Restarted: a new process.
    let alice_pid = pid_of(&alice);
    let (status, restarted) = launcher.post("/api/peers/alice/restart", json!({})).await;
    assert_eq!(status, 200, "{restarted}");
    assert_eq!(restarted["process"]["phase"], "running");
    assert_ne!(pid_of(&restarted), alice_pid);
    assert!(!alive(alice_pid));
    // Stopped from outside (SIGTERM, once it is up): left stopped, not started again.
    let outside = pid_of(&restarted);
    let lock = dir.path().join("alice/goop.lock");
    assert!(
        eventually(WAIT, async || {
            std::fs::read_to_string(&lock).is_ok_and(|text| text.contains("console"))
        })
        .await
    );
    signal(outside as u32, "-TERM");
    let stopped = launcher.wait_phase("alice", "stopped", WAIT).await;
    assert_eq!(stopped["process"]["last_exit"], "exited with status 0");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(launcher.peer("alice").await["process"]["phase"], "stopped");
    let (status, _) = launcher.post("/api/peers/alice/start", json!({})).await;
    assert_eq!(status, 200);
    launcher.wait_phase("alice", "running", WAIT).await;

    // Deleted only when confirmed with its name; then in the trash, keys and all.
    let (status, body) = launcher.post("/api/peers/bob/delete", json!({})).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = launcher
        .post("/api/peers/bob/delete", json!({"confirm": "alice"}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(dir.path().join("bob").is_dir());
    let (status, trashed) = launcher
        .post("/api/peers/bob/delete", json!({"confirm": "bob"}))
        .await;
    assert_eq!(status, 200, "{trashed}");
    assert!(!dir.path().join("bob").exists());
    let id = trashed["id"].as_str().unwrap();
    let in_trash = dir.path().join(".trash").join(id);
    assert!(in_trash.join("goop.json").is_file());
    assert!(in_trash.join("data/identity.key").is_file());
    let state = launcher.state().await;
    assert_eq!(state["peers"].as_array().unwrap().len(), 1);
    assert_eq!(state["trash"][0]["name"], "bob");
    assert_eq!(state["trash"][0]["peer_id"], bob["peer_id"]);
    let settings: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("launcher.json")).unwrap())
            .unwrap();
    assert_eq!(settings["autostart"], json!([]), "{settings}");

    // Restored under its name, with the same identity.
    let (status, restored) = launcher
        .post(&format!("/api/trash/{id}/restore"), json!({}))
        .await;
    assert_eq!(status, 200, "{restored}");
    assert_eq!(restored["peer"]["peer_id"], bob["peer_id"]);
    assert_eq!(restored["notes"], json!([]));
    assert_eq!(launcher.state().await["trash"], json!([]));
    let (status, _) = launcher
        .post(&format!("/api/trash/{id}/restore"), json!({}))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_peer_is_restarted_with_backoff_and_its_error_shown() {
    let dir = launcher_dir(json!({}));
    let launcher = LauncherProcess::start(dir.path()).await;
    let peer = launcher.create(json!({"name": "crashy"})).await;
    // Something else holds its console's port: the peer exits at once, saying why.
    let taken = std::net::TcpListener::bind(peer["console"].as_str().unwrap()).unwrap();
    let (status, body) = launcher.post("/api/peers/crashy/start", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let crashed = launcher.wait_phase("crashy", "restarting", WAIT).await;
    let error = crashed["process"]["last_error"]
        .as_str()
        .unwrap_or_default();
    assert!(error.contains("cannot listen on"), "{crashed}");
    assert!(
        crashed["process"]["last_exit"]
            .as_str()
            .unwrap()
            .contains("exited with status 1"),
        "{crashed}"
    );
    // Tried again, waiting longer each time.
    let first_retry = crashed["process"]["retry_at_ms"].as_i64().unwrap();
    let started = Instant::now();
    let again = loop {
        let peer = launcher.peer("crashy").await;
        if peer["process"]["restarts"].as_u64().unwrap() >= 2
            && peer["process"]["phase"] == "restarting"
        {
            break peer;
        }
        assert!(started.elapsed() < WAIT, "{peer}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let second_retry = again["process"]["retry_at_ms"].as_i64().unwrap();
    assert!(second_retry - first_retry >= 2_500, "{crashed} {again}");
    // The crash is in its output too.
    let seen = launcher
        .output_until("crashy", "exited with status 1")
        .await;
    assert!(seen.contains("cannot listen on"), "{seen}");
    // The port is free again: the next try runs.
    drop(taken);
    let running = launcher.wait_phase("crashy", "running", WAIT).await;
    assert!(
        running["process"]["restarts"].as_u64().unwrap() >= 3,
        "{running}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launcher_killed_with_sigkill_leaves_no_child_and_the_next_one_sees_the_truth() {
    let dir = launcher_dir(json!({}));
    let mut launcher = LauncherProcess::start(dir.path()).await;
    launcher
        .create(json!({"name": "one", "autostart": true}))
        .await;
    launcher.create(json!({"name": "two"})).await;
    launcher.post("/api/peers/one/start", json!({})).await;
    launcher.post("/api/peers/two/start", json!({})).await;
    let one = launcher.wait_phase("one", "running", WAIT).await;
    let two = launcher.wait_phase("two", "running", WAIT).await;

    launcher.child.kill().unwrap();
    launcher.child.wait().unwrap();
    for peer in [&one, &two] {
        assert!(
            wait_dead(pid_of(peer)).await,
            "{peer} outlived its launcher"
        );
    }

    // The next launcher finds them stopped, and starts the one marked to start with it.
    let launcher = LauncherProcess::start(dir.path()).await;
    let one = launcher.wait_phase("one", "running", WAIT).await;
    assert_eq!(launcher.peer("two").await["process"]["phase"], "stopped");
    assert_eq!(launcher.peer("two").await["elsewhere"], Value::Null);
    // Stopping the launcher stops its children.
    let mut launcher = launcher;
    launcher.stop();
    assert!(!alive(pid_of(&one)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_run_by_hand_is_shown_running_and_left_alone() {
    let dir = launcher_dir(json!({}));
    let launcher = LauncherProcess::start(dir.path()).await;
    launcher.create(json!({"name": "manual"})).await;
    let peer_dir = dir.path().join("manual");
    let mut by_hand = crate::support::PeerProcess::start(&peer_dir);
    let pid = by_hand.child.id() as u64;
    assert!(
        eventually(WAIT, async || {
            launcher.peer("manual").await["elsewhere"]["pid"] == pid
        })
        .await,
        "{}",
        launcher.peer("manual").await
    );
    let peer = launcher.peer("manual").await;
    assert_eq!(peer["process"]["phase"], "stopped");
    assert!(peer["elsewhere"]["console"].as_str().is_some(), "{peer}");
    for action in ["start", "stop"] {
        let (status, body) = launcher
            .post(&format!("/api/peers/manual/{action}"), json!({}))
            .await;
        assert_eq!(status, 409, "{action}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains(&format!("{pid}")),
            "{body}"
        );
    }
    let (status, body) = launcher
        .post("/api/peers/manual/delete", json!({"confirm": "manual"}))
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(peer_dir.join("goop.json").is_file());
    // A second process on the same directory is refused, naming the first.
    let second = Command::new(env!("CARGO_BIN_EXE_goop2"))
        .args(["peer", peer_dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!second.status.success());
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(said.contains(&format!("(pid {pid}) is running")), "{said}");
    // Stopped by hand: the launcher sees it stopped and may start it.
    by_hand.stop();
    assert!(
        eventually(WAIT, async || launcher.peer("manual").await["elsewhere"]
            .is_null())
        .await
    );
    let (status, body) = launcher.post("/api/peers/manual/start", json!({})).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_that_is_not_a_peer_and_a_broken_goop_json_are_shown_not_started() {
    let dir = launcher_dir(json!({}));
    std::fs::create_dir(dir.path().join("photos")).unwrap();
    std::fs::create_dir(dir.path().join("my photos")).unwrap();
    std::fs::create_dir(dir.path().join("broken")).unwrap();
    std::fs::write(dir.path().join("broken/goop.json"), "{\"viewer\": ").unwrap();
    let launcher = LauncherProcess::start(dir.path()).await;
    let photos = launcher.peer("photos").await;
    assert!(
        photos["problem"]
            .as_str()
            .unwrap()
            .contains("not a peer directory"),
        "{photos}"
    );
    let spaced = launcher.peer("my photos").await;
    assert!(
        spaced["problem"].as_str().unwrap().contains("rename it"),
        "{spaced}"
    );
    let broken = launcher.peer("broken").await;
    assert!(
        broken["problem"].as_str().unwrap().contains("goop.json"),
        "{broken}"
    );
    for name in ["photos", "broken"] {
        let (status, body) = launcher
            .post(&format!("/api/peers/{name}/start"), json!({}))
            .await;
        assert_eq!(status, 409, "{body}");
        assert!(
            body["error"].as_str().unwrap().contains("cannot start"),
            "{body}"
        );
    }
    // Nothing was written into them.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("broken/goop.json")).unwrap(),
        "{\"viewer\": "
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("photos"))
            .unwrap()
            .count(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rendezvous_hub_is_created_and_run_as_one() {
    let dir = launcher_dir(json!({}));
    let launcher = LauncherProcess::start(dir.path()).await;
    let (status, body) = launcher
        .post("/api/peers", json!({"name": "nohub", "hub_password": "x"}))
        .await;
    assert_eq!(status, 400, "{body}");
    let hub = launcher
        .create(json!({"name": "hub", "rendezvous_only": true, "hub_password": "hub admin pw"}))
        .await;
    let config = goop2::config::Config::load_dir(&dir.path().join("hub"))
        .unwrap()
        .config;
    assert!(
        config.presence.admin_password.is_argon2_hash(),
        "only the hash is kept"
    );
    assert_eq!(hub["kind"], "rendezvous");
    assert_eq!(hub["peer_id"], Value::Null);
    let (status, body) = launcher
        .post(
            "/api/peers",
            json!({"name": "hub2", "rendezvous_only": true, "template": "blog"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    launcher.post("/api/peers/hub/start", json!({})).await;
    let running = launcher.wait_phase("hub", "running", WAIT).await;
    let health = format!("http://127.0.0.1:{}/healthz", hub["hub_port"]);
    assert!(
        eventually(WAIT, async || {
            reqwest::get(&health)
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await
    );
    // Its administrator signs in with the password given at creation.
    let hub_url = format!("http://127.0.0.1:{}", hub["hub_port"]);
    crate::support::hub_admin_cookie(&hub_url, "hub admin pw").await;
    // Its settings viewer answers where the launcher's "Configure" sends its owner.
    let settings = format!("{}/self", console_of(&hub));
    assert!(
        eventually(WAIT, async || {
            reqwest::get(&settings)
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await
    );
    // Stopped on SIGTERM, cleanly: a hub's child does not wait for its standard input.
    let (status, stopped) = launcher.post("/api/peers/hub/stop", json!({})).await;
    assert_eq!(status, 200, "{stopped}");
    assert!(!alive(pid_of(&running)));
    launcher
        .output_until("hub", "stopped; the process exited with status 0")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_theme_applies_to_every_peers_console_running_or_not() {
    let dir = launcher_dir(json!({}));
    let launcher = LauncherProcess::start(dir.path()).await;
    let p1 = launcher.create(json!({"name": "p1"})).await;
    launcher.create(json!({"name": "p2"})).await;
    launcher.post("/api/peers/p1/start", json!({})).await;
    let pid = pid_of(&launcher.wait_phase("p1", "running", WAIT).await);
    let console = console_of(&p1);
    let theme_of = async |url: &str| match reqwest::get(url).await {
        Ok(response) if response.status().is_success() => {
            let page = response.text().await.unwrap();
            page.split("data-theme=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .map(str::to_owned)
        }
        _ => None,
    };
    // Up, and its lock names its console: from then on it takes the launcher's SIGHUP.
    let lock = dir.path().join("p1/goop.lock");
    assert!(
        eventually(WAIT, async || {
            std::fs::read_to_string(&lock).is_ok_and(|text| text.contains("console"))
                && theme_of(&console).await.as_deref() == Some("dark")
        })
        .await
    );
    let (status, body) = launcher.post("/api/theme", json!({"theme": "light"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["refused"], json!([]));
    for name in ["p1", "p2"] {
        let config = goop2::config::Config::load_dir(&dir.path().join(name))
            .unwrap()
            .config;
        assert_eq!(config.viewer.theme, "light", "{name}");
    }
    assert_eq!(theme_of(&launcher.base).await.as_deref(), Some("light"));
    // The running console shows it without a restart.
    assert!(
        eventually(Duration::from_secs(10), async || {
            theme_of(&console).await.as_deref() == Some("light")
        })
        .await
    );
    let p1_now = launcher.peer("p1").await;
    assert_eq!(pid_of(&p1_now), pid, "the same process: {p1_now}");
    assert_eq!(p1_now["process"]["phase"], "running");
    assert_eq!(p1_now["process"]["restarts"], 0);
    // A peer made later has it too.
    launcher.create(json!({"name": "p3"})).await;
    let config = goop2::config::Config::load_dir(&dir.path().join("p3"))
        .unwrap()
        .config;
    assert_eq!(config.viewer.theme, "light");
    let (status, _) = launcher.post("/api/theme", json!({"theme": "pink"})).await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_protects_the_launcher_and_without_one_it_stays_on_loopback() {
    let hash = {
        let out = Command::new(env!("CARGO_BIN_EXE_goop2"))
            .arg("hash-password")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(b"launcher pw\n")?;
                child.wait_with_output()
            })
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let dir = launcher_dir(json!({"admin_password": hash}));
    let launcher = LauncherProcess::spawn(dir.path(), &[]);
    let api = format!("{}/api/peers", launcher.base);
    assert_eq!(reqwest::get(&api).await.unwrap().status().as_u16(), 401);
    let page = crate::support::no_redirects()
        .get(&launcher.base)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 303);
    let cookie = sign_in(&launcher.base, "launcher pw").await;
    let client = reqwest::Client::new();
    let html = client
        .get(&launcher.base)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = page_csrf(&html);
    let created = client
        .post(&api)
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&json!({"name": "safe"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    // The session's token, not another one.
    let forged = client
        .post(&api)
        .header("cookie", &cookie)
        .header("x-csrf-token", "not-the-token")
        .json(&json!({"name": "forged"}))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403);
    drop(launcher);

    // Without a password: another machine's address is refused at start, and a request through
    // a proxy (or naming another host) is refused.
    let open = launcher_dir(json!({}));
    let refused = Command::new(env!("CARGO_BIN_EXE_goop2"))
        .args(["launch", "--dir", open.path().to_str().unwrap()])
        .args(["--addr", "0.0.0.0:0", "--no-browser"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("admin_password"), "{said}");
    let launcher = LauncherProcess::start(open.path()).await;
    let proxied = reqwest::Client::new()
        .get(format!("{}/api/peers", launcher.base))
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(proxied.status().as_u16(), 403);
    let rebound = reqwest::Client::new()
        .get(format!("{}/api/peers", launcher.base))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status().as_u16(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_arguments_goop2_runs_the_launcher_on_peers_and_opens_browser() {
    let cwd = tempfile::tempdir().unwrap();
    let opened = cwd.path().join("opened.txt");
    let browser = cwd.path().join("browser.sh");
    std::fs::write(
        &browser,
        format!("#!/bin/sh\necho \"$1\" > {}\n", opened.display()),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&browser, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let log = cwd.path().join("out.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_goop2"))
        .current_dir(cwd.path())
        .env("BROWSER", &browser)
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let url = loop {
        let text = std::fs::read_to_string(&opened).unwrap_or_default();
        if !text.is_empty() {
            break text.trim().to_owned();
        }
        assert!(started.elapsed() < WAIT, "no browser opened");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains(&format!("Launcher: {url}"))
    );
    assert!(get_text(&url).await.contains("Goop² launcher"));
    assert!(cwd.path().join("peers").is_dir());
    signal(child.id(), "-TERM");
    assert!(child.wait().unwrap().success());
}
