//! The command line: one binary, one subcommand per mode or helper.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Goop², the ephemeral web: every participant runs a peer with a site, a database and an
/// identity; rendezvous hubs let peers find each other.
#[derive(Debug, Parser)]
#[command(name = "goop2", version, about)]
pub struct Cli {
    /// Without one: `launch`, with its defaults.
    #[command(subcommand)]
    pub command: Option<Command>,
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
        /// The console's address (viewer.http_addr), e.g. 127.0.0.1:8081, or just a port;
        /// by default 8080, or the next free port when that is taken.
        #[arg(long, value_name = "ADDR")]
        console: Option<String>,
        /// The libp2p port, TCP and QUIC (p2p.listen_port); by default any free one.
        #[arg(long, value_name = "N")]
        port: Option<u16>,
        /// A rendezvous hub to join (presence.rendezvous_wan), e.g. https://rv.example.org.
        #[arg(long, value_name = "URL")]
        hub: Option<String>,
        /// A built-in template (blog, guestbook, quiz, …) the peer applies when it first starts.
        #[arg(long, value_name = "NAME")]
        template: Option<String>,
    },
    /// The launcher (the default): a local web page listing the peers under a directory, to
    /// create, start, stop, watch and delete them; each runs as a child process it supervises.
    /// Its URL is printed, and opened in a browser ($BROWSER, else xdg-open) when there is one.
    Launch {
        /// The directory holding the peers, one sub-directory each (created if missing).
        #[arg(long, default_value = "./peers")]
        dir: PathBuf,
        /// Where the launcher listens; by default 127.0.0.1 on a free port (or launcher.json's
        /// `addr`).
        #[arg(long, value_name = "ADDR")]
        addr: Option<String>,
        /// Print the URL only; open no browser.
        #[arg(long)]
        no_browser: bool,
    },
    /// Run a peer from a directory made by `goop2 init`: its site, its libp2p node, presence
    /// on the LAN and at hubs (and an embedded hub with presence.rendezvous_host), until SIGINT
    /// or SIGTERM.
    Peer {
        /// The peer's directory.
        dir: PathBuf,
        /// Create the directory with `goop2 init`'s defaults first if it has no goop.json.
        #[arg(long)]
        init: bool,
        /// Run as a launcher's child: stop, as on SIGTERM, when standard input closes (the
        /// launcher ended, however it ended).
        #[arg(long, hide = true)]
        supervised: bool,
    },
    /// Run a rendezvous hub from a directory (creating a rendezvous-only goop.json if there is
    /// none): presence registry, live streams and dashboard, until SIGINT or SIGTERM.
    Rendezvous {
        /// The hub's directory.
        dir: PathBuf,
        /// As for `peer`.
        #[arg(long, hide = true)]
        supervised: bool,
    },
    /// Load a hub with signed publishes and SSE subscribers, and report throughput, publish
    /// latency, fan-out latency and the hub's memory. Bounded; stops by itself.
    Loadtest {
        /// The hub's base URL, e.g. http://127.0.0.1:8787 (loopback: subscribers use many
        /// 127.x source addresses).
        url: String,
        /// SSE subscribers to hold open.
        #[arg(long, default_value_t = 100)]
        subscribers: usize,
        /// Publishing identities.
        #[arg(long, default_value_t = 10)]
        publishers: usize,
        /// Publishes per second, all publishers together.
        #[arg(long, default_value_t = 100)]
        rate: u32,
        /// Seconds of publishing.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Subscribe to the full stream instead of `?changes=1`.
        #[arg(long)]
        all_events: bool,
        /// Streams per source address (keep it under the hub's max_streams_per_ip).
        #[arg(long, default_value_t = 25)]
        streams_per_address: usize,
        /// The hub's process ID, to report its memory; several, comma-separated, for the
        /// instances of one hub behind a proxy (their memory is added up).
        #[arg(long, value_delimiter = ',')]
        hub_pid: Vec<u32>,
        /// Also run the same publish load against a plain hello-world server (in this process,
        /// on worker threads of its own), and print the ratio.
        #[arg(long)]
        baseline: bool,
        /// Instead: a community of this many peers, each from an address of its own, holding a
        /// stream, heartbeating, changing its label and coming and going (--duration and
        /// --hub-pid apply; --subscribers, --publishers, --rate and --streams-per-address do
        /// not).
        #[arg(long)]
        community: Option<usize>,
        /// The community's stream: a WebSocket both ways, or an event stream plus POST.
        #[arg(long, value_enum, default_value = "ws")]
        transport: crate::modes::loadtest::community::Transport,
        /// Seconds between one community peer's heartbeats.
        #[arg(long, default_value_t = 20)]
        heartbeat: u64,
        /// Mean seconds between one community peer's label changes (0: never).
        #[arg(long, default_value_t = 600)]
        change_every: u64,
        /// Mean seconds between one community peer leaving and coming back (0: never).
        #[arg(long, default_value_t = 600)]
        churn_every: u64,
        /// End the community run with every peer dropping its connection at once and coming
        /// back, and time how long until all are seen online again.
        #[arg(long)]
        storm: bool,
        /// Community peers that start joining each second (0: as fast as the hub takes them).
        #[arg(long, default_value_t = 0)]
        join_rate: u32,
    },
    /// Read a password (from the terminal, or the first line of standard input) and print its
    /// argon2id hash for `viewer.admin_password` or `presence.admin_password`.
    HashPassword,
}
