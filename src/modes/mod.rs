//! What each command runs. Modes only wire lower layers together and own their lifecycle.

pub mod bench_data;
pub mod bench_lua;
pub mod bench_site;
pub mod community;
pub mod hash_password;
pub mod init;
pub mod loadtest;
pub mod peer;
pub mod rendezvous;
