//! NAT traversal across simulated home routers, with the `goop2` binary in network namespaces:
//! a hub with its circuit relay on a "public" network (11.0.0.0/24, global addresses that lead
//! nowhere else), and two peers, each at home (192.168.N.0/24) behind a router namespace of its
//! own that masquerades with nftables and lets in only what answers what went out. Nothing
//! routes between the two homes. Needs root, iproute2 and nftables (CI installs them); without
//! them the test fails and says why rather than passing.
//!
//! The test reaches each process's console from a thread that has entered its namespace.

use std::time::Duration;

use serde_json::json;

use crate::support::netns_world::{
    CONSOLE, HUB_IP, HUB_PORT, Nat, NsPeer, STEP, World, get_in, hub_dir_with, network, request_in,
    run_hub, start_home_peer, start_hub, wait_for_relay_slot, wait_for_site, wait_until, world,
};

/// Ann and Bea, each at home behind her router with a slot on the hub's relay, once Ann has
/// loaded Bea's site: their directories, their processes and Bea's peer ID.
fn ann_reaches_bea(world: &World) -> ([tempfile::TempDir; 2], NsPeer, NsPeer, String) {
    let (ann_dir, ann, _) = start_home_peer(world, 0, "Ann", "Ann's kitchen");
    let (bea_dir, bea, bea_id) = start_home_peer(world, 1, "Bea", "Bea's garden");
    wait_for_relay_slot(&world.homes[0], "Ann");
    wait_for_relay_slot(&world.homes[1], "Bea");
    wait_for_site(&world.homes[0], &bea_id, "Bea's garden");
    ([ann_dir, bea_dir], ann, bea, bea_id)
}

#[test]
fn behind_cone_nats_two_peers_punch_a_hole_and_keep_it_when_the_hub_goes() {
    let world = world(Nat::Cone, 0);
    let (hub_dir, hub) = start_hub(&world);
    // Ann reaches Bea through the relay, then directly once the hole is punched.
    let (_homes, ann, bea, bea_id) = ann_reaches_bea(&world);
    let ann_ns = &world.homes[0];
    // Bea announces her circuit, ending in her peer ID once.
    let (_, peers) = get_in(ann_ns, "/api/peers");
    let peers: serde_json::Value = serde_json::from_str(&peers).unwrap();
    let addrs = peers
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["peer_id"] == bea_id.as_str())
        .map(|p| p["addrs"].clone())
        .unwrap_or_else(|| panic!("Ann does not list Bea: {peers}"));
    let addrs: Vec<&str> = addrs
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert!(
        addrs.iter().any(|a| a.contains("/p2p-circuit/")),
        "{addrs:?}"
    );
    assert!(
        addrs
            .iter()
            .all(|a| a.matches(bea_id.as_str()).count() == 1
                && a.ends_with(&format!("/p2p/{bea_id}"))),
        "{addrs:?}"
    );
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
fn a_hole_punch_that_failed_is_tried_again_and_works_once_the_way_is_open() {
    let world = world(Nat::Cone, 0);
    // The routers drop each other's packets: the first hole punch cannot work.
    world.block_between_homes();
    let (_hub_dir, _hub) = start_hub(&world);
    let (_homes, ann, bea, bea_id) = ann_reaches_bea(&world);
    let ann_ns = &world.homes[0];
    let log = std::cell::RefCell::new(Vec::new());
    let read_logs = || {
        let mut log = log.borrow_mut();
        log.extend(ann.drain().into_iter().map(|l| format!("Ann: {l}")));
        log.extend(bea.drain().into_iter().map(|l| format!("Bea: {l}")));
        log.clone()
    };
    wait_until(
        STEP,
        "a failed hole punch between Ann and Bea",
        || {
            read_logs()
                .iter()
                .any(|l| l.contains("hole punching failed"))
                .then_some(())
        },
        || network(ann_ns).to_string(),
    );
    assert_eq!(network(ann_ns)["links"][&bea_id], "relayed");

    // The way opens; a later try punches the hole without anyone asking.
    world.open_between_homes();
    wait_until(
        3 * STEP,
        "a hole-punched connection from Ann to Bea",
        || (network(ann_ns)["links"][&bea_id] == "hole-punched").then_some(()),
        || format!("{}\n{}", network(ann_ns), read_logs().join("\n")),
    );
    assert!(
        read_logs()
            .iter()
            .any(|l| l.contains("trying to punch a hole again")),
        "{}",
        read_logs().join("\n")
    );
    let (status, body) = get_in(ann_ns, &format!("/p/{bea_id}/"));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Bea's garden"), "{body}");
}

#[test]
fn behind_symmetric_nats_two_peers_talk_through_the_relay_until_the_hub_goes() {
    let world = world(Nat::Symmetric, 0);
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

/// A counter from the hub's `/metrics`, read from inside the public network.
fn hub_metric(public: &str, name: &str) -> u64 {
    let (_, text) = request_in(public, format!("http://{HUB_IP}:{HUB_PORT}/metrics"), None);
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

#[test]
fn the_hubs_relay_holds_its_limits_for_peers_behind_routers() {
    let world = world(Nat::Symmetric, 0);
    // One slot in all; a circuit may carry 256 KiB.
    let hub_dir = hub_dir_with(|c| {
        c.presence.relay_max_reservations = 1;
        c.presence.relay_circuit_bytes = 256 * 1024;
    });
    let _hub = run_hub(&world, &hub_dir);
    let (ann_dir, _ann, ann_id) = start_home_peer(&world, 0, "Ann", "Ann's kitchen");
    let (ann_ns, bea_ns) = (&world.homes[0], &world.homes[1]);
    wait_for_relay_slot(ann_ns, "Ann");
    std::fs::write(
        ann_dir.path().join("site/big.bin"),
        vec![7u8; 2 * 1024 * 1024],
    )
    .unwrap();

    // The relay has no slot left for Bea: she hears why, and stays unreachable.
    let (_bea_dir, _bea, _) = start_home_peer(&world, 1, "Bea", "Bea's garden");
    let relay = wait_until(
        STEP,
        "Bea's refused relay slot",
        || {
            let reach = network(bea_ns)["reachability"].clone();
            let relay = reach["relays"][0].clone();
            (reach["status"] == "private" && relay["error"].is_string()).then_some(relay)
        },
        || network(bea_ns).to_string(),
    );
    assert_ne!(relay["state"], "reserved", "{relay}");
    assert!(hub_metric(&world.public, "goop_relay_reservations_refused_total") >= 1);
    // Ann's is the one slot the relay holds, whatever became of Bea's connections.
    wait_until(
        STEP,
        "the relay holding Ann's slot alone",
        || (hub_metric(&world.public, "goop_relay_reservations") == 1).then_some(()),
        || network(ann_ns).to_string(),
    );

    // Bea reaches Ann through Ann's slot: a small page crosses the circuit, a file larger than
    // its budget does not, and the relay closes the circuit.
    wait_for_site(bea_ns, &ann_id, "Ann's kitchen");
    let (status, body) = get_in(bea_ns, &format!("/p/{ann_id}/big.bin"));
    assert!(
        status != 200 || body.len() < 2 * 1024 * 1024,
        "2 MiB crossed a 256 KiB circuit ({status})"
    );
    wait_until(
        STEP,
        "the relay closing the circuit over its budget",
        || (hub_metric(&world.public, "goop_relay_circuits_closed_total") >= 1).then_some(()),
        || {
            format!(
                "{:?}",
                request_in(
                    &world.public,
                    format!("http://{HUB_IP}:{HUB_PORT}/metrics"),
                    None
                )
            )
        },
    );
    // A new circuit carries the next small page; Ann's slot was there all along.
    wait_for_site(bea_ns, &ann_id, "Ann's kitchen");
    assert_eq!(hub_metric(&world.public, "goop_relay_reservations"), 1);
}
