//! HTTP: axum routers, askama pages and the connection loop. This layer knows HTTP and HTML and
//! calls services; it never runs SQL and never touches the libp2p swarm.

pub mod access;
pub mod assets;
pub mod client_ip;
pub mod console;
pub mod csrf;
pub mod error;
pub mod forms;
pub mod hub;
pub mod json_api;
pub mod launcher;
pub mod layers;
pub mod logs;
pub mod owner_login;
pub mod security;
pub mod server;
pub mod session;
pub mod sse;
pub mod stall;
pub mod text;
pub mod viewer;
pub mod websocket;
