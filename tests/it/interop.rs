//! Interoperability with a libp2p we did not write: a js-libp2p 3.x node (`tests/interop`,
//! installed by `npm ci --prefix tests/interop`, as `.ci/run` does) meets a goop2 peer over TCP,
//! Noise and Yamux: Identify, signed presence on GossipSub both ways, and a site file over
//! `/goop/site/1.0.0`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use goop2::services::presence::peer_table::{PeerState, Source};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::{PeerDir, TestPeer, eventually, short_ttl};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_js_libp2p_node_identifies_exchanges_signed_presence_and_fetches_a_site_file() {
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    assert!(
        scripts.join("node_modules/libp2p").is_dir(),
        "js-libp2p is not installed: run `npm ci --prefix tests/interop` (.ci/run does)"
    );
    let dir = PeerDir::new("Rusty", |c| {
        short_ttl(c, 6);
        c.viewer.http_addr = String::new();
    });
    let config = dir.config();
    let file: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    std::fs::write(dir.path().join("site/big.bin"), &file).unwrap();
    let running = TestPeer::start(dir).await;
    let listen = running.node.listen_addrs().await.unwrap();
    let tcp = listen
        .iter()
        .map(|a| a.to_string())
        .find(|a| a.starts_with("/ip4/127.0.0.1/tcp/"))
        .expect("a loopback TCP address");
    let target = format!("{tcp}/p2p/{}", running.peer_id);

    let mut node = tokio::process::Command::new("node")
        .arg(scripts.join("peer.mjs"))
        .arg(&target)
        .arg(&config.presence.topic)
        .arg("big.bin")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut stdout = BufReader::new(node.stdout.take().unwrap()).lines();
    let mut stderr = node.stderr.take().unwrap();
    let mut next = async || -> serde_json::Value {
        match tokio::time::timeout(Duration::from_secs(60), stdout.next_line()).await {
            Ok(Ok(Some(line))) => serde_json::from_str(&line).expect("a JSON line"),
            other => {
                use tokio::io::AsyncReadExt;
                let mut errors = String::new();
                let _ = stderr.read_to_string(&mut errors).await;
                panic!("the js-libp2p node stopped ({other:?}): {errors}");
            }
        }
    };

    let identify = next().await;
    assert_eq!(identify["event"], "identify");
    assert!(
        identify["agentVersion"]
            .as_str()
            .unwrap()
            .starts_with("goop2/"),
        "{identify}"
    );
    assert_eq!(
        identify["protocolVersion"],
        format!("/goop2/1.0.0/{}", config.p2p.mdns_tag)
    );
    let protocols: Vec<&str> = identify["protocols"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    for wanted in ["/goop/site/1.0.0", "/goop/content/1.0.0", "/ipfs/id/1.0.0"] {
        assert!(protocols.contains(&wanted), "{wanted} in {protocols:?}");
    }

    let presence = next().await;
    assert_eq!(presence["event"], "presence");
    assert_eq!(presence["peerId"], running.peer_id.to_base58());
    assert_eq!(presence["content"], "Rusty");
    assert_eq!(
        presence["verified"], true,
        "the signature checks out in JavaScript"
    );

    let published = next().await;
    assert_eq!(published["event"], "published");
    let js_id = published["peerId"].as_str().unwrap().to_owned();
    assert!(
        eventually(Duration::from_secs(15), async || {
            running.table.snapshot().await.iter().any(|e| {
                e.peer_id.to_base58() == js_id
                    && e.label == "js-libp2p peer"
                    && e.state == PeerState::Online
                    && e.sources.contains(&Source::Gossip)
            })
        })
        .await,
        "the js node's signed presence reaches the PeerTable"
    );

    let site = next().await;
    assert_eq!(site["event"], "site");
    assert_eq!(site["status"], "OK");
    assert_eq!(site["mime"], "application/octet-stream");
    assert_eq!(site["size"], file.len());
    assert_eq!(site["received"], file.len());
    let digest: String = Sha256::digest(&file)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(site["sha256"], digest);

    let status = tokio::time::timeout(Duration::from_secs(20), node.wait())
        .await
        .expect("the js node exits")
        .unwrap();
    assert!(status.success());
    running.shutdown().await;
}
