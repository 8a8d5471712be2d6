//! The task that owns every group: the groups this peer hosts (their places, who is online, the
//! state) and the groups it joined (connected or not, members, state). It never waits on the
//! network: messages are queued on the transport, and what becomes of pings and joins comes
//! back as an [`Outcome`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use libp2p::PeerId;
use serde_json::{Value as Json, json};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;

use super::{
    Command, GroupError, GroupEvent, GroupMeta, GroupOptions, GroupSetup, GroupStats, HostedGroup,
    JoinedGroup, Member, NewGroup, Reply, parse_topic, topic_of, valid_id,
};
use crate::services::blocklist::BlockList;
use crate::services::hub::unix_ms;
use crate::services::mq::{Incoming, Mq, MqError};
use crate::services::node::protocols::mq::MAX_PAYLOAD_BYTES;
use crate::services::presence::peer_table::{PeerState, PeerTable};
use crate::store::groups::{GroupRow, GroupStore, MemberRow, SubscriptionRow};

/// How long a join waits for the host's welcome.
const JOIN_WAIT: Duration = Duration::from_secs(10);
/// How often a member tries to rejoin a host that is not listed online.
const REJOIN_AWAY: Duration = Duration::from_secs(30);
/// Invitations of one host kept at most (of [`GroupOptions::max_invites`] in all).
const INVITES_PER_HOST: u32 = 10;
/// The role the host has in its own groups.
pub const HOST_ROLE: &str = "host";
/// Longest group name, app type, role and context.
const MAX_NAME_BYTES: usize = 128;
const MAX_APP_TYPE_BYTES: usize = 64;
const MAX_ROLE_BYTES: usize = 32;
const MAX_ROLES: usize = 16;
const MAX_CONTEXT_BYTES: usize = 16 * 1024;

pub(super) struct Actor {
    me: PeerId,
    store: GroupStore,
    mq: Mq,
    table: PeerTable,
    blocked: BlockList,
    options: GroupOptions,
    events: broadcast::Sender<GroupEvent>,
    hosted: HashMap<String, Hosted>,
    joined: HashMap<(PeerId, String), Joined>,
    auto_join: HashSet<PeerId>,
    stats: GroupStats,
    incoming: mpsc::Receiver<Incoming>,
    /// The same messages of chat rooms (`chat.room:*`).
    rooms: mpsc::Receiver<Incoming>,
    invitations: mpsc::Receiver<Incoming>,
    outcomes: mpsc::Sender<Outcome>,
    outcomes_rx: mpsc::Receiver<Outcome>,
    directory: super::GroupDirectory,
    /// When the host last pinged its members.
    pinged_members: Option<Instant>,
}

struct Hosted {
    meta: GroupMeta,
    state: Json,
    /// Peers with a place in the group.
    places: HashMap<PeerId, Place>,
    /// Members online now, with when they were last heard from.
    online: HashMap<PeerId, Instant>,
    /// Someone joined since the group began (an ephemeral group ends with its last member).
    had_members: bool,
    /// The last messages, when the group keeps some.
    recent: VecDeque<Json>,
}

impl Hosted {
    fn new(meta: GroupMeta, state: Json) -> Hosted {
        Hosted {
            meta,
            state,
            places: HashMap::new(),
            online: HashMap::new(),
            had_members: false,
            recent: VecDeque::new(),
        }
    }

    /// Keeps a relayed message in the group's history.
    fn remember(&mut self, relayed: &Json) {
        keep(&mut self.recent, relayed, self.meta.history);
    }
}

/// Appends `message` with its time to `history`, keeping at most `max`.
fn keep(history: &mut VecDeque<Json>, message: &Json, max: u32) {
    if max == 0 {
        return;
    }
    let mut message = message.clone();
    message["at_ms"] = json!(unix_ms());
    history.push_back(message);
    while history.len() > max as usize {
        history.pop_front();
    }
}

#[derive(Clone)]
struct Place {
    role: String,
    status: Status,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Member,
    Invited,
    Banned,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Member => "member",
            Status::Invited => "invited",
            Status::Banned => "banned",
        }
    }

    fn parse(text: &str) -> Option<Status> {
        match text {
            "member" => Some(Status::Member),
            "invited" => Some(Status::Invited),
            "banned" => Some(Status::Banned),
            _ => None,
        }
    }
}

struct Joined {
    name: String,
    app_type: String,
    role: String,
    meta: Option<GroupMeta>,
    /// Welcomed, and the host answers our pings.
    connected: bool,
    members: Vec<super::Member>,
    state: Json,
    /// When a ping or a join was last sent.
    last_try: Option<Instant>,
    /// A ping or a join is on its way.
    in_flight: bool,
    host_offline: bool,
    /// Stored in `_group_subscriptions` (welcomed once).
    stored: bool,
    /// Callers waiting for the welcome, since when.
    waiting: Vec<(Instant, Reply<JoinedGroup>)>,
    /// The last messages, from the welcome on.
    history: VecDeque<Json>,
}

impl Joined {
    fn new() -> Joined {
        Joined {
            name: String::new(),
            app_type: String::new(),
            role: String::new(),
            meta: None,
            connected: false,
            members: Vec::new(),
            state: Json::Null,
            last_try: None,
            in_flight: false,
            host_offline: false,
            stored: false,
            waiting: Vec::new(),
            history: VecDeque::new(),
        }
    }

    fn view(&self, host: &PeerId, id: &str) -> JoinedGroup {
        JoinedGroup {
            host: host.to_base58(),
            id: id.to_owned(),
            name: self.name.clone(),
            app_type: self.app_type.clone(),
            role: self.role.clone(),
            connected: self.connected,
            members: self.members.clone(),
            state: self.state.clone(),
            meta: self.meta.clone(),
            history: self.history.iter().cloned().collect(),
        }
    }
}

/// What became of a ping or a join sent in the background.
pub(super) enum Outcome {
    Ping(PeerId, String, Result<(), MqError>),
    Join(PeerId, String, Result<(), MqError>),
    /// The host took our message: it is ours in the group's history, and our pages hear it.
    Sent(PeerId, String, Json),
    /// What became of the host's ping of a member of its group.
    MemberPing(String, PeerId, Result<(), MqError>),
}

impl Actor {
    pub(super) async fn load(
        setup: GroupSetup,
        events: broadcast::Sender<GroupEvent>,
    ) -> Result<Actor, sqlx::Error> {
        let GroupSetup {
            store,
            mq,
            table,
            blocked,
            options,
            directory,
        } = setup;
        store.delete_ephemeral().await?;
        let mut hosted = HashMap::new();
        for row in store.groups().await? {
            let group = Hosted::new(
                meta_of(&row),
                serde_json::from_str(&row.state).unwrap_or(Json::Null),
            );
            hosted.insert(row.id, group);
        }
        for member in store.members().await? {
            let (Some(group), Ok(peer), Some(status)) = (
                hosted.get_mut(&member.group_id),
                member.peer_id.parse::<PeerId>(),
                Status::parse(&member.status),
            ) else {
                continue;
            };
            group.places.insert(
                peer,
                Place {
                    role: member.role,
                    status,
                },
            );
        }
        let mut joined = HashMap::new();
        for row in store.subscriptions().await? {
            let Ok(host) = row.host_peer_id.parse::<PeerId>() else {
                continue;
            };
            let mut entry = Joined::new();
            entry.name = row.group_name;
            entry.app_type = row.app_type;
            entry.role = row.role;
            entry.stored = true;
            joined.insert((host, row.group_id), entry);
        }
        let auto_join = store
            .auto_join_hosts()
            .await?
            .iter()
            .filter_map(|id| id.parse().ok())
            .collect();
        let (outcomes, outcomes_rx) = mpsc::channel(256);
        Ok(Actor {
            me: mq.peer_id(),
            incoming: mq.subscribe("group:*"),
            rooms: mq.subscribe("chat.room:*"),
            invitations: mq.subscribe("group.invite"),
            store,
            mq,
            table,
            blocked,
            options,
            events,
            hosted,
            joined,
            auto_join,
            stats: GroupStats::default(),
            outcomes,
            outcomes_rx,
            directory,
            pinged_members: None,
        })
    }

    pub(super) async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.publish();
        loop {
            // Whether who belongs where may have changed (messages and pings change nothing
            // the directory shows but the count of members online, which the tick refreshes).
            let changed = tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => { self.command(command).await; true }
                    None => return,
                },
                Some(message) = self.incoming.recv() => {
                    let busy = parse_topic(&message.topic)
                        .is_some_and(|(_, kind)| matches!(kind, "msg" | "ping" | "pong" | "state"));
                    self.heard(message).await;
                    !busy
                }
                Some(message) = self.rooms.recv() => {
                    let busy = parse_topic(&message.topic)
                        .is_some_and(|(_, kind)| matches!(kind, "msg" | "ping" | "pong" | "state"));
                    self.heard(message).await;
                    !busy
                }
                Some(message) = self.invitations.recv() => { self.invited(message).await; false }
                Some(outcome) = self.outcomes_rx.recv() => { self.outcome(outcome).await; false }
                _ = tick.tick() => { self.tick().await; true }
                _ = crate::services::until_stopped(&mut stop) => return,
            };
            if changed {
                self.publish();
            }
        }
    }

    /// Publishes the roles and the open groups for the services that read them.
    fn publish(&self) {
        let mut published = super::directory::Published::default();
        for (id, group) in &self.hosted {
            let mut roles: HashMap<PeerId, String> = group
                .places
                .iter()
                .filter(|(_, place)| place.status == Status::Member)
                .map(|(peer, place)| (*peer, place.role.clone()))
                .collect();
            roles.insert(self.me, HOST_ROLE.to_owned());
            published.roles.insert(id.clone(), roles);
            if !group.meta.invite_only {
                published.open.push(super::directory::row(
                    &group.meta,
                    group.online.len() + 1,
                    &self.me,
                ));
            }
        }
        published
            .open
            .sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        self.directory.publish(published);
    }

    fn emit(&self, event: GroupEvent) {
        let _ = self.events.send(event);
    }

    async fn command(&mut self, command: Command) {
        match command {
            Command::Create(group, reply) => {
                let _ = reply.send(self.create(group).await);
            }
            Command::Close(id, reply) => {
                let _ = reply.send(self.close(&id, "closed by the host").await);
            }
            Command::Invite(id, peer, reply) => self.invite(&id, peer, reply).await,
            Command::Kick(id, peer, ban, reply) => {
                let _ = reply.send(self.kick(&id, peer, ban).await);
            }
            Command::SetRole(id, peer, role, reply) => {
                let _ = reply.send(self.set_role(&id, peer, &role).await);
            }
            Command::SetMeta(id, name, context, reply) => {
                let _ = reply.send(self.set_meta(&id, name, context).await);
            }
            Command::Hosted(reply) => {
                let _ = reply.send(self.hosted_view());
            }
            Command::Joined(reply) => {
                let mut list: Vec<JoinedGroup> = self
                    .joined
                    .iter()
                    .map(|((host, id), entry)| entry.view(host, id))
                    .collect();
                list.sort_by(|a, b| (&a.host, &a.id).cmp(&(&b.host, &b.id)));
                let _ = reply.send(list);
            }
            Command::Join(host, id, reply) => self.join(host, id, reply),
            Command::Leave(host, id, reply) => {
                let _ = reply.send(self.leave(host, &id).await);
            }
            Command::Send(host, id, payload, reply) => self.send(host, &id, payload, reply),
            Command::SetState(host, id, state, reply) => {
                self.set_state(host, &id, state, reply).await
            }
            Command::Role(id, peer, reply) => {
                let role = self
                    .hosted
                    .get(&id)
                    .and_then(|group| match peer == self.me {
                        true => Some(HOST_ROLE.to_owned()),
                        false => group
                            .places
                            .get(&peer)
                            .filter(|place| place.status == Status::Member)
                            .map(|place| place.role.clone()),
                    });
                let _ = reply.send(role);
            }
            Command::Stats(reply) => {
                let _ = reply.send(self.stats);
            }
            Command::Invites(reply) => {
                let _ = reply.send(self.store.invites().await.map_err(GroupError::from));
            }
            Command::Answer(host, id, accept, reply) => {
                if let Err(err) = self.store.remove_invite(&host.to_base58(), &id).await {
                    let _ = reply.send(Err(err.into()));
                    return;
                }
                match accept {
                    true => {
                        // Answered once the host welcomed us.
                        let (joined, welcomed) = oneshot::channel();
                        self.join(host, id, joined);
                        tokio::spawn(async move {
                            let outcome = match welcomed.await {
                                Ok(result) => result.map(|_| ()),
                                Err(_) => Err(GroupError::Stopped),
                            };
                            let _ = reply.send(outcome);
                        });
                    }
                    false => {
                        let _ = reply.send(Ok(()));
                    }
                }
            }
            Command::AutoJoin(host, auto, reply) => {
                let stored = self
                    .store
                    .set_auto_join(&host.to_base58(), auto, unix_ms())
                    .await;
                if stored.is_ok() {
                    match auto {
                        true => self.auto_join.insert(host),
                        false => self.auto_join.remove(&host),
                    };
                }
                let _ = reply.send(stored.map_err(GroupError::from));
            }
        }
    }

    // ---- hosting ----

    async fn create(&mut self, new: NewGroup) -> Result<GroupMeta, GroupError> {
        let options = self.options;
        if self.hosted.len() >= options.max_hosted {
            return Err(GroupError::Limit(format!(
                "this peer hosts {} groups already, the most it may",
                options.max_hosted
            )));
        }
        let id = new
            .id
            .unwrap_or_else(|| format!("g-{:012x}", rand::random::<u64>() >> 16));
        if !valid_id(&id) {
            return Err(GroupError::Invalid(format!(
                "a group id is 1 to 64 letters, digits, '.', '_' or '-'; {id:?} is not"
            )));
        }
        if self.hosted.contains_key(&id) {
            return Err(GroupError::Invalid(format!(
                "a group {id:?} exists already"
            )));
        }
        let name = match new.name.trim() {
            "" => id.clone(),
            name => name.to_owned(),
        };
        if name.len() > MAX_NAME_BYTES {
            return Err(GroupError::Invalid(format!(
                "a group name is at most {MAX_NAME_BYTES} bytes"
            )));
        }
        if new.app_type.len() > MAX_APP_TYPE_BYTES {
            return Err(GroupError::Invalid(format!(
                "app_type is at most {MAX_APP_TYPE_BYTES} bytes"
            )));
        }
        if json_len(&new.context) > MAX_CONTEXT_BYTES {
            return Err(GroupError::Invalid(format!(
                "context is at most {MAX_CONTEXT_BYTES} bytes of JSON"
            )));
        }
        let roles = match new.roles.is_empty() {
            true => vec!["member".to_owned()],
            false => new.roles,
        };
        if roles.len() > MAX_ROLES {
            return Err(GroupError::Invalid(format!(
                "a group has at most {MAX_ROLES} roles"
            )));
        }
        for role in &roles {
            if !valid_role(role) {
                return Err(GroupError::Invalid(format!(
                    "a role is 1 to {MAX_ROLE_BYTES} letters, digits, '_' or '-' (and not \
                     \"{HOST_ROLE}\"); {role:?} is not"
                )));
            }
        }
        let default_role = new.default_role.unwrap_or_else(|| roles[0].clone());
        if !roles.contains(&default_role) {
            return Err(GroupError::Invalid(format!(
                "default_role {default_role:?} is not one of the roles {roles:?}"
            )));
        }
        if new.history > super::MAX_HISTORY {
            return Err(GroupError::Invalid(format!(
                "history is at most {} messages",
                super::MAX_HISTORY
            )));
        }
        if new.max_members as usize > options.max_members {
            return Err(GroupError::Invalid(format!(
                "max_members is at most {} on this peer (0 means that many)",
                options.max_members
            )));
        }
        let meta = GroupMeta {
            id: id.clone(),
            name,
            app_type: new.app_type,
            context: new.context,
            max_members: new.max_members,
            persistent: new.persistent,
            invite_only: new.invite_only,
            roles,
            default_role,
            history: new.history,
        };
        self.store
            .create(&GroupRow {
                id: id.clone(),
                name: meta.name.clone(),
                app_type: meta.app_type.clone(),
                context: meta.context.to_string(),
                max_members: meta.max_members.into(),
                persistent: meta.persistent,
                invite_only: meta.invite_only,
                roles: json!(meta.roles).to_string(),
                default_role: meta.default_role.clone(),
                state: "null".into(),
                history: meta.history.into(),
                created_ms: unix_ms(),
            })
            .await?;
        self.hosted
            .insert(id, Hosted::new(meta.clone(), Json::Null));
        Ok(meta)
    }

    fn hosted_group(&mut self, id: &str) -> Result<&mut Hosted, GroupError> {
        self.hosted
            .get_mut(id)
            .ok_or_else(|| GroupError::NotFound(id.to_owned()))
    }

    async fn close(&mut self, id: &str, reason: &str) -> Result<(), GroupError> {
        if !self.hosted.contains_key(id) {
            return Err(GroupError::NotFound(id.to_owned()));
        }
        // Stored first: a group the database still holds is not told it ended.
        self.store.delete(id).await?;
        let group = self.hosted.remove(id).expect("looked up above");
        let close = topic_of(Some(&group.meta), id, "close");
        for member in group.online.keys() {
            let _ = self
                .mq
                .enqueue(*member, &close, json!({ "reason": reason }));
        }
        self.emit(GroupEvent::Closed {
            host: self.me.to_base58(),
            group: id.to_owned(),
            reason: reason.to_owned(),
        });
        Ok(())
    }

    async fn invite(&mut self, id: &str, peer: PeerId, reply: Reply<()>) {
        let me = self.me;
        let invited = async {
            if peer == me {
                return Err(GroupError::Invalid(
                    "the host is in its groups already".into(),
                ));
            }
            let group = self.hosted_group(id)?;
            let place = match group.places.get(&peer) {
                Some(place) if place.status == Status::Member => place.clone(),
                _ => Place {
                    role: group.meta.default_role.clone(),
                    status: Status::Invited,
                },
            };
            group.places.insert(peer, place.clone());
            let meta = group.meta.clone();
            self.store
                .set_member(&member_row(id, &peer, &place))
                .await?;
            self.mq
                .enqueue(peer, "group.invite", json!({ "group": meta }))
                .map_err(|err| GroupError::Unreachable(err.to_string()))
        }
        .await;
        match invited {
            Ok(delivered) => {
                tokio::spawn(async move {
                    let outcome = match delivered.await {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(MqError::Refused(reason))) => Err(GroupError::Refused(reason)),
                        Ok(Err(err)) => Err(GroupError::Unreachable(err.to_string())),
                        Err(_) => Err(GroupError::Stopped),
                    };
                    let _ = reply.send(outcome);
                });
            }
            Err(err) => {
                let _ = reply.send(Err(err));
            }
        }
    }

    async fn kick(&mut self, id: &str, peer: PeerId, ban: bool) -> Result<(), GroupError> {
        let group = self.hosted_group(id)?;
        let banned = ban.then(|| Place {
            role: group.meta.default_role.clone(),
            status: Status::Banned,
        });
        // Stored first: memory never says what the database does not.
        match &banned {
            Some(place) => self.store.set_member(&member_row(id, &peer, place)).await?,
            None => self.store.remove_member(id, &peer.to_base58()).await?,
        }
        let group = self.hosted_group(id)?;
        let was_online = group.online.remove(&peer).is_some();
        match banned {
            Some(place) => group.places.insert(peer, place),
            None => group.places.remove(&peer),
        };
        if was_online {
            let reason = match ban {
                true => "banned by the host",
                false => "removed by the host",
            };
            let close = self
                .hosted
                .get(id)
                .map(|group| topic_of(Some(&group.meta), id, "close"))
                .unwrap_or_else(|| topic_of(None, id, "close"));
            let _ = self.mq.enqueue(peer, &close, json!({ "reason": reason }));
            self.members_changed(id);
        }
        Ok(())
    }

    async fn set_meta(
        &mut self,
        id: &str,
        name: Option<String>,
        context: Option<Json>,
    ) -> Result<GroupMeta, GroupError> {
        let group = self.hosted_group(id)?;
        let name = match name.as_deref().map(str::trim) {
            Some("") => {
                return Err(GroupError::Invalid(
                    "a group's name may not be empty".into(),
                ));
            }
            Some(name) if name.len() > MAX_NAME_BYTES => {
                return Err(GroupError::Invalid(format!(
                    "a group name is at most {MAX_NAME_BYTES} bytes"
                )));
            }
            Some(name) => name.to_owned(),
            None => group.meta.name.clone(),
        };
        let context = context.unwrap_or_else(|| group.meta.context.clone());
        if json_len(&context) > MAX_CONTEXT_BYTES {
            return Err(GroupError::Invalid(format!(
                "context is at most {MAX_CONTEXT_BYTES} bytes of JSON"
            )));
        }
        self.store.set_meta(id, &name, &context.to_string()).await?;
        let group = self.hosted_group(id)?;
        group.meta.name = name;
        group.meta.context = context;
        let meta = group.meta.clone();
        if self.relay(id, None, "meta", &json!(meta)) > 0 {
            self.members_changed(id);
        }
        self.emit(GroupEvent::Meta {
            host: self.me.to_base58(),
            group: id.to_owned(),
            meta: meta.clone(),
        });
        Ok(meta)
    }

    async fn set_role(&mut self, id: &str, peer: PeerId, role: &str) -> Result<(), GroupError> {
        let group = self.hosted_group(id)?;
        if !group.meta.roles.iter().any(|r| r == role) {
            return Err(GroupError::Invalid(format!(
                "{role:?} is not one of the group's roles {:?}",
                group.meta.roles
            )));
        }
        let Some(place) = group.places.get_mut(&peer) else {
            return Err(GroupError::Invalid(format!(
                "{peer} is neither a member of {id:?} nor invited"
            )));
        };
        if place.status == Status::Banned {
            return Err(GroupError::Invalid(format!("{peer} is banned from {id:?}")));
        }
        place.role = role.to_owned();
        let place = place.clone();
        self.store
            .set_member(&member_row(id, &peer, &place))
            .await?;
        self.members_changed(id);
        Ok(())
    }

    fn members_of(&self, group: &Hosted) -> Vec<Member> {
        let mut online: Vec<Member> = group
            .online
            .keys()
            .map(|peer| Member {
                peer_id: peer.to_base58(),
                role: group
                    .places
                    .get(peer)
                    .map_or_else(|| group.meta.default_role.clone(), |p| p.role.clone()),
            })
            .collect();
        online.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        let mut members = vec![Member {
            peer_id: self.me.to_base58(),
            role: HOST_ROLE.to_owned(),
        }];
        members.extend(online);
        members
    }

    fn hosted_view(&self) -> Vec<HostedGroup> {
        let mut list: Vec<HostedGroup> = self
            .hosted
            .values()
            .map(|group| {
                let of = |status: Status| -> Vec<String> {
                    let mut peers: Vec<String> = group
                        .places
                        .iter()
                        .filter(|(_, place)| place.status == status)
                        .map(|(peer, _)| peer.to_base58())
                        .collect();
                    peers.sort();
                    peers
                };
                let mut away: Vec<Member> = group
                    .places
                    .iter()
                    .filter(|(peer, place)| {
                        place.status == Status::Member && !group.online.contains_key(peer)
                    })
                    .map(|(peer, place)| Member {
                        peer_id: peer.to_base58(),
                        role: place.role.clone(),
                    })
                    .collect();
                away.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
                HostedGroup {
                    meta: group.meta.clone(),
                    members: self.members_of(group),
                    away,
                    invited: of(Status::Invited),
                    banned: of(Status::Banned),
                    state: group.state.clone(),
                    history: group.recent.iter().cloned().collect(),
                }
            })
            .collect();
        list.sort_by(|a, b| a.meta.id.cmp(&b.meta.id));
        list
    }

    /// Queues `payload` on `kind` for every online member of hosted group `id` but `except`;
    /// members whose queue is full are dropped from the group. The members that were dropped.
    fn relay(&mut self, id: &str, except: Option<PeerId>, kind: &str, payload: &Json) -> usize {
        let Some(group) = self.hosted.get(id) else {
            return 0;
        };
        let topic = topic_of(Some(&group.meta), id, kind);
        let mut slow = Vec::new();
        for member in group.online.keys() {
            if Some(*member) == except {
                continue;
            }
            match self.mq.enqueue(*member, &topic, payload.clone()) {
                // What becomes of it is the member's concern: its pings tell if it is gone.
                Ok(_) => {}
                Err(MqError::QueueFull) => slow.push(*member),
                Err(err) => tracing::debug!(peer.id = %member, "group relay: {err}"),
            }
        }
        if slow.is_empty() {
            return 0;
        }
        let group = self.hosted.get_mut(id).expect("looked up above");
        for member in &slow {
            group.online.remove(member);
            tracing::info!(peer.id = %member, group = id, "a member that fell behind was dropped from the group");
        }
        self.stats.dropped_slow += slow.len() as u64;
        slow.len()
    }

    /// Tells every online member (and the owner's pages) who is in group `id` now.
    fn members_changed(&mut self, id: &str) {
        // Members dropped for being slow change the list again: the rest hear it once more.
        let members = loop {
            let Some(group) = self.hosted.get(id) else {
                return;
            };
            let members = self.members_of(group);
            if self.relay(id, None, "members", &json!({ "members": members })) == 0 {
                break members;
            }
        };
        self.emit(GroupEvent::Members {
            host: self.me.to_base58(),
            group: id.to_owned(),
            members,
        });
    }

    fn cap(&self, group: &Hosted) -> usize {
        match group.meta.max_members {
            0 => self.options.max_members,
            n => (n as usize).min(self.options.max_members),
        }
    }

    /// Open groups keep no place for members who are away with the default role: anyone may
    /// join them again, and a crowd of passers-by does not pile up in `_group_members`.
    async fn forget_the_away(&mut self) {
        let mut gone = Vec::new();
        for (id, group) in &mut self.hosted {
            if group.meta.invite_only {
                continue;
            }
            let default_role = &group.meta.default_role;
            let online = &group.online;
            group.places.retain(|peer, place| {
                let away = place.status == Status::Member
                    && &place.role == default_role
                    && !online.contains_key(peer);
                if away {
                    gone.push((id.clone(), peer.to_base58()));
                }
                !away
            });
        }
        for (id, peer) in gone {
            if let Err(err) = self.store.remove_member(&id, &peer).await {
                tracing::error!("cannot forget a group member: {err}");
            }
        }
    }

    /// The welcome of a member with `role`: the group, its members and state, and as much of
    /// its history (the newest) as fits a message.
    fn welcome(&self, group: &Hosted, role: &str) -> Json {
        let mut welcome = json!({
            "group": group.meta,
            "role": role,
            "members": self.members_of(group),
            "state": group.state,
            "history": [],
        });
        let mut room = MAX_PAYLOAD_BYTES.saturating_sub(json_len(&welcome) + 16);
        let mut history = VecDeque::new();
        for message in group.recent.iter().rev() {
            let size = json_len(message) + 1;
            if size > room {
                break;
            }
            room -= size;
            history.push_front(message.clone());
        }
        welcome["history"] = json!(history);
        welcome
    }

    /// A member's message to a group this peer hosts.
    async fn host_heard(&mut self, id: &str, kind: &str, message: Incoming) {
        let from = message.from;
        let me = self.me;
        if self.blocked.contains(&from) {
            return message.reply.refuse("banned");
        }
        let Some(group) = self.hosted.get(id) else {
            return message.reply.refuse("not_found");
        };
        let online = group.online.contains_key(&from);
        match kind {
            "join" => {
                let place = group.places.get(&from).cloned();
                let status = place.as_ref().map(|p| p.status);
                if status == Some(Status::Banned) {
                    return message.reply.refuse("banned");
                }
                if group.meta.invite_only && status.is_none() {
                    return message.reply.refuse("not_invited");
                }
                if !online && group.online.len() >= self.cap(group) {
                    return message.reply.refuse("full");
                }
                let place = Place {
                    role: place.map_or_else(|| group.meta.default_role.clone(), |p| p.role),
                    status: Status::Member,
                };
                if status != Some(Status::Member)
                    && let Err(err) = self.store.set_member(&member_row(id, &from, &place)).await
                {
                    tracing::error!("cannot store a group member: {err}");
                    return message.reply.refuse("the host cannot store members now");
                }
                let group = self.hosted.get_mut(id).expect("looked up above");
                let previous = group.places.insert(from, place.clone());
                group.online.insert(from, Instant::now());
                let group = self.hosted.get(id).expect("looked up above");
                let welcome = self.welcome(group, &place.role);
                let to = topic_of(Some(&group.meta), id, "welcome");
                if let Err(err) = self.mq.enqueue(from, &to, welcome) {
                    // Not welcomed, not in: the joiner hears why.
                    tracing::debug!(peer.id = %from, "cannot welcome a member: {err}");
                    let group = self.hosted.get_mut(id).expect("looked up above");
                    group.online.remove(&from);
                    match previous {
                        Some(previous) => group.places.insert(from, previous),
                        None => group.places.remove(&from),
                    };
                    return message.reply.refuse("the host cannot welcome you now");
                }
                let group = self.hosted.get_mut(id).expect("looked up above");
                group.had_members = true;
                message.reply.accept();
                self.members_changed(id);
            }
            "leave" => {
                message.reply.accept();
                let group = self.hosted.get_mut(id).expect("looked up above");
                let was_online = group.online.remove(&from).is_some();
                let had_place = group
                    .places
                    .get(&from)
                    .is_some_and(|p| p.status != Status::Banned);
                if had_place {
                    group.places.remove(&from);
                    if let Err(err) = self.store.remove_member(id, &from.to_base58()).await {
                        tracing::error!("cannot remove a group member: {err}");
                    }
                }
                if was_online {
                    self.members_changed(id);
                    self.end_if_empty(id).await;
                }
            }
            "ping" if online => {
                let group = self.hosted.get_mut(id).expect("looked up above");
                group.online.insert(from, Instant::now());
                message.reply.accept();
            }
            "msg" if online => {
                let Incoming { payload, reply, .. } = message;
                let relayed = json!({ "from": from.to_base58(), "payload": &payload });
                if json_len(&relayed) > MAX_PAYLOAD_BYTES {
                    return reply.refuse("too large to relay");
                }
                reply.accept();
                let group = self.hosted.get_mut(id).expect("looked up above");
                group.online.insert(from, Instant::now());
                group.remember(&relayed);
                if self.relay(id, Some(from), "msg", &relayed) > 0 {
                    self.members_changed(id);
                }
                self.emit(GroupEvent::Msg {
                    host: me.to_base58(),
                    group: id.to_owned(),
                    from: from.to_base58(),
                    payload,
                });
            }
            "state" if online => {
                let Incoming { payload, reply, .. } = message;
                let relayed = json!({ "from": from.to_base58(), "state": &payload });
                if json_len(&payload) > self.options.max_state_bytes
                    || json_len(&relayed) > MAX_PAYLOAD_BYTES
                {
                    return reply.refuse("state too large");
                }
                if let Err(err) = self.store.set_state(id, &payload.to_string()).await {
                    tracing::error!("cannot store a group's state: {err}");
                    return reply.refuse("the host cannot store the state now");
                }
                reply.accept();
                self.state_changed(id, from, payload);
            }
            "ping" | "msg" | "state" => {
                self.stats.dropped += 1;
                message.reply.refuse("not_member");
            }
            _ => {
                self.stats.dropped += 1;
                message.reply.refuse("unknown group message type");
            }
        }
    }

    fn state_changed(&mut self, id: &str, from: PeerId, state: Json) {
        let Some(group) = self.hosted.get_mut(id) else {
            return;
        };
        group.state = state.clone();
        group
            .online
            .entry(from)
            .and_modify(|at| *at = Instant::now());
        let relayed = json!({ "from": from.to_base58(), "state": state });
        if self.relay(id, Some(from), "state", &relayed) > 0 {
            self.members_changed(id);
        }
        self.emit(GroupEvent::State {
            host: self.me.to_base58(),
            group: id.to_owned(),
            from: from.to_base58(),
            state,
        });
    }

    /// An ephemeral group ends with its last member.
    async fn end_if_empty(&mut self, id: &str) {
        let ends = self
            .hosted
            .get(id)
            .is_some_and(|g| !g.meta.persistent && g.had_members && g.online.is_empty());
        if ends && let Err(err) = self.close(id, "the last member left").await {
            tracing::error!("cannot end an ephemeral group: {err}");
        }
    }

    // ---- membership ----

    fn join(&mut self, host: PeerId, id: String, reply: Reply<JoinedGroup>) {
        if host == self.me {
            let _ = reply.send(Err(GroupError::Invalid(
                "this peer hosts the group; it is in it already".into(),
            )));
            return;
        }
        if !valid_id(&id) {
            let _ = reply.send(Err(GroupError::Invalid(format!(
                "a group id is 1 to 64 letters, digits, '.', '_' or '-'; {id:?} is not"
            ))));
            return;
        }
        let key = (host, id);
        if let Some(entry) = self.joined.get(&key)
            && entry.connected
        {
            let _ = reply.send(Ok(entry.view(&key.0, &key.1)));
            return;
        }
        if !self.joined.contains_key(&key) && self.joined.len() >= self.options.max_joined {
            let _ = reply.send(Err(GroupError::Limit(format!(
                "this peer belongs to {} groups already, the most it may",
                self.options.max_joined
            ))));
            return;
        }
        let entry = self.joined.entry(key.clone()).or_insert_with(Joined::new);
        entry.waiting.push((Instant::now(), reply));
        if !entry.in_flight {
            self.send_join(&key.0, &key.1);
        }
    }

    fn send_join(&mut self, host: &PeerId, id: &str) {
        let Some(entry) = self.joined.get_mut(&(*host, id.to_owned())) else {
            return;
        };
        entry.last_try = Some(Instant::now());
        entry.in_flight = true;
        let sent = self.mq.enqueue_within(
            *host,
            &topic_of(entry.meta.as_ref(), id, "join"),
            json!({}),
            JOIN_WAIT,
        );
        self.watch(sent, {
            let (host, id) = (*host, id.to_owned());
            move |result| Outcome::Join(host, id, result)
        });
    }

    fn send_ping(&mut self, host: &PeerId, id: &str) {
        let Some(entry) = self.joined.get_mut(&(*host, id.to_owned())) else {
            return;
        };
        entry.last_try = Some(Instant::now());
        entry.in_flight = true;
        let sent = self.mq.enqueue_within(
            *host,
            &topic_of(entry.meta.as_ref(), id, "ping"),
            json!({}),
            self.options.ping_every,
        );
        self.watch(sent, {
            let (host, id) = (*host, id.to_owned());
            move |result| Outcome::Ping(host, id, result)
        });
    }

    /// Reports what becomes of a message sent as an [`Outcome`].
    fn watch(
        &self,
        sent: Result<oneshot::Receiver<Result<(), MqError>>, MqError>,
        outcome: impl FnOnce(Result<(), MqError>) -> Outcome + Send + 'static,
    ) {
        let outcomes = self.outcomes.clone();
        tokio::spawn(async move {
            let result = match sent {
                Ok(done) => done.await.unwrap_or(Err(MqError::Stopped)),
                Err(err) => Err(err),
            };
            let _ = outcomes.send(outcome(result)).await;
        });
    }

    async fn outcome(&mut self, outcome: Outcome) {
        let (host, id, result, joining) = match outcome {
            Outcome::Ping(host, id, result) => (host, id, result, false),
            Outcome::MemberPing(id, member, result) => {
                // A member that does not answer is gone; one that answers is heard.
                let Some(group) = self.hosted.get_mut(&id) else {
                    return;
                };
                match result {
                    Ok(()) => {
                        if let Some(heard) = group.online.get_mut(&member) {
                            *heard = Instant::now();
                        }
                    }
                    Err(_) => {
                        if group.online.remove(&member).is_some() {
                            self.stats.dropped_unanswered += 1;
                            self.members_changed(&id);
                            self.end_if_empty(&id).await;
                        }
                    }
                }
                return;
            }
            Outcome::Join(host, id, result) => (host, id, result, true),
            Outcome::Sent(host, id, payload) => {
                let me = self.me.to_base58();
                if let Some(entry) = self.joined.get_mut(&(host, id.clone())) {
                    let max = entry.meta.as_ref().map_or(0, |meta| meta.history);
                    let ours = json!({ "from": me, "payload": payload });
                    keep(&mut entry.history, &ours, max.min(super::MAX_HISTORY));
                }
                self.emit(GroupEvent::Msg {
                    host: host.to_base58(),
                    group: id,
                    from: me,
                    payload,
                });
                return;
            }
        };
        let key = (host, id);
        let Some(entry) = self.joined.get_mut(&key) else {
            return;
        };
        entry.in_flight = false;
        match result {
            Ok(()) => {
                if !joining && entry.host_offline {
                    entry.host_offline = false;
                    self.host_online(&key);
                }
            }
            Err(MqError::Refused(reason)) if reason == "not_member" && !joining => {
                // The host dropped us (it restarted, or we fell behind): join again now.
                entry.connected = false;
                self.send_join(&key.0, &key.1);
            }
            Err(MqError::Refused(reason)) => {
                let waiting = std::mem::take(&mut entry.waiting);
                for (_, reply) in waiting {
                    let _ = reply.send(Err(GroupError::Refused(reason.clone())));
                }
                let ended = matches!(reason.as_str(), "not_found" | "banned" | "not_invited");
                if !entry.stored || ended {
                    self.forget(&key, &reason).await;
                }
            }
            Err(err) => {
                let waiting = std::mem::take(&mut entry.waiting);
                for (_, reply) in waiting {
                    let _ = reply.send(Err(GroupError::Unreachable(err.to_string())));
                }
                if !entry.stored {
                    self.joined.remove(&key);
                    return;
                }
                entry.connected = false;
                if !entry.host_offline {
                    entry.host_offline = true;
                    self.emit(GroupEvent::HostOffline {
                        host: key.0.to_base58(),
                        group: key.1.clone(),
                    });
                }
            }
        }
    }

    fn host_online(&self, key: &(PeerId, String)) {
        self.emit(GroupEvent::HostOnline {
            host: key.0.to_base58(),
            group: key.1.clone(),
        });
    }

    /// Drops a joined group for good.
    async fn forget(&mut self, key: &(PeerId, String), reason: &str) {
        let Some(entry) = self.joined.remove(key) else {
            return;
        };
        for (_, reply) in entry.waiting {
            let _ = reply.send(Err(GroupError::Refused(reason.to_owned())));
        }
        if entry.stored
            && let Err(err) = self.store.unsubscribe(&key.0.to_base58(), &key.1).await
        {
            tracing::error!("cannot forget a group: {err}");
        }
        self.emit(GroupEvent::Closed {
            host: key.0.to_base58(),
            group: key.1.clone(),
            reason: reason.to_owned(),
        });
    }

    async fn leave(&mut self, host: PeerId, id: &str) -> Result<(), GroupError> {
        if host == self.me {
            return Err(GroupError::Invalid(
                "this peer hosts the group; close it instead".into(),
            ));
        }
        let key = (host, id.to_owned());
        if !self.joined.contains_key(&key) {
            return Err(GroupError::NotFound(id.to_owned()));
        }
        let leave = topic_of(
            self.joined.get(&key).and_then(|e| e.meta.as_ref()),
            id,
            "leave",
        );
        let _ = self.mq.enqueue(host, &leave, json!({}));
        self.forget(&key, "left").await;
        Ok(())
    }

    fn send(&mut self, host: PeerId, id: &str, payload: Json, reply: Reply<()>) {
        if host == self.me {
            let me = self.me;
            let relayed = json!({ "from": me.to_base58(), "payload": payload });
            if json_len(&relayed) > MAX_PAYLOAD_BYTES {
                let _ = reply.send(Err(GroupError::Invalid(format!(
                    "a group message is at most {MAX_PAYLOAD_BYTES} bytes of JSON with its sender"
                ))));
                return;
            }
            let outcome = match self.hosted.contains_key(id) {
                true => {
                    if let Some(group) = self.hosted.get_mut(id) {
                        group.remember(&relayed);
                    }
                    if self.relay(id, None, "msg", &relayed) > 0 {
                        self.members_changed(id);
                    }
                    self.emit(GroupEvent::Msg {
                        host: me.to_base58(),
                        group: id.to_owned(),
                        from: me.to_base58(),
                        payload,
                    });
                    Ok(())
                }
                false => Err(GroupError::NotFound(id.to_owned())),
            };
            let _ = reply.send(outcome);
            return;
        }
        self.forward_to_host(host, id, "msg", payload, reply);
    }

    /// Sends a member's message to the host; the caller hears the host's answer.
    fn forward_to_host(
        &mut self,
        host: PeerId,
        id: &str,
        kind: &str,
        payload: Json,
        reply: Reply<()>,
    ) {
        let connected = self
            .joined
            .get(&(host, id.to_owned()))
            .is_some_and(|entry| entry.connected);
        if !connected {
            let _ = reply.send(Err(GroupError::Invalid(format!(
                "not in group {id:?} of {host} now (join it, or wait for its host)"
            ))));
            return;
        }
        let ours = (kind == "msg").then(|| (host, id.to_owned(), payload.clone()));
        let outcomes = self.outcomes.clone();
        let to = topic_of(
            self.joined
                .get(&(host, id.to_owned()))
                .and_then(|entry| entry.meta.as_ref()),
            id,
            kind,
        );
        let sent = self.mq.enqueue(host, &to, payload);
        tokio::spawn(async move {
            let outcome = match sent {
                Ok(done) => match done.await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(err)) => Err(sending_failed(err)),
                    Err(_) => Err(GroupError::Stopped),
                },
                Err(err) => Err(sending_failed(err)),
            };
            if let (Ok(()), Some((host, id, payload))) = (&outcome, ours) {
                let _ = outcomes.send(Outcome::Sent(host, id, payload)).await;
            }
            let _ = reply.send(outcome);
        });
    }

    async fn set_state(&mut self, host: PeerId, id: &str, state: Json, reply: Reply<()>) {
        let wrapped = json_len(&state) + 80;
        if json_len(&state) > self.options.max_state_bytes || wrapped > MAX_PAYLOAD_BYTES {
            let _ = reply.send(Err(GroupError::Invalid(format!(
                "a group's state is at most {} bytes of JSON",
                self.options.max_state_bytes
            ))));
            return;
        }
        if host != self.me {
            return self.forward_to_host(host, id, "state", state, reply);
        }
        if !self.hosted.contains_key(id) {
            let _ = reply.send(Err(GroupError::NotFound(id.to_owned())));
            return;
        }
        if let Err(err) = self.store.set_state(id, &state.to_string()).await {
            let _ = reply.send(Err(err.into()));
            return;
        }
        self.state_changed(id, self.me, state);
        let _ = reply.send(Ok(()));
    }

    /// A host's message to a group this peer joined.
    async fn member_heard(&mut self, id: &str, kind: &str, message: Incoming) {
        let host = message.from;
        if self.blocked.contains(&host) {
            self.stats.dropped += 1;
            return message.reply.refuse("banned");
        }
        let key = (host, id.to_owned());
        let Some(entry) = self.joined.get_mut(&key) else {
            self.stats.dropped += 1;
            return message.reply.refuse("not_member");
        };
        let Incoming { payload, reply, .. } = message;
        let (h, g) = (host.to_base58(), id.to_owned());
        match kind {
            "welcome" => {
                let meta: Option<GroupMeta> = serde_json::from_value(payload["group"].clone()).ok();
                let members: Vec<Member> =
                    serde_json::from_value(payload["members"].clone()).unwrap_or_default();
                let role = payload["role"].as_str().unwrap_or_default().to_owned();
                reply.accept();
                entry.connected = true;
                let was_offline = std::mem::replace(&mut entry.host_offline, false);
                entry.role = role.clone();
                entry.members = members.clone();
                entry.state = payload["state"].clone();
                entry.history = payload["history"]
                    .as_array()
                    .map(|history| history.iter().cloned().collect())
                    .unwrap_or_default();
                if let Some(meta) = &meta {
                    entry.name = meta.name.clone();
                    entry.app_type = meta.app_type.clone();
                }
                entry.meta = meta;
                let subscription = SubscriptionRow {
                    host_peer_id: h.clone(),
                    group_id: g.clone(),
                    group_name: entry.name.clone(),
                    app_type: entry.app_type.clone(),
                    role: role.clone(),
                    subscribed_ms: unix_ms(),
                };
                let view = entry.view(&host, id);
                let waiting = std::mem::take(&mut entry.waiting);
                match self.store.subscribe(&subscription).await {
                    Ok(()) => {
                        if let Some(entry) = self.joined.get_mut(&key) {
                            entry.stored = true;
                        }
                    }
                    Err(err) => tracing::error!("cannot store a group joined: {err}"),
                }
                for (_, waiter) in waiting {
                    let _ = waiter.send(Ok(view.clone()));
                }
                if was_offline {
                    self.host_online(&key);
                }
                self.emit(GroupEvent::Welcome {
                    host: h,
                    group: g,
                    role,
                    members,
                    state: view.state,
                });
            }
            "members" => {
                reply.accept();
                let members: Vec<Member> =
                    serde_json::from_value(payload["members"].clone()).unwrap_or_default();
                // The host may have given this peer another role.
                let me = self.me.to_base58();
                if let Some(mine) = members.iter().find(|m| m.peer_id == me) {
                    entry.role = mine.role.clone();
                }
                entry.members = members.clone();
                self.emit(GroupEvent::Members {
                    host: h,
                    group: g,
                    members,
                });
            }
            "msg" => {
                reply.accept();
                let max = entry.meta.as_ref().map_or(0, |meta| meta.history);
                keep(&mut entry.history, &payload, max.min(super::MAX_HISTORY));
                let from = payload["from"].as_str().unwrap_or_default().to_owned();
                self.emit(GroupEvent::Msg {
                    host: h,
                    group: g,
                    from,
                    payload: payload["payload"].clone(),
                });
            }
            "state" => {
                reply.accept();
                entry.state = payload["state"].clone();
                self.emit(GroupEvent::State {
                    host: h,
                    group: g,
                    from: payload["from"].as_str().unwrap_or_default().to_owned(),
                    state: payload["state"].clone(),
                });
            }
            "meta" => match serde_json::from_value::<GroupMeta>(payload) {
                Ok(meta) => {
                    reply.accept();
                    entry.name = meta.name.clone();
                    entry.app_type = meta.app_type.clone();
                    entry.meta = Some(meta.clone());
                    self.emit(GroupEvent::Meta {
                        host: h,
                        group: g,
                        meta,
                    });
                }
                Err(err) => reply.refuse(format!("malformed meta: {err}")),
            },
            "close" => {
                reply.accept();
                let reason = payload["reason"]
                    .as_str()
                    .unwrap_or("closed by the host")
                    .to_owned();
                self.forget(&key, &reason).await;
            }
            // The host's ping: we are here.
            "pong" | "ping" => reply.accept(),
            _ => reply.refuse("unknown group message type"),
        }
    }

    /// A message on a group topic: to the host side or the member side.
    async fn heard(&mut self, message: Incoming) {
        let topic = message.topic.clone();
        let Some((id, kind)) = parse_topic(&topic) else {
            self.stats.dropped += 1;
            return message.reply.refuse("unknown topic");
        };
        let from_our_host = self.joined.contains_key(&(message.from, id.to_owned()));
        match kind {
            "ping" if from_our_host => self.member_heard(id, kind, message).await,
            "join" | "leave" | "ping" => self.host_heard(id, kind, message).await,
            "welcome" | "members" | "close" | "meta" | "pong" => {
                self.member_heard(id, kind, message).await
            }
            "msg" | "state" if from_our_host => self.member_heard(id, kind, message).await,
            "msg" | "state" => self.host_heard(id, kind, message).await,
            _ => {
                self.stats.dropped += 1;
                message.reply.refuse("unknown group message type");
            }
        }
    }

    /// An invitation to a group of the message's sender.
    async fn invited(&mut self, message: Incoming) {
        let host = message.from;
        if self.blocked.contains(&host) {
            return message.reply.refuse("banned");
        }
        let Ok(meta) = serde_json::from_value::<GroupMeta>(message.payload["group"].clone()) else {
            return message
                .reply
                .refuse("an invitation is {\"group\": {\"id\", \"name\", …}}");
        };
        if !valid_id(&meta.id) {
            return message.reply.refuse("the group id is not valid");
        }
        if self.auto_join.contains(&host) {
            message.reply.accept();
            let (reply, _) = oneshot::channel();
            self.join(host, meta.id, reply);
            return;
        }
        let row = SubscriptionRow {
            host_peer_id: host.to_base58(),
            group_id: meta.id.clone(),
            group_name: truncated(&meta.name, MAX_NAME_BYTES),
            app_type: truncated(&meta.app_type, MAX_APP_TYPE_BYTES),
            role: String::new(),
            subscribed_ms: unix_ms(),
        };
        let stored = self
            .store
            .add_invite(&row, INVITES_PER_HOST, self.options.max_invites)
            .await;
        if let Err(err) = stored {
            tracing::error!("cannot store an invitation: {err}");
            return message
                .reply
                .refuse("the peer cannot store invitations now");
        }
        message.reply.accept();
        self.emit(GroupEvent::Invite {
            host: row.host_peer_id,
            group: row.group_id,
            name: row.group_name,
            app_type: row.app_type,
        });
    }

    async fn tick(&mut self) {
        let now = Instant::now();
        // Hosts drop the members they no longer hear.
        let lost_after = self.options.lost_after;
        let mut changed = Vec::new();
        for (id, group) in &mut self.hosted {
            let before = group.online.len();
            group
                .online
                .retain(|_, heard| now.duration_since(*heard) < lost_after);
            let lost = before - group.online.len();
            if lost > 0 {
                self.stats.dropped_silent += lost as u64;
                changed.push(id.clone());
            }
        }
        for id in changed {
            self.members_changed(&id);
            self.end_if_empty(&id).await;
        }
        self.forget_the_away().await;
        // Hosts ping their members (a member that does not answer is dropped at once).
        if self
            .pinged_members
            .is_none_or(|at| now.duration_since(at) >= self.options.ping_every)
        {
            self.pinged_members = Some(now);
            for (id, group) in &self.hosted {
                let ping = topic_of(Some(&group.meta), id, "ping");
                for member in group.online.keys() {
                    let sent =
                        self.mq
                            .enqueue_within(*member, &ping, json!({}), self.options.ping_every);
                    let (id, member) = (id.clone(), *member);
                    self.watch(sent, move |result| Outcome::MemberPing(id, member, result));
                }
            }
        }
        // Members ping their hosts, and rejoin those that are back.
        // Groups of a host the owner blocked are not pinged or rejoined.
        let keys: Vec<(PeerId, String)> = self
            .joined
            .keys()
            .filter(|(host, _)| !self.blocked.contains(host))
            .cloned()
            .collect();
        for key in keys {
            let Some(entry) = self.joined.get_mut(&key) else {
                continue;
            };
            // Callers that waited too long for a welcome.
            let (late, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut entry.waiting)
                .into_iter()
                .partition(|(since, _)| now.duration_since(*since) >= JOIN_WAIT);
            entry.waiting = waiting;
            for (_, reply) in late {
                let _ = reply.send(Err(GroupError::Unreachable(
                    "the host did not welcome us in time".into(),
                )));
            }
            if entry.in_flight {
                continue;
            }
            let since = entry.last_try.map(|at| now.duration_since(at));
            if entry.connected {
                if since.is_none_or(|since| since >= self.options.ping_every) {
                    self.send_ping(&key.0, &key.1);
                }
                continue;
            }
            if !entry.stored {
                continue;
            }
            let online = self
                .table
                .entry(&key.0)
                .await
                .is_some_and(|peer| peer.state == PeerState::Online);
            let every = match online {
                true => self.options.ping_every,
                false => REJOIN_AWAY,
            };
            if since.is_none_or(|since| since >= every) {
                self.send_join(&key.0, &key.1);
            }
        }
    }
}

/// Why a message to a host was not delivered, as a group error.
fn sending_failed(error: MqError) -> GroupError {
    match error {
        MqError::Refused(reason) => GroupError::Refused(reason),
        MqError::TooLarge | MqError::InvalidTopic(_) | MqError::ToSelf => {
            GroupError::Invalid(error.to_string())
        }
        MqError::QueueFull | MqError::TooManyPeers => GroupError::Limit(error.to_string()),
        MqError::Stopped => GroupError::Stopped,
        MqError::Unreachable(_) | MqError::NotAcknowledged(_) => {
            GroupError::Unreachable(error.to_string())
        }
    }
}

fn meta_of(row: &GroupRow) -> GroupMeta {
    GroupMeta {
        id: row.id.clone(),
        name: row.name.clone(),
        app_type: row.app_type.clone(),
        context: serde_json::from_str(&row.context).unwrap_or(Json::Null),
        max_members: row.max_members.clamp(0, u32::MAX.into()) as u32,
        persistent: row.persistent,
        invite_only: row.invite_only,
        roles: serde_json::from_str(&row.roles).unwrap_or_default(),
        default_role: row.default_role.clone(),
        history: row.history.clamp(0, super::MAX_HISTORY.into()) as u32,
    }
}

fn member_row(group: &str, peer: &PeerId, place: &Place) -> MemberRow {
    MemberRow {
        group_id: group.to_owned(),
        peer_id: peer.to_base58(),
        role: place.role.clone(),
        status: place.status.as_str().to_owned(),
        since_ms: unix_ms(),
    }
}

fn valid_role(role: &str) -> bool {
    (1..=MAX_ROLE_BYTES).contains(&role.len())
        && role != HOST_ROLE
        && role
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

fn json_len(value: &Json) -> usize {
    serde_json::to_vec(value).map_or(usize::MAX, |bytes| bytes.len())
}

fn truncated(text: &str, max: usize) -> String {
    let mut cut = text.len().min(max);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text[..cut].to_owned()
}
