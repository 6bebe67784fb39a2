//! What the hub sends on a live connection: messages (kept only when new
//! for their stream), presence, answers to requests, and the hub's own
//! joins, leaves, resets and token warnings.

use switchboard_protocol::binary::split_envelope;
use switchboard_protocol::{Message, Position, ServerFrame};

use super::Driver;
use super::requests::Pending;
use crate::codec;
use crate::error::Error;
use crate::event::{Joined, Left, Reset};

/// What a frame asks of the connection loop beyond its own handling.
pub(super) enum After {
    Nothing,
    /// The hub warned that the token expires soon: fetch a new one.
    FetchToken,
}

impl Driver {
    /// Handles one frame from the server.
    pub(super) fn on_frame(&mut self, text: &str) -> After {
        let frame = match codec::decode(text) {
            Ok(Some(frame)) => frame,
            // A newer hub's frame type: skipped, as the protocol promises.
            Ok(None) => return After::Nothing,
            Err(err) => {
                let error =
                    Error::Protocol(format!("undecodable frame ({err}): {}", super::clip(text)));
                self.shared.handlers.emit_error(&error);
                return After::Nothing;
            }
        };
        self.on_server_frame(frame)
    }

    /// Handles one binary message from the server: a `message` whose
    /// payload is the bytes after its header.
    pub(super) fn on_binary(&mut self, bytes: &[u8]) -> After {
        let undecodable =
            |why: String| Error::Protocol(format!("undecodable binary message: {why}"));
        let (header, payload) = match split_envelope(bytes) {
            Ok(split) => split,
            Err(err) => {
                self.shared.handlers.emit_error(&undecodable(err.to_string()));
                return After::Nothing;
            }
        };
        match codec::decode(header) {
            Ok(Some(ServerFrame::Message(mut message))) => {
                message.binary = Some(payload.to_vec());
                self.on_server_frame(ServerFrame::Message(message))
            }
            // A newer hub's frame type: skipped, as the protocol promises.
            Ok(None) => After::Nothing,
            Ok(Some(_)) => {
                let why =
                    format!("a binary message's header is not a message: {}", super::clip(header));
                self.shared.handlers.emit_error(&undecodable(why));
                After::Nothing
            }
            Err(err) => {
                self.shared
                    .handlers
                    .emit_error(&undecodable(format!("{err}: {}", super::clip(header))));
                After::Nothing
            }
        }
    }

    /// Handles one decoded frame from the server.
    fn on_server_frame(&mut self, frame: ServerFrame) -> After {
        match frame {
            ServerFrame::Message(mut message) => {
                // Bytes as base64 text (a hub's JSON form): shown as bytes.
                codec::take_base64(&mut message);
                if self.is_new(&message) {
                    self.shared.handlers.emit_message(&message);
                }
            }
            ServerFrame::Presence(presence) => self.shared.handlers.emit_presence(&presence),
            ServerFrame::Occupancy(occupancy) => self.shared.handlers.emit_occupancy(&occupancy),
            ServerFrame::Ack(ack) => match self.pending.remove(&ack.id) {
                Some(Pending::Join { room, replies, rejoin }) => {
                    self.unconfirmed.remove(&room);
                    if let (Some(epoch), Some(offset)) = (ack.epoch.clone(), ack.offset) {
                        // Already in the room under the same epoch (a join
                        // sent again): messages below the ack's offset may
                        // still be on their way, so the client's own
                        // position stands. Otherwise the ack's is where it is.
                        let keep = ack.recovered != Some(false)
                            && self.positions.get(&room).is_some_and(|own| own.epoch == epoch);
                        if !keep {
                            self.positions.insert(room.clone(), Position { epoch, offset });
                        }
                    }
                    let members = ack.members.clone().unwrap_or_default();
                    let member_count = ack.member_count.unwrap_or(members.len() as u64);
                    let large = ack.large.unwrap_or(false);
                    let recovered = ack.recovered;
                    for reply in replies {
                        let _ = reply.send(Ok(ack.clone()));
                    }
                    let (by_server, info) = (false, ack.info.clone());
                    let joined = Joined {
                        room,
                        members,
                        member_count,
                        large,
                        rejoin,
                        recovered,
                        by_server,
                        info,
                    };
                    self.shared.handlers.emit_joined(&joined);
                }
                Some(Pending::Sent { request, .. }) => {
                    let _ = request.reply.send(Ok(ack));
                }
                None => {}
            },
            ServerFrame::Error(error) => {
                let err = Error::Server { code: error.code, message: error.message };
                match error.id.and_then(|id| self.pending.remove(&id)) {
                    Some(pending) => self.refused(pending, err),
                    None => self.shared.handlers.emit_error(&err),
                }
            }
            ServerFrame::Refresh { .. } => return After::FetchToken,
            ServerFrame::Joined(joined) => {
                // The server's join: from now on the room is one of the
                // client's, rejoined after a reconnect from this position.
                self.rooms.insert(joined.room.clone());
                self.unconfirmed.remove(&joined.room);
                let position = Position { epoch: joined.epoch, offset: joined.offset };
                self.positions.insert(joined.room.clone(), position);
                let members = joined.members.unwrap_or_default();
                let event = Joined {
                    member_count: joined.member_count.unwrap_or(members.len() as u64),
                    room: joined.room,
                    members,
                    large: joined.large.unwrap_or(false),
                    rejoin: false,
                    recovered: None,
                    by_server: true,
                    info: joined.info,
                };
                self.shared.handlers.emit_joined(&event);
            }
            ServerFrame::Left { room } => {
                self.rooms.remove(&room);
                self.unconfirmed.remove(&room);
                self.positions.remove(&room);
                self.shared.handlers.emit_left(&Left { room });
            }
            ServerFrame::Reset(reset) => {
                // The stream started over: the next messages count from the
                // new epoch's offset, not from the old one's.
                let position = Position { epoch: reset.epoch, offset: reset.offset };
                match &reset.room {
                    Some(room) if self.rooms.contains(room) => {
                        self.positions.insert(room.clone(), position);
                    }
                    Some(_) => return After::Nothing,
                    None => self.inbox = Some(position),
                }
                self.shared.handlers.emit_reset(&Reset { room: reset.room });
            }
            ServerFrame::Welcome(_) | ServerFrame::Pong { .. } => {}
        }
        After::Nothing
    }

    /// Advances the stream position a message belongs to; false for a
    /// message at or below it, which this client already has.
    fn is_new(&mut self, message: &Message) -> bool {
        let Some(offset) = message.offset else { return true };
        let position = match (&message.room, &message.to) {
            (Some(room), _) => self.positions.get_mut(room),
            (None, Some(_)) => self.inbox.as_mut(),
            (None, None) => None,
        };
        match position {
            Some(position) if offset <= position.offset => false,
            Some(position) => {
                position.offset = offset;
                true
            }
            None => true,
        }
    }
}
