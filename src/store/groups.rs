//! `_groups` and `_group_members` (the groups this peer hosts), `_group_subscriptions` (groups
//! of other hosts it joined), `_group_invites` and `_group_auto_join`.

use serde::Serialize;
use sqlx::{FromRow, SqlitePool};

/// A hosted group as stored; JSON columns are text.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct GroupRow {
    pub id: String,
    pub name: String,
    pub app_type: String,
    pub context: String,
    pub max_members: i64,
    pub persistent: bool,
    pub invite_only: bool,
    pub roles: String,
    pub default_role: String,
    pub state: String,
    pub history: i64,
    pub created_ms: i64,
}

/// A peer's place in a hosted group.
#[derive(Debug, Clone, PartialEq, Eq, FromRow, Serialize)]
pub struct MemberRow {
    pub group_id: String,
    pub peer_id: String,
    pub role: String,
    /// `member`, `invited` or `banned`.
    pub status: String,
    pub since_ms: i64,
}

/// A group of another host that this peer joined, or was invited to.
#[derive(Debug, Clone, PartialEq, Eq, FromRow, Serialize)]
pub struct SubscriptionRow {
    pub host_peer_id: String,
    pub group_id: String,
    pub group_name: String,
    pub app_type: String,
    pub role: String,
    pub subscribed_ms: i64,
}

/// The groups of this peer, both ways. Cloning is cheap.
#[derive(Clone)]
pub struct GroupStore {
    pool: SqlitePool,
}

impl GroupStore {
    pub fn new(pool: SqlitePool) -> Self {
        GroupStore { pool }
    }

    pub async fn create(&self, group: &GroupRow) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO _groups (id, name, app_type, context, max_members, persistent, \
             invite_only, roles, default_role, state, history, created_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )
        .bind(&group.id)
        .bind(&group.name)
        .bind(&group.app_type)
        .bind(&group.context)
        .bind(group.max_members)
        .bind(group.persistent)
        .bind(group.invite_only)
        .bind(&group.roles)
        .bind(&group.default_role)
        .bind(&group.state)
        .bind(group.history)
        .bind(group.created_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every hosted group, oldest first.
    pub async fn groups(&self) -> Result<Vec<GroupRow>, sqlx::Error> {
        sqlx::query_as(
            "SELECT id, name, app_type, context, max_members, persistent, invite_only, roles, \
             default_role, state, history, created_ms FROM _groups ORDER BY created_ms, id",
        )
        .fetch_all(&self.pool)
        .await
    }

    /// Removes a group with its members.
    pub async fn delete(&self, id: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM _groups WHERE id = ?1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Removes the groups that do not outlive the host's run.
    pub async fn delete_ephemeral(&self) -> Result<u64, sqlx::Error> {
        let done = sqlx::query("DELETE FROM _groups WHERE persistent = 0")
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// A hosted group's new name and context (JSON text).
    pub async fn set_meta(&self, id: &str, name: &str, context: &str) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE _groups SET name = ?2, context = ?3 WHERE id = ?1")
            .bind(id)
            .bind(name)
            .bind(context)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_state(&self, id: &str, state: &str) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE _groups SET state = ?2 WHERE id = ?1")
            .bind(id)
            .bind(state)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every member, invitation and ban of every hosted group.
    pub async fn members(&self) -> Result<Vec<MemberRow>, sqlx::Error> {
        sqlx::query_as(
            "SELECT group_id, peer_id, role, status, since_ms FROM _group_members \
             ORDER BY group_id, since_ms, peer_id",
        )
        .fetch_all(&self.pool)
        .await
    }

    pub async fn set_member(&self, member: &MemberRow) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO _group_members (group_id, peer_id, role, status, since_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (group_id, peer_id) DO UPDATE SET \
             role = excluded.role, status = excluded.status, since_ms = excluded.since_ms",
        )
        .bind(&member.group_id)
        .bind(&member.peer_id)
        .bind(&member.role)
        .bind(&member.status)
        .bind(member.since_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn remove_member(&self, group_id: &str, peer_id: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM _group_members WHERE group_id = ?1 AND peer_id = ?2")
            .bind(group_id)
            .bind(peer_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The groups of other hosts this peer joined.
    pub async fn subscriptions(&self) -> Result<Vec<SubscriptionRow>, sqlx::Error> {
        sqlx::query_as(
            "SELECT host_peer_id, group_id, group_name, app_type, role, subscribed_ms \
             FROM _group_subscriptions ORDER BY subscribed_ms, host_peer_id, group_id",
        )
        .fetch_all(&self.pool)
        .await
    }

    pub async fn subscribe(&self, row: &SubscriptionRow) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO _group_subscriptions (host_peer_id, group_id, group_name, app_type, \
             role, subscribed_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT (host_peer_id, group_id) DO UPDATE SET group_name = excluded.group_name, \
             app_type = excluded.app_type, role = excluded.role",
        )
        .bind(&row.host_peer_id)
        .bind(&row.group_id)
        .bind(&row.group_name)
        .bind(&row.app_type)
        .bind(&row.role)
        .bind(row.subscribed_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn unsubscribe(&self, host: &str, group_id: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM _group_subscriptions WHERE host_peer_id = ?1 AND group_id = ?2")
            .bind(host)
            .bind(group_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Invitations not answered yet (`role` is empty).
    pub async fn invites(&self) -> Result<Vec<SubscriptionRow>, sqlx::Error> {
        sqlx::query_as(
            "SELECT host_peer_id, group_id, group_name, app_type, '' AS role, \
             received_ms AS subscribed_ms FROM _group_invites ORDER BY received_ms",
        )
        .fetch_all(&self.pool)
        .await
    }

    /// Keeps an invitation: at most `per_host` of one host's and `keep` in all (the oldest go),
    /// so that one host cannot push out everyone else's.
    pub async fn add_invite(
        &self,
        row: &SubscriptionRow,
        per_host: u32,
        keep: u32,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT OR REPLACE INTO _group_invites (host_peer_id, group_id, group_name, app_type, \
             received_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(&row.host_peer_id)
        .bind(&row.group_id)
        .bind(&row.group_name)
        .bind(&row.app_type)
        .bind(row.subscribed_ms)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM _group_invites WHERE host_peer_id = ?1 AND rowid NOT IN \
             (SELECT rowid FROM _group_invites WHERE host_peer_id = ?1 \
             ORDER BY received_ms DESC LIMIT ?2)",
        )
        .bind(&row.host_peer_id)
        .bind(per_host)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM _group_invites WHERE rowid NOT IN \
             (SELECT rowid FROM _group_invites ORDER BY received_ms DESC LIMIT ?1)",
        )
        .bind(keep)
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    pub async fn remove_invite(&self, host: &str, group_id: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM _group_invites WHERE host_peer_id = ?1 AND group_id = ?2")
            .bind(host)
            .bind(group_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Hosts whose invitations are accepted without asking.
    pub async fn auto_join_hosts(&self) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar("SELECT host_peer_id FROM _group_auto_join ORDER BY added_ms")
            .fetch_all(&self.pool)
            .await
    }

    pub async fn set_auto_join(
        &self,
        host: &str,
        auto: bool,
        now_ms: i64,
    ) -> Result<(), sqlx::Error> {
        match auto {
            true => {
                sqlx::query(
                    "INSERT OR IGNORE INTO _group_auto_join (host_peer_id, added_ms) \
                     VALUES (?1, ?2)",
                )
                .bind(host)
                .bind(now_ms)
                .execute(&self.pool)
                .await?
            }
            false => {
                sqlx::query("DELETE FROM _group_auto_join WHERE host_peer_id = ?1")
                    .bind(host)
                    .execute(&self.pool)
                    .await?
            }
        };
        Ok(())
    }
}
