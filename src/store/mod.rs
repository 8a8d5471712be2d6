//! Storage: the only place with SQL. Each database has its module and its migrations under
//! `migrations/`: the hub's shared peer registry and the peer's own `data.db` (system tables and user tables).

pub mod chat;
pub mod data;
pub mod deadline;
pub mod groups;
pub mod hub;
pub mod lua_kv;
pub mod peer;
