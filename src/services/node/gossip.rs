//! Presence over GossipSub is validated before GossipSub forwards it: a message is passed on to
//! the rest of the mesh only once it is known to be good, so one hostile neighbour cannot use
//! this peer to spread what every peer would refuse.
//!
//! Three steps, in order:
//! - a rate per neighbour (the `propagation_source`), checked on the swarm loop because it is
//!   cheap: what a neighbour sends beyond [`GossipLimits`] is ignored — not forwarded, not
//!   believed — without a penalty, since an honest neighbour may relay a busy mesh;
//! - the hub's checks ([`Presence::parse_and_check`]: bounds, peer ID, signature) off the swarm
//!   loop, on the validator task: what fails them, or is unsigned, is *rejected* (not forwarded,
//!   and GossipSub lowers the neighbour's score; below its graylist threshold nothing more is
//!   read from it);
//! - the hub's freshness rule: `ts` within [`MAX_CLOCK_SKEW_MS`] of our clock and strictly newer
//!   than the newest accepted from the same peer, remembered for as long as a replay could pass
//!   the clock check ([`Freshness`]), even after the PeerTable forgot the peer. Stale messages
//!   are *ignored*: a neighbour cannot know our clock.

use std::collections::{BTreeSet, HashMap};
use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use libp2p::PeerId;
use libp2p::gossipsub::{MessageAcceptance, MessageId};
use tokio::sync::mpsc;

use crate::services::hub::presence::{CheckedPresence, MAX_CLOCK_SKEW_MS, Presence, PresenceError};
use crate::services::hub::unix_ms;

/// Messages waiting for the validator; beyond this they are ignored rather than queued.
pub(super) const VALIDATION_QUEUE: usize = 512;
/// Peers whose newest `ts` is remembered; past this the entries closest to expiry go first.
pub const FRESHNESS_MEMORY: usize = 20_000;

/// How much presence one neighbour may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GossipLimits {
    /// Messages a neighbour may send at once before the rate applies.
    pub burst: u32,
    /// Messages per second a neighbour may sustain.
    pub per_second: u32,
}

impl Default for GossipLimits {
    /// Enough for a neighbour relaying the heartbeats of a few hundred peers.
    fn default() -> Self {
        GossipLimits {
            burst: 100,
            per_second: 20,
        }
    }
}

/// Token buckets per neighbour, dropped when the neighbour disconnects (so bounded by the
/// connection limits).
pub(super) struct SourceLimiter {
    quota: Quota,
    buckets: HashMap<PeerId, DefaultDirectRateLimiter>,
}

impl SourceLimiter {
    pub(super) fn new(limits: GossipLimits) -> Self {
        let burst = NonZeroU32::new(limits.burst.max(1)).expect("at least one");
        let per_second = NonZeroU32::new(limits.per_second.max(1)).expect("at least one");
        SourceLimiter {
            quota: Quota::per_second(per_second).allow_burst(burst),
            buckets: HashMap::new(),
        }
    }

    /// Takes a token for `source`; false when it has none left.
    pub(super) fn allow(&mut self, source: PeerId) -> bool {
        let quota = self.quota;
        self.buckets
            .entry(source)
            .or_insert_with(|| RateLimiter::direct(quota))
            .check()
            .is_ok()
    }

    pub(super) fn forget(&mut self, source: &PeerId) {
        self.buckets.remove(source);
    }
}

/// A message GossipSub holds until it is told what to do with it.
pub(super) struct Pending {
    pub id: MessageId,
    pub source: PeerId,
    pub data: Vec<u8>,
}

/// What the validator decided.
pub(super) struct Verdict {
    pub id: MessageId,
    pub source: PeerId,
    pub outcome: Outcome,
}

pub(super) enum Outcome {
    Accept(Box<CheckedPresence>),
    /// Invalid whoever relays it: not forwarded, and the neighbour is penalised.
    Reject(PresenceError),
    /// Not news (stale, replayed, over a rate): not forwarded, no penalty.
    Ignore(PresenceError),
}

impl Outcome {
    pub(super) fn acceptance(&self) -> MessageAcceptance {
        match self {
            Outcome::Accept(_) => MessageAcceptance::Accept,
            Outcome::Reject(_) => MessageAcceptance::Reject,
            Outcome::Ignore(_) => MessageAcceptance::Ignore,
        }
    }
}

/// Starts the validator task: it answers each pending message on `verdicts`, and stops when
/// either side is dropped.
pub(super) fn spawn_validator(
    mut pending: mpsc::Receiver<Pending>,
    verdicts: mpsc::Sender<Verdict>,
) {
    tokio::spawn(async move {
        let mut freshness = Freshness::new(FRESHNESS_MEMORY);
        while let Some(message) = pending.recv().await {
            let outcome = validate(&message.data, &mut freshness, unix_ms());
            let verdict = Verdict {
                id: message.id,
                source: message.source,
                outcome,
            };
            if verdicts.send(verdict).await.is_err() {
                return;
            }
        }
    });
}

/// The checks of one message, at `now_ms`.
fn validate(data: &[u8], freshness: &mut Freshness, now_ms: i64) -> Outcome {
    let checked = match Presence::parse_and_check(data) {
        Ok(checked) if checked.signed => checked,
        Ok(_) => return Outcome::Reject(PresenceError::Unsigned),
        Err(reason) => return Outcome::Reject(reason),
    };
    // A signed message always has a `ts` (parse_and_check requires it).
    let ts = checked.presence.ts.unwrap_or(0);
    match freshness.admit(checked.peer_id, ts, now_ms) {
        Ok(()) => Outcome::Accept(Box::new(checked)),
        Err(reason) => Outcome::Ignore(reason),
    }
}

/// The newest `ts` accepted from each peer, kept while a message that old could still pass the
/// clock check; bounded in entries.
struct Freshness {
    newest: HashMap<PeerId, i64>,
    /// The same entries ordered by `ts`, oldest first, for expiry and eviction.
    by_ts: BTreeSet<(i64, PeerId)>,
    capacity: usize,
}

impl Freshness {
    fn new(capacity: usize) -> Self {
        Freshness {
            newest: HashMap::new(),
            by_ts: BTreeSet::new(),
            capacity: capacity.max(1),
        }
    }

    /// Accepts `ts` from `peer` at `now_ms` when it is within the clock window and newer than
    /// any accepted before, and remembers it.
    fn admit(&mut self, peer: PeerId, ts: i64, now_ms: i64) -> Result<(), PresenceError> {
        if ts.abs_diff(now_ms) > MAX_CLOCK_SKEW_MS.unsigned_abs() {
            return Err(PresenceError::ClockSkew { ts, now: now_ms });
        }
        if let Some(&last) = self.newest.get(&peer)
            && ts <= last
        {
            return Err(PresenceError::Replay { ts, last });
        }
        // Entries a replay could no longer use: anything that old fails the clock check.
        while let Some(&(oldest, expired)) = self.by_ts.first()
            && oldest < now_ms - MAX_CLOCK_SKEW_MS
        {
            self.by_ts.pop_first();
            self.newest.remove(&expired);
        }
        if let Some(last) = self.newest.insert(peer, ts) {
            self.by_ts.remove(&(last, peer));
        }
        self.by_ts.insert((ts, peer));
        while self.newest.len() > self.capacity {
            let Some((_, evicted)) = self.by_ts.pop_first() else {
                break;
            };
            self.newest.remove(&evicted);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness_refuses_replays_and_old_news_and_stays_bounded() {
        let mut freshness = Freshness::new(3);
        let now = 1_000_000_000;
        let alice = PeerId::random();
        assert!(freshness.admit(alice, now - 10, now).is_ok());
        assert!(matches!(
            freshness.admit(alice, now - 10, now),
            Err(PresenceError::Replay { .. })
        ));
        assert!(matches!(
            freshness.admit(alice, now - 11, now),
            Err(PresenceError::Replay { .. })
        ));
        assert!(matches!(
            freshness.admit(alice, now - MAX_CLOCK_SKEW_MS - 1, now),
            Err(PresenceError::ClockSkew { .. })
        ));
        assert!(freshness.admit(alice, now - 9, now).is_ok());
        for n in 0..10 {
            assert!(freshness.admit(PeerId::random(), now + n, now).is_ok());
        }
        assert_eq!(freshness.newest.len(), 3);
        assert_eq!(freshness.by_ts.len(), 3);
        // What became too old to replay is forgotten first.
        let later = now + MAX_CLOCK_SKEW_MS + 100;
        assert!(freshness.admit(alice, later, later).is_ok());
        assert_eq!(freshness.newest.len(), 1);
    }
}
