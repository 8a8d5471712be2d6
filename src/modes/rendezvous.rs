//! `goop2 rendezvous <dir>`: a hub only — presence registry, streams, dashboard — bound to
//! `presence.rendezvous_bind:rendezvous_port`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{self, Config};
use crate::http::client_ip::TrustedProxies;
use crate::http::hub::{DirectEvents, HubApp, router};
use crate::http::layers::{self, RequestLog};
use crate::http::server::{self, ServerLimits};
use crate::http::session::AdminAuth;
use crate::http::viewer::{self, ViewerApp};
use crate::services::auth::SessionStore;
use crate::services::hub::{Hub, HubOptions};
use crate::services::relay::{Relay, RelayLimits, RelayOptions};
use crate::services::sitetemplates::store::{TemplateStore, Templates};
use crate::store::hub::HubStore;
use crate::telemetry::LogBuffer;

/// How long a graceful stop may take in total.
pub const SHUTDOWN_LIMIT: Duration = Duration::from_secs(10);

/// A running hub: its addresses and how to stop it.
pub struct RunningHub {
    pub hub_addr: SocketAddr,
    /// The settings viewer, when `viewer.http_addr` is set.
    pub viewer_addr: Option<SocketAddr>,
    /// The settings viewer's theme, to change while running.
    pub viewer_theme: Option<crate::http::access::LiveTheme>,
    pub hub: Hub,
    stop: watch::Sender<bool>,
    servers: Vec<JoinHandle<()>>,
}

/// Loads `dir/goop.json`, creating a rendezvous-only configuration first if there is none.
pub fn prepare_dir(dir: &Path) -> anyhow::Result<config::LoadedConfig> {
    let path = dir.join(config::FILE_NAME);
    if !path.exists() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut config = Config::default();
        config.presence.rendezvous_only = true;
        config.presence.rendezvous_host = true;
        config.presence.peer_db_path = config::HUB_PEER_DB.into();
        config.viewer.http_addr = "127.0.0.1:9090".into();
        config.save(&path)?;
        tracing::info!(path = %path.display(), "created a rendezvous-only goop.json");
    }
    Ok(Config::load(&path)?)
}

/// Starts the hub of directory `dir` described by `config`; returns once it is listening.
pub async fn start(dir: &Path, config: &Config, logs: LogBuffer) -> anyhow::Result<RunningHub> {
    start_with_options(dir, config, HubOptions::from_config(config), logs).await
}

/// Starts the hub a peer hosts (`presence.rendezvous_host`): without the settings viewer, since
/// the peer's console — on the same `viewer.http_addr` — is its settings page.
pub async fn start_embedded(
    dir: &Path,
    config: &Config,
    logs: LogBuffer,
    relay: Option<Relay>,
) -> anyhow::Result<RunningHub> {
    let mut config = config.clone();
    config.viewer.http_addr.clear();
    let options = HubOptions::from_config(&config);
    start_hub(dir, &config, options, logs, HubRelay::Given(relay)).await
}

/// Where a hub's relay comes from.
enum HubRelay {
    /// Its own, with `presence.relay_enabled`.
    FromConfig,
    /// The node of the peer hosting it (`p2p.relay_enabled`), or none.
    Given(Option<Relay>),
}

/// Like [`start`], with hub options adjusted beyond what `goop.json` sets (queue sizes).
pub async fn start_with_options(
    dir: &Path,
    config: &Config,
    options: HubOptions,
    logs: LogBuffer,
) -> anyhow::Result<RunningHub> {
    start_hub(dir, config, options, logs, HubRelay::FromConfig).await
}

async fn start_hub(
    dir: &Path,
    config: &Config,
    options: HubOptions,
    logs: LogBuffer,
    relay: HubRelay,
) -> anyhow::Result<RunningHub> {
    let presence = &config.presence;
    let mut options = options;
    options.max_streams = fit_streams_to_descriptor_limit(options.max_streams as u64) as usize;
    let bind = SocketAddr::new(presence.rendezvous_bind_ip(), presence.hub_port());
    let listener = server::listen(bind).with_context(|| {
        format!("cannot listen on {bind} (presence.rendezvous_bind/rendezvous_port)")
    })?;
    let hub_addr = server::local_addr(&listener);
    let hub = Hub::start(options);
    let store = open_store(dir, config).await?;
    if let Some(store) = &store {
        hub.attach_store(store.clone())
            .await
            .with_context(|| format!("cannot read the peer database ({})", store.kind()))?;
    }
    let (stop, stopped) = watch::channel(false);
    let relay = match relay {
        HubRelay::Given(relay) => relay,
        HubRelay::FromConfig if presence.relay_enabled => {
            Some(start_relay(dir, config, stopped.clone()).await?)
        }
        HubRelay::FromConfig => None,
    };
    // With a peer database, administrators' sessions are kept there: every instance knows
    // every sign-in, and a restart keeps them (requests ask the database; the cache streams
    // check is read at once by `keep_refreshed`, whose first tick is immediate).
    let mut admin = AdminAuth::new(presence.admin_password.clone(), "/admin");
    if let Some(store) = &store {
        admin = admin.with_sessions(SessionStore::shared(store.clone()));
    }
    let app = HubApp {
        hub: hub.clone(),
        proxies: TrustedProxies(Arc::new(presence.trusted_proxy_nets())),
        logs: logs.clone(),
        admin,
        templates: match &store {
            Some(store) if store.holds_templates() => Templates::Database(store.clone()),
            _ => Templates::Directory(Arc::new(TemplateStore::new(Config::resolve(
                dir,
                &presence.templates_dir,
            )))),
        },
        config: Arc::new(config.clone()),
        relay,
    };
    let logs_for_viewer = logs;
    let admin_sessions = app.admin.sessions.clone();
    let direct_app = app.clone();
    let routes = layers::common(router(app), RequestLog::Slow);
    let limits = ServerLimits {
        max_connections: hub.options().max_streams + OTHER_DESCRIPTORS as usize,
        write_stall_timeout: hub.options().write_stall_timeout,
        header_read_timeout: hub.options().header_read_timeout,
        stalls: Some(hub.metrics().dropped_slow_subscribers.clone()),
        ..ServerLimits::default()
    };
    let until_stopped = |mut stopped: watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    let events: Arc<dyn server::DirectRoute> = Arc::new(DirectEvents(direct_app));
    let sessions = tokio::spawn(admin_sessions.keep_refreshed(stopped.clone()));
    let mut servers = vec![
        sessions,
        tokio::spawn(server::serve(
            listener,
            routes,
            Some(events),
            limits,
            until_stopped(stopped.clone()),
        )),
    ];
    tracing::info!(addr = %hub_addr, "rendezvous hub listening on http://{hub_addr}");

    let mut viewer_addr = None;
    let mut viewer_theme = None;
    if let Some(addr) = config.viewer.http_socket_addr() {
        crate::http::access::check_bind(&addr, config)?;
        let listener = server::listen(addr)
            .with_context(|| format!("cannot listen on {addr} (viewer.http_addr)"))?;
        let bound = server::local_addr(&listener);
        let app = ViewerApp::new(
            dir.join(config::FILE_NAME),
            config.clone(),
            logs_for_viewer,
            format!("http://{hub_addr}/"),
            stopped.clone(),
        );
        viewer_theme = Some(app.access.theme.clone());
        let routes = layers::common(viewer::router(app), RequestLog::Every);
        servers.push(tokio::spawn(server::serve(
            listener,
            routes,
            None,
            ServerLimits::default(),
            until_stopped(stopped),
        )));
        tracing::info!(addr = %bound, "settings viewer on http://{bound}/self");
        viewer_addr = Some(bound);
    }
    Ok(RunningHub {
        hub_addr,
        viewer_addr,
        viewer_theme,
        hub,
        stop,
        servers,
    })
}

impl RunningHub {
    /// Stops accepting, tells stream clients to reconnect elsewhere or later, waits for open
    /// requests (at most [`SHUTDOWN_LIMIT`]).
    pub async fn shutdown(self) {
        self.hub.shutdown();
        self.stop.send_replace(true);
        let drained = async {
            for server in self.servers {
                let _ = server.await;
            }
            // Streams are closed; now every change is committed before the process ends.
            self.hub.flush().await;
        };
        if tokio::time::timeout(SHUTDOWN_LIMIT, drained).await.is_err() {
            tracing::warn!("the hub did not stop within {SHUTDOWN_LIMIT:?}");
        }
        tracing::info!("rendezvous hub stopped");
    }
}

/// The circuit relay of `presence.relay_enabled`, with the directory's identity key, on every
/// interface at `presence.relay_port`.
async fn start_relay(
    dir: &Path,
    config: &Config,
    stopped: watch::Receiver<bool>,
) -> anyhow::Result<Relay> {
    let presence = &config.presence;
    let key = Config::resolve(dir, &config.identity.key_file);
    let identity = crate::identity::load_or_create(&key)?;
    let options = RelayOptions {
        listen_ip: std::net::IpAddr::from([0, 0, 0, 0]),
        port: presence.relay_port,
        // Validated at load.
        external_addrs: presence
            .relay_external_addrs
            .iter()
            .filter_map(|addr| addr.parse().ok())
            .collect(),
        limits: RelayLimits::of(presence),
        probe_private_addrs: false,
    };
    Relay::start(identity.keypair, options, stopped)
        .await
        .context("cannot start the circuit relay (presence.relay_enabled)")
}

/// The shared peer database goop.json names, if any: PostgreSQL (`presence.peer_db_url`) or a
/// SQLite file (`presence.peer_db_path`). The URL's password never reaches a log line or an
/// error.
async fn open_store(dir: &Path, config: &Config) -> anyhow::Result<Option<HubStore>> {
    let presence = &config.presence;
    let url = presence.peer_db_url.expose();
    if !url.is_empty() {
        let shown = config::redact_url_password(url);
        // The store's error names the database (its password redacted).
        let store = HubStore::connect(url)
            .await
            .context("cannot open the peer database (presence.peer_db_url)")?;
        tracing::info!(url = %shown, "sharing peer state, bans and templates through PostgreSQL");
        return Ok(Some(store));
    }
    if !presence.peer_db_path.is_empty() {
        let path = Config::resolve(dir, &presence.peer_db_path);
        let store = HubStore::open(&path)
            .await
            .with_context(|| format!("cannot open the peer database {}", path.display()))?;
        tracing::info!(path = %path.display(), "sharing peer state through the peer database");
        return Ok(Some(store));
    }
    Ok(None)
}

/// Descriptors kept for everything but streams: the listener, connections being read, files.
const OTHER_DESCRIPTORS: u64 = 1024;
/// Below this many streams a hub serves too few subscribers to be useful: worth a warning.
const FEW_STREAMS: u64 = 1000;

/// Every stream holds a file descriptor: lifts the soft limit as far as `max_streams` needs
/// (up to the hard limit) and returns how many streams fit. When fewer fit than configured, the
/// hub serves that many and says what to set — at INFO while that is still a useful number (a
/// small machine with the defaults), at WARN below it.
fn fit_streams_to_descriptor_limit(max_streams: u64) -> u64 {
    let wanted = max_streams + OTHER_DESCRIPTORS;
    let limit = match rlimit::increase_nofile_limit(wanted) {
        Ok(limit) => limit,
        Err(err) => {
            tracing::warn!("cannot raise the open-file limit: {err}");
            return max_streams;
        }
    };
    if limit >= wanted {
        return max_streams;
    }
    let fits = limit.saturating_sub(OTHER_DESCRIPTORS).max(1);
    let advice = format!(
        "the open-file limit ({limit}) holds {fits} of presence.max_streams ({max_streams}); \
         serving at most {fits}. For all of them raise it to {wanted} (systemd: \
         LimitNOFILE={wanted}; a shell: ulimit -n {wanted}), or set presence.max_streams to {fits}"
    );
    if fits < FEW_STREAMS {
        tracing::warn!("{advice}");
    } else {
        tracing::info!("{advice}");
    }
    fits
}
