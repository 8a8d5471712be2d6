//! The peer's avatar: a PNG or JPEG of at most 256 KiB, checked before it is stored, and the
//! hash peers see in presence (`avatarHash`) so they know when to fetch it again.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Largest avatar accepted and served.
pub const MAX_AVATAR_BYTES: usize = 256 * 1024;
/// Largest width or height.
const MAX_SIDE: u32 = 4096;

/// Why an image was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AvatarError {
    #[error("the image is larger than {} KiB", MAX_AVATAR_BYTES / 1024)]
    TooLarge,
    #[error("the image is not a PNG or JPEG file")]
    NotAnImage,
    #[error("the image's size ({0}×{1}) is outside 1 to 4096 pixels a side")]
    BadDimensions(u32, u32),
    #[error("the avatar could not be stored: {0}")]
    Io(String),
}

/// The image formats an avatar may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AvatarKind {
    Png,
    Jpeg,
}

impl AvatarKind {
    fn file_name(self) -> &'static str {
        match self {
            AvatarKind::Png => "avatar.png",
            AvatarKind::Jpeg => "avatar.jpg",
        }
    }
}

/// Checks that `bytes` is a PNG (signature and a sane IHDR) or a JPEG (start and end markers).
pub fn check(bytes: &[u8]) -> Result<AvatarKind, AvatarError> {
    if bytes.len() > MAX_AVATAR_BYTES {
        return Err(AvatarError::TooLarge);
    }
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        if bytes.len() < 24 || &bytes[12..16] != b"IHDR" {
            return Err(AvatarError::NotAnImage);
        }
        let width = u32::from_be_bytes(bytes[16..20].try_into().expect("4 bytes"));
        let height = u32::from_be_bytes(bytes[20..24].try_into().expect("4 bytes"));
        if !(1..=MAX_SIDE).contains(&width) || !(1..=MAX_SIDE).contains(&height) {
            return Err(AvatarError::BadDimensions(width, height));
        }
        return Ok(AvatarKind::Png);
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) && bytes.ends_with(&[0xFF, 0xD9]) {
        return Ok(AvatarKind::Jpeg);
    }
    Err(AvatarError::NotAnImage)
}

/// The stored avatar of the peer in `dir`, if any.
pub fn find(dir: &Path) -> Option<PathBuf> {
    [AvatarKind::Png, AvatarKind::Jpeg]
        .into_iter()
        .map(|kind| dir.join(kind.file_name()))
        .find(|path| path.is_file())
}

/// The hash announced for the stored avatar.
pub fn hash_of(dir: &Path) -> Option<String> {
    let bytes = std::fs::read(find(dir)?).ok()?;
    Some(hex::encode(&Sha256::digest(&bytes)[..16]))
}

/// Checks and stores `bytes` as the avatar of the peer in `dir` (replacing the old one
/// atomically); returns its hash.
pub fn store(dir: &Path, bytes: &[u8]) -> Result<String, AvatarError> {
    let kind = check(bytes)?;
    let path = dir.join(kind.file_name());
    crate::config::write_atomically(&path, bytes).map_err(|e| AvatarError::Io(e.to_string()))?;
    for other in [AvatarKind::Png, AvatarKind::Jpeg] {
        if other != kind {
            let _ = std::fs::remove_file(dir.join(other.file_name()));
        }
    }
    hash_of(dir).ok_or_else(|| AvatarError::Io("the stored avatar cannot be read".into()))
}
