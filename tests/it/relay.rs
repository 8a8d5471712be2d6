//! The hub's circuit relay (`presence.relay_enabled`), run by the `goop2 rendezvous` binary and
//! used by libp2p clients of the test's own: announced at `/relay`, a reservation taken, a peer
//! reached through its circuit, and the relay's limits enforced — a circuit over its bytes is
//! closed, reservations past the cap are refused, connections past theirs too — and counted in
//! `/metrics` and on `/admin`.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use futures_util::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, identify, noise, ping, relay, tcp, yamux};
use serde_json::Value;

use crate::support::{HubProcess, binary_hub_dir_with, get_text};

const ECHO: StreamProtocol = StreamProtocol::new("/goop-test/sink/1.0.0");
const WAIT: Duration = Duration::from_secs(20);

#[derive(NetworkBehaviour)]
struct Client {
    relay_client: relay::client::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    stream: libp2p_stream::Behaviour,
}

fn client() -> Swarm<Client> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_quic()
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .unwrap()
        .with_behaviour(|key, relay_client| Client {
            relay_client,
            identify: identify::Behaviour::new(identify::Config::new(
                "goop-test/1".into(),
                key.public(),
            )),
            ping: ping::Behaviour::default(),
            stream: libp2p_stream::Behaviour::new(),
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

/// Listens through the relay at `relay`; the circuit address once the reservation is accepted,
/// or the reason it was refused.
async fn reserve(swarm: &mut Swarm<Client>, relay: &Multiaddr) -> Result<Multiaddr, String> {
    swarm
        .listen_on(relay.clone().with(Protocol::P2pCircuit))
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let event = tokio::time::timeout_at(deadline, swarm.select_next_some())
            .await
            .map_err(|_| "no answer from the relay".to_owned())?;
        match event {
            SwarmEvent::NewListenAddr { address, .. }
                if address.iter().any(|p| p == Protocol::P2pCircuit) =>
            {
                return Ok(address);
            }
            SwarmEvent::ListenerClosed { reason, .. } => {
                return Err(format!("{reason:?}"));
            }
            _ => {}
        }
    }
}

/// Dials `target` through the circuit of `relay` and waits for the connection, which must be a
/// relayed one.
async fn connect_through(swarm: &mut Swarm<Client>, relay: &Multiaddr, target: PeerId) {
    let circuit = relay
        .clone()
        .with(Protocol::P2pCircuit)
        .with(Protocol::P2p(target));
    swarm.dial(circuit).unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let event = tokio::time::timeout_at(deadline, swarm.select_next_some())
            .await
            .expect("connected through the relay");
        if let SwarmEvent::ConnectionEstablished {
            peer_id, endpoint, ..
        } = event
            && peer_id == target
        {
            assert!(endpoint.is_relayed(), "{endpoint:?}");
            return;
        }
    }
}

/// Drives `swarm` in the background for the rest of the test.
fn drive(mut swarm: Swarm<Client>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    })
}

/// The relay the hub at `url` announces, and its loopback TCP address (ending in its ID).
async fn relay_address(url: &str) -> (PeerId, Multiaddr) {
    let announced: Value = serde_json::from_str(&get_text(&format!("{url}/relay")).await).unwrap();
    let relay_id: PeerId = announced["peer_id"].as_str().unwrap().parse().unwrap();
    let relay: Multiaddr = announced["addrs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().parse::<Multiaddr>().unwrap())
        .find(|a| a.to_string().starts_with("/ip4/127.0.0.1/tcp/"))
        .unwrap_or_else(|| panic!("a loopback TCP address: {announced}"));
    assert_eq!(relay.iter().last(), Some(Protocol::P2p(relay_id)));
    (relay_id, relay)
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hubs_relay_carries_a_circuit_within_its_limits_and_says_so() {
    let dir = binary_hub_dir_with(|config| {
        config.presence.relay_enabled = true;
        config.presence.relay_port = 0;
        config.presence.relay_max_reservations = 1;
        config.presence.relay_circuit_bytes = 64 * 1024;
        config.presence.admin_password = goop2::config::Secret::new("relay admin pw");
    });
    let hub = HubProcess::start(dir.path());

    // Announced.
    let (relay_id, relay) = relay_address(&hub.url).await;

    // A reservation, and a circuit to its holder.
    let mut listener = client();
    let listener_id = *listener.local_peer_id();
    let circuit = reserve(&mut listener, &relay).await.expect("reserved");
    assert!(
        circuit
            .to_string()
            .contains(&format!("/p2p/{relay_id}/p2p-circuit"))
    );
    let mut incoming = listener
        .behaviour()
        .stream
        .new_control()
        .accept(ECHO)
        .unwrap();
    let received = tokio::spawn(async move {
        // Counts what arrives on each stream until it ends.
        let mut total = 0usize;
        if let Some((_, mut stream)) = incoming.next().await {
            let mut buf = vec![0u8; 8192];
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                total += n;
            }
        }
        total
    });
    let _listener = drive(listener);
    let metrics = get_text(&format!("{}/metrics", hub.url)).await;
    assert_eq!(metric(&metrics, "goop_relay_reservations"), 1, "{metrics}");

    // A second reservation is past the cap of one.
    let mut second = client();
    let refused = reserve(&mut second, &relay).await;
    assert!(refused.is_err(), "{refused:?}");
    let metrics = get_text(&format!("{}/metrics", hub.url)).await;
    assert!(
        metric(&metrics, "goop_relay_reservations_refused_total") >= 1,
        "{metrics}"
    );

    // The dialler reaches the listener through the circuit: a relayed connection.
    let mut dialler = client();
    connect_through(&mut dialler, &relay, listener_id).await;
    let mut control = dialler.behaviour().stream.new_control();
    let _dialler = drive(dialler);
    let mut stream = control.open_stream(listener_id, ECHO).await.unwrap();
    // More than the circuit may carry: it is closed on the way.
    let chunk = vec![7u8; 8192];
    let mut sent = 0usize;
    for _ in 0..64 {
        match tokio::time::timeout(Duration::from_secs(5), stream.write_all(&chunk)).await {
            Ok(Ok(())) => sent += chunk.len(),
            _ => break,
        }
    }
    let _ = stream.close().await;
    let got = tokio::time::timeout(WAIT, received).await.unwrap().unwrap();
    assert!(got > 0, "something crossed the circuit");
    assert!(
        got <= 64 * 1024,
        "the circuit carried {got} bytes of {sent}"
    );
    assert!(got < 64 * 8192);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let metrics = get_text(&format!("{}/metrics", hub.url)).await;
        if metric(&metrics, "goop_relay_circuits_closed_total") >= 1 {
            assert_eq!(metric(&metrics, "goop_relay_circuits_accepted_total"), 1);
            // What crossed the circuit came in over TCP, and went out again.
            let bytes = |direction: &str| -> u64 {
                metrics
                    .lines()
                    .filter(|line| {
                        line.starts_with("goop_relay_libp2p_bandwidth_bytes_total{")
                            && line.contains(&format!("direction=\"{direction}\""))
                    })
                    .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
                    .sum()
            };
            assert!(bytes("Inbound") >= got as u64, "{metrics}");
            assert!(bytes("Outbound") >= got as u64, "{metrics}");
            assert!(!metrics.contains("# EOF"), "{metrics}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The administrator sees the relay and its limits.
    let cookie = crate::support::hub_admin_cookie(&hub.url, "relay admin pw").await;
    let admin = reqwest::Client::new()
        .get(format!("{}/admin", hub.url))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(admin.contains(&relay_id.to_base58()), "{admin}");
    assert!(admin.contains("65536 bytes"), "{admin}");
}

/// Dials the relay `times` times from `swarm`, then drives it in the background; the count of
/// its open connections.
fn hold_connections(
    mut swarm: Swarm<Client>,
    relay: &Multiaddr,
    times: usize,
) -> (Arc<AtomicI64>, tokio::task::JoinHandle<()>) {
    let relay_id = match relay.iter().last() {
        Some(Protocol::P2p(id)) => id,
        _ => panic!("{relay} names no peer"),
    };
    for _ in 0..times {
        let dial = DialOpts::peer_id(relay_id)
            .addresses(vec![relay.clone()])
            .condition(PeerCondition::Always)
            .build();
        swarm.dial(dial).unwrap();
    }
    let open = Arc::new(AtomicI64::new(0));
    let counted = open.clone();
    let task = tokio::spawn(async move {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished { .. } => {
                    counted.fetch_add(1, Ordering::SeqCst);
                }
                SwarmEvent::ConnectionClosed { .. } => {
                    counted.fetch_sub(1, Ordering::SeqCst);
                }
                _ => {}
            }
        }
    });
    (open, task)
}

/// The connections `counts` say are open, once they have not changed for two seconds.
async fn settled(counts: &[Arc<AtomicI64>]) -> Vec<i64> {
    let read = || -> Vec<i64> { counts.iter().map(|c| c.load(Ordering::SeqCst)).collect() };
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last = read();
    let mut since = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = read();
        if now != last {
            (last, since) = (now, tokio::time::Instant::now());
        } else if since.elapsed() >= Duration::from_secs(2) {
            return last;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never settled: {last:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hubs_relay_host_holds_a_bounded_number_of_connections() {
    let dir = binary_hub_dir_with(|config| {
        config.presence.relay_enabled = true;
        config.presence.relay_port = 0;
        config.presence.relay_max_connections = 16;
    });
    let hub = HubProcess::start(dir.path());
    let (_, relay) = relay_address(&hub.url).await;

    // One peer dialling six times holds four connections.
    let (greedy, greedy_task) = hold_connections(client(), &relay, 6);
    assert_eq!(settled(std::slice::from_ref(&greedy)).await, [4]);

    // Sixteen more peers: sixteen connections are held in all, and the rest refused.
    let crowd: Vec<_> = (0..16)
        .map(|_| hold_connections(client(), &relay, 1))
        .collect();
    let mut counts = vec![greedy];
    counts.extend(crowd.iter().map(|(count, _)| count.clone()));
    let open = settled(&counts).await;
    assert_eq!(open.iter().sum::<i64>(), 16, "{open:?}");
    assert_eq!(open[0], 4, "{open:?}");

    // The greedy peer leaves: a newcomer gets in and takes a slot.
    greedy_task.abort();
    let crowd_counts: Vec<_> = counts[1..].to_vec();
    assert_eq!(settled(&crowd_counts).await.iter().sum::<i64>(), 12);
    let mut newcomer = client();
    reserve(&mut newcomer, &relay)
        .await
        .expect("a slot once the greedy peer's connections are gone");
    drop(crowd);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_without_a_relay_says_so_and_a_bad_relay_address_is_refused() {
    let dir = binary_hub_dir_with(|_| {});
    let hub = HubProcess::start(dir.path());
    let response = reqwest::get(format!("{}/relay", hub.url)).await.unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("presence.relay_enabled"),
        "{body}"
    );
    let metrics = get_text(&format!("{}/metrics", hub.url)).await;
    assert!(!metrics.contains("goop_relay_"), "{metrics}");

    let mut config = goop2::config::Config::default();
    config.presence.relay_external_addrs = vec!["203.0.113.7:4001".into()];
    let problems = config.validate();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("presence.relay_external_addrs[0]")),
        "{problems:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_relay_enabled_relays_for_others_and_its_hub_announces_it() {
    let peer = crate::support::TestPeer::spawn("Relay", |config| {
        config.p2p.relay_enabled = true;
        config.presence.rendezvous_host = true;
    })
    .await;
    let hub = format!("http://{}", peer.hub.as_ref().unwrap().hub_addr);
    let (relay_id, relay) = relay_address(&hub).await;
    assert_eq!(relay_id, peer.peer_id);

    let mut listener = client();
    let listener_id = *listener.local_peer_id();
    reserve(&mut listener, &relay)
        .await
        .expect("reserved at the peer");
    let _listener = drive(listener);
    let mut dialler = client();
    connect_through(&mut dialler, &relay, listener_id).await;
    let metrics = get_text(&format!("{hub}/metrics")).await;
    assert_eq!(metric(&metrics, "goop_relay_reservations"), 1, "{metrics}");
    assert_eq!(
        metric(&metrics, "goop_relay_circuits_accepted_total"),
        1,
        "{metrics}"
    );

    // Off by default: a peer relays for nobody.
    let plain = crate::support::TestPeer::spawn("Plain", |config| {
        config.presence.rendezvous_host = true;
    })
    .await;
    let plain_hub = format!("http://{}", plain.hub.as_ref().unwrap().hub_addr);
    let response = reqwest::get(format!("{plain_hub}/relay")).await.unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let mut refused = client();
    let direct = crate::support::loopback_tcp(&plain.node).await;
    let refusal = reserve(&mut refused, &direct).await;
    assert!(refusal.is_err(), "{refusal:?}");
}
