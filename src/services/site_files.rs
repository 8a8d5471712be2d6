//! The owner's editor of the site on disk: list, read, write, create, rename and delete files and
//! folders under the site root, with ETags so two editors cannot overwrite each other silently.
//!
//! Paths are relative, `/`-separated, made of plain names only (no `..`, no absolute paths, no
//! NUL), and never pass through a symbolic link, so nothing outside the site root can be read or
//! changed. Writes are atomic (temporary sibling, fsync, rename) and every check-then-change runs
//! under one lock, so a compare-and-swap on the ETag cannot race another save.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::services::site::MAX_FILE_BYTES;

/// Longest relative path accepted.
const MAX_PATH_BYTES: usize = 1024;
/// Entries listed at most; a larger tree is cut off (and says so).
pub const MAX_LISTED: usize = 10_000;
/// Folders deeper than this are not listed.
const MAX_DEPTH: usize = 32;

/// Why an edit was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("{0}")]
    BadPath(String),
    #[error("{0} does not exist")]
    NotFound(String),
    #[error("{0} already exists")]
    Exists(String),
    /// The file is not what the editor last saw.
    #[error("{path} changed since it was opened")]
    Conflict {
        path: String,
        /// The ETag it has now, `None` when it was deleted meanwhile.
        current: Option<String>,
    },
    #[error("{0} is larger than the 50 MB a site file may have")]
    TooLarge(String),
    #[error("{0} is a folder that is not empty; confirm to delete it with its contents")]
    NotEmpty(String),
    #[error("{0}")]
    Io(String),
}

/// What a write expects to find.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Nothing: a new file.
    Absent,
    /// The file with this ETag.
    Etag(String),
}

/// One entry of the tree.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    /// Relative, `/`-separated.
    pub path: String,
    pub dir: bool,
    /// Bytes (0 for folders).
    pub size: u64,
    /// A symbolic link: listed, never followed or edited.
    pub link: bool,
}

/// A file's contents and ETag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileContent {
    pub bytes: Vec<u8>,
    pub etag: String,
    pub mime: String,
}

/// The site root, for its owner. Cloning is cheap; clones share the lock.
#[derive(Debug, Clone)]
pub struct SiteFiles {
    root: PathBuf,
    lock: Arc<Mutex<()>>,
}

/// The ETag of `bytes`: a short SHA-256, hex.
pub fn etag_of(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..12])
}

impl SiteFiles {
    pub fn new(root: PathBuf) -> Self {
        SiteFiles {
            root,
            lock: Arc::new(Mutex::new(())),
        }
    }

    /// Every file and folder, depth first, sorted by path; `true` when the list was cut off.
    pub fn list(&self) -> Result<(Vec<Entry>, bool), EditError> {
        let mut entries = Vec::new();
        let truncated = walk(&self.root, "", 0, &mut entries).map_err(io_error)?;
        Ok((entries, truncated))
    }

    /// Reads a file.
    pub fn read(&self, path: &str) -> Result<FileContent, EditError> {
        let (full, clean) = self.checked(path)?;
        let meta = fs::symlink_metadata(&full).map_err(|_| EditError::NotFound(clean.clone()))?;
        if !meta.is_file() {
            return Err(EditError::BadPath(format!("{clean} is not a file")));
        }
        if meta.len() > MAX_FILE_BYTES {
            return Err(EditError::TooLarge(clean));
        }
        let bytes = fs::read(&full).map_err(io_error)?;
        Ok(FileContent {
            etag: etag_of(&bytes),
            mime: mime_guess::from_path(&full)
                .first_or_octet_stream()
                .essence_str()
                .to_owned(),
            bytes,
        })
    }

    /// Writes a file if it is as `expect` says; returns the new ETag.
    pub fn write(&self, path: &str, bytes: &[u8], expect: &Expect) -> Result<String, EditError> {
        let (full, clean) = self.checked(path)?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(EditError::TooLarge(clean));
        }
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let parent = full.parent().unwrap_or(&self.root);
        if !parent.is_dir() {
            return Err(EditError::NotFound(parent_of(&clean)));
        }
        let current = current_etag(&full, &clean)?;
        match (expect, current) {
            (Expect::Absent, Some(_)) => return Err(EditError::Exists(clean)),
            (Expect::Etag(_), None) => {
                return Err(EditError::Conflict {
                    path: clean,
                    current: None,
                });
            }
            (Expect::Etag(wanted), Some(now)) if *wanted != now => {
                return Err(EditError::Conflict {
                    path: clean,
                    current: Some(now),
                });
            }
            _ => {}
        }
        crate::config::write_atomically_with_mode(&full, bytes, 0o644).map_err(io_error)?;
        Ok(etag_of(bytes))
    }

    /// Creates a folder (its parent must exist).
    pub fn create_dir(&self, path: &str) -> Result<(), EditError> {
        let (full, clean) = self.checked(path)?;
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if fs::symlink_metadata(&full).is_ok() {
            return Err(EditError::Exists(clean));
        }
        if !full.parent().unwrap_or(&self.root).is_dir() {
            return Err(EditError::NotFound(parent_of(&clean)));
        }
        fs::create_dir(&full).map_err(io_error)
    }

    /// Renames or moves a file or folder; the target must not exist.
    pub fn rename(&self, from: &str, to: &str) -> Result<(), EditError> {
        let (from_full, from_clean) = self.checked(from)?;
        let (to_full, to_clean) = self.checked(to)?;
        if to_full.starts_with(&from_full) {
            return Err(EditError::BadPath(format!(
                "{from_clean} cannot move into itself"
            )));
        }
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if fs::symlink_metadata(&from_full).is_err() {
            return Err(EditError::NotFound(from_clean));
        }
        if fs::symlink_metadata(&to_full).is_ok() {
            return Err(EditError::Exists(to_clean));
        }
        if !to_full.parent().unwrap_or(&self.root).is_dir() {
            return Err(EditError::NotFound(parent_of(&to_clean)));
        }
        fs::rename(&from_full, &to_full).map_err(io_error)
    }

    /// Deletes a file (if its ETag is `expect`, when given) or a folder (with its contents only
    /// when `recursive`).
    pub fn delete(
        &self,
        path: &str,
        expect: Option<&str>,
        recursive: bool,
    ) -> Result<(), EditError> {
        let (full, clean) = self.checked(path)?;
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let meta = fs::symlink_metadata(&full).map_err(|_| EditError::NotFound(clean.clone()))?;
        if meta.is_dir() {
            let empty = fs::read_dir(&full).map_err(io_error)?.next().is_none();
            if !empty && !recursive {
                return Err(EditError::NotEmpty(clean));
            }
            return fs::remove_dir_all(&full).map_err(io_error);
        }
        if let Some(wanted) = expect {
            let now = current_etag(&full, &clean)?;
            if now.as_deref() != Some(wanted) {
                return Err(EditError::Conflict {
                    path: clean,
                    current: now,
                });
            }
        }
        fs::remove_file(&full).map_err(io_error)
    }

    /// The full path of a relative one, after every check, and its clean spelling.
    fn checked(&self, path: &str) -> Result<(PathBuf, String), EditError> {
        let trimmed = path.trim_matches('/');
        if trimmed.is_empty() {
            return Err(EditError::BadPath("the path is empty".into()));
        }
        if trimmed.len() > MAX_PATH_BYTES {
            return Err(EditError::BadPath(format!(
                "the path is longer than {MAX_PATH_BYTES} bytes"
            )));
        }
        if trimmed.contains(['\0', '\\']) {
            return Err(EditError::BadPath(
                "the path may not contain NUL or backslashes".into(),
            ));
        }
        let mut full = self.root.clone();
        let mut parts = Vec::new();
        for component in Path::new(trimmed).components() {
            match component {
                Component::Normal(part) => {
                    let part = part.to_str().unwrap_or_default();
                    if part.len() > 255 {
                        return Err(EditError::BadPath("a name is longer than 255 bytes".into()));
                    }
                    full.push(part);
                    parts.push(part);
                    // Nothing on the way may be a link: it could lead anywhere.
                    if fs::symlink_metadata(&full).is_ok_and(|m| m.file_type().is_symlink()) {
                        return Err(EditError::BadPath(format!(
                            "{} is a symbolic link, which the editor does not follow",
                            parts.join("/")
                        )));
                    }
                }
                Component::CurDir => {}
                _ => {
                    return Err(EditError::BadPath(format!(
                        "{trimmed}: only plain names are allowed (no `..`)"
                    )));
                }
            }
        }
        if parts.is_empty() {
            return Err(EditError::BadPath("the path is empty".into()));
        }
        Ok((full, parts.join("/")))
    }
}

fn parent_of(clean: &str) -> String {
    match clean.rsplit_once('/') {
        Some((parent, _)) => format!("folder {parent}"),
        None => "the site folder".into(),
    }
}

/// The ETag of the file at `full` now, `None` if there is none.
fn current_etag(full: &Path, clean: &str) -> Result<Option<String>, EditError> {
    match fs::symlink_metadata(full) {
        Ok(meta) if meta.is_file() => {
            let bytes = fs::read(full).map_err(io_error)?;
            Ok(Some(etag_of(&bytes)))
        }
        Ok(_) => Err(EditError::BadPath(format!("{clean} is a folder"))),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(io_error(err)),
    }
}

fn io_error(err: io::Error) -> EditError {
    EditError::Io(err.to_string())
}

/// Appends the entries under `dir` (shown as `prefix`); true when the limit cut the walk short.
fn walk(dir: &Path, prefix: &str, depth: usize, out: &mut Vec<Entry>) -> io::Result<bool> {
    if depth > MAX_DEPTH {
        return Ok(false);
    }
    let mut children: Vec<(String, fs::Metadata)> = Vec::new();
    for child in fs::read_dir(dir)? {
        let child = child?;
        let name = child.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tmp") && name.starts_with('.') {
            // A write in progress.
            continue;
        }
        children.push((name, child.metadata()?));
    }
    children.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, meta) in children {
        if out.len() >= MAX_LISTED {
            return Ok(true);
        }
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let link = meta.file_type().is_symlink();
        let is_dir = meta.is_dir();
        out.push(Entry {
            path: path.clone(),
            dir: is_dir,
            size: if is_dir { 0 } else { meta.len() },
            link,
        });
        if is_dir && !link && walk(&dir.join(&name), &path, depth + 1, out)? {
            return Ok(true);
        }
    }
    Ok(false)
}
