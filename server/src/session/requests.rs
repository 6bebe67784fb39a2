//! What each request frame does: `join`, `leave`, `send`, `history`,
//! `members`, `auth`, `rpc` and `ping`, with the permission and name checks
//! in front of them (`publish` has its own file, `publishing.rs`). A `publish` or `send` with an id takes effect
//! once per id: the engine looks the id up and records it in the same step
//! as the append, so nothing is claimed while the hooks run and a request
//! cut short leaves nothing behind. The connection's life around them is in
//! `mod.rs`.

use switchboard_protocol::{ClientFrame, ErrorCode, Message, ServerFrame, validate_name};

use super::{Flow, Refused, Session, Socket};
use crate::config::Access;
use crate::policy::auth::AuthError;
use crate::policy::hooks::{self, HookFailure, MessageDecision, RpcReply};
use crate::state::server_api::members_limit;
use crate::wire::now_ms;

impl<S: Socket> Session<S> {
    /// Carries out one decoded request.
    pub(super) async fn handle(&mut self, frame: ClientFrame) -> Flow {
        match frame {
            ClientFrame::Join { id, room, since } => self.join(id, room, since).await,
            ClientFrame::Leave { id, room } => self.leave(id, room).await,
            // `carry_out` sends publishes to `publish_gathered`; one that
            // came here all the same is a gathering of one.
            publish @ ClientFrame::Publish { .. } => self.publish_gathered(publish).await,
            ClientFrame::Send { id, to, event, data, encoding } => {
                if let Err(flow) = self.check_name(&id, "to", &to).await {
                    return flow;
                }
                if let Err(flow) = self.check_name(&id, "event", &event).await {
                    return flow;
                }
                if let Err(refused) = valid_data(&id, &data, encoding) {
                    return self.answer(refused).await;
                }
                if self.conn.state.permissions().send != Access::Anyone {
                    let message = "private messages between clients are switched off".to_owned();
                    return self.fail(id, ErrorCode::FORBIDDEN, message).await;
                }
                let hooked = match self.conn.state.hooks() {
                    Some((hooks, timeout)) => {
                        let hook = hooks.send(&self.conn.identity, &to, &event, &data, encoding);
                        Some(hooks::call("send", timeout, hook).await)
                    }
                    None => None,
                };
                let data = match self.decided(&id, hooked, data, encoding).await {
                    Ok(data) => data,
                    Err(flow) => return flow,
                };
                let message = Message {
                    encoding,
                    room: None,
                    to: Some(to.clone()),
                    from: self.conn.user.to_string(),
                    event,
                    data,
                    ts: now_ms(),
                    offset: None,
                    binary: None,
                };
                let request = id.clone().map(|id| (self.conn.user.clone(), id));
                match self.conn.state.send_private(to.into(), message, request).await {
                    Ok(sent) => {
                        self.ack(id, |ack| {
                            ack.delivered = Some(sent.delivered as u64);
                            ack.status = Some(sent.status.as_str().to_owned());
                            ack.offset = Some(sent.offset);
                        })
                        .await
                    }
                    Err(err) => self.fail(id, ErrorCode::UNAVAILABLE, err.to_string()).await,
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
                match self.conn.state.read_history(&room, since, limit).await {
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
                let page = if self.conn.is_member(&room) {
                    let limit = members_limit(limit);
                    let presence = self.conn.state.engine().presence();
                    match presence.members(&room, cursor.as_deref(), limit).await {
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
            ClientFrame::Auth { id, token } => {
                let refreshed = self.conn.state.auth().authenticate(&token).await;
                match refreshed.and_then(|token| self.conn.identity.refresh(token)) {
                    Ok(()) => self.ack(id, |_| {}).await,
                    Err(err @ AuthError::KeysUnavailable) => {
                        self.fail(id, ErrorCode::UNAVAILABLE, err.to_string()).await
                    }
                    Err(err) => self.fail(id, ErrorCode::INVALID_TOKEN, err.to_string()).await,
                }
            }
            ClientFrame::Rpc { id, method, data } => {
                if let Err(flow) = self.check_name(&id, "method", &method).await {
                    return flow;
                }
                let reply = match self.conn.state.hooks() {
                    Some((hooks, timeout)) => {
                        let hook = hooks.rpc(&self.conn.identity, &method, &data);
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

    /// The `data` a message goes out with after the hooks' say (`hooked`,
    /// `None` without hooks); `Err` with the flow when they refused it, or
    /// failed (nothing was recorded of its id: a retry is carried out).
    async fn decided(
        &mut self,
        id: &Option<String>,
        hooked: Option<Result<MessageDecision, HookFailure>>,
        data: serde_json::Value,
        encoding: Option<switchboard_protocol::Encoding>,
    ) -> Result<serde_json::Value, Flow> {
        match decision(id, hooked, data, encoding) {
            Ok(data) => Ok(data),
            Err(refused) => Err(self.answer(refused).await),
        }
    }

    pub(super) async fn check_name(
        &mut self,
        id: &Option<String>,
        field: &str,
        name: &str,
    ) -> Result<(), Flow> {
        match valid_name(id, field, name) {
            Ok(()) => Ok(()),
            Err(refused) => Err(self.answer(refused).await),
        }
    }
}

/// Whether `name` is a valid name; the refusal naming `field` otherwise.
pub(super) fn valid_name(id: &Option<String>, field: &str, name: &str) -> Result<(), Refused> {
    validate_name(name).map_err(|err| {
        Refused::Answer(id.clone(), ErrorCode::INVALID_NAME, format!("invalid `{field}`: {err}"))
    })
}

/// Refuses `data` that does not match its `encoding` (bytes as base64
/// text), with [`ErrorCode::INVALID_FRAME`].
pub(super) fn valid_data(
    id: &Option<String>,
    data: &serde_json::Value,
    encoding: Option<switchboard_protocol::Encoding>,
) -> Result<(), Refused> {
    crate::binary::check_data(data, encoding)
        .map_err(|why| Refused::Answer(id.clone(), ErrorCode::INVALID_FRAME, why.to_string()))
}

/// The data a message hook's answer lets through (the client's without
/// hooks), or the refusal to answer. Data a hook puts in place of bytes
/// must be base64 text too, as the message's `encoding` says: otherwise
/// [`ErrorCode::HOOK_FAILED`], the hook's fault.
pub(super) fn decision(
    id: &Option<String>,
    hooked: Option<Result<MessageDecision, HookFailure>>,
    data: serde_json::Value,
    encoding: Option<switchboard_protocol::Encoding>,
) -> Result<serde_json::Value, Refused> {
    match hooked {
        None | Some(Ok(MessageDecision::Allow)) => Ok(data),
        Some(Ok(MessageDecision::Replace(data))) => {
            match crate::binary::check_data(&data, encoding) {
                Ok(()) => Ok(data),
                Err(why) => {
                    let why = format!("the hook's data does not fit the message: {why}");
                    Err(Refused::Answer(id.clone(), ErrorCode::HOOK_FAILED, why))
                }
            }
        }
        Some(Ok(MessageDecision::Refuse { code, message })) => {
            Err(Refused::Answer(id.clone(), code, message))
        }
        Some(Err(failure)) => {
            Err(Refused::Answer(id.clone(), ErrorCode::HOOK_FAILED, failure.to_string()))
        }
    }
}
