//! `goop2 bench-data`: the data API between two local peers over libp2p (`/goop/data/1.0.0`)
//! against the same operations run in-process, in one run — a 20-row `query` and an `insert`,
//! each with a number of concurrent callers. Bounded: a fixed number of operations per workload.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::json;
use tokio::sync::watch;

use crate::services::data::limits::InsertLimits;
use crate::services::data::{Caller, DataRequest, DataService};
use crate::services::node::protocols::Served;

use crate::store::peer::PeerStore;

/// One workload's figures.
#[derive(Debug, Clone)]
pub struct Figures {
    pub ops: usize,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
}

impl Figures {
    pub fn per_second(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    pub(crate) fn line(&self, name: &str) -> String {
        format!(
            "{name:<28} {:>9.0} ops/s   p50 {:>7.2} ms   p99 {:>7.2} ms",
            self.per_second(),
            self.p50.as_secs_f64() * 1000.0,
            self.p99.as_secs_f64() * 1000.0
        )
    }
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct DataBench {
    pub callers: usize,
    pub remote_query: Figures,
    pub local_query: Figures,
    pub remote_insert: Figures,
    pub local_insert: Figures,
}

impl DataBench {
    pub fn render(&self) -> String {
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
pub async fn run(ops: usize, callers: usize) -> anyhow::Result<DataBench> {
    if !(100..=200_000).contains(&ops) || !(1..=64).contains(&callers) {
        bail!("100 to 200,000 operations and 1 to 64 callers");
    }
    let dir = tempfile::tempdir()?;
    let store = PeerStore::open(&dir.path().join("data.db")).await?;
    let server_key = libp2p_identity::Keypair::generate_ed25519();
    let server_id = server_key.public().to_peer_id();
    let data = DataService::new(
        store.data(),
        server_id,
        watch::channel(String::new()).1,
        Arc::new(|_: &crate::identity::PeerId| Box::pin(async { None })),
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

    let (_server, client) = super::bench_site::local_pair(
        server_key,
        Served {
            data: Some(data.clone()),
            ..super::bench_site::served_nothing()
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

fn request(value: serde_json::Value) -> DataRequest {
    serde_json::from_value(value).expect("a well-formed benchmark request")
}

/// Runs `ops` calls of `op` spread over `callers` tasks; latency of each call.
pub(crate) async fn measure<F, Fut>(ops: usize, callers: usize, op: F) -> anyhow::Result<Figures>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let started = Instant::now();
    let mut tasks = Vec::new();
    for caller in 0..callers {
        let share = ops / callers + usize::from(caller < ops % callers);
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(share);
            for _ in 0..share {
                let begun = Instant::now();
                op().await?;
                latencies.push(begun.elapsed());
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(ops);
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Ok(Figures {
        ops,
        elapsed,
        p50: at(0.50),
        p99: at(0.99),
    })
}
