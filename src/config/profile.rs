//! The sections that say who a peer is and where its files live: `profile`, `identity` and
//! `paths`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Longest `profile.label` in bytes; the same bound the hub puts on presence `content`.
pub const MAX_LABEL_BYTES: usize = 4096;
/// Longest `profile.email` in bytes (RFC 5321 path limit, as the presence contract uses).
pub const MAX_EMAIL_BYTES: usize = 320;

/// `profile`: how this peer introduces itself.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Profile {
    /// Display name, sent as presence `content`.
    pub label: String,
    /// Contact address, shown to hub admins and to peers the hub has verified.
    pub email: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `identity`: where the libp2p key lives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IdentitySettings {
    /// Ed25519 key in libp2p protobuf encoding, relative to the peer directory.
    pub key_file: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Default for IdentitySettings {
    fn default() -> Self {
        IdentitySettings {
            key_file: "data/identity.key".into(),
            extra: Map::new(),
        }
    }
}

/// `paths`: where the site lives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Paths {
    /// The static site served to visitors, relative to the peer directory.
    pub site_root: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            site_root: "site".into(),
            extra: Map::new(),
        }
    }
}
