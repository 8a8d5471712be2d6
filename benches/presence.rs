//! `cargo bench --bench presence -- [--messages N]`: what checking one signed presence message
//! costs the hub, and its parts, side by side in one run.
//!
//! A heartbeat as our peers send it (an `update` with a label, two addresses, a client version,
//! `ts` and an Ed25519 signature; about 430 bytes) goes through [`Presence::parse_and_check`]
//! N times; then, N times each, the steps it is made of: parsing the JSON, reading the peer ID,
//! decoding the public key the ID embeds (decompressing the curve point), building the
//! canonical form the signature covers, and verifying the signature with a key decoded once.
//! Each step's share of the whole check says what caching its result would save.

mod common;

use std::hint::black_box;
use std::str::FromStr;
use std::time::{Duration, Instant};

use base64::Engine as _;
use clap::Parser;
use goop2::identity::{Keypair, PeerId};
use goop2::services::hub::presence::{Presence, PresenceType, embedded_key};

#[derive(Debug, Parser)]
#[command(name = "cargo bench --bench presence --")]
struct Arguments {
    /// Messages checked per step (100–1,000,000).
    #[arg(long, default_value_t = 20_000, value_parser = clap::builder::RangedU64ValueParser::<u32>::new().range(100..=1_000_000))]
    messages: u32,
}

/// The mean time of `run` over `count` calls.
fn time(count: u32, mut run: impl FnMut()) -> Duration {
    let started = Instant::now();
    for _ in 0..count {
        run();
    }
    started.elapsed() / count
}

fn main() -> anyhow::Result<()> {
    let arguments = common::arguments(Arguments { messages: 100 });
    let keypair = Keypair::generate_ed25519();
    let peer_id = keypair.public().to_peer_id();
    let mut presence = Presence::new(PresenceType::Update, peer_id);
    presence.content = Some("A peer's label".into());
    presence.addrs = Some(vec![
        format!("/ip4/192.0.2.10/tcp/4001/p2p/{peer_id}"),
        format!("/ip4/192.0.2.10/udp/4001/quic-v1/p2p/{peer_id}"),
    ]);
    presence.goop_client_version = Some(env!("CARGO_PKG_VERSION").into());
    presence.ts = Some(1_796_600_000_000);
    presence.sign(&keypair);
    let body = serde_json::to_vec(&presence)?;
    let key = embedded_key(&peer_id).ok_or_else(|| anyhow::anyhow!("no embedded key"))?;
    let canonical = presence.canonical_bytes();
    let signature = base64::engine::general_purpose::STANDARD
        .decode(presence.sig.as_deref().unwrap_or_default())?;
    anyhow::ensure!(key.verify(&canonical, &signature), "the signature checks");
    anyhow::ensure!(
        Presence::parse_and_check(&body)?.signed,
        "the check verifies"
    );

    let n = arguments.messages;
    let whole = time(n, || {
        black_box(Presence::parse_and_check(black_box(&body)).is_ok());
    });
    let steps: [(&str, Duration); 5] = [
        (
            "parse the JSON",
            time(n, || {
                black_box(serde_json::from_slice::<Presence>(black_box(&body)).is_ok());
            }),
        ),
        (
            "read the peer ID",
            time(n, || {
                black_box(PeerId::from_str(black_box(&presence.peer_id)).is_ok());
            }),
        ),
        (
            "decode the embedded key",
            time(n, || {
                black_box(embedded_key(black_box(&peer_id)).is_some());
            }),
        ),
        (
            "build the canonical form",
            time(n, || {
                black_box(black_box(&presence).canonical_bytes());
            }),
        ),
        (
            "verify with a decoded key",
            time(n, || {
                black_box(key.verify(black_box(&canonical), black_box(&signature)));
            }),
        ),
    ];
    println!("one {}-byte heartbeat, {n} times per line\n", body.len());
    println!("{:<28} {:>10} {:>8}", "step", "µs", "share");
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "{:<28} {:>10.2} {:>7.0}%",
        "the whole check",
        micros(whole),
        100.0
    );
    for (name, took) in steps {
        println!(
            "{:<28} {:>10.2} {:>7.1}%",
            name,
            micros(took),
            100.0 * took.as_secs_f64() / whole.as_secs_f64()
        );
    }
    Ok(())
}
