//! Joining and leaving rooms: a client's `join` and `leave` requests, and
//! the server-side joins and leaves (`AppState::join`, `POST
//! /api/rooms/{room}/join`) that reach the connection as orders through its
//! queue and are answered with `joined` and `left` frames.
//!
//! Both paths share one join: the per-connection room limit, the stream's
//! position (and a replay for a `since`), cluster presence, the presence
//! announcement. A client's join passes the permission check and the join
//! hook first; a server-side join does not, since the application asked
//! for it.

use futures::SinkExt;
use switchboard_protocol::{
    ErrorCode, Position, PresenceAction, RoomInfo, RoomJoined, ServerFrame,
};
use tungstenite::Message as WsMessage;

use super::{Ended, Flow, Session, Socket};
use crate::broker::{Delivery, DeliveryKind};
use crate::hub::Joined;
use crate::hub::presence;
use crate::policy::hooks::{self, Decision};
use crate::store::{Replay, Stored, StreamKey};

/// A server-side join as it travels to the user's connections (the
/// `frame` of a [`DeliveryKind::Join`] delivery): the room, and where its
/// stream stood when the join was asked for, so the connection replays
/// what was published meanwhile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JoinOrder {
    pub(crate) room: String,
    pub(crate) since: Position,
}

impl JoinOrder {
    /// `room`, epoch and offset on three lines (names hold no control
    /// characters, epochs are hex).
    pub(crate) fn encode(&self) -> String {
        format!("{}\n{}\n{}", self.room, self.since.epoch, self.since.offset)
    }

    /// Reads an encoded order; `None` for anything else.
    pub(crate) fn decode(text: &str) -> Option<JoinOrder> {
        let mut lines = text.splitn(3, '\n');
        let room = lines.next()?.to_owned();
        let epoch = lines.next()?.to_owned();
        let offset = lines.next()?.parse().ok()?;
        Some(JoinOrder { room, since: Position { epoch, offset } })
    }
}

/// A join carried out: what its ack or `joined` frame reports.
struct Entered {
    joined: Joined,
    /// Whether the connection may see the room's presence (members listed).
    sees_presence: bool,
    position: Position,
    /// For a join with `since`: whether the replay was complete.
    recovered: Option<bool>,
    /// The messages after `since`, not yet written.
    missed: Vec<Stored>,
    /// What the application says about the room, if it is managed.
    info: Option<RoomInfo>,
}

/// Why a join was not carried out.
enum Refusal {
    /// Tell the client with this error.
    Error(ErrorCode, String),
    /// The connection cannot go on.
    Ended(Flow),
}

impl<S: Socket> Session<S> {
    /// A client's `join`: checked against the permissions and the join hook.
    pub(super) async fn join(
        &mut self,
        id: Option<String>,
        room: String,
        since: Option<Position>,
    ) -> Flow {
        if let Err(flow) = self.check_name(&id, "room", &room).await {
            return flow;
        }
        if !self.may(&room, |rule| rule.join) {
            return self
                .fail(id, ErrorCode::FORBIDDEN, format!("not allowed to join `{room}`"))
                .await;
        }
        let hooked = match self.state.hooks() {
            Some((hooks, timeout)) => {
                Some(hooks::call("join", timeout, hooks.join(&self.identity, &room)).await)
            }
            None => None,
        };
        match hooked {
            None | Some(Ok(Decision::Allow)) => {}
            Some(Ok(Decision::Refuse { code, message })) => {
                return self.fail(id, code, message).await;
            }
            Some(Err(failure)) => {
                return self.fail(id, ErrorCode::HOOK_FAILED, failure.to_string()).await;
            }
        }
        // Without the right to read history there is nothing to replay.
        let since = since.filter(|_| self.may(&room, |rule| rule.history));
        match self.enter(&room, since).await {
            Ok(mut entered) => {
                if let Err(flow) = self.replay(std::mem::take(&mut entered.missed)).await {
                    return flow;
                }
                self.ack(id, |ack| {
                    if entered.sees_presence {
                        ack.members = Some(entered.joined.members.members);
                        ack.member_count = Some(entered.joined.members.count as u64);
                        ack.cursor = entered.joined.members.cursor;
                        ack.large = entered.joined.large.then_some(true);
                    }
                    ack.epoch = Some(entered.position.epoch);
                    ack.offset = Some(entered.position.offset);
                    ack.recovered = entered.recovered;
                    ack.info = entered.info;
                })
                .await
            }
            Err(Refusal::Error(code, message)) => self.fail(id, code, message).await,
            Err(Refusal::Ended(flow)) => flow,
        }
    }

    /// A client's `leave`.
    pub(super) async fn leave(&mut self, id: Option<String>, room: String) -> Flow {
        if let Err(flow) = self.check_name(&id, "room", &room).await {
            return flow;
        }
        self.exit(&room).await;
        self.ack(id, |_| {}).await
    }

    /// Carries out a server-side join or leave that reached this connection
    /// through its queue; the room was checked by whoever ordered it.
    pub(super) async fn obey(&mut self, order: Delivery) -> Flow {
        match order.kind {
            DeliveryKind::Join => {
                let Some(JoinOrder { room, since }) = JoinOrder::decode(&order.frame) else {
                    tracing::warn!(order = %order.frame, "unreadable join order ignored");
                    return Flow::Continue;
                };
                let room = room.as_str();
                // Already in: the client knows the room, and a second join
                // would move the room's floor past messages still queued.
                if self.state.hub().is_member(self.outbound.key, room) {
                    return Flow::Continue;
                }
                // What was published since the order was given is replayed
                // whatever the history permission: it is what a member
                // would have received live.
                match self.enter(room, Some(since)).await {
                    Ok(entered) => {
                        let (members, sees) = (entered.joined.members, entered.sees_presence);
                        // The frame names the position just before the
                        // replay that follows it, as `welcome` does for the
                        // inbox: the client advances through the replay
                        // like through live messages.
                        let offset = entered
                            .missed
                            .first()
                            .map_or(entered.position.offset, |first| first.offset - 1);
                        let frame = ServerFrame::Joined(RoomJoined {
                            room: room.to_owned(),
                            member_count: sees.then_some(members.count as u64),
                            members: sees.then_some(members.members),
                            cursor: members.cursor.filter(|_| sees),
                            large: (sees && entered.joined.large).then_some(true),
                            epoch: entered.position.epoch,
                            offset,
                            info: entered.info,
                        });
                        if let flow @ (Flow::Close(..) | Flow::Gone(_)) = self.reply(&frame).await {
                            return flow;
                        }
                        match self.replay(entered.missed).await {
                            Ok(()) => Flow::Continue,
                            Err(flow) => flow,
                        }
                    }
                    Err(Refusal::Error(code, message)) => {
                        let message = format!("the server's join of `{room}` failed: {message}");
                        self.fail(None, code, message).await
                    }
                    Err(Refusal::Ended(flow)) => flow,
                }
            }
            DeliveryKind::Leave => {
                let room = order.frame.as_str();
                if !self.state.hub().is_member(self.outbound.key, room) {
                    return Flow::Continue;
                }
                self.exit(room).await;
                self.reply(&ServerFrame::Left { room: room.to_owned() }).await
            }
            // Frames are written by `write_queued`, never handed here.
            DeliveryKind::Message | DeliveryKind::Presence | DeliveryKind::Occupancy => {
                Flow::Continue
            }
        }
    }

    /// Joins `room` on the hub (and in the cluster), announces the user,
    /// and replays what the client missed since `since` (the caller checked
    /// that it may read it).
    async fn enter(&mut self, room: &str, since: Option<Position>) -> Result<Entered, Refusal> {
        let max_rooms = self.state.config().limits.max_rooms_per_connection;
        if self.state.hub().rooms_of(self.outbound.key) >= max_rooms
            && !self.state.hub().is_member(self.outbound.key, room)
        {
            let message = format!("at most {max_rooms} rooms per connection");
            return Err(Refusal::Error(ErrorCode::LIMIT_EXCEEDED, message));
        }
        let sees_presence = self.may(room, |rule| rule.presence);
        let key = StreamKey::Room(room.into());
        let (hub, session_key) = (self.state.hub().clone(), self.outbound.key);
        // The room's info (for the ack) is read alongside the join rather
        // than after it: in a cluster that is one Redis round trip fewer
        // on every join's path.
        let (joined, info) = tokio::join!(
            self.state.streams().resume(&key, since.as_ref(), || hub.join(
                session_key,
                room,
                sees_presence
            )),
            self.state.catalog().get(room),
        );
        let (joined, position, replay) = match joined {
            Ok((Some(joined), position, replay)) => (joined, position, replay),
            Ok((None, ..)) => return Err(Refusal::Ended(Flow::Gone(Ended::Unregistered))),
            Err(err) => return Err(Refusal::Error(ErrorCode::UNAVAILABLE, err.to_string())),
        };
        let joined = match presence::joined(&self.state, room, &self.user, joined).await {
            Ok(joined) => joined,
            Err(err) => {
                self.state.hub().leave(self.outbound.key, room);
                return Err(Refusal::Error(ErrorCode::UNAVAILABLE, err.to_string()));
            }
        };
        if joined.announce {
            let user = self.user.clone();
            self.announce(room, &user, PresenceAction::Join).await;
        }
        let (recovered, missed) = match replay {
            Some(Replay::Complete(missed)) => (Some(true), missed),
            Some(Replay::Lost) => (Some(false), Vec::new()),
            None => (None, Vec::new()),
        };
        self.room_floors.insert(room.into(), position.offset);
        // A join goes on without the room's info when the catalog cannot be
        // read: the info is a courtesy, the membership is what was asked.
        let info = match info {
            Ok(managed) => managed.map(|room| room.info),
            Err(err) => {
                tracing::warn!(room, %err, "the room's info could not be read for the join");
                None
            }
        };
        Ok(Entered { joined, sees_presence, position, recovered, missed, info })
    }

    /// Writes replayed messages.
    async fn replay(&mut self, missed: Vec<Stored>) -> Result<(), Flow> {
        for stored in missed {
            if self.socket.send(WsMessage::Text(stored.frame)).await.is_err() {
                return Err(Flow::Gone(Ended::NetworkError));
            }
        }
        Ok(())
    }

    /// Leaves `room` on the hub (and in the cluster) and announces the user
    /// when this was its last connection there.
    async fn exit(&mut self, room: &str) {
        let left = self.state.hub().leave(self.outbound.key, room);
        self.room_floors.remove(room);
        if left.was_member && presence::left(&self.state, room, &self.user, left.announce).await {
            let user = self.user.clone();
            self.announce(room, &user, PresenceAction::Leave).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_join_order_reads_back_as_written_and_nothing_else_reads() {
        let order = JoinOrder {
            room: "chat:42".into(),
            since: Position { epoch: "0f3a".into(), offset: 17 },
        };
        assert_eq!(JoinOrder::decode(&order.encode()), Some(order));
        assert_eq!(JoinOrder::decode("lobby"), None);
        assert_eq!(JoinOrder::decode("lobby\ne\nseven"), None);
    }
}
