//! `goop2 init <dir>`: scaffold a peer directory.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::config::{self, Config};
use crate::identity::{self, PeerId};

const STARTER_PAGE: &str = include_str!("../../web/site-starter/index.html");

/// What `init` created.
pub struct Scaffold {
    pub config_path: PathBuf,
    pub peer_id: PeerId,
    pub site_index: PathBuf,
}

/// Creates `dir/goop.json` (defaults written out, label = `label` or the directory name), the
/// identity key and `site/index.html`. Refuses when `goop.json` already exists; an existing
/// `site/index.html` or key is kept.
pub fn run(dir: &Path, label: Option<String>) -> anyhow::Result<Scaffold> {
    let config_path = dir.join(config::FILE_NAME);
    if config_path.exists() {
        bail!(
            "refusing to overwrite {}: it already exists. Edit it, or choose another directory",
            config_path.display()
        );
    }
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;

    let mut config = Config::default();
    config.profile.label = label.unwrap_or_else(|| default_label(dir));
    let problems = config.validate();
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
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

    // Written last: a goop.json means the directory is complete.
    config.save(&config_path)?;
    Ok(Scaffold {
        config_path,
        peer_id: identity.peer_id,
        site_index,
    })
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
