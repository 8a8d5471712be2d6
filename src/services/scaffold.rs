//! A new peer directory (`goop2 init <dir>`, and the launcher's "new peer"): goop.json with every
//! default written out, an identity key, a starter site, and optionally a built-in template the
//! peer applies when it first starts (see [`PENDING_TEMPLATE`]).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::config::{self, Config};
use crate::identity::{self, PeerId};

const STARTER_PAGE: &str = include_str!("../../web/site-starter/index.html");

/// The console port a new peer gets when nothing else claims it.
const DEFAULT_CONSOLE_PORT: u16 = 8080;
/// How far past it a free port is looked for.
const CONSOLE_PORTS_TRIED: u16 = 100;

/// What `init` created.
pub struct Scaffold {
    pub config_path: PathBuf,
    pub peer_id: PeerId,
    pub site_index: PathBuf,
    /// Choices made for the user that they should know of (a console port other than 8080).
    pub notes: Vec<String>,
}

/// What the command line may set at creation.
#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    /// `profile.label`; the directory's name otherwise.
    pub label: Option<String>,
    /// `viewer.http_addr`: an address and port, or a port on 127.0.0.1. Without it the console
    /// gets 127.0.0.1:8080, or the next port that is free and that no sibling peer directory
    /// uses.
    pub console: Option<String>,
    /// `p2p.listen_port`.
    pub port: Option<u16>,
    /// `presence.rendezvous_wan`.
    pub hub: Option<String>,
    /// A built-in template (its name) applied when the peer first starts.
    pub template: Option<String>,
}

/// The file of a peer directory naming the template (`builtin/<name>`) to apply at the next
/// start; the peer removes it once it has tried.
pub const PENDING_TEMPLATE: &str = "apply-template";

/// Creates `dir/goop.json` (defaults written out, label = `label` or the directory name), the
/// identity key and `site/index.html`. Refuses when `goop.json` already exists; an existing
/// `site/index.html` or key is kept.
pub fn run(dir: &Path, label: Option<String>) -> anyhow::Result<Scaffold> {
    run_with(
        dir,
        InitOptions {
            label,
            ..InitOptions::default()
        },
    )
}

/// Like [`run`], with what the command line sets.
pub fn run_with(dir: &Path, options: InitOptions) -> anyhow::Result<Scaffold> {
    let config_path = dir.join(config::FILE_NAME);
    if config_path.exists() {
        bail!(
            "refusing to overwrite {}: it already exists. Edit it, or choose another directory",
            config_path.display()
        );
    }
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;

    let mut config = Config::default();
    let mut notes = Vec::new();
    config.profile.label = options.label.unwrap_or_else(|| default_label(dir));
    config.viewer.http_addr = match options.console {
        Some(console) if console.parse::<u16>().is_ok() => format!("127.0.0.1:{console}"),
        Some(console) => console,
        None => {
            let port = free_console_port(dir);
            if port != DEFAULT_CONSOLE_PORT {
                notes.push(format!(
                    "Port {DEFAULT_CONSOLE_PORT} is taken; the console will be on http://127.0.0.1:{port}/ (viewer.http_addr)"
                ));
            }
            format!("127.0.0.1:{port}")
        }
    };
    if let Some(port) = options.port {
        config.p2p.listen_port = port;
    }
    if let Some(hub) = options.hub {
        config.presence.rendezvous_wan = hub;
    }
    let problems = config.validate();
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }

    if let Some(name) = &options.template
        && !crate::services::sitetemplates::builtin::names().contains(name)
    {
        bail!(
            "there is no built-in template {name:?}; the built-in templates are {}",
            crate::services::sitetemplates::builtin::names().join(", ")
        );
    }

    let key_path = Config::resolve(dir, &config.identity.key_file);
    let identity = identity::load_or_create(&key_path)?;

    let site_root = Config::resolve(dir, &config.paths.site_root);
    fs::create_dir_all(&site_root)
        .with_context(|| format!("cannot create {}", site_root.display()))?;
    let site_index = site_root.join("index.html");
    if !site_index.exists() {
        fs::write(&site_index, STARTER_PAGE)
            .with_context(|| format!("cannot write {}", site_index.display()))?;
    }

    if let Some(name) = &options.template {
        let pending = dir.join(PENDING_TEMPLATE);
        fs::write(&pending, format!("builtin/{name}\n"))
            .with_context(|| format!("cannot write {}", pending.display()))?;
    }

    // Written last: a goop.json means the directory is complete.
    config.save(&config_path)?;
    Ok(Scaffold {
        config_path,
        peer_id: identity.peer_id,
        site_index,
        notes,
    })
}

/// 8080, or the next port that nothing listens on and that no peer directory beside `dir`
/// has for its console (so peers made one after another, before any runs, differ).
fn free_console_port(dir: &Path) -> u16 {
    let taken_by_siblings: Vec<u16> = dir
        .parent()
        .map(|parent| {
            if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            }
        })
        .and_then(|parent| fs::read_dir(parent).ok())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| Config::load(&entry.path().join(config::FILE_NAME)).ok())
        .filter_map(|loaded| loaded.config.viewer.http_socket_addr())
        .map(|addr| addr.port())
        .collect();
    let end = DEFAULT_CONSOLE_PORT + CONSOLE_PORTS_TRIED;
    (DEFAULT_CONSOLE_PORT..end)
        .find(|port| {
            !taken_by_siblings.contains(port)
                && std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok()
        })
        .unwrap_or(DEFAULT_CONSOLE_PORT)
}

fn default_label(dir: &Path) -> String {
    let name = dir
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    if name.is_empty() {
        "My Goop² peer".into()
    } else {
        name
    }
}
