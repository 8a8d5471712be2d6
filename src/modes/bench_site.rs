//! `goop2 bench-site`: site fetch over libp2p between two local nodes, against a plain TCP copy
//! of the same file on loopback, in one run. Bounded: a fixed number of rounds.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::services::node::protocols::Served;
use crate::services::node::{Node, NodeOptions};
use crate::services::site::Site;

/// What one run measured.
#[derive(Debug, Clone)]
pub struct SiteBench {
    pub bytes: usize,
    pub rounds: u32,
    pub libp2p: Duration,
    pub tcp: Duration,
}

impl SiteBench {
    fn rate(&self, elapsed: Duration) -> f64 {
        (self.bytes as f64 * self.rounds as f64) / (1024.0 * 1024.0) / elapsed.as_secs_f64()
    }

    pub fn render(&self) -> String {
        format!(
            "{} rounds of a {} MiB file\nlibp2p /goop/site/1.0.0: {:.1} MiB/s\nplain TCP copy: {:.1} MiB/s\nratio libp2p / TCP: {:.2}\n",
            self.rounds,
            self.bytes / (1024 * 1024),
            self.rate(self.libp2p),
            self.rate(self.tcp),
            self.libp2p.as_secs_f64().recip() / self.tcp.as_secs_f64().recip(),
        )
    }
}

/// What a benchmark node serves by default: nothing but a label.
pub(crate) fn served_nothing() -> Served {
    Served {
        site: None,
        label: watch::channel(String::from("bench")).1,
        avatar: None,
        data: None,
    }
}

/// Two nodes on 127.0.0.1 (no mDNS), the client already connected to the server.
pub(crate) async fn local_pair(
    server_key: libp2p_identity::Keypair,
    served: Served,
) -> anyhow::Result<(Node, Node)> {
    let options = NodeOptions {
        listen_ip: IpAddr::from([127, 0, 0, 1]),
        listen_port: 0,
        mdns: false,
        mdns_tag: "bench".into(),
        presence_topic: "goop.presence.v1".into(),
        limits: Default::default(),
        gossip: Default::default(),
    };
    // The nodes live as long as their handles; their events are not needed.
    let (server, _) = Node::start(server_key, options.clone(), served).await?;
    let (client, _) = Node::start(
        libp2p_identity::Keypair::generate_ed25519(),
        options,
        served_nothing(),
    )
    .await?;
    let tcp_addr = server
        .listen_addrs()
        .await?
        .into_iter()
        .find(|a| a.to_string().contains("/tcp/"))
        .context("no TCP listener")?;
    client
        .dial(format!("{tcp_addr}/p2p/{}", server.peer_id()).parse()?)
        .await?;
    Ok((server, client))
}

/// Runs `rounds` fetches of a `megabytes` MiB file both ways.
pub async fn run(megabytes: usize, rounds: u32) -> anyhow::Result<SiteBench> {
    if !(1..=50).contains(&megabytes) || !(1..=100).contains(&rounds) {
        bail!("1 to 50 MiB and 1 to 100 rounds");
    }
    let dir = tempfile::tempdir()?;
    let bytes = megabytes * 1024 * 1024;
    let content: Vec<u8> = (0..bytes).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.path().join("big.bin"), &content)?;

    let (server, client) = local_pair(
        libp2p_identity::Keypair::generate_ed25519(),
        Served {
            site: Some(Site::new(dir.path().to_owned())),
            ..served_nothing()
        },
    )
    .await?;
    // Warm up the connection (and check the content once).
    let first = client.fetch_site(server.peer_id(), "/big.bin").await?;
    if first.body != content {
        bail!("the fetched file differs from the original");
    }
    let started = Instant::now();
    for _ in 0..rounds {
        let reply = client.fetch_site(server.peer_id(), "/big.bin").await?;
        if reply.body.len() != bytes {
            bail!("a fetch returned {} bytes", reply.body.len());
        }
    }
    let libp2p = started.elapsed();

    // The same file over a plain loopback TCP connection per round, read from disk each time.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let path = dir.path().join("big.bin");
    let serving = tokio::spawn(async move {
        for _ in 0..rounds {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let Ok(file) = tokio::fs::File::open(&path).await else {
                return;
            };
            let mut file = tokio::io::BufReader::with_capacity(256 * 1024, file);
            let _ = tokio::io::copy_buf(&mut file, &mut socket).await;
            let _ = socket.shutdown().await;
        }
    });
    let started = Instant::now();
    for _ in 0..rounds {
        let mut socket = tokio::net::TcpStream::connect(addr).await?;
        let mut received = Vec::with_capacity(bytes);
        socket.read_to_end(&mut received).await?;
        if received.len() != bytes {
            bail!("a TCP copy returned {} bytes", received.len());
        }
    }
    let tcp = started.elapsed();
    serving.await?;
    Ok(SiteBench {
        bytes,
        rounds,
        libp2p,
        tcp,
    })
}
