//! The `chat` section: how much of each conversation is kept, and how many broadcasts a peer
//! may send.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `chat`: direct messages kept per peer, and the broadcast rate each way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChatSettings {
    /// Messages kept per conversation, the newest (older ones are dropped).
    pub history_per_peer: u32,
    /// Broadcasts one peer may send this peer per minute, and this peer may send.
    pub broadcasts_per_minute: u32,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Default for ChatSettings {
    fn default() -> Self {
        ChatSettings {
            history_per_peer: 1000,
            broadcasts_per_minute: 10,
            extra: Map::new(),
        }
    }
}
