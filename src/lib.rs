//! Goop², the ephemeral web: peers that serve a site and a database under a libp2p identity, and
//! the rendezvous hubs where they find each other. Layers point one way:
//! modes → http → services → store.

pub mod cli; // the command line
pub mod config; // goop.json: typed, defaulted, validated, saved atomically
pub mod http; // axum routers, pages and the connection loop
pub mod identity; // the Ed25519 key file and peer ID
pub mod modes;
pub mod services; // application logic
pub mod store; // SQL, and only here
pub mod telemetry; // tracing setup and the in-memory log ring // what each command runs
