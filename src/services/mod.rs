//! Application logic, independent of HTTP: authentication and, as they arrive, the libp2p node,
//! presence, the hub, Lua and groups. Nothing here imports axum or askama.

pub mod auth;
pub mod avatar;
pub mod hub;
pub mod node;
pub mod presence;
pub mod site;
