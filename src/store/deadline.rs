//! Statements that end on time. SQLite calls a connection's progress handler every
//! [`PROGRESS_EVERY`] virtual-machine steps, and a handler that says no stops the statement with
//! `SQLITE_INTERRUPT`. [`limit`] sets, for the statements of one caller, one that says no once
//! the caller's deadline has passed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use sqlx::SqliteConnection;

/// SQLite steps between two calls of the progress handler (a few microseconds of work).
const PROGRESS_EVERY: i32 = 1000;

/// While it lives, the statements on its connection stop at its deadline. Dropped (the
/// statements done, or their caller gone), the connection's statements run unbounded again.
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
) -> Result<Limit, sqlx::Error> {
    let active = Arc::new(AtomicBool::new(true));
    let still_active = active.clone();
    connection
        .lock_handle()
        .await?
        .set_progress_handler(PROGRESS_EVERY, move || {
            !still_active.load(Ordering::Relaxed) || Instant::now() < deadline
        });
    Ok(Limit { active })
}

/// Whether SQLite stopped the statement because the progress handler said no.
pub fn is_interrupted(error: &sqlx::Error) -> bool {
    // SQLITE_INTERRUPT
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("9"))
}
