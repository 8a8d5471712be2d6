//! mDNS across a real link: two network namespaces joined by a veth pair, each running the
//! `goop2` binary. Needs root (CI runs as root) and iproute2; without them the test fails and says
//! why rather than passing.

use std::time::Duration;

use goop2::config::Config;

use crate::support::PeerDir;
use crate::support::netns_world::{NsPeer, ip};

/// Two namespaces and a veth pair between them, removed on drop.
struct Link {
    namespaces: [String; 2],
    devices: [String; 2],
    /// The second octet of the link's 10.x.0.0/24.
    subnet: u32,
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
    let ann = NsPeer::run(&link.namespaces[0], "peer", ann_dir.path());
    let bea = NsPeer::run(&link.namespaces[1], "peer", bea_dir.path());
    let outsider = NsPeer::run(&link.namespaces[1], "peer", other_dir.path());

    // Peers starting together can miss each other's first answers; mDNS asks again every 30 s.
    let wait = Duration::from_secs(60);
    for (who, other) in [(&ann, "Bea"), (&bea, "Ann")] {
        let line = who
            .wait_for(
                &["peer online", &format!("label={other}"), "via=gossip"],
                wait,
            )
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
