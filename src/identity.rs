//! The peer's cryptographic identity: a libp2p Ed25519 key kept in one file.
//!
//! The key is created on first use (mode 0600, inside a 0700 directory) and read on every later
//! start, so the peer ID never changes. A key file that exists but cannot be read or decoded is an
//! error and is left exactly as it is: replacing it would silently give the peer a new identity.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub use libp2p_identity::{Keypair, PeerId};

/// Why the identity could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "cannot read the identity key {path}: {source}. Fix its permissions or ownership; the file \
         was left untouched"
    )]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the identity key {path} is corrupt ({reason}). It was left untouched: restore it from a \
         backup, or move it aside to create a new identity (the peer ID will change)"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error("cannot create the identity key {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The loaded key and whether this call created it.
pub struct Identity {
    pub keypair: Keypair,
    pub peer_id: PeerId,
    pub created: bool,
}

/// Reads the key at `path`, or creates a new Ed25519 key there if no file exists.
pub fn load_or_create(path: &Path) -> Result<Identity, IdentityError> {
    match fs::read(path) {
        Ok(bytes) => {
            let keypair = decode(&bytes).map_err(|reason| IdentityError::Corrupt {
                path: path.to_owned(),
                reason,
            })?;
            warn_if_exposed(path);
            Ok(Identity {
                peer_id: keypair.public().to_peer_id(),
                keypair,
                created: false,
            })
        }
        Err(err) if err.kind() == ErrorKind::NotFound => {
            let keypair = Keypair::generate_ed25519();
            write_new_key(path, &keypair).map_err(|source| IdentityError::Create {
                path: path.to_owned(),
                source,
            })?;
            tracing::info!(path = %path.display(), "created a new identity key");
            Ok(Identity {
                peer_id: keypair.public().to_peer_id(),
                keypair,
                created: true,
            })
        }
        Err(source) => Err(IdentityError::Unreadable {
            path: path.to_owned(),
            source,
        }),
    }
}

/// The peer ID of the key at `path` without creating one: `None` when there is no file yet.
pub fn peer_id_of(path: &Path) -> Result<Option<PeerId>, IdentityError> {
    match fs::read(path) {
        Ok(bytes) => decode(&bytes)
            .map(|keypair| Some(keypair.public().to_peer_id()))
            .map_err(|reason| IdentityError::Corrupt {
                path: path.to_owned(),
                reason,
            }),
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(None),
        Err(source) => Err(IdentityError::Unreadable {
            path: path.to_owned(),
            source,
        }),
    }
}

fn decode(bytes: &[u8]) -> Result<Keypair, String> {
    if bytes.is_empty() {
        return Err("the file is empty".into());
    }
    let keypair = Keypair::from_protobuf_encoding(bytes).map_err(|e| e.to_string())?;
    if keypair.clone().try_into_ed25519().is_err() {
        return Err(format!(
            "it holds a {:?} key; only Ed25519 keys are supported",
            keypair.key_type()
        ));
    }
    Ok(keypair)
}

fn write_new_key(path: &Path, keypair: &Keypair) -> std::io::Result<()> {
    let encoded = keypair
        .to_protobuf_encoding()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    // Written beside the target and renamed, so a crash never leaves a truncated key behind.
    let temp = path.with_extension("key.tmp");
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)?;
        file.write_all(&encoded)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

fn warn_if_exposed(path: &Path) {
    if let Ok(meta) = fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{mode:o}"),
                "the identity key is readable by other users; run `chmod 600` on it"
            );
        }
    }
}
