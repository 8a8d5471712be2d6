//! `identity`: a peer asks who this peer is, and is answered with an `identity.response`
//! carrying what this peer announces (its label, avatar hash, active template, version — not
//! its email, which only hubs are told). Peers that met without a hub or the LAN, such as the
//! original Go peers, learn each other's names this way.

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
