//! Network namespaces for tests and benchmarks that need real links, routers and NATs: `ip`
//! and `nft` run as root, `goop2` processes started inside a namespace, and HTTP requests made
//! from a thread that entered one. [`World`] is a small internet: a "public" network
//! (11.0.0.0/24, global addresses that lead nowhere else) with a hub's address, hosts on it, and
//! two homes (192.168.N.0/24) each behind a router namespace of its own that masquerades with
//! nftables and lets in only what answers what went out. Nothing routes between the two homes.
//!
//! Shared by the integration tests and `benches/nat.rs` (which includes this file by path).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use goop2::config::Config;
use serde_json::Value;

pub const HUB_IP: &str = "11.0.0.1";
pub const HUB_PORT: u16 = 8787;
pub const RELAY_PORT: u16 = 4001;
/// Where a peer's console answers inside its namespace.
pub const CONSOLE: &str = "http://127.0.0.1:8080";
/// How long each step may take: AutoNAT's first probe, a reservation, the hub's presence, a
/// hole punch.
pub const STEP: Duration = Duration::from_secs(60);

/// Runs `ip` with `args`; what it said on failure.
pub fn ip(args: &[&str]) -> Result<(), String> {
    run("ip", args, None)
}

/// A `goop2` process in a namespace, killed on drop; its log lines arrive on `lines`.
pub struct NsPeer {
    pub child: Child,
    lines: mpsc::Receiver<String>,
}

impl NsPeer {
    /// `goop2 <mode> <dir>` in namespace `ns`.
    pub fn run(ns: &str, mode: &str, dir: &std::path::Path) -> NsPeer {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_goop2"), mode])
            .arg(dir)
            .env(
                "RUST_LOG",
                std::env::var("NETNS_LOG").unwrap_or("info".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("ip netns exec runs");
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    return;
                }
            }
        });
        NsPeer { child, lines }
    }

    /// The log lines written since the last look.
    pub fn drain(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    /// Waits for a log line containing every one of `parts`; returns what was seen otherwise.
    pub fn wait_for(&self, parts: &[&str], wait: Duration) -> Result<String, Vec<String>> {
        let deadline = Instant::now() + wait;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if parts.iter().all(|p| line.contains(p)) => return Ok(line),
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        Err(seen)
    }
}

impl Drop for NsPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a home router maps and filters.
#[derive(Clone, Copy, PartialEq)]
pub enum Nat {
    /// One public port per home port whatever the destination (what most home routers do),
    /// and only answers let in: hole punching works.
    Cone,
    /// A random public port for every destination: the port the hub sees is not the one the
    /// other peer would have to reach, so hole punching cannot work.
    Symmetric,
}

/// The namespaces and links of one test, removed on drop.
pub struct World {
    /// The public network's namespace, where the hub runs (at [`HUB_IP`]).
    pub public: String,
    routers: [String; 2],
    /// The two homes, each behind its router.
    pub homes: [String; 2],
    /// Hosts on the public network itself, with no NAT (11.0.0.11, 11.0.0.12, …).
    pub open: Vec<String>,
}

/// Runs `program` with `args`, feeding it `stdin`; what it said on failure.
fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<(), String> {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run `{program}`: {e}"))?;
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .map_err(|e| format!("cannot feed `{program}`: {e}"))?;
    }
    drop(child.stdin.take());
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

impl World {
    fn create(nat: Nat, open_hosts: usize) -> Result<World, String> {
        let tag: u32 = rand::random::<u32>() % 100_000;
        let world = World {
            public: format!("gnp{tag}"),
            routers: [format!("gnr1{tag}"), format!("gnr2{tag}")],
            homes: [format!("gnh1{tag}"), format!("gnh2{tag}")],
            open: (1..=open_hosts).map(|n| format!("gno{n}{tag}")).collect(),
        };
        let public = &world.public;
        ip(&["netns", "add", public])?;
        ip(&["-n", public, "link", "set", "lo", "up"])?;
        ip(&["-n", public, "link", "add", "br0", "type", "bridge"])?;
        ip(&[
            "-n",
            public,
            "addr",
            "add",
            &format!("{HUB_IP}/24"),
            "dev",
            "br0",
        ])?;
        ip(&["-n", public, "link", "set", "br0", "up"])?;
        for (i, (router, home)) in world.routers.iter().zip(&world.homes).enumerate() {
            let n = i + 1;
            let (wan, port) = (format!("gw{n}{tag}"), format!("gp{n}{tag}"));
            let (lan, inside) = (format!("gl{n}{tag}"), format!("gh{n}{tag}"));
            ip(&["netns", "add", router])?;
            ip(&["netns", "add", home])?;
            ip(&[
                "link", "add", &wan, "netns", router, "type", "veth", "peer", "name", &port,
                "netns", public,
            ])?;
            ip(&["-n", public, "link", "set", &port, "master", "br0", "up"])?;
            ip(&[
                "-n",
                router,
                "addr",
                "add",
                &format!("11.0.0.{}/24", n + 1),
                "dev",
                &wan,
            ])?;
            ip(&[
                "link", "add", &lan, "netns", router, "type", "veth", "peer", "name", &inside,
                "netns", home,
            ])?;
            ip(&[
                "-n",
                router,
                "addr",
                "add",
                &format!("192.168.{n}.1/24"),
                "dev",
                &lan,
            ])?;
            ip(&[
                "-n",
                home,
                "addr",
                "add",
                &format!("192.168.{n}.2/24"),
                "dev",
                &inside,
            ])?;
            for (ns, dev) in [(router, &wan), (router, &lan), (home, &inside)] {
                ip(&["-n", ns, "link", "set", "lo", "up"])?;
                ip(&["-n", ns, "link", "set", dev, "up"])?;
            }
            ip(&[
                "-n",
                home,
                "route",
                "add",
                "default",
                "via",
                &format!("192.168.{n}.1"),
            ])?;
            ip(&[
                "netns",
                "exec",
                router,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ])?;
            let mapping = match nat {
                Nat::Cone => "",
                Nat::Symmetric => " random,fully-random",
            };
            let rules = format!(
                "table ip home {{\n\
                 chain postrouting {{ type nat hook postrouting priority srcnat; policy accept; \
                 oifname \"{wan}\" masquerade{mapping}; }}\n\
                 chain forward {{ type filter hook forward priority filter; policy drop; \
                 ct state established,related accept; iifname \"{lan}\" accept; }}\n\
                 chain input {{ type filter hook input priority filter; policy drop; \
                 ct state established,related accept; iifname \"lo\" accept; \
                 iifname \"{lan}\" accept; }}\n\
                 }}\n"
            );
            run(
                "ip",
                &["netns", "exec", router, "nft", "-f", "-"],
                Some(&rules),
            )?;
        }
        for (i, host) in world.open.iter().enumerate() {
            let n = i + 1;
            let (inside, port) = (format!("go{n}{tag}"), format!("gq{n}{tag}"));
            ip(&["netns", "add", host])?;
            ip(&[
                "link", "add", &inside, "netns", host, "type", "veth", "peer", "name", &port,
                "netns", public,
            ])?;
            ip(&["-n", public, "link", "set", &port, "master", "br0", "up"])?;
            ip(&[
                "-n",
                host,
                "addr",
                "add",
                &format!("11.0.0.{}/24", 10 + n),
                "dev",
                &inside,
            ])?;
            ip(&["-n", host, "link", "set", "lo", "up"])?;
            ip(&["-n", host, "link", "set", &inside, "up"])?;
        }
        Ok(world)
    }
}

impl World {
    /// The two routers drop whatever comes from each other, before their own rules: the
    /// homes meet only through the hub, and no hole can be punched between them.
    pub fn block_between_homes(&self) {
        for (n, router) in self.routers.iter().enumerate() {
            let other = if n == 0 { 3 } else { 2 };
            let rules = format!(
                "table ip between {{\n\
                 chain forward {{ type filter hook forward priority -10; policy accept; \
                 ip saddr 11.0.0.{other} drop; }}\n\
                 chain input {{ type filter hook input priority -10; policy accept; \
                 ip saddr 11.0.0.{other} drop; }}\n\
                 }}\n"
            );
            run(
                "ip",
                &["netns", "exec", router, "nft", "-f", "-"],
                Some(&rules),
            )
            .unwrap();
        }
    }

    /// Undoes [`World::block_between_homes`].
    pub fn open_between_homes(&self) {
        for router in &self.routers {
            run(
                "ip",
                &[
                    "netns", "exec", router, "nft", "delete", "table", "ip", "between",
                ],
                None,
            )
            .unwrap();
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for ns in self
            .homes
            .iter()
            .chain(&self.routers)
            .chain(&self.open)
            .chain([&self.public])
        {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// A world whose homes sit behind `nat`, with `open_hosts` hosts on the public network.
pub fn world(nat: Nat, open_hosts: usize) -> World {
    World::create(nat, open_hosts).unwrap_or_else(|why| {
        panic!(
            "this test needs network namespaces joined by veth pairs and a bridge, with nftables \
             masquerading in the routers, which takes root, iproute2 and nftables (CI runs as \
             root and installs them); they could not be set up: {why}"
        )
    })
}

/// Runs `work` on a thread inside namespace `ns` (sockets it opens live there).
pub fn in_ns<T: Send + 'static>(ns: &str, work: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("the namespace exists");
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        work()
    })
    .join()
    .expect("the namespace's thread ends")
}

/// Runs the future `work` makes on a runtime of its own, on a thread inside namespace `ns`.
pub fn block_on_in<T, F>(ns: &str, work: impl FnOnce() -> F + Send + 'static) -> T
where
    T: Send + 'static,
    F: std::future::Future<Output = T>,
{
    in_ns(ns, move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(work())
    })
}

/// A request from inside `ns`: status and body (status 0 when nothing answered).
pub fn request_in(ns: &str, url: String, body: Option<Value>) -> (u16, String) {
    block_on_in(ns, move || async move {
        let client = reqwest::Client::new();
        let request = match body {
            Some(body) => client.post(&url).json(&body),
            None => client.get(&url),
        };
        match request.timeout(Duration::from_secs(20)).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                (status, response.text().await.unwrap_or_default())
            }
            Err(err) => (0, err.to_string()),
        }
    })
}

pub fn get_in(ns: &str, path: &str) -> (u16, String) {
    request_in(ns, format!("{CONSOLE}{path}"), None)
}

pub fn network(ns: &str) -> Value {
    let (status, body) = get_in(ns, "/api/network");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Polls `check` every half second until it gives `Some`, for at most `wait`; `what` names
/// what was waited for, `last` says how things stood.
pub fn wait_until<T>(
    wait: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
    last: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + wait;
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {wait:?}; {}",
            last()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The hub: rendezvous on the public network with its relay, whose circuits may carry a site.
pub fn start_hub(world: &World) -> (tempfile::TempDir, NsPeer) {
    let dir = hub_dir(4 * 1024 * 1024);
    let hub = run_hub(world, &dir);
    (dir, hub)
}

/// A hub's directory: rendezvous only, no viewer, its relay on; `circuit_bytes` per circuit.
pub fn hub_dir(circuit_bytes: u64) -> tempfile::TempDir {
    hub_dir_with(|c| c.presence.relay_circuit_bytes = circuit_bytes)
}

/// A hub's directory as [`hub_dir`] makes it, with `edit` applied last.
pub fn hub_dir_with(edit: impl FnOnce(&mut Config)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config::default();
    c.presence.rendezvous_only = true;
    c.presence.rendezvous_host = true;
    c.viewer.http_addr = String::new();
    c.presence.rendezvous_port = Some(HUB_PORT);
    c.presence.rendezvous_bind = "0.0.0.0".into();
    c.presence.relay_enabled = true;
    c.presence.relay_port = RELAY_PORT;
    c.presence.relay_circuit_seconds = 600;
    c.presence.heartbeat_seconds = 2;
    edit(&mut c);
    c.save(&dir.path().join("goop.json")).unwrap();
    dir
}

pub fn run_hub(world: &World, dir: &tempfile::TempDir) -> NsPeer {
    let hub = NsPeer::run(&world.public, "rendezvous", dir.path());
    hub.wait_for(&["circuit relay running"], STEP)
        .unwrap_or_else(|seen| panic!("the hub's relay never ran; log:\n{}", seen.join("\n")));
    hub
}

/// A peer at home `n` (0 or 1), joined to the hub, whose site's front page says `marker`.
pub fn start_home_peer(
    world: &World,
    n: usize,
    label: &str,
    marker: &str,
) -> (tempfile::TempDir, NsPeer, String) {
    start_peer_in(&world.homes[n], label, marker)
}

/// A peer in namespace `ns`, joined to the hub, whose site's front page says `marker`; its
/// directory, its process and its peer ID.
pub fn start_peer_in(ns: &str, label: &str, marker: &str) -> (tempfile::TempDir, NsPeer, String) {
    let dir = tempfile::tempdir().unwrap();
    goop2::services::scaffold::run(dir.path(), Some(label.into())).unwrap();
    let mut c = Config::load_dir(dir.path()).unwrap().config;
    c.viewer.http_addr = "127.0.0.1:8080".into();
    c.presence.rendezvous_host = false;
    c.presence.rendezvous_wan = format!("http://{HUB_IP}:{HUB_PORT}");
    c.presence.heartbeat_seconds = 2;
    c.p2p.listen_port = 4101;
    c.save(&dir.path().join("goop.json")).unwrap();
    std::fs::write(
        dir.path().join("site/index.html"),
        format!("<!doctype html><title>{label}</title><h1>{marker}</h1>"),
    )
    .unwrap();
    let peer = NsPeer::run(ns, "peer", dir.path());
    let line = peer
        .wait_for(&["is running"], STEP)
        .unwrap_or_else(|seen| panic!("{label} never started; log:\n{}", seen.join("\n")));
    let id = line
        .split("Peer ")
        .nth(1)
        .and_then(|rest| rest.split(" is running").next())
        .unwrap_or_else(|| panic!("no peer ID in {line}"))
        .trim()
        .to_owned();
    (dir, peer, id)
}

/// Waits until the peer in `ns` knows it is behind a NAT and holds a slot on the hub's relay.
pub fn wait_for_relay_slot(ns: &str, who: &str) {
    wait_until(
        STEP,
        &format!("{who} behind a NAT with a relay slot"),
        || {
            let reach = network(ns)["reachability"].clone();
            (reach["status"] == "private"
                && reach["relays"]
                    .as_array()
                    .is_some_and(|relays| relays.iter().any(|r| r["state"] == "reserved")))
            .then_some(())
        },
        || network(ns).to_string(),
    );
}

/// Waits until the site of `id` opens from the console in `ns` with `marker` on it.
pub fn wait_for_site(ns: &str, id: &str, marker: &str) {
    wait_until(
        STEP,
        &format!("the site of {id}"),
        || {
            let (status, body) = get_in(ns, &format!("/p/{id}/"));
            (status == 200 && body.contains(marker)).then_some(())
        },
        || format!("{:?}", get_in(ns, &format!("/p/{id}/"))),
    );
}
