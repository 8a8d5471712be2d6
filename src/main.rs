//! The `goop2` binary: parse the command line and run one mode.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use goop2::cli::{Cli, Command};
use goop2::telemetry::{self, LogBuffer};
use goop2::{config, modes};

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
    match cli.command {
        Command::Init {
            dir,
            label,
            console,
            port,
            hub,
        } => {
            let options = modes::init::InitOptions {
                label,
                console,
                port,
                hub,
            };
            let scaffold = modes::init::run_with(&dir, options)?;
            for note in &scaffold.notes {
                println!("{note}");
            }
            println!("Created {}", scaffold.config_path.display());
            println!("Peer ID: {}", scaffold.peer_id);
            println!("Starter page: {}", scaffold.site_index.display());
        }
        Command::HashPassword => println!("{}", modes::hash_password::run()?),
        Command::Rendezvous { dir } => run_rendezvous(&dir)?,
        Command::Peer { dir, init } => run_peer(&dir, init)?,
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
                    hub_pid,
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
                hub_pid,
            };
            runtime()?.block_on(run_loadtest(options, baseline))?;
        }
    }
    Ok(())
}

fn run_rendezvous(dir: &Path) -> anyhow::Result<()> {
    let logs = LogBuffer::new(telemetry::DEFAULT_CAPACITY);
    telemetry::init(&logs)?;
    let mut loaded = modes::rendezvous::prepare_dir(dir)?;
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
    runtime()?.block_on(async {
        let stop = StopSignals::watch()?;
        let running = modes::rendezvous::start(dir, &loaded.config, logs).await?;
        stop.wait().await?;
        tracing::info!("stopping");
        running.shutdown().await;
        Ok(())
    })
}

fn run_peer(dir: &Path, init: bool) -> anyhow::Result<()> {
    let logs = LogBuffer::new(telemetry::DEFAULT_CAPACITY);
    if init && !dir.join(goop2::config::FILE_NAME).exists() {
        let scaffold = modes::init::run(dir, None)?;
        for note in &scaffold.notes {
            eprintln!("{note}");
        }
        eprintln!(
            "Created {} with default settings (goop.json, identity, site/)",
            dir.display()
        );
    }
    let loaded = modes::peer::load_dir(dir)?;
    telemetry::init(&logs)?;
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let runtime = runtime()?;
    let result = runtime.block_on(async {
        // Watched before anything is announced, so a signal right after is never missed.
        let stop = StopSignals::watch()?;
        let running = modes::peer::start(dir, &loaded.config, logs).await?;
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

/// SIGINT (Ctrl-C) and SIGTERM, watched from creation on.
struct StopSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn watch() -> anyhow::Result<StopSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignals {
            interrupt: signal(SignalKind::interrupt()).context("cannot watch SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("cannot watch SIGTERM")?,
        })
    }

    /// Resolves on the first of them.
    async fn wait(mut self) -> anyhow::Result<()> {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        Ok(())
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
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
            hub_pid: None,
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
