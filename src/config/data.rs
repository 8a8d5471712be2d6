//! The `data` section: the rates, time budget and quotas that bound what other peers may ask of
//! and store in this peer's tables.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `data`: what other peers may ask of this peer's tables (a rate and a time budget per request)
/// and put into them. The quotas are the defaults of every table; the database editor overrides
/// them per table. The owner is never held to any of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DataSettings {
    /// Inserts per second one caller may sustain, across all tables.
    pub insert_per_second: u32,
    /// Inserts one caller may make at once before the rate applies.
    pub insert_burst: u32,
    /// Requests of any kind per second one caller may sustain.
    pub requests_per_second: u32,
    /// Requests one caller may make at once before that rate applies.
    pub request_burst: u32,
    /// Seconds one request of another peer may take before its statements are stopped.
    pub timeout_seconds: u32,
    /// Rows one caller may keep in a table.
    pub max_rows_per_caller: u64,
    /// Bytes (of column values) one caller may keep in a table.
    pub max_bytes_per_caller: u64,
    /// Rows a table holds from everyone together before other peers' inserts are refused.
    pub max_rows_per_table: u64,
    /// Bytes a table holds from everyone together before other peers' inserts are refused.
    pub max_bytes_per_table: u64,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Default for DataSettings {
    fn default() -> Self {
        DataSettings {
            insert_per_second: 2,
            insert_burst: 20,
            requests_per_second: 50,
            request_burst: 100,
            timeout_seconds: 2,
            max_rows_per_caller: 1000,
            max_bytes_per_caller: 1024 * 1024,
            max_rows_per_table: 100_000,
            max_bytes_per_table: 100 * 1024 * 1024,
            extra: Map::new(),
        }
    }
}
