//! Presence on the peer's side: publishing this peer's signed presence to hubs and hearing
//! about everyone else's, merged in the PeerTable, probed for reachability, and remembered in
//! the peer's database.

pub mod cache;
pub mod hub_client;
pub mod lan;
pub mod merge;
pub mod peer_table;
pub mod reachability;
pub mod relays;
pub mod tls;
