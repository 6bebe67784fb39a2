//! Presence across nodes: who is online and who is in which room, counted
//! per node so that the entries of a node that dies can be removed by the
//! nodes that survive it.
//!
//! Each node counts its own connections into the shared entries as they
//! come and go (one script call per connection and per join or leave), and
//! says it is alive every third of `redis.node_ttl_ms`. A node whose
//! heartbeat is older than the TTL is dead: the first survivor to notice
//! removes its entries and announces the leaves of users who were present
//! only through it. A dead node's users therefore leave within the TTL plus
//! one heartbeat interval (13.3 s with the defaults).

use super::keys::{ONLINE, room_scope};
use super::scripts::{BURY, HEARTBEAT, PRESENCE};
use super::{Cluster, ClusterError};
use crate::hub::room::MembersPage;

/// What counting a connection changed across the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// The user is now present for the first time anywhere: announce a join.
    Arrived,
    /// The user's last connection anywhere is gone: announce a leave.
    Left,
    /// The user was, and still is, present through other connections.
    None,
}

/// A room's figures across the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RoomFigures {
    pub(crate) room: String,
    pub(crate) users: usize,
    pub(crate) connections: usize,
    pub(crate) messages: u64,
}

/// What a heartbeat learned.
pub(crate) struct Beat {
    /// This node was not registered: its entries may be gone.
    pub(crate) was_unknown: bool,
    /// Nodes whose heartbeat is older than the TTL.
    pub(crate) dead: Vec<String>,
}

impl Cluster {
    /// Counts `delta` connections of `user` on this node in `room` (or,
    /// without a room, online).
    pub(crate) async fn count(
        &self,
        room: Option<&str>,
        user: &str,
        delta: i64,
    ) -> Result<(Change, usize), ClusterError> {
        let scope = room.map_or_else(|| ONLINE.to_owned(), room_scope);
        let base = self.keys.scope(&scope);
        let mut invocation = PRESENCE.prepare_invoke();
        invocation
            .key(format!("{base}:z"))
            .key(format!("{base}:u"))
            .key(format!("{base}:c"))
            .key(format!("{base}:n"))
            .key(self.keys.node_scopes(&self.node))
            .key(self.keys.rooms())
            .arg(&self.node)
            .arg(user)
            .arg(delta)
            .arg(&scope)
            .arg(room.unwrap_or_default());
        let mut connection = self.connection();
        let (change, users): (i64, u64) =
            self.call("presence", invocation.invoke_async(&mut connection)).await?;
        let change = match change {
            1 => Change::Arrived,
            -1 => Change::Left,
            _ => Change::None,
        };
        Ok((change, users as usize))
    }

    /// Up to `limit` users of a room (or online) after `cursor`, in byte
    /// order, and how many there are in all.
    pub(crate) async fn members(
        &self,
        room: Option<&str>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<MembersPage, ClusterError> {
        let scope = room.map_or_else(|| ONLINE.to_owned(), room_scope);
        let key = format!("{}:z", self.keys.scope(&scope));
        let start = cursor.map_or_else(|| "-".to_owned(), |c| format!("({c}"));
        let mut pipe = redis::pipe();
        pipe.cmd("ZRANGE").arg(&key).arg(start).arg("+").arg("BYLEX").arg("LIMIT").arg(0);
        pipe.arg(limit + 1).cmd("ZCARD").arg(&key);
        let mut connection = self.connection();
        let (mut members, count): (Vec<String>, u64) =
            self.call("members", pipe.query_async(&mut connection)).await?;
        let cursor = if members.len() > limit {
            members.truncate(limit);
            members.last().cloned()
        } else {
            None
        };
        Ok(MembersPage { members, count: count as usize, cursor })
    }

    /// Every user connected anywhere, sorted.
    pub(crate) async fn online_users(&self) -> Result<Vec<String>, ClusterError> {
        let key = format!("{}:z", self.keys.scope(ONLINE));
        let mut connection = self.connection();
        self.call(
            "online",
            redis::cmd("ZRANGE").arg(key).arg(0).arg(-1).query_async(&mut connection),
        )
        .await
    }

    /// Every user connected anywhere with their connection count across
    /// the nodes, sorted by user.
    pub(crate) async fn online_connections(&self) -> Result<Vec<(String, usize)>, ClusterError> {
        let key = format!("{}:u", self.keys.scope(ONLINE));
        let mut connection = self.connection();
        let mut users: Vec<(String, usize)> = self
            .call("online", redis::cmd("HGETALL").arg(key).query_async(&mut connection))
            .await?;
        users.retain(|(_, count)| *count > 0);
        users.sort_unstable();
        Ok(users)
    }

    /// Every room with members anywhere, with its figures, sorted by name.
    pub(crate) async fn rooms(&self) -> Result<Vec<RoomFigures>, ClusterError> {
        let mut connection = self.connection();
        let mut names: Vec<String> = self
            .call(
                "rooms",
                redis::cmd("SMEMBERS").arg(self.keys.rooms()).query_async(&mut connection),
            )
            .await?;
        names.sort_unstable();
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for room in &names {
            let base = self.keys.scope(&room_scope(room));
            let stream = crate::store::StreamKey::Room(room.as_str().into());
            pipe.cmd("ZCARD").arg(format!("{base}:z"));
            pipe.cmd("GET").arg(format!("{base}:n"));
            pipe.cmd("HGET").arg(self.keys.meta(&stream)).arg("last");
        }
        let figures: Vec<(u64, Option<u64>, Option<u64>)> = {
            let flat: Vec<redis::Value> =
                self.call("rooms", pipe.query_async(&mut connection)).await?;
            flat.chunks(3)
                .map(|c| {
                    let number = |v: &redis::Value| {
                        redis::from_redis_value::<Option<u64>>(v.clone()).ok().flatten()
                    };
                    (number(&c[0]).unwrap_or(0), number(&c[1]), number(&c[2]))
                })
                .collect()
        };
        Ok(names
            .into_iter()
            .zip(figures)
            .filter(|(_, (users, ..))| *users > 0)
            .map(|(room, (users, connections, messages))| RoomFigures {
                room,
                users: users as usize,
                connections: connections.unwrap_or(0) as usize,
                messages: messages.unwrap_or(0),
            })
            .collect())
    }

    /// Says this node is alive, with its figures; lists the dead nodes.
    pub(crate) async fn heartbeat(&self, figures: &str) -> Result<Beat, ClusterError> {
        let mut invocation = HEARTBEAT.prepare_invoke();
        invocation
            .key(self.keys.nodes())
            .key(self.keys.stats())
            .arg(&self.node)
            .arg(figures)
            .arg(self.node_ttl.as_millis() as u64);
        let mut connection = self.connection();
        let beat: Vec<redis::Value> =
            self.call("heartbeat", invocation.invoke_async(&mut connection)).await?;
        let mut beat = beat.into_iter();
        let was_unknown = beat
            .next()
            .and_then(|v| redis::from_redis_value::<i64>(v).ok())
            .is_some_and(|new| new == 1);
        let dead = beat
            .filter_map(|v| redis::from_redis_value::<String>(v).ok())
            .filter(|node| *node != self.node)
            .collect();
        Ok(Beat { was_unknown, dead })
    }

    /// Removes a dead node's entries; returns the rooms (`None`: online)
    /// and users whose presence ended with it.
    pub(crate) async fn bury(
        &self,
        node: &str,
    ) -> Result<Vec<(Option<String>, String)>, ClusterError> {
        let mut invocation = BURY.prepare_invoke();
        invocation
            .key(self.keys.nodes())
            .key(self.keys.stats())
            .key(self.keys.node_scopes(node))
            .key(self.keys.rooms())
            .arg(&self.keys.prefix)
            .arg(node);
        let mut connection = self.connection();
        let flat: Vec<String> = self.call("bury", invocation.invoke_async(&mut connection)).await?;
        Ok(flat
            .chunks(2)
            .filter_map(|pair| match pair {
                [scope, user] => {
                    let room = scope.strip_prefix("r:").map(str::to_owned);
                    Some((room, user.clone()))
                }
                _ => None,
            })
            .collect())
    }

    /// Closes every connection of `user` on every node; returns how many
    /// connections the user had across the cluster.
    pub(crate) async fn disconnect(
        &self,
        user: &str,
        code: switchboard_protocol::CloseCode,
        reason: &str,
    ) -> Result<usize, ClusterError> {
        let mut pipe = redis::pipe();
        let order = super::wire::encode_close(user, code, reason);
        pipe.cmd("PUBLISH").arg(self.keys.channel()).arg(order).ignore();
        pipe.cmd("HGET").arg(format!("{}:u", self.keys.scope(ONLINE))).arg(user);
        let mut connection = self.connection();
        let (connections,): (Option<u64>,) =
            self.call("disconnect", pipe.query_async(&mut connection)).await?;
        Ok(connections.unwrap_or(0) as usize)
    }

    /// Hands an order (`wire::encode_close_session`, `encode_to_session`)
    /// to every node.
    pub(crate) async fn order(&self, order: String) -> Result<(), ClusterError> {
        let mut connection = self.connection();
        self.call(
            "order",
            redis::cmd("PUBLISH")
                .arg(self.keys.channel())
                .arg(order)
                .query_async::<()>(&mut connection),
        )
        .await
    }

    /// The nodes whose last heartbeat is within `redis.node_ttl_ms`, by
    /// Redis's clock.
    pub(crate) async fn live_nodes(&self) -> Result<Vec<String>, ClusterError> {
        let mut connection = self.connection();
        let mut pipe = redis::pipe();
        pipe.cmd("ZRANGE").arg(self.keys.nodes()).arg(0).arg(-1).arg("WITHSCORES");
        pipe.cmd("TIME");
        let (nodes, (secs, micros)): (Vec<(String, f64)>, (u64, u64)) =
            self.call("live_nodes", pipe.query_async(&mut connection)).await?;
        Ok(self.alive(nodes, secs * 1000 + micros / 1000))
    }

    /// Of `(node, last heartbeat)`, the nodes alive at `now_ms`.
    fn alive(&self, nodes: Vec<(String, f64)>, now_ms: u64) -> Vec<String> {
        let ttl_ms = self.node_ttl.as_millis() as f64;
        nodes
            .into_iter()
            .filter(|(_, beat)| now_ms as f64 - beat <= ttl_ms)
            .map(|(node, _)| node)
            .collect()
    }

    /// The cluster's figures: what each live node last reported, summed,
    /// and the users and rooms Redis counts.
    pub(crate) async fn stats(&self) -> Result<crate::hub::stats::ClusterStats, ClusterError> {
        let mut connection = self.connection();
        let mut pipe = redis::pipe();
        pipe.cmd("ZRANGE").arg(self.keys.nodes()).arg(0).arg(-1).arg("WITHSCORES");
        pipe.cmd("HGETALL").arg(self.keys.stats());
        pipe.cmd("ZCARD").arg(format!("{}:z", self.keys.scope(ONLINE)));
        pipe.cmd("SCARD").arg(self.keys.rooms());
        pipe.cmd("TIME");
        type Answer = (Vec<(String, f64)>, Vec<(String, String)>, u64, u64, (u64, u64));
        let (nodes, figures, users, rooms, (secs, micros)): Answer =
            self.call("stats", pipe.query_async(&mut connection)).await?;
        let live = self.alive(nodes, secs * 1000 + micros / 1000);
        let (mut connections, mut messages_total) = (0, 0);
        for (node, json) in &figures {
            if !live.contains(node) {
                continue;
            }
            let figures: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
            connections += figures["connections"].as_u64().unwrap_or(0);
            messages_total += figures["messages_total"].as_u64().unwrap_or(0);
        }
        Ok(crate::hub::stats::ClusterStats {
            node: self.node.clone(),
            nodes: live.len() as u64,
            connections,
            users,
            rooms,
            messages_total,
        })
    }
}
