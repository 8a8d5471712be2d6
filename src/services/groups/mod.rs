//! Host-relayed groups over the message transport: the peer that creates a group hosts it,
//! members send to the host, and the host relays to every member with the sender set from the
//! connection. Topics are `group:<id>:<type>` and `group.invite`:
//!
//! | type | from | payload |
//! |---|---|---|
//! | `join` | member | `{}`; refused with `not_found`, `full`, `not_invited` or `banned` |
//! | `welcome` | host | `{"group": meta, "role", "members": [...], "state"}` |
//! | `members` | host | `{"members": [{"peer_id", "role"}]}` on every join and leave |
//! | `msg` | member → host | the application's payload |
//! | `msg` | host → members | `{"from", "payload"}` |
//! | `state` | member → host | the group's new state; host → members `{"from", "state"}` |
//! | `leave` | member | `{}` |
//! | `close` | host | `{"reason"}`: the group ended, or this member was removed |
//! | `ping` | member → host | `{}`; refused `not_member` when the member is not online in the group |
//! | `ping` | host → member | `{}`; a member that does not acknowledge it is dropped |
//! | `pong` | host | `{}` (taken, for peers that answer pings with it) |
//! | `meta` | host | the group's meta when it changes |
//! | `group.invite` | host | `{"group": meta}` |
//!
//! A chat room (app type `chat`, with history) uses `chat.room:<id>:<type>` for the same
//! messages; either prefix is taken for any group.
//!
//! An error is the refusal of the message's acknowledgement, so the sender hears it at once.
//! Members accept `welcome`, `members`, `state`, `meta` and `close` only from the host (the
//! stream's peer); messages from peers that are not members are refused and counted.
//!
//! Fan-out never waits: a relay is queued on each member's link, and a member whose queue is
//! full is dropped from the group (it rejoins when it can). Members ping the host every
//! [`GroupOptions::ping_every`], and the host pings its members as often: a host that does not
//! answer is reported offline after at most two pings, a member that does not answer the host's
//! ping is dropped, and so is one the host has not heard for [`GroupOptions::lost_after`].
//! Members rejoin by themselves when the host is back, and at start-up.
//!
//! All state is owned by one task ([`actor`]); [`Groups`] is its handle.

mod actor;
mod directory;

pub use directory::{GROUP_COLUMNS, GroupDirectory};

use std::time::Duration;

use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::services::blocklist::BlockList;
use crate::services::mq::Mq;
use crate::services::presence::peer_table::PeerTable;
use crate::store::groups::{GroupStore, SubscriptionRow};

/// The bounds of groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupOptions {
    /// Groups this peer hosts at most.
    pub max_hosted: usize,
    /// Members online in one group at most (a group's own `max_members` may be lower).
    pub max_members: usize,
    /// Groups of other hosts this peer belongs to at most.
    pub max_joined: usize,
    /// Invitations kept at most.
    pub max_invites: u32,
    /// How often members ping their hosts.
    pub ping_every: Duration,
    /// A member the host has not heard from this long is dropped.
    pub lost_after: Duration,
    /// Largest state, as JSON.
    pub max_state_bytes: usize,
}

impl Default for GroupOptions {
    fn default() -> Self {
        GroupOptions {
            max_hosted: 100,
            max_members: 100,
            max_joined: 200,
            max_invites: 100,
            ping_every: Duration::from_secs(5),
            lost_after: Duration::from_secs(15),
            max_state_bytes: 64 * 1024,
        }
    }
}

/// What a host says of a group: the meta members see.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupMeta {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub app_type: String,
    #[serde(default)]
    pub context: Json,
    /// 0: up to the host's cap.
    #[serde(default)]
    pub max_members: u32,
    #[serde(default)]
    pub persistent: bool,
    #[serde(default)]
    pub invite_only: bool,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub default_role: String,
    /// Messages the host keeps and sends to those who join (a chat room's history); 0: none.
    #[serde(default)]
    pub history: u32,
}

impl GroupMeta {
    /// A chat room: a group of app type `chat` that keeps history. Its topics are
    /// `chat.room:<id>:<type>`.
    pub fn is_room(&self) -> bool {
        self.app_type == "chat" && self.history > 0
    }
}

/// Messages a group keeps at most.
pub const MAX_HISTORY: u32 = 500;

/// A group to create.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct NewGroup {
    /// `[A-Za-z0-9._-]{1,64}`; made up when absent.
    pub id: Option<String>,
    pub name: String,
    pub app_type: String,
    pub context: Json,
    pub max_members: u32,
    pub persistent: bool,
    pub invite_only: bool,
    /// The roles the host defines (`["member"]` when empty).
    pub roles: Vec<String>,
    /// The role members get (the first role when absent).
    pub default_role: Option<String>,
    /// Messages kept for those who join (at most [`MAX_HISTORY`]); a chat room keeps some.
    pub history: u32,
}

/// A member as the group shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub peer_id: String,
    pub role: String,
}

/// A group this peer hosts.
#[derive(Debug, Clone, Serialize)]
pub struct HostedGroup {
    #[serde(flatten)]
    pub meta: GroupMeta,
    /// Members online now, the host first.
    pub members: Vec<Member>,
    /// Members who are not online now.
    pub away: Vec<Member>,
    pub invited: Vec<String>,
    pub banned: Vec<String>,
    pub state: Json,
    /// The last messages, oldest first (`{"from", "payload", "at_ms"}`), when the group keeps some.
    pub history: Vec<Json>,
}

/// A group of another host this peer belongs to.
#[derive(Debug, Clone, Serialize)]
pub struct JoinedGroup {
    pub host: String,
    pub id: String,
    pub name: String,
    pub app_type: String,
    pub role: String,
    /// The host took us in (a welcome) and answers our pings.
    pub connected: bool,
    pub members: Vec<Member>,
    pub state: Json,
    pub meta: Option<GroupMeta>,
    /// The last messages, oldest first, when the group keeps some.
    pub history: Vec<Json>,
}

/// What happens in the groups, for live pages and the browser SDK.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GroupEvent {
    /// We joined (or rejoined) a group.
    Welcome {
        host: String,
        group: String,
        role: String,
        members: Vec<Member>,
        state: Json,
    },
    Members {
        host: String,
        group: String,
        members: Vec<Member>,
    },
    Msg {
        host: String,
        group: String,
        from: String,
        payload: Json,
    },
    State {
        host: String,
        group: String,
        from: String,
        state: Json,
    },
    Meta {
        host: String,
        group: String,
        meta: GroupMeta,
    },
    /// The group ended, or we were removed from it.
    Closed {
        host: String,
        group: String,
        reason: String,
    },
    HostOffline {
        host: String,
        group: String,
    },
    HostOnline {
        host: String,
        group: String,
    },
    Invite {
        host: String,
        group: String,
        name: String,
        app_type: String,
    },
}

/// Why a group operation failed.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error("{0}")]
    Invalid(String),
    #[error("there is no group {0:?}")]
    NotFound(String),
    /// The host refused (`full`, `not_invited`, `banned`, `not_found`, `not_member`, …).
    #[error("the host refused: {0}")]
    Refused(String),
    #[error("the host could not be reached: {0}")]
    Unreachable(String),
    #[error("{0}")]
    Limit(String),
    #[error("cannot store the group in data.db: {0}")]
    Store(#[from] sqlx::Error),
    #[error("the peer is stopping")]
    Stopped,
}

/// Counts since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct GroupStats {
    /// Messages refused because their sender is not a member (or not the host).
    pub dropped: u64,
    /// Members dropped because their queue was full.
    pub dropped_slow: u64,
    /// Members dropped because they stopped pinging.
    pub dropped_silent: u64,
    /// Members dropped because they did not answer the host's ping.
    pub dropped_unanswered: u64,
}

type Reply<T> = oneshot::Sender<Result<T, GroupError>>;

/// What the handle asks of the task.
enum Command {
    Create(NewGroup, Reply<GroupMeta>),
    Close(String, Reply<()>),
    Invite(String, PeerId, Reply<()>),
    Kick(String, PeerId, bool, Reply<()>),
    SetRole(String, PeerId, String, Reply<()>),
    SetMeta(String, Option<String>, Option<Json>, Reply<GroupMeta>),
    Hosted(oneshot::Sender<Vec<HostedGroup>>),
    Joined(oneshot::Sender<Vec<JoinedGroup>>),
    Join(PeerId, String, Reply<JoinedGroup>),
    Leave(PeerId, String, Reply<()>),
    Send(PeerId, String, Json, Reply<()>),
    SetState(PeerId, String, Json, Reply<()>),
    Role(String, PeerId, oneshot::Sender<Option<String>>),
    Stats(oneshot::Sender<GroupStats>),
    Invites(Reply<Vec<SubscriptionRow>>),
    Answer(PeerId, String, bool, Reply<()>),
    AutoJoin(PeerId, bool, Reply<()>),
}

/// The groups of this peer. Cloning is cheap.
#[derive(Clone)]
pub struct Groups {
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<GroupEvent>,
    me: PeerId,
}

/// What the task needs.
pub struct GroupSetup {
    pub store: GroupStore,
    pub mq: Mq,
    pub table: PeerTable,
    pub blocked: BlockList,
    pub options: GroupOptions,
    /// Where the task publishes roles and open groups for other services.
    pub directory: GroupDirectory,
}

impl Groups {
    /// Takes the group topics of `mq` from now on; ephemeral groups of the last run are gone,
    /// persistent ones are back, and the groups this peer joined are rejoined.
    pub async fn start(
        setup: GroupSetup,
        stop: watch::Receiver<bool>,
    ) -> Result<Groups, sqlx::Error> {
        let (commands, commands_rx) = mpsc::channel(64);
        let events = broadcast::channel(1024).0;
        let me = setup.mq.peer_id();
        let task = actor::Actor::load(setup, events.clone()).await?;
        tokio::spawn(task.run(commands_rx, stop));
        Ok(Groups {
            commands,
            events,
            me,
        })
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, GroupError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| GroupError::Stopped)?;
        answer.await.map_err(|_| GroupError::Stopped)?
    }

    async fn query<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(make(reply)).await.ok()?;
        answer.await.ok()
    }

    pub fn peer_id(&self) -> PeerId {
        self.me
    }

    /// What happens from now on.
    pub fn events(&self) -> broadcast::Receiver<GroupEvent> {
        self.events.subscribe()
    }

    /// Creates a group this peer hosts.
    pub async fn create(&self, group: NewGroup) -> Result<GroupMeta, GroupError> {
        self.ask(|reply| Command::Create(group, reply)).await
    }

    /// Ends a hosted group: its members hear `close`.
    pub async fn close(&self, id: &str) -> Result<(), GroupError> {
        self.ask(|reply| Command::Close(id.to_owned(), reply)).await
    }

    /// Lets `peer` join a hosted group (invite-only groups admit no one else) and sends it
    /// the invitation.
    pub async fn invite(&self, id: &str, peer: PeerId) -> Result<(), GroupError> {
        self.ask(|reply| Command::Invite(id.to_owned(), peer, reply))
            .await
    }

    /// Removes `peer` from a hosted group; `ban` keeps it from joining again.
    pub async fn kick(&self, id: &str, peer: PeerId, ban: bool) -> Result<(), GroupError> {
        self.ask(|reply| Command::Kick(id.to_owned(), peer, ban, reply))
            .await
    }

    /// Gives a member of a hosted group one of the group's roles.
    pub async fn set_role(&self, id: &str, peer: PeerId, role: &str) -> Result<(), GroupError> {
        self.ask(|reply| Command::SetRole(id.to_owned(), peer, role.to_owned(), reply))
            .await
    }

    /// Renames a hosted group or changes its context; its members hear the new meta.
    pub async fn set_meta(
        &self,
        id: &str,
        name: Option<String>,
        context: Option<Json>,
    ) -> Result<GroupMeta, GroupError> {
        self.ask(|reply| Command::SetMeta(id.to_owned(), name, context, reply))
            .await
    }

    /// The groups this peer hosts.
    pub async fn hosted(&self) -> Vec<HostedGroup> {
        self.query(Command::Hosted).await.unwrap_or_default()
    }

    /// The groups of other hosts this peer belongs to.
    pub async fn joined(&self) -> Vec<JoinedGroup> {
        self.query(Command::Joined).await.unwrap_or_default()
    }

    /// Joins group `id` of `host`; answers once the host welcomed us.
    pub async fn join(&self, host: PeerId, id: &str) -> Result<JoinedGroup, GroupError> {
        self.ask(|reply| Command::Join(host, id.to_owned(), reply))
            .await
    }

    /// Leaves group `id` of `host` (and stops rejoining it).
    pub async fn leave(&self, host: PeerId, id: &str) -> Result<(), GroupError> {
        self.ask(|reply| Command::Leave(host, id.to_owned(), reply))
            .await
    }

    /// Sends `payload` to the members of group `id` of `host` (this peer's own or a joined one).
    pub async fn send(&self, host: PeerId, id: &str, payload: Json) -> Result<(), GroupError> {
        self.ask(|reply| Command::Send(host, id.to_owned(), payload, reply))
            .await
    }

    /// Replaces the state of group `id` of `host`; every member hears it.
    pub async fn set_state(&self, host: PeerId, id: &str, state: Json) -> Result<(), GroupError> {
        self.ask(|reply| Command::SetState(host, id.to_owned(), state, reply))
            .await
    }

    /// The role of `peer` in hosted group `id`, if it is a member (the host's is `host`).
    pub async fn role_of(&self, id: &str, peer: PeerId) -> Option<String> {
        self.query(|reply| Command::Role(id.to_owned(), peer, reply))
            .await
            .flatten()
    }

    pub async fn stats(&self) -> GroupStats {
        self.query(Command::Stats).await.unwrap_or_default()
    }

    /// Invitations not answered yet.
    pub async fn invites(&self) -> Result<Vec<SubscriptionRow>, GroupError> {
        self.ask(Command::Invites).await
    }

    /// Accepts (joins) or declines an invitation.
    pub async fn answer_invite(
        &self,
        host: PeerId,
        id: &str,
        accept: bool,
    ) -> Result<(), GroupError> {
        self.ask(|reply| Command::Answer(host, id.to_owned(), accept, reply))
            .await
    }

    /// Whether invitations from `host` are accepted without asking.
    pub async fn set_auto_join(&self, host: PeerId, auto: bool) -> Result<(), GroupError> {
        self.ask(|reply| Command::AutoJoin(host, auto, reply)).await
    }
}

/// Whether `id` may name a group: `[A-Za-z0-9._-]{1,64}`.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The topic of message `kind` of group `id`.
fn topic(id: &str, kind: &str) -> String {
    format!("group:{id}:{kind}")
}

/// The topic of message `kind` of group `id` with `meta`: a chat room's is
/// `chat.room:<id>:<kind>`, any other group's (or one whose meta is not known yet)
/// `group:<id>:<kind>`.
fn topic_of(meta: Option<&GroupMeta>, id: &str, kind: &str) -> String {
    match meta.is_some_and(GroupMeta::is_room) {
        true => format!("chat.room:{id}:{kind}"),
        false => topic(id, kind),
    }
}

/// The group and the kind of a group topic (`group:` or `chat.room:`).
fn parse_topic(topic: &str) -> Option<(&str, &str)> {
    let rest = topic
        .strip_prefix("group:")
        .or_else(|| topic.strip_prefix("chat.room:"))?;
    let (id, kind) = rest.rsplit_once(':')?;
    valid_id(id).then_some((id, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_topics_name_the_group_and_the_kind() {
        assert_eq!(topic("chess-42", "join"), "group:chess-42:join");
        assert_eq!(
            parse_topic("group:chess-42:join"),
            Some(("chess-42", "join"))
        );
        assert_eq!(parse_topic("group:a.b_c:msg"), Some(("a.b_c", "msg")));
        assert_eq!(parse_topic("group:bad id:msg"), None);
        assert_eq!(parse_topic("group::msg"), None);
        assert_eq!(parse_topic("chat"), None);
        assert_eq!(parse_topic("chat.room:lobby:msg"), Some(("lobby", "msg")));
        assert!(valid_id(&"x".repeat(64)) && !valid_id(&"x".repeat(65)));
    }
}
