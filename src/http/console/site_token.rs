//! Capabilities for peer sites. A site shown at `/p/<A>/` runs in an opaque origin: it has no
//! cookies, so it cannot use the owner's session — and must not. Instead every HTML page served
//! there carries a token bound to A (HMAC with a key that lives only in this process), which the
//! data SDK sends back in `X-Goop-Site-Token`. A page of another site cannot read A's pages (they
//! are cross-origin to it), so it cannot get A's token: each site reaches only its own peer's
//! data proxy.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How long a token stays good (a page left open longer is reloaded).
const LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

/// Issues and checks site tokens. Cloning is cheap.
#[derive(Clone)]
pub struct SiteTokens {
    key: std::sync::Arc<[u8; 32]>,
}

impl Default for SiteTokens {
    fn default() -> Self {
        SiteTokens {
            key: std::sync::Arc::new(rand::random()),
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl SiteTokens {
    fn mac(&self, peer: &str, expires: u64) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.as_slice())
            .expect("HMAC takes a key of any length");
        mac.update(format!("goop-site:{peer}:{expires}").as_bytes());
        mac
    }

    /// A token for pages of `peer`'s site.
    pub fn issue(&self, peer: &str) -> String {
        let expires = now_secs() + LIFETIME.as_secs();
        let tag = hex::encode(self.mac(peer, expires).finalize().into_bytes());
        format!("{expires}.{tag}")
    }

    /// True when `token` was issued for `peer` and has not expired (constant-time compare).
    pub fn check(&self, token: &str, peer: &str) -> bool {
        let Some((expires, tag)) = token.split_once('.') else {
            return false;
        };
        let Ok(expires) = expires.parse::<u64>() else {
            return false;
        };
        if expires < now_secs() || tag.len() != 64 {
            return false;
        }
        let Some(bytes) = (0..tag.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&tag[i..i + 2], 16).ok())
            .collect::<Option<Vec<u8>>>()
        else {
            return false;
        };
        self.mac(peer, expires).verify_slice(&bytes).is_ok()
    }
}
