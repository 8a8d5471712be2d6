//! What peers send: each stream a peer opened is read one message at a time; a message passes
//! the peer's rate limit and the duplicate check, goes to its topic's subscriber, and is
//! acknowledged — or refused with a reason — once the subscriber answered.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use libp2p::PeerId;
use serde_json::Value as Json;
use tokio::sync::{mpsc, oneshot};

use super::{Inner, MqOptions, MqStats};
use crate::services::node::protocols::mq::{Line, MAX_ID_BYTES, valid_topic};
use crate::services::node::protocols::{Session, SessionError};

/// Message ids remembered per peer, to acknowledge a retry without delivering it twice.
const REMEMBERED_IDS: usize = 1024;
/// How long an id is remembered.
const REMEMBER_FOR: Duration = Duration::from_secs(600);
/// Peers whose ids are remembered; past this, those heard from longest ago are forgotten.
const REMEMBERED_PEERS: usize = 4096;

/// A message a peer sent, for its topic's subscriber.
#[derive(Debug)]
pub struct Incoming {
    /// The stream's authenticated peer.
    pub from: PeerId,
    pub id: String,
    pub topic: String,
    pub payload: Json,
    /// Says whether the message is taken; dropping it refuses it (`not taken`).
    pub reply: Reply,
}

/// The answer to one [`Incoming`]: dropped without a word (a subscriber that stopped with
/// messages queued), the message is refused, so its sender never hears "delivered" of a message
/// nobody took.
#[derive(Debug)]
pub struct Reply {
    answer: Option<oneshot::Sender<Result<(), String>>>,
}

impl Reply {
    /// The message is taken; the sender hears it was delivered.
    pub fn accept(mut self) {
        if let Some(answer) = self.answer.take() {
            let _ = answer.send(Ok(()));
        }
    }

    /// Whether the sender was already told the message was not taken (the subscriber took
    /// longer than the transport waits): it should not be acted on.
    pub fn is_expired(&self) -> bool {
        self.answer.as_ref().is_none_or(|answer| answer.is_closed())
    }

    /// The message is not taken; the sender hears `reason`.
    pub fn refuse(mut self, reason: impl Into<String>) {
        if let Some(answer) = self.answer.take() {
            let _ = answer.send(Err(reason.into()));
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if let Some(answer) = self.answer.take() {
            let _ = answer.send(Err(NOT_TAKEN.into()));
        }
    }
}

/// The refusal of a message its subscriber dropped unanswered.
const NOT_TAKEN: &str = "not taken";

/// The inbox's shared state.
pub(super) struct Inbox {
    limiter: DefaultKeyedRateLimiter<PeerId>,
    seen: Mutex<HashMap<PeerId, Seen>>,
    answer_wait: Duration,
    counts: Counts,
}

#[derive(Default)]
struct Counts {
    delivered: AtomicU64,
    duplicates: AtomicU64,
    rate_limited: AtomicU64,
    unknown_topic: AtomicU64,
    refused: AtomicU64,
    busy: AtomicU64,
    malformed_streams: AtomicU64,
}

/// The ids of one peer's messages taken lately, oldest first.
#[derive(Default)]
struct Seen {
    order: VecDeque<(Instant, String)>,
    ids: HashSet<String>,
}

impl Seen {
    fn forget_old(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if self.order.len() <= REMEMBERED_IDS && now.duration_since(*at) < REMEMBER_FOR {
                break;
            }
            if let Some((_, id)) = self.order.pop_front() {
                self.ids.remove(&id);
            }
        }
    }

    fn last(&self) -> Option<Instant> {
        self.order.back().map(|(at, _)| *at)
    }
}

impl Inbox {
    pub(super) fn new(options: &MqOptions) -> Inbox {
        let per_second =
            std::num::NonZeroU32::new(options.inbound_per_second.max(1)).expect("at least one");
        let burst = std::num::NonZeroU32::new(options.inbound_burst.max(1)).expect("at least one");
        Inbox {
            limiter: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
            seen: Mutex::new(HashMap::new()),
            answer_wait: options.answer_wait,
            counts: Counts::default(),
        }
    }

    pub(super) fn stats(&self) -> MqStats {
        let c = &self.counts;
        MqStats {
            delivered: c.delivered.load(Ordering::Relaxed),
            duplicates: c.duplicates.load(Ordering::Relaxed),
            rate_limited: c.rate_limited.load(Ordering::Relaxed),
            unknown_topic: c.unknown_topic.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            busy: c.busy.load(Ordering::Relaxed),
            malformed_streams: c.malformed_streams.load(Ordering::Relaxed),
        }
    }

    fn seen_before(&self, peer: &PeerId, id: &str) -> bool {
        let seen = self.seen.lock().expect("not poisoned");
        seen.get(peer).is_some_and(|seen| seen.ids.contains(id))
    }

    fn forget(&self, peer: &PeerId, id: &str) {
        let mut seen = self.seen.lock().expect("not poisoned");
        if let Some(entry) = seen.get_mut(peer) {
            entry.ids.remove(id);
            entry.order.retain(|(_, seen)| seen != id);
        }
    }

    /// Forgets what is old: the ids past their time, the rate limits of peers long quiet.
    pub(super) fn tidy(&self) {
        let now = Instant::now();
        let mut seen = self.seen.lock().expect("not poisoned");
        seen.retain(|_, s| {
            s.forget_old(now);
            !s.order.is_empty()
        });
        drop(seen);
        self.limiter.retain_recent();
    }

    fn remember(&self, peer: PeerId, id: String) {
        let now = Instant::now();
        let mut seen = self.seen.lock().expect("not poisoned");
        if !seen.contains_key(&peer) && seen.len() >= REMEMBERED_PEERS {
            seen.retain(|_, s| {
                s.forget_old(now);
                !s.order.is_empty()
            });
            if seen.len() >= REMEMBERED_PEERS {
                let oldest = seen
                    .iter()
                    .min_by_key(|(_, s)| s.last())
                    .map(|(peer, _)| *peer);
                if let Some(oldest) = oldest {
                    seen.remove(&oldest);
                }
            }
            self.limiter.retain_recent();
        }
        let entry = seen.entry(peer).or_default();
        if entry.ids.insert(id.clone()) {
            entry.order.push_back((now, id));
        }
        entry.forget_old(now);
    }
}

/// Reads the messages of one stream a peer opened, until it ends.
pub(super) async fn serve(inner: Arc<Inner>, mut session: Session) {
    let peer = session.peer;
    loop {
        let mut stop = inner.stop.clone();
        let line = tokio::select! {
            line = session.receiver.recv() => line,
            _ = stop.wait_for(|s| *s) => return,
        };
        let line = match line {
            Ok(Some(line)) => line,
            Ok(None) => return,
            Err(SessionError::LineTooLong(limit)) => {
                let reason = format!("a line is longer than {limit} bytes");
                return end_with(&inner, &session, reason).await;
            }
            Err(err) => {
                tracing::debug!(peer.id = %peer, "mq stream ended: {err}");
                return;
            }
        };
        let (id, seq, topic, payload) = match serde_json::from_slice::<Line>(&line) {
            Ok(Line::Msg {
                id,
                seq,
                topic,
                payload,
            }) => (id, seq, topic, payload),
            Ok(Line::Error { reason }) => {
                tracing::debug!(peer.id = %peer, "mq stream ended by the peer: {reason}");
                return;
            }
            // Acknowledgements come on the streams this side opened; here they are out of place.
            Ok(Line::Ack { .. }) => {
                return end_with(&inner, &session, "an ack on a stream of messages".into()).await;
            }
            Err(err) => {
                let reason = format!("a line is not a message: {err}");
                return end_with(&inner, &session, reason).await;
            }
        };
        if id.is_empty() || id.len() > MAX_ID_BYTES {
            let reason = format!("a message id is 1 to {MAX_ID_BYTES} bytes");
            return end_with(&inner, &session, reason).await;
        }
        let outcome = receive(&inner, peer, id.clone(), topic, payload).await;
        let ack = Line::Ack {
            id,
            seq,
            error: outcome.err(),
        };
        if session.sender.send_json(&ack).await.is_err() {
            return;
        }
    }
}

/// Ends a stream that cannot be read, saying why.
async fn end_with(inner: &Inner, session: &Session, reason: String) {
    tracing::debug!(peer.id = %session.peer, "mq stream refused: {reason}");
    inner
        .inbox
        .counts
        .malformed_streams
        .fetch_add(1, Ordering::Relaxed);
    let _ = session.sender.send_json(&Line::Error { reason }).await;
}

/// Delivers one message: `Ok` when it was taken (now or before), the reason otherwise.
async fn receive(
    inner: &Inner,
    from: PeerId,
    id: String,
    topic: String,
    payload: Json,
) -> Result<(), String> {
    let inbox = &inner.inbox;
    let counts = &inbox.counts;
    if inbox.limiter.check_key(&from).is_err() {
        counts.rate_limited.fetch_add(1, Ordering::Relaxed);
        return Err("rate limited".into());
    }
    if inbox.seen_before(&from, &id) {
        // Taken before, or being taken: a retry (its acknowledgement was lost, or late).
        counts.duplicates.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    }
    if let Err(reason) = valid_topic(&topic) {
        counts.unknown_topic.fetch_add(1, Ordering::Relaxed);
        return Err(reason);
    }
    let Some(subscriber) = inner.subscriber(&topic) else {
        counts.unknown_topic.fetch_add(1, Ordering::Relaxed);
        return Err("unknown topic".into());
    };
    // Remembered while it is being taken, so that a retry on another stream is not delivered
    // again meanwhile; forgotten if it is not taken.
    inbox.remember(from, id.clone());
    let (answer, answered) = oneshot::channel();
    let incoming = Incoming {
        from,
        id: id.clone(),
        topic,
        payload,
        reply: Reply {
            answer: Some(answer),
        },
    };
    if let Err(err) = subscriber.try_send(incoming) {
        inbox.forget(&from, &id);
        counts.busy.fetch_add(1, Ordering::Relaxed);
        return Err(match err {
            mpsc::error::TrySendError::Full(_) => "busy".into(),
            mpsc::error::TrySendError::Closed(_) => "unknown topic".into(),
        });
    }
    let outcome = match tokio::time::timeout(inbox.answer_wait, answered).await {
        Ok(Ok(outcome)) => outcome,
        // The subscriber went away with the message.
        Ok(Err(_)) => Err(NOT_TAKEN.into()),
        Err(_) => {
            inbox.forget(&from, &id);
            counts.busy.fetch_add(1, Ordering::Relaxed);
            return Err("busy".into());
        }
    };
    match &outcome {
        Ok(()) => {
            counts.delivered.fetch_add(1, Ordering::Relaxed);
        }
        Err(_) => {
            inbox.forget(&from, &id);
            counts.refused.fetch_add(1, Ordering::Relaxed);
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_forgotten_past_the_bound_oldest_first() {
        let mut seen = Seen::default();
        let start = Instant::now();
        for n in 0..REMEMBERED_IDS + 10 {
            let id = n.to_string();
            seen.ids.insert(id.clone());
            seen.order.push_back((start, id));
            seen.forget_old(start);
        }
        assert_eq!(seen.order.len(), REMEMBERED_IDS);
        assert!(!seen.ids.contains("0") && !seen.ids.contains("9"));
        assert!(seen.ids.contains("10"));
        seen.forget_old(start + REMEMBER_FOR);
        assert!(seen.ids.is_empty());
    }
}
