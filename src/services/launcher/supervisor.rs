//! One supervised child process: a peer (`goop2 peer <dir> --supervised`) or a hub
//! (`goop2 rendezvous <dir> --supervised`) the launcher started.
//!
//! A task owns the child. Its standard output and error are read line by line (each line at most
//! [`MAX_LINE`] bytes) into a ring of the last [`LOG_LINES`] lines, which pages tail live. A child
//! that fails while it should run is started again after a backoff that doubles with each crash
//! from [`FIRST_BACKOFF`] up to [`MAX_BACKOFF`] (a run of [`STABLE`] or more starts the count
//! again); after [`MAX_QUICK_CRASHES`] exits in a row that each came within [`QUICK`] of their
//! start, the supervisor gives up and shows the last error the child printed. Stopping sends
//! SIGTERM and, after [`STOP_WAIT`], SIGKILL; a child stopped from outside (a clean exit, or
//! SIGTERM or SIGINT) is left stopped.
//!
//! The child's standard input is a pipe whose other end only this task holds: when the launcher
//! ends, however it ends, the pipe closes and the child stops by itself (`--supervised`), so no
//! child outlives its launcher.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::services::hub::unix_ms;
use crate::telemetry::LogBuffer;

/// Lines of a child's output kept.
pub const LOG_LINES: usize = 1000;
/// Longest line kept whole; longer ones are cut into pieces of this size.
pub const MAX_LINE: usize = 8 * 1024;
/// How long a stopping child has between SIGTERM and SIGKILL.
pub const STOP_WAIT: Duration = Duration::from_secs(12);
/// The first wait before a crashed child is started again.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between restarts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A run shorter than this that ends on its own counts as a quick crash.
pub const QUICK: Duration = Duration::from_secs(10);
/// Quick crashes in a row after which the supervisor gives up.
pub const MAX_QUICK_CRASHES: u32 = 5;
/// A run this long before a crash makes the next wait the first one again.
pub const STABLE: Duration = Duration::from_secs(120);

/// How to start the child.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    pub program: PathBuf,
    pub args: Vec<OsString>,
}

/// Where a child is, as pages show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Stopped,
    Running,
    Stopping,
    /// Crashed; started again after a wait.
    Restarting,
    /// Crashed too often in a row; waits for the owner.
    Failed,
}

/// A child's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChildState {
    pub phase: Phase,
    pub pid: Option<u32>,
    /// When the current run started (ms since the Unix epoch).
    pub since_ms: Option<i64>,
    /// Restarts after crashes since the owner last started it.
    pub restarts: u32,
    /// How the last run ended, when it ended by itself: "exited with status 1".
    pub last_exit: Option<String>,
    /// The last error line the child printed before it ended (`error: …`, or an `ERROR` log).
    pub last_error: Option<String>,
    /// When a restart is due (ms since the Unix epoch).
    pub retry_at_ms: Option<i64>,
}

impl ChildState {
    pub fn stopped() -> ChildState {
        ChildState {
            phase: Phase::Stopped,
            pid: None,
            since_ms: None,
            restarts: 0,
            last_exit: None,
            last_error: None,
            retry_at_ms: None,
        }
    }
}

/// What the owner asks; each is answered once done.
enum Order {
    Start(oneshot::Sender<()>),
    Restart(oneshot::Sender<()>),
    Stop(oneshot::Sender<()>),
}

/// The handle of one supervised child. Dropping every handle stops the child.
#[derive(Clone)]
pub struct Supervisor {
    commands: mpsc::Sender<Order>,
    state: watch::Receiver<ChildState>,
    logs: LogBuffer,
}

impl Supervisor {
    /// A supervisor of `spec`, stopped; `changed` ticks on every change of state.
    pub fn new(spec: ChildSpec, changed: watch::Sender<u64>) -> Supervisor {
        let (commands, received) = mpsc::channel(8);
        let (state_tx, state) = watch::channel(ChildState::stopped());
        let logs = LogBuffer::new(LOG_LINES);
        let task = Task {
            spec,
            commands: received,
            state: state_tx,
            logs: logs.clone(),
            changed,
            child: None,
            crashes: 0,
            quick_crashes: 0,
            last_error: watch::channel(None).0,
        };
        tokio::spawn(task.run());
        Supervisor {
            commands,
            state,
            logs,
        }
    }

    /// Starts the child (a failed or waiting one at once); resolves once it was spawned.
    pub async fn start(&self) {
        self.order(Order::Start).await
    }

    /// Stops the child if it runs, and starts it again.
    pub async fn restart(&self) {
        self.order(Order::Restart).await
    }

    /// Stops the child; resolves once it has exited.
    pub async fn stop(&self) {
        self.order(Order::Stop).await
    }

    async fn order(&self, order: fn(oneshot::Sender<()>) -> Order) {
        let (done, finished) = oneshot::channel();
        if self.commands.send(order(done)).await.is_ok() {
            let _ = finished.await;
        }
    }

    pub fn state(&self) -> ChildState {
        self.state.borrow().clone()
    }

    /// The child's output, across its runs.
    pub fn logs(&self) -> &LogBuffer {
        &self.logs
    }
}

/// A running child and what it needs.
struct Running {
    child: Child,
    /// Held so the child's standard input stays open; dropped, the child stops by itself.
    _stdin: Option<ChildStdin>,
    started: Instant,
}

struct Task {
    spec: ChildSpec,
    commands: mpsc::Receiver<Order>,
    state: watch::Sender<ChildState>,
    logs: LogBuffer,
    changed: watch::Sender<u64>,
    child: Option<Running>,
    /// Crashes since the last stable run, for the backoff.
    crashes: u32,
    /// Crashes in a row that came quickly, for giving up.
    quick_crashes: u32,
    /// The last error line the child's output readers saw.
    last_error: watch::Sender<Option<String>>,
}

impl Task {
    async fn run(mut self) {
        let mut retry_at: Option<Instant> = None;
        loop {
            let exited = async {
                match self.child.as_mut() {
                    Some(running) => running.child.wait().await,
                    None => std::future::pending().await,
                }
            };
            let retry = async {
                match retry_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Order::Start(done)) => {
                        retry_at = None;
                        if self.child.is_none() {
                            self.crashes = 0;
                            self.quick_crashes = 0;
                            self.update(|s| s.restarts = 0);
                            self.spawn();
                        }
                        let _ = done.send(());
                    }
                    Some(Order::Restart(done)) => {
                        retry_at = None;
                        self.terminate().await;
                        self.crashes = 0;
                        self.quick_crashes = 0;
                        self.update(|s| s.restarts = 0);
                        self.spawn();
                        let _ = done.send(());
                    }
                    Some(Order::Stop(done)) => {
                        retry_at = None;
                        self.terminate().await;
                        self.update(|s| {
                            s.phase = Phase::Stopped;
                            s.retry_at_ms = None;
                        });
                        let _ = done.send(());
                    }
                    None => {
                        // The launcher is stopping.
                        self.terminate().await;
                        return;
                    }
                },
                status = exited => {
                    let Some(running) = self.child.take() else { continue };
                    let lived = running.started.elapsed();
                    let clean = status.as_ref().is_ok_and(stopped_from_outside);
                    let exit = describe_exit(status);
                    if clean {
                        // Stopped from outside (a SIGTERM of its owner's): not a crash, and
                        // not started again against their will.
                        self.logs.push("INFO", "launcher", format!("the process {exit} by itself"), Vec::new());
                        self.update(|s| {
                            s.phase = Phase::Stopped;
                            s.pid = None;
                            s.since_ms = None;
                            s.last_exit = Some(exit);
                        });
                        continue;
                    }
                    // Readers finish with the pipes; give them a moment to see the last line.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let error = self.last_error.borrow().clone();
                    self.logs.push("WARN", "launcher", format!("the process {exit}"), Vec::new());
                    self.crashes = match lived < STABLE {
                        true => self.crashes + 1,
                        false => 1,
                    };
                    self.quick_crashes = match lived < QUICK {
                        true => self.quick_crashes + 1,
                        false => 0,
                    };
                    if self.quick_crashes >= MAX_QUICK_CRASHES {
                        self.logs.push(
                            "ERROR",
                            "launcher",
                            format!("gave up after {} quick exits in a row", self.quick_crashes),
                            Vec::new(),
                        );
                        self.update(|s| {
                            s.phase = Phase::Failed;
                            s.pid = None;
                            s.last_exit = Some(exit);
                            s.last_error = error;
                            s.retry_at_ms = None;
                        });
                        continue;
                    }
                    let wait = backoff(self.crashes);
                    retry_at = Some(Instant::now() + wait);
                    self.update(|s| {
                        s.phase = Phase::Restarting;
                        s.pid = None;
                        s.last_exit = Some(exit);
                        s.last_error = error;
                        s.retry_at_ms = Some(unix_ms() + wait.as_millis() as i64);
                    });
                }
                () = retry => {
                    retry_at = None;
                    self.update(|s| s.restarts += 1);
                    self.spawn();
                }
            }
        }
    }

    fn update(&self, change: impl FnOnce(&mut ChildState)) {
        self.state.send_modify(change);
        self.changed.send_modify(|n| *n += 1);
    }

    /// Starts the child; a child that cannot be started at all is a failure shown as such.
    fn spawn(&mut self) {
        let mut command = Command::new(&self.spec.program);
        command
            .args(&self.spec.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let _ = self.last_error.send(None);
        match command.spawn() {
            Ok(mut child) => {
                if let Some(out) = child.stdout.take() {
                    let errors = self.last_error.clone();
                    tokio::spawn(read_lines(out, "stdout", self.logs.clone(), errors));
                }
                if let Some(err) = child.stderr.take() {
                    let errors = self.last_error.clone();
                    tokio::spawn(read_lines(err, "stderr", self.logs.clone(), errors));
                }
                let pid = child.id();
                self.child = Some(Running {
                    _stdin: child.stdin.take(),
                    child,
                    started: Instant::now(),
                });
                self.update(|s| {
                    s.phase = Phase::Running;
                    s.pid = pid;
                    s.since_ms = Some(unix_ms());
                    s.retry_at_ms = None;
                });
            }
            Err(err) => {
                let message = format!("cannot start {}: {err}", self.spec.program.display());
                self.logs
                    .push("ERROR", "launcher", message.clone(), Vec::new());
                self.update(|s| {
                    s.phase = Phase::Failed;
                    s.pid = None;
                    s.last_error = Some(message);
                });
            }
        }
    }

    /// Stops the running child: SIGTERM, then SIGKILL after [`STOP_WAIT`].
    async fn terminate(&mut self) {
        let Some(mut running) = self.child.take() else {
            return;
        };
        self.update(|s| s.phase = Phase::Stopping);
        if let Some(pid) = running.child.id() {
            let pid = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        }
        let status = match tokio::time::timeout(STOP_WAIT, running.child.wait()).await {
            Ok(status) => status,
            Err(_) => {
                self.logs.push(
                    "WARN",
                    "launcher",
                    format!("no exit {} s after SIGTERM: killed", STOP_WAIT.as_secs()),
                    Vec::new(),
                );
                let _ = running.child.start_kill();
                running.child.wait().await
            }
        };
        self.logs.push(
            "INFO",
            "launcher",
            format!("stopped; the process {}", describe_exit(status)),
            Vec::new(),
        );
        self.update(|s| {
            s.pid = None;
            s.since_ms = None;
        });
    }
}

/// True when a child ended as its owner stops it: a clean exit (SIGTERM handled), or SIGTERM or
/// SIGINT arriving before it handled them. A crash, a failed start or SIGKILL (the kernel's out
/// of memory killer) is none of these.
fn stopped_from_outside(status: &std::process::ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    let by_owner = [
        nix::sys::signal::Signal::SIGTERM as i32,
        nix::sys::signal::Signal::SIGINT as i32,
    ];
    status.success()
        || status
            .signal()
            .is_some_and(|signal| by_owner.contains(&signal))
}

/// The wait before the restart after `crashes` quick crashes in a row.
fn backoff(crashes: u32) -> Duration {
    crate::services::doubling(FIRST_BACKOFF, crashes, MAX_BACKOFF)
}

fn describe_exit(status: std::io::Result<std::process::ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(signal)) => format!("was ended by signal {signal}"),
            (None, None) => "ended".into(),
        },
        Err(err) => format!("could not be waited for: {err}"),
    }
}

/// Copies `output` into `logs` line by line, and its last error line into `errors`.
async fn read_lines(
    output: impl AsyncRead + Unpin,
    stream: &'static str,
    logs: LogBuffer,
    errors: watch::Sender<Option<String>>,
) {
    let mut reader = BufReader::new(output);
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        match (&mut reader)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']).to_owned();
        if text.starts_with("error:") || text.contains(" ERROR ") {
            errors.send_replace(Some(text.clone()));
        }
        logs.push("INFO", stream, text, Vec::new());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_owners_stop_counts_as_stopped_from_outside() {
        use std::os::unix::process::ExitStatusExt;
        let status = std::process::ExitStatus::from_raw;
        // Wait statuses: a signal in the low bits, an exit code in the next byte.
        assert!(stopped_from_outside(&status(0)));
        assert!(stopped_from_outside(&status(15)));
        assert!(stopped_from_outside(&status(2)));
        assert!(!stopped_from_outside(&status(9)));
        assert!(!stopped_from_outside(&status(6)));
        assert!(!stopped_from_outside(&status(1 << 8)));
    }

    #[test]
    fn the_backoff_doubles_up_to_its_bound() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(4), Duration::from_secs(8));
        assert_eq!(backoff(9), MAX_BACKOFF);
        assert_eq!(backoff(100), MAX_BACKOFF);
    }
}
