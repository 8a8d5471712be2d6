//! Statements that end on time. SQLite calls a connection's progress handler every
//! [`PROGRESS_EVERY`] virtual-machine steps, and a handler that says no stops the statement with
//! `SQLITE_INTERRUPT`. Every connection of a peer's pools carries one that says no once the store
//! is stopping (so closing never waits on a runaway statement); a [`Lease`] replaces it, for the
//! statements of one caller, by one that also says no once the caller's deadline has passed — or
//! at once when the caller goes away (its future dropped) while a statement may still run.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Instant;

use sqlx::pool::PoolConnection;
use sqlx::sqlite::SqlitePoolOptions;
use sqlx::{Sqlite, SqliteConnection, SqlitePool};

/// SQLite steps between two calls of the progress handler (a few microseconds of work).
const PROGRESS_EVERY: i32 = 1000;

/// Set once the store is closing: every statement still running stops.
#[derive(Clone, Default)]
pub struct Stopping(Arc<AtomicBool>);

impl Stopping {
    pub fn stop(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// `options` whose every connection stops its statement once `stopping` is set.
pub fn interruptible(options: SqlitePoolOptions, stopping: Stopping) -> SqlitePoolOptions {
    options.after_connect(move |connection, _| {
        let stopping = stopping.clone();
        Box::pin(async move {
            connection
                .lock_handle()
                .await?
                .set_progress_handler(PROGRESS_EVERY, move || !stopping.is_stopped());
            Ok(())
        })
    })
}

/// What a leased connection's progress handler answers (besides no once the store stops).
#[derive(Clone)]
struct Rule(Arc<AtomicU8>);

impl Rule {
    /// Yes until the deadline: the caller's statements run.
    const UNTIL_DEADLINE: u8 = 0;
    /// No: the caller is gone (or done) while a statement of its may still run.
    const STOP: u8 = 1;
    /// Yes: the caller is done and its connection idle; the next user is not held to its deadline.
    const LIFTED: u8 = 2;

    fn set(&self, rule: u8) {
        self.0.store(rule, Ordering::Relaxed);
    }

    /// Whether a statement may go on: the caller's only until its deadline or its leaving.
    fn allows(&self, deadline: Instant, cancelled: &Stopping) -> bool {
        match self.0.load(Ordering::Relaxed) {
            Rule::UNTIL_DEADLINE => Instant::now() < deadline && !cancelled.is_stopped(),
            Rule::STOP => false,
            _ => true,
        }
    }
}

/// A pooled connection for one caller's statements. With a deadline, they stop there; dropped
/// before [`Lease::finish`] or [`Lease::release`] — the caller gone, say, while a statement of
/// its still runs — that statement stops at its next progress check, and the connection is
/// closed rather than handed to the next caller with a handler that says no. Without a deadline
/// it is a plain pooled connection.
pub struct Lease {
    connection: PoolConnection<Sqlite>,
    rule: Option<Rule>,
}

/// A connection of `pool` whose statements stop at `deadline` (when given), or once `cancelled` is
/// set (a caller that cannot drop its future, such as a script on a blocking thread, says so
/// there). Waiting for one counts against the deadline: past it, `PoolTimedOut`.
pub async fn lease(
    pool: &SqlitePool,
    deadline: Option<Instant>,
    stopping: &Stopping,
    cancelled: &Stopping,
) -> Result<Lease, sqlx::Error> {
    let Some(deadline) = deadline else {
        return Ok(Lease {
            connection: pool.acquire().await?,
            rule: None,
        });
    };
    let connection = tokio::time::timeout_at(deadline.into(), pool.acquire())
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)??;
    let rule = Rule(Arc::new(AtomicU8::new(Rule::UNTIL_DEADLINE)));
    let (handler_rule, stopping, cancelled) = (rule.clone(), stopping.clone(), cancelled.clone());
    let mut lease = Lease {
        connection,
        // Set before the handler: a lease dropped from here on closes its connection.
        rule: Some(rule),
    };
    lease
        .connection
        .lock_handle()
        .await?
        .set_progress_handler(PROGRESS_EVERY, move || {
            !stopping.is_stopped() && handler_rule.allows(deadline, &cancelled)
        });
    Ok(lease)
}

impl Lease {
    /// The caller's statement came back whole (all its rows, its outcome or its error), so
    /// nothing of it runs any more: the handler says yes again and the connection goes back to
    /// the pool.
    pub fn finish(mut self) {
        if let Some(rule) = self.rule.take() {
            rule.set(Rule::LIFTED);
        }
    }

    /// The caller is done with a stream of rows it may have stopped reading: whatever of its
    /// statement still runs stops now; once the connection is idle, its handler says yes again
    /// and it goes back to the pool.
    pub async fn release(mut self) {
        let Some(rule) = &self.rule else {
            return;
        };
        rule.set(Rule::STOP);
        // The worker answers once it has finished everything sent before.
        if self.connection.lock_handle().await.is_ok()
            && let Some(rule) = self.rule.take()
        {
            rule.set(Rule::LIFTED);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(rule) = self.rule.take() {
            rule.set(Rule::STOP);
            self.connection.close_on_drop();
        }
    }
}

impl Deref for Lease {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        &self.connection
    }
}

impl DerefMut for Lease {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.connection
    }
}

/// Whether SQLite stopped the statement because the progress handler said no.
pub fn is_interrupted(error: &sqlx::Error) -> bool {
    // SQLITE_INTERRUPT
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("9"))
}
