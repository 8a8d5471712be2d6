//! `goop2` / `goop2 launch`: the launcher — a local web page that manages the peers under one
//! directory, each run as a child process it supervises. Its children stop with it: cleanly when
//! it stops, and by themselves when it is killed (their standard input closes).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::http::client_ip::TrustedProxies;
use crate::http::launcher::{self, LauncherApp};
use crate::http::layers::{self, RequestLog};
use crate::http::server::{self, ServerLimits};
use crate::services::launcher::Launcher;
use crate::services::until_stopped;

/// What the command line gives the launcher.
#[derive(Debug, Clone)]
pub struct LaunchOptions {
    /// The directory of the peers.
    pub dir: PathBuf,
    /// Where to listen; else `launcher.json`'s `addr`, else 127.0.0.1 on a free port.
    pub addr: Option<String>,
    /// The `goop2` binary children are started with.
    pub program: PathBuf,
}

/// A running launcher.
pub struct RunningLauncher {
    pub addr: SocketAddr,
    pub launcher: Launcher,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
}

/// Opens the directory, starts listening and starts the peers marked to start with it.
pub async fn start(options: LaunchOptions) -> anyhow::Result<RunningLauncher> {
    let launcher = Launcher::open(&options.dir, options.program)?;
    let settings = launcher.settings();
    let wanted = options
        .addr
        .clone()
        .or_else(|| (!settings.addr.is_empty()).then(|| settings.addr.clone()))
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let addr: SocketAddr = match wanted.parse::<u16>() {
        Ok(port) => SocketAddr::from(([127, 0, 0, 1], port)),
        Err(_) => wanted
            .parse()
            .with_context(|| format!("the launcher's address {wanted:?} is not ip:port"))?,
    };
    if !addr.ip().is_loopback() && settings.admin_password.is_empty() {
        anyhow::bail!(
            "the launcher's address ({addr}) is not a loopback address, so launcher.json in {} \
             must set admin_password; create one with `goop2 hash-password`",
            options.dir.display()
        );
    }
    let listener = server::listen(addr)
        .with_context(|| format!("cannot listen on {addr} (the launcher's address)"))?;
    let bound = server::local_addr(&listener);
    let (stop, stopped) = watch::channel(false);
    let app = LauncherApp {
        access: launcher::access(&launcher),
        launcher: launcher.clone(),
        proxies: TrustedProxies(Arc::new(Vec::new())),
        stop: stopped.clone(),
    };
    let routes = layers::common(launcher::router(app), RequestLog::Every);
    let mut until = stopped;
    let server = tokio::spawn(server::serve(
        listener,
        routes,
        None,
        ServerLimits::default(),
        async move { until_stopped(&mut until).await },
    ));
    tracing::info!(addr = %bound, dir = %options.dir.display(), "launcher on http://{bound}/");
    launcher.autostart().await;
    Ok(RunningLauncher {
        addr: bound,
        launcher,
        stop,
        server,
    })
}

impl RunningLauncher {
    /// The page's address.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Stops every child (SIGTERM, then SIGKILL after a bound) and the page.
    pub async fn shutdown(self) {
        self.launcher.stop_all().await;
        self.stop.send_replace(true);
        let _ = self.server.await;
    }
}

/// Opens `url` in the owner's browser: `$BROWSER` if set, else `xdg-open` when installed;
/// nothing (the URL was printed) when there is neither.
pub fn open_browser(url: &str) {
    let program = std::env::var_os("BROWSER")
        .filter(|b| !b.is_empty())
        .map(PathBuf::from)
        .or_else(|| find_in_path("xdg-open"));
    let Some(program) = program else {
        tracing::info!("no browser found ($BROWSER, xdg-open): open {url} yourself");
        return;
    };
    let spawned = std::process::Command::new(&program)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    match spawned {
        // Waited for on a thread of its own, so it leaves no zombie behind.
        Ok(mut child) => drop(std::thread::spawn(move || child.wait())),
        Err(err) => tracing::warn!("cannot open a browser with {}: {err}", program.display()),
    }
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}
