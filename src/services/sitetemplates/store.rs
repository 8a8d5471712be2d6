//! A store of templates: on a hub, the site templates (HTML, JS, schemas, `manifest.json`) that
//! peers list and download as tar.gz bundles and that the operator uploads and deletes; on a
//! peer, the templates its owner installed. Both keep one folder per template.
//!
//! Every bundle that comes in is checked before anything touches the store: only regular files
//! and directories, relative paths without `..`, bounded counts and sizes, a JSON manifest. A
//! directory that is broken on disk is skipped in listings with a log line.
//!
//! With a PostgreSQL peer database the templates live in it instead ([`Templates::Database`]):
//! instances on several hosts share no directory. An upload is checked the same way, then kept
//! as one normalised bundle.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::store::hub::{HubStore, StoreError, StoredTemplate};

/// Largest upload (compressed).
pub const MAX_UPLOAD_BYTES: usize = 16 * 1024 * 1024;
/// Largest template, unpacked.
pub const MAX_UNPACKED_BYTES: u64 = 64 * 1024 * 1024;
/// Most files and directories in one template.
pub const MAX_ENTRIES: usize = 2000;
/// Largest file in a template.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Why a template operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("no template named {0:?}")]
    NotFound(String),
    #[error(
        "{0:?} is not a valid template name: use 1 to 64 lowercase letters, digits, '-' or '_', starting with a letter or digit"
    )]
    BadName(String),
    #[error("the bundle was refused: {0}")]
    Refused(String),
    #[error("the template store failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the template store is unavailable: {0}")]
    Unavailable(String),
}

impl From<StoreError> for TemplateError {
    fn from(error: StoreError) -> Self {
        TemplateError::Unavailable(error.to_string())
    }
}

/// Where the hub keeps its templates.
#[derive(Clone)]
pub enum Templates {
    /// `presence.templates_dir`.
    Directory(Arc<TemplateStore>),
    /// The shared PostgreSQL database.
    Database(HubStore),
}

impl Templates {
    /// Every readable template's manifest with its store name added as `dir`, by name.
    pub async fn list(&self) -> Result<Vec<Value>, TemplateError> {
        match self {
            Templates::Directory(store) => {
                let store = store.clone();
                blocking(move || Ok(store.list())).await
            }
            Templates::Database(db) => Ok(db
                .template_manifests()
                .await?
                .into_iter()
                .filter_map(|(name, text)| match parse_manifest(text.as_bytes()) {
                    Ok(mut manifest) => {
                        manifest.insert("dir".into(), Value::String(name));
                        Some(Value::Object(manifest))
                    }
                    Err(err) => {
                        tracing::warn!(template = %name, "skipping a broken template: {err}");
                        None
                    }
                })
                .collect()),
        }
    }

    /// The manifest of one template as stored.
    pub async fn manifest(&self, name: &str) -> Result<Map<String, Value>, TemplateError> {
        check_name(name)?;
        match self {
            Templates::Directory(store) => {
                let (store, name) = (store.clone(), name.to_owned());
                blocking(move || store.manifest(&name)).await
            }
            Templates::Database(db) => match db.template_manifest(name).await? {
                Some(text) => parse_manifest(text.as_bytes()),
                None => Err(TemplateError::NotFound(name.to_owned())),
            },
        }
    }

    /// The template as a tar.gz bundle.
    pub async fn bundle(&self, name: &str) -> Result<Bundle, TemplateError> {
        check_name(name)?;
        match self {
            Templates::Directory(store) => {
                let (store, name) = (store.clone(), name.to_owned());
                blocking(move || store.bundle(&name)).await
            }
            Templates::Database(db) => match db.template(name).await? {
                Some(stored) => Ok(Bundle {
                    bytes: Bytes::from(stored.bundle),
                    etag: stored.etag,
                }),
                None => Err(TemplateError::NotFound(name.to_owned())),
            },
        }
    }

    /// Checks an upload and installs it (see [`TemplateStore::install`]); returns the name.
    /// Acknowledged once durable: synced to disk, or committed.
    pub async fn install(
        &self,
        upload: Bytes,
        name: Option<String>,
    ) -> Result<String, TemplateError> {
        match self {
            Templates::Directory(store) => {
                let store = store.clone();
                blocking(move || store.install(&upload, name.as_deref())).await
            }
            Templates::Database(db) => {
                let stored = blocking(move || {
                    let (name, files) = check_upload(&upload, name.as_deref())?;
                    pack(name, files)
                })
                .await?;
                db.put_template(&stored, crate::services::hub::unix_ms())
                    .await?;
                tracing::info!(template = %stored.name, "template installed");
                Ok(stored.name)
            }
        }
    }

    /// Removes a template.
    pub async fn delete(&self, name: &str) -> Result<(), TemplateError> {
        check_name(name)?;
        match self {
            Templates::Directory(store) => {
                let (store, name) = (store.clone(), name.to_owned());
                blocking(move || store.delete(&name)).await
            }
            Templates::Database(db) => {
                if !db.delete_template(name).await? {
                    return Err(TemplateError::NotFound(name.to_owned()));
                }
                tracing::info!(template = %name, "template deleted");
                Ok(())
            }
        }
    }
}

/// Runs file I/O or compression off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, TemplateError> + Send + 'static,
) -> Result<T, TemplateError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| TemplateError::Unavailable(e.to_string()))?
}

/// A checked upload as one bundle: its files in name order, plain modes, no times, so the same
/// template always packs to the same bytes.
fn pack(name: String, files: Vec<(PathBuf, Vec<u8>)>) -> Result<StoredTemplate, TemplateError> {
    let files = by_path(&files);
    let manifest = files
        .get("manifest.json")
        .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
        .unwrap_or_default();
    let bundle = pack_files(&files)?;
    Ok(StoredTemplate {
        name,
        manifest,
        etag: etag_of(&bundle),
        bundle,
    })
}

fn refused(message: impl Into<String>) -> TemplateError {
    TemplateError::Refused(message.into())
}

/// A bundle ready to serve.
#[derive(Clone)]
pub struct Bundle {
    pub bytes: Bytes,
    /// Quoted strong ETag.
    pub etag: String,
}

/// The templates under one directory. Bundles are built on demand and cached until the files
/// change.
pub struct TemplateStore {
    dir: PathBuf,
    cache: Mutex<HashMap<String, (u64, Bundle)>>,
}

impl TemplateStore {
    pub fn new(dir: PathBuf) -> Self {
        TemplateStore {
            dir,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every readable template's manifest with its store name added as `dir`, by name.
    pub fn list(&self) -> Vec<Value> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| valid_name(name))
            .collect();
        names.sort();
        names
            .into_iter()
            .filter_map(|name| match self.read_manifest(&name) {
                Ok(mut manifest) => {
                    manifest.insert("dir".into(), Value::String(name));
                    Some(Value::Object(manifest))
                }
                Err(err) => {
                    tracing::warn!(template = %name, "skipping a broken template: {err}");
                    None
                }
            })
            .collect()
    }

    /// The manifest of one template as stored.
    pub fn manifest(&self, name: &str) -> Result<Map<String, Value>, TemplateError> {
        check_name(name)?;
        self.read_manifest(name)
    }

    fn read_manifest(&self, name: &str) -> Result<Map<String, Value>, TemplateError> {
        let path = self.dir.join(name).join("manifest.json");
        let file = match fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(TemplateError::NotFound(name.to_owned()));
            }
            Err(e) => return Err(e.into()),
        };
        let mut text = Vec::new();
        file.take(super::manifest::MAX_MANIFEST_BYTES as u64 + 1)
            .read_to_end(&mut text)?;
        parse_manifest(&text)
    }

    /// The template as a tar.gz bundle. Runs file I/O and compression: call it from a blocking
    /// context.
    pub fn bundle(&self, name: &str) -> Result<Bundle, TemplateError> {
        check_name(name)?;
        let root = self.dir.join(name);
        if !root.join("manifest.json").is_file() {
            return Err(TemplateError::NotFound(name.to_owned()));
        }
        let files = collect_files(&root, None, Links::Skip)?;
        let fingerprint = fingerprint(&files);
        if let Some((seen, bundle)) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            && *seen == fingerprint
        {
            return Ok(bundle.clone());
        }
        let mut archive = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
        for file in &files {
            let mut header = tar::Header::new_gnu();
            header.set_size(file.len);
            header.set_mode(0o644);
            header.set_mtime(file.mtime);
            header.set_entry_type(tar::EntryType::Regular);
            archive.append_data(&mut header, &file.relative, fs::File::open(&file.absolute)?)?;
        }
        let bytes = Bytes::from(archive.into_inner()?.finish()?);
        let etag = etag_of(&bytes);
        let bundle = Bundle { bytes, etag };
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), (fingerprint, bundle.clone()));
        Ok(bundle)
    }

    /// Checks an uploaded tar.gz and installs it as `name` (or the bundle's top directory, or
    /// its manifest's name), replacing a template of that name. Returns the name used.
    pub fn install(&self, upload: &[u8], name: Option<&str>) -> Result<String, TemplateError> {
        let (name, files) = check_upload(upload, name)?;

        fs::create_dir_all(&self.dir)?;
        let staging = self
            .dir
            .join(format!(".upload-{}", crate::services::auth::random_token()));
        let result = (|| -> std::io::Result<()> {
            for (path, bytes) in &files {
                let target = staging.join(path);
                if let Some(parent) = target.parent() {
                    fs::create_dir_all(parent)?;
                }
                let mut file = fs::File::create(&target)?;
                file.write_all(bytes)?;
                file.sync_all()?;
            }
            // An upload is acknowledged only once it would survive a crash: the files above,
            // the directories that name them, and (below) the rename into place.
            sync_directories(&staging)?;
            let target = self.dir.join(&name);
            let old = self
                .dir
                .join(format!(".old-{}", crate::services::auth::random_token()));
            let replaced = target.exists();
            if replaced {
                fs::rename(&target, &old)?;
            }
            fs::rename(&staging, &target)?;
            fs::File::open(&self.dir)?.sync_all()?;
            if replaced {
                fs::remove_dir_all(&old)?;
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_dir_all(&staging);
        }
        result?;
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&name);
        tracing::info!(template = %name, files = files.len(), "template installed");
        Ok(name)
    }

    /// Removes a template.
    pub fn delete(&self, name: &str) -> Result<(), TemplateError> {
        check_name(name)?;
        let path = self.dir.join(name);
        if !path.is_dir() {
            return Err(TemplateError::NotFound(name.to_owned()));
        }
        // Out of the listing at once and for good, then removed at leisure.
        let doomed = self
            .dir
            .join(format!(".old-{}", crate::services::auth::random_token()));
        fs::rename(&path, &doomed)?;
        fs::File::open(&self.dir)?.sync_all()?;
        fs::remove_dir_all(&doomed)?;
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        tracing::info!(template = %name, "template deleted");
        Ok(())
    }
}

/// Checks an upload: its size, its entries, its manifest and the name it goes under (`name`, or
/// the bundle's top directory, or its manifest's name). Returns the name and the files.
#[allow(clippy::type_complexity)]
fn check_upload(
    upload: &[u8],
    name: Option<&str>,
) -> Result<(String, Vec<(PathBuf, Vec<u8>)>), TemplateError> {
    if upload.len() > MAX_UPLOAD_BYTES {
        return Err(refused(format!(
            "it is larger than {} MiB",
            MAX_UPLOAD_BYTES / (1024 * 1024)
        )));
    }
    let (files, top) = read_bundle(upload)?;
    let manifest_bytes = files
        .iter()
        .find(|(path, _)| path == Path::new("manifest.json"))
        .map(|(_, bytes)| bytes.as_slice())
        .ok_or_else(|| refused("it has no manifest.json at its root"))?;
    let manifest = parse_manifest(manifest_bytes)?;
    let name = match name.filter(|n| !n.is_empty()) {
        Some(name) => name.to_owned(),
        None => top.unwrap_or_else(|| slug(manifest["name"].as_str().unwrap_or_default())),
    };
    check_name(&name)?;
    super::template::Template::from_files(by_path(&files)).map_err(refused)?;
    Ok((name, files))
}

/// Syncs `root` and every directory under it, so the entries written in them are durable.
fn sync_directories(root: &Path) -> std::io::Result<()> {
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                pending.push(entry.path());
            }
        }
        fs::File::open(&dir)?.sync_all()?;
    }
    Ok(())
}

/// 1 to 64 lowercase letters, digits, `-` or `_`, starting with a letter or digit.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn check_name(name: &str) -> Result<(), TemplateError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(TemplateError::BadName(name.to_owned()))
    }
}

/// A store name made of a manifest's name.
pub fn slug(text: &str) -> String {
    let mut slug = String::new();
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    slug.trim_end_matches('-').chars().take(64).collect()
}

/// A manifest checked as peers check it ([`super::manifest::Manifest::parse`]), kept as the
/// JSON object it is (listings show every key).
fn parse_manifest(bytes: &[u8]) -> Result<Map<String, Value>, TemplateError> {
    super::manifest::Manifest::parse(bytes).map_err(refused)?;
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(manifest)) => Ok(manifest),
        _ => Err(refused("manifest.json must be a JSON object")),
    }
}

/// Unpacks a tar.gz archive into memory, refusing anything unsafe (see [`read_bundle`]), by
/// `/`-separated path.
pub fn read_archive(upload: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, TemplateError> {
    if upload.len() > MAX_UPLOAD_BYTES {
        return Err(refused(format!(
            "it is larger than {} MiB",
            MAX_UPLOAD_BYTES / (1024 * 1024)
        )));
    }
    let (files, _) = read_bundle(upload)?;
    Ok(by_path(&files))
}

fn by_path(files: &[(PathBuf, Vec<u8>)]) -> BTreeMap<String, Vec<u8>> {
    files
        .iter()
        .map(|(path, bytes)| {
            let key = path
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            (key, bytes.clone())
        })
        .collect()
}

/// Files as a tar.gz archive (sorted, regular files, mode 0644, no times).
pub fn pack_files(files: &BTreeMap<String, Vec<u8>>) -> std::io::Result<Vec<u8>> {
    let mut archive = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    for (path, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        archive.append_data(&mut header, path, bytes.as_slice())?;
    }
    archive.into_inner()?.finish()
}

/// Unpacks an upload into memory, refusing anything unsafe. Returns the files (relative paths)
/// and, when every entry sat under one top directory, that directory's name (stripped).
#[allow(clippy::type_complexity)]
fn read_bundle(upload: &[u8]) -> Result<(Vec<(PathBuf, Vec<u8>)>, Option<String>), TemplateError> {
    let mut archive = tar::Archive::new(GzDecoder::new(upload));
    let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    let mut total: u64 = 0;
    let entries = archive
        .entries()
        .map_err(|e| refused(format!("it is not a tar.gz archive: {e}")))?;
    for (index, entry) in entries.enumerate() {
        if index >= MAX_ENTRIES {
            return Err(refused(format!("it has more than {MAX_ENTRIES} entries")));
        }
        let mut entry =
            entry.map_err(|e| refused(format!("it is not a valid tar.gz archive: {e}")))?;
        let path = entry
            .path()
            .map_err(|e| refused(format!("an entry has an unreadable path: {e}")))?
            .into_owned();
        let shown = path.display().to_string();
        if path.is_absolute() {
            return Err(refused(format!("entry {shown:?} has an absolute path")));
        }
        for component in path.components() {
            match component {
                Component::Normal(_) | Component::CurDir => {}
                Component::ParentDir => {
                    return Err(refused(format!(
                        "entry {shown:?} leaves the template with '..'"
                    )));
                }
                _ => return Err(refused(format!("entry {shown:?} has an absolute path"))),
            }
        }
        match entry.header().entry_type() {
            tar::EntryType::Directory => continue,
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            tar::EntryType::Symlink | tar::EntryType::Link => {
                return Err(refused(format!(
                    "entry {shown:?} is a link; only files and directories are allowed"
                )));
            }
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => continue,
            other => {
                return Err(refused(format!(
                    "entry {shown:?} is a {other:?}; only files and directories are allowed"
                )));
            }
        }
        let size = entry.header().size().unwrap_or(u64::MAX);
        if size > MAX_FILE_BYTES {
            return Err(refused(format!(
                "entry {shown:?} is larger than {} MiB",
                MAX_FILE_BYTES / (1024 * 1024)
            )));
        }
        total = total.saturating_add(size);
        if total > MAX_UNPACKED_BYTES {
            return Err(refused(format!(
                "it unpacks to more than {} MiB",
                MAX_UNPACKED_BYTES / (1024 * 1024)
            )));
        }
        let mut bytes = Vec::with_capacity(size.min(1 << 20) as usize);
        (&mut entry)
            .take(size)
            .read_to_end(&mut bytes)
            .map_err(|e| refused(format!("entry {shown:?} could not be read: {e}")))?;
        let clean: PathBuf = path
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .collect();
        if clean.as_os_str().is_empty() {
            continue;
        }
        files.push((clean, bytes));
    }
    if files.is_empty() {
        return Err(refused("it contains no files"));
    }
    if files.iter().any(|(p, _)| p == Path::new("manifest.json")) {
        return Ok((files, None));
    }
    // `tar czf bundle.tgz corkboard/` puts everything under one directory: strip it.
    let first_component = |p: &Path| p.components().next().map(|c| c.as_os_str().to_owned());
    let top = first_component(&files[0].0);
    let single_top = files
        .iter()
        .all(|(p, _)| p.components().count() > 1 && first_component(p) == top);
    if let (true, Some(top)) = (single_top, top) {
        let stripped = files
            .into_iter()
            .map(|(p, b)| (p.strip_prefix(&top).map(Path::to_path_buf).unwrap_or(p), b))
            .collect();
        return Ok((stripped, top.into_string().ok()));
    }
    Ok((files, None))
}

/// A regular file of a folder being read.
pub(super) struct FileEntry {
    pub relative: PathBuf,
    pub absolute: PathBuf,
    pub len: u64,
    mtime: u64,
    mtime_nanos: u128,
}

/// What reading a folder does with a symbolic link in it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Links {
    /// Leaves it out.
    Skip,
    /// Refuses the folder, naming the link.
    Refuse,
}

/// Regular files under `root` (but not `skip`, a path inside it), sorted, within the bundle
/// caps, never following links.
pub(super) fn collect_files(
    root: &Path,
    skip: Option<&Path>,
    links: Links,
) -> Result<Vec<FileEntry>, TemplateError> {
    let mut files = Vec::new();
    let mut pending = vec![PathBuf::new()];
    let mut total = 0u64;
    while let Some(relative_dir) = pending.pop() {
        for entry in fs::read_dir(root.join(&relative_dir))? {
            let entry = entry?;
            let kind = entry.file_type()?;
            let relative = relative_dir.join(entry.file_name());
            if skip.is_some_and(|skip| relative == skip) {
                continue;
            }
            if kind.is_symlink() && links == Links::Refuse {
                return Err(refused(format!(
                    "{} is a link; only files and folders can be read",
                    relative.display()
                )));
            } else if kind.is_dir() {
                pending.push(relative);
            } else if kind.is_file() {
                let meta = entry.metadata()?;
                let since_epoch = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .unwrap_or_default();
                total += meta.len();
                if total > MAX_UNPACKED_BYTES || files.len() >= MAX_ENTRIES {
                    return Err(refused(format!(
                        "{} holds more than a bundle may ({} MiB, {MAX_ENTRIES} files)",
                        root.display(),
                        MAX_UNPACKED_BYTES / (1024 * 1024)
                    )));
                }
                files.push(FileEntry {
                    absolute: entry.path(),
                    relative,
                    len: meta.len(),
                    mtime: since_epoch.as_secs(),
                    mtime_nanos: since_epoch.as_nanos(),
                });
            }
        }
    }
    files.sort_by(|a, b| a.relative.cmp(&b.relative));
    Ok(files)
}

fn fingerprint(files: &[FileEntry]) -> u64 {
    let mut hasher = Sha256::new();
    for file in files {
        hasher.update(file.relative.to_string_lossy().as_bytes());
        hasher.update(file.len.to_le_bytes());
        hasher.update(file.mtime_nanos.to_le_bytes());
    }
    let digest = hasher.finalize();
    u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// A bundle's ETag: the first 16 bytes of its SHA-256, in hex, quoted.
fn etag_of(bundle: &[u8]) -> String {
    format!("\"{}\"", hex::encode(&Sha256::digest(bundle)[..16]))
}
