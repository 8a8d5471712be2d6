//! The site on disk while a template is applied: the new files are written beside the site
//! first, then swapped in with renames, and swapped back if the database refuses the
//! template's tables; the previous site is kept in `site-previous/`. Also the walk of the site
//! an export reads.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::store::{Links, TemplateError, collect_files};

/// Where the site and the Lua scripts are.
#[derive(Debug, Clone)]
pub struct SitePaths {
    pub site_root: PathBuf,
    pub lua_dir: PathBuf,
    /// Where the site replaced last is kept.
    pub previous: PathBuf,
}

impl SitePaths {
    /// The Lua folder's path inside the site root, when it is inside it.
    fn lua_inside(&self) -> Option<PathBuf> {
        self.lua_dir
            .strip_prefix(&self.site_root)
            .ok()
            .filter(|inside| !inside.as_os_str().is_empty())
            .map(Path::to_path_buf)
    }
}

/// New files written beside the ones they replace.
pub struct Staged {
    /// (staged folder, the folder it replaces)
    swaps: Vec<(PathBuf, PathBuf)>,
}

/// Files swapped in; what they replaced is kept until [`Swapped::keep`] or [`Swapped::undo`].
pub struct Swapped {
    /// (the folder now in place, what it replaced if anything)
    swaps: Vec<(PathBuf, Option<PathBuf>)>,
    previous: PathBuf,
}

fn sibling(path: &Path, tag: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(
        ".{name}-{tag}-{}",
        crate::services::auth::random_token()
    ))
}

fn write_tree(root: &Path, files: &BTreeMap<String, Vec<u8>>) -> std::io::Result<()> {
    fs::create_dir_all(root)?;
    for (path, bytes) in files {
        let target = root.join(path);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)?;
        }
        let mut file = fs::File::create(&target)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    Ok(())
}

/// Writes the template's site and Lua files beside the site. A site file where the Lua scripts
/// live is refused.
pub fn stage(
    paths: &SitePaths,
    site: &BTreeMap<String, Vec<u8>>,
    lua: &BTreeMap<String, Vec<u8>>,
) -> Result<Staged, String> {
    let mut site = site.clone();
    let mut swaps = Vec::new();
    let result = (|| -> Result<(), String> {
        let io = |e: std::io::Error| format!("the new site could not be written: {e}");
        match paths.lua_inside() {
            Some(inside) => {
                let prefix = format!("{}/", inside.to_string_lossy());
                if let Some(path) = site.keys().find(|p| p.starts_with(&prefix)) {
                    return Err(format!(
                        "the site file {path} sits where this peer keeps its Lua scripts ({prefix}); lua.script_dir must be moved first"
                    ));
                }
                for (path, bytes) in lua {
                    site.insert(format!("{prefix}{path}"), bytes.clone());
                }
                let staged = sibling(&paths.site_root, "new");
                swaps.push((staged.clone(), paths.site_root.clone()));
                write_tree(&staged, &site).map_err(io)?;
            }
            None => {
                let staged = sibling(&paths.site_root, "new");
                swaps.push((staged.clone(), paths.site_root.clone()));
                write_tree(&staged, &site).map_err(io)?;
                let staged = sibling(&paths.lua_dir, "new");
                swaps.push((staged.clone(), paths.lua_dir.clone()));
                write_tree(&staged, lua).map_err(io)?;
            }
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(Staged { swaps }),
        Err(error) => {
            for (staged, _) in &swaps {
                let _ = fs::remove_dir_all(staged);
            }
            Err(error)
        }
    }
}

impl Staged {
    /// Puts the staged folders in place, keeping what they replace beside them.
    pub fn swap_in(self, previous: &Path) -> Result<Swapped, String> {
        let mut done: Vec<(PathBuf, Option<PathBuf>)> = Vec::new();
        let mut failure = None;
        for (staged, target) in &self.swaps {
            let old = target.exists().then(|| sibling(target, "old"));
            if let Some(old) = &old
                && let Err(e) = fs::rename(target, old)
            {
                failure = Some(format!(
                    "{} could not be moved aside: {e}",
                    target.display()
                ));
                break;
            }
            if let Err(e) = fs::rename(staged, target) {
                if let Some(old) = &old {
                    let _ = fs::rename(old, target);
                }
                failure = Some(format!("the new site could not be put in place: {e}"));
                break;
            }
            done.push((target.clone(), old));
        }
        let swapped = Swapped {
            swaps: done,
            previous: previous.to_owned(),
        };
        match failure {
            None => Ok(swapped),
            Some(error) => {
                swapped.undo();
                for (staged, _) in &self.swaps {
                    let _ = fs::remove_dir_all(staged);
                }
                Err(error)
            }
        }
    }

    /// Removes the staged folders unused.
    pub fn discard(self) {
        for (staged, _) in &self.swaps {
            let _ = fs::remove_dir_all(staged);
        }
    }
}

impl Swapped {
    /// Puts back what was replaced.
    pub fn undo(self) {
        for (target, old) in self.swaps.into_iter().rev() {
            let _ = fs::remove_dir_all(&target);
            if let Some(old) = old
                && let Err(e) = fs::rename(&old, &target)
            {
                tracing::error!(
                    "the previous site in {} could not be put back at {}: {e}",
                    old.display(),
                    target.display()
                );
            }
        }
    }

    /// Keeps the new files; the replaced site goes to `site-previous/` and replaced Lua scripts
    /// outside the site to `site-previous-lua/` (each replacing the one kept before).
    pub fn keep(self) {
        for (index, (_, old)) in self.swaps.into_iter().enumerate() {
            let Some(old) = old else {
                continue;
            };
            let kept = match index {
                0 => self.previous.clone(),
                _ => {
                    let mut name = self.previous.as_os_str().to_owned();
                    name.push("-lua");
                    PathBuf::from(name)
                }
            };
            let _ = fs::remove_dir_all(&kept);
            if let Err(e) = fs::rename(&old, &kept) {
                tracing::warn!(
                    "the replaced files could not be kept in {}: {e}",
                    kept.display()
                );
                let _ = fs::remove_dir_all(&old);
            }
        }
    }
}

/// The regular files under `root` by `/`-separated path, never following links (a link is
/// refused, naming it), within the bundle caps; `skip` (a path inside) is left out.
pub fn read_tree(
    root: &Path,
    skip: Option<&Path>,
) -> Result<BTreeMap<String, Vec<u8>>, TemplateError> {
    if !root.exists() {
        return Ok(BTreeMap::new());
    }
    let mut files = BTreeMap::new();
    for entry in collect_files(root, skip, Links::Refuse)? {
        let key = entry
            .relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        files.insert(key, fs::read(&entry.absolute)?);
    }
    Ok(files)
}
