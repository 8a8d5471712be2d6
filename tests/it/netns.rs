//! mDNS across a real link: two network namespaces joined by a veth pair, each running the
//! `goop2` binary. Needs root (CI runs as root) and iproute2; without them the test fails and says
//! why rather than passing.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use goop2::config::Config;

use crate::support::PeerDir;

/// Two namespaces and a veth pair between them, removed on drop.
struct Link {
    namespaces: [String; 2],
    devices: [String; 2],
    /// The second octet of the link's 10.x.0.0/24.
    subnet: u32,
}

/// Runs `ip` with `args`; what it said on failure.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip` (iproute2): {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

impl Link {
    fn create() -> Result<Link, String> {
        let tag: u32 = rand::random::<u32>() % 100_000;
        let subnet = 16 + tag % 200;
        let link = Link {
            namespaces: [format!("goopa{tag}"), format!("goopb{tag}")],
            devices: [format!("ga{tag}"), format!("gb{tag}")],
            subnet,
        };
        let [a, b] = &link.namespaces;
        let [va, vb] = &link.devices;
        ip(&["netns", "add", a])?;
        ip(&["netns", "add", b])?;
        ip(&[
            "link", "add", va, "netns", a, "type", "veth", "peer", "name", vb, "netns", b,
        ])?;
        for (ns, dev, host) in [(a, va, 1), (b, vb, 2)] {
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("10.{subnet}.0.{host}/24"),
                "dev",
                dev,
            ])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "link", "set", dev, "up", "multicast", "on"])?;
        }
        Ok(link)
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// A `goop2` process in a namespace, killed on drop; its log lines arrive on `lines`.
pub struct NsPeer {
    pub child: Child,
    lines: mpsc::Receiver<String>,
}

impl NsPeer {
    fn start(ns: &str, dir: &std::path::Path) -> NsPeer {
        NsPeer::run(ns, "peer", dir)
    }

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

/// What the peers of this test share: no console, no hub, a heartbeat every second, the
/// network tag `tag`.
fn lan_only(tag: &str) -> impl FnOnce(&mut Config) {
    move |c| {
        c.viewer.http_addr = String::new();
        c.presence.rendezvous_host = false;
        c.presence.rendezvous_wan = String::new();
        c.presence.heartbeat_seconds = 1;
        c.p2p.mdns_tag = tag.into();
    }
}

#[test]
fn mdns_finds_a_peer_in_another_network_namespace() {
    let link = Link::create().unwrap_or_else(|why| {
        panic!(
            "this test needs two network namespaces joined by a veth pair, which takes root and \
             iproute2 (CI runs as root); they could not be created: {why}"
        )
    });
    let tag = format!("netns-{}", rand::random::<u32>());
    let (ann_dir, bea_dir) = (
        PeerDir::new("Ann", lan_only(&tag)),
        PeerDir::new("Bea", lan_only(&tag)),
    );
    // A third peer with another network tag must stay out.
    let other_dir = PeerDir::new("Outsider", lan_only("another-network"));
    let ann = NsPeer::start(&link.namespaces[0], ann_dir.path());
    let bea = NsPeer::start(&link.namespaces[1], bea_dir.path());
    let outsider = NsPeer::start(&link.namespaces[1], other_dir.path());

    // Peers starting together can miss each other's first answers; mDNS asks again every 30 s.
    let wait = Duration::from_secs(60);
    for (who, other) in [(&ann, "Bea"), (&bea, "Ann")] {
        let line = who
            .wait_for(&["peer online", &format!("label={other}"), "via=LAN"], wait)
            .unwrap_or_else(|seen| {
                panic!(
                    "{other} was never seen over mDNS; log:\n{}",
                    seen.join("\n")
                )
            });
        assert!(line.contains("peer online"), "{line}");
    }
    // By now Ann has heard Bea's heartbeats for a while; the outsider never joined.
    let outsider_seen = ann.wait_for(&["label=Outsider"], Duration::from_secs(3));
    assert!(
        outsider_seen.is_err(),
        "a peer of another network joined: {outsider_seen:?}"
    );
    drop(outsider);

    // A new address on Ann's link is announced without a restart.
    let new_addr = format!("10.{}.0.11", link.subnet);
    ip(&[
        "-n",
        &link.namespaces[0],
        "addr",
        "add",
        &format!("{new_addr}/24"),
        "dev",
        &link.devices[0],
    ])
    .unwrap();
    ann.wait_for(&["listen addresses changed; announcing", &new_addr], wait)
        .unwrap_or_else(|seen| {
            panic!(
                "the new address was not announced; log:\n{}",
                seen.join("\n")
            )
        });
}
