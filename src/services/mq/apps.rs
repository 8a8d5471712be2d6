//! Topics of sites' own (`app.<anything>`): what a site's pages send its peer, or another peer,
//! and hear back — a game's moves, a whiteboard's strokes — without a service of the peer's
//! own for them. A message is taken only while a page of this peer listens ([`Apps::events`]);
//! otherwise it is refused with the reason, so the sender knows nobody heard it.

use libp2p::PeerId;
use serde::Serialize;
use serde_json::Value as Json;
use tokio::sync::{broadcast, mpsc, watch};

use super::{Incoming, Mq, MqError};
use crate::services::blocklist::BlockList;
use crate::services::hub::unix_ms;

/// The prefix of every app topic.
pub const PREFIX: &str = "app.";

/// An app message heard.
#[derive(Debug, Clone, Serialize)]
pub struct AppMessage {
    pub from: String,
    pub topic: String,
    pub payload: Json,
    pub at_ms: i64,
}

/// App topics. Cloning is cheap.
#[derive(Clone)]
pub struct Apps {
    mq: Mq,
    events: broadcast::Sender<AppMessage>,
}

impl Apps {
    /// Takes `app.*` messages of `mq` from now on, until the peer stops.
    pub fn start(mq: Mq, blocked: BlockList, stop: watch::Receiver<bool>) -> Apps {
        let apps = Apps {
            events: broadcast::channel(1024).0,
            mq: mq.clone(),
        };
        let incoming = mq.subscribe(&format!("{PREFIX}*"));
        tokio::spawn(apps.clone().take(incoming, blocked, stop));
        apps
    }

    /// What pages hear from now on.
    pub fn events(&self) -> broadcast::Receiver<AppMessage> {
        self.events.subscribe()
    }

    /// Sends `payload` on app topic `topic` to `peer`; `Ok` once its page took it.
    pub async fn send(&self, peer: PeerId, topic: &str, payload: Json) -> Result<(), MqError> {
        if !topic.starts_with(PREFIX) || topic.len() == PREFIX.len() {
            return Err(MqError::InvalidTopic(format!(
                "a site's topics start with \"{PREFIX}\" and name something after it; {topic:?} does not"
            )));
        }
        self.mq.send(peer, topic, payload).await
    }

    async fn take(
        self,
        mut incoming: mpsc::Receiver<Incoming>,
        blocked: BlockList,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            let message = tokio::select! {
                message = incoming.recv() => message,
                () = crate::services::until_stopped(&mut stop) => None,
            };
            let Some(message) = message else { return };
            if blocked.contains(&message.from) {
                message.reply.refuse("blocked");
                continue;
            }
            if self.events.receiver_count() == 0 {
                message
                    .reply
                    .refuse("no page of this peer listens to its sites' topics now");
                continue;
            }
            let Incoming {
                from,
                topic,
                payload,
                reply,
                ..
            } = message;
            reply.accept();
            let _ = self.events.send(AppMessage {
                from: from.to_base58(),
                topic,
                payload,
                at_ms: unix_ms(),
            });
        }
    }
}
