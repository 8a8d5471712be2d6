//! Persistence of hub state in a shared SQLite file (`presence.peer_db_path`).
//!
//! Publishes never wait for the database: the registry hands each change to a bounded queue,
//! and one writer task commits them in batches (the last change per peer wins within a batch).
//! A poller brings in what other instances wrote, so instances sharing the file see each other's
//! peers within half a second. On start, peers still inside their TTL are restored.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use crate::store::hub::{HubStore, PeerWrite};

/// Changes waiting to be written; beyond this, changes are dropped (and counted) rather than
/// slowing publishers. The next heartbeat of each peer writes its state again.
pub const QUEUE: usize = 16_384;
/// How often other instances' changes are read.
pub const POLL_EVERY: Duration = Duration::from_millis(250);
/// Most changes written in one transaction.
const BATCH: usize = 2048;

/// What the writer task receives.
pub enum Queued {
    Write(PeerWrite),
    /// Answered once everything queued before it is committed.
    Flush(oneshot::Sender<()>),
}

/// The hub's link to its database.
pub struct Persistence {
    pub instance: String,
    queue: mpsc::Sender<Queued>,
    healthy: AtomicBool,
    last_error: Mutex<Option<String>>,
    pub dropped: AtomicU64,
}

impl Persistence {
    pub fn new(instance: String) -> (Arc<Self>, mpsc::Receiver<Queued>) {
        let (queue, receiver) = mpsc::channel(QUEUE);
        let persistence = Arc::new(Persistence {
            instance,
            queue,
            healthy: AtomicBool::new(true),
            last_error: Mutex::new(None),
            dropped: AtomicU64::new(0),
        });
        (persistence, receiver)
    }

    /// Queues a change without waiting.
    pub fn enqueue(&self, write: PeerWrite) {
        if self.queue.try_send(Queued::Write(write)).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed);
            if dropped.is_power_of_two() {
                tracing::warn!(dropped = dropped + 1, "the peer database is falling behind");
            }
        }
    }

    /// Queues a change, waiting for room, and returns once it is committed: for changes an
    /// administrator is told are done (bans), which must not be dropped like a heartbeat.
    pub async fn write_durably(&self, write: PeerWrite) -> Result<(), String> {
        if self.queue.send(Queued::Write(write)).await.is_err() {
            return Err("the peer database writer has stopped".into());
        }
        self.flush().await;
        self.health()
    }

    /// Waits until every change queued so far is committed (or the writer has given up).
    pub async fn flush(&self) {
        let (done, committed) = oneshot::channel();
        if self.queue.send(Queued::Flush(done)).await.is_ok() {
            let _ = committed.await;
        }
    }

    /// `Err` with the reason while the database refuses writes.
    pub fn health(&self) -> Result<(), String> {
        if self.healthy.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err(self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .unwrap_or_else(|| "the peer database is not writable".into()))
        }
    }

    fn record(&self, result: &Result<(), sqlx::Error>) {
        match result {
            Ok(()) => self.healthy.store(true, Ordering::Relaxed),
            Err(err) => {
                let message = format!("the peer database is not writable: {err}");
                if self.healthy.swap(false, Ordering::Relaxed) {
                    tracing::error!("{message}");
                }
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(message);
            }
        }
    }
}

/// Writes queued changes until the queue closes and is drained.
pub async fn run_writer(
    store: HubStore,
    persistence: Arc<Persistence>,
    mut receiver: mpsc::Receiver<Queued>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while receiver.recv_many(&mut batch, BATCH).await > 0 {
        let mut flushes = Vec::new();
        let mut writes = Vec::with_capacity(batch.len());
        for queued in batch.drain(..) {
            match queued {
                Queued::Write(write) => writes.push(write),
                Queued::Flush(done) => flushes.push(done),
            }
        }
        let writes = coalesce(writes);
        let mut attempt = 0;
        while !writes.is_empty() {
            let result = store.write(&persistence.instance, &writes).await;
            persistence.record(&result);
            match result {
                Ok(()) => break,
                Err(_) if attempt < 20 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(err) => {
                    tracing::error!(changes = writes.len(), "giving up on a batch: {err}");
                    break;
                }
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// Keeps the last upsert or offline per peer, in order; bans pass through.
fn coalesce(writes: Vec<PeerWrite>) -> Vec<PeerWrite> {
    let mut last: HashMap<String, usize> = HashMap::new();
    for (index, write) in writes.iter().enumerate() {
        match write {
            PeerWrite::Upsert(row) => {
                last.insert(row.peer_id.clone(), index);
            }
            PeerWrite::Offline { peer_id, .. } => {
                last.insert(peer_id.clone(), index);
            }
            _ => {}
        }
    }
    writes
        .into_iter()
        .enumerate()
        .filter(|(index, write)| match write {
            PeerWrite::Upsert(row) => last.get(&row.peer_id) == Some(index),
            PeerWrite::Offline { peer_id, .. } => last.get(peer_id) == Some(index),
            _ => true,
        })
        .map(|(_, write)| write)
        .collect()
}

/// Polls for other instances' changes and hands them to `apply` until `stop` turns true.
pub async fn run_poller(
    store: HubStore,
    persistence: Arc<Persistence>,
    mut version: i64,
    mut stop: watch::Receiver<bool>,
    apply: impl Fn(crate::store::hub::StoredPeer) + Send,
) {
    let mut ticker = tokio::time::interval(POLL_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks: u64 = 0;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        loop {
            match store
                .changes_since(version, &persistence.instance, 1000)
                .await
            {
                Ok(rows) => {
                    let full = rows.len() == 1000;
                    for row in rows {
                        version = version.max(row.version);
                        apply(row);
                    }
                    if !full {
                        break;
                    }
                }
                Err(err) => {
                    tracing::warn!("reading the peer database failed: {err}");
                    break;
                }
            }
        }
        ticks += 1;
        // About once a minute: drop old tombstones, and check the file still takes writes.
        if ticks.is_multiple_of(240) {
            let now = super::unix_ms();
            let result = store.prune(now).await;
            persistence.record(&result);
        } else if ticks.is_multiple_of(20) {
            let result = store.check_writable().await;
            persistence.record(&result);
        }
    }
}
