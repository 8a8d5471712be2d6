//! The `goop2` binary: parse the command line and run one mode.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use goop2::cli::{Cli, Command};
use goop2::telemetry::{self, LogBuffer};
use goop2::{config, modes};

/// jemalloc, not glibc's allocator: after 10,000 peers joined a hub at once, glibc's heaps
/// kept about 40 % more memory per live peer than jemalloc's (BENCHMARKS.md, "The allocator").
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let command = cli.command.unwrap_or(Command::Launch {
        dir: "./peers".into(),
        addr: None,
        no_browser: false,
    });
    match command {
        Command::Launch {
            dir,
            addr,
            no_browser,
        } => run_launcher(dir, addr, !no_browser)?,
        Command::Init {
            dir,
            label,
            console,
            port,
            hub,
            template,
        } => {
            let options = goop2::services::scaffold::InitOptions {
                label,
                console,
                port,
                hub,
                template,
            };
            let scaffold = goop2::services::scaffold::run_with(&dir, options)?;
            for note in &scaffold.notes {
                println!("{note}");
            }
            println!("Created {}", scaffold.config_path.display());
            println!("Peer ID: {}", scaffold.peer_id);
            println!("Starter page: {}", scaffold.site_index.display());
        }
        Command::HashPassword => println!("{}", modes::hash_password::run()?),
        Command::Rendezvous { dir, supervised } => run_rendezvous(&dir, supervised)?,
        Command::Peer {
            dir,
            init,
            supervised,
        } => run_peer(&dir, init, supervised)?,
        Command::Loadtest {
            url,
            subscribers,
            publishers,
            rate,
            duration,
            all_events,
            streams_per_address,
            hub_pid,
            baseline,
            community,
            transport,
            heartbeat,
            change_every,
            churn_every,
            storm,
            join_rate,
        } => {
            if let Some(peers) = community {
                let options = modes::loadtest::community::CommunityOptions {
                    url,
                    peers,
                    transport,
                    duration: std::time::Duration::from_secs(duration),
                    heartbeat: std::time::Duration::from_secs(heartbeat),
                    change_every: std::time::Duration::from_secs(change_every),
                    churn_every: std::time::Duration::from_secs(churn_every),
                    storm,
                    join_rate,
                    hub_pids: hub_pid,
                };
                let report = runtime()?.block_on(modes::loadtest::community::run(options))?;
                print!("{}", report.render());
                return Ok(());
            }
            let options = modes::loadtest::LoadOptions {
                url,
                subscribers,
                publishers,
                rate,
                duration: std::time::Duration::from_secs(duration),
                changes_only: !all_events,
                streams_per_address,
                hub_pids: hub_pid,
            };
            runtime()?.block_on(run_loadtest(options, baseline))?;
        }
    }
    Ok(())
}

fn run_launcher(dir: std::path::PathBuf, addr: Option<String>, open: bool) -> anyhow::Result<()> {
    let logs = LogBuffer::new(telemetry::DEFAULT_CAPACITY);
    telemetry::init(&logs)?;
    let runtime = runtime()?;
    runtime.block_on(async {
        let stop = StopSignals::watch(false)?;
        let running = modes::launch::start(modes::launch::LaunchOptions {
            dir,
            addr,
            program: std::env::current_exe().context("cannot find the path of this program")?,
        })
        .await?;
        let url = running.url();
        say(format_args!("Launcher: {url}"));
        if open {
            modes::launch::open_browser(&url);
        }
        stop.wait().await?;
        tracing::info!("stopping the launcher and its peers");
        running.shutdown().await;
        Ok(())
    })
}

fn run_rendezvous(dir: &Path, supervised: bool) -> anyhow::Result<()> {
    let logs = LogBuffer::new(telemetry::DEFAULT_CAPACITY);
    telemetry::init(&logs)?;
    let mut loaded = modes::rendezvous::prepare_dir(dir)?;
    let mut lock = goop2::services::dirlock::DirLock::acquire(dir)?;
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let port_variable = std::env::var_os(config::PORT_VARIABLE);
    let port_variable = port_variable.as_ref().map(|v| v.to_string_lossy());
    if let Some(port) = loaded
        .config
        .presence
        .use_environment_port(port_variable.as_deref())?
    {
        tracing::info!(
            port,
            "the hub takes its port from PORT (goop.json leaves presence.rendezvous_port out)"
        );
    }
    let runtime = runtime()?;
    let result = runtime.block_on(async {
        let stop = StopSignals::watch(supervised)?;
        let running = modes::rendezvous::start(dir, &loaded.config, logs).await?;
        // A launcher's SIGHUP is handled before the lock names the viewer: it signals only then.
        if supervised {
            reload_theme_on_hangup(dir, running.viewer_theme.clone())?;
        }
        describe(&mut lock, running.viewer_addr);
        stop.wait().await?;
        tracing::info!("stopping");
        running.shutdown().await;
        Ok(())
    });
    // Blocking work still running does not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    result
}

fn run_peer(dir: &Path, init: bool, supervised: bool) -> anyhow::Result<()> {
    let logs = LogBuffer::new(telemetry::DEFAULT_CAPACITY);
    if init && !dir.join(goop2::config::FILE_NAME).exists() {
        let scaffold = goop2::services::scaffold::run(dir, None)?;
        for note in &scaffold.notes {
            eprintln!("{note}");
        }
        eprintln!(
            "Created {} with default settings (goop.json, identity, site/)",
            dir.display()
        );
    }
    let loaded = modes::peer::load_dir(dir)?;
    let mut lock = goop2::services::dirlock::DirLock::acquire(dir)?;
    telemetry::init(&logs)?;
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let runtime = runtime()?;
    let result = runtime.block_on(async {
        // Watched before anything is announced, so a signal right after is never missed.
        let stop = StopSignals::watch(supervised)?;
        let running = modes::peer::start(dir, &loaded.config, logs).await?;
        // A launcher's SIGHUP is handled before the lock names the console: it signals only then.
        if supervised {
            reload_theme_on_hangup(dir, running.theme.clone())?;
        }
        describe(&mut lock, running.console_addr);
        say(format_args!("Peer {} is running", running.peer_id));
        if let Some(addr) = running.console_addr {
            say(format_args!("Console: http://{addr}/"));
        }
        stop.wait().await?;
        tracing::info!("stopping");
        running.shutdown().await;
        Ok(())
    });
    // Blocking work still running (a script told to stop, a name lookup) does not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    result
}

/// A line on stdout for whoever started the peer. Nobody reading it (a closed pipe) is no reason
/// to stop a running peer, as `println!` would.
fn say(line: std::fmt::Arguments) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{line}");
}

/// Records the running process's console address in its directory's lock (for the launcher).
fn describe(lock: &mut goop2::services::dirlock::DirLock, console: Option<std::net::SocketAddr>) {
    let holder = goop2::services::dirlock::Holder {
        pid: std::process::id(),
        console: console.map(|addr| addr.to_string()),
    };
    if let Err(err) = lock.describe(&holder) {
        tracing::warn!("cannot write {}: {err}", lock.path().display());
    }
}

/// For a launcher's child: on SIGHUP, reads `viewer.theme` from goop.json again and shows it
/// from the next page on (the launcher sends it after changing the theme of its peers, once the
/// lock names the console). Read once more now, for a change made while the peer was starting.
/// A peer run by hand keeps SIGHUP's usual meaning: its terminal is gone, so it stops.
fn reload_theme_on_hangup(
    dir: &Path,
    theme: Option<goop2::http::access::LiveTheme>,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    let dir = dir.to_owned();
    let read_again = move |why: &str| match config::Config::load_dir(&dir) {
        Ok(loaded) => {
            let chosen = loaded.config.viewer.color_theme();
            if let Some(theme) = &theme
                && theme.get() != chosen
            {
                theme.set(chosen);
                tracing::info!(theme = chosen.as_str(), "{why}: theme read again");
            }
        }
        Err(err) => tracing::warn!("{why}: goop.json not read again: {err}"),
    };
    read_again("started");
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            read_again("SIGHUP");
        }
    });
    Ok(())
}

/// SIGINT (Ctrl-C) and SIGTERM, watched from creation on; for a launcher's child, also its
/// standard input closing.
struct StopSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    supervised: bool,
}

impl StopSignals {
    fn watch(supervised: bool) -> anyhow::Result<StopSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignals {
            interrupt: signal(SignalKind::interrupt()).context("cannot watch SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("cannot watch SIGTERM")?,
            supervised,
        })
    }

    /// Resolves on the first of them.
    async fn wait(mut self) -> anyhow::Result<()> {
        let parent_gone = async {
            match self.supervised {
                true => stdin_closed().await,
                false => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
            _ = parent_gone => tracing::info!("the launcher is gone"),
        }
        Ok(())
    }
}

/// Resolves when standard input reaches its end (or fails): the launcher holding its other end
/// ended. What it sends is read and ignored. The read blocks on a thread of its own, which the
/// runtime never waits for.
async fn stdin_closed() {
    let (ended, end) = tokio::sync::oneshot::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 256];
            while let Ok(1..) = std::io::stdin().read(&mut buf) {}
            let _ = ended.send(());
        });
    if spawned.is_ok() {
        let _ = end.await;
    } else {
        std::future::pending::<()>().await;
    }
}

/// How many tasks a worker runs between looks at its sockets (tokio's default: 61). A change on
/// a hub wakes a task per subscriber, and a request that comes meanwhile is not even queued
/// until the next look: at 10,000 peers, looking every 16 tasks halved `/publish`'s median and
/// put its p99 at 3.9–4.3 ms (4.6–6.4 ms before), with the fan-out, CPU and memory unchanged
/// (BENCHMARKS.md, "A request during a change").
const EVENT_INTERVAL: u32 = 16;

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .event_interval(EVENT_INTERVAL)
        .build()
        .context("cannot start the async runtime")
}

async fn run_loadtest(options: modes::loadtest::LoadOptions, baseline: bool) -> anyhow::Result<()> {
    let report = modes::loadtest::run(options.clone()).await?;
    println!("== hub {}\n{}", options.url, report.render());
    if baseline {
        let server = modes::loadtest::baseline::HelloServer::start()?;
        let url = server.url().to_owned();
        let hello = modes::loadtest::run(modes::loadtest::LoadOptions {
            url: url.clone(),
            subscribers: 0,
            hub_pids: Vec::new(),
            ..options
        })
        .await?;
        println!(
            "== baseline: plain hello-world server {url}\n{}",
            hello.render()
        );
        println!(
            "hub / baseline accepted publishes/s: {:.2}",
            report.accepted_per_second() / hello.accepted_per_second().max(1e-9)
        );
    }
    Ok(())
}
