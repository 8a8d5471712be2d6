//! `cargo bench --bench data -- [--ops N] [--callers C]`: the data API between two local peers
//! over libp2p (`/goop/data/1.0.0`) against the same operations run in-process, in one run — a
//! 20-row `query` and an `insert`, each with a number of concurrent callers; ops/s, p50, p99 and
//! the remote/local ratios. Bounded: a fixed number of operations per workload.

mod common;

use std::sync::Arc;

use anyhow::bail;
use clap::Parser;
use common::{Figures, measure, request};
use goop2::identity::Keypair;
use goop2::services::data::limits::InsertLimits;
use goop2::services::data::{Caller, DataRequest, DataService};
use goop2::services::node::protocols::Served;
use goop2::store::peer::PeerStore;
use serde_json::json;
use tokio::sync::watch;

/// The data API between two local peers over libp2p against the same operations run
/// in-process, in one run: a 20-row query and an insert, with concurrent callers.
#[derive(Debug, Parser)]
#[command(name = "cargo bench --bench data --")]
struct Arguments {
    /// Operations per workload (100–200,000).
    #[arg(long, default_value_t = 20_000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(100..=200_000))]
    ops: usize,
    /// Concurrent callers (1–64).
    #[arg(long, default_value_t = 8, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64))]
    callers: usize,
}

fn main() -> anyhow::Result<()> {
    let arguments = common::arguments(Arguments {
        ops: 200,
        callers: 4,
    });
    let bench = common::runtime()?.block_on(run(arguments.ops, arguments.callers))?;
    print!("{}", bench.render());
    Ok(())
}

/// What one run measured.
struct DataBench {
    callers: usize,
    remote_query: Figures,
    local_query: Figures,
    remote_insert: Figures,
    local_insert: Figures,
}

impl DataBench {
    fn render(&self) -> String {
        format!(
            "{} concurrent callers\n{}\n{}\n{}\n{}\nratio remote / local: query {:.2}, insert {:.2}\n",
            self.callers,
            self.remote_query.line("query (20 rows), libp2p"),
            self.local_query.line("query (20 rows), in-process"),
            self.remote_insert.line("insert, libp2p"),
            self.local_insert.line("insert, in-process"),
            self.remote_query.per_second() / self.local_query.per_second(),
            self.remote_insert.per_second() / self.local_insert.per_second(),
        )
    }
}

/// Runs `ops` operations of each workload with `callers` concurrent callers.
async fn run(ops: usize, callers: usize) -> anyhow::Result<DataBench> {
    let dir = tempfile::tempdir()?;
    let store = PeerStore::open(&dir.path().join("data.db")).await?;
    let server_key = Keypair::generate_ed25519();
    let server_id = server_key.public().to_peer_id();
    let data = DataService::new(
        store.data(),
        server_id,
        watch::channel(String::new()).1,
        Arc::new(|_: &goop2::identity::PeerId| Box::pin(async { None })),
    )
    // What is measured is the data path, not the limits on visitors.
    .with_limits(InsertLimits::unlimited());
    let owner = Caller::Owner;
    let created = data
        .handle(
            &owner,
            request(json!({"op": "create-table", "schema": {
                "name": "posts",
                "columns": ["title TEXT NOT NULL", "body TEXT", "stars INTEGER DEFAULT 0"],
                "access": {"read": "open", "insert": "open"}
            }})),
        )
        .await;
    created.map_err(|e| anyhow::anyhow!("cannot create the table: {e}"))?;
    for i in 0..200 {
        data.handle(
            &owner,
            request(json!({"op": "insert", "table": "posts",
                "data": {"title": format!("post {i}"), "body": "x".repeat(200), "stars": i % 5}})),
        )
        .await
        .map_err(|e| anyhow::anyhow!("cannot fill the table: {e}"))?;
    }

    let (_server, client) = common::local_pair(
        server_key,
        Served {
            data: Some(data.clone()),
            ..common::served_nothing()
        },
    )
    .await?;
    let visitor = Caller::Peer(client.peer_id());

    let query = request(
        json!({"op": "query", "table": "posts", "where": "stars >= ?",
        "args": [0], "order": "_id DESC", "limit": 20}),
    );
    let insert = request(json!({"op": "insert", "table": "posts",
        "data": {"title": "benchmark", "body": "y".repeat(200), "stars": 3}}));

    // Warm up, and check that both paths answer as they should.
    let rows = client
        .fetch_data(server_id, &query)
        .await?
        .map_err(|e| anyhow::anyhow!("remote query failed: {e}"))?;
    if rows.as_array().map(Vec::len) != Some(20) {
        bail!("a remote query returned {rows}");
    }

    let remote = |request: DataRequest| {
        let client = client.clone();
        move || {
            let (client, request) = (client.clone(), request.clone());
            async move {
                let answer = client.fetch_data(server_id, &request).await?;
                answer.map_err(|e| anyhow::anyhow!("{e}"))?;
                Ok(())
            }
        }
    };
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
    // Interleaved so that neither side gets the quieter moments of a shared machine.
    let remote_query = measure(ops, callers, remote(query.clone())).await?;
    let local_query = measure(ops, callers, local(query)).await?;
    let remote_insert = measure(ops, callers, remote(insert.clone())).await?;
    let local_insert = measure(ops, callers, local(insert)).await?;
    Ok(DataBench {
        callers,
        remote_query,
        local_query,
        remote_insert,
        local_insert,
    })
}
