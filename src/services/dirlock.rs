//! One process per peer directory. `goop2 peer` and `goop2 rendezvous` hold an exclusive lock on
//! `<dir>/goop.lock` while they run, with their process ID and console address written in it, so
//! a second process on the same directory is refused with a clear error, and the launcher tells
//! a running peer from a stopped one whoever started it. The operating system releases the lock
//! when the process ends, however it ends (`kill -9` included), so a stale file never counts;
//! the file is emptied when the lock is released in order. Readers look with a shared lock, so
//! two readers never mistake each other for a running process.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The lock file's name inside a peer directory.
pub const FILE_NAME: &str = "goop.lock";

/// How long [`DirLock::acquire`] waits for a lock another process holds (one that is stopping,
/// or a launcher looking at it that very moment).
const PATIENCE: Duration = Duration::from_secs(2);

/// What the process holding the lock wrote in it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    /// Its console (or settings viewer) address, once listening.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console: Option<String>,
}

/// Why a directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another goop2 process{} is running {dir} already; stop it first (one process per peer \
         directory)",
        match .holder { Some(h) if h.pid != 0 => format!(" (pid {})", h.pid), _ => String::new() }
    )]
    Held {
        dir: PathBuf,
        holder: Option<Holder>,
    },
    #[error("cannot lock {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The held lock of a directory; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct DirLock {
    file: File,
    path: PathBuf,
}

impl DirLock {
    /// Locks `dir` for this process and records its process ID.
    pub fn acquire(dir: &Path) -> Result<DirLock, LockError> {
        let path = dir.join(FILE_NAME);
        let io = |source| LockError::Io {
            path: dir.join(FILE_NAME),
            source,
        };
        // Never truncated on opening: the holder's words stay readable while it holds the lock.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let started = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if started.elapsed() < PATIENCE => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(LockError::Held {
                        dir: dir.to_owned(),
                        holder: holder(dir),
                    });
                }
                Err(TryLockError::Error(source)) => return Err(io(source)),
            }
        }
        let mut lock = DirLock { file, path };
        lock.describe(&Holder {
            pid: std::process::id(),
            console: None,
        })
        .map_err(io)?;
        Ok(lock)
    }

    /// Writes `holder` into the lock file.
    pub fn describe(&mut self, holder: &Holder) -> std::io::Result<()> {
        let text = serde_json::to_vec(holder).map_err(std::io::Error::other)?;
        self.file.set_len(0)?;
        self.file.rewind()?;
        self.file.write_all(&text)?;
        self.file.flush()
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // Emptied while still held; the lock goes with the file.
        let _ = self.file.set_len(0);
    }
}

/// The process holding `dir`'s lock right now, or `None` when no process runs the directory.
pub fn holder(dir: &Path) -> Option<Holder> {
    let mut file = File::open(dir.join(FILE_NAME)).ok()?;
    match file.try_lock_shared() {
        // Nobody holds it: released at once (on drop).
        Ok(()) => None,
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = Read::by_ref(&mut file).take(4096).read_to_string(&mut text);
            Some(serde_json::from_str(&text).unwrap_or_default())
        }
        Err(TryLockError::Error(_)) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_locked_directory_is_refused_and_free_again_once_released() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(holder(dir.path()), None);
        let mut lock = DirLock::acquire(dir.path()).unwrap();
        lock.describe(&Holder {
            pid: 42,
            console: Some("127.0.0.1:8081".into()),
        })
        .unwrap();
        let seen = holder(dir.path()).expect("held");
        assert_eq!(seen.pid, 42);
        // Readers do not take it from each other.
        let reader = File::open(dir.path().join(FILE_NAME)).unwrap();
        assert!(
            reader.try_lock_shared().is_err(),
            "the holder's lock is exclusive"
        );
        assert_eq!(seen.console.as_deref(), Some("127.0.0.1:8081"));
        // Another open file description of this same process is refused too.
        let err = DirLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(err.contains("(pid 42) is running"), "{err}");
        drop(lock);
        assert_eq!(holder(dir.path()), None);
        assert_eq!(std::fs::read(dir.path().join(FILE_NAME)).unwrap(), b"");
        let _again = DirLock::acquire(dir.path()).unwrap();
        // A reader looking right now does not make a holder of a stale word.
        let looking = File::open(dir.path().join(FILE_NAME)).unwrap();
        looking.try_lock_shared().unwrap_err();
        assert_eq!(holder(dir.path()).map(|h| h.pid), Some(std::process::id()));
    }
}
