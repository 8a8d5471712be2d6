//! `goop2 peer <dir>`: a full peer — identity, site, libp2p node, presence on the LAN and at
//! hubs (an embedded one with `presence.rendezvous_host`, and `presence.rendezvous_wan`), and the
//! PeerTable that merges what it hears.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use std::sync::Arc;

use crate::config::Config;
use crate::http::access::{LiveTheme, OwnerAccess};
use crate::http::client_ip::TrustedProxies;
use crate::http::console::{self, ConsoleApp};
use crate::http::layers::{self, RequestLog};
use crate::http::server::ServerLimits;
use crate::identity::{self, PeerId};
use crate::modes::rendezvous::{self, RunningHub};
use crate::services::blocklist::BlockList;
use crate::services::chat::{Chat, ChatOptions, ChatSetup};
use crate::services::data::DataService;
use crate::services::data::limits::InsertLimits;
use crate::services::groups::{GroupDirectory, GroupOptions, GroupSetup, Groups};
use crate::services::mq::apps::Apps;
use crate::services::mq::identity::Identities;
use crate::services::mq::{Mq, MqOptions};
use crate::services::node::budget::{AddressLimits, NodeLimits};
use crate::services::node::protocols::{Protocols, Served, mq as mq_wire};
use crate::services::node::vouched::{DialLimits, Reach};
use crate::services::node::{GossipLimits, Node, NodeOptions};
use crate::services::presence::cache::PeerBook;
use crate::services::presence::hub_client::{
    Announcement, HubClient, HubClientOptions, LinkEvent, parse_hub_url,
};
use crate::services::presence::peer_table::{PeerTable, Source, TableOptions};
use crate::services::presence::{lan, merge, reachability, relays};
use crate::services::site::Site;
use crate::services::site_files::SiteFiles;
use crate::services::sitetemplates::{SitePaths, SiteTemplates, TemplateSetup};
use crate::store::peer::PeerStore;
use crate::telemetry::LogBuffer;

/// A running peer.
pub struct RunningPeer {
    pub peer_id: PeerId,
    pub node: Node,
    pub table: PeerTable,
    /// The embedded hub, with `presence.rendezvous_host`.
    pub hub: Option<RunningHub>,
    /// The browser console, when `viewer.http_addr` is set.
    pub console_addr: Option<SocketAddr>,
    /// The console's theme, to change while running.
    pub theme: Option<LiveTheme>,
    /// What this peer announces; changing it publishes at once.
    pub announcement: Arc<watch::Sender<Announcement>>,
    /// The label `/goop/content/1.0.0` answers.
    pub label: Arc<watch::Sender<String>>,
    /// Favourites and last-known peers.
    pub book: PeerBook,
    /// Messages to and from other peers.
    pub mq: Mq,
    /// Direct and broadcast chat.
    pub chat: Chat,
    /// Groups hosted and joined.
    pub groups: Groups,
    stop: watch::Sender<bool>,
    hub_clients: Vec<HubClient>,
    /// Tasks that end once they see the stop (the gossip task says `offline` first).
    tasks: Vec<JoinHandle<()>>,
    /// Merges what the node and the hubs say; ends when the node has stopped.
    merge_task: JoinHandle<()>,
    /// Writes the last changes of the PeerTable when stopping.
    book_task: JoinHandle<()>,
    store: PeerStore,
}

/// How long stopping waits for the peer's tasks to end by themselves.
const TASKS_WAIT: Duration = Duration::from_secs(3);

/// How often every online peer's reachability is probed again.
const PROBE_EVERY: Duration = Duration::from_secs(30);

/// Applies the template a new peer was created with (`goop2 init --template`, the launcher),
/// once: the request is removed whether it worked or not, and the outcome logged.
async fn apply_pending_template(dir: &Path, templates: &SiteTemplates) {
    use crate::services::scaffold::PENDING_TEMPLATE;
    use crate::services::sitetemplates::Source;
    let path = dir.join(PENDING_TEMPLATE);
    let Ok(key) = std::fs::read_to_string(&path) else {
        return;
    };
    let outcome = match Source::parse(key.trim()) {
        Ok(source) => templates.apply(&source).await.map(|_| source.key()),
        Err(error) => Err(error),
    };
    match outcome {
        Ok(key) => {
            tracing::info!(template = %key, "applied the template this peer was created with")
        }
        Err(error) => tracing::error!(
            "the template this peer was created with ({}) was not applied: {error}",
            key.trim()
        ),
    }
    if let Err(error) = std::fs::remove_file(&path) {
        tracing::warn!("cannot remove {}: {error}", path.display());
    }
}

/// Starts the peer of directory `dir`.
pub async fn start(dir: &Path, config: &Config, logs: LogBuffer) -> anyhow::Result<RunningPeer> {
    let identity = identity::load_or_create(&Config::resolve(dir, &config.identity.key_file))?;
    let keypair = identity.keypair;
    let peer_id = identity.peer_id;
    tracing::info!(peer.id = %peer_id, "starting peer");
    let (stop, stopped) = watch::channel(false);
    let db_path = dir.join(crate::store::peer::FILE_NAME);
    let store = PeerStore::open(&db_path)
        .await
        .with_context(|| format!("cannot open the peer database {}", db_path.display()))?;

    let ttl = Duration::from_secs(config.presence.ttl_seconds.into());
    let heartbeat = Duration::from_secs(config.presence.heartbeat_seconds.into());
    let table = PeerTable::start(
        peer_id,
        TableOptions {
            max_peers: config.presence.max_peers as usize,
            max_strangers: config.presence.max_gossip_strangers as usize,
            ..TableOptions::for_ttl(ttl)
        },
    );
    let (label_tx, label) = watch::channel(config.profile.label.clone());
    let label_tx = Arc::new(label_tx);
    let (email_tx, own_email) = watch::channel(config.profile.email.clone());
    let email_tx = Arc::new(email_tx);
    let directory = GroupDirectory::default();
    let blocked = BlockList::load(store.chat())
        .await
        .context("cannot read the blocked peers from data.db")?;
    let limits = &config.data;
    let mut data = DataService::new(
        store.data(),
        peer_id,
        own_email.clone(),
        peer_lookup(table.clone()),
    )
    .with_limits(InsertLimits {
        per_second: Some(limits.insert_per_second),
        burst: limits.insert_burst,
        requests_per_second: Some(limits.requests_per_second),
        request_burst: limits.request_burst,
        timeout: Duration::from_secs(limits.timeout_seconds.into()),
        // Validated at load to at most 2^50.
        max_rows_per_caller: limits.max_rows_per_caller as i64,
        max_bytes_per_caller: limits.max_bytes_per_caller as i64,
        max_rows_per_table: limits.max_rows_per_table as i64,
        max_bytes_per_table: limits.max_bytes_per_table as i64,
    })
    .with_block_list(blocked.clone())
    .with_groups(directory.clone());
    let groups_slot = crate::services::lua::GroupsSlot::default();
    // The Lua engine starts now with `lua.enabled`, or later when a template with functions is
    // applied.
    let start_lua: crate::services::sitetemplates::LuaStarter = {
        use crate::services::lua::{LuaEngine, LuaLimits, LuaSetup, http};
        let http = match config.lua.http_enabled {
            true => Some(
                http::LuaHttp::new(http::HttpPolicy::system(config.lua.allowed_networks()))
                    .map_err(anyhow::Error::msg)?,
            ),
            false => None,
        };
        let script_dir = Config::resolve(dir, &config.lua.script_dir);
        let limits = LuaLimits {
            timeout: Duration::from_secs(config.lua.timeout_seconds.into()),
            max_memory: config.lua.max_memory_mb as usize * 1024 * 1024,
            per_caller_per_minute: config.lua.rate_limit_per_peer,
            global_per_minute: config.lua.rate_limit_global,
        };
        let self_id = peer_id.to_base58();
        let (self_label, self_email) = (label.clone(), own_email.clone());
        let kv = config.lua.kv_enabled.then(|| store.lua_kv());
        let db = store.data();
        let groups = groups_slot.clone();
        let stopped = stopped.clone();
        Arc::new(move || {
            LuaEngine::start(
                LuaSetup {
                    script_dir: script_dir.clone(),
                    limits: limits.clone(),
                    self_id: self_id.clone(),
                    self_label: self_label.clone(),
                    self_email: self_email.clone(),
                    kv: kv.clone(),
                    db: Some(db.clone()),
                    http: http.clone(),
                    groups: groups.clone(),
                },
                stopped.clone(),
            )
        })
    };
    if config.lua.enabled {
        data = data.with_lua(start_lua());
    }
    // Pages an app template makes on request (its feed) come from its Lua functions, made as
    // the visitor who asked.
    let site = Site::new(Config::resolve(dir, &config.paths.site_root))
        .hiding(Config::resolve(dir, &config.lua.script_dir))
        .with_generator(crate::services::sitetemplates::page_maker(data.clone()));
    let served = Served {
        site: Some(site.clone()),
        label,
        avatar: Some(dir.to_owned()),
        data: Some(data.clone()),
    };
    let mut protocols = Protocols::standard(served);
    let mq_sessions = protocols.sessions(mq_wire::PROTOCOL, mq_wire::limits());
    let (node, node_events) = Node::start(
        keypair.clone(),
        NodeOptions {
            listen_ip: IpAddr::from([0, 0, 0, 0]),
            listen_port: config.p2p.listen_port,
            mdns: true,
            mdns_tag: config.p2p.mdns_tag.clone(),
            presence_topic: config.presence.topic.clone(),
            limits: node_limits(&config.p2p),
            gossip: GossipLimits {
                burst: config.presence.gossip_burst,
                per_second: config.presence.gossip_per_second,
            },
            relay: config
                .p2p
                .relay_enabled
                .then(|| crate::services::relay::RelayLimits::of(&config.presence)),
        },
        protocols,
    )
    .await?;
    let mq = Mq::new(node.clone(), MqOptions::default(), stopped.clone());
    let identities = Identities::start(mq.clone(), stopped.clone());
    let chat = Chat::start(
        ChatSetup {
            store: store.chat(),
            blocked: blocked.clone(),
            mq: mq.clone(),
            table: table.clone(),
            identities: identities.clone(),
            lua: data.lua_slot(),
            options: ChatOptions {
                history_per_peer: config.chat.history_per_peer,
                broadcasts_per_minute: config.chat.broadcasts_per_minute,
                own_broadcasts_per_minute: config.chat.broadcasts_per_minute,
                ..ChatOptions::default()
            },
        },
        stopped.clone(),
    )
    .await
    .context("cannot read the conversations from data.db")?;
    let groups = Groups::start(
        GroupSetup {
            store: store.groups(),
            mq: mq.clone(),
            table: table.clone(),
            blocked: blocked.clone(),
            directory,
            options: GroupOptions {
                max_hosted: config.groups.max_hosted as usize,
                max_members: config.groups.max_members as usize,
                max_joined: config.groups.max_joined as usize,
                ..GroupOptions::default()
            },
        },
        stopped.clone(),
    )
    .await
    .context("cannot read the groups from data.db")?;
    let _ = groups_slot.set(groups.clone());
    let apps = Apps::start(mq.clone(), blocked.clone(), stopped.clone());
    let identity_requests = mq.subscribe(crate::services::mq::identity::TOPIC);
    mq.serve(mq_sessions);

    // The hubs this peer talks to.
    let mut hub_urls = Vec::new();
    let logs_for_console = logs.clone();
    let hub = if config.presence.rendezvous_host {
        let running = rendezvous::start_embedded(dir, config, logs, node.relay().await?).await?;
        let local = local_url(running.hub_addr);
        hub_urls.push(local);
        Some(running)
    } else {
        None
    };
    if !config.presence.rendezvous_wan.is_empty() {
        // A hub this build cannot use must not keep the peer off its LAN.
        match parse_hub_url(&config.presence.rendezvous_wan) {
            Ok(url) => hub_urls.push(url),
            Err(err) => tracing::error!("presence.rendezvous_wan is not used: {err:#}"),
        }
    }
    // A hub on this machine only has peers on this machine: loopback addresses are useful there.
    let include_loopback = hub_urls.iter().any(|url| {
        url.host_str().is_some_and(|h| {
            h == "localhost" || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        })
    });
    let listen = node.listen_addrs().await?;
    let announcement = Announcement {
        content: config.profile.label.clone(),
        email: config.profile.email.clone(),
        avatar_hash: crate::services::avatar::hash_of(dir),
        active_template: None,
        addrs: lan::announced_addrs(&listen, peer_id, include_loopback),
    };
    let (announce_tx, announcements) = watch::channel(announcement);
    let announce_tx = Arc::new(announce_tx);
    let site_root = Config::resolve(dir, &config.paths.site_root);
    let templates = SiteTemplates::new(TemplateSetup {
        paths: SitePaths {
            previous: site_root.with_file_name(format!(
                "{}-previous",
                site_root
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "site".into())
            )),
            site_root,
            lua_dir: Config::resolve(dir, &config.lua.script_dir),
        },
        installed: dir.join("apps"),
        config_path: dir.join(crate::config::FILE_NAME),
        data: data.clone(),
        groups: groups.clone(),
        lua: start_lua,
        announcement: announce_tx.clone(),
        hubs: hub_urls.clone(),
        site: site.clone(),
    });
    match templates.active().await {
        Ok(Some(active)) => {
            site.set_generated(active.generated.clone());
            announce_tx.send_modify(|a| a.active_template = Some(active.name));
        }
        Ok(None) => {}
        Err(error) => tracing::warn!("the active template could not be read: {error}"),
    }
    apply_pending_template(dir, &templates).await;
    crate::services::mq::identity::serve(
        mq.clone(),
        identity_requests,
        announcements.clone(),
        blocked.clone(),
        stopped.clone(),
    );

    let mut tasks = Vec::new();
    let (book, book_task) = PeerBook::start(store.clone(), table.clone(), stopped.clone())
        .await
        .context("cannot read the known peers from data.db")?;
    // The owner's favourites from the last run may still be where they were: their own signed
    // word is all that is kept of them, and the owner chose them. Other last-known peers wait
    // for a hub or the LAN to vouch for them again (what gossip said of them is never dialled).
    for known in table
        .snapshot()
        .await
        .into_iter()
        .filter(|known| known.favorite)
    {
        let node = node.clone();
        tasks.push(tokio::spawn(async move {
            merge::dial_vouched(&node, known.peer_id, &known.addrs, Reach::Loopback).await;
        }));
    }
    tasks.push(reachability::spawn(
        node.clone(),
        table.clone(),
        PROBE_EVERY,
        stopped.clone(),
    ));

    // The console's address is taken before anything is announced: a peer that cannot start
    // says nothing to the hubs.
    let console_listener = match config.viewer.http_socket_addr() {
        Some(addr) => {
            crate::http::access::check_bind(&addr, config)?;
            let listener = crate::http::server::listen(addr)
                .with_context(|| format!("cannot listen on {addr} (viewer.http_addr)"))?;
            Some(listener)
        }
        None => None,
    };
    let mut hub_clients = Vec::new();
    let (hub_events_tx, hub_events) = mpsc::channel::<(Source, Reach, LinkEvent)>(1024);
    let relay_http = crate::services::presence::tls::http_client(None);
    for url in hub_urls {
        let source = Source::Hub(url.to_string());
        // How wide the addresses this hub may have the node dial are.
        let reach = url.host_str().map_or(Reach::Global, Reach::of_hub_host);
        tasks.push(relays::spawn(
            node.clone(),
            relay_http.clone(),
            url.clone(),
            reach,
            stopped.clone(),
        ));
        let (client, mut events) = HubClient::spawn(
            HubClientOptions::new(url, heartbeat),
            keypair.clone(),
            announcements.clone(),
        );
        hub_clients.push(client);
        let forward = hub_events_tx.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if forward.send((source.clone(), reach, event)).await.is_err() {
                    return;
                }
            }
        }));
    }
    drop(hub_events_tx);
    let mut console_addr = None;
    let mut theme = None;
    if let Some(listener) = console_listener {
        let access = OwnerAccess::new(config, "console", "Goop² console", "/");
        theme = Some(access.theme.clone());
        let bound = crate::http::server::local_addr(&listener);
        let app = ConsoleApp {
            peer_id,
            label: label_tx.subscribe(),
            node: node.clone(),
            table: table.clone(),
            book: book.clone(),
            chat: chat.clone(),
            groups: groups.clone(),
            apps: apps.clone(),
            identities: identities.clone(),
            site: site.clone(),
            site_files: SiteFiles::new(Config::resolve(dir, &config.paths.site_root)),
            lua_dir: Config::resolve(dir, &config.lua.script_dir)
                .strip_prefix(Config::resolve(dir, &config.paths.site_root))
                .ok()
                .and_then(|inside| inside.to_str())
                .filter(|inside| !inside.is_empty())
                .map(|inside| inside.trim_matches('/').to_owned()),
            logs: logs_for_console,
            access,
            site_tokens: console::SiteTokens::default(),
            proxies: TrustedProxies(Arc::new(config.presence.trusted_proxy_nets())),
            stop: stopped.clone(),
            config_path: dir.join(crate::config::FILE_NAME),
            dir: dir.to_owned(),
            data: data.clone(),
            templates: templates.clone(),
            hubs: hub_clients.iter().map(HubClient::status).collect(),
            notices: console::Notices::default(),
            live: console::LiveSettings {
                label: label_tx.clone(),
                email: email_tx.clone(),
                announcement: announce_tx.clone(),
            },
        };
        let routes = layers::common(console::router(app), RequestLog::Every);
        let mut until = stopped.clone();
        tasks.push(tokio::spawn(crate::http::server::serve(
            listener,
            routes,
            None,
            ServerLimits::default(),
            async move {
                let _ = until.wait_for(|s| *s).await;
            },
        )));
        tracing::info!(addr = %bound, "console on http://{bound}/");
        console_addr = Some(bound);
    }
    let merge_task = tokio::spawn(merge::merge(
        node.clone(),
        table.clone(),
        node_events,
        hub_events,
        merge::AddressBook {
            peer_id,
            include_loopback,
            announcement: announce_tx.clone(),
        },
    ));
    tasks.push(tokio::spawn(lan::publish_on_lan(
        node.clone(),
        keypair,
        announcements,
        heartbeat,
        stopped,
    )));
    Ok(RunningPeer {
        peer_id,
        node,
        table,
        hub,
        console_addr,
        theme,
        announcement: announce_tx,
        label: label_tx,
        book,
        mq,
        chat,
        groups,
        stop,
        hub_clients,
        tasks,
        merge_task,
        book_task,
        store,
    })
}

impl RunningPeer {
    /// Says `offline` on the LAN and to every hub, then stops.
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        for client in self.hub_clients {
            client.stop().await;
        }
        // The gossip task publishes `offline`, the prober and the console end, when they see
        // the stop: they are waited for, within a bound, before the node goes.
        let deadline = tokio::time::Instant::now() + TASKS_WAIT;
        let mut stragglers = 0;
        for mut task in self.tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
                stragglers += 1;
            }
        }
        if stragglers > 0 {
            tracing::warn!(
                "{stragglers} task(s) had not ended {} s after the stop; stopped them",
                TASKS_WAIT.as_secs()
            );
        }
        self.node.shutdown(Duration::from_secs(1)).await;
        let mut merge = self.merge_task;
        if tokio::time::timeout(Duration::from_secs(1), &mut merge)
            .await
            .is_err()
        {
            merge.abort();
        }
        if let Some(hub) = self.hub {
            hub.shutdown().await;
        }
        if tokio::time::timeout(Duration::from_secs(5), self.book_task)
            .await
            .is_err()
        {
            tracing::warn!("the known peers were not all written to data.db in time");
        }
        self.store.close().await;
        tracing::info!("peer stopped");
    }
}

fn local_url(addr: SocketAddr) -> url::Url {
    let host = if addr.ip().is_unspecified() {
        IpAddr::from([127, 0, 0, 1])
    } else {
        addr.ip()
    };
    format!("http://{}", SocketAddr::new(host, addr.port()))
        .parse()
        .expect("a socket address makes a URL")
}

/// The node's connection and dial limits from `p2p`.
fn node_limits(p2p: &crate::config::P2p) -> NodeLimits {
    let defaults = NodeLimits::default();
    NodeLimits {
        max_connections: p2p.max_connections,
        max_inbound: p2p.max_inbound,
        max_inbound_strangers: p2p.max_inbound_strangers,
        per_address: AddressLimits {
            established: p2p.connections_per_address as usize,
            ..defaults.per_address
        },
        dials: DialLimits {
            burst: p2p.dial_burst,
            per_second: p2p.dials_per_second,
        },
        ..defaults
    }
}

/// The data API's view of the PeerTable: a peer's label, and its email if a hub vouched for it.
fn peer_lookup(table: PeerTable) -> crate::services::data::PeerLookup {
    Arc::new(move |peer: &PeerId| {
        let table = table.clone();
        let peer = *peer;
        Box::pin(async move { table.identity(&peer).await })
    })
}

/// Loads `dir/goop.json`; a missing file is an error that says how to make one.
pub fn load_dir(dir: &Path) -> anyhow::Result<crate::config::LoadedConfig> {
    let path = dir.join(crate::config::FILE_NAME);
    if !path.exists() {
        anyhow::bail!(
            "{} does not exist; create a peer directory with `goop2 init {}`",
            path.display(),
            dir.display()
        );
    }
    Config::load(&path).context("cannot load the peer's configuration")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_p2p_settings_are_the_nodes_default_limits() {
        assert_eq!(
            node_limits(&crate::config::P2p::default()),
            NodeLimits::default()
        );
    }
}
