//! Statements that end on time. SQLite calls a connection's progress handler every
//! [`PROGRESS_EVERY`] virtual-machine steps, and a handler that says no stops the statement with
//! `SQLITE_INTERRUPT`. Every connection of a peer's pools carries one that says no once the store
//! is stopping (so closing never waits on a runaway statement); [`limit`] replaces it, for the
//! statements of one caller, by one that also says no once the caller's deadline has passed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use sqlx::SqliteConnection;
use sqlx::sqlite::SqlitePoolOptions;

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

/// While it lives, the statements on its connection stop at its deadline. Dropped (the
/// statements done, or their caller gone), the connection goes back to stopping only when the
/// store stops.
pub struct Limit {
    active: Arc<AtomicBool>,
}

impl Drop for Limit {
    fn drop(&mut self) {
        self.active.store(false, Ordering::Relaxed);
    }
}

/// Holds the statements run on `connection` from now on to `deadline`.
pub async fn limit(
    connection: &mut SqliteConnection,
    deadline: Instant,
    stopping: &Stopping,
) -> Result<Limit, sqlx::Error> {
    let active = Arc::new(AtomicBool::new(true));
    let (still_active, stopping) = (active.clone(), stopping.clone());
    connection
        .lock_handle()
        .await?
        .set_progress_handler(PROGRESS_EVERY, move || {
            !stopping.is_stopped()
                && (!still_active.load(Ordering::Relaxed) || Instant::now() < deadline)
        });
    Ok(Limit { active })
}

/// Whether SQLite stopped the statement because the progress handler said no.
pub fn is_interrupted(error: &sqlx::Error) -> bool {
    // SQLITE_INTERRUPT
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("9"))
}
