//! The pub/sub message that carries one delivery between nodes: five
//! fields separated by newlines, the frame last (names have no control
//! characters and serialized JSON has no raw newline, so the split is exact):
//!
//! ```text
//! <kind>\n<target>\n<epoch>\n<offset>\n<frame JSON>
//! ```
//!
//! `kind` is `m` (message), `p` (presence) or `o` (occupancy); `target` is
//! `r:<room>`, `u:<user>` or `*` (every connection); `epoch` and `offset`
//! are empty for a delivery outside any stream. The publish script
//! (`scripts.rs`) writes the same format from Lua.
//!
//! Kind `x` is not a delivery but an order to close every connection of
//! `u:<user>`: the offset field holds the close code, the last the reason
//! (`POST /api/disconnect` on any node).
//!
//! Kinds `q` and `a` are a survey (`survey.rs`) and its answers:
//! `q\n<survey id>\n<asking node>\n<query JSON>` and
//! `a\n<survey id>\n<asking node>\n<answering node>\n<answer JSON>`.

use std::sync::Arc;

use switchboard_protocol::CloseCode;
use tungstenite::Utf8Bytes;

use crate::hub::{Delivery, DeliveryKind, Target};
use crate::stream::{StreamKey, epoch_tag};

/// A delivery as it travels between nodes.
#[derive(Debug, Clone)]
pub(crate) struct Envelope {
    pub(crate) delivery: Delivery,
    /// The stream's epoch, for deliveries that are part of a stream.
    pub(crate) epoch: Option<String>,
}

impl Envelope {
    /// The stream a delivery belongs to, if it carries an offset.
    pub(crate) fn stream(&self) -> Option<(StreamKey, &str, u64)> {
        let offset = self.delivery.offset?;
        let epoch = self.epoch.as_deref()?;
        Some((self.delivery.target.stream()?, epoch, offset))
    }
}

/// The target of a stream's messages, as the wire writes it.
pub(crate) fn target_of(key: &StreamKey) -> String {
    match key {
        StreamKey::Room(room) => format!("r:{room}"),
        StreamKey::Inbox(user) => format!("u:{user}"),
    }
}

/// The wire's target of a room message that leaves out one session: the
/// room, a tab (which no name holds), the session.
pub(crate) fn except_target(room: &str, except: &uuid::Uuid) -> String {
    format!("r:{room}\t{}", except.simple())
}

/// Writes a delivery that is not part of a stream.
pub(crate) fn encode(delivery: &Delivery) -> String {
    let kind = match delivery.kind {
        DeliveryKind::Message => 'm',
        DeliveryKind::Presence => 'p',
        DeliveryKind::Occupancy => 'o',
        DeliveryKind::Join => 'j',
        DeliveryKind::Leave => 'l',
        // Made by each node for its own followers, never sent.
        DeliveryKind::Reset => 'r',
    };
    let target = match &delivery.target {
        Target::Room(room) => format!("r:{room}"),
        Target::RoomExcept(room_except) => except_target(&room_except.0, &room_except.1),
        Target::User(user) => format!("u:{user}"),
        Target::All => "*".to_owned(),
    };
    let offset = delivery.offset.map(|o| o.to_string()).unwrap_or_default();
    format!("{kind}\n{target}\n\n{offset}\n{}", delivery.frame)
}

/// What the channel carries.
#[derive(Debug, Clone)]
pub(crate) enum Incoming {
    /// A delivery for the hub.
    Delivery(Envelope),
    /// Close every connection of a user.
    Close { user: Arc<str>, code: CloseCode, reason: String },
    /// Close one session, wherever it is.
    CloseSession { session: uuid::Uuid, code: CloseCode, reason: String },
    /// Write a frame to one session, wherever it is.
    ToSession { session: uuid::Uuid, frame: Utf8Bytes },
    /// A node asks every node for its part of an answer.
    Survey { id: uuid::Uuid, from: String, query: String },
    /// A node's part of the answer to the survey `id` of node `to`.
    Answer { id: uuid::Uuid, to: String, node: String, answer: String },
}

/// Writes a survey: `from` asks every node `query`.
pub(crate) fn encode_survey(id: &uuid::Uuid, from: &str, query: &str) -> String {
    format!("q\n{}\n{from}\n{query}", id.simple())
}

/// Writes `node`'s answer to the survey `id` of node `to`.
pub(crate) fn encode_answer(id: &uuid::Uuid, to: &str, node: &str, answer: &str) -> String {
    format!("a\n{}\n{to}\n{node}\n{answer}", id.simple())
}

/// Writes the order to close every connection of `user`.
pub(crate) fn encode_close(user: &str, code: CloseCode, reason: &str) -> String {
    format!("x\nu:{user}\n\n{}\n{reason}", code.0)
}

/// Writes the order to close the session `session`.
pub(crate) fn encode_close_session(session: &uuid::Uuid, code: CloseCode, reason: &str) -> String {
    format!("x\ns:{}\n\n{}\n{reason}", session.simple(), code.0)
}

/// Writes a frame for the session `session`.
pub(crate) fn encode_to_session(session: &uuid::Uuid, frame: &str) -> String {
    format!("f\ns:{}\n{frame}", session.simple())
}

/// Reads what the channel carried; `None` for anything malformed (logged
/// by the caller).
pub(crate) fn decode(payload: &[u8]) -> Option<Incoming> {
    let text = std::str::from_utf8(payload).ok()?;
    if let Some(close) = text.strip_prefix("x\ns:") {
        let mut fields = close.splitn(4, '\n');
        let session = uuid::Uuid::try_parse(fields.next()?).ok()?;
        let _epoch = fields.next()?;
        let code = CloseCode(fields.next()?.parse().ok()?);
        let reason = fields.next()?.to_owned();
        return Some(Incoming::CloseSession { session, code, reason });
    }
    if let Some(frame) = text.strip_prefix("f\ns:") {
        let (session, frame) = frame.split_once('\n')?;
        let session = uuid::Uuid::try_parse(session).ok()?;
        return Some(Incoming::ToSession { session, frame: Utf8Bytes::from(frame) });
    }
    if let Some(survey) = text.strip_prefix("q\n") {
        let mut fields = survey.splitn(3, '\n');
        let id = uuid::Uuid::try_parse(fields.next()?).ok()?;
        let from = fields.next()?.to_owned();
        let query = fields.next()?.to_owned();
        return Some(Incoming::Survey { id, from, query });
    }
    if let Some(answer) = text.strip_prefix("a\n") {
        let mut fields = answer.splitn(4, '\n');
        let id = uuid::Uuid::try_parse(fields.next()?).ok()?;
        let to = fields.next()?.to_owned();
        let node = fields.next()?.to_owned();
        let answer = fields.next()?.to_owned();
        return Some(Incoming::Answer { id, to, node, answer });
    }
    if let Some(close) = text.strip_prefix("x\nu:") {
        let mut fields = close.splitn(4, '\n');
        let user = Arc::from(fields.next()?);
        let _epoch = fields.next()?;
        let code = CloseCode(fields.next()?.parse().ok()?);
        let reason = fields.next()?.to_owned();
        return Some(Incoming::Close { user, code, reason });
    }
    decode_delivery(text).map(Incoming::Delivery)
}

fn decode_delivery(text: &str) -> Option<Envelope> {
    let mut fields = text.splitn(5, '\n');
    let kind = match fields.next()? {
        "m" => DeliveryKind::Message,
        "p" => DeliveryKind::Presence,
        "o" => DeliveryKind::Occupancy,
        "j" => DeliveryKind::Join,
        "l" => DeliveryKind::Leave,
        _ => return None,
    };
    let target = match fields.next()? {
        "*" => Target::All,
        other => match other.split_once(':')? {
            ("r", room) => match room.split_once('\t') {
                Some((room, except)) => Target::RoomExcept(Box::new((
                    Arc::from(room),
                    uuid::Uuid::try_parse(except).ok()?,
                ))),
                None => Target::Room(Arc::from(room)),
            },
            ("u", user) => Target::User(Arc::from(user)),
            _ => return None,
        },
    };
    let epoch = Some(fields.next()?).filter(|e| !e.is_empty()).map(str::to_owned);
    let offset = match fields.next()? {
        "" => None,
        digits => Some(digits.parse().ok()?),
    };
    let frame = Utf8Bytes::from(fields.next()?);
    let tag = match (&epoch, offset) {
        (Some(epoch), Some(_)) => epoch_tag(epoch),
        _ => 0,
    };
    Some(Envelope {
        delivery: Delivery {
            target,
            frame,
            kind,
            offset,
            epoch: tag,
            deflated: Default::default(),
            enveloped: Default::default(),
        },
        epoch,
    })
}

/// The frame of a message without its closing brace, so that the publish
/// script can append the offset it assigns: `{…,"ts":1}` becomes
/// `{…,"ts":1` and the script writes `{…,"ts":1,"offset":7}`, exactly
/// what [`crate::wire::encode`] writes for the message with
/// that offset (the offset is the message's last field).
pub(crate) fn open_frame(message: &switchboard_protocol::Message) -> String {
    let mut message = message.clone();
    message.offset = None;
    let frame = crate::wire::encode(&switchboard_protocol::ServerFrame::Message(message));
    let mut text = frame.to_string();
    text.pop();
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_protocol::{Message, ServerFrame};

    #[test]
    fn deliveries_survive_the_wire() {
        let targets = [Target::Room("a:b c".into()), Target::User("ann".into()), Target::All];
        let kinds = [DeliveryKind::Presence, DeliveryKind::Join, DeliveryKind::Leave];
        for (target, kind) in targets.into_iter().flat_map(|t| kinds.map(|k| (t.clone(), k))) {
            let frame = Utf8Bytes::from(r#"{"type":"presence","text":"x\ny"}"#);
            let delivery = Delivery::new(target, frame, kind);
            let Some(Incoming::Delivery(back)) = decode(encode(&delivery).as_bytes()) else {
                panic!("a delivery")
            };
            assert_eq!(back.delivery.target, delivery.target);
            assert_eq!(back.delivery.frame, delivery.frame);
            assert_eq!(
                (back.delivery.kind, back.delivery.offset, back.epoch),
                (delivery.kind, None, None)
            );
        }
        let Some(Incoming::Delivery(stream)) = decode(b"m\nr:lobby\nab12\n7\n{}") else {
            panic!("a delivery")
        };
        assert_eq!(stream.stream(), Some((StreamKey::Room("lobby".into()), "ab12", 7)));
        assert_eq!(stream.delivery.epoch, epoch_tag("ab12"));
        let close = decode(encode_close("ann", CloseCode::KICKED, "bye\nnow").as_bytes());
        assert!(
            matches!(&close, Some(Incoming::Close { user, code, reason })
                if &**user == "ann" && *code == CloseCode::KICKED && reason == "bye\nnow"),
            "{close:?}"
        );
        let session = uuid::Uuid::new_v4();
        let close = decode(encode_close_session(&session, CloseCode::KICKED, "one").as_bytes());
        assert!(
            matches!(&close, Some(Incoming::CloseSession { session: s, code, reason })
                if *s == session && *code == CloseCode::KICKED && reason == "one"),
            "{close:?}"
        );
        let to = decode(encode_to_session(&session, "{\"a\":\"x\\ny\"}").as_bytes());
        assert!(
            matches!(&to, Some(Incoming::ToSession { session: s, frame }) if *s == session && frame.as_str() == "{\"a\":\"x\\ny\"}"),
            "{to:?}"
        );
        let id = uuid::Uuid::new_v4();
        let survey = decode(encode_survey(&id, "n1", r#"{"limit":5}"#).as_bytes());
        assert!(
            matches!(&survey, Some(Incoming::Survey { id: i, from, query })
                if *i == id && from == "n1" && query == r#"{"limit":5}"#),
            "{survey:?}"
        );
        let answer = decode(encode_answer(&id, "n1", "n2", r#"{"connections":[]}"#).as_bytes());
        assert!(
            matches!(&answer, Some(Incoming::Answer { id: i, to, node, answer })
                if *i == id && to == "n1" && node == "n2" && answer == r#"{"connections":[]}"#),
            "{answer:?}"
        );
        assert!(decode(b"q\nnot-a-uuid\nn1\n{}").is_none());
        assert!(decode(b"a\n00000000000000000000000000000000\nn1").is_none());
        assert!(decode(b"f\ns:not-a-uuid\n{}").is_none());
        assert!(decode(b"x\nr:lobby\n\n\n{}").is_none());
        assert!(decode(b"m\nq:lobby\n\n\n{}").is_none());
        assert!(decode(b"m\nr:lobby\ne\nseven\n{}").is_none());
        assert!(decode(b"m\nr:lobby").is_none());
    }

    #[test]
    fn the_script_completes_an_open_frame_as_the_hub_would_encode_it() {
        let message = Message {
            encoding: None,
            room: Some("lobby".into()),
            to: None,
            from: "ann".into(),
            event: "chat".into(),
            data: serde_json::json!({"text": "}\"offset\":1"}),
            ts: 1_700_000_000_000,
            offset: None,
            binary: None,
        };
        let completed = format!("{},\"offset\":42}}", open_frame(&message));
        let expected =
            crate::wire::encode(&ServerFrame::Message(Message { offset: Some(42), ..message }));
        assert_eq!(completed, expected.as_str());
    }
}
