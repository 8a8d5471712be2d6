//! Messages between peers over `/goop/mq/1.0.0` ([`crate::services::node::protocols::mq`]):
//! chat, groups and identity exchange are topics on this one transport.
//!
//! [`Mq::send`] hands a message to the link of its peer ([`link`]): one task per peer with a
//! bounded queue, one long-lived stream reused for every message and reopened when lost, a
//! window of messages in flight, an acknowledgement timeout with a bounded number of tries, and
//! a deadline after which the sender hears the message was not delivered. Messages to one peer
//! leave in the order they were sent, retries included, so each topic keeps its order.
//!
//! What peers send arrives through [`inbox`]: per-peer rate limit, duplicates (a retry whose
//! acknowledgement was lost) acknowledged again without being delivered twice, and the topic's
//! subscriber — registered with [`Mq::subscribe`] — decides whether the message is taken
//! ([`Reply`]). The sender of every [`Incoming`] is the stream's authenticated peer.

pub mod apps;
pub mod identity;
mod inbox;
mod link;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use libp2p::PeerId;
use serde_json::Value as Json;
use tokio::sync::{mpsc, oneshot, watch};

use crate::services::node::Node;
use crate::services::node::protocols::Session;
use crate::services::node::protocols::mq::{MAX_PAYLOAD_BYTES, valid_topic};

pub use inbox::{Incoming, Reply};

/// The bounds of the transport, each way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MqOptions {
    /// Messages waiting for one peer's link; more are refused at once.
    pub queue_per_peer: usize,
    /// Messages sent to one peer and not yet acknowledged.
    pub window: usize,
    /// A message not acknowledged this long counts as lost with its stream.
    pub ack_timeout: Duration,
    /// Times a message is sent before it is reported as not delivered.
    pub tries: u32,
    /// A message not acknowledged this long after it was sent is reported as not delivered.
    pub deadline: Duration,
    /// A link with nothing to send for this long closes its stream and ends.
    pub idle_close: Duration,
    /// Peers with a link at once.
    pub max_links: usize,
    /// Messages a peer may send per second, and in a burst, all topics together (a group's
    /// host relays every member's messages; topics bound their own kinds further).
    pub inbound_per_second: u32,
    pub inbound_burst: u32,
    /// Messages a subscriber has not taken yet, per subscription.
    pub subscriber_queue: usize,
    /// How long a subscriber may take to say whether it takes a message.
    pub answer_wait: Duration,
}

impl Default for MqOptions {
    fn default() -> Self {
        MqOptions {
            queue_per_peer: 256,
            window: 32,
            ack_timeout: Duration::from_secs(5),
            tries: 3,
            deadline: Duration::from_secs(30),
            idle_close: Duration::from_secs(30),
            max_links: 1024,
            inbound_per_second: 200,
            inbound_burst: 400,
            subscriber_queue: 256,
            answer_wait: Duration::from_secs(4),
        }
    }
}

/// Why a message was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MqError {
    #[error("the peer could not be reached: {0}")]
    Unreachable(String),
    #[error("the peer did not acknowledge the message ({0})")]
    NotAcknowledged(String),
    #[error("the peer refused the message: {0}")]
    Refused(String),
    #[error("too many messages are waiting for this peer")]
    QueueFull,
    #[error("too many peers are being messaged at once")]
    TooManyPeers,
    #[error("a message is at most {MAX_PAYLOAD_BYTES} bytes of JSON")]
    TooLarge,
    #[error("{0}")]
    InvalidTopic(String),
    #[error("a peer does not send messages to itself")]
    ToSelf,
    #[error("the peer is stopping")]
    Stopped,
}

/// Counts of what the inbox did, since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MqStats {
    pub delivered: u64,
    pub duplicates: u64,
    pub rate_limited: u64,
    pub unknown_topic: u64,
    pub refused: u64,
    pub busy: u64,
    pub malformed_streams: u64,
}

/// The transport. Cloning is cheap.
#[derive(Clone)]
pub struct Mq {
    inner: Arc<Inner>,
}

struct Inner {
    node: Node,
    options: MqOptions,
    links: Mutex<HashMap<PeerId, mpsc::Sender<link::Outgoing>>>,
    subscriptions: RwLock<Vec<Subscription>>,
    seq: AtomicU64,
    inbox: inbox::Inbox,
    stop: watch::Receiver<bool>,
}

struct Subscription {
    pattern: Pattern,
    deliver: mpsc::Sender<Incoming>,
}

/// A topic, or with a trailing `*` every topic that starts with what comes before it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    Prefix(String),
}

impl Pattern {
    fn parse(pattern: &str) -> Pattern {
        match pattern.strip_suffix('*') {
            Some(prefix) => Pattern::Prefix(prefix.to_owned()),
            None => Pattern::Exact(pattern.to_owned()),
        }
    }

    /// How closely `topic` matches: the longest pattern wins, an exact one over a prefix.
    fn rank(&self, topic: &str) -> Option<usize> {
        match self {
            Pattern::Exact(exact) => (exact == topic).then_some(usize::MAX),
            Pattern::Prefix(prefix) => topic.starts_with(prefix.as_str()).then_some(prefix.len()),
        }
    }
}

impl Mq {
    /// The transport of `node`; it takes no message before [`Mq::serve`].
    pub fn new(node: Node, options: MqOptions, stop: watch::Receiver<bool>) -> Mq {
        Mq {
            inner: Arc::new(Inner {
                node,
                inbox: inbox::Inbox::new(&options),
                options,
                links: Mutex::new(HashMap::new()),
                subscriptions: RwLock::new(Vec::new()),
                seq: AtomicU64::new(1),
                stop,
            }),
        }
    }

    /// Takes the streams peers open (from [`crate::services::node::protocols::Protocols::sessions`]
    /// with [`crate::services::node::protocols::mq::limits`]) until the peer stops.
    pub fn serve(&self, mut sessions: mpsc::Receiver<Session>) {
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let mut stop = inner.stop.clone();
            // What peers leave behind (remembered ids, rate limits) is tidied now and then.
            let mut tidy = tokio::time::interval(Duration::from_secs(60));
            loop {
                let session = tokio::select! {
                    session = sessions.recv() => session,
                    _ = tidy.tick() => {
                        inner.inbox.tidy();
                        continue;
                    }
                    _ = stop.wait_for(|s| *s) => None,
                };
                let Some(session) = session else { return };
                tokio::spawn(inbox::serve(inner.clone(), session));
            }
        });
    }

    /// Delivers the messages whose topic is `pattern` (or starts with it, for a pattern ending
    /// in `*`) on the channel returned; the most specific subscription gets each message. A
    /// message nobody subscribed to is refused as `unknown topic`.
    pub fn subscribe(&self, pattern: &str) -> mpsc::Receiver<Incoming> {
        let (deliver, delivered) = mpsc::channel(self.inner.options.subscriber_queue.max(1));
        let pattern = Pattern::parse(pattern);
        let mut subscriptions = self.inner.subscriptions.write().expect("not poisoned");
        subscriptions.retain(|s| s.pattern != pattern && !s.deliver.is_closed());
        subscriptions.push(Subscription { pattern, deliver });
        delivered
    }

    /// Sends `payload` on `topic` to `peer`: `Ok` once the peer acknowledged it, an error that
    /// says why it was not delivered otherwise (never later than the deadline).
    pub async fn send(&self, peer: PeerId, topic: &str, payload: Json) -> Result<(), MqError> {
        let done = self.enqueue(peer, topic, payload)?;
        done.await.unwrap_or(Err(MqError::Stopped))
    }

    /// Queues a message without waiting for its delivery; the receiver says what became of it.
    /// Refused at once when the peer's queue is full, so a caller fanning out never waits on
    /// one slow peer.
    pub fn enqueue(
        &self,
        peer: PeerId,
        topic: &str,
        payload: Json,
    ) -> Result<oneshot::Receiver<Result<(), MqError>>, MqError> {
        self.enqueue_within(peer, topic, payload, self.inner.options.deadline)
    }

    /// [`Mq::enqueue`] with a deadline of its own (shorter for a liveness check, which had
    /// better fail fast than be retried).
    pub fn enqueue_within(
        &self,
        peer: PeerId,
        topic: &str,
        payload: Json,
        deadline: Duration,
    ) -> Result<oneshot::Receiver<Result<(), MqError>>, MqError> {
        valid_topic(topic).map_err(MqError::InvalidTopic)?;
        if peer == self.inner.node.peer_id() {
            return Err(MqError::ToSelf);
        }
        if *self.inner.stop.borrow() {
            return Err(MqError::Stopped);
        }
        let size = serde_json::to_vec(&payload).map_or(usize::MAX, |bytes| bytes.len());
        if size > MAX_PAYLOAD_BYTES {
            return Err(MqError::TooLarge);
        }
        let (done, outcome) = oneshot::channel();
        let message = link::Outgoing {
            id: message_id(),
            seq: self.inner.seq.fetch_add(1, Ordering::Relaxed),
            topic: topic.to_owned(),
            payload,
            done,
            deadline: tokio::time::Instant::now() + deadline,
            tries: 0,
        };
        let mut links = self.inner.links.lock().expect("not poisoned");
        let queue = match links.get(&peer) {
            Some(queue) if !queue.is_closed() => queue.clone(),
            _ => {
                links.retain(|_, queue| !queue.is_closed());
                if links.len() >= self.inner.options.max_links {
                    return Err(MqError::TooManyPeers);
                }
                let queue = link::spawn(self.inner.clone(), peer);
                links.insert(peer, queue.clone());
                queue
            }
        };
        // Under the lock: a link ends only while holding it, with an empty queue.
        queue.try_send(message).map_err(|err| match err {
            mpsc::error::TrySendError::Full(_) => MqError::QueueFull,
            mpsc::error::TrySendError::Closed(_) => MqError::Stopped,
        })?;
        Ok(outcome)
    }

    /// What the inbox did so far.
    pub fn stats(&self) -> MqStats {
        self.inner.inbox.stats()
    }

    /// Peers with a link (a stream open or messages waiting).
    pub fn links(&self) -> usize {
        let links = self.inner.links.lock().expect("not poisoned");
        links.values().filter(|queue| !queue.is_closed()).count()
    }

    pub fn peer_id(&self) -> PeerId {
        self.inner.node.peer_id()
    }
}

impl Inner {
    /// The subscription that takes `topic`, if any.
    fn subscriber(&self, topic: &str) -> Option<mpsc::Sender<Incoming>> {
        let subscriptions = self.subscriptions.read().expect("not poisoned");
        subscriptions
            .iter()
            .filter(|s| !s.deliver.is_closed())
            .filter_map(|s| s.pattern.rank(topic).map(|rank| (rank, s)))
            .max_by_key(|(rank, _)| *rank)
            .map(|(_, s)| s.deliver.clone())
    }
}

/// A fresh message id: 128 random bits in hex.
fn message_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_specific_pattern_takes_a_topic() {
        let exact = Pattern::parse("chat");
        let group = Pattern::parse("group:*");
        let room = Pattern::parse("group:room-1:*");
        assert_eq!(exact.rank("chat"), Some(usize::MAX));
        assert_eq!(exact.rank("chat.broadcast"), None);
        assert!(room.rank("group:room-1:msg") > group.rank("group:room-1:msg"));
        assert_eq!(room.rank("group:room-2:msg"), None);
        assert_eq!(Pattern::parse("*").rank("anything"), Some(0));
    }
}
