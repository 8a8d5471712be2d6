//! A hostile host must not lock other peers out of a node: half-open sockets and crowds of fresh
//! identities from one address are held to that address's budget, and a well-behaved peer from
//! another address still connects. The attacker speaks from 127.0.0.2, everyone else from
//! 127.0.0.1.

use std::time::Duration;

use futures_util::{AsyncReadExt, AsyncWriteExt};
use goop2::services::node::budget::NodeLimits;
use goop2::services::node::protocols::Served;
use goop2::services::node::{Node, NodeEvent, NodeOptions};
use libp2p::core::muxing::StreamMuxerExt;
use libp2p::core::upgrade::OutboundConnectionUpgrade;
use libp2p::{Multiaddr, PeerId, noise, yamux};
use libp2p_identity::Keypair;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc::Receiver;
use tokio_util::compat::TokioAsyncReadCompatExt;

use crate::support::eventually;

const WAIT: Duration = Duration::from_secs(10);

fn options(ip: [u8; 4]) -> NodeOptions {
    NodeOptions {
        listen_ip: ip.into(),
        listen_port: 0,
        mdns: false,
        mdns_tag: "budget".into(),
        presence_topic: "goop.presence.v1".into(),
        limits: Default::default(),
        gossip: Default::default(),
        relay: None,
    }
}

fn served() -> Served {
    Served {
        site: None,
        label: tokio::sync::watch::channel("victim".to_owned()).1,
        avatar: None,
        data: None,
    }
}

async fn start(ip: [u8; 4]) -> (Node, Receiver<NodeEvent>) {
    Node::start(Keypair::generate_ed25519(), options(ip), served())
        .await
        .unwrap()
}

/// A node on 127.0.0.1 with `limits`.
async fn start_with(limits: NodeLimits) -> (Node, Receiver<NodeEvent>) {
    let options = NodeOptions {
        limits,
        ..options([127, 0, 0, 1])
    };
    Node::start(Keypair::generate_ed25519(), options, served())
        .await
        .unwrap()
}

async fn tcp_socket_addr(node: &Node) -> std::net::SocketAddr {
    let addr = node
        .listen_addrs()
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.to_string().contains("/tcp/"))
        .expect("a TCP listener");
    let text = addr.to_string();
    let mut parts = text.split('/').skip(1);
    let (_, ip, _, port) = (parts.next(), parts.next(), parts.next(), parts.next());
    format!("{}:{}", ip.unwrap(), port.unwrap())
        .parse()
        .unwrap()
}

/// A TCP connection from 127.0.0.2.
async fn from_attacker(to: std::net::SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind("127.0.0.2:0".parse().unwrap())?;
    socket.connect(to).await
}

/// Agrees on `protocol` with multistream-select, as a dialer that proposes only that one.
async fn negotiate<S>(stream: &mut S, protocol: &str) -> Option<()>
where
    S: futures_util::AsyncRead + futures_util::AsyncWrite + Unpin,
{
    let header = "/multistream/1.0.0\n";
    let wanted = format!("{protocol}\n");
    let mut out = Vec::new();
    for message in [header, wanted.as_str()] {
        out.push(u8::try_from(message.len()).ok()?);
        out.extend_from_slice(message.as_bytes());
    }
    stream.write_all(&out).await.ok()?;
    stream.flush().await.ok()?;
    for expected in [header, wanted.as_str()] {
        let mut length = [0u8; 1];
        stream.read_exact(&mut length).await.ok()?;
        let mut message = vec![0u8; usize::from(length[0])];
        stream.read_exact(&mut message).await.ok()?;
        if message != expected.as_bytes() {
            return None;
        }
    }
    Some(())
}

/// A full libp2p connection (Noise, Yamux) from 127.0.0.2 under a fresh identity, kept open
/// for as long as the returned value lives.
async fn identity_from_attacker(to: std::net::SocketAddr) -> Option<impl Sized> {
    identity_from(2, to).await
}

/// A libp2p connection from 127.0.0.`host` under a fresh identity.
async fn identity_from(
    host: u8,
    to: std::net::SocketAddr,
) -> Option<libp2p::yamux::Muxer<impl futures_util::AsyncRead + futures_util::AsyncWrite + Unpin>> {
    connection_from(host, to, &Keypair::generate_ed25519()).await
}

/// A libp2p connection from 127.0.0.`host` under `key`'s identity.
async fn connection_from(
    host: u8,
    to: std::net::SocketAddr,
    key: &Keypair,
) -> Option<
    libp2p::yamux::Muxer<impl futures_util::AsyncRead + futures_util::AsyncWrite + Unpin + use<>>,
> {
    let socket = TcpSocket::new_v4().ok()?;
    socket
        .bind(format!("127.0.0.{host}:0").parse().unwrap())
        .ok()?;
    let mut stream = socket.connect(to).await.ok()?.compat();
    let attempt = async {
        negotiate(&mut stream, "/noise").await?;
        let (_, mut secured) = noise::Config::new(key)
            .ok()?
            .upgrade_outbound(stream, "/noise")
            .await
            .ok()?;
        negotiate(&mut secured, "/yamux/1.0.0").await?;
        yamux::Config::default()
            .upgrade_outbound(secured, "/yamux/1.0.0")
            .await
            .ok()
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .ok()
        .flatten()
}

/// Whether `visitor` (on 127.0.0.1) gets connected to `victim` within `WAIT` (three times that
/// while a crowd's handshakes may still keep the node busy).
async fn connects(visitor: &Node, victim: &Node, victim_addr: std::net::SocketAddr) -> bool {
    let visitor_id = dial(visitor, victim, victim_addr).await;
    eventually(3 * WAIT, async || {
        victim
            .connected_peers()
            .await
            .is_ok_and(|peers| peers.contains(&visitor_id))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_sockets_from_one_address_do_not_lock_out_other_peers() {
    let (victim, _events) = start([127, 0, 0, 1]).await;
    let victim_addr = tcp_socket_addr(&victim).await;
    // 200 sockets that never start their handshake: more than the node's half-open cap.
    let mut idle = Vec::new();
    for _ in 0..200 {
        if let Ok(stream) = from_attacker(victim_addr).await {
            idle.push(stream);
        }
    }
    assert!(idle.len() >= 150, "only {} sockets opened", idle.len());
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (visitor, _visitor_events) = start([127, 0, 0, 1]).await;
    assert!(
        connects(&visitor, &victim, victim_addr).await,
        "a peer from another address could not connect while half-open sockets were held"
    );
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_of_identities_from_one_address_does_not_take_every_slot() {
    // A node with 64 connection slots (the default has 512; the rule is the same).
    let limits = NodeLimits {
        max_connections: 64,
        max_inbound: 48,
        ..NodeLimits::default()
    };
    let (victim, _events) = start_with(limits).await;
    let victim_addr = tcp_socket_addr(&victim).await;
    // More fresh identities than the node has connection slots, all from one address.
    let mut crowd = Vec::new();
    let mut refused = 0;
    for _ in 0..80 {
        match identity_from_attacker(victim_addr).await {
            Some(connection) => crowd.push(connection),
            None => refused += 1,
        }
    }
    let held = victim.connected_peers().await.unwrap().len();
    assert!(
        held <= 16,
        "one address holds {held} connections ({} handshakes completed, {refused} refused)",
        crowd.len()
    );

    let (visitor, _visitor_events) = start([127, 0, 0, 1]).await;
    assert!(
        connects(&visitor, &victim, victim_addr).await,
        "a peer from another address could not connect beside the crowd"
    );
    // The victim still dials out, too.
    let (other, _other_events) = start([127, 0, 0, 1]).await;
    let other_addr = tcp_socket_addr(&other).await;
    assert!(
        connects(&victim, &other, other_addr).await,
        "the victim could not dial out beside the crowd"
    );
    drop(crowd);
}

/// Connects from 127.0.0.`host` and holds `count` negotiated `/goop/data` streams without a
/// word, until the task is aborted. Says how many streams it got to hold.
async fn hold_data_streams(
    host: u8,
    to: std::net::SocketAddr,
    count: usize,
) -> (tokio::task::JoinHandle<()>, usize) {
    let Some(mut muxer) = identity_from(host, to).await else {
        return (tokio::spawn(async {}), 0);
    };
    let (held, holding) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        // While the connection is driven, open, negotiate and keep `count` streams one after
        // another, leaving the node time to take each (it drops a stream that arrives while it
        // is still taking the last one).
        let (opened_tx, mut opened_rx) = tokio::sync::mpsc::channel(count.max(1));
        let mut requests = count;
        let opener = async {
            let mut streams = Vec::new();
            for _ in 0..count {
                let Some(stream) = opened_rx.recv().await else {
                    break;
                };
                let mut stream: libp2p::yamux::Stream = stream;
                if negotiate(&mut stream, "/goop/data/1.0.0").await.is_some() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    streams.push(stream);
                }
            }
            // Still open means the node kept it: a reset one reads an error at once.
            let mut alive = 0;
            for stream in &mut streams {
                let mut byte = [0u8; 1];
                let read = tokio::time::timeout(
                    Duration::from_millis(20),
                    futures_util::AsyncReadExt::read(stream, &mut byte),
                );
                if read.await.is_err() {
                    alive += 1;
                }
            }
            let _ = held.send(alive);
            std::future::pending::<()>().await;
            drop(streams);
        };
        let open_all = std::future::poll_fn(|cx| {
            while requests > 0 {
                match muxer.poll_outbound_unpin(cx) {
                    std::task::Poll::Ready(Ok(stream)) => {
                        requests -= 1;
                        let _ = opened_tx.try_send(stream);
                    }
                    std::task::Poll::Ready(Err(_)) => requests = 0,
                    std::task::Poll::Pending => break,
                }
            }
            while let std::task::Poll::Ready(Ok(_)) = muxer.poll_unpin(cx) {}
            std::task::Poll::<()>::Pending
        });
        tokio::select! {
            _ = opener => {}
            _ = open_all => {}
        }
    });
    let count = tokio::time::timeout(WAIT, holding)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(0);
    (task, count)
}

/// `per_host` identities on each of 127.0.0.`hosts`, each holding eight silent data streams;
/// their tasks and how many streams they hold together.
async fn crowd_holding_streams(
    hosts: impl IntoIterator<Item = u8>,
    per_host: usize,
    to: std::net::SocketAddr,
) -> (Vec<tokio::task::JoinHandle<()>>, usize) {
    let mut crowd = Vec::new();
    let mut held = 0;
    for host in hosts {
        for _ in 0..per_host {
            let (task, count) = hold_data_streams(host, to, 8).await;
            crowd.push(task);
            held += count;
        }
    }
    (crowd, held)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identities_of_two_hosts_holding_streams_leave_room_for_others() {
    let (victim, _events) = start([127, 0, 0, 1]).await;
    let victim_addr = tcp_socket_addr(&victim).await;
    let victim_id = victim.peer_id();
    // 16 identities on each of two hosts (as many as each host may connect), each holding
    // eight data streams open without a word: 256 streams, every slot the node has.
    let (crowd, held) = crowd_holding_streams([2, 3], 16, victim_addr).await;
    // Each host keeps its share of the node's streams, and no more.
    assert_eq!(held, 64, "streams the two hosts hold");

    let (visitor, _visitor_events) = start([127, 0, 0, 1]).await;
    assert!(connects(&visitor, &victim, victim_addr).await);
    let label = tokio::time::timeout(WAIT, visitor.fetch_content(victim_id))
        .await
        .expect("an answer in time");
    assert_eq!(
        label.expect("the visitor is served beside the crowd"),
        "victim"
    );
    for task in crowd {
        task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_take_only_their_share_idle_ones_make_way_and_known_peers_still_connect() {
    let limits = NodeLimits {
        max_inbound_strangers: 6,
        ..NodeLimits::default()
    };
    let (victim, _events) = start_with(limits).await;
    let victim_addr = tcp_socket_addr(&victim).await;
    let connected = async || -> std::collections::HashSet<PeerId> {
        victim
            .connected_peers()
            .await
            .unwrap()
            .into_iter()
            .collect()
    };
    // Fresh identities from two addresses, one after another, each within its address's
    // budget, none opening a stream.
    let mut crowd = Vec::new();
    let mut ids = Vec::new();
    for n in 0..20 {
        let key = Keypair::generate_ed25519();
        if let Some(connection) = connection_from(2 + n % 2, victim_addr, &key).await {
            crowd.push(connection);
            ids.push(key.public().to_peer_id());
        }
        // The one let go closes a moment after the newer one is in.
        assert!(
            eventually(WAIT, async || connected().await.len() <= 6).await,
            "strangers hold more than their share"
        );
    }
    assert_eq!(
        ids.len(),
        20,
        "every handshake completes: idle strangers make way"
    );
    // The six that came last hold the share; each newer one took the place of the oldest.
    let last_six: std::collections::HashSet<PeerId> = ids[14..].iter().copied().collect();
    assert!(
        eventually(WAIT, async || connected().await == last_six).await,
        "strangers connected: {:?}, not the six newest",
        connected().await
    );

    // A newcomer takes the place of the oldest idle one.
    let (newcomer, _newcomer_events) = start([127, 0, 0, 1]).await;
    assert!(connects(&newcomer, &victim, victim_addr).await);
    let mut expected: std::collections::HashSet<PeerId> = ids[15..].iter().copied().collect();
    expected.insert(newcomer.peer_id());
    assert!(
        eventually(WAIT, async || connected().await == expected).await,
        "strangers connected: {:?}",
        connected().await
    );

    // Six strangers that each keep a data stream open fill the share ...
    let mut busy = Vec::new();
    for n in 0..6 {
        let (task, held) = hold_data_streams(4 + n % 2, victim_addr, 1).await;
        assert_eq!(held, 1, "a busy stranger holds its stream");
        busy.push(task);
    }
    assert!(
        eventually(WAIT, async || connected().await.len() == 6).await,
        "{} connected",
        connected().await.len()
    );
    // ... so one more stranger finds no room: no busy stranger is let go for it.
    let (late, _late_events) = start([127, 0, 0, 1]).await;
    assert!(
        !connects_within(&late, &victim, victim_addr, Duration::from_secs(3)).await,
        "a stranger connected beyond a share of busy strangers"
    );
    assert_eq!(connected().await.len(), 6, "a busy stranger was let go");
    // A peer a hub vouched for connects beside them.
    let (friend, _friend_events) = start([127, 0, 0, 1]).await;
    victim.vouch(friend.peer_id(), Vec::new()).await.unwrap();
    assert!(
        connects(&friend, &victim, victim_addr).await,
        "a known peer was locked out by strangers"
    );
    for task in busy {
        task.abort();
    }
    drop(crowd);
}

/// Has `visitor` dial `victim` at `victim_addr`; the visitor's peer ID.
async fn dial(visitor: &Node, victim: &Node, victim_addr: std::net::SocketAddr) -> PeerId {
    let addr: Multiaddr = format!(
        "/ip4/{}/tcp/{}/p2p/{}",
        victim_addr.ip(),
        victim_addr.port(),
        victim.peer_id()
    )
    .parse()
    .unwrap();
    let _ = visitor.dial(addr).await;
    visitor.peer_id()
}

/// Whether `visitor` gets connected to `victim` within `wait`.
async fn connects_within(
    visitor: &Node,
    victim: &Node,
    victim_addr: std::net::SocketAddr,
    wait: Duration,
) -> bool {
    let visitor_id = dial(visitor, victim, victim_addr).await;
    tokio::time::sleep(wait).await;
    victim
        .connected_peers()
        .await
        .is_ok_and(|peers| peers.contains(&visitor_id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_on_many_hosts_holding_streams_leave_room_for_known_peers() {
    let (victim, _events) = start([127, 0, 0, 1]).await;
    let victim_addr = tcp_socket_addr(&victim).await;
    let victim_id = victim.peer_id();
    // Four identities on each of eight hosts, each holding eight data streams without a word:
    // 256 streams, every slot the node has, within each host's share.
    let (crowd, held) = crowd_holding_streams(2..10, 4, victim_addr).await;
    assert_eq!(held, 192, "streams strangers hold: three quarters of 256");

    // Another stranger finds no room ...
    let (stranger, _stranger_events) = start([127, 0, 0, 1]).await;
    assert!(connects(&stranger, &victim, victim_addr).await);
    let refused = tokio::time::timeout(WAIT, stranger.fetch_content(victim_id))
        .await
        .expect("an answer in time");
    assert!(refused.is_err(), "{refused:?}");
    // ... and a peer a hub vouched for is served.
    let (friend, _friend_events) = start([127, 0, 0, 1]).await;
    victim.vouch(friend.peer_id(), Vec::new()).await.unwrap();
    assert!(connects(&friend, &victim, victim_addr).await);
    let label = tokio::time::timeout(WAIT, friend.fetch_content(victim_id))
        .await
        .expect("an answer in time");
    assert_eq!(
        label.expect("a known peer is served beside the crowd"),
        "victim"
    );
    for task in crowd {
        task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_takes_a_stream_fails_its_callers_instead_of_holding_them() {
    let (victim, _events) = start([127, 0, 0, 1]).await;
    let victim_addr = tcp_socket_addr(&victim).await;
    // A peer that keeps its connection alive and accepts every new stream, but never answers
    // the protocol's negotiation on it.
    let key = Keypair::generate_ed25519();
    let silent = key.public().to_peer_id();
    let mut muxer = connection_from(2, victim_addr, &key)
        .await
        .expect("the silent peer connects");
    let mut held = Vec::new();
    let driver = tokio::spawn(std::future::poll_fn(move |cx| {
        loop {
            match muxer.poll_inbound_unpin(cx) {
                std::task::Poll::Ready(Ok(stream)) => held.push(stream),
                std::task::Poll::Ready(Err(_)) => return std::task::Poll::Ready(()),
                std::task::Poll::Pending => break,
            }
        }
        while let std::task::Poll::Ready(Ok(_)) = muxer.poll_unpin(cx) {}
        std::task::Poll::<()>::Pending
    }));
    assert!(
        eventually(WAIT, async || victim
            .connected_peers()
            .await
            .is_ok_and(|peers| peers.contains(&silent)))
        .await,
        "the silent peer is not connected"
    );

    // Four requests at once: the first opens a stream that is never negotiated, the others wait
    // for their turn to open one. Each ends with an error within the opening deadline (20 s),
    // the wait for its turn included, not one negotiation timeout after another.
    let request: goop2::services::data::DataRequest =
        serde_json::from_value(serde_json::json!({"op": "tables"})).unwrap();
    let started = std::time::Instant::now();
    let ask = || async {
        let answer =
            tokio::time::timeout(Duration::from_secs(60), victim.fetch_data(silent, &request))
                .await;
        (answer, started.elapsed())
    };
    let answers = futures_util::future::join_all((0..4).map(|_| ask())).await;
    for (answer, took) in answers {
        let error = answer
            .expect("a request to a peer that never takes a stream is still waiting after 60 s")
            .expect_err("no answer can come from the silent peer");
        assert!(
            matches!(
                error,
                goop2::services::node::protocols::FetchError::Unreachable(_)
            ),
            "{error}"
        );
        assert!(
            took < Duration::from_secs(25),
            "a caller waited {took:?}: {error}"
        );
    }
    driver.abort();
}
