//! `publish`: the checks and hooks in front of it, and publishes committed
//! together.
//!
//! A client with several publishes in flight sends them back to back, and
//! they often arrive in one read. Committed one after the other, each
//! waits for the engine's answer before the next starts: on Redis, one
//! round trip each, on a node whose runtime is busy delivering. So the
//! publishes that have arrived already behind the first are gathered (up
//! to [`MAX_GATHERED`]), each checked in turn, and committed together
//! with [`Engine::publish_all`](crate::engine::Engine::publish_all), which
//! keeps their order in every stream (on Redis: one pipeline, in one round
//! trip). Answers go out in request order. A refusal, a malformed frame or
//! a frame that is not a publish ends the gathering, and is answered or
//! carried out after the gathered ones. With hooks configured, publishes
//! are not gathered: each would wait for the hooks of those behind it.

use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use switchboard_protocol::{Ack, ClientFrame, ErrorCode, Message, ServerFrame};
use tokio::time::Instant;

use super::flow::frame_slot;
use super::requests::{decision, valid_data, valid_name};
use super::{Flow, Refused, Session, Socket};
use crate::engine::{EngineError, Publication, Published};
use crate::hub::Target;
use crate::policy::hooks;
use crate::stream::StreamKey;
use crate::wire::now_ms;

/// At most this many publishes are committed together.
pub(super) const MAX_GATHERED: usize = 64;

/// A publish that passed its checks and hooks, ready for the engine.
pub(super) struct Prepared {
    id: Option<String>,
    publication: Publication,
    /// The message for the event sinks, when any are configured.
    copy: Option<Message>,
}

impl<S: Socket> Session<S> {
    /// Carries out a publish and the publishes that arrived behind it, then
    /// the frame that ended the gathering, if one did.
    pub(super) async fn publish_gathered(&mut self, first: ClientFrame) -> Flow {
        let started = Instant::now();
        let slot = frame_slot(&first);
        let mut gathered = Vec::new();
        let mut pending = Some(first);
        // What ended the gathering, carried out after the answers.
        let mut after = None;
        for read in 1.. {
            if let Some(frame) = pending.take() {
                match self.prepare_publish(frame).await {
                    Ok(prepared) => gathered.push(prepared),
                    Err(refused) => {
                        after = Some(Err(refused));
                        break;
                    }
                }
            }
            // With hooks, each gathered publish would wait for the hooks
            // of those behind it: one at a time then.
            if read >= MAX_GATHERED || self.conn.state.hooks().is_some() {
                break;
            }
            // Only what the socket holds already: never wait here.
            let Some(incoming) = self.socket.next().now_or_never() else { break };
            self.last_heard = Instant::now();
            match self.request_of(incoming) {
                Ok(frame @ ClientFrame::Publish { .. }) => pending = Some(frame),
                other => {
                    after = Some(other);
                    break;
                }
            }
        }
        let committed = gathered.len();
        let flow = self.commit_publishes(gathered).await;
        let latency = &self.conn.state.hub().counters.latency;
        for _ in 0..committed {
            latency.observe(slot, started.elapsed());
        }
        if !matches!(flow, Flow::Continue) {
            return flow;
        }
        match after {
            Some(Ok(frame)) => Box::pin(self.carry_out(frame)).await,
            Some(Err(refused)) => self.answer(refused).await,
            None => Flow::Continue,
        }
    }

    /// A `publish` through its checks and hooks, or the refusal to answer.
    pub(super) async fn prepare_publish(
        &mut self,
        frame: ClientFrame,
    ) -> Result<Prepared, Refused> {
        let ClientFrame::Publish { id, room, event, data, encoding, exclude_self } = frame else {
            unreachable!("prepare_publish takes publish frames");
        };
        valid_name(&id, "room", &room)?;
        valid_name(&id, "event", &event)?;
        valid_data(&id, &data, encoding)?;
        if !self.may(&room, |rule| rule.publish) {
            let message = format!("not allowed to publish to `{room}`");
            return Err(Refused::Answer(id, ErrorCode::FORBIDDEN, message));
        }
        if self.conn.state.config().rooms.publish_requires_join && !self.conn.is_member(&room) {
            let message = format!("join room `{room}` before publishing to it");
            return Err(Refused::Answer(id, ErrorCode::NOT_JOINED, message));
        }
        let hooked = match self.conn.state.hooks() {
            Some((hooks, timeout)) => {
                let hook = hooks.publish(&self.conn.identity, &room, &event, &data, encoding);
                Some(hooks::call("publish", timeout, hook).await)
            }
            None => None,
        };
        let data = decision(&id, hooked, data, encoding)?;
        let message = Message {
            encoding,
            room: Some(room.clone()),
            to: None,
            from: self.conn.user.to_string(),
            event,
            data,
            ts: now_ms(),
            offset: None,
            binary: None,
        };
        let copy = self.conn.state.events().map(|_| message.clone());
        let room: Arc<str> = room.into();
        let key = StreamKey::Room(room.clone());
        let target = if exclude_self {
            Target::RoomExcept(Box::new((room, self.conn.id)))
        } else {
            Target::Room(room)
        };
        let request = id.clone().map(|id| (self.conn.user.clone(), id));
        Ok(Prepared { id, publication: Publication { key, target, message, request }, copy })
    }

    /// Commits prepared publishes together and answers each, in order.
    pub(super) async fn commit_publishes(&mut self, mut gathered: Vec<Prepared>) -> Flow {
        if gathered.len() <= 1 {
            // The common case of one publish at a time: no batch to build.
            let Some(Prepared { id, publication, copy }) = gathered.pop() else {
                return Flow::Continue;
            };
            let result = self.conn.state.engine().publish(publication).await;
            return self.answer_published(id, copy, result, true).await;
        }
        let mut answers = Vec::with_capacity(gathered.len());
        let mut publications = Vec::with_capacity(gathered.len());
        for Prepared { id, publication, copy } in gathered {
            answers.push((id, copy));
            publications.push(publication);
        }
        let results = self.conn.state.engine().publish_all(publications).await;
        let count = answers.len();
        for (at, ((id, copy), result)) in answers.into_iter().zip(results).enumerate() {
            let flow = self.answer_published(id, copy, result, at + 1 == count).await;
            if !matches!(flow, Flow::Continue) {
                return flow;
            }
        }
        Flow::Continue
    }

    /// Acks a committed publish with its offset, or fails it. The `last`
    /// answer of a batch takes what the queue holds along in its write
    /// (the batch's messages to this connection, if it is in the room);
    /// those before it go alone, so that every ack still precedes them.
    async fn answer_published(
        &mut self,
        id: Option<String>,
        copy: Option<Message>,
        result: Result<Published, EngineError>,
        last: bool,
    ) -> Flow {
        match result {
            Ok(published) => {
                let offset = published.offset;
                if !published.repeated {
                    self.conn.state.hub().counters.message_accepted();
                    if let (Some(events), Some(message)) = (self.conn.state.events(), copy) {
                        events.published(&message, offset);
                    }
                }
                let Some(id) = id else { return Flow::Continue };
                let ack = ServerFrame::Ack(Ack { id, offset: Some(offset), ..Ack::default() });
                if last { self.reply_then_queued(&ack).await } else { self.reply(&ack).await }
            }
            Err(err) => self.fail(id, ErrorCode::UNAVAILABLE, err.to_string()).await,
        }
    }
}
