//! Presence on the peer's side: publishing this peer's signed presence to hubs and hearing
//! about everyone else's.

pub mod hub_client;
pub mod peer_table;
