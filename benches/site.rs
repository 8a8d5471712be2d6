//! `cargo bench --bench site -- [--megabytes N] [--rounds R]`: a site file fetched over libp2p
//! (`/goop/site/1.0.0`) between two local nodes, against a plain TCP copy of the same file on
//! loopback, in one run; both rates and their ratio. Bounded: a fixed number of rounds.

mod common;

use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Parser;
use goop2::identity::Keypair;
use goop2::services::node::protocols::Served;
use goop2::services::site::Site;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Site fetch over libp2p between two local nodes against a plain TCP copy of the same file, in
/// one run.
#[derive(Debug, Parser)]
#[command(name = "cargo bench --bench site --")]
struct Arguments {
    /// File size in MiB (1–50).
    #[arg(long, default_value_t = 10, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=50))]
    megabytes: usize,
    /// Fetches each way (1–100).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100))]
    rounds: u32,
}

fn main() -> anyhow::Result<()> {
    let arguments = common::arguments(Arguments {
        megabytes: 1,
        rounds: 2,
    });
    let bench = common::runtime()?.block_on(run(arguments.megabytes, arguments.rounds))?;
    print!("{}", bench.render());
    Ok(())
}

/// What one run measured.
struct SiteBench {
    bytes: usize,
    rounds: u32,
    libp2p: Duration,
    tcp: Duration,
}

impl SiteBench {
    fn rate(&self, elapsed: Duration) -> f64 {
        (self.bytes as f64 * self.rounds as f64) / (1024.0 * 1024.0) / elapsed.as_secs_f64()
    }

    fn render(&self) -> String {
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

/// Runs `rounds` fetches of a `megabytes` MiB file both ways.
async fn run(megabytes: usize, rounds: u32) -> anyhow::Result<SiteBench> {
    let dir = tempfile::tempdir()?;
    let bytes = megabytes * 1024 * 1024;
    let content: Vec<u8> = (0..bytes).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.path().join("big.bin"), &content)?;

    let (server, client) = common::local_pair(
        Keypair::generate_ed25519(),
        Served {
            site: Some(Site::new(dir.path().to_owned())),
            ..common::served_nothing()
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
