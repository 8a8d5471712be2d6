//! NAT traversal across simulated home routers, with the `goop2` binary in network namespaces:
//! a hub with its circuit relay on a "public" network (11.0.0.0/24, global addresses that lead
//! nowhere else), and two peers, each at home (192.168.N.0/24) behind a router namespace of its
//! own that masquerades with nftables and lets in only what answers what went out. Nothing
//! routes between the two homes. Needs root, iproute2 and nftables (CI installs them); without
//! them the test fails and says why rather than passing.
//!
//! The test reaches each process's console from a thread that has entered its namespace.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use goop2::config::Config;
use serde_json::{Value, json};

use crate::netns::{NsPeer, ip};
use crate::support::PeerDir;

const HUB_IP: &str = "11.0.0.1";
const HUB_PORT: u16 = 8787;
const RELAY_PORT: u16 = 4001;
const CONSOLE: &str = "http://127.0.0.1:8080";
/// How long each step may take: AutoNAT's first probe, a reservation, the hub's presence, a
/// hole punch.
const STEP: Duration = Duration::from_secs(60);

/// How a home router maps and filters.
#[derive(Clone, Copy, PartialEq)]
enum Nat {
    /// One public port per home port whatever the destination (what most home routers do),
    /// and only answers let in: hole punching works.
    Cone,
    /// A random public port for every destination: the port the hub sees is not the one the
    /// other peer would have to reach, so hole punching cannot work.
    Symmetric,
}

/// The namespaces and links of one test, removed on drop.
struct World {
    public: String,
    routers: [String; 2],
    homes: [String; 2],
}

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
    fn create(nat: Nat) -> Result<World, String> {
        let tag: u32 = rand::random::<u32>() % 100_000;
        let world = World {
            public: format!("gnp{tag}"),
            routers: [format!("gnr1{tag}"), format!("gnr2{tag}")],
            homes: [format!("gnh1{tag}"), format!("gnh2{tag}")],
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
            run(
                "ip",
                &[
                    "netns",
                    "exec",
                    router,
                    "sysctl",
                    "-qw",
                    "net.ipv4.ip_forward=1",
                ],
                None,
            )?;
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
        Ok(world)
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for ns in self.homes.iter().chain(&self.routers).chain([&self.public]) {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

fn world(nat: Nat) -> World {
    World::create(nat).unwrap_or_else(|why| {
        panic!(
            "this test needs network namespaces joined by veth pairs and a bridge, with nftables \
             masquerading in the routers, which takes root, iproute2 and nftables (CI runs as \
             root and installs them); they could not be set up: {why}"
        )
    })
}

/// Runs `work` on a thread inside namespace `ns` (sockets it opens live there).
fn in_ns<T: Send + 'static>(ns: &str, work: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("the namespace exists");
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        work()
    })
    .join()
    .expect("the namespace's thread ends")
}

/// A request from inside `ns`: status and body (status 0 when nothing answered).
fn request_in(ns: &str, url: String, body: Option<Value>) -> (u16, String) {
    in_ns(ns, move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
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
    })
}

fn get_in(ns: &str, path: &str) -> (u16, String) {
    request_in(ns, format!("{CONSOLE}{path}"), None)
}

fn network(ns: &str) -> Value {
    let (status, body) = get_in(ns, "/api/network");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Polls `check` every half second until it gives `Some`, for at most `wait`; `what` names
/// what was waited for, `last` says how things stood.
fn wait_until<T>(
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
fn start_hub(world: &World) -> (tempfile::TempDir, NsPeer) {
    let dir = hub_dir();
    let hub = run_hub(world, &dir);
    (dir, hub)
}

fn hub_dir() -> tempfile::TempDir {
    crate::support::binary_hub_dir_with(|c| {
        c.presence.rendezvous_port = Some(HUB_PORT);
        c.presence.rendezvous_bind = "0.0.0.0".into();
        c.presence.relay_enabled = true;
        c.presence.relay_port = RELAY_PORT;
        c.presence.relay_circuit_bytes = 4 * 1024 * 1024;
        c.presence.relay_circuit_seconds = 600;
        c.presence.heartbeat_seconds = 2;
    })
}

fn run_hub(world: &World, dir: &tempfile::TempDir) -> NsPeer {
    let hub = NsPeer::run(&world.public, "rendezvous", dir.path());
    hub.wait_for(&["circuit relay running"], STEP)
        .unwrap_or_else(|seen| panic!("the hub's relay never ran; log:\n{}", seen.join("\n")));
    hub
}

/// A peer at home `n` (0 or 1), joined to the hub, whose site's front page says `marker`.
fn start_home_peer(
    world: &World,
    n: usize,
    label: &str,
    marker: &str,
) -> (PeerDir, NsPeer, String) {
    let dir = PeerDir::new(label, |c: &mut Config| {
        c.viewer.http_addr = "127.0.0.1:8080".into();
        c.presence.rendezvous_host = false;
        c.presence.rendezvous_wan = format!("http://{HUB_IP}:{HUB_PORT}");
        c.presence.heartbeat_seconds = 2;
        c.p2p.listen_port = 4101;
    });
    std::fs::write(
        dir.path().join("site/index.html"),
        format!("<!doctype html><title>{label}</title><h1>{marker}</h1>"),
    )
    .unwrap();
    let peer = NsPeer::run(&world.homes[n], "peer", dir.path());
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
fn wait_for_relay_slot(ns: &str, who: &str) {
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
fn wait_for_site(ns: &str, id: &str, marker: &str) {
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

#[test]
fn behind_cone_nats_two_peers_punch_a_hole_and_keep_it_when_the_hub_goes() {
    let world = world(Nat::Cone);
    let (hub_dir, hub) = start_hub(&world);
    let (_ann_dir, ann, _ann_id) = start_home_peer(&world, 0, "Ann", "Ann's kitchen");
    let (_bea_dir, bea, bea_id) = start_home_peer(&world, 1, "Bea", "Bea's garden");
    let ann_ns = &world.homes[0];
    wait_for_relay_slot(ann_ns, "Ann");
    wait_for_relay_slot(&world.homes[1], "Bea");

    // Ann reaches Bea through the relay, then directly once the hole is punched.
    wait_for_site(ann_ns, &bea_id, "Bea's garden");
    wait_until(
        STEP,
        "a hole-punched connection from Ann to Bea",
        || (network(ann_ns)["links"][&bea_id] == "hole-punched").then_some(()),
        || {
            format!(
                "{}\nAnn's log:\n{}\nBea's log:\n{}",
                network(ann_ns),
                ann.drain().join("\n"),
                bea.drain().join("\n")
            )
        },
    );
    let (status, body) = get_in(ann_ns, &format!("/p/{bea_id}/"));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Bea's garden"), "{body}");
    // The console says so: how Bea is reached, and how others reach Ann.
    let (_, page) = get_in(ann_ns, &format!("/peer/{bea_id}"));
    assert!(page.contains(r#"<dd id="link">hole-punched"#), "{page}");
    let (_, page) = get_in(ann_ns, "/");
    assert!(
        page.contains("behind a NAT or firewall; reachable through 1 relay"),
        "{page}"
    );

    // The hub (and its relay) goes: the direct connection stays, and the site still opens.
    drop(hub);
    std::thread::sleep(Duration::from_secs(2));
    let (status, body) = get_in(ann_ns, &format!("/p/{bea_id}/"));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Bea's garden"), "{body}");
    assert_eq!(network(ann_ns)["links"][&bea_id], "hole-punched");

    // Ann's slot went with the relay; once the hub is back, it is taken again.
    let reserved = |ns: &str| {
        network(ns)["reachability"]["relays"]
            .as_array()
            .is_some_and(|relays| relays.iter().any(|r| r["state"] == "reserved"))
    };
    wait_until(
        STEP,
        "Ann's relay slot gone with the hub",
        || (!reserved(ann_ns)).then_some(()),
        || network(ann_ns).to_string(),
    );
    let _hub = run_hub(&world, &hub_dir);
    wait_for_relay_slot(ann_ns, "Ann");
}

#[test]
fn behind_symmetric_nats_two_peers_talk_through_the_relay_until_the_hub_goes() {
    let world = world(Nat::Symmetric);
    let (_hub_dir, hub) = start_hub(&world);
    let (_ann_dir, _ann, ann_id) = start_home_peer(&world, 0, "Ann", "Ann's kitchen");
    let (_bea_dir, _bea, bea_id) = start_home_peer(&world, 1, "Bea", "Bea's garden");
    let (ann_ns, bea_ns) = (&world.homes[0], &world.homes[1]);
    wait_for_relay_slot(ann_ns, "Ann");
    wait_for_relay_slot(bea_ns, "Bea");

    // Site, data and chat all go through the relay.
    wait_for_site(ann_ns, &bea_id, "Bea's garden");
    let (status, body) = request_in(
        ann_ns,
        format!("{CONSOLE}/api/p/{bea_id}/data/tables"),
        Some(json!({})),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = request_in(
        ann_ns,
        format!("{CONSOLE}/api/chat/{bea_id}"),
        Some(json!({"text": "over the relay"})),
    );
    assert_eq!(status, 200, "{body}");
    wait_until(
        STEP,
        "Ann's message at Bea's",
        || {
            let (_, body) = get_in(bea_ns, &format!("/api/chat/{ann_id}"));
            body.contains("over the relay").then_some(())
        },
        || format!("{:?}", get_in(bea_ns, &format!("/api/chat/{ann_id}"))),
    );
    // Hole punching was tried and could not work: the connection stays relayed, and the
    // console says why.
    let page = wait_until(
        STEP,
        "a failed hole punch on Bea's page in Ann's console",
        || {
            let (_, page) = get_in(ann_ns, &format!("/peer/{bea_id}"));
            page.contains("hole punching failed").then_some(page)
        },
        || get_in(ann_ns, &format!("/peer/{bea_id}")).1,
    );
    assert!(page.contains(r#"<dd id="link">relayed"#), "{page}");
    let links = network(ann_ns)["links"].clone();
    assert_eq!(links[&bea_id], "relayed", "{links}");

    // Without the hub's relay, the conversation ends.
    drop(hub);
    wait_until(
        STEP,
        "Bea's site unreachable without the relay",
        || {
            let (status, _) = get_in(ann_ns, &format!("/p/{bea_id}/another-page.html"));
            (status != 200 && status != 404).then_some(())
        },
        || {
            format!(
                "{:?}",
                get_in(ann_ns, &format!("/p/{bea_id}/another-page.html"))
            )
        },
    );
    assert!(network(ann_ns)["links"].get(&bea_id).is_none());
}
