//! A hostile host must not lock other peers out of a node: half-open sockets and crowds of fresh
//! identities from one address are held to that address's budget, and a well-behaved peer from
//! another address still connects. The attacker speaks from 127.0.0.2, everyone else from
//! 127.0.0.1.

use std::time::Duration;

use futures_util::{AsyncReadExt, AsyncWriteExt};
use goop2::services::node::protocols::Served;
use goop2::services::node::{Node, NodeEvent, NodeOptions};
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
    let key = Keypair::generate_ed25519();
    let mut stream = from_attacker(to).await.ok()?.compat();
    let attempt = async {
        negotiate(&mut stream, "/noise").await?;
        let (_, mut secured) = noise::Config::new(&key)
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

/// Whether `visitor` (on 127.0.0.1) gets connected to `victim` within `WAIT`.
async fn connects(visitor: &Node, victim: &Node, victim_addr: std::net::SocketAddr) -> bool {
    let addr: Multiaddr = format!(
        "/ip4/{}/tcp/{}/p2p/{}",
        victim_addr.ip(),
        victim_addr.port(),
        victim.peer_id()
    )
    .parse()
    .unwrap();
    let _ = visitor.dial(addr).await;
    let visitor_id: PeerId = visitor.peer_id();
    eventually(WAIT, async || {
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
    let (victim, _events) = start([127, 0, 0, 1]).await;
    let victim_addr = tcp_socket_addr(&victim).await;
    // More fresh identities than the node has connection slots, all from one address.
    let mut crowd = Vec::new();
    let mut refused = 0;
    for _ in 0..540 {
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
