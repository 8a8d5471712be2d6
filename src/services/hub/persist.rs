//! Persistence of hub state in the shared database (`presence.peer_db_path` or
//! `presence.peer_db_url`).
//!
//! The registry hands each change to a bounded queue, and one writer task commits them in
//! batches, gathered for up to 20 ms (the last change per peer wins within a batch). A publish
//! acknowledged over HTTP waits for its commit ([`Persistence::committed`]), which ends the
//! gathering at once; a database that is away or slow never holds publishes for longer than
//! that wait.
//! A reader brings in what other instances wrote — woken by NOTIFY with PostgreSQL, every
//! 250 ms with SQLite, and at least every second either way. Restoring the registry at start is
//! [`super::shared`]'s (`Hub::attach_store`); this module is the writer and the reader.
//!
//! When the database goes away, publishes go on from memory: the writer keeps its batch and
//! tries again, changes beyond the queue are dropped (and counted), and `/healthz` says why.
//! Once a write succeeds again the writer writes every change the registry still holds
//! unwritten — the dropped ones included — and the reader reads everything it missed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use crate::store::hub::{Committed, HubStore, PeerWrite, StoreError, StoredBan, StoredPeer};

/// Changes waiting to be written; beyond this, changes are dropped (and counted) rather than
/// slowing publishers. They are written again once the writer catches up (see [`run_writer`]).
pub const QUEUE: usize = 16_384;
/// How often SQLite is read for other instances' changes.
pub const POLL_EVERY: Duration = Duration::from_millis(250);
/// How often the database is read even without a notification (PostgreSQL), and checked.
const FALLBACK_EVERY: Duration = Duration::from_secs(1);
/// Most changes written in one transaction.
const BATCH: usize = 2048;
/// How long the writer lets changes gather before a transaction.
const LINGER: Duration = Duration::from_millis(20);
/// Longest pause between two tries of a failed write or a lost connection.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long a change an administrator waits for (a ban) may wait for the database.
const DURABLE_WAIT: Duration = Duration::from_secs(5);

/// What the writer task receives.
pub enum Queued {
    Write(PeerWrite),
    /// Answered once everything queued before it is committed.
    Flush(oneshot::Sender<()>),
}

/// The hub's link to its database.
pub struct Persistence {
    pub instance: String,
    /// "SQLite" or "PostgreSQL".
    pub kind: &'static str,
    queue: mpsc::Sender<Queued>,
    /// Why the last write (or writability check) failed, until one succeeds.
    write_error: Mutex<Option<String>>,
    /// Why the last read failed, until one succeeds.
    read_error: Mutex<Option<String>>,
    pub dropped: AtomicU64,
    /// Set when a publisher gave up waiting for a commit, until the next commit: publishers
    /// meanwhile are answered from memory without waiting.
    behind: AtomicBool,
    /// True while the database refuses writes (`write_error` is set).
    refusing: watch::Sender<bool>,
}

impl Persistence {
    pub fn new(instance: String, kind: &'static str) -> (Arc<Self>, mpsc::Receiver<Queued>) {
        let (queue, receiver) = mpsc::channel(QUEUE);
        let persistence = Arc::new(Persistence {
            instance,
            kind,
            queue,
            write_error: Mutex::new(None),
            read_error: Mutex::new(None),
            dropped: AtomicU64::new(0),
            behind: AtomicBool::new(false),
            refusing: watch::Sender::new(false),
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
    /// administrator is told are done (bans), which must not be dropped like a heartbeat. While
    /// the database is away it gives up waiting after a few seconds with the reason; the change
    /// stays queued and is written when the database is back.
    pub async fn write_durably(&self, write: PeerWrite) -> Result<(), String> {
        if self.queue.send(Queued::Write(write)).await.is_err() {
            return Err("the peer database writer has stopped".into());
        }
        if tokio::time::timeout(DURABLE_WAIT, self.flush())
            .await
            .is_err()
        {
            return Err(self
                .health()
                .err()
                .unwrap_or_else(|| "the peer database is slow to answer".into()));
        }
        self.health()
    }

    /// Waits until every change queued so far is committed (or the writer has stopped).
    pub async fn flush(&self) {
        let (done, committed) = oneshot::channel();
        if self.queue.send(Queued::Flush(done)).await.is_ok() {
            let _ = committed.await;
        }
    }

    /// Waits, at most `wait`, until every change queued so far is committed — unless the
    /// database refuses writes or a wait already ran out since the last commit: while the
    /// database is away, publishes go on from memory.
    pub async fn committed(&self, wait: Duration) {
        let mut refusing = self.refusing.subscribe();
        if *refusing.borrow_and_update() || self.behind.load(Ordering::Relaxed) {
            return;
        }
        tokio::select! {
            done = tokio::time::timeout(wait, self.flush()) => {
                if done.is_err() {
                    self.behind.store(true, Ordering::Relaxed);
                }
            }
            // The write this waits for failed: the database is away.
            _ = refusing.wait_for(|refusing| *refusing) => {}
        }
    }

    /// `Err` with the reason while the database refuses writes or reads.
    pub fn health(&self) -> Result<(), String> {
        let lock = |m: &Mutex<Option<String>>| m.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match lock(&self.write_error).or_else(|| lock(&self.read_error)) {
            Some(reason) => Err(reason),
            None => Ok(()),
        }
    }

    /// True while the last read of the database failed: other instances' news is not heard.
    pub fn cannot_read(&self) -> bool {
        self.read_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Records the outcome of a write (or writability check) and passes it on.
    async fn note_write<T>(
        &self,
        store: &HubStore,
        result: Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let what = "the peer database is not writable";
        let result = self.note(store, &self.write_error, result, what).await;
        let failed = result.is_err();
        self.refusing
            .send_if_modified(|refusing| std::mem::replace(refusing, failed) != failed);
        result
    }

    /// Records the outcome of a read and passes it on.
    async fn note_read<T>(
        &self,
        store: &HubStore,
        result: Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let what = "the peer database cannot be read";
        self.note(store, &self.read_error, result, what).await
    }

    /// Records `result` in `slot`, the first failure of a run explained ([`HubStore::explain`]:
    /// it may take a connection attempt, which a run of retries need not repeat).
    async fn note<T>(
        &self,
        store: &HubStore,
        slot: &Mutex<Option<String>>,
        result: Result<T, StoreError>,
        what: &str,
    ) -> Result<T, StoreError> {
        let first = slot.lock().unwrap_or_else(|p| p.into_inner()).is_none();
        let result = match result {
            Err(err) if first => Err(store.explain(err).await),
            other => other,
        };
        self.record(slot, &result, what);
        result
    }

    /// Logs the first failure of a run of them, and the recovery.
    fn record<T>(&self, slot: &Mutex<Option<String>>, result: &Result<T, StoreError>, what: &str) {
        let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(_) => {
                if slot.take().is_some() {
                    tracing::info!(database = self.kind, "the peer database is back");
                }
            }
            Err(err) => {
                let message = format!("{what}: {err}");
                match *slot {
                    None => tracing::error!(database = self.kind, "{message}"),
                    // The pool waited in vain again: the reason held says more.
                    Some(_) if err.is_pool_timeout() => return,
                    Some(_) => {}
                }
                *slot = Some(message);
            }
        }
    }
}

/// What the writer needs from the registry.
pub trait Registry: Send + Sync + 'static {
    /// A batch committed: its changes with their versions.
    fn written(&self, committed: Committed);
    /// Every change the registry holds that is not known to be written (after an outage).
    fn unwritten(&self) -> Vec<PeerWrite>;
    /// Rows other instances wrote, in version order.
    fn merge_peers(&self, rows: Vec<StoredPeer>);
    /// Ban rows other instances wrote, in version order.
    fn merge_bans(&self, rows: Vec<StoredBan>);
}

/// Writes queued changes until the queue closes and is drained.
pub async fn run_writer(
    store: HubStore,
    persistence: Arc<Persistence>,
    mut receiver: mpsc::Receiver<Queued>,
    registry: impl Registry,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while receiver.recv_many(&mut batch, BATCH).await > 0 {
        // A burst becomes one transaction rather than one each: the database's work (and with
        // PostgreSQL the NOTIFY every other instance answers with a read) is per transaction.
        // A flush (somebody waiting for the commit) ends the gathering at once.
        let deadline = tokio::time::Instant::now() + LINGER;
        let mut flushing = batch.iter().any(|q| matches!(q, Queued::Flush(_)));
        while !flushing && batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, receiver.recv()).await {
                Ok(Some(queued)) => {
                    flushing = matches!(queued, Queued::Flush(_));
                    batch.push(queued);
                }
                Ok(None) | Err(_) => break,
            }
        }
        let mut flushes = Vec::new();
        let mut writes = Vec::with_capacity(batch.len());
        for queued in batch.drain(..) {
            match queued {
                Queued::Write(write) => writes.push(write),
                Queued::Flush(done) => flushes.push(done),
            }
        }
        let mut writes = coalesce(writes);
        let mut backoff = Duration::from_millis(100);
        let mut failed = false;
        let mut refusals = 0;
        while !writes.is_empty() {
            let result = store.write(&persistence.instance, &writes).await;
            let result = persistence.note_write(&store, result).await;
            match result {
                Ok(committed) => {
                    persistence.behind.store(false, Ordering::Relaxed);
                    registry.written(committed);
                    if !failed {
                        break;
                    }
                    // Back after an outage: what was dropped meanwhile is still unwritten in
                    // the registry.
                    failed = false;
                    writes = coalesce(registry.unwritten());
                    tracing::info!(changes = writes.len(), "writing what the outage held back");
                }
                Err(err) => {
                    // A database that takes other writes but refuses this batch again and again
                    // refuses something in it: trying it forever would stop every write behind
                    // it, so its changes go one by one, leaving out what is refused.
                    if store.check_writable().await.is_ok() {
                        refusals += 1;
                        if refusals >= 3 {
                            tracing::error!(
                                changes = writes.len(),
                                "the peer database refuses a batch; writing it change by change: {err}"
                            );
                            write_one_by_one(&store, &persistence, &registry, writes).await;
                            break;
                        }
                    }
                    failed = true;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// Writes each change in a transaction of its own, leaving out (and counting) those the
/// database refuses.
async fn write_one_by_one(
    store: &HubStore,
    persistence: &Persistence,
    registry: &impl Registry,
    writes: Vec<PeerWrite>,
) {
    for write in writes {
        match store
            .write(&persistence.instance, std::slice::from_ref(&write))
            .await
        {
            Ok(committed) => registry.written(committed),
            Err(err) => {
                tracing::error!("a change the peer database refuses was left out: {err}");
                persistence.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    let _ = persistence.note_write(store, Ok(())).await;
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

/// Where the reader has read up to.
#[derive(Debug, Clone, Copy)]
pub struct ReadPosition {
    pub peer_version: i64,
    pub ban_version: i64,
}

/// Reads other instances' changes and hands them to the registry until `stop` turns true.
pub async fn run_reader(
    store: HubStore,
    persistence: Arc<Persistence>,
    mut position: ReadPosition,
    mut stop: watch::Receiver<bool>,
    registry: impl Registry,
) {
    let mut backoff = Duration::from_millis(100);
    let mut ticks: u64 = 0;
    loop {
        let wakeups = store.wakeups(&persistence.instance, POLL_EVERY).await;
        let wakeups = persistence.note_read(&store, wakeups).await;
        let mut wakeups = match wakeups {
            Ok(wakeups) => wakeups,
            Err(_) => {
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stopped(&mut stop) => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        // Whatever happened while not listening.
        read_changes(&store, &persistence, &mut position, &registry).await;
        let mut fallback = tokio::time::interval(FALLBACK_EVERY);
        fallback.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                wake = wakeups.next() => {
                    if let Err(err) = wake {
                        let _ = persistence.note_read::<()>(&store, Err(err)).await;
                        break;
                    }
                }
                _ = fallback.tick() => {
                    ticks += 1;
                    // About once a minute: drop old tombstones; every few seconds: check the
                    // database still takes writes (the writer may have nothing to write).
                    let now = super::unix_ms();
                    if ticks.is_multiple_of(60) {
                        let result = store.prune(now).await;
                        let _ = persistence.note_write(&store, result).await;
                    } else if ticks.is_multiple_of(5) {
                        let result = store.check_writable().await;
                        let _ = persistence.note_write(&store, result).await;
                    }
                }
                _ = stopped(&mut stop) => return,
            }
            if !read_changes(&store, &persistence, &mut position, &registry).await {
                break;
            }
        }
    }
}

/// Resolves once `stop` turns true (holding no borrow of it across an await).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Reads every row above `position`; false when the database failed.
async fn read_changes(
    store: &HubStore,
    persistence: &Persistence,
    position: &mut ReadPosition,
    registry: &impl Registry,
) -> bool {
    const PAGE: i64 = 1000;
    loop {
        let rows = store
            .changes_since(position.peer_version, &persistence.instance, PAGE)
            .await;
        let rows = persistence.note_read(store, rows).await;
        let Ok(rows) = rows else { return false };
        let full = rows.len() as i64 == PAGE;
        if let Some(last) = rows.last() {
            position.peer_version = position.peer_version.max(last.version);
        }
        if !rows.is_empty() {
            registry.merge_peers(rows);
        }
        if !full {
            break;
        }
    }
    let bans = store
        .ban_changes_since(position.ban_version, &persistence.instance)
        .await;
    let bans = persistence.note_read(store, bans).await;
    let Ok(bans) = bans else { return false };
    if let Some(last) = bans.last() {
        position.ban_version = position.ban_version.max(last.version);
    }
    if !bans.is_empty() {
        registry.merge_bans(bans);
    }
    true
}
