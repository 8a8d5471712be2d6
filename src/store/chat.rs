//! `_chat_messages` (direct chat with each peer, the newest kept) and `_blocked_peers`.

use serde::Serialize;
use sqlx::{FromRow, SqlitePool};

/// A message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, FromRow, Serialize)]
pub struct ChatRow {
    pub id: i64,
    pub peer_id: String,
    pub outgoing: bool,
    pub text: String,
    #[serde(skip)]
    pub msg_id: String,
    pub at_ms: i64,
    pub read: bool,
    /// `received`, `sending`, `delivered` or `failed`.
    pub status: String,
    pub error: Option<String>,
}

/// A message to store.
pub struct NewChat<'a> {
    pub peer_id: &'a str,
    pub outgoing: bool,
    pub text: &'a str,
    pub msg_id: &'a str,
    pub at_ms: i64,
    pub status: &'a str,
}

/// The conversations of this peer. Cloning is cheap.
#[derive(Clone)]
pub struct ChatStore {
    pool: SqlitePool,
}

/// The columns of a [`ChatRow`], as a literal for `concat!`.
macro_rules! columns {
    () => {
        "id, peer_id, outgoing, text, msg_id, at_ms, read, status, error"
    };
}

impl ChatStore {
    pub fn new(pool: SqlitePool) -> Self {
        ChatStore { pool }
    }

    /// Stores `message` and drops the conversation's oldest beyond `keep_per_peer`, and the
    /// oldest of all beyond `keep_in_all`; `None` when a message with its wire id is already
    /// stored.
    pub async fn append(
        &self,
        message: &NewChat<'_>,
        keep_per_peer: u32,
        keep_in_all: u32,
    ) -> Result<Option<ChatRow>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let row: Option<ChatRow> = sqlx::query_as(concat!(
            "INSERT INTO _chat_messages (peer_id, outgoing, text, msg_id, at_ms, read, status) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?2, ?6) ON CONFLICT DO NOTHING RETURNING ",
            columns!()
        ))
        .bind(message.peer_id)
        .bind(message.outgoing)
        .bind(message.text)
        .bind(message.msg_id)
        .bind(message.at_ms)
        .bind(message.status)
        .fetch_optional(&mut *tx)
        .await?;
        if row.is_some() {
            sqlx::query(
                "DELETE FROM _chat_messages WHERE peer_id = ?1 AND id <= \
                 (SELECT id FROM _chat_messages WHERE peer_id = ?1 ORDER BY id DESC \
                 LIMIT 1 OFFSET ?2)",
            )
            .bind(message.peer_id)
            .bind(keep_per_peer)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "DELETE FROM _chat_messages WHERE id <= \
                 (SELECT id FROM _chat_messages ORDER BY id DESC LIMIT 1 OFFSET ?1)",
            )
            .bind(keep_in_all)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(row)
    }

    /// Removes one message.
    pub async fn remove(&self, id: i64) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM _chat_messages WHERE id = ?1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records what became of an outgoing message.
    pub async fn set_status(
        &self,
        id: i64,
        status: &str,
        error: Option<&str>,
    ) -> Result<Option<ChatRow>, sqlx::Error> {
        sqlx::query_as(concat!(
            "UPDATE _chat_messages SET status = ?2, error = ?3 WHERE id = ?1 RETURNING ",
            columns!()
        ))
        .bind(id)
        .bind(status)
        .bind(error)
        .fetch_optional(&self.pool)
        .await
    }

    /// Messages still `sending` when the peer stopped: they were not delivered.
    pub async fn fail_unfinished(&self, error: &str) -> Result<u64, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE _chat_messages SET status = 'failed', error = ?1 WHERE status = 'sending'",
        )
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Up to `limit` messages with `peer_id` before row `before` (the newest without it),
    /// oldest first.
    pub async fn history(
        &self,
        peer_id: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<ChatRow>, sqlx::Error> {
        let mut rows: Vec<ChatRow> = sqlx::query_as(concat!(
            "SELECT ",
            columns!(),
            " FROM _chat_messages WHERE peer_id = ?1 AND id < ?2 \
             ORDER BY id DESC LIMIT ?3"
        ))
        .bind(peer_id)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.reverse();
        Ok(rows)
    }

    /// Marks the conversation with `peer_id` as read; how many messages were unread.
    pub async fn mark_read(&self, peer_id: &str) -> Result<u64, sqlx::Error> {
        let done =
            sqlx::query("UPDATE _chat_messages SET read = 1 WHERE peer_id = ?1 AND read = 0")
                .bind(peer_id)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected())
    }

    /// Unread messages per peer.
    pub async fn unread(&self) -> Result<Vec<(String, i64)>, sqlx::Error> {
        sqlx::query_as(
            "SELECT peer_id, COUNT(*) FROM _chat_messages WHERE read = 0 GROUP BY peer_id \
             ORDER BY peer_id",
        )
        .fetch_all(&self.pool)
        .await
    }

    /// The latest message of each conversation, newest conversation first, at most `limit`.
    pub async fn conversations(&self, limit: u32) -> Result<Vec<ChatRow>, sqlx::Error> {
        sqlx::query_as(concat!(
            "SELECT ",
            columns!(),
            " FROM _chat_messages WHERE id IN \
             (SELECT MAX(id) FROM _chat_messages GROUP BY peer_id) ORDER BY id DESC LIMIT ?1"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    pub async fn block(&self, peer_id: &str, now_ms: i64) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT OR IGNORE INTO _blocked_peers (peer_id, added_ms) VALUES (?1, ?2)")
            .bind(peer_id)
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn unblock(&self, peer_id: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM _blocked_peers WHERE peer_id = ?1")
            .bind(peer_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The blocked peers, in the order they were blocked.
    pub async fn blocked(&self) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar("SELECT peer_id FROM _blocked_peers ORDER BY added_ms, peer_id")
            .fetch_all(&self.pool)
            .await
    }
}
