//! Chat over the message transport: direct messages (topic `chat`, payload `{"text"}`), kept
//! per peer in `data.db` with their read state and what became of each one sent; broadcasts
//! (topic `chat.broadcast`) to every online peer, kept in memory only; the owner's block list;
//! and `!name args` in a direct message answered by the owner's Lua chat command.
//!
//! A message is acknowledged once it is stored, so a sender told "delivered" never loses it to
//! a crash of the receiver; a message that could not be delivered is stored as `failed` with
//! the reason. Everything that happens is also published on [`Chat::events`] for live pages.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use libp2p::PeerId;
use serde::Serialize;
use serde_json::{Value as Json, json};
use tokio::sync::{broadcast, mpsc, watch};

use crate::services::blocklist::BlockList;
use crate::services::hub::unix_ms;
use crate::services::lua::{LuaCaller, LuaEngine, LuaSlot};
use crate::services::mq::identity::Identities;
use crate::services::mq::{Incoming, Mq, MqError};
use crate::services::presence::peer_table::{PeerState, PeerTable};
use crate::store::chat::{ChatRow, ChatStore, NewChat};

pub const TOPIC: &str = "chat";
pub const BROADCAST_TOPIC: &str = "chat.broadcast";

/// The bounds of chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatOptions {
    /// Messages kept per conversation, the newest.
    pub history_per_peer: u32,
    /// Messages kept in all conversations together.
    pub history_in_all: u32,
    /// Longest message text.
    pub max_text_bytes: usize,
    /// Direct messages one peer may send us per second, and in a burst.
    pub direct_per_second: u32,
    pub direct_burst: u32,
    /// Broadcasts one peer may send us per minute (a burst of as many).
    pub broadcasts_per_minute: u32,
    /// Broadcasts this peer may send per minute.
    pub own_broadcasts_per_minute: u32,
    /// Broadcasts kept in memory for the console.
    pub recent_broadcasts: usize,
    /// Peers a broadcast goes to at most.
    pub broadcast_recipients: usize,
}

impl Default for ChatOptions {
    fn default() -> Self {
        ChatOptions {
            history_per_peer: 1000,
            history_in_all: 100_000,
            max_text_bytes: 4096,
            direct_per_second: 5,
            direct_burst: 20,
            broadcasts_per_minute: 10,
            own_broadcasts_per_minute: 10,
            recent_broadcasts: 100,
            broadcast_recipients: 1000,
        }
    }
}

/// Why chat could not do something.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("{0}")]
    Invalid(String),
    #[error("too many broadcasts; wait a little")]
    RateLimited,
    #[error("this peer is blocked; unblock it first")]
    Blocked,
    #[error("cannot store the message in data.db: {0}")]
    Store(#[from] sqlx::Error),
}

/// A broadcast heard or sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Broadcast {
    /// Who sent it (this peer's own ID for its own).
    pub from: String,
    pub text: String,
    pub at_ms: i64,
}

/// What became of a broadcast this peer sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BroadcastOutcome {
    /// Online peers it went to.
    pub sent: usize,
    pub delivered: usize,
    pub failed: usize,
}

/// Something that happened, for live pages.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChatEvent {
    /// A direct message arrived or was sent.
    Message {
        message: ChatRow,
    },
    /// What became of a message sent.
    Status {
        message: ChatRow,
    },
    /// A conversation was read.
    Read {
        peer_id: String,
    },
    Broadcast {
        broadcast: Broadcast,
    },
}

/// Chat. Cloning is cheap.
#[derive(Clone)]
pub struct Chat {
    inner: Arc<Inner>,
}

struct Inner {
    store: ChatStore,
    mq: Mq,
    table: PeerTable,
    identities: Identities,
    lua: LuaSlot,
    options: ChatOptions,
    events: broadcast::Sender<ChatEvent>,
    blocked: BlockList,
    recent: Mutex<VecDeque<Broadcast>>,
    heard: DefaultKeyedRateLimiter<PeerId>,
    direct: DefaultKeyedRateLimiter<PeerId>,
    own: DefaultDirectRateLimiter,
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n.max(1)).expect("at least one"))
}

/// What chat needs.
pub struct ChatSetup {
    pub store: ChatStore,
    pub blocked: BlockList,
    pub mq: Mq,
    /// Who peers are (their labels, for Lua chat commands; whether presence names them).
    pub table: PeerTable,
    pub identities: Identities,
    /// The owner's chat commands, once Lua runs.
    pub lua: LuaSlot,
    pub options: ChatOptions,
}

impl Chat {
    /// Chat on `mq`: takes the chat topics from now on, and records messages left `sending` by
    /// the last run as not delivered.
    pub async fn start(setup: ChatSetup, stop: watch::Receiver<bool>) -> Result<Chat, sqlx::Error> {
        let ChatSetup {
            store,
            blocked,
            mq,
            table,
            identities,
            lua,
            options,
        } = setup;
        store
            .fail_unfinished("the peer stopped before the message was delivered")
            .await?;
        let direct = mq.subscribe(TOPIC);
        let broadcasts = mq.subscribe(BROADCAST_TOPIC);
        let chat = Chat {
            inner: Arc::new(Inner {
                store,
                mq,
                table,
                identities,
                lua,
                events: broadcast::channel(256).0,
                blocked,
                recent: Mutex::new(VecDeque::new()),
                heard: RateLimiter::keyed(per_minute(options.broadcasts_per_minute)),
                direct: RateLimiter::keyed(
                    Quota::per_second(
                        NonZeroU32::new(options.direct_per_second.max(1)).expect("at least one"),
                    )
                    .allow_burst(
                        NonZeroU32::new(options.direct_burst.max(1)).expect("at least one"),
                    ),
                ),
                own: RateLimiter::direct(per_minute(options.own_broadcasts_per_minute)),
                options,
            }),
        };
        tokio::spawn(chat.clone().take(direct, stop.clone(), Kind::Direct));
        tokio::spawn(chat.clone().take(broadcasts, stop, Kind::Broadcast));
        Ok(chat)
    }

    /// What happens from now on.
    pub fn events(&self) -> broadcast::Receiver<ChatEvent> {
        self.inner.events.subscribe()
    }

    pub fn options(&self) -> ChatOptions {
        self.inner.options
    }

    /// Sends `text` to `peer` and stores it with what became of it: `delivered` once the peer
    /// acknowledged it, `failed` with the reason otherwise.
    pub async fn send(&self, peer: PeerId, text: &str) -> Result<ChatRow, ChatError> {
        let text = self.checked_text(text)?;
        if self.is_blocked(&peer) {
            return Err(ChatError::Blocked);
        }
        let inner = &self.inner;
        let msg_id = format!("{:032x}", rand::random::<u128>());
        let row = inner
            .store
            .append(
                &NewChat {
                    peer_id: &peer.to_base58(),
                    outgoing: true,
                    text,
                    msg_id: &msg_id,
                    at_ms: unix_ms(),
                    status: "sending",
                },
                inner.options.history_per_peer,
                inner.options.history_in_all,
            )
            .await?
            .expect("a fresh id is stored");
        let _ = inner.events.send(ChatEvent::Message {
            message: row.clone(),
        });
        let outcome = inner.mq.send(peer, TOPIC, json!({ "text": text })).await;
        let (status, error) = match &outcome {
            Ok(()) => ("delivered", None),
            Err(err) => ("failed", Some(not_delivered(err))),
        };
        let row = inner
            .store
            .set_status(row.id, status, error.as_deref())
            .await?
            // Dropped already by the bound of the conversation: what it became is still told.
            .unwrap_or(ChatRow {
                status: status.into(),
                error,
                ..row
            });
        let _ = inner.events.send(ChatEvent::Status {
            message: row.clone(),
        });
        Ok(row)
    }

    /// The conversation with `peer`: up to `limit` messages before row `before`, oldest first.
    pub async fn history(
        &self,
        peer: &PeerId,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<ChatRow>, ChatError> {
        Ok(self
            .inner
            .store
            .history(&peer.to_base58(), before, limit)
            .await?)
    }

    /// Marks the conversation with `peer` as read.
    pub async fn mark_read(&self, peer: &PeerId) -> Result<(), ChatError> {
        let id = peer.to_base58();
        if self.inner.store.mark_read(&id).await? > 0 {
            let _ = self.inner.events.send(ChatEvent::Read { peer_id: id });
        }
        Ok(())
    }

    /// Unread messages per peer.
    pub async fn unread(&self) -> Result<HashMap<String, i64>, ChatError> {
        Ok(self.inner.store.unread().await?.into_iter().collect())
    }

    /// The latest message of each conversation, newest first.
    pub async fn conversations(&self, limit: u32) -> Result<Vec<ChatRow>, ChatError> {
        Ok(self.inner.store.conversations(limit).await?)
    }

    /// Sends `text` to every online peer (at most [`ChatOptions::broadcast_recipients`]) and
    /// waits for each to answer or fail.
    pub async fn broadcast(&self, text: &str) -> Result<BroadcastOutcome, ChatError> {
        let text = self.checked_text(text)?;
        let inner = &self.inner;
        if inner.own.check().is_err() {
            return Err(ChatError::RateLimited);
        }
        let me = inner.mq.peer_id();
        let recipients: Vec<PeerId> = inner
            .table
            .snapshot()
            .await
            .into_iter()
            .filter(|peer| peer.state == PeerState::Online && !peer.stranger)
            .map(|peer| peer.peer_id)
            .filter(|peer| *peer != me && !self.is_blocked(peer))
            .take(inner.options.broadcast_recipients)
            .collect();
        let mut outcome = BroadcastOutcome {
            sent: recipients.len(),
            delivered: 0,
            failed: 0,
        };
        let mut waiting = Vec::new();
        for peer in recipients {
            match inner
                .mq
                .enqueue(peer, BROADCAST_TOPIC, json!({ "text": text }))
            {
                Ok(done) => waiting.push(done),
                Err(_) => outcome.failed += 1,
            }
        }
        for done in waiting {
            match done.await {
                Ok(Ok(())) => outcome.delivered += 1,
                _ => outcome.failed += 1,
            }
        }
        self.remember(Broadcast {
            from: me.to_base58(),
            text: text.to_owned(),
            at_ms: unix_ms(),
        });
        Ok(outcome)
    }

    /// The broadcasts heard and sent lately, oldest first.
    pub fn recent_broadcasts(&self) -> Vec<Broadcast> {
        let recent = self.inner.recent.lock().expect("not poisoned");
        recent.iter().cloned().collect()
    }

    pub fn is_blocked(&self, peer: &PeerId) -> bool {
        self.inner.blocked.contains(peer)
    }

    /// Blocks or unblocks `peer`.
    pub async fn set_blocked(&self, peer: PeerId, blocked: bool) -> Result<(), ChatError> {
        Ok(self.inner.blocked.set(peer, blocked).await?)
    }

    /// The blocked peers.
    pub fn blocked(&self) -> Vec<PeerId> {
        self.inner.blocked.peers()
    }

    fn checked_text<'a>(&self, text: &'a str) -> Result<&'a str, ChatError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(ChatError::Invalid("a message may not be empty".into()));
        }
        let max = self.inner.options.max_text_bytes;
        if text.len() > max {
            return Err(ChatError::Invalid(format!(
                "a message is at most {max} bytes"
            )));
        }
        Ok(text)
    }

    fn remember(&self, broadcast: Broadcast) {
        let mut recent = self.inner.recent.lock().expect("not poisoned");
        recent.push_back(broadcast.clone());
        while recent.len() > self.inner.options.recent_broadcasts {
            recent.pop_front();
        }
        drop(recent);
        let _ = self.inner.events.send(ChatEvent::Broadcast { broadcast });
    }

    /// Takes the messages of one chat topic until the peer stops.
    async fn take(
        self,
        mut incoming: mpsc::Receiver<Incoming>,
        mut stop: watch::Receiver<bool>,
        kind: Kind,
    ) {
        // The rate limits of peers long quiet are forgotten now and then.
        let mut tidy = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            let message = tokio::select! {
                message = incoming.recv() => message,
                _ = tidy.tick() => {
                    self.inner.heard.retain_recent();
                    self.inner.direct.retain_recent();
                    continue;
                }
                _ = stop.wait_for(|s| *s) => None,
            };
            let Some(message) = message else { return };
            match kind {
                Kind::Direct => self.heard_direct(message).await,
                Kind::Broadcast => self.heard_broadcast(message),
            }
        }
    }

    async fn heard_direct(&self, message: Incoming) {
        let Incoming {
            from,
            id,
            payload,
            reply,
            ..
        } = message;
        if self.is_blocked(&from) {
            return reply.refuse("blocked");
        }
        if self.inner.direct.check_key(&from).is_err() {
            return reply.refuse("rate limited");
        }
        let text = match self.text_of(&payload) {
            Ok(text) => text,
            Err(reason) => return reply.refuse(reason),
        };
        if reply.is_expired() {
            return;
        }
        let inner = &self.inner;
        let stored = inner
            .store
            .append(
                &NewChat {
                    peer_id: &from.to_base58(),
                    outgoing: false,
                    text: &text,
                    msg_id: &id,
                    at_ms: unix_ms(),
                    status: "received",
                },
                inner.options.history_per_peer,
                inner.options.history_in_all,
            )
            .await;
        match stored {
            // Stored too late: the sender was told the message was not taken, so it is not kept.
            Ok(Some(row)) if reply.is_expired() => {
                if let Err(err) = inner.store.remove(row.id).await {
                    tracing::error!("cannot remove a chat message stored too late: {err}");
                }
                return;
            }
            Ok(Some(row)) => {
                reply.accept();
                let _ = inner.events.send(ChatEvent::Message { message: row });
                // A peer no presence names is asked who it is.
                if inner.table.identity(&from).await.is_none() {
                    inner.identities.ask(from);
                }
            }
            // Stored before: the sender did not hear so.
            Ok(None) => reply.accept(),
            Err(err) => {
                tracing::error!("cannot store a chat message: {err}");
                return reply.refuse("the receiver cannot store messages now");
            }
        }
        if let Some(lua) = inner.lua.get()
            && text.trim_start().starts_with('!')
        {
            let chat = self.clone();
            let lua = lua.clone();
            tokio::spawn(async move { chat.answer_command(lua, from, text).await });
        }
    }

    /// Runs the owner's chat command in `text` for `from`, and sends the reply.
    async fn answer_command(&self, lua: LuaEngine, from: PeerId, text: String) {
        let identity = self.inner.table.identity(&from).await;
        let caller = LuaCaller {
            id: from.to_base58(),
            label: identity
                .as_ref()
                .map(|i| i.label.clone())
                .unwrap_or_default(),
            email: identity.and_then(|i| i.verified_email).unwrap_or_default(),
            owner: false,
        };
        let Some(answer) = lua.dispatch(&text, caller).await else {
            return;
        };
        let max = self.inner.options.max_text_bytes;
        let mut answer = answer;
        if answer.len() > max {
            let mut cut = max;
            while !answer.is_char_boundary(cut) {
                cut -= 1;
            }
            answer.truncate(cut);
        }
        if let Err(err) = self.send(from, &answer).await {
            tracing::debug!(peer.id = %from, "cannot answer a chat command: {err}");
        }
    }

    fn heard_broadcast(&self, message: Incoming) {
        if self.is_blocked(&message.from) {
            return message.reply.refuse("blocked");
        }
        if self.inner.heard.check_key(&message.from).is_err() {
            return message.reply.refuse("rate limited");
        }
        match self.text_of(&message.payload) {
            Ok(text) => {
                self.remember(Broadcast {
                    from: message.from.to_base58(),
                    text,
                    at_ms: unix_ms(),
                });
                message.reply.accept();
            }
            Err(reason) => message.reply.refuse(reason),
        }
    }

    /// The text of a chat payload: `{"text": …}`, or a bare string.
    fn text_of(&self, payload: &Json) -> Result<String, String> {
        let text = match payload {
            Json::String(text) => Some(text.as_str()),
            Json::Object(fields) => fields.get("text").and_then(Json::as_str),
            _ => None,
        };
        let Some(text) = text else {
            return Err("a chat message is {\"text\": \"…\"}".into());
        };
        self.checked_text(text)
            .map(str::to_owned)
            .map_err(|err| err.to_string())
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Direct,
    Broadcast,
}

/// Why a message was not delivered, in the owner's words.
fn not_delivered(error: &MqError) -> String {
    match error {
        MqError::Unreachable(_) | MqError::NotAcknowledged(_) => {
            format!("not delivered: the peer is offline or not answering ({error})")
        }
        other => format!("not delivered: {other}"),
    }
}
