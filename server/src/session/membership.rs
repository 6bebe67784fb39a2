//! Joining and leaving rooms: a client's `join` and `leave` requests, and
//! the server-side joins and leaves (`AppState::join`, `POST
//! /api/rooms/{room}/join`) that reach the connection as orders through its
//! queue and are answered with `joined` and `left` frames.
//!
//! Both paths share one join, the connection's ([`Connection::enter`]):
//! the per-connection room limit, the stream's position (and a replay for
//! a `since`), presence. A client's join passes the permission check and
//! the join hook first ([`check_join`]); a server-side join does not, since
//! the application asked for it. This module adds the WebSocket's answers.
//! A stream that started over under a new epoch reaches the connection as
//! an order too, and is written as a `reset` frame when it moves the
//! connection.
//!
//! [`Connection::enter`]: super::connection::Connection::enter

use std::future::poll_fn;
use std::sync::Arc;

use futures::SinkExt;
use switchboard_protocol::{Position, RoomJoined, ServerFrame};
use tungstenite::Message as WsMessage;

use super::connection::{Refusal, check_join};
use super::frames::Out;
use super::{Ended, Flow, Session, Socket};
use crate::hub::{Delivery, DeliveryKind, JoinOrder};
use crate::stream::Stored;

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
        if let Err(refused) = check_join(&self.conn.state, &self.conn.identity, &room).await {
            return self.refused(id, refused.into()).await;
        }
        // Without the right to read history there is nothing to replay.
        let since = since.filter(|_| self.may(&room, |rule| rule.history));
        match self.conn.enter(&room, since.as_ref()).await {
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
            Err(refusal) => self.refused(id, refusal).await,
        }
    }

    /// Tells the client why its join was refused.
    async fn refused(&mut self, id: Option<String>, refusal: Refusal) -> Flow {
        match refusal {
            Refusal::Error(code, message) => self.fail(id, code, message).await,
            Refusal::Unregistered => Flow::Gone(Ended::Unregistered),
        }
    }

    /// A client's `leave`.
    pub(super) async fn leave(&mut self, id: Option<String>, room: String) -> Flow {
        if let Err(flow) = self.check_name(&id, "room", &room).await {
            return flow;
        }
        self.conn.exit(&room);
        self.ack(id, |_| {}).await
    }

    /// Carries out an order that reached this connection through its
    /// queue: a server-side join or leave (the room was checked by whoever
    /// ordered it), or a stream's new epoch.
    pub(super) async fn obey(&mut self, order: Arc<Delivery>) -> Flow {
        match order.kind {
            DeliveryKind::Join => {
                let Some(JoinOrder { room, since }) = JoinOrder::decode(&order.frame) else {
                    tracing::warn!(order = %order.frame, "unreadable join order ignored");
                    return Flow::Continue;
                };
                let room = room.as_str();
                // Already in: the client knows the room, and its place in
                // the stream stays where it is.
                if self.conn.is_member(room) {
                    return Flow::Continue;
                }
                // What was published since the order was given is replayed
                // whatever the history permission: it is what a member
                // would have received live.
                match self.conn.enter(room, Some(&since)).await {
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
                    Err(Refusal::Unregistered) => Flow::Gone(Ended::Unregistered),
                }
            }
            DeliveryKind::Leave => {
                let room = order.frame.as_str();
                if !self.conn.is_member(room) {
                    return Flow::Continue;
                }
                self.conn.exit(room);
                self.reply(&ServerFrame::Left { room: room.to_owned() }).await
            }
            DeliveryKind::Reset => {
                if !self.conn.reset(&order) {
                    return Flow::Continue;
                }
                super::written(self.socket.send(WsMessage::Text(order.frame.clone())).await)
            }
            // Frames are written by `write_queued`, never handed here.
            DeliveryKind::Message | DeliveryKind::Presence | DeliveryKind::Occupancy => {
                Flow::Continue
            }
        }
    }

    /// Writes replayed messages, as they are (never compressed: see
    /// [`Out::Replayed`]) and several to a write.
    pub(super) async fn replay(&mut self, missed: Vec<Stored>) -> Result<(), Flow> {
        let binary = self.socket.speaks_binary();
        let mut missed = missed.into_iter().map(|stored| Out::replayed(stored.frame, binary));
        while let Some(first) = missed.next() {
            let mut first = Some(first);
            let socket = &mut self.socket;
            let written =
                poll_fn(|cx| socket.poll_write_texts(cx, &mut first, || missed.next(), false))
                    .await;
            if written.is_err() {
                return Err(Flow::Gone(Ended::NetworkError));
            }
        }
        Ok(())
    }
}
