//! `goop.json`: the one configuration file of a peer or hub directory.
//!
//! The file is parsed once, at load, into a typed [`Config`] whose missing keys take the defaults
//! of the original product documents. Validation happens in the same step and reports every
//! problem it finds with the JSON path, the offending value and what is allowed, so an operator
//! can fix a file in one go. Keys this version does not know are kept (each section flattens them
//! into `extra`) and written back unchanged by [`Config::save`], which replaces the file
//! atomically so a crash never leaves half a configuration behind.
//!
//! The original product's documents configure a peer with a few top-level keys (`site`,
//! `peerName`, `rendezvous`); they are read as the keys they stand for, with a warning, and the
//! next save writes the canonical keys instead.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// File name of the configuration inside a peer or hub directory.
pub const FILE_NAME: &str = "goop.json";

/// Longest `profile.label` in bytes; the same bound the hub puts on presence `content`.
pub const MAX_LABEL_BYTES: usize = 4096;
/// Longest `profile.email` in bytes (RFC 5321 path limit, as the presence contract uses).
pub const MAX_EMAIL_BYTES: usize = 320;

/// Themes the browser console ships.
pub const THEMES: &[&str] = &["dark", "light"];

/// The console's colour theme, `viewer.theme`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Theme {
    Dark,
    Light,
}

impl Theme {
    /// Its name in `goop.json` (and in the console's `data-theme` attribute).
    pub fn as_str(self) -> &'static str {
        match self {
            Theme::Dark => "dark",
            Theme::Light => "light",
        }
    }
}

/// The hub's port when neither `presence.rendezvous_port` nor the environment says otherwise.
pub const DEFAULT_RENDEZVOUS_PORT: u16 = 8787;

/// The environment variable through which hosting platforms tell a service which port to
/// listen on; `goop2 rendezvous` reads it when `goop.json` leaves the port out.
pub const PORT_VARIABLE: &str = "PORT";

/// Why a configuration could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid JSON: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path} is invalid:\n  - {}", problems.join("\n  - "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{variable} ({value:?}) must be a port number between 0 and 65535; it sets the hub's \
         port because goop.json leaves presence.rendezvous_port out"
    )]
    Environment {
        variable: &'static str,
        value: String,
    },
}

impl ConfigError {
    /// The individual validation messages, empty for I/O and syntax errors.
    pub fn problems(&self) -> &[String] {
        match self {
            ConfigError::Invalid { problems, .. } => problems,
            _ => &[],
        }
    }
}

/// A password as it appears in `goop.json`: an argon2 PHC string (preferred) or plain text.
/// `Debug` never prints it.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The stored text, for the one place that verifies a login against it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when the value is an argon2 PHC string rather than a plain-text password.
    pub fn is_argon2_hash(&self) -> bool {
        self.0.starts_with("$argon2")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("\"<redacted>\"")
        }
    }
}

/// The whole `goop.json`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub profile: Profile,
    pub identity: IdentitySettings,
    pub paths: Paths,
    pub p2p: P2p,
    pub presence: PresenceSettings,
    pub viewer: Viewer,
    pub lua: Lua,
    pub data: DataSettings,
    /// Top-level keys this version does not know; kept so saving never drops them.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `profile`: how this peer introduces itself.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Profile {
    /// Display name, sent as presence `content`.
    pub label: String,
    /// Contact address, shown to hub admins and to peers the hub has verified.
    pub email: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `identity`: where the libp2p key lives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IdentitySettings {
    /// Ed25519 key in libp2p protobuf encoding, relative to the peer directory.
    pub key_file: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Default for IdentitySettings {
    fn default() -> Self {
        IdentitySettings {
            key_file: "data/identity.key".into(),
            extra: Map::new(),
        }
    }
}

/// `paths`: where the site lives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Paths {
    /// The static site served to visitors, relative to the peer directory.
    pub site_root: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            site_root: "site".into(),
            extra: Map::new(),
        }
    }
}

/// `p2p`: the libp2p node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct P2p {
    /// TCP and QUIC listen port; 0 picks a free one.
    pub listen_port: u16,
    /// Peers announcing another tag are not auto-joined.
    pub mdns_tag: String,
    /// Connections in all, each way.
    pub max_connections: u32,
    /// Of those, inbound; the rest is kept for the peer's own dials.
    pub max_inbound: u32,
    /// Of the inbound, those of peers no hub, favourite or mDNS vouches for.
    pub max_inbound_strangers: u32,
    /// Open inbound connections from one IPv4 address or IPv6 /64.
    pub connections_per_address: u32,
    /// Dials the peer starts at once, then per second.
    pub dial_burst: u32,
    pub dials_per_second: u32,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Default for P2p {
    fn default() -> Self {
        P2p {
            listen_port: 0,
            mdns_tag: "goop-mdns".into(),
            max_connections: 512,
            max_inbound: 448,
            max_inbound_strangers: 384,
            connections_per_address: 16,
            dial_burst: 64,
            dials_per_second: 16,
            extra: Map::new(),
        }
    }
}

/// `presence`: heartbeats, rendezvous hubs and the hub this directory may host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PresenceSettings {
    pub topic: String,
    pub ttl_seconds: u32,
    pub heartbeat_seconds: u32,
    pub rendezvous_host: bool,
    /// The hub's port; absent means "the platform's `PORT`, else 8787" (see
    /// [`PresenceSettings::hub_port`]). Absent stays absent when the file is saved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rendezvous_port: Option<u16>,
    /// The port `goop2 rendezvous` took from the environment; never saved.
    #[serde(skip)]
    pub environment_port: Option<u16>,
    pub rendezvous_bind: String,
    pub rendezvous_wan: String,
    pub rendezvous_only: bool,
    pub admin_password: Secret,
    pub peer_db_path: String,
    /// PostgreSQL shared by several hub instances (`postgres://user:password@host/db`); its
    /// password is never shown: see [`redact_url_password`].
    pub peer_db_url: Secret,
    pub templates_dir: String,
    pub allow_unsigned: bool,
    /// Reverse proxies (IP addresses or CIDR ranges) whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<String>,
    /// Publishes one address may make at once before the rate applies.
    pub publish_burst: u32,
    /// Publishes per second one address may sustain.
    pub publish_per_second: u32,
    /// Open SSE and WebSocket streams the hub serves in total.
    pub max_streams: u32,
    /// Open streams one address may hold.
    pub max_streams_per_ip: u32,
    /// Presence messages one libp2p neighbour may send at once before the rate applies.
    pub gossip_burst: u32,
    /// Presence messages per second one libp2p neighbour may sustain.
    pub gossip_per_second: u32,
    /// Peers the peer list holds at most.
    pub max_peers: u32,
    /// Of those, peers heard of only second-hand over gossip (no hub, favourite, earlier run or
    /// own connection vouches for them).
    pub max_gossip_strangers: u32,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Default for PresenceSettings {
    fn default() -> Self {
        PresenceSettings {
            topic: "goop.presence.v1".into(),
            ttl_seconds: 20,
            heartbeat_seconds: 5,
            rendezvous_host: false,
            rendezvous_port: None,
            environment_port: None,
            rendezvous_bind: "127.0.0.1".into(),
            rendezvous_wan: String::new(),
            rendezvous_only: false,
            admin_password: Secret::default(),
            peer_db_path: String::new(),
            peer_db_url: Secret::default(),
            templates_dir: "templates".into(),
            allow_unsigned: false,
            trusted_proxies: Vec::new(),
            publish_burst: 60,
            publish_per_second: 1,
            max_streams: 20_000,
            max_streams_per_ip: 30,
            gossip_burst: 100,
            gossip_per_second: 20,
            max_peers: 2_000,
            max_gossip_strangers: 500,
            extra: Map::new(),
        }
    }
}

impl PresenceSettings {
    /// The port the hub listens on: `rendezvous_port` when set, else the port taken from the
    /// environment, else [`DEFAULT_RENDEZVOUS_PORT`].
    pub fn hub_port(&self) -> u16 {
        self.rendezvous_port
            .or(self.environment_port)
            .unwrap_or(DEFAULT_RENDEZVOUS_PORT)
    }

    /// For `goop2 rendezvous`: takes the hub's port from [`PORT_VARIABLE`] (its `value`, if
    /// set) when `rendezvous_port` is absent, as hosting platforms expect. A port in goop.json
    /// wins and the variable is not even read. Returns the port taken.
    pub fn use_environment_port(
        &mut self,
        value: Option<&str>,
    ) -> Result<Option<u16>, ConfigError> {
        if self.rendezvous_port.is_some() {
            return Ok(None);
        }
        let Some(value) = value else {
            return Ok(None);
        };
        let port = value
            .trim()
            .parse::<u16>()
            .map_err(|_| ConfigError::Environment {
                variable: PORT_VARIABLE,
                value: value.to_owned(),
            })?;
        self.environment_port = Some(port);
        Ok(Some(port))
    }

    /// The validated bind address of the hub.
    pub fn rendezvous_bind_ip(&self) -> IpAddr {
        self.rendezvous_bind
            .parse()
            .unwrap_or(IpAddr::from([127, 0, 0, 1]))
    }

    /// The validated trusted proxy ranges; a bare address is a /32 or /128 range.
    pub fn trusted_proxy_nets(&self) -> Vec<IpNet> {
        parse_nets(&self.trusted_proxies)
    }
}

/// `viewer`: the local browser console.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Viewer {
    /// `ip:port` of the console; empty disables it.
    pub http_addr: String,
    pub admin_password: Secret,
    pub theme: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Default for Viewer {
    fn default() -> Self {
        Viewer {
            http_addr: "127.0.0.1:8080".into(),
            admin_password: Secret::default(),
            theme: "dark".into(),
            extra: Map::new(),
        }
    }
}

impl Viewer {
    /// The validated theme (validation allows only the names of [`THEMES`]).
    pub fn color_theme(&self) -> Theme {
        if self.theme == Theme::Light.as_str() {
            Theme::Light
        } else {
            Theme::Dark
        }
    }

    /// The validated console address, `None` when the console is disabled.
    pub fn http_socket_addr(&self) -> Option<SocketAddr> {
        self.http_addr.parse().ok()
    }
}

/// `lua`: server-side functions of the site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Lua {
    pub enabled: bool,
    pub script_dir: String,
    pub timeout_seconds: u32,
    pub max_memory_mb: u32,
    /// Calls per minute one caller may make to one function.
    pub rate_limit_per_peer: u32,
    /// Calls per minute to all functions together.
    pub rate_limit_global: u32,
    pub http_enabled: bool,
    /// Private addresses or networks `goop.http` may reach all the same, such as
    /// `"192.168.1.20"` or `"10.0.0.0/24"` (everything non-public is refused otherwise).
    pub http_allow: Vec<String>,
    pub kv_enabled: bool,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Lua {
    /// `http_allow` as networks (validated at load).
    pub fn allowed_networks(&self) -> Vec<IpNet> {
        parse_nets(&self.http_allow)
    }
}

impl Default for Lua {
    fn default() -> Self {
        Lua {
            enabled: false,
            script_dir: "site/lua".into(),
            timeout_seconds: 5,
            max_memory_mb: 10,
            rate_limit_per_peer: 60,
            rate_limit_global: 1000,
            http_enabled: false,
            http_allow: Vec::new(),
            kv_enabled: true,
            extra: Map::new(),
        }
    }
}

/// `data`: what other peers may ask of this peer's tables (a rate and a time budget per request)
/// and put into them. The quotas are the defaults of every table; the database editor overrides
/// them per table. The owner is never held to any of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DataSettings {
    /// Inserts per second one caller may sustain, across all tables.
    pub insert_per_second: u32,
    /// Inserts one caller may make at once before the rate applies.
    pub insert_burst: u32,
    /// Requests of any kind per second one caller may sustain.
    pub requests_per_second: u32,
    /// Requests one caller may make at once before that rate applies.
    pub request_burst: u32,
    /// Seconds one request of another peer may take before its statements are stopped.
    pub timeout_seconds: u32,
    /// Rows one caller may keep in a table.
    pub max_rows_per_caller: u64,
    /// Bytes (of column values) one caller may keep in a table.
    pub max_bytes_per_caller: u64,
    /// Rows a table holds from everyone together before other peers' inserts are refused.
    pub max_rows_per_table: u64,
    /// Bytes a table holds from everyone together before other peers' inserts are refused.
    pub max_bytes_per_table: u64,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Default for DataSettings {
    fn default() -> Self {
        DataSettings {
            insert_per_second: 2,
            insert_burst: 20,
            requests_per_second: 50,
            request_burst: 100,
            timeout_seconds: 2,
            max_rows_per_caller: 1000,
            max_bytes_per_caller: 1024 * 1024,
            max_rows_per_table: 100_000,
            max_bytes_per_table: 100 * 1024 * 1024,
            extra: Map::new(),
        }
    }
}

/// A configuration as loaded, with the warnings the operator should see once.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    pub warnings: Vec<String>,
}

/// Top-level keys of the original product's documents and the key each stands for, in order of
/// precedence: the canonical key wins over all of them, and an earlier alias over a later one.
const ALIASES: &[(&str, &str, &str)] = &[
    ("rendezvous", "presence", "rendezvous_wan"),
    ("peerName", "profile", "label"),
    ("site", "profile", "label"),
];

/// Integer keys with their allowed ranges. Checked on the raw JSON before typed parsing so the
/// message can quote the value even when it does not fit the field's Rust type.
const INTEGER_RANGES: &[(&str, &str, i64, i64)] = &[
    ("p2p", "listen_port", 0, 65535),
    ("p2p", "max_connections", 1, 1_000_000),
    ("p2p", "max_inbound", 0, 1_000_000),
    ("p2p", "max_inbound_strangers", 0, 1_000_000),
    ("p2p", "connections_per_address", 1, 1_000_000),
    ("p2p", "dial_burst", 1, 1_000_000),
    ("p2p", "dials_per_second", 1, 1_000_000),
    ("presence", "ttl_seconds", 1, 86_400),
    ("presence", "heartbeat_seconds", 1, 3_600),
    ("presence", "rendezvous_port", 0, 65535),
    ("presence", "publish_burst", 1, 1_000_000),
    ("presence", "publish_per_second", 1, 1_000_000),
    ("presence", "max_streams", 1, 1_000_000),
    ("presence", "max_streams_per_ip", 1, 1_000_000),
    ("presence", "gossip_burst", 1, 1_000_000),
    ("presence", "gossip_per_second", 1, 1_000_000),
    ("presence", "max_peers", 1, 1_000_000),
    ("presence", "max_gossip_strangers", 0, 1_000_000),
    ("lua", "timeout_seconds", 1, 60),
    ("lua", "max_memory_mb", 1, 1024),
    ("lua", "rate_limit_per_peer", 1, 1_000_000),
    ("lua", "rate_limit_global", 1, 10_000_000),
    ("data", "insert_per_second", 1, 1_000_000),
    ("data", "insert_burst", 1, 1_000_000),
    ("data", "requests_per_second", 1, 1_000_000),
    ("data", "request_burst", 1, 1_000_000),
    ("data", "timeout_seconds", 1, 60),
    ("data", "max_rows_per_caller", 1, 1 << 50),
    ("data", "max_bytes_per_caller", 1, 1 << 50),
    ("data", "max_rows_per_table", 1, 1 << 50),
    ("data", "max_bytes_per_table", 1, 1 << 50),
];

impl Config {
    /// Loads `goop.json` from a peer or hub directory.
    pub fn load_dir(dir: &Path) -> Result<LoadedConfig, ConfigError> {
        Self::load(&dir.join(FILE_NAME))
    }

    /// Loads and validates a configuration file.
    pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
        let bytes = fs::read(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_slice(&bytes, path)
    }

    /// Parses and validates configuration text; `path` only names the source in errors.
    pub fn from_slice(bytes: &[u8], path: &Path) -> Result<LoadedConfig, ConfigError> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let mut raw: Value = serde_json::from_slice(bytes).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let invalid = |problems| ConfigError::Invalid {
            path: path.to_owned(),
            problems,
        };
        if !raw.is_object() {
            return Err(invalid(vec![format!(
                "the top level must be a JSON object, found {}",
                json_kind(&raw)
            )]));
        }

        let (alias_warnings, mut problems) = apply_aliases(&mut raw);
        // Range problems are collected first and their keys removed, so typed parsing can still
        // report an unrelated type error in the same run.
        problems.extend(check_integer_ranges(&mut raw));
        let config: Config = match serde_path_to_error::deserialize(&raw) {
            Ok(config) => config,
            Err(err) => {
                problems.push(format!("{}: {}", err.path(), err.inner()));
                return Err(invalid(problems));
            }
        };
        if !problems.is_empty() {
            return Err(invalid(problems));
        }
        let problems = config.validate();
        if !problems.is_empty() {
            return Err(invalid(problems));
        }
        let mut warnings = alias_warnings;
        warnings.extend(config.warnings());
        Ok(LoadedConfig { config, warnings })
    }

    /// Every rule a typed configuration must satisfy, as messages naming the JSON path, the value
    /// and what is allowed. Empty when the configuration is valid.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, message: String| {
            if !ok {
                problems.push(message);
            }
        };

        let profile = &self.profile;
        check(
            profile.label.len() <= MAX_LABEL_BYTES,
            format!(
                "profile.label is {} bytes long; at most {MAX_LABEL_BYTES} bytes are allowed",
                profile.label.len()
            ),
        );
        check(
            profile.email.len() <= MAX_EMAIL_BYTES,
            format!(
                "profile.email is {} bytes long; at most {MAX_EMAIL_BYTES} bytes are allowed",
                profile.email.len()
            ),
        );
        check(
            profile.email.len() > MAX_EMAIL_BYTES
                || profile.email.is_empty()
                || looks_like_email(&profile.email),
            format!(
                "profile.email ({:?}) must be empty or an address such as \"alice@example.org\"",
                profile.email
            ),
        );

        check(
            !self.identity.key_file.trim().is_empty(),
            "identity.key_file must not be empty; the default is \"data/identity.key\"".into(),
        );
        check(
            !self.paths.site_root.trim().is_empty(),
            "paths.site_root must not be empty; the default is \"site\"".into(),
        );

        let tag = &self.p2p.mdns_tag;
        check(
            !tag.is_empty()
                && tag.len() <= 63
                && tag
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            format!(
                "p2p.mdns_tag ({tag:?}) must be 1 to 63 characters of letters, digits, '-' or '_'"
            ),
        );

        let p2p = &self.p2p;
        check(
            p2p.max_inbound <= p2p.max_connections,
            format!(
                "p2p.max_inbound ({}) must be at most p2p.max_connections ({})",
                p2p.max_inbound, p2p.max_connections
            ),
        );
        check(
            p2p.max_inbound_strangers <= p2p.max_inbound,
            format!(
                "p2p.max_inbound_strangers ({}) must be at most p2p.max_inbound ({})",
                p2p.max_inbound_strangers, p2p.max_inbound
            ),
        );

        let presence = &self.presence;
        check(
            !presence.topic.is_empty() && presence.topic.len() <= 256,
            format!(
                "presence.topic ({:?}) must be 1 to 256 bytes long; the default is \"goop.presence.v1\"",
                presence.topic
            ),
        );
        check(
            presence.heartbeat_seconds < presence.ttl_seconds,
            format!(
                "presence.heartbeat_seconds ({}) must be less than presence.ttl_seconds ({})",
                presence.heartbeat_seconds, presence.ttl_seconds
            ),
        );
        check(
            presence.max_gossip_strangers <= presence.max_peers,
            format!(
                "presence.max_gossip_strangers ({}) must be at most presence.max_peers ({})",
                presence.max_gossip_strangers, presence.max_peers
            ),
        );
        check(
            !presence.rendezvous_only || presence.rendezvous_host,
            "presence.rendezvous_only (true) requires presence.rendezvous_host to be true: a \
             rendezvous-only node has nothing to run but the hub"
                .into(),
        );
        check(
            presence.rendezvous_bind.parse::<IpAddr>().is_ok(),
            format!(
                "presence.rendezvous_bind ({:?}) must be an IP address such as \"127.0.0.1\" or \"0.0.0.0\"",
                presence.rendezvous_bind
            ),
        );
        check(
            presence.rendezvous_wan.is_empty() || is_http_url(&presence.rendezvous_wan),
            format!(
                "presence.rendezvous_wan ({:?}) must be empty or an http:// or https:// URL such as \"https://rv.example.org\"",
                presence.rendezvous_wan
            ),
        );
        let url = presence.peer_db_url.expose();
        check(
            url.is_empty()
                || url::Url::parse(url)
                    .is_ok_and(|u| matches!(u.scheme(), "postgres" | "postgresql") && u.has_host()),
            format!(
                "presence.peer_db_url ({:?}) must be empty or a PostgreSQL URL such as \"postgres://goop:password@127.0.0.1/goop\"",
                redact_url_password(url)
            ),
        );
        check(
            url.is_empty() || presence.peer_db_path.is_empty(),
            "presence.peer_db_path and presence.peer_db_url are two ways to share peer state: set one of them".into(),
        );
        check(
            !presence.templates_dir.trim().is_empty(),
            "presence.templates_dir must not be empty; the default is \"templates\"".into(),
        );
        for (index, entry) in presence.trusted_proxies.iter().enumerate() {
            check(
                parse_ip_or_net(entry).is_some(),
                format!(
                    "presence.trusted_proxies[{index}] ({entry:?}) must be an IP address or a CIDR range such as \"10.0.0.0/8\""
                ),
            );
        }

        let viewer = &self.viewer;
        check(
            viewer.http_addr.is_empty() || viewer.http_addr.parse::<SocketAddr>().is_ok(),
            format!(
                "viewer.http_addr ({:?}) must be empty (no console) or an IP address and port such as \"127.0.0.1:8080\"",
                viewer.http_addr
            ),
        );
        check(
            THEMES.contains(&viewer.theme.as_str()),
            format!(
                "viewer.theme ({:?}) must be one of {}",
                viewer.theme,
                THEMES
                    .iter()
                    .map(|t| format!("{t:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );

        check(
            !self.lua.script_dir.trim().is_empty(),
            "lua.script_dir must not be empty; the default is \"site/lua\"".into(),
        );
        for (index, entry) in self.lua.http_allow.iter().enumerate() {
            check(
                parse_ip_or_net(entry).is_some(),
                format!(
                    "lua.http_allow[{index}] ({entry:?}) must be an IP address or a CIDR range such as \"192.168.1.0/24\""
                ),
            );
        }
        problems
    }

    /// Things that work but deserve the operator's attention: unknown keys and plain-text
    /// passwords.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let unknown = self.unknown_keys();
        if !unknown.is_empty() {
            warnings.push(format!(
                "goop.json has keys this version does not use (kept when the file is saved): {}",
                unknown.join(", ")
            ));
        }
        for (path, secret) in [
            ("presence.admin_password", &self.presence.admin_password),
            ("viewer.admin_password", &self.viewer.admin_password),
        ] {
            if !secret.is_empty() && !secret.is_argon2_hash() {
                warnings.push(format!(
                    "{path} is stored as plain text; replace it with the output of `goop2 hash-password`"
                ));
            }
        }
        warnings
    }

    /// JSON paths of every key this version does not know, in file order.
    pub fn unknown_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.extra.keys().cloned().collect();
        let sections: [(&str, &Map<String, Value>); 8] = [
            ("profile", &self.profile.extra),
            ("identity", &self.identity.extra),
            ("paths", &self.paths.extra),
            ("p2p", &self.p2p.extra),
            ("presence", &self.presence.extra),
            ("viewer", &self.viewer.extra),
            ("lua", &self.lua.extra),
            ("data", &self.data.extra),
        ];
        for (section, extra) in sections {
            keys.extend(extra.keys().map(|key| format!("{section}.{key}")));
        }
        keys
    }

    /// The configuration as the pretty JSON text `save` writes.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self)
            .expect("a configuration of strings, numbers and maps always serializes");
        text.push('\n');
        text
    }

    /// Writes the configuration to `path` atomically: a sibling temporary file is written and
    /// synced, then renamed over the old file, and the directory is synced. If anything fails
    /// the old file is left as it was.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        write_atomically(path, self.to_json().as_bytes()).map_err(|source| ConfigError::Write {
            path: path.to_owned(),
            source,
        })
    }

    /// Resolves a path from the configuration against the directory it belongs to.
    pub fn resolve(dir: &Path, configured: &str) -> PathBuf {
        let configured = Path::new(configured);
        if configured.is_absolute() {
            configured.to_owned()
        } else {
            dir.join(configured)
        }
    }
}

/// A short hash of the file at `path` as it is now (empty file when unreadable): forms carry it
/// so a save can tell whether the file changed on disk since the form was shown.
pub fn fingerprint(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let bytes = fs::read(path).unwrap_or_default();
    Sha256::digest(&bytes)[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes `bytes` to `path` through a temporary sibling and a rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomically_with_mode(path, bytes, 0o600)
}

/// [`write_atomically`], giving a new file `new_mode` (a replaced file keeps its own).
pub fn write_atomically_with_mode(path: &Path, bytes: &[u8], new_mode: u32) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the path has no file name"))?;
    let temp = dir.join(format!(".{}.tmp", file_name.to_string_lossy()));
    // A new file gets `new_mode` (0600 for anything that may hold secrets); a replaced one
    // keeps its mode.
    let mode = fs::metadata(path)
        .map(|meta| meta.permissions().mode())
        .unwrap_or(new_mode);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&temp)?;
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)?;
        // The rename is durable only once the directory entry is.
        File::open(dir)?.sync_all()
    })();
    if result.is_err() && temp.is_file() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Moves each alias of [`ALIASES`] to the key it stands for, unless that key is set already.
/// Aliases leave the document either way, so nothing keeps them and a save writes the canonical
/// keys. Returns the warnings (one per alias, naming its canonical key) and the problems.
fn apply_aliases(raw: &mut Value) -> (Vec<String>, Vec<String>) {
    let (mut warnings, mut problems) = (Vec::new(), Vec::new());
    let Some(object) = raw.as_object_mut() else {
        return (warnings, problems);
    };
    // Which alias set a canonical key, so a later alias can say which one won.
    let mut set_by: Vec<(&str, &str, &str)> = Vec::new();
    for &(alias, section, key) in ALIASES {
        let Some(value) = object.remove(alias) else {
            continue;
        };
        let canonical = format!("{section}.{key}");
        if !value.is_string() {
            problems.push(format!(
                "{alias} ({value}) must be a string; it is the original's name for {canonical}"
            ));
            continue;
        }
        let section_value = object
            .entry(section)
            .or_insert_with(|| Value::Object(Map::new()));
        // A section that is not an object is reported by typed parsing.
        let Some(section_object) = section_value.as_object_mut() else {
            continue;
        };
        let winner = set_by
            .iter()
            .find(|(s, k, _)| (*s, *k) == (section, key))
            .map(|(.., winner)| *winner);
        if let Some(winner) = winner {
            warnings.push(format!(
                "goop.json: {alias:?} is ignored: {winner:?} also stands for {canonical} and wins; \
                 {alias:?} is dropped when the file is next saved"
            ));
        } else if section_object.contains_key(key) {
            warnings.push(format!(
                "goop.json: {alias:?} (the original's name for {canonical}) is ignored because \
                 {canonical} is set; {alias:?} is dropped when the file is next saved"
            ));
        } else {
            section_object.insert(key.to_owned(), value);
            set_by.push((section, key, alias));
            warnings.push(format!(
                "goop.json: {alias:?} is the original's name for {canonical}; it is read as \
                 {canonical} and written under that name when the file is next saved"
            ));
        }
    }
    (warnings, problems)
}

fn check_integer_ranges(raw: &mut Value) -> Vec<String> {
    let mut problems = Vec::new();
    for &(section, key, min, max) in INTEGER_RANGES {
        let Some(object) = raw.get_mut(section).and_then(Value::as_object_mut) else {
            continue;
        };
        let Some(value) = object.get(key) else {
            continue;
        };
        let problem = match value.as_i64() {
            Some(n) if (min..=max).contains(&n) => None,
            Some(n) => Some(format!(
                "{section}.{key} ({n}) must be between {min} and {max}"
            )),
            None => Some(format!(
                "{section}.{key} ({value}) must be an integer between {min} and {max}"
            )),
        };
        if let Some(problem) = problem {
            problems.push(problem);
            object.remove(key);
        }
    }
    problems
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn looks_like_email(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !text.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// `url` with its password replaced by `<redacted>`: the form of a database URL that may appear
/// in logs, errors and pages. Text that does not parse is redacted whole unless it has no `@`.
pub fn redact_url_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(parsed) => match parsed.password() {
            Some(password) => url.replacen(&format!(":{password}@"), ":<redacted>@", 1),
            None => url.to_owned(),
        },
        Err(_) if url.contains('@') => "<redacted>".into(),
        Err(_) => url.to_owned(),
    }
}

fn is_http_url(text: &str) -> bool {
    url::Url::parse(text)
        .map(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
        .unwrap_or(false)
}

/// Validated address or range entries as ranges; a bare address is a /32 or /128 range.
fn parse_nets(entries: &[String]) -> Vec<IpNet> {
    entries
        .iter()
        .filter_map(|entry| parse_ip_or_net(entry))
        .collect()
}

fn parse_ip_or_net(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}
