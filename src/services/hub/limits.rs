//! Per-address bounds of the hub: a token bucket for publishes and caps on open streams. An
//! IPv6 client counts by its /64 ([`client_key`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::services::client_key::client_key;

/// A per-IP token bucket: `burst` publishes at once, refilled at `per_second`.
pub struct PublishLimiter {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
}

impl PublishLimiter {
    pub fn new(burst: u32, per_second: u32) -> Self {
        let burst = NonZeroU32::new(burst.max(1)).expect("at least one");
        let per_second = NonZeroU32::new(per_second.max(1)).expect("at least one");
        PublishLimiter {
            limiter: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
            clock: DefaultClock::default(),
        }
    }

    /// Takes a token for `ip`, or says how long until one is available.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        self.limiter
            .check_key(&client_key(ip))
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Forgets addresses whose buckets are full again, so the table stays small.
    pub fn prune(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

/// Why a stream was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StreamRefused {
    #[error("this hub serves its maximum of {0} streams; retry later")]
    HubFull(usize),
    #[error("this address already has {0} open streams")]
    TooManyFromAddress(usize),
}

/// Counts open streams, globally and per address.
pub struct StreamCaps {
    max_total: usize,
    max_per_ip: usize,
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// Holds one stream slot; dropping it frees the slot.
pub struct StreamSlot {
    caps: Arc<StreamCaps>,
    ip: IpAddr,
}

impl StreamCaps {
    pub fn new(max_total: usize, max_per_ip: usize) -> Self {
        StreamCaps {
            max_total,
            max_per_ip,
            total: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
        }
    }

    pub fn open(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Reserves a slot for a stream from `ip`.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<StreamSlot, StreamRefused> {
        let ip = client_key(ip);
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if self.total.load(Ordering::Relaxed) >= self.max_total {
            return Err(StreamRefused::HubFull(self.max_total));
        }
        let count = per_ip.entry(ip).or_insert(0);
        if *count >= self.max_per_ip {
            return Err(StreamRefused::TooManyFromAddress(self.max_per_ip));
        }
        *count += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(StreamSlot {
            caps: self.clone(),
            ip,
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut per_ip = self.caps.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&self.ip);
            }
        }
        self.caps.total.fetch_sub(1, Ordering::Relaxed);
    }
}
