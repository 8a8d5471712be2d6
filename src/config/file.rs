//! Files that must survive a crash (`goop.json`, the identity key, the avatar) are written to a
//! temporary sibling, synced and renamed; and a fingerprint lets a form tell whether the file
//! changed on disk since it was shown.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// A short hash of the file at `path` as it is now (empty file when unreadable): forms carry it
/// so a save can tell whether the file changed on disk since the form was shown.
pub fn fingerprint(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let bytes = fs::read(path).unwrap_or_default();
    hex::encode(&Sha256::digest(&bytes)[..12])
}

/// Writes `bytes` to `path` through a temporary sibling and a rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomically_with_mode(path, bytes, 0o600)
}

/// [`write_atomically`], giving a new file `new_mode` (a replaced file keeps its own).
pub fn write_atomically_with_mode(path: &Path, bytes: &[u8], new_mode: u32) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the path has no file name"))?;
    let temp = dir.join(format!(".{}.tmp", file_name.to_string_lossy()));
    // A new file gets `new_mode` (0600 for anything that may hold secrets); a replaced one
    // keeps its mode.
    let mode = fs::metadata(path)
        .map(|meta| meta.permissions().mode())
        .unwrap_or(new_mode);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&temp)?;
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)?;
        // The rename is durable only once the directory entry is.
        File::open(dir)?.sync_all()
    })();
    if result.is_err() && temp.is_file() {
        let _ = fs::remove_file(&temp);
    }
    result
}
