//! What other services read of the groups without asking the groups task: the role of each
//! member of each hosted group (for the `group` data policy) and the open groups a site may
//! list (`_groups` through the data API). The task publishes a fresh copy after each change;
//! readers never wait. Cloning is cheap; every clone sees the same copy.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use libp2p::PeerId;
use serde_json::{Map, Value as Json, json};

#[derive(Clone, Default)]
pub struct GroupDirectory {
    inner: Arc<RwLock<Published>>,
}

#[derive(Default)]
pub(super) struct Published {
    /// Hosted group → member → role (members only, the host as `host`).
    pub roles: HashMap<String, HashMap<PeerId, String>>,
    /// The groups that are not invite-only, as `_groups` rows, by id.
    pub open: Vec<Map<String, Json>>,
}

/// The columns of a `_groups` row.
pub const GROUP_COLUMNS: [&str; 8] = [
    "id",
    "name",
    "app_type",
    "context",
    "max_members",
    "persistent",
    "members",
    "host",
];

impl GroupDirectory {
    /// The role of `peer` in hosted group `group`, if it is a member.
    pub fn role_of(&self, group: &str, peer: &PeerId) -> Option<String> {
        let published = self.inner.read().expect("not poisoned");
        published.roles.get(group)?.get(peer).cloned()
    }

    /// The open groups this peer hosts, as rows of `_groups`.
    pub fn open_groups(&self) -> Vec<Map<String, Json>> {
        self.inner.read().expect("not poisoned").open.clone()
    }

    pub(super) fn publish(&self, published: Published) {
        *self.inner.write().expect("not poisoned") = published;
    }
}

/// A `_groups` row.
pub(super) fn row(meta: &super::GroupMeta, members: usize, host: &PeerId) -> Map<String, Json> {
    let value = json!({
        "id": meta.id,
        "name": meta.name,
        "app_type": meta.app_type,
        "context": meta.context,
        "max_members": meta.max_members,
        "persistent": meta.persistent,
        "members": members,
        "host": host.to_base58(),
    });
    match value {
        Json::Object(row) => row,
        _ => unreachable!("a JSON object"),
    }
}
