//! The `lua` section: the site's server-side functions and what they may reach.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::validate::parse_nets;

/// `lua`: server-side functions of the site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Lua {
    pub enabled: bool,
    pub script_dir: String,
    pub timeout_seconds: u32,
    pub max_memory_mb: u32,
    /// Calls per minute one caller may make to one function.
    pub rate_limit_per_peer: u32,
    /// Calls per minute to all functions together.
    pub rate_limit_global: u32,
    pub http_enabled: bool,
    /// Private addresses or networks `goop.http` may reach all the same, such as
    /// `"192.168.1.20"` or `"10.0.0.0/24"` (everything non-public is refused otherwise).
    pub http_allow: Vec<String>,
    pub kv_enabled: bool,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Lua {
    /// `http_allow` as networks (validated at load).
    pub fn allowed_networks(&self) -> Vec<IpNet> {
        parse_nets(&self.http_allow)
    }
}

impl Default for Lua {
    fn default() -> Self {
        Lua {
            enabled: false,
            script_dir: "site/lua".into(),
            timeout_seconds: 5,
            max_memory_mb: 10,
            rate_limit_per_peer: 60,
            rate_limit_global: 1000,
            http_enabled: false,
            http_allow: Vec::new(),
            kv_enabled: true,
            extra: Map::new(),
        }
    }
}
