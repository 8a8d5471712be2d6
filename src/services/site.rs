//! The peer's site on disk, as visitors may see it: which request paths map to which files.
//!
//! Refused: anything under `lua/` or the configured Lua script folder wherever it is (server-side
//! code), dotfiles and dot-directories, `..`, and symlinks that lead outside the site root; files
//! above [`MAX_FILE_BYTES`]. A directory maps to its `index.html`.
//!
//! A few paths may be made on request instead of read from disk (an app template's Atom feed):
//! the active template names them and the Lua function that makes each, and [`Site::generate`]
//! asks the peer's [`Generator`] for the page, as the visitor who asked.

use std::collections::BTreeMap;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};

use futures_util::future::BoxFuture;
use libp2p::PeerId;

/// Largest page made on request.
pub const MAX_GENERATED_BYTES: usize = 1024 * 1024;

/// Makes a page on request: `(visitor, function, path)` → the page's bytes. `None` as the visitor
/// is the owner.
pub type Generator = Arc<
    dyn Fn(Option<PeerId>, String, String) -> BoxFuture<'static, Result<Vec<u8>, String>>
        + Send
        + Sync,
>;

/// Largest file served.
pub const MAX_FILE_BYTES: u64 = 50 * 1024 * 1024;

/// Why a path is not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SiteError {
    #[error("forbidden")]
    Forbidden,
    #[error("not found")]
    NotFound,
    #[error("too large")]
    TooLarge,
}

/// A file that may be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteFile {
    pub path: PathBuf,
    pub size: u64,
    pub mime: String,
}

/// The site root of a peer. Clones share the pages made on request.
#[derive(Clone)]
pub struct Site {
    root: PathBuf,
    /// Folders never served, wherever they are (`lua.script_dir`).
    hidden: Vec<PathBuf>,
    /// Paths made on request, by the Lua function that makes each.
    generated: Arc<RwLock<BTreeMap<String, String>>>,
    generator: Arc<OnceLock<Generator>>,
}

impl std::fmt::Debug for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Site")
            .field("root", &self.root)
            .field("hidden", &self.hidden)
            .finish_non_exhaustive()
    }
}

impl Site {
    pub fn new(root: PathBuf) -> Self {
        Site {
            root,
            hidden: Vec::new(),
            generated: Arc::default(),
            generator: Arc::default(),
        }
    }

    /// Makes the pages named by [`Site::set_generated`] with `generator` (set once).
    pub fn with_generator(self, generator: Generator) -> Self {
        let _ = self.generator.set(generator);
        self
    }

    /// The paths (`feed.atom`) made on request and the function that makes each, replacing the
    /// ones before.
    pub fn set_generated(&self, paths: BTreeMap<String, String>) {
        *self.generated.write().unwrap_or_else(|e| e.into_inner()) = paths;
    }

    /// The page at `request_path` if it is made on request: `None` when it is not one; else its
    /// MIME type and bytes, or why there is none.
    pub async fn generate(
        &self,
        visitor: Option<PeerId>,
        request_path: &str,
    ) -> Option<Result<(String, Vec<u8>), SiteError>> {
        let path = request_path.split(['?', '#']).next().unwrap_or("");
        let path = percent_encoding::percent_decode_str(path)
            .decode_utf8()
            .ok()?
            .trim_start_matches('/')
            .to_owned();
        let function = self
            .generated
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&path)
            .cloned()?;
        let Some(generator) = self.generator.get() else {
            return Some(Err(SiteError::NotFound));
        };
        let mime = mime_guess::from_path(&path)
            .first_or_octet_stream()
            .essence_str()
            .to_owned();
        Some(
            match generator(visitor, function.clone(), path.clone()).await {
                Ok(body) if body.len() <= MAX_GENERATED_BYTES => Ok((mime, body)),
                Ok(_) => Err(SiteError::TooLarge),
                Err(error) => {
                    tracing::warn!(path = %path, function = %function, "a page made on request failed: {error}");
                    Err(SiteError::NotFound)
                }
            },
        )
    }

    /// The same site, never serving anything inside `folder`.
    pub fn hiding(mut self, folder: PathBuf) -> Self {
        self.hidden.push(folder);
        self
    }

    /// Maps a request path (`/`, `/css/app.css`, percent-encoded or not) to a file.
    pub fn resolve(&self, request_path: &str) -> Result<SiteFile, SiteError> {
        let path = request_path.split(['?', '#']).next().unwrap_or("");
        let decoded = percent_encoding::percent_decode_str(path)
            .decode_utf8()
            .map_err(|_| SiteError::NotFound)?;
        let mut relative = PathBuf::new();
        for (index, component) in Path::new(decoded.trim_start_matches('/'))
            .components()
            .enumerate()
        {
            match component {
                Component::Normal(part) => {
                    let part = part.to_string_lossy();
                    if part.starts_with('.') || (index == 0 && part == "lua") {
                        return Err(SiteError::Forbidden);
                    }
                    relative.push(part.as_ref());
                }
                Component::CurDir => {}
                _ => return Err(SiteError::Forbidden),
            }
        }
        let root = self.root.canonicalize().map_err(|_| SiteError::NotFound)?;
        let mut target = root.join(&relative);
        if target.is_dir() {
            target.push("index.html");
        }
        let real = target.canonicalize().map_err(not_found_or_forbidden)?;
        if !real.starts_with(&root) {
            return Err(SiteError::Forbidden);
        }
        // A link inside the site may not lead into lua/ or a dotfile either.
        let inside = real.strip_prefix(&root).map_err(|_| SiteError::Forbidden)?;
        for (index, component) in inside.components().enumerate() {
            let part = component.as_os_str().to_string_lossy();
            if part.starts_with('.') || (index == 0 && part == "lua") {
                return Err(SiteError::Forbidden);
            }
        }
        let hidden = self
            .hidden
            .iter()
            .filter_map(|folder| folder.canonicalize().ok())
            .any(|folder| real.starts_with(folder));
        if hidden {
            return Err(SiteError::Forbidden);
        }
        let meta = std::fs::metadata(&real).map_err(not_found_or_forbidden)?;
        if !meta.is_file() {
            return Err(SiteError::NotFound);
        }
        if meta.len() > MAX_FILE_BYTES {
            return Err(SiteError::TooLarge);
        }
        let mime = mime_guess::from_path(&real)
            .first_or_octet_stream()
            .essence_str()
            .to_owned();
        Ok(SiteFile {
            path: real,
            size: meta.len(),
            mime,
        })
    }
}

fn not_found_or_forbidden(error: io::Error) -> SiteError {
    match error.kind() {
        io::ErrorKind::PermissionDenied => SiteError::Forbidden,
        _ => SiteError::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_folder_elsewhere_in_the_site_is_never_served() {
        let dir = tempfile::tempdir().unwrap();
        let site = dir.path().join("site");
        std::fs::create_dir_all(site.join("code/functions")).unwrap();
        std::fs::write(site.join("code/functions/secret.lua"), "-- key").unwrap();
        std::fs::write(site.join("page.html"), "hi").unwrap();
        std::os::unix::fs::symlink(site.join("code"), site.join("alias")).unwrap();
        let plain = Site::new(site.clone());
        assert!(plain.resolve("/code/functions/secret.lua").is_ok());
        let hiding = Site::new(site.clone()).hiding(site.join("code"));
        for path in [
            "/code/functions/secret.lua",
            "/code/./functions/secret.lua",
            "/%63ode/functions/secret.lua",
            "/alias/functions/secret.lua",
        ] {
            assert_eq!(hiding.resolve(path), Err(SiteError::Forbidden), "{path}");
        }
        assert!(hiding.resolve("/page.html").is_ok());
    }
}
