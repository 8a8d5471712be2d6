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
//!
//! One file per concern: a section group per file (`profile`, `p2p`, `presence`, `viewer`,
//! `lua`, `data`), `secret` for values that must not be shown, `validate` for the rules,
//! `aliases` for the original's top-level keys and `file` for crash-safe writes. Everything is
//! re-exported here, so callers name `config::X`.

mod aliases;
mod chat;
mod data;
mod file;
mod groups;
mod lua;
mod p2p;
mod presence;
mod profile;
mod secret;
mod validate;
mod viewer;

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use chat::ChatSettings;
pub use data::DataSettings;
pub use file::{fingerprint, write_atomically, write_atomically_with_mode};
pub use groups::GroupSettings;
pub use lua::Lua;
pub use p2p::P2p;
pub use presence::{DEFAULT_RENDEZVOUS_PORT, HUB_PEER_DB, PORT_VARIABLE, PresenceSettings};
pub use profile::{IdentitySettings, MAX_EMAIL_BYTES, MAX_LABEL_BYTES, Paths, Profile};
pub use secret::{Secret, redact_url_password};
pub use viewer::{THEMES, Theme, Viewer};

use aliases::apply_aliases;
use validate::{check_integer_ranges, json_kind};

/// File name of the configuration inside a peer or hub directory.
pub const FILE_NAME: &str = "goop.json";

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
    pub chat: ChatSettings,
    pub groups: GroupSettings,
    /// Top-level keys this version does not know; kept so saving never drops them.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A configuration as loaded, with the warnings the operator should see once.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    pub warnings: Vec<String>,
}

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
