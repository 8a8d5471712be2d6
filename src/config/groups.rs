//! The `groups` section: how many groups a peer hosts and how many members each may have.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `groups`: the host's caps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GroupSettings {
    /// Groups this peer hosts at most.
    pub max_hosted: u32,
    /// Members online in one of its groups at most (a group may set a lower `max_members`).
    pub max_members: u32,
    /// Groups of other hosts this peer may belong to.
    pub max_joined: u32,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Default for GroupSettings {
    fn default() -> Self {
        GroupSettings {
            max_hosted: 100,
            max_members: 100,
            max_joined: 200,
            extra: Map::new(),
        }
    }
}
