//! App templates: a site, its tables, Lua functions and starting rows, applied to a peer in
//! one step. The templates built into the binary, the ones the owner installed
//! (`<dir>/apps/`, from a hub's store, an archive or a folder), and a site exported as one
//! archive and imported on another peer.
//!
//! Applying is all or nothing: the template is checked whole ([`template::Template`]), its files
//! are written beside the site, its group is created, the site is swapped in, and one database
//! transaction drops the previous template's tables, creates the new ones with their rows and
//! records the template as active. If the transaction fails the previous site is put back.
//! The owner's other tables are never touched; a template that needs a name one of them has is
//! refused before anything changes.

pub mod builtin;
mod files;
pub mod manifest;
pub mod sql;
pub mod store;
pub mod template;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub use files::SitePaths;
use manifest::Manifest;
pub use store::slug;
use store::{TemplateError, TemplateStore};
use template::Template;

use crate::services::data::{DataError, DataService};
use crate::services::groups::{Groups, NewGroup};
use crate::services::lua::LuaEngine;
use crate::services::presence::hub_client::Announcement;

/// The `_meta` key of the active template.
const ACTIVE_KEY: &str = "active_template";
/// How long a hub's store may take to answer.
const HUB_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// Starts the Lua engine when a template ships functions and Lua is off.
pub type LuaStarter = Arc<dyn Fn() -> LuaEngine + Send + Sync>;

/// The short name of the template the peer database at `db_path` has active, read without
/// disturbing a running peer; `None` without one (or when the file cannot be read).
pub async fn active_name_of(db_path: &std::path::Path) -> Option<String> {
    let text = crate::store::peer::read_meta_of(db_path, ACTIVE_KEY)
        .await
        .ok()??;
    serde_json::from_str::<Active>(&text).ok().map(|a| a.name)
}

/// Where a template comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Built into the binary.
    Builtin(String),
    /// Installed in `<dir>/templates/`.
    Installed(String),
}

impl Source {
    /// `builtin/<name>` or `installed/<name>`.
    pub fn parse(key: &str) -> Result<Source, TemplateError> {
        match key.split_once('/') {
            Some(("builtin", name)) => Ok(Source::Builtin(name.to_owned())),
            Some(("installed", name)) => Ok(Source::Installed(name.to_owned())),
            _ => Err(TemplateError::NotFound(key.to_owned())),
        }
    }

    pub fn key(&self) -> String {
        match self {
            Source::Builtin(name) => format!("builtin/{name}"),
            Source::Installed(name) => format!("installed/{name}"),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Source::Builtin(name) | Source::Installed(name) => name,
        }
    }
}

/// A template in the gallery.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    /// `builtin/<name>` or `installed/<name>`.
    pub key: String,
    pub name: String,
    pub manifest: Manifest,
    pub builtin: bool,
    /// It has a preview picture.
    pub preview: bool,
}

/// The template applied last, as `_meta` records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Active {
    /// Where it came from (`builtin/blog`, `installed/x`, `import/<name>`).
    pub key: String,
    /// Its short name, announced in presence.
    pub name: String,
    pub title: String,
    pub version: String,
    /// The tables it brought.
    pub tables: Vec<String>,
    /// Its group, when it needs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Pages made on request by its Lua functions (`feed.atom` → `feed`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub generated: BTreeMap<String, String>,
}

/// What applying a template would do, shown before it is done.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub title: String,
    /// The previous template's tables that go, with their rows.
    pub drop: Vec<(String, i64)>,
    pub create: Vec<String>,
    /// The owner's own tables whose names the template needs: applying is refused.
    pub conflicts: Vec<String>,
    /// Lua is off and the template ships functions: applying turns it on.
    pub enables_lua: bool,
    /// The group the template creates.
    pub group: Option<String>,
    /// The previous template's group, closed because the new one does not use it.
    pub closes: Option<String>,
}

/// What an apply did.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    pub active: Active,
    pub dropped: Vec<String>,
    pub rows: usize,
    pub lua_enabled: bool,
}

/// Makes the pages a template names in `generated` with the peer's Lua functions: the function
/// is called as the visitor who asked (the owner when `None`), with `{path}`, and the text it
/// returns is the page.
pub fn page_maker(data: DataService) -> crate::services::site::Generator {
    use crate::services::data::Caller;
    use serde_json::Value;
    Arc::new(move |visitor, function, path| {
        let data = data.clone();
        Box::pin(async move {
            let caller = visitor.map_or(Caller::Owner, Caller::Peer);
            match data
                .lua_call(&caller, &function, serde_json::json!({ "path": path }))
                .await
            {
                Ok(Value::String(text)) => Ok(text.into_bytes()),
                Ok(other) => Err(format!(
                    "{function} returned {}, not the page's text",
                    match other {
                        Value::Null => "nothing",
                        Value::Object(_) => "a table",
                        _ => "a value",
                    }
                )),
                Err(error) => Err(error.to_string()),
            }
        })
    })
}

/// What the templates service works with.
pub struct TemplateSetup {
    pub paths: SitePaths,
    /// `<dir>/templates`.
    pub installed: PathBuf,
    /// `goop.json`, where Lua is switched on.
    pub config_path: PathBuf,
    pub data: DataService,
    pub groups: Groups,
    pub lua: LuaStarter,
    pub announcement: Arc<watch::Sender<Announcement>>,
    /// The hubs whose stores the owner may browse.
    pub hubs: Vec<url::Url>,
    /// The site, told which of its pages the active template makes on request.
    pub site: crate::services::site::Site,
}

/// The templates of one peer. Cloning is cheap.
#[derive(Clone)]
pub struct SiteTemplates {
    inner: Arc<Inner>,
}

struct Inner {
    setup: TemplateSetup,
    store: Arc<TemplateStore>,
    /// One apply or import at a time.
    busy: tokio::sync::Mutex<()>,
    http: reqwest::Client,
}

fn refused(message: impl Into<String>) -> TemplateError {
    TemplateError::Refused(message.into())
}

fn data_failed(error: DataError) -> TemplateError {
    match error {
        DataError::BadRequest(message) => TemplateError::Refused(message),
        other => TemplateError::Unavailable(other.to_string()),
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, TemplateError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| TemplateError::Unavailable(format!("the work stopped: {e}")))
}

impl SiteTemplates {
    pub fn new(setup: TemplateSetup) -> SiteTemplates {
        let store = Arc::new(TemplateStore::new(setup.installed.clone()));
        let http = crate::services::presence::tls::http_client(Some(HUB_TIMEOUT));
        SiteTemplates {
            inner: Arc::new(Inner {
                setup,
                store,
                busy: tokio::sync::Mutex::new(()),
                http,
            }),
        }
    }

    /// Built-in templates, then installed ones; a broken installed one is left out with a log
    /// line.
    pub async fn gallery(&self) -> Vec<Listed> {
        let store = self.inner.store.clone();
        blocking(move || {
            let mut listed = Vec::new();
            for name in builtin::names() {
                match builtin::manifest(&name).map(|m| Manifest::parse(&m)) {
                    Some(Ok(manifest)) => listed.push(Listed {
                        key: Source::Builtin(name.clone()).key(),
                        preview: builtin::preview(&name).is_some(),
                        name,
                        manifest,
                        builtin: true,
                    }),
                    _ => tracing::error!(template = %name, "a built-in template is broken"),
                }
            }
            for manifest in store.list() {
                let name = manifest["dir"].as_str().unwrap_or_default().to_owned();
                let bytes = serde_json::to_vec(&manifest).unwrap_or_default();
                if let Ok(manifest) = Manifest::parse(&bytes) {
                    listed.push(Listed {
                        key: Source::Installed(name.clone()).key(),
                        preview: store.dir().join(&name).join(template::PREVIEW).is_file(),
                        name,
                        manifest,
                        builtin: false,
                    });
                }
            }
            listed
        })
        .await
        .unwrap_or_default()
    }

    /// The files of a template.
    async fn files(&self, source: &Source) -> Result<BTreeMap<String, Vec<u8>>, TemplateError> {
        match source {
            Source::Builtin(name) => {
                builtin::files(name).ok_or_else(|| TemplateError::NotFound(name.clone()))
            }
            Source::Installed(name) => {
                let root = self.inner.store.dir().join(name);
                let name = name.clone();
                blocking(move || {
                    if !store::valid_name(&name) || !root.join("manifest.json").is_file() {
                        return Err(TemplateError::NotFound(name));
                    }
                    files::read_tree(&root, None)
                })
                .await?
            }
        }
    }

    /// A template's preview picture (PNG), at most 2 MiB.
    pub async fn preview(&self, source: &Source) -> Option<Vec<u8>> {
        match source {
            Source::Builtin(name) => builtin::preview(name),
            Source::Installed(name) => {
                if !store::valid_name(name) {
                    return None;
                }
                let path = self.inner.store.dir().join(name).join(template::PREVIEW);
                blocking(move || {
                    let meta = std::fs::symlink_metadata(&path).ok()?;
                    (meta.is_file() && meta.len() <= 2 * 1024 * 1024)
                        .then(|| std::fs::read(&path).ok())
                        .flatten()
                })
                .await
                .ok()
                .flatten()
            }
        }
    }

    /// A template, checked.
    /// Rows a template brings in `data/` are the owner's: only an import keeps who wrote them.
    pub async fn load(&self, source: &Source) -> Result<Template, TemplateError> {
        let files = self.files(source).await?;
        let mut template =
            blocking(move || Template::from_files(files).map_err(TemplateError::Refused)).await??;
        template.rows_as_the_owners();
        Ok(template)
    }

    /// The template applied last.
    pub async fn active(&self) -> Result<Option<Active>, TemplateError> {
        let text = self
            .inner
            .setup
            .data
            .meta(ACTIVE_KEY)
            .await
            .map_err(data_failed)?;
        Ok(text.and_then(|text| serde_json::from_str(&text).ok()))
    }

    /// What applying `template`, under `name`, would do.
    pub async fn plan(&self, template: &Template, name: &str) -> Result<Plan, TemplateError> {
        let data = &self.inner.setup.data;
        let active = self.active().await?;
        let previous_group = active.as_ref().and_then(|a| a.group.clone());
        let previous = active.map(|a| a.tables).unwrap_or_default();
        let existing: Vec<String> = data
            .tables(&crate::services::data::Caller::Owner)
            .await
            .map_err(data_failed)?
            .into_iter()
            .map(|t| t.name)
            .collect();
        let counts = data.row_counts().await.map_err(data_failed)?;
        let drop: Vec<(String, i64)> = existing
            .iter()
            .filter(|name| previous.contains(name))
            .map(|name| (name.clone(), counts.get(name).copied().unwrap_or(0)))
            .collect();
        let create: Vec<String> = template
            .tables
            .iter()
            .map(|t| t.schema.name.clone())
            .collect();
        let conflicts = existing
            .iter()
            .filter(|name| {
                !previous.contains(name) && create.iter().any(|c| c.eq_ignore_ascii_case(name))
            })
            .cloned()
            .collect();
        Ok(Plan {
            title: template.manifest.name.clone(),
            drop,
            create,
            conflicts,
            enables_lua: template.has_functions() && data.lua_engine().is_none(),
            closes: previous_group
                .filter(|old| template.manifest.group_id(name).as_ref() != Some(old)),
            group: template.manifest.group_id(name),
        })
    }

    /// Applies a template from the gallery.
    pub async fn apply(&self, source: &Source) -> Result<Applied, TemplateError> {
        let template = self.load(source).await?;
        self.apply_template(source.key(), source.name().to_owned(), template)
            .await
    }

    /// Applies a site exported as an archive (its rows included when it has them).
    pub async fn import(&self, archive: Vec<u8>) -> Result<Applied, TemplateError> {
        let template = blocking(move || {
            let files = store::read_archive(&archive)?;
            Template::from_files(files).map_err(TemplateError::Refused)
        })
        .await??;
        let name = match slug(&template.manifest.name) {
            name if name.is_empty() => "site".to_owned(),
            name => name,
        };
        self.apply_template(format!("import/{name}"), name, template)
            .await
    }

    /// Applies `template` in a task of its own: a caller that goes away (the browser closed,
    /// the console stopping) does not stop it half-way.
    async fn apply_template(
        &self,
        key: String,
        name: String,
        template: Template,
    ) -> Result<Applied, TemplateError> {
        let this = self.clone();
        tokio::spawn(async move { this.apply_now(key, name, template).await })
            .await
            .map_err(|e| TemplateError::Unavailable(format!("applying stopped: {e}")))?
    }

    async fn apply_now(
        &self,
        key: String,
        name: String,
        template: Template,
    ) -> Result<Applied, TemplateError> {
        let _busy = self.inner.busy.lock().await;
        let setup = &self.inner.setup;
        let plan = self.plan(&template, &name).await?;
        if !plan.conflicts.is_empty() {
            return Err(refused(format!(
                "this peer already has its own table(s) {}, which the template needs; rename or drop them first",
                plan.conflicts.join(", ")
            )));
        }
        let group = template.manifest.group_id(&name);
        let active = Active {
            key: key.clone(),
            name: name.clone(),
            title: template.manifest.name.clone(),
            version: template.manifest.version.clone(),
            tables: plan.create.clone(),
            group: group.clone(),
            generated: template.manifest.generated.clone(),
        };
        let record = serde_json::to_string(&active).unwrap_or_default();

        let paths = setup.paths.clone();
        let (site, lua) = (template.site.clone(), template.lua.clone());
        let staged = blocking(move || files::stage(&paths, &site, &lua))
            .await?
            .map_err(TemplateError::Refused)?;

        let created_group = match self
            .ensure_group(&template.manifest, group.as_deref())
            .await
        {
            Ok(created) => created,
            Err(error) => {
                blocking(move || staged.discard()).await?;
                return Err(error);
            }
        };
        let previous = setup.paths.previous.clone();
        let swapped = match blocking(move || staged.swap_in(&previous)).await? {
            Ok(swapped) => swapped,
            Err(error) => {
                self.undo_group(created_group).await;
                return Err(refused(error));
            }
        };
        let rows: usize = template.rows.iter().map(|(_, rows)| rows.len()).sum();
        let mut by_table: BTreeMap<String, Vec<_>> = template.rows.into_iter().collect();
        let create = template
            .tables
            .into_iter()
            .map(|t| {
                let rows = by_table.remove(&t.schema.name).unwrap_or_default();
                (t.schema, t.limits, rows)
            })
            .collect();
        let dropped: Vec<String> = plan.drop.iter().map(|(name, _)| name.clone()).collect();
        let result = setup
            .data
            .replace_tables(
                dropped.clone(),
                create,
                vec![(ACTIVE_KEY.to_owned(), Some(record))],
            )
            .await;
        if let Err(error) = result {
            blocking(move || swapped.undo()).await?;
            self.undo_group(created_group).await;
            return Err(data_failed(error));
        }
        blocking(move || swapped.keep()).await?;
        setup.site.set_generated(active.generated.clone());

        let lua_enabled = match setup.data.lua_engine() {
            Some(engine) => {
                engine.rescan();
                false
            }
            None if plan.enables_lua => {
                setup.data.enable_lua((setup.lua)());
                if let Err(error) = self.switch_lua_on().await {
                    tracing::warn!("Lua is on until the peer restarts: {error}");
                }
                true
            }
            None => false,
        };
        setup.announcement.send_modify(|announcement| {
            announcement.active_template = Some(name.clone());
        });
        if let Some(old) = &plan.closes
            && let Err(error) = setup.groups.close(old).await
        {
            tracing::warn!(group = %old, "the previous template's group stays: {error}");
        }
        tracing::info!(template = %key, rows, "template applied");
        Ok(Applied {
            active,
            dropped,
            rows,
            lua_enabled,
        })
    }

    /// Creates the template's group unless this peer hosts it already; whether it did.
    async fn ensure_group(
        &self,
        manifest: &Manifest,
        id: Option<&str>,
    ) -> Result<Option<String>, TemplateError> {
        let Some(id) = id else {
            return Ok(None);
        };
        let groups = &self.inner.setup.groups;
        if groups.hosted().await.iter().any(|g| g.meta.id == id) {
            return Ok(None);
        }
        let config = manifest.group_config.clone();
        let config = config.as_ref();
        groups
            .create(NewGroup {
                id: Some(id.to_owned()),
                name: manifest.name.clone(),
                app_type: id.to_owned(),
                context: serde_json::Value::Null,
                max_members: config.and_then(|c| c.max_members).unwrap_or(0),
                persistent: config.is_some_and(|c| c.persistent()),
                invite_only: config.is_some_and(|c| c.invite_only),
                roles: config.map(|c| c.roles.clone()).unwrap_or_default(),
                default_role: config
                    .and_then(|c| c.default_role.clone())
                    .or_else(|| manifest.default_role.clone()),
                history: config.map(|c| c.history).unwrap_or(0),
            })
            .await
            .map_err(|e| refused(format!("the template's group could not be created: {e}")))?;
        Ok(Some(id.to_owned()))
    }

    async fn undo_group(&self, created: Option<String>) {
        if let Some(id) = created
            && let Err(error) = self.inner.setup.groups.close(&id).await
        {
            tracing::warn!(group = %id, "the group of a template that was not applied stays: {error}");
        }
    }

    /// Records `lua.enabled = true` in goop.json, so the functions still run after a restart.
    async fn switch_lua_on(&self) -> Result<(), String> {
        let path = self.inner.setup.config_path.clone();
        blocking(move || {
            let mut config = crate::config::Config::load(&path)
                .map_err(|e| e.to_string())?
                .config;
            config.lua.enabled = true;
            config.save(&path).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// The site as one tar.gz archive: site files, Lua scripts, a manifest, every table's
    /// schema, and with `with_data` its rows.
    pub async fn export(&self, with_data: bool, label: &str) -> Result<Vec<u8>, TemplateError> {
        let setup = &self.inner.setup;
        let data = &setup.data;
        let active = self.active().await?;
        let manifest = match &active {
            Some(active) => match Source::parse(&active.key) {
                Ok(source) => match self.files(&source).await {
                    Ok(files) => files
                        .get("manifest.json")
                        .and_then(|bytes| Manifest::parse(bytes).ok()),
                    Err(_) => None,
                },
                Err(_) => None,
            },
            None => None,
        };
        // An imported site, or a template removed since: what the active record says.
        let mut manifest = manifest.unwrap_or_else(|| Manifest {
            name: active
                .as_ref()
                .map(|a| a.title.clone())
                .unwrap_or_else(|| format!("{label}'s site")),
            description: String::new(),
            version: active
                .as_ref()
                .map(|a| a.version.clone())
                .unwrap_or_else(|| "1.0.0".into()),
            icon: String::new(),
            category: String::new(),
            requires_groups: active.as_ref().is_some_and(|a| a.group.is_some()),
            group_config: active.as_ref().and_then(|a| a.group.clone()).map(|id| {
                manifest::GroupConfig {
                    id: Some(id),
                    kind: None,
                    min_members: None,
                    max_members: None,
                    roles: Vec::new(),
                    default_role: None,
                    invite_only: false,
                    history: 0,
                    msg_types: Vec::new(),
                }
            }),
            require_email: false,
            default_role: None,
            schemas: Vec::new(),
            generated: active
                .as_ref()
                .map(|a| a.generated.clone())
                .unwrap_or_default(),
            extra: Default::default(),
        });
        manifest.schemas.clear();
        let mut bundle: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let tables = data
            .tables(&crate::services::data::Caller::Owner)
            .await
            .map_err(data_failed)?;
        let mut rows_left = template::MAX_ROWS;
        for table in tables {
            let (schema, limits) = data.schema_of(&table.name).await.map_err(data_failed)?;
            let json = template::schema_json(&template::TemplateTable { schema, limits });
            bundle.insert(
                format!("schemas/{}.json", table.name),
                serde_json::to_vec_pretty(&json).unwrap_or_default(),
            );
            if with_data {
                let rows = data
                    .all_rows(&table.name, rows_left)
                    .await
                    .map_err(|e| match e {
                        DataError::BadRequest(_) => refused(format!(
                            "the tables hold more than the {} rows an archive may bring; export without them",
                            template::MAX_ROWS
                        )),
                        other => data_failed(other),
                    })?;
                rows_left -= rows.len();
                bundle.insert(
                    format!("data/{}.json", table.name),
                    serde_json::to_vec(&template::exported_rows(&rows)).unwrap_or_default(),
                );
            }
        }
        bundle.insert(
            "manifest.json".into(),
            serde_json::to_vec_pretty(&manifest).unwrap_or_default(),
        );
        let paths = setup.paths.clone();
        blocking(move || {
            let inside = paths
                .lua_dir
                .strip_prefix(&paths.site_root)
                .ok()
                .map(Path::to_path_buf);
            // What visitors never see (dotfiles: .git, .env) stays out of the archive too.
            let site = files::read_tree(&paths.site_root, inside.as_deref())?
                .into_iter()
                .filter(|(path, _)| !path.split('/').any(|part| part.starts_with('.')))
                .collect::<BTreeMap<_, _>>();
            let lua = files::read_tree(&paths.lua_dir, None)?;
            for (path, bytes) in site {
                if bundle.contains_key(&path)
                    || path.starts_with("schemas/")
                    || path.starts_with("data/")
                    || path.starts_with("lua/")
                    || path == "schema.sql"
                    || path == "seed.lua"
                    || path == template::PREVIEW
                {
                    return Err(refused(format!(
                        "the site file {path} has a name an archive keeps for itself; rename it to export the site"
                    )));
                }
                bundle.insert(path, bytes);
            }
            for (path, bytes) in lua {
                bundle.insert(format!("lua/{path}"), bytes);
            }
            store::pack_files(&bundle).map_err(TemplateError::Io)
        })
        .await?
    }

    /// Installs a template archive in `<dir>/templates/` under `name` (or its top folder or
    /// manifest name); the name used.
    pub async fn install_archive(
        &self,
        archive: Vec<u8>,
        name: Option<String>,
    ) -> Result<String, TemplateError> {
        let store = self.inner.store.clone();
        blocking(move || store.install(&archive, name.as_deref())).await?
    }

    /// Installs the template in folder `folder` of this machine.
    pub async fn install_folder(&self, folder: PathBuf) -> Result<String, TemplateError> {
        let files = blocking(move || {
            if !folder.is_dir() {
                return Err(refused(format!("{} is not a folder", folder.display())));
            }
            files::read_tree(&folder, None)
        })
        .await??;
        let archive = store::pack_files(&files)?;
        self.install_archive(archive, None).await
    }

    /// Removes an installed template.
    pub async fn uninstall(&self, name: String) -> Result<(), TemplateError> {
        let store = self.inner.store.clone();
        blocking(move || store.delete(&name)).await?
    }

    /// The hubs whose stores may be browsed.
    pub fn hubs(&self) -> &[url::Url] {
        &self.inner.setup.hubs
    }

    /// The templates a hub offers (their manifests, with `dir` their name in its store).
    pub async fn hub_templates(
        &self,
        hub: &url::Url,
    ) -> Result<Vec<serde_json::Value>, TemplateError> {
        let url = hub
            .join("/api/templates")
            .map_err(|e| refused(e.to_string()))?;
        let bytes = self.download(&url, 1024 * 1024).await?;
        let list: Vec<serde_json::Value> = serde_json::from_slice(&bytes).map_err(|e| {
            TemplateError::Unavailable(format!("{hub} answered no template list: {e}"))
        })?;
        Ok(list.into_iter().take(1000).collect())
    }

    /// Downloads template `name` from a hub's store and installs it; the name used.
    pub async fn install_from_hub(
        &self,
        hub: &url::Url,
        name: &str,
    ) -> Result<String, TemplateError> {
        if !store::valid_name(name) {
            return Err(TemplateError::BadName(name.to_owned()));
        }
        if !self.hubs().contains(hub) {
            return Err(refused(format!("{hub} is not a hub this peer uses")));
        }
        let url = hub
            .join(&format!("/api/templates/{name}/bundle"))
            .map_err(|e| refused(e.to_string()))?;
        let bytes = self.download(&url, store::MAX_UPLOAD_BYTES).await?;
        self.install_archive(bytes, Some(name.to_owned())).await
    }

    /// A GET of at most `max` bytes.
    async fn download(&self, url: &url::Url, max: usize) -> Result<Vec<u8>, TemplateError> {
        use futures_util::StreamExt;
        let unavailable = |e: reqwest::Error| TemplateError::Unavailable(format!("{url}: {e}"));
        let response = self
            .inner
            .http
            .get(url.clone())
            .send()
            .await
            .map_err(unavailable)?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Err(TemplateError::NotFound(url.path().to_owned()));
        }
        if !response.status().is_success() {
            return Err(TemplateError::Unavailable(format!(
                "{url} answered {}",
                response.status()
            )));
        }
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            body.extend_from_slice(&chunk.map_err(unavailable)?);
            if body.len() > max {
                return Err(refused(format!("{url} sent more than {max} bytes")));
            }
        }
        Ok(body)
    }
}
