//! The link to one peer: a task that owns the stream this side opened to it, sends the queued
//! messages in order with at most a window of them unacknowledged, and tells each sender what
//! became of its message.
//!
//! A stream that fails, or leaves a message unacknowledged past the ack timeout, is dropped;
//! the messages it had not acknowledged go again, first and in order, on a new one — at most
//! `tries` times each and never past their deadline. The peer acknowledges a message it took
//! before without delivering it twice. With nothing to send for `idle_close`, the link closes
//! its stream and ends.

use std::collections::VecDeque;
use std::sync::Arc;

use libp2p::PeerId;
use serde_json::Value as Json;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::{Inner, MqError};
use crate::services::node::protocols::Session;
use crate::services::node::protocols::mq::{self, Line};

/// A message on its way.
pub(super) struct Outgoing {
    pub id: String,
    pub seq: u64,
    pub topic: String,
    pub payload: Json,
    pub done: oneshot::Sender<Result<(), MqError>>,
    pub deadline: Instant,
    /// Times it was sent so far.
    pub tries: u32,
}

impl Outgoing {
    fn finish(self, outcome: Result<(), MqError>) {
        let _ = self.done.send(outcome);
    }
}

/// Starts the link to `peer`; messages go on the queue returned.
pub(super) fn spawn(inner: Arc<Inner>, peer: PeerId) -> mpsc::Sender<Outgoing> {
    let (queue, queued) = mpsc::channel(inner.options.queue_per_peer.max(1));
    tokio::spawn(run(inner, peer, queued));
    queue
}

struct Link {
    inner: Arc<Inner>,
    peer: PeerId,
    /// Messages to send, in order (those to send again first).
    unsent: VecDeque<Outgoing>,
    /// Messages sent on the current stream and not acknowledged, with when they were sent.
    in_flight: VecDeque<(Outgoing, Instant)>,
    session: Option<Session>,
}

async fn run(inner: Arc<Inner>, peer: PeerId, mut queued: mpsc::Receiver<Outgoing>) {
    let mut link = Link {
        inner: inner.clone(),
        peer,
        unsent: VecDeque::new(),
        in_flight: VecDeque::new(),
        session: None,
    };
    let mut stop = inner.stop.clone();
    let options = inner.options;
    let mut idle_since = Instant::now();
    loop {
        link.expire();
        if link.session.is_none() && !link.unsent.is_empty() {
            link.connect().await;
        }
        link.send_window().await;
        let busy = !link.unsent.is_empty() || !link.in_flight.is_empty();
        if busy {
            idle_since = Instant::now();
        }
        let room = link.unsent.len() + link.in_flight.len() < options.window;
        // The oldest unacknowledged message's timeout, or the end of idleness.
        let wake = match link.in_flight.front() {
            Some((_, sent)) => *sent + options.ack_timeout,
            None if busy => Instant::now() + options.ack_timeout,
            None => idle_since + options.idle_close,
        };
        tokio::select! {
            message = queued.recv(), if room => match message {
                Some(message) => link.unsent.push_back(message),
                // Every handle is gone: the peer is stopping.
                None => break,
            },
            line = next_line(&mut link.session) => link.answer(line),
            _ = tokio::time::sleep_until(wake) => {
                if !link.in_flight.is_empty() {
                    tracing::debug!(peer.id = %peer, "mq: no acknowledgement within the timeout; reopening");
                    link.lose_stream();
                } else if !busy {
                    // Idle: end, unless a message arrived meanwhile (the queue is checked under
                    // the lock senders take, so none can slip in after the check).
                    let mut links = inner.links.lock().expect("not poisoned");
                    if queued.is_empty() {
                        links.remove(&peer);
                        drop(links);
                        tracing::debug!(peer.id = %peer, "mq link idle; closed");
                        return;
                    }
                }
            }
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    queued.close();
    while let Ok(message) = queued.try_recv() {
        link.unsent.push_back(message);
    }
    link.fail_all(MqError::Stopped);
}

/// The next line of the stream, or never without one.
async fn next_line(session: &mut Option<Session>) -> Option<Result<Option<Vec<u8>>, String>> {
    match session {
        Some(session) => Some(session.receiver.recv().await.map_err(|e| e.to_string())),
        None => std::future::pending().await,
    }
}

impl Link {
    /// Reports the messages past their deadline, or sent as often as allowed, as not delivered.
    fn expire(&mut self) {
        let now = Instant::now();
        let options = self.inner.options;
        let (over, keep): (VecDeque<_>, VecDeque<_>) = self
            .unsent
            .drain(..)
            .partition(|m| m.deadline <= now || m.tries >= options.tries);
        self.unsent = keep;
        for message in over {
            let tries = message.tries;
            let why = match message.deadline <= now {
                true => format!("no acknowledgement before its deadline, after {tries} tries"),
                false => format!("no acknowledgement after {tries} tries"),
            };
            message.finish(Err(MqError::NotAcknowledged(why)));
        }
    }

    /// Opens a stream, or reports the waiting messages as not delivered.
    async fn connect(&mut self) {
        let deadline = self
            .unsent
            .iter()
            .map(|m| m.deadline)
            .max()
            .unwrap_or_else(Instant::now);
        let opened = tokio::time::timeout_at(
            deadline,
            self.inner
                .node
                .open_session(self.peer, mq::PROTOCOL, mq::limits()),
        )
        .await;
        match opened {
            Ok(Ok(session)) => self.session = Some(session),
            Ok(Err(err)) => self.fail_all(MqError::Unreachable(err.to_string())),
            Err(_) => self.fail_all(MqError::Unreachable(
                "no stream before the messages' deadline".into(),
            )),
        }
    }

    /// Sends waiting messages while the window has room.
    async fn send_window(&mut self) {
        let options = self.inner.options;
        while self.in_flight.len() < options.window {
            let Some(session) = &self.session else { return };
            let Some(mut message) = self.unsent.pop_front() else {
                return;
            };
            let line = Line::Msg {
                id: message.id.clone(),
                seq: message.seq,
                topic: message.topic.clone(),
                payload: message.payload.clone(),
            };
            message.tries += 1;
            let sent = tokio::time::timeout_at(message.deadline, session.sender.send_json(&line));
            match sent.await {
                Ok(Ok(())) => self.in_flight.push_back((message, Instant::now())),
                _ => {
                    self.unsent.push_front(message);
                    self.lose_stream();
                    return;
                }
            }
        }
    }

    /// Handles what the stream said.
    fn answer(&mut self, line: Option<Result<Option<Vec<u8>>, String>>) {
        let line = match line {
            Some(Ok(Some(line))) => line,
            Some(Ok(None)) | Some(Err(_)) | None => {
                self.lose_stream();
                return;
            }
        };
        match serde_json::from_slice::<Line>(&line) {
            Ok(Line::Ack { id, error, .. }) => {
                let Some(at) = self.in_flight.iter().position(|(m, _)| m.id == id) else {
                    // An acknowledgement of a message already answered: nothing to do.
                    return;
                };
                let (message, _) = self.in_flight.remove(at).expect("found");
                message.finish(match error {
                    None => Ok(()),
                    Some(reason) => Err(MqError::Refused(reason)),
                });
            }
            Ok(Line::Error { reason }) => {
                tracing::debug!(peer.id = %self.peer, "mq stream refused by the peer: {reason}");
                self.lose_stream();
            }
            Ok(Line::Msg { .. }) | Err(_) => {
                tracing::debug!(peer.id = %self.peer, "mq: the peer answered with something other than an ack");
                self.lose_stream();
            }
        }
    }

    /// Drops the stream; what it had not acknowledged goes again first, in order.
    fn lose_stream(&mut self) {
        self.session = None;
        while let Some((message, _)) = self.in_flight.pop_back() {
            self.unsent.push_front(message);
        }
    }

    fn fail_all(&mut self, error: MqError) {
        self.lose_stream();
        for message in self.unsent.drain(..) {
            message.finish(Err(error.clone()));
        }
    }
}
