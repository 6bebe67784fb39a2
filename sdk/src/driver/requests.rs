//! The driver's requests: what the app asked ([`Request`], [`Op`]), what
//! waits to be sent (the rejoins, then the queue, paced to the hub's rate
//! and to the socket's room), what was sent and waits for its answer
//! ([`Pending`]), and how each is settled when a connection ends.

use std::collections::VecDeque;

use futures::channel::oneshot;
use switchboard_protocol::binary::envelope;
use switchboard_protocol::{Ack, ClientFrame, ErrorCode, Payload};

use super::{Driver, encode};
use crate::error::{Error, Result};
use crate::transport::Socket;

/// A request and where its answer goes.
pub(crate) struct Request {
    pub(crate) op: Op,
    pub(crate) reply: oneshot::Sender<Result<Ack>>,
    /// Set once the request was first sent; a re-send after a reconnect
    /// keeps it, so the hub recognises a retry and does not act twice.
    pub(crate) id: Option<String>,
}

/// What a request asks.
pub(crate) enum Op {
    Join { room: String },
    Leave { room: String },
    Publish { room: String, event: String, data: Payload, exclude_self: bool },
    Send { to: String, event: String, data: Payload },
    History { room: String, since: Option<u64>, limit: Option<u32> },
    Members { room: String, cursor: Option<String>, limit: Option<u32> },
    Rpc { method: String, data: serde_json::Value },
}

pub(super) type Reply = oneshot::Sender<Result<Ack>>;

/// A request sent and not yet answered.
pub(super) enum Pending {
    /// Joins (the app's and the automatic rejoins) survive a lost
    /// connection: the rejoin answers them.
    Join { room: String, replies: Vec<Reply>, rejoin: bool },
    /// Everything else, kept whole: a re-send after a reconnect or a rate
    /// refusal goes out with the same id, after the requests first sent
    /// before it (ids are numbered in the order requests are first sent).
    Sent { request: Request },
}

/// Why a connection's requests are being settled.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Loss {
    /// The connection dropped: re-send what can be.
    Dropped,
    /// The hub closed with 1009 (message too big): a re-send could be the
    /// cause again, so nothing in flight is re-sent.
    Poisoned,
    /// `close()`: nothing is re-sent and everything fails with `Closed`.
    Closing,
}

impl Driver {
    /// Takes a request while connected: sent now if nothing waits before it
    /// and there is room, otherwise queued behind what waits.
    pub(super) fn accept_online(&mut self, socket: &mut Socket, request: Request) {
        if self.rejoins.is_empty() && self.queue.is_empty() && self.can_send(socket) {
            self.send(socket, request);
        } else {
            self.enqueue(request);
        }
    }

    /// Whether the next frame may go now: within the hub's rate and the
    /// socket's room.
    pub(super) fn can_send(&mut self, socket: &mut Socket) -> bool {
        self.pacer.allows() && socket.has_room()
    }

    /// Sends what waits, rejoins first, while the pacer and the socket allow.
    pub(super) fn flush(&mut self, socket: &mut Socket) {
        if self.pacer.allows() {
            // Not stalled (any more): the refused went back in order, and
            // the next refusal starts a new run at the front.
            self.refused = 0;
        }
        while self.can_send(socket) {
            if let Some(room) = self.rejoins.pop_front() {
                self.rejoin(socket, room);
            } else if let Some(request) = self.queue.pop_front() {
                self.send(socket, request);
            } else {
                break;
            }
        }
    }

    /// Sends the automatic (re)join of `room` from its last position,
    /// answering any `join()` made meanwhile, unless the room was joined
    /// offline and every caller has since given up on it.
    fn rejoin(&mut self, socket: &mut Socket, room: String) {
        let mut replies = self.join_waiters.remove(&room).unwrap_or_default();
        replies.retain(|reply| !reply.is_canceled());
        let in_flight =
            self.pending.values().any(|p| matches!(p, Pending::Join { room: r, .. } if *r == room));
        if replies.is_empty() && !in_flight && self.unconfirmed.remove(&room) {
            // "A request that timed out while queued is never sent."
            self.rooms.remove(&room);
            return;
        }
        if !self.rooms.contains(&room) {
            return; // left since
        }
        let id = self.next_id();
        let since = self.positions.get(&room).cloned();
        let frame = ClientFrame::Join { id: Some(id.clone()), room: room.clone(), since };
        self.pending.insert(id, Pending::Join { room, replies, rejoin: true });
        self.write(socket, frame);
    }

    /// Sends a request now.
    pub(super) fn send(&mut self, socket: &mut Socket, mut request: Request) {
        if request.reply.is_canceled() {
            return; // its caller timed out while it waited
        }
        let id = match &request.id {
            Some(id) => id.clone(),
            None => {
                let id = self.next_id();
                request.id = Some(id.clone());
                id
            }
        };
        let frame = match &request.op {
            Op::Join { room } => {
                self.rooms.insert(room.clone());
                let frame =
                    ClientFrame::Join { id: Some(id.clone()), room: room.clone(), since: None };
                let pending = Pending::Join {
                    room: room.clone(),
                    replies: vec![request.reply],
                    rejoin: false,
                };
                self.pending.insert(id, pending);
                return self.write(socket, frame);
            }
            Op::Leave { room } => {
                self.rooms.remove(room);
                self.positions.remove(room);
                ClientFrame::Leave { id: Some(id.clone()), room: room.clone() }
            }
            Op::Publish { room, event, data, exclude_self } => {
                let (data, bytes) = split(data);
                let frame = ClientFrame::Publish {
                    id: Some(id.clone()),
                    room: room.clone(),
                    event: event.clone(),
                    data,
                    encoding: None,
                    exclude_self: *exclude_self,
                };
                return self.send_pending(socket, id, request, frame, bytes);
            }
            Op::Send { to, event, data } => {
                let (data, bytes) = split(data);
                let frame = ClientFrame::Send {
                    id: Some(id.clone()),
                    to: to.clone(),
                    event: event.clone(),
                    data,
                    encoding: None,
                };
                return self.send_pending(socket, id, request, frame, bytes);
            }
            Op::History { room, since, limit } => ClientFrame::History {
                id: Some(id.clone()),
                room: room.clone(),
                since: *since,
                limit: *limit,
            },
            Op::Members { room, cursor, limit } => ClientFrame::Members {
                id: Some(id.clone()),
                room: room.clone(),
                cursor: cursor.clone(),
                limit: *limit,
            },
            Op::Rpc { method, data } => ClientFrame::Rpc {
                id: Some(id.clone()),
                method: method.clone(),
                data: data.clone(),
            },
        };
        self.pending.insert(id, Pending::Sent { request });
        self.write(socket, frame);
    }

    /// Sends a request's frame and keeps it pending: as text, or with
    /// `bytes` as a binary message whose header is the frame.
    fn send_pending(
        &mut self,
        socket: &mut Socket,
        id: String,
        request: Request,
        frame: ClientFrame,
        bytes: Option<Vec<u8>>,
    ) {
        let binary = self.shared.options.endpoints[self.endpoint].binary();
        match bytes {
            Some(bytes) if binary => {
                self.pending.insert(id, Pending::Sent { request });
                self.pacer.note();
                socket.send_binary(envelope(&encode(frame), &bytes));
            }
            // A URL that said `binary=0`: the bytes as base64 text.
            Some(bytes) => match with_base64(frame, &bytes) {
                Some(frame) => {
                    self.pending.insert(id, Pending::Sent { request });
                    self.write(socket, frame);
                }
                None => {
                    let why = "this runtime has no `btoa` to send bytes as base64 text (binary=0)";
                    let _ = request.reply.send(Err(Error::Protocol(why.to_owned())));
                }
            },
            None => {
                self.pending.insert(id, Pending::Sent { request });
                self.write(socket, frame);
            }
        }
    }

    /// Queues a frame on the socket, counted against the hub's rate.
    pub(super) fn write(&mut self, socket: &mut Socket, frame: ClientFrame) {
        self.pacer.note();
        socket.send(encode(frame));
    }

    /// Queues a request to be sent when it may, or refuses it when the
    /// queue is full.
    fn enqueue(&mut self, request: Request) {
        let capacity = self.shared.options.offline_queue;
        self.queue.retain(|queued| !queued.reply.is_canceled());
        if self.queue.len() >= capacity {
            let _ = request.reply.send(Err(Error::QueueFull { capacity }));
        } else {
            self.queue.push_back(request);
        }
    }

    /// Takes a request while not connected.
    pub(super) fn accept_offline(&mut self, request: Request) {
        match request.op {
            Op::Join { room } => {
                // A leave still queued from the last connection is
                // superseded: the app wants to be in the room.
                for leave in self.take_queued(&room, false) {
                    let _ = leave.reply.send(Ok(Ack::default()));
                }
                if self.rooms.insert(room.clone()) {
                    self.unconfirmed.insert(room.clone());
                }
                self.join_waiters.entry(room).or_default().push(request.reply);
            }
            Op::Leave { room } => {
                // Nothing to tell the server: the next connection will not
                // rejoin it, and a later join starts from the room's present.
                for join in self.take_queued(&room, true) {
                    let _ = join
                        .reply
                        .send(Err(Error::Protocol(format!("left `{room}` before joining it"))));
                }
                self.rooms.remove(&room);
                self.unconfirmed.remove(&room);
                self.positions.remove(&room);
                for waiter in self.join_waiters.remove(&room).unwrap_or_default() {
                    let _ = waiter
                        .send(Err(Error::Protocol(format!("left `{room}` before joining it"))));
                }
                let _ = request.reply.send(Ok(Ack::default()));
            }
            _ => self.enqueue(request),
        }
    }

    /// Takes the queued joins (`joins`) or leaves of `room` out of the queue.
    fn take_queued(&mut self, room: &str, joins: bool) -> VecDeque<Request> {
        let (taken, kept) =
            std::mem::take(&mut self.queue).into_iter().partition(|r| match &r.op {
                Op::Join { room: r } => joins && r == room,
                Op::Leave { room: r } => !joins && r == room,
                _ => false,
            });
        self.queue = kept;
        taken
    }

    /// The hub answered a request with an error: a rate refusal puts it
    /// back in line (behind the requests refused before it in the same
    /// stall) and pauses sending; anything else fails it.
    pub(super) fn refused(&mut self, pending: Pending, err: Error) {
        let rate_limited =
            matches!(&err, Error::Server { code, .. } if *code == ErrorCode::RATE_LIMITED);
        match pending {
            Pending::Join { room, replies, .. } if rate_limited => {
                self.pacer.stall();
                self.join_waiters.entry(room.clone()).or_default().extend(replies);
                if !self.rejoins.contains(&room) {
                    self.rejoins.push_back(room);
                }
            }
            Pending::Join { room, replies, .. } => {
                // A refused join is not rejoined later. A refused
                // automatic rejoin has nobody waiting: report it.
                self.rooms.remove(&room);
                self.unconfirmed.remove(&room);
                self.positions.remove(&room);
                if replies.is_empty() {
                    self.shared.handlers.emit_error(&err);
                }
                for reply in replies {
                    let _ = reply.send(Err(err.clone()));
                }
            }
            Pending::Sent { request, .. } if rate_limited => {
                self.pacer.stall();
                if let Op::Leave { room } = &request.op {
                    // Not carried out: the room is still joined on the hub.
                    self.rooms.insert(room.clone());
                }
                let at = self.refused.min(self.queue.len());
                self.queue.insert(at, request);
                self.refused += 1;
            }
            Pending::Sent { request, .. } => {
                let _ = request.reply.send(Err(err));
            }
        }
    }

    /// Settles what was in flight on a connection that is gone: joins wait
    /// for the rejoin, leaves are done, an `rpc` fails (the hub keeps no
    /// record of it, so a second call could act twice), the rest goes back
    /// to the front of the queue in the order it was first sent, to be
    /// re-sent with the same ids.
    pub(super) fn connection_lost(&mut self, loss: Loss) {
        self.rejoins.clear();
        let mut resend = Vec::new();
        // Requests refused for the hub's rate wait at the front of the
        // queue; they go back in line with those in flight, by first send.
        while self.queue.front().is_some_and(|request| request.id.is_some()) {
            resend.extend(self.queue.pop_front());
        }
        for (_, pending) in self.pending.drain() {
            let request = match pending {
                Pending::Join { room, replies, .. } => {
                    if self.rooms.contains(&room) {
                        self.join_waiters.entry(room).or_default().extend(replies);
                    }
                    continue;
                }
                Pending::Sent { request } => request,
            };
            let failure = match (&request.op, loss) {
                (Op::Leave { .. }, _) => {
                    let _ = request.reply.send(Ok(Ack::default()));
                    continue;
                }
                (_, Loss::Closing) => Error::Closed,
                (Op::Rpc { .. }, _) | (_, Loss::Poisoned) => Error::ConnectionLost,
                (_, Loss::Dropped) => {
                    resend.push(request);
                    continue;
                }
            };
            let _ = request.reply.send(Err(failure));
        }
        // Ids are unique, so an unstable sort (less code) is exact.
        resend.sort_unstable_by_key(|request| request.id.as_deref().map_or(0, id_number));
        for request in resend.into_iter().rev() {
            if !request.reply.is_canceled() {
                self.queue.push_front(request);
            }
        }
    }
}

/// A payload as a frame's `data`, and the bytes to send after the frame
/// as a binary message (then `data` is null and left out of the header).
fn split(data: &Payload) -> (serde_json::Value, Option<Vec<u8>>) {
    match data {
        Payload::Json(value) => (value.clone(), None),
        Payload::Bytes(bytes) => (serde_json::Value::Null, Some(bytes.clone())),
    }
}

/// `frame` (a publish or a send) carrying `bytes` as base64 text; `None`
/// when the runtime cannot write base64.
fn with_base64(mut frame: ClientFrame, bytes: &[u8]) -> Option<ClientFrame> {
    if let ClientFrame::Publish { data, encoding, .. } | ClientFrame::Send { data, encoding, .. } =
        &mut frame
    {
        *data = serde_json::Value::String(crate::codec::to_base64(bytes)?);
        *encoding = Some(switchboard_protocol::Encoding::Base64);
    }
    Some(frame)
}

/// The number of an id (`<prefix>-<n>`): the order it was first sent in.
fn id_number(id: &str) -> u64 {
    id.rsplit('-').next().and_then(|n| n.parse().ok()).unwrap_or(0)
}
