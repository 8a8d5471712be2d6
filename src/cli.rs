//! The command line: one binary, one subcommand per mode or helper.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Goop², the ephemeral web: every participant runs a peer with a site, a database and an
/// identity; rendezvous hubs let peers find each other.
#[derive(Debug, Parser)]
#[command(name = "goop2", version, about, arg_required_else_help = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a peer directory: goop.json with every default written out, an identity key and a
    /// starter site. Refuses to touch an existing goop.json.
    Init {
        /// The directory to create (it may exist, but must not contain goop.json).
        dir: PathBuf,
        /// The peer's display name; defaults to the directory's name.
        #[arg(long)]
        label: Option<String>,
    },
    /// Run a rendezvous hub from a directory (creating a rendezvous-only goop.json if there is
    /// none): presence registry, live streams and dashboard, until SIGINT or SIGTERM.
    Rendezvous {
        /// The hub's directory.
        dir: PathBuf,
    },
    /// Read a password (from the terminal, or the first line of standard input) and print its
    /// argon2id hash for `viewer.admin_password` or `presence.admin_password`.
    HashPassword,
}
