//! The launcher's work: the peers under one directory (a sub-directory each), their creation,
//! deletion to a trash folder and restoration, and their processes, each a supervised child
//! ([`supervisor`]).
//!
//! The directory also holds `launcher.json` ([`Settings`]: password, theme, the peers started
//! with the launcher, where new peers' ports start) and `.trash/`. Whether a peer runs is the
//! truth of its directory lock ([`crate::services::dirlock`]), so a peer started by hand, or
//! still stopping after an earlier launcher ended, is shown as running, with its process ID.

pub mod supervisor;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use self::supervisor::{ChildSpec, ChildState, Phase, Supervisor};
use crate::config::{self, Config, Secret};
use crate::services::dirlock::{self, Holder};
use crate::services::scaffold::{self, InitOptions};

/// The launcher's own settings file, in the peers' directory.
pub const SETTINGS_FILE: &str = "launcher.json";
/// Where deleted peers go.
pub const TRASH_DIR: &str = ".trash";
/// Longest peer name.
const MAX_NAME: usize = 40;
/// Ports tried past a starting port for a new peer.
const PORTS_TRIED: u16 = 1000;
/// Peers listed at most (sub-directories beyond are not read).
pub const MAX_PEERS: usize = 200;
/// Deleted peers listed at most, the newest.
pub const TRASH_SHOWN: usize = 100;
/// Entries of the trash looked at at most.
const TRASH_READ: usize = 10_000;

/// Why a launcher operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum LauncherError {
    /// The request itself is wrong (a bad name, a missing confirmation).
    #[error("{0}")]
    Invalid(String),
    #[error("no peer named {0:?}")]
    NotFound(String),
    /// The operation conflicts with what is there (the name is taken, the peer runs elsewhere).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Failed(String),
}

fn failed(context: &str, error: impl std::fmt::Display) -> LauncherError {
    LauncherError::Failed(format!("{context}: {error}"))
}

/// Where new peers' ports start (`launcher.json`'s `ports`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FirstPorts {
    pub console: u16,
    pub p2p: u16,
    pub hub: u16,
}

impl Default for FirstPorts {
    fn default() -> Self {
        FirstPorts {
            console: 8080,
            p2p: 4001,
            hub: 8787,
        }
    }
}

/// `launcher.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where the launcher listens when `--addr` is not given; empty: 127.0.0.1 on a free port.
    pub addr: String,
    /// Its password (an argon2id hash from `goop2 hash-password`); empty: loopback only.
    pub admin_password: Secret,
    /// `dark` or `light`, for the launcher and every peer's console.
    pub theme: String,
    /// Peers started with the launcher.
    pub autostart: Vec<String>,
    pub ports: FirstPorts,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            addr: String::new(),
            admin_password: Secret::default(),
            theme: "dark".into(),
            autostart: Vec::new(),
            ports: FirstPorts::default(),
        }
    }
}

impl Settings {
    /// Reads `dir/launcher.json`; defaults when there is none.
    pub fn load(dir: &Path) -> Result<Settings, LauncherError> {
        let path = dir.join(SETTINGS_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Settings::default());
            }
            Err(err) => return Err(failed(&format!("cannot read {}", path.display()), err)),
        };
        let settings: Settings = serde_json::from_slice(&bytes).map_err(|err| {
            LauncherError::Invalid(format!("{} is not valid: {err}", path.display()))
        })?;
        if !config::THEMES.contains(&settings.theme.as_str()) {
            return Err(LauncherError::Invalid(format!(
                "{}: theme {:?} must be one of {}",
                path.display(),
                settings.theme,
                config::THEMES.join(", ")
            )));
        }
        Ok(settings)
    }

    fn save(&self, dir: &Path) -> Result<(), LauncherError> {
        let path = dir.join(SETTINGS_FILE);
        let mut text = serde_json::to_string_pretty(self).map_err(|e| failed("settings", e))?;
        text.push('\n');
        config::write_atomically(&path, text.as_bytes())
            .map_err(|err| failed(&format!("cannot write {}", path.display()), err))
    }
}

/// What a peer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `goop2 peer`.
    Peer,
    /// A rendezvous-only hub (`presence.rendezvous_only`), run with `goop2 rendezvous`.
    Rendezvous,
}

/// A peer of the directory, as the launcher shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeerView {
    /// Its directory's name.
    pub name: String,
    pub label: String,
    pub peer_id: Option<String>,
    pub kind: Kind,
    /// The console's (or a hub's settings viewer's) address.
    pub console: Option<String>,
    pub p2p_port: Option<u16>,
    /// The port of the hub it hosts.
    pub hub_port: Option<u16>,
    /// The hub it joins (`presence.rendezvous_wan`).
    pub joins: Option<String>,
    pub template: Option<String>,
    pub autostart: bool,
    /// The child process this launcher supervises.
    pub process: ChildState,
    /// A process not started by this launcher that runs the directory.
    pub elsewhere: Option<Holder>,
    /// Why it cannot be started: not a peer directory, a broken goop.json.
    pub problem: Option<String>,
}

impl PeerView {
    /// True when a process runs the directory, ours or another.
    pub fn running(&self) -> bool {
        self.elsewhere.is_some() || matches!(self.process.phase, Phase::Running | Phase::Stopping)
    }
}

/// A deleted peer in the trash.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trashed {
    /// Its folder in the trash (`<name>-<ms>`).
    pub id: String,
    /// The name it had.
    pub name: String,
    pub label: String,
    pub peer_id: Option<String>,
    /// When it was deleted (ms since the Unix epoch).
    pub deleted_ms: i64,
}

/// What the owner asks a new peer to be.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NewPeer {
    pub name: String,
    /// Display name; the name when empty.
    pub label: String,
    /// A built-in template's name, applied at the first start; empty: the starter page.
    pub template: String,
    /// A hub to join (`presence.rendezvous_wan`).
    pub hub: String,
    /// Host a hub in the peer (`presence.rendezvous_host`).
    pub host_hub: bool,
    /// A hub only (`presence.rendezvous_only`), run with `goop2 rendezvous`.
    pub rendezvous_only: bool,
    /// The password of the hub's `/admin` (stored as its argon2id hash); empty: no admin.
    pub hub_password: String,
    /// Start it with the launcher.
    pub autostart: bool,
}

/// A peer's active template, and when its database had last changed when it was read.
type ReadTemplate = (Option<SystemTime>, Option<String>);

/// The launcher's state. Cloning is cheap.
#[derive(Clone)]
pub struct Launcher {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    program: PathBuf,
    settings: Mutex<Settings>,
    /// The supervisor of each peer started since the launcher began, with how it runs it.
    children: Mutex<HashMap<String, (Kind, Supervisor)>>,
    /// One lock a peer, held while it is started, stopped, restarted, deleted or restored.
    lifecycles: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Counts changes of any child's state, for live pages.
    changes: watch::Sender<u64>,
    /// Serialises what changes the directory (create, delete, restore, settings).
    edits: tokio::sync::Mutex<()>,
    /// Each peer's active template, as read when its database last changed.
    templates: Mutex<HashMap<PathBuf, ReadTemplate>>,
}

impl Launcher {
    /// The launcher of `dir` (created if missing), starting children with `program`.
    pub fn open(dir: &Path, program: PathBuf) -> Result<Launcher, LauncherError> {
        std::fs::create_dir_all(dir)
            .map_err(|err| failed(&format!("cannot create {}", dir.display()), err))?;
        let settings = Settings::load(dir)?;
        Ok(Launcher {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                program,
                settings: Mutex::new(settings),
                children: Mutex::new(HashMap::new()),
                lifecycles: Mutex::new(HashMap::new()),
                changes: watch::channel(0).0,
                edits: tokio::sync::Mutex::new(()),
                templates: Mutex::new(HashMap::new()),
            }),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    pub fn settings(&self) -> Settings {
        self.inner
            .settings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Ticks on every change of a child's state.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    fn touched(&self) {
        self.inner.changes.send_modify(|n| *n += 1);
    }

    /// The peers of the directory, by name.
    pub async fn peers(&self) -> Vec<PeerView> {
        let mut names = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&self.inner.dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') || !entry.path().is_dir() {
                    continue;
                }
                names.push(name);
            }
        }
        names.sort();
        names.truncate(MAX_PEERS);
        let mut views = Vec::with_capacity(names.len());
        for name in names {
            views.push(self.view(&name).await);
        }
        views
    }

    /// One peer, by name.
    pub async fn peer(&self, name: &str) -> Result<PeerView, LauncherError> {
        let path = self.peer_dir(name)?;
        if !path.is_dir() {
            return Err(LauncherError::NotFound(name.to_owned()));
        }
        Ok(self.view(name).await)
    }

    async fn view(&self, name: &str) -> PeerView {
        let path = self.inner.dir.join(name);
        let process = self
            .children()
            .get(name)
            .map(|(_, child)| child.state())
            .unwrap_or_else(ChildState::stopped);
        let autostart = self.settings().autostart.iter().any(|n| n == name);
        let name = name.to_owned();
        let read = tokio::task::spawn_blocking(move || read_view(&path, name, process, autostart));
        let mut view = read.await.expect("reading a peer's files does not panic");
        if view.kind == Kind::Peer && view.problem.is_none() && view.template.is_none() {
            view.template = self.active_template(&self.inner.dir.join(&view.name)).await;
        }
        view
    }

    /// The active template of the peer in `path`, read again only when its database changed.
    async fn active_template(&self, path: &Path) -> Option<String> {
        let db = path.join(crate::store::peer::FILE_NAME);
        let changed = ["", "-wal"]
            .iter()
            .filter_map(|suffix| {
                let mut file = db.clone().into_os_string();
                file.push(suffix);
                std::fs::metadata(file).and_then(|m| m.modified()).ok()
            })
            .max();
        let cached = self
            .inner
            .templates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(path)
            .cloned();
        if let Some((when, name)) = cached
            && when == changed
        {
            return name;
        }
        let name = crate::services::sitetemplates::active_name_of(&db).await;
        self.inner
            .templates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(path.to_owned(), (changed, name.clone()));
        name
    }

    /// The directory of peer `name`, checking the name.
    fn peer_dir(&self, name: &str) -> Result<PathBuf, LauncherError> {
        valid_name(name)?;
        Ok(self.inner.dir.join(name))
    }

    /// Creates a peer.
    pub async fn create(&self, new: NewPeer) -> Result<PeerView, LauncherError> {
        let _edit = self.inner.edits.lock().await;
        let name = new.name.trim().to_owned();
        let path = self.peer_dir(&name)?;
        if path.exists() {
            return Err(LauncherError::Conflict(format!(
                "there is already a peer (or folder) named {name:?}"
            )));
        }
        let runs_a_hub = new.host_hub || new.rendezvous_only;
        if !new.hub_password.is_empty() && !runs_a_hub {
            return Err(LauncherError::Invalid(
                "a hub admin password is for a peer that hosts a hub, or a hub only".into(),
            ));
        }
        if new.rendezvous_only && !new.template.is_empty() {
            return Err(LauncherError::Invalid(
                "a rendezvous-only hub has no site: leave the template empty".into(),
            ));
        }
        let mut taken = self.ports_in_use();
        let first = self.settings().ports;
        let console = pick_port(first.console, &mut taken, false)?;
        let p2p = match new.rendezvous_only {
            true => None,
            false => Some(pick_port(first.p2p, &mut taken, true)?),
        };
        let hub_port = match new.host_hub || new.rendezvous_only {
            true => Some(pick_port(first.hub, &mut taken, false)?),
            false => None,
        };
        // Made beside its final place and renamed, so a half-made peer is never listed.
        let staging = self.inner.dir.join(format!(".new-{name}"));
        let _ = std::fs::remove_dir_all(&staging);
        let label = match new.label.trim() {
            "" => name.clone(),
            label => label.to_owned(),
        };
        let options = InitOptions {
            label: Some(label),
            console: Some(format!("127.0.0.1:{console}")),
            port: p2p,
            hub: (!new.hub.trim().is_empty()).then(|| new.hub.trim().to_owned()),
            template: (!new.template.is_empty()).then(|| new.template.clone()),
        };
        let hub_password = match new.hub_password.is_empty() {
            true => None,
            false => Some(
                crate::services::auth::hash_password(&new.hub_password).map_err(|err| {
                    LauncherError::Invalid(format!("the hub admin password: {err}"))
                })?,
            ),
        };
        let made = scaffold::run_with(&staging, options).and_then(|scaffold| {
            let mut config = Config::load(&scaffold.config_path)?.config;
            config.viewer.theme = self.settings().theme;
            if let Some(port) = hub_port {
                config.presence.rendezvous_host = true;
                config.presence.rendezvous_port = Some(port);
                config.presence.peer_db_path = config::HUB_PEER_DB.into();
            }
            if new.rendezvous_only {
                config.presence.rendezvous_only = true;
            }
            if let Some(hash) = &hub_password {
                config.presence.admin_password = config::Secret::new(hash.clone());
            }
            let problems = config.validate();
            if !problems.is_empty() {
                anyhow::bail!("{}", problems.join("; "));
            }
            config.save(&scaffold.config_path)?;
            Ok(())
        });
        if let Err(err) = made {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(LauncherError::Invalid(format!("{err:#}")));
        }
        std::fs::rename(&staging, &path).map_err(|err| {
            let _ = std::fs::remove_dir_all(&staging);
            failed(
                &format!("cannot move the new peer to {}", path.display()),
                err,
            )
        })?;
        if new.autostart {
            self.edit_settings(|s| s.autostart.push(name.clone()))?;
        }
        tracing::info!(peer = %name, "created a peer");
        self.touched();
        Ok(self.view(&name).await)
    }

    /// The ports the peers of the directory have.
    fn ports_in_use(&self) -> HashSet<u16> {
        let mut taken = HashSet::new();
        let Ok(entries) = std::fs::read_dir(&self.inner.dir) else {
            return taken;
        };
        for entry in entries.flatten().take(MAX_PEERS * 2) {
            if let Ok(loaded) = Config::load(&entry.path().join(config::FILE_NAME)) {
                taken.extend(config_ports(&loaded.config));
            }
        }
        taken
    }

    /// Stops peer `name` and moves it to the trash; `confirm` must repeat its name.
    pub async fn delete(&self, name: &str, confirm: &str) -> Result<Trashed, LauncherError> {
        let path = self.peer_dir(name)?;
        if !path.is_dir() {
            return Err(LauncherError::NotFound(name.to_owned()));
        }
        if confirm != name {
            return Err(LauncherError::Invalid(format!(
                "to delete {name:?}, confirm with its name"
            )));
        }
        let _lifecycle = self.lifecycle(name).await;
        self.stop_child(name).await?;
        let _edit = self.inner.edits.lock().await;
        if let Some(holder) = dirlock::holder(&path) {
            return Err(LauncherError::Conflict(format!(
                "{name:?} is running (pid {}) outside this launcher; stop it first",
                holder.pid
            )));
        }
        let trash = self.inner.dir.join(TRASH_DIR);
        std::fs::create_dir_all(&trash)
            .map_err(|err| failed(&format!("cannot create {}", trash.display()), err))?;
        let deleted_ms = crate::services::hub::unix_ms();
        let id = format!("{name}-{deleted_ms}");
        let target = trash.join(&id);
        let view = self.view(name).await;
        std::fs::rename(&path, &target)
            .map_err(|err| failed(&format!("cannot move {name:?} to the trash"), err))?;
        self.children().remove(name);
        self.edit_settings(|s| s.autostart.retain(|n| n != name))?;
        tracing::info!(peer = %name, trash = %target.display(), "moved a peer to the trash");
        self.touched();
        Ok(Trashed {
            id,
            name: name.to_owned(),
            label: view.label,
            peer_id: view.peer_id,
            deleted_ms,
        })
    }

    /// The newest [`TRASH_SHOWN`] peers in the trash, newest first.
    pub async fn trash(&self) -> Vec<Trashed> {
        let trash = self.inner.dir.join(TRASH_DIR);
        let read = tokio::task::spawn_blocking(move || {
            let Ok(entries) = std::fs::read_dir(&trash) else {
                return Vec::new();
            };
            let mut found: Vec<(i64, String)> = entries
                .flatten()
                .take(TRASH_READ)
                .filter_map(|entry| {
                    let id = entry.file_name().to_string_lossy().into_owned();
                    let deleted_ms = trash_time(&id)?;
                    Some((deleted_ms, id))
                })
                .collect();
            found.sort_by_key(|(ms, _)| std::cmp::Reverse(*ms));
            found.truncate(TRASH_SHOWN);
            found
                .into_iter()
                .map(|(deleted_ms, id)| read_trashed(&trash.join(&id), id, deleted_ms))
                .collect()
        });
        read.await.unwrap_or_default()
    }

    /// The trashed peer `id`: found among the trash's entries, never made into a path first.
    async fn trashed(&self, id: &str) -> Option<Trashed> {
        let trash = self.inner.dir.join(TRASH_DIR);
        let id = id.to_owned();
        let read = tokio::task::spawn_blocking(move || {
            let entry = std::fs::read_dir(&trash)
                .ok()?
                .flatten()
                .find(|entry| entry.file_name().to_str() == Some(id.as_str()))?;
            let deleted_ms = trash_time(&id)?;
            Some(read_trashed(&entry.path(), id, deleted_ms))
        });
        read.await.ok().flatten()
    }

    /// Moves trashed peer `id` back under its name; ports another peer took since are
    /// replaced by free ones (said in the result).
    pub async fn restore(&self, id: &str) -> Result<(PeerView, Vec<String>), LauncherError> {
        let trashed = self
            .trashed(id)
            .await
            .ok_or_else(|| LauncherError::NotFound(format!("{TRASH_DIR}/{id}")))?;
        let path = self.peer_dir(&trashed.name)?;
        let _lifecycle = self.lifecycle(&trashed.name).await;
        let _edit = self.inner.edits.lock().await;
        if path.exists() {
            return Err(LauncherError::Conflict(format!(
                "a peer named {:?} exists; rename or delete it first",
                trashed.name
            )));
        }
        let source = self.inner.dir.join(TRASH_DIR).join(id);
        let mut notes = Vec::new();
        let config_path = source.join(config::FILE_NAME);
        if let Ok(loaded) = Config::load(&config_path) {
            let mut config = loaded.config;
            let mut taken = self.ports_in_use();
            let first = self.settings().ports;
            let mut changed = false;
            if let Some(addr) = config.viewer.http_socket_addr()
                && taken.contains(&addr.port())
            {
                let port = pick_port(first.console, &mut taken, false)?;
                config.viewer.http_addr = format!("{}:{port}", addr.ip());
                notes.push(format!("its console moved to port {port}"));
                changed = true;
            }
            if config.p2p.listen_port != 0 && taken.contains(&config.p2p.listen_port) {
                let port = pick_port(first.p2p, &mut taken, true)?;
                config.p2p.listen_port = port;
                notes.push(format!("its libp2p port is now {port}"));
                changed = true;
            }
            if (config.presence.rendezvous_host || config.presence.rendezvous_only)
                && taken.contains(&config.presence.hub_port())
            {
                let port = pick_port(first.hub, &mut taken, false)?;
                config.presence.rendezvous_port = Some(port);
                notes.push(format!("its hub moved to port {port}"));
                changed = true;
            }
            if changed {
                config
                    .save(&config_path)
                    .map_err(|err| failed("cannot save its goop.json", err))?;
            }
        }
        std::fs::rename(&source, &path)
            .map_err(|err| failed(&format!("cannot restore {:?}", trashed.name), err))?;
        tracing::info!(peer = %trashed.name, "restored a peer from the trash");
        self.touched();
        Ok((self.view(&trashed.name).await, notes))
    }

    /// The supervisor of peer `name`, made when first needed, and made anew when the peer's
    /// kind changed (a goop.json edited into a hub only) while it was not running.
    fn supervisor(&self, name: &str, view: &PeerView) -> Supervisor {
        let mut children = self.children();
        if let Some((kind, child)) = children.get(name)
            && (*kind == view.kind
                || matches!(child.state().phase, Phase::Running | Phase::Stopping))
        {
            return child.clone();
        }
        let mode = match view.kind {
            Kind::Peer => "peer",
            Kind::Rendezvous => "rendezvous",
        };
        let spec = ChildSpec {
            program: self.inner.program.clone(),
            args: vec![
                mode.into(),
                self.inner.dir.join(name).into_os_string(),
                "--supervised".into(),
            ],
        };
        let child = Supervisor::new(spec, self.inner.changes.clone());
        children.insert(name.to_owned(), (view.kind, child.clone()));
        child
    }

    fn children(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Kind, Supervisor)>> {
        self.inner
            .children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Peer `name`'s lifecycle lock: one start, stop, restart, delete or restore at a time.
    async fn lifecycle(&self, name: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self
            .inner
            .lifecycles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_owned())
            .or_default()
            .clone();
        lock.lock_owned().await
    }

    /// Starts peer `name` as a child.
    pub async fn start(&self, name: &str) -> Result<PeerView, LauncherError> {
        let _lifecycle = self.lifecycle(name).await;
        self.start_child(name).await
    }

    async fn start_child(&self, name: &str) -> Result<PeerView, LauncherError> {
        let view = self.peer(name).await?;
        if let Some(problem) = &view.problem {
            return Err(LauncherError::Conflict(format!(
                "{name:?} cannot start: {problem}"
            )));
        }
        if let Some(holder) = &view.elsewhere {
            return Err(LauncherError::Conflict(format!(
                "{name:?} is running already (pid {}), started outside this launcher",
                holder.pid
            )));
        }
        self.supervisor(name, &view).start().await;
        Ok(self.view(name).await)
    }

    /// Stops peer `name`'s child (waiting until it exited); a peer this launcher did not start
    /// is refused.
    pub async fn stop(&self, name: &str) -> Result<PeerView, LauncherError> {
        let _lifecycle = self.lifecycle(name).await;
        self.stop_child(name).await
    }

    async fn stop_child(&self, name: &str) -> Result<PeerView, LauncherError> {
        let view = self.peer(name).await?;
        if let Some(holder) = &view.elsewhere {
            return Err(LauncherError::Conflict(format!(
                "{name:?} runs outside this launcher (pid {}); stop it where it was started",
                holder.pid
            )));
        }
        let child = self.children().get(name).map(|(_, child)| child.clone());
        if let Some(child) = child {
            child.stop().await;
        }
        Ok(self.view(name).await)
    }

    /// Stops peer `name`'s child if it runs, and starts it again.
    pub async fn restart(&self, name: &str) -> Result<PeerView, LauncherError> {
        let _lifecycle = self.lifecycle(name).await;
        let view = self.peer(name).await?;
        if view.elsewhere.is_some() || view.problem.is_some() {
            return self.start_child(name).await;
        }
        self.supervisor(name, &view).restart().await;
        Ok(self.view(name).await)
    }

    /// Starts every peer that can start and is not running.
    pub async fn start_all(&self) -> Vec<(String, Result<(), String>)> {
        let mut outcomes = Vec::new();
        for view in self.peers().await {
            if view.running() || view.problem.is_some() {
                continue;
            }
            let outcome = self
                .start(&view.name)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string());
            outcomes.push((view.name, outcome));
        }
        outcomes
    }

    /// Stops every child, all at once; resolves when all have exited.
    pub async fn stop_all(&self) {
        let children: Vec<Supervisor> = self.children().values().map(|(_, c)| c.clone()).collect();
        futures_util::future::join_all(children.iter().map(Supervisor::stop)).await;
    }

    /// Starts the peers marked to start with the launcher.
    pub async fn autostart(&self) {
        for name in self.settings().autostart {
            match self.start(&name).await {
                Ok(_) => tracing::info!(peer = %name, "started with the launcher"),
                Err(err) => tracing::warn!(peer = %name, "not started with the launcher: {err}"),
            }
        }
    }

    /// Marks peer `name` to start with the launcher, or not.
    pub async fn set_autostart(&self, name: &str, on: bool) -> Result<PeerView, LauncherError> {
        self.peer(name).await?;
        let _edit = self.inner.edits.lock().await;
        self.edit_settings(|s| {
            s.autostart.retain(|n| n != name);
            if on {
                s.autostart.push(name.to_owned());
            }
        })?;
        self.touched();
        Ok(self.view(name).await)
    }

    /// Sets the theme of the launcher and of every peer's console (`viewer.theme` in each
    /// goop.json); a running peer is told to read it again (SIGHUP). Returns the peers whose
    /// goop.json could not be changed, with why.
    pub async fn set_theme(&self, theme: &str) -> Result<Vec<String>, LauncherError> {
        if !config::THEMES.contains(&theme) {
            return Err(LauncherError::Invalid(format!(
                "the theme must be one of {}",
                config::THEMES.join(", ")
            )));
        }
        let _edit = self.inner.edits.lock().await;
        self.edit_settings(|s| s.theme = theme.to_owned())?;
        let mut refused = Vec::new();
        for view in self.peers().await {
            if view.problem.is_some() {
                continue;
            }
            let path = self.inner.dir.join(&view.name).join(config::FILE_NAME);
            let outcome = Config::load(&path)
                .map_err(|e| e.to_string())
                .and_then(|loaded| {
                    let mut config = loaded.config;
                    if config.viewer.theme == theme {
                        return Ok(());
                    }
                    config.viewer.theme = theme.to_owned();
                    config.save(&path).map_err(|e| e.to_string())
                });
            if let Err(err) = outcome {
                refused.push(format!("{}: {err}", view.name));
                continue;
            }
            // A running peer reads it again on SIGHUP, which it handles once its lock names
            // its console (before, the signal would end it).
            let holder = dirlock::holder(&self.inner.dir.join(&view.name));
            let pid = holder
                .filter(|h| h.console.is_some())
                .and_then(|h| i32::try_from(h.pid).ok())
                .filter(|pid| *pid > 1 && *pid as u32 != std::process::id());
            if let Some(pid) = pid {
                let pid = nix::unistd::Pid::from_raw(pid);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP);
            }
        }
        self.touched();
        Ok(refused)
    }

    fn edit_settings(&self, change: impl FnOnce(&mut Settings)) -> Result<(), LauncherError> {
        let mut settings = self
            .inner
            .settings
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut edited = settings.clone();
        change(&mut edited);
        edited.save(&self.inner.dir)?;
        *settings = edited;
        Ok(())
    }

    /// The output of peer `name`'s child, across its runs.
    pub fn logs(&self, name: &str) -> Option<crate::telemetry::LogBuffer> {
        self.children().get(name).map(|(_, c)| c.logs().clone())
    }
}

/// A peer as its directory says (its goop.json, key, lock and pending template); the active
/// template is left to the caller. Blocking file work: run it off the async threads.
fn read_view(path: &Path, name: String, process: ChildState, autostart: bool) -> PeerView {
    let ours = matches!(process.phase, Phase::Running | Phase::Stopping);
    let elsewhere = match ours {
        true => None,
        false => dirlock::holder(path),
    };
    let mut view = PeerView {
        label: name.clone(),
        name,
        peer_id: None,
        kind: Kind::Peer,
        console: None,
        p2p_port: None,
        hub_port: None,
        joins: None,
        template: None,
        autostart,
        process,
        elsewhere,
        problem: None,
    };
    if let Err(error) = valid_name(&view.name) {
        view.problem = Some(format!(
            "the launcher cannot manage this folder: {error}; rename it"
        ));
        return view;
    }
    let config_path = path.join(config::FILE_NAME);
    if !config_path.exists() {
        view.problem = Some(format!(
            "not a peer directory: it has no {} (create peers here with the launcher or `goop2 init`)",
            config::FILE_NAME
        ));
        return view;
    }
    let config = match Config::load(&config_path) {
        Ok(loaded) => loaded.config,
        Err(err) => {
            view.problem = Some(err.to_string());
            return view;
        }
    };
    let presence = &config.presence;
    view.label = config.profile.label.clone();
    view.kind = match presence.rendezvous_only {
        true => Kind::Rendezvous,
        false => Kind::Peer,
    };
    view.console = (!config.viewer.http_addr.is_empty()).then(|| config.viewer.http_addr.clone());
    view.p2p_port = (view.kind == Kind::Peer).then_some(config.p2p.listen_port);
    view.hub_port =
        (presence.rendezvous_host || presence.rendezvous_only).then_some(presence.hub_port());
    view.joins = (!presence.rendezvous_wan.is_empty()).then(|| presence.rendezvous_wan.clone());
    if view.kind == Kind::Peer {
        match crate::identity::peer_id_of(&Config::resolve(path, &config.identity.key_file)) {
            Ok(id) => view.peer_id = id.map(|id| id.to_base58()),
            Err(err) => view.problem = Some(err.to_string()),
        }
        if let Ok(pending) = std::fs::read_to_string(path.join(scaffold::PENDING_TEMPLATE)) {
            view.template = Some(format!("{} (at the first start)", pending.trim()));
        }
    }
    view
}

/// When a trash entry `<name>-<ms>` was deleted.
fn trash_time(id: &str) -> Option<i64> {
    let (name, ms) = id.rsplit_once('-')?;
    valid_name(name).ok()?;
    ms.parse().ok()
}

/// A trash entry as the page shows it.
fn read_trashed(path: &Path, id: String, deleted_ms: i64) -> Trashed {
    let name = id
        .rsplit_once('-')
        .map_or(id.as_str(), |(n, _)| n)
        .to_owned();
    let config = Config::load(&path.join(config::FILE_NAME))
        .ok()
        .map(|l| l.config);
    let peer_id = config.as_ref().and_then(|c| {
        crate::identity::peer_id_of(&Config::resolve(path, &c.identity.key_file))
            .ok()
            .flatten()
            .map(|id| id.to_base58())
    });
    Trashed {
        label: config.map_or_else(|| name.clone(), |c| c.profile.label),
        name,
        id,
        peer_id,
        deleted_ms,
    }
}

/// Checks a peer name: it names a directory, so letters, digits, `-` and `_` only.
pub fn valid_name(name: &str) -> Result<(), LauncherError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    match ok {
        true => Ok(()),
        false => Err(LauncherError::Invalid(format!(
            "a peer name is 1 to {MAX_NAME} letters, digits, '-' or '_', starting with a letter \
             or digit (not {name:?})"
        ))),
    }
}

/// The ports a configuration listens on.
fn config_ports(config: &Config) -> Vec<u16> {
    let mut ports = Vec::new();
    if let Some(addr) = config.viewer.http_socket_addr() {
        ports.push(addr.port());
    }
    if config.p2p.listen_port != 0 {
        ports.push(config.p2p.listen_port);
    }
    if config.presence.rendezvous_host || config.presence.rendezvous_only {
        ports.push(config.presence.hub_port());
    }
    ports
}

/// The first port from `first` that no peer of the directory has and nothing on this machine
/// listens on (TCP, and UDP too with `udp`); taken into `taken`.
fn pick_port(first: u16, taken: &mut HashSet<u16>, udp: bool) -> Result<u16, LauncherError> {
    let last = first.saturating_add(PORTS_TRIED);
    let port = (first.max(1)..last)
        .find(|port| {
            !taken.contains(port)
                && std::net::TcpListener::bind(("0.0.0.0", *port)).is_ok()
                && (!udp || std::net::UdpSocket::bind(("0.0.0.0", *port)).is_ok())
        })
        .ok_or_else(|| {
            LauncherError::Conflict(format!("no free port between {first} and {last}"))
        })?;
    taken.insert(port);
    Ok(port)
}
