//! What each request frame does: `join`, `leave`, `publish`, `send`,
//! `history`, `members`, `auth`, `rpc` and `ping`, with the permission and name
//! checks in front of them and the idempotent-id window around `publish` and
//! `send`. The connection's life around them is in `mod.rs`.

use std::sync::Arc;

use futures::SinkExt;
use switchboard_protocol::{
    Ack, ClientFrame, ErrorCode, Message, PresenceAction, ServerFrame, validate_name,
};
use tungstenite::Message as WsMessage;

use super::{Flow, Session, Socket, written};
use crate::broker::Target;
use crate::config::Access;
use crate::hub::ids::Seen;
use crate::hub::operations::{announce, members_limit, read_history, send_private};
use crate::hub::presence;
use crate::policy::hooks::{self, HookFailure, MessageDecision, RpcReply};
use crate::store::StreamKey;
use crate::transport::wire::{encode, now_ms};

impl<S: Socket> Session<S> {
    /// Carries out one decoded request.
    pub(super) async fn handle(&mut self, frame: ClientFrame) -> Flow {
        match frame {
            ClientFrame::Join { id, room, since } => self.join(id, room, since).await,
            ClientFrame::Leave { id, room } => self.leave(id, room).await,
            ClientFrame::Publish { id, room, event, data, exclude_self } => {
                if let Err(flow) = self.check_name(&id, "room", &room).await {
                    return flow;
                }
                if let Err(flow) = self.check_name(&id, "event", &event).await {
                    return flow;
                }
                if !self.may(&room, |rule| rule.publish) {
                    let message = format!("not allowed to publish to `{room}`");
                    return self.fail(id, ErrorCode::FORBIDDEN, message).await;
                }
                if self.state.config().rooms.publish_requires_join
                    && !self.state.hub().is_member(self.outbound.key, &room)
                {
                    let message = format!("join room `{room}` before publishing to it");
                    return self.fail(id, ErrorCode::NOT_JOINED, message).await;
                }
                if let Some(flow) = self.repeat(&id).await {
                    return flow;
                }
                let hooked = match self.state.hooks() {
                    Some((hooks, timeout)) => {
                        let hook = hooks.publish(&self.identity, &room, &event, &data);
                        Some(hooks::call("publish", timeout, hook).await)
                    }
                    None => None,
                };
                let data = match self.decided(&id, hooked, data).await {
                    Ok(data) => data,
                    Err(flow) => return flow,
                };
                let message = Message {
                    room: Some(room.clone()),
                    to: None,
                    from: self.user.to_string(),
                    event,
                    data,
                    ts: now_ms(),
                    offset: None,
                };
                let copy = self.state.events().map(|_| message.clone());
                let room: Arc<str> = room.into();
                let key = StreamKey::Room(room.clone());
                let request = id.as_deref().map(|id| (&*self.user, id));
                let target = if exclude_self {
                    Target::RoomExcept(Box::new((room, self.id)))
                } else {
                    Target::Room(room)
                };
                let published = self
                    .state
                    .streams()
                    .publish(self.state.broker(), key, target, message, request)
                    .await;
                match published {
                    Ok(published) => {
                        self.state.hub().counters.message_accepted();
                        let offset = published.stored.offset;
                        if let (Some(events), Some(message)) = (self.state.events(), copy) {
                            events.published(&message, offset);
                        }
                        self.answer(id, |ack| ack.offset = Some(offset)).await
                    }
                    Err(err) => self.refuse(id, ErrorCode::UNAVAILABLE, err.to_string()).await,
                }
            }
            ClientFrame::Send { id, to, event, data } => {
                if let Err(flow) = self.check_name(&id, "to", &to).await {
                    return flow;
                }
                if let Err(flow) = self.check_name(&id, "event", &event).await {
                    return flow;
                }
                if self.state.permissions().send != Access::Anyone {
                    let message = "private messages between clients are switched off".to_owned();
                    return self.fail(id, ErrorCode::FORBIDDEN, message).await;
                }
                if let Some(flow) = self.repeat(&id).await {
                    return flow;
                }
                let hooked = match self.state.hooks() {
                    Some((hooks, timeout)) => {
                        let hook = hooks.send(&self.identity, &to, &event, &data);
                        Some(hooks::call("send", timeout, hook).await)
                    }
                    None => None,
                };
                let data = match self.decided(&id, hooked, data).await {
                    Ok(data) => data,
                    Err(flow) => return flow,
                };
                let message = Message {
                    room: None,
                    to: Some(to.clone()),
                    from: self.user.to_string(),
                    event,
                    data,
                    ts: now_ms(),
                    offset: None,
                };
                let request = id.as_deref().map(|id| (&*self.user, id));
                let copy = self.state.events().map(|_| message.clone());
                match send_private(&self.state, to.into(), message, request).await {
                    Ok(sent) => {
                        if let (Some(events), Some(message)) = (self.state.events(), copy) {
                            events.sent(&message, sent.offset);
                        }
                        self.answer(id, |ack| {
                            ack.delivered = Some(sent.reached as u64);
                            ack.status = Some(sent.status.as_str().to_owned());
                            ack.offset = Some(sent.offset);
                        })
                        .await
                    }
                    Err(err) => self.refuse(id, ErrorCode::UNAVAILABLE, err.to_string()).await,
                }
            }
            ClientFrame::History { id, room, since, limit } => {
                if let Err(flow) = self.check_name(&id, "room", &room).await {
                    return flow;
                }
                if !self.may(&room, |rule| rule.history) {
                    let message = format!("not allowed to read the history of `{room}`");
                    return self.fail(id, ErrorCode::FORBIDDEN, message).await;
                }
                match read_history(&self.state, &room, since, limit).await {
                    Ok(page) => {
                        self.ack(id, |ack| {
                            ack.epoch = page.epoch;
                            ack.offset = Some(page.offset);
                            ack.messages = Some(page.messages);
                        })
                        .await
                    }
                    Err(err) => self.fail(id, ErrorCode::UNAVAILABLE, err.to_string()).await,
                }
            }
            ClientFrame::Members { id, room, cursor, limit } => {
                if let Err(flow) = self.check_name(&id, "room", &room).await {
                    return flow;
                }
                if !self.may(&room, |rule| rule.presence) {
                    let message = format!("not allowed to see who is in `{room}`");
                    return self.fail(id, ErrorCode::FORBIDDEN, message).await;
                }
                let page = if self.state.hub().is_member(self.outbound.key, &room) {
                    let limit = members_limit(limit);
                    match presence::members(&self.state, &room, cursor.as_deref(), limit).await {
                        Ok(page) => page,
                        Err(err) => {
                            return self.fail(id, ErrorCode::UNAVAILABLE, err.to_string()).await;
                        }
                    }
                } else {
                    None
                };
                let Some(page) = page else {
                    let message = format!("join room `{room}` before reading its members");
                    return self.fail(id, ErrorCode::NOT_JOINED, message).await;
                };
                self.ack(id, |ack| {
                    ack.members = Some(page.members);
                    ack.member_count = Some(page.count as u64);
                    ack.cursor = page.cursor;
                })
                .await
            }
            ClientFrame::Auth { id, token } => match self.state.auth().verify(&token) {
                Ok(identity) if identity.user == self.user => {
                    self.identity = identity;
                    self.ack(id, |_| {}).await
                }
                Ok(_) => {
                    let message = crate::policy::auth::AuthError::OtherUser.to_string();
                    self.fail(id, ErrorCode::INVALID_TOKEN, message).await
                }
                Err(err) => self.fail(id, ErrorCode::INVALID_TOKEN, err.to_string()).await,
            },
            ClientFrame::Rpc { id, method, data } => {
                if let Err(flow) = self.check_name(&id, "method", &method).await {
                    return flow;
                }
                let reply = match self.state.hooks() {
                    Some((hooks, timeout)) => {
                        let hook = hooks.rpc(&self.identity, &method, &data);
                        hooks::call("rpc", timeout, hook).await
                    }
                    None => Ok(RpcReply::no_handler(&method)),
                };
                match reply {
                    Ok(RpcReply::Result(data)) => self.ack(id, |ack| ack.data = Some(data)).await,
                    Ok(RpcReply::Refuse { code, message }) => self.fail(id, code, message).await,
                    Err(failure) => {
                        self.fail(id, ErrorCode::HOOK_FAILED, failure.to_string()).await
                    }
                }
            }
            ClientFrame::Ping { id } => self.reply(&ServerFrame::Pong { id }).await,
        }
    }

    /// For a `publish` or `send` whose id was seen recently: answers it again
    /// (or, while the first is still being carried out, acks it) and returns
    /// the flow; `None` for a new id, now claimed.
    async fn repeat(&mut self, id: &Option<String>) -> Option<Flow> {
        let id = id.as_ref()?;
        match self.state.ids().begin(&self.user, id) {
            Seen::New => None,
            Seen::Done(answer) => Some(written(self.socket.send(WsMessage::Text(answer)).await)),
            Seen::InFlight => Some(self.ack(Some(id.clone()), |_| {}).await),
        }
    }

    /// The `data` a message goes out with after the hooks' say (`hooked`,
    /// `None` without hooks); `Err` with the flow when they refused it, or
    /// failed (the claimed id is released: a retry is carried out).
    async fn decided(
        &mut self,
        id: &Option<String>,
        hooked: Option<Result<MessageDecision, HookFailure>>,
        data: serde_json::Value,
    ) -> Result<serde_json::Value, Flow> {
        match hooked {
            None | Some(Ok(MessageDecision::Allow)) => Ok(data),
            Some(Ok(MessageDecision::Replace(data))) => Ok(data),
            Some(Ok(MessageDecision::Refuse { code, message })) => {
                Err(self.refuse(id.clone(), code, message).await)
            }
            Some(Err(failure)) => {
                Err(self.refuse(id.clone(), ErrorCode::HOOK_FAILED, failure.to_string()).await)
            }
        }
    }

    /// Acks a claimed request and remembers the answer for repeats.
    async fn answer(&mut self, id: Option<String>, fill: impl FnOnce(&mut Ack)) -> Flow {
        let Some(id) = id else { return Flow::Continue };
        let mut ack = Ack { id: id.clone(), ..Ack::default() };
        fill(&mut ack);
        let frame = encode(&ServerFrame::Ack(ack));
        self.state.ids().finish(&self.user, &id, frame.clone());
        written(self.socket.send(WsMessage::Text(frame)).await)
    }

    /// Refuses a claimed request; the id is released so a retry is carried out.
    async fn refuse(&mut self, id: Option<String>, code: ErrorCode, message: String) -> Flow {
        if let Some(id) = &id {
            self.state.ids().forget(&self.user, id);
        }
        self.fail(id, code, message).await
    }

    pub(super) async fn announce(&mut self, room: &str, user: &str, action: PresenceAction) {
        announce(&self.state, room, user, action).await;
    }

    pub(super) async fn check_name(
        &mut self,
        id: &Option<String>,
        field: &str,
        name: &str,
    ) -> Result<(), Flow> {
        match validate_name(name) {
            Ok(()) => Ok(()),
            Err(err) => {
                let message = format!("invalid `{field}`: {err}");
                Err(self.fail(id.clone(), ErrorCode::INVALID_NAME, message).await)
            }
        }
    }
}
