//! `identity`: a peer asks who this peer is, and is answered with an `identity.response`
//! carrying what this peer announces (its label, avatar hash, active template, version — not
//! its email, which only hubs are told). Peers that met without a hub or the LAN, such as the
//! original Go peers, learn each other's names this way: [`Identities`] asks a peer that wrote
//! to us and that no presence names, and keeps its answer (only answers it asked for).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use serde_json::json;
use tokio::sync::{mpsc, watch};

use super::{Incoming, Mq};
use crate::services::blocklist::BlockList;
use crate::services::presence::hub_client::Announcement;

pub const TOPIC: &str = "identity";
pub const RESPONSE_TOPIC: &str = "identity.response";

/// Answers the requests `asked` (what [`Mq::subscribe`] of [`TOPIC`] gives, taken before the
/// transport serves) with what `announcement` says now, until the peer stops.
pub fn serve(
    mq: Mq,
    asked: mpsc::Receiver<Incoming>,
    announcement: watch::Receiver<Announcement>,
    blocked: BlockList,
    stop: watch::Receiver<bool>,
) {
    tokio::spawn(answer(mq, asked, announcement, blocked, stop));
}

async fn answer(
    mq: Mq,
    mut asked: mpsc::Receiver<Incoming>,
    announcement: watch::Receiver<Announcement>,
    blocked: BlockList,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let message = tokio::select! {
            message = asked.recv() => message,
            () = crate::services::until_stopped(&mut stop) => None,
        };
        let Some(message) = message else { return };
        let from: PeerId = message.from;
        if blocked.contains(&from) {
            message.reply.refuse("blocked");
            continue;
        }
        message.reply.accept();
        let response = {
            let now = announcement.borrow();
            json!({
                "peerId": mq.peer_id().to_base58(),
                "content": now.content,
                "avatarHash": now.avatar_hash,
                "activeTemplate": now.active_template,
                "goopClientVersion": env!("CARGO_PKG_VERSION"),
            })
        };
        // What becomes of the answer is the asker's concern; a full queue drops it.
        if let Err(err) = mq.enqueue(from, RESPONSE_TOPIC, response) {
            tracing::debug!(peer.id = %from, "cannot answer an identity request: {err}");
        }
    }
}

/// Names learnt from `identity.response`s, at most this many (the oldest go).
const KEPT: usize = 1000;
/// How long an asked peer's answer is awaited.
const ASKED_FOR: Duration = Duration::from_secs(60);
/// Longest name kept.
const MAX_NAME: usize = 256;

/// The names peers gave when asked. Cloning is cheap.
#[derive(Clone)]
pub struct Identities {
    mq: Mq,
    state: Arc<Mutex<Known>>,
}

#[derive(Default)]
struct Known {
    names: HashMap<PeerId, String>,
    order: VecDeque<PeerId>,
    asked: HashMap<PeerId, Instant>,
}

impl Identities {
    /// Takes the answers of `mq` from now on (call before the transport serves).
    pub fn start(mq: Mq, stop: watch::Receiver<bool>) -> Identities {
        let identities = Identities {
            state: Arc::default(),
            mq: mq.clone(),
        };
        let answers = mq.subscribe(RESPONSE_TOPIC);
        tokio::spawn(identities.clone().take(answers, stop));
        identities
    }

    /// The name `peer` gave, if it was asked and answered.
    pub fn name(&self, peer: &PeerId) -> Option<String> {
        self.state
            .lock()
            .expect("not poisoned")
            .names
            .get(peer)
            .cloned()
    }

    /// Asks `peer` who it is, unless it was asked within the last minute or answered.
    pub fn ask(&self, peer: PeerId) {
        {
            let mut state = self.state.lock().expect("not poisoned");
            let now = Instant::now();
            state
                .asked
                .retain(|_, at| now.duration_since(*at) < ASKED_FOR);
            if state.names.contains_key(&peer) || state.asked.contains_key(&peer) {
                return;
            }
            if state.asked.len() >= KEPT {
                return;
            }
            state.asked.insert(peer, now);
        }
        if let Err(err) = self.mq.enqueue(peer, TOPIC, json!({})) {
            tracing::debug!(peer.id = %peer, "cannot ask who a peer is: {err}");
        }
    }

    async fn take(self, mut answers: mpsc::Receiver<Incoming>, mut stop: watch::Receiver<bool>) {
        loop {
            let message = tokio::select! {
                message = answers.recv() => message,
                () = crate::services::until_stopped(&mut stop) => None,
            };
            let Some(message) = message else { return };
            let name = message.payload["content"].as_str().map(|name| {
                let mut cut = name.len().min(MAX_NAME);
                while !name.is_char_boundary(cut) {
                    cut -= 1;
                }
                name[..cut].to_owned()
            });
            let mut state = self.state.lock().expect("not poisoned");
            if state.asked.remove(&message.from).is_none() {
                drop(state);
                message.reply.refuse("not asked");
                continue;
            }
            let Some(name) = name else {
                drop(state);
                message
                    .reply
                    .refuse("an identity.response has `content`, the peer's name");
                continue;
            };
            if state.names.insert(message.from, name).is_none() {
                state.order.push_back(message.from);
            }
            while state.order.len() > KEPT {
                if let Some(oldest) = state.order.pop_front() {
                    state.names.remove(&oldest);
                }
            }
            drop(state);
            message.reply.accept();
        }
    }
}
