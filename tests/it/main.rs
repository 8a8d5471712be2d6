//! The integration suite: one binary, one module per capability. Tests use the library's entry
//! points and the real `goop2` binary in temporary directories.

mod appearance;
mod browser;
mod cli;
mod config;
mod console;
mod data;
mod data_limits;
mod data_peers;
mod data_statements;
mod database_editor;
mod edit;
mod gossip;
mod hardening;
mod hub;
mod hub_admin;
mod hub_client;
mod hub_emails;
mod hub_logs;
mod hub_persist;
mod identity;
mod interop;
mod loadtest;
mod logs;
mod lua;
mod lua_console;
mod lua_http;
mod lua_limits;
mod netns;
mod node;
mod node_budget;
mod peer;
mod peer_table;
mod probes;
mod support;
mod viewer;
