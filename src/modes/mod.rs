//! What each command runs. Modes only wire lower layers together and own their lifecycle.

pub mod hash_password;
pub mod launch;
pub mod loadtest;
pub mod peer;
pub mod rendezvous;
