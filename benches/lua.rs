//! `cargo bench --bench lua -- [--calls N] [--callers C]`: Lua function calls — a trivial
//! function and one doing a `goop.db.query` — in-process and over libp2p from a second local
//! peer, beside a no-op data operation (`role`) over the same path, in one run. Bounded: a fixed
//! number of calls per workload.

mod common;

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use clap::Parser;
use common::{Figures, measure, request};
use goop2::identity::Keypair;
use goop2::services::data::limits::InsertLimits;
use goop2::services::data::{Caller, DataRequest, DataService};
use goop2::services::lua::{LuaEngine, LuaLimits, LuaSetup};
use goop2::services::node::protocols::Served;
use goop2::store::peer::PeerStore;
use serde_json::json;
use tokio::sync::watch;

/// Lua function calls (trivial, and one doing a db query) in-process and over libp2p from a
/// second local peer, beside a no-op data operation, in one run.
#[derive(Debug, Parser)]
#[command(name = "cargo bench --bench lua --")]
struct Arguments {
    /// Calls per workload (100–200,000).
    #[arg(long, default_value_t = 20_000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(100..=200_000))]
    calls: usize,
    /// Concurrent callers (1–64).
    #[arg(long, default_value_t = 8, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64))]
    callers: usize,
}

fn main() -> anyhow::Result<()> {
    let arguments = common::arguments(Arguments {
        calls: 100,
        callers: 4,
    });
    let bench = common::runtime()?.block_on(run(arguments.calls, arguments.callers))?;
    print!("{}", bench.render());
    Ok(())
}

/// What one run measured.
struct LuaBench {
    callers: usize,
    trivial_local: Figures,
    query_local: Figures,
    noop_local: Figures,
    trivial_remote: Figures,
    query_remote: Figures,
    noop_remote: Figures,
}

impl LuaBench {
    fn render(&self) -> String {
        format!(
            "{} concurrent callers\n{}\n{}\n{}\n{}\n{}\n{}\nratio trivial call / no-op data op: in-process {:.2}, libp2p {:.2}\n",
            self.callers,
            self.trivial_local.line("trivial, in-process"),
            self.query_local.line("one db query, in-process"),
            self.noop_local.line("no-op data op, in-process"),
            self.trivial_remote.line("trivial, libp2p"),
            self.query_remote.line("one db query, libp2p"),
            self.noop_remote.line("no-op data op, libp2p"),
            self.trivial_local.per_second() / self.noop_local.per_second(),
            self.trivial_remote.per_second() / self.noop_remote.per_second(),
        )
    }
}

/// Runs `calls` calls of each workload with `callers` concurrent callers.
async fn run(calls: usize, callers: usize) -> anyhow::Result<LuaBench> {
    let dir = tempfile::tempdir()?;
    let functions = dir.path().join("lua/functions");
    std::fs::create_dir_all(&functions)?;
    std::fs::write(
        functions.join("trivial.lua"),
        "function call(request) return 1 end\n",
    )?;
    std::fs::write(
        functions.join("lookup.lua"),
        "function call(request)\n  return goop.db.query('SELECT _id, title FROM posts WHERE _id = ?', request.params.id)\nend\n",
    )?;
    let store = PeerStore::open(&dir.path().join("data.db")).await?;
    let server_key = Keypair::generate_ed25519();
    let server_id = server_key.public().to_peer_id().to_base58();
    let (_stop, stopped) = watch::channel(false);
    let engine = LuaEngine::start(
        LuaSetup {
            script_dir: dir.path().join("lua"),
            limits: LuaLimits {
                timeout: Duration::from_secs(5),
                max_memory: 10 * 1024 * 1024,
                per_caller_per_minute: u32::MAX,
                global_per_minute: u32::MAX,
            },
            self_id: server_id.clone(),
            self_label: watch::channel("bench".to_owned()).1,
            self_email: watch::channel(String::new()).1,
            kv: None,
            db: Some(store.data()),
            http: None,
            groups: Default::default(),
        },
        stopped,
    );
    let data = DataService::new(
        store.data(),
        server_key.public().to_peer_id(),
        watch::channel(String::new()).1,
        Arc::new(|_: &goop2::identity::PeerId| Box::pin(async { None })),
    )
    // The benchmark measures the call path, not the limits on other peers.
    .with_limits(InsertLimits::unlimited())
    .with_lua(engine);
    data.handle(
        &Caller::Owner,
        request(
            json!({"op": "create-table", "schema": {"name": "posts", "columns": ["title TEXT"]}}),
        ),
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot create the table: {e}"))?;
    for i in 0..100 {
        data.handle(
            &Caller::Owner,
            request(
                json!({"op": "insert", "table": "posts", "data": {"title": format!("post {i}")}}),
            ),
        )
        .await
        .map_err(|e| anyhow::anyhow!("cannot fill the table: {e}"))?;
    }
    let (server, client) = common::local_pair(
        server_key,
        Served {
            data: Some(data.clone()),
            ..common::served_nothing()
        },
    )
    .await?;
    let server_peer = server.peer_id();
    let visitor = Caller::Peer(client.peer_id());

    let trivial = request(json!({"op": "lua-call", "function": "trivial"}));
    let lookup = request(json!({"op": "lua-call", "function": "lookup", "params": {"id": 7}}));
    let noop = request(json!({"op": "role"}));
    let checked = client
        .fetch_data(server_peer, &lookup)
        .await?
        .map_err(|e| anyhow::anyhow!("the lookup function failed: {e}"))?;
    if checked[0]["title"] != "post 6" {
        bail!("the lookup function returned {checked}");
    }
    let local = |request: DataRequest| {
        let (data, visitor) = (data.clone(), visitor.clone());
        move || {
            let (data, visitor, request) = (data.clone(), visitor.clone(), request.clone());
            async move {
                data.handle(&visitor, request)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                Ok(())
            }
        }
    };
    let remote = |request: DataRequest| {
        let client = client.clone();
        move || {
            let (client, request) = (client.clone(), request.clone());
            async move {
                client
                    .fetch_data(server_peer, &request)
                    .await?
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                Ok(())
            }
        }
    };
    Ok(LuaBench {
        callers,
        trivial_local: measure(calls, callers, local(trivial.clone())).await?,
        query_local: measure(calls, callers, local(lookup.clone())).await?,
        noop_local: measure(calls, callers, local(noop.clone())).await?,
        trivial_remote: measure(calls, callers, remote(trivial)).await?,
        query_remote: measure(calls, callers, remote(lookup)).await?,
        noop_remote: measure(calls, callers, remote(noop)).await?,
    })
}
