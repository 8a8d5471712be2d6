//! How a hub behaves: [`HubOptions`], built from `goop.json`, and their defaults.

use std::time::Duration;

use crate::config::Config;

/// Most changes kept for replay after a reconnect (heartbeats: at most
/// [`super::ring::HEARTBEAT_RING`]); no more than the peers online are kept, unless
/// [`DEFAULT_RING_FLOOR`] is more.
pub const DEFAULT_RING_CAPACITY: usize = 16_384;

/// Events kept for replay however few peers are online: in a small community a snapshot is
/// cheap, but a client that was away for a few minutes is still sent only what it missed.
pub const DEFAULT_RING_FLOOR: usize = 256;

/// Events a subscriber may lag behind before it is cut off. A newcomer falls behind while it
/// reads its snapshot, and in a community of thousands some 20 changes a second come meanwhile
/// (peers joining, labels, comings and goings): with 1,024, 2,177 streams of 9,000 peers
/// joining at 15 a second were cut, most before their snapshot was read (and were sent it
/// again); with 4,096, none. The channel's slots are shared by every subscriber, and an event
/// is dropped once all have read it: a slow subscriber holds at most this many.
pub const DEFAULT_SUBSCRIBER_QUEUE: usize = 4096;

/// How a hub behaves; built from `goop.json` with [`HubOptions::from_config`].
#[derive(Debug, Clone)]
pub struct HubOptions {
    /// Shown on the dashboard.
    pub name: String,
    pub ttl: Duration,
    pub allow_unsigned: bool,
    pub ring_capacity: usize,
    /// Events kept for replay however few peers are online (see [`DEFAULT_RING_FLOOR`]).
    pub ring_floor: usize,
    pub subscriber_queue: usize,
    /// How often expired peers are removed.
    pub sweep_interval: Duration,
    pub publish_burst: u32,
    pub publish_per_second: u32,
    pub max_streams: usize,
    pub max_streams_per_ip: usize,
    /// How long a write to a client may make no progress before it is cut off.
    pub write_stall_timeout: Duration,
    /// Time a client has to send a complete request head.
    pub header_read_timeout: Duration,
    /// Longest silence on a stream before a keep-alive.
    pub keepalive: Duration,
    /// WebSocket ping period; a socket that has not answered for three periods is closed.
    pub ws_ping: Duration,
}

impl HubOptions {
    pub fn from_config(config: &Config) -> Self {
        let presence = &config.presence;
        HubOptions {
            name: if config.profile.label.is_empty() {
                "Goop² rendezvous".into()
            } else {
                config.profile.label.clone()
            },
            ttl: Duration::from_secs(presence.ttl_seconds.into()),
            allow_unsigned: presence.allow_unsigned,
            ring_capacity: DEFAULT_RING_CAPACITY,
            ring_floor: DEFAULT_RING_FLOOR,
            subscriber_queue: DEFAULT_SUBSCRIBER_QUEUE,
            sweep_interval: Duration::from_millis(250),
            publish_burst: presence.publish_burst,
            publish_per_second: presence.publish_per_second,
            max_streams: presence.max_streams as usize,
            max_streams_per_ip: presence.max_streams_per_ip as usize,
            write_stall_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(15),
            ws_ping: Duration::from_secs(15),
        }
    }
}
