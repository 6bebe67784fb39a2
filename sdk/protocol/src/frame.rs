//! The frames: one JSON object per WebSocket text message, selected by `type`.
//!
//! [`ClientFrame`] travels from client to hub, [`ServerFrame`] from hub to
//! client. The two directions treat unknown fields differently, on purpose:
//! - a client frame with a field the hub does not know is refused with
//!   [`ErrorCode::INVALID_FRAME`]: a misspelled `since` or a `from` the
//!   client hoped to set must fail loudly, not be silently dropped;
//! - a server frame may carry fields a client does not know, and clients
//!   ignore them, so a newer hub can add fields without breaking older SDKs.
//!
//! The names and meanings here stay within a protocol version.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::binary::Encoding;
use crate::code::ErrorCode;

/// A frame sent by a client to the hub.
///
/// Every variant may carry a client-chosen `id`; the hub then answers with an
/// [`Ack`] or an [`ErrorFrame`] carrying the same `id`. Without an `id` the
/// request is fire-and-forget (errors are still reported, without an `id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    /// Join a room; the room is created on first join.
    Join {
        /// Request id echoed by the answer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The room to join.
        room: String,
        /// Resume from this position: the hub replays every message after it
        /// before live ones, or says `recovered: false` in the ack.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<Position>,
    },
    /// Leave a room; an empty room disappears.
    Leave {
        /// Request id echoed by the answer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The room to leave.
        room: String,
    },
    /// Publish an event to every connection in a room, the sender's included
    /// unless `exclude_self`.
    Publish {
        /// Request id echoed by the answer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The target room.
        room: String,
        /// The application's event name.
        event: String,
        /// Any JSON value; `null` when absent (and left out when null). With
        /// `encoding`, the base64 text of bytes.
        #[serde(default, skip_serializing_if = "Value::is_null")]
        data: Value,
        /// `"base64"` when `data` is the base64 text of bytes (a client that
        /// cannot send binary frames publishing bytes).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        encoding: Option<Encoding>,
        /// Leave out the sending connection (its user's other connections
        /// still get it). The message is part of the room's history all the
        /// same, so a replay after a reconnect includes it.
        #[serde(default, skip_serializing_if = "is_false")]
        exclude_self: bool,
    },
    /// Send an event privately to every connection of one user.
    Send {
        /// Request id echoed by the answer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The receiving user id.
        to: String,
        /// The application's event name.
        event: String,
        /// Any JSON value; `null` when absent (and left out when null). With
        /// `encoding`, the base64 text of bytes.
        #[serde(default, skip_serializing_if = "Value::is_null")]
        data: Value,
        /// `"base64"` when `data` is the base64 text of bytes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        encoding: Option<Encoding>,
    },
    /// Read a room's stored history; answered by an [`Ack`] with `messages`.
    History {
        /// Request id echoed by the answer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The room.
        room: String,
        /// Only messages after this offset (in the room's current epoch).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<u64>,
        /// At most this many messages (the hub caps it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Reads a page of a joined room's members, in byte order of the user
    /// ids; answered by an [`Ack`] with `members`, `member_count` and, when
    /// more follow, `cursor`.
    Members {
        /// Request id echoed by the answer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The room.
        room: String,
        /// The `cursor` of the previous page; the first page when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cursor: Option<String>,
        /// At most this many users (default 100, the hub caps it at
        /// [`MAX_MEMBERS_PAGE`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Presents a token: as the first frame when the URL and headers carry
    /// none, or later to replace one that is about to expire (same user).
    Auth {
        /// Request id echoed by the answer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The JWT.
        token: String,
    },
    /// Calls a method of the application (a hook or a webhook of the hub);
    /// answered by an [`Ack`] whose `data` is the result, or an `error`
    /// (206 `no_handler` when the hub has none).
    Rpc {
        /// Request id echoed by the answer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The method's name (the [naming rules](crate::validate_name)).
        method: String,
        /// Any JSON value; `null` when absent.
        #[serde(default)]
        data: Value,
    },
    /// An application-level heartbeat; answered by [`ServerFrame::Pong`].
    Ping {
        /// Request id echoed by the `pong`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
}

impl ClientFrame {
    /// The `type` names of every client frame, in declaration order.
    pub const TYPES: [&'static str; 9] =
        ["join", "leave", "publish", "send", "history", "members", "auth", "rpc", "ping"];

    /// The request id, if the client set one.
    pub fn id(&self) -> Option<&str> {
        match self {
            ClientFrame::Join { id, .. }
            | ClientFrame::Leave { id, .. }
            | ClientFrame::Publish { id, .. }
            | ClientFrame::Send { id, .. }
            | ClientFrame::History { id, .. }
            | ClientFrame::Members { id, .. }
            | ClientFrame::Auth { id, .. }
            | ClientFrame::Rpc { id, .. }
            | ClientFrame::Ping { id } => id.as_deref(),
        }
    }

    /// Like [`ClientFrame::decode`], but first refuses JSON nested deeper
    /// than `max_depth` with [`ErrorCode::INVALID_FRAME`], before any parsing
    /// work is spent on it.
    pub fn decode_limited(text: &str, max_depth: usize) -> Result<ClientFrame, DecodeError> {
        if nesting_exceeds(text, max_depth) {
            return Err(DecodeError {
                code: ErrorCode::INVALID_FRAME,
                message: format!("JSON nested deeper than {max_depth} levels"),
                id: None,
            });
        }
        ClientFrame::decode(text)
    }

    /// Decodes one text frame, classifying a failure into the [`ErrorCode`]
    /// the hub answers with. Unknown fields and request ids longer than
    /// [`MAX_ID_BYTES`] are refused with [`ErrorCode::INVALID_FRAME`].
    pub fn decode(text: &str) -> Result<ClientFrame, DecodeError> {
        let frame = match serde_json::from_str::<ClientFrame>(text) {
            Ok(frame) => frame,
            Err(err) => return Err(DecodeError::classify(text, err)),
        };
        match frame.id() {
            // The hub remembers ids (and their answers) for retries: an
            // unbounded id would let one client pin memory with each request.
            Some(id) if id.len() > MAX_ID_BYTES => Err(DecodeError {
                code: ErrorCode::INVALID_FRAME,
                message: format!("`id` must be at most {MAX_ID_BYTES} bytes"),
                id: None,
            }),
            _ => Ok(frame),
        }
    }
}

/// The longest request `id` a client frame may carry, in bytes.
pub const MAX_ID_BYTES: usize = 128;

/// The most users one `members` page holds, whatever `limit` asks for.
pub const MAX_MEMBERS_PAGE: u32 = 1000;

/// Why a client frame could not be decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeError {
    /// [`ErrorCode::MALFORMED`], [`ErrorCode::UNKNOWN_TYPE`] or [`ErrorCode::INVALID_FRAME`].
    pub code: ErrorCode,
    /// A human-readable explanation.
    pub message: String,
    /// The frame's `id`, when one could be read, so the error can echo it.
    pub id: Option<String>,
}

impl DecodeError {
    /// Runs only on the failure path: a second, untyped parse tells apart
    /// "not JSON" from "unknown type" from "bad fields".
    fn classify(text: &str, err: serde_json::Error) -> DecodeError {
        let value: Value = match serde_json::from_str(text) {
            Ok(value) => value,
            Err(_) => {
                return DecodeError {
                    code: ErrorCode::MALFORMED,
                    message: format!("frame is not valid JSON: {err}"),
                    id: None,
                };
            }
        };
        let Some(object) = value.as_object() else {
            return DecodeError {
                code: ErrorCode::MALFORMED,
                message: "frame must be a JSON object".to_owned(),
                id: None,
            };
        };
        let id = object
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| id.len() <= MAX_ID_BYTES)
            .map(str::to_owned);
        match object.get("type").and_then(Value::as_str) {
            None => DecodeError {
                code: ErrorCode::MALFORMED,
                message: "frame must have a string field `type`".to_owned(),
                id,
            },
            Some(kind) if !ClientFrame::TYPES.contains(&kind) => DecodeError {
                code: ErrorCode::UNKNOWN_TYPE,
                message: format!(
                    "unknown frame type `{}`; expected one of {}",
                    truncate(kind, 64),
                    ClientFrame::TYPES.join(", ")
                ),
                id,
            },
            Some(kind) => DecodeError {
                code: ErrorCode::INVALID_FRAME,
                message: format!("invalid `{kind}` frame: {err}"),
                id,
            },
        }
    }
}

/// Whether `[`/`{` nesting outside strings goes deeper than `max`: a linear
/// scan that never recurses, whatever the input.
fn nesting_exceeds(text: &str, max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for byte in text.bytes() {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Keeps error messages short when a client sends a huge bogus value.
fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", text.get(..cut).unwrap_or_default()),
        None => text.to_owned(),
    }
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for DecodeError {}

/// For `skip_serializing_if`: a flag left out when false.
fn is_false(flag: &bool) -> bool {
    !flag
}

/// A frame sent by the hub to a client.
///
/// Decoding reads `type` first instead of buffering the frame (see
/// `tag_first.rs`); the serialized form is the derived one.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// Always the first frame of a connection.
    Welcome(Welcome),
    /// A room or private message.
    Message(Message),
    /// A user joined or left a room.
    Presence(Presence),
    /// How many users a large room holds now; large rooms send this instead
    /// of a [`Presence`] frame per join and leave.
    Occupancy(Occupancy),
    /// A request with an `id` succeeded.
    Ack(Ack),
    /// A request failed, or a frame could not be understood.
    Error(ErrorFrame),
    /// The connection's token expires soon: send an `auth` frame with a new
    /// one, or the connection is closed with 4004 when it expires.
    Refresh {
        /// Milliseconds until the token expires.
        expires_in_ms: u64,
    },
    /// The server put this connection in a room (a server-side join:
    /// `POST /api/rooms/{room}/join`, `AppState::join`): from now on it is a
    /// member as if it had sent `join`, and a client rejoins it after a
    /// reconnect like its own rooms.
    Joined(RoomJoined),
    /// The server took this connection out of a room (a server-side leave).
    Left {
        /// The room.
        room: String,
    },
    /// A stream this connection follows (a room's, or the inbox without
    /// `room`) started over under a new epoch while the connection was in
    /// it: its history was lost (the hub's Redis lost its data). Messages
    /// that follow continue from this position; a client moves its own
    /// position here and reloads what it shows from its own source.
    Reset(StreamReset),
    /// The answer to a client `ping`.
    Pong {
        /// The `id` of the `ping`, if it had one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
}

/// The first frame of every connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    /// This connection's id, unique on the hub.
    pub session: String,
    /// The user id the hub resolved for this connection.
    pub user: String,
    /// The protocol version ([`PROTOCOL_VERSION`](crate::PROTOCOL_VERSION)).
    pub protocol: u32,
    /// How often the hub pings, in milliseconds; a client that hears nothing
    /// for well over this long may treat the connection as dead.
    pub heartbeat_ms: u64,
    /// The user's inbox position just before the private messages that follow
    /// this frame (a replay, or what waited while the user was offline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbox: Option<Position>,
    /// When the connection asked to resume its inbox: whether every private
    /// message after that position follows this frame (true) or not (false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
    /// Frames per second this connection may send, with bursts of twice
    /// that; past it a frame is refused with error 203. Absent when the hub
    /// sets no limit. Clients pace themselves to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<u32>,
}

/// A message delivered to a client.
///
/// A room message has `room` and no `to`; a private message has `to` and no `room`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `"base64"` when the payload is bytes and `data` their base64 text;
    /// absent for a JSON payload, and for bytes that arrived in a binary
    /// frame (see [`binary`](Message::binary)). The first field, so that
    /// every binary message begins with
    /// [`BINARY_MESSAGE_PREFIX`](crate::binary::BINARY_MESSAGE_PREFIX).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<Encoding>,
    /// The room it was published to, for room messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// The receiving user, for private messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The sender's user id, set by the hub (or the hub's own name for API sends).
    pub from: String,
    /// The application's event name.
    pub event: String,
    /// The application's payload, any JSON value; for a binary payload in
    /// JSON, its base64 text (with [`encoding`](Message::encoding)).
    #[serde(default)]
    pub data: Value,
    /// When the hub accepted it, in Unix milliseconds.
    pub ts: u64,
    /// Its position in its stream (the room's, or the receiver's inbox):
    /// consecutive, increasing by one per message within an epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// The payload's bytes, when it is bytes and they are at hand: a client
    /// SDK puts here what arrived in a binary frame, or decoded from base64
    /// (and then leaves `data` null and `encoding` absent). Never part of
    /// the JSON.
    #[serde(skip)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub binary: Option<Vec<u8>>,
}

/// A position in a stream: the stream's epoch and the offset of the last
/// message seen. An epoch changes whenever the stream's history is lost, so
/// offsets from another epoch mean nothing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Position {
    /// The stream's epoch.
    pub epoch: String,
    /// The offset of the last message seen (0 before any message).
    pub offset: u64,
}

/// Someone joined or left a room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Presence {
    /// The room.
    pub room: String,
    /// The user who joined or left.
    pub user: String,
    /// What happened.
    pub action: PresenceAction,
}

/// The user count of a large room, sent at most once per
/// `rooms.occupancy_interval_ms` while it changes.
///
/// A room becomes large when it holds more than `rooms.large_room` users and
/// stays large until it empties. In a large room joins and leaves are not
/// announced one by one (that would be N² frames to fill a room of N):
/// members get this count instead, and read names with a `members` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Occupancy {
    /// The room.
    pub room: String,
    /// Distinct users in the room.
    pub count: u64,
}

/// What a [`Presence`] frame reports. Presence is per user: a user's second
/// connection joining the same room announces nothing, and a `leave` comes
/// only when the user's last connection leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceAction {
    /// The user's first connection joined the room.
    Join,
    /// The user's last connection left the room.
    Leave,
}

/// A successful answer to a request that carried an `id`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Ack {
    /// The request's `id`.
    pub id: String,
    /// For `join`: the users present in the room, the joiner included, in
    /// byte order and at most `rooms.join_ack_members` of them; for
    /// `members`: one page of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<String>>,
    /// For `join` and `members`: how many users the room holds in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_count: Option<u64>,
    /// For `join` and `members`: where the next page of `members` starts
    /// (pass it back as `cursor`); absent when the list is complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// For `join`: true when the room is large, so its presence comes as
    /// [`Occupancy`] counts rather than a frame per join and leave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub large: Option<bool>,
    /// For `send`: how many of the receiver's connections it reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered: Option<u64>,
    /// For `send`: `"live"` when at least one connection got it now,
    /// `"queued"` when it waits in the receiver's inbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// For `join` and `history`: the stream's epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    /// For `join` and `history`: the offset of the stream's last message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// For a `join` with `since`: whether every message after `since` was
    /// replayed before this ack (true), or the gap could not be filled (false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
    /// For `history`: the messages, oldest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<Message>>,
    /// For `rpc`: the method's result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// For `join`: what the application says about the room, when it is a
    /// managed room (created ahead of time with metadata).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<RoomInfo>,
}

/// What the application says about a managed room: created through the
/// HTTP API (`POST /api/rooms`) or the in-process API, or named in
/// `rooms.default_rooms`. Every field is optional.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RoomInfo {
    /// A display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The application's own JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

/// A server-side join: what a `join`'s ack says, with the room's name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomJoined {
    /// The room.
    pub room: String,
    /// The users present, this one included, as in a join's ack (absent
    /// without the right to see the room's presence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<String>>,
    /// How many users the room holds in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_count: Option<u64>,
    /// Where the next page of `members` starts, as in a join's ack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// True when the room is large (presence as [`Occupancy`] counts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub large: Option<bool>,
    /// The room stream's epoch.
    pub epoch: String,
    /// The offset of the room's last message: messages after it follow.
    pub offset: u64,
    /// What the application says about the room, for a managed room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<RoomInfo>,
}

/// A stream that started over under a new epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamReset {
    /// The room; absent for the user's inbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// The stream's new epoch.
    pub epoch: String,
    /// The offset the stream stands at: messages after it follow.
    pub offset: u64,
}

/// A failed request, or a frame the hub could not understand.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorFrame {
    /// The request's `id`, when the failed frame had a readable one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// What went wrong; see [`ErrorCode`].
    pub code: ErrorCode,
    /// A human-readable explanation.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_classifies_failures() {
        let err = ClientFrame::decode("{not json").unwrap_err();
        assert_eq!(err.code, ErrorCode::MALFORMED);
        let err = ClientFrame::decode("[1,2]").unwrap_err();
        assert_eq!(err.code, ErrorCode::MALFORMED);
        let err = ClientFrame::decode(r#"{"id":"7"}"#).unwrap_err();
        assert_eq!((err.code, err.id.as_deref()), (ErrorCode::MALFORMED, Some("7")));
        let err = ClientFrame::decode(r#"{"type":"dance","id":"8"}"#).unwrap_err();
        assert_eq!((err.code, err.id.as_deref()), (ErrorCode::UNKNOWN_TYPE, Some("8")));
        let err = ClientFrame::decode(r#"{"type":"join","room":5,"id":"9"}"#).unwrap_err();
        assert_eq!((err.code, err.id.as_deref()), (ErrorCode::INVALID_FRAME, Some("9")));
        let err = ClientFrame::decode(r#"{"type":"send","event":"x"}"#).unwrap_err();
        assert_eq!(err.code, ErrorCode::INVALID_FRAME);
    }

    #[test]
    fn decode_refuses_unknown_fields_a_forged_from_included() {
        for text in [
            r#"{"type":"publish","id":"1","room":"r","event":"e","from":"mallory"}"#,
            r#"{"type":"join","id":"1","room":"r","sinse":{"epoch":"e","offset":3}}"#,
            r#"{"type":"history","id":"1","room":"r","limt":5}"#,
            r#"{"type":"ping","id":"1","extra":true}"#,
            r#"{"type":"send","id":"1","to":"bob","Event":"e","event":"e"}"#,
        ] {
            let err = ClientFrame::decode(text).unwrap_err();
            assert_eq!(
                (err.code, err.id.as_deref()),
                (ErrorCode::INVALID_FRAME, Some("1")),
                "{text}"
            );
            assert!(err.message.contains("unknown field"), "{text}: {}", err.message);
        }
        // Known optional fields are still optional.
        assert!(ClientFrame::decode(r#"{"type":"publish","room":"r","event":"e"}"#).is_ok());
    }

    #[test]
    fn request_ids_are_bounded() {
        let fits = format!(r#"{{"type":"ping","id":"{}"}}"#, "i".repeat(MAX_ID_BYTES));
        assert!(ClientFrame::decode(&fits).is_ok());
        let long = format!(r#"{{"type":"ping","id":"{}"}}"#, "i".repeat(MAX_ID_BYTES + 1));
        let err = ClientFrame::decode(&long).unwrap_err();
        assert_eq!((err.code, err.id), (ErrorCode::INVALID_FRAME, None));
        let bad = format!(r#"{{"type":"ping","id":"{}","x":1}}"#, "i".repeat(1000));
        assert_eq!(ClientFrame::decode(&bad).unwrap_err().id, None, "a long id is not echoed");
    }

    #[test]
    fn application_data_keeps_its_key_order() {
        let frame = ClientFrame::decode(
            r#"{"type":"publish","room":"r","event":"e","data":{"zeta":1,"alpha":{"y":2,"b":3}}}"#,
        )
        .unwrap();
        let ClientFrame::Publish { data, .. } = frame else { panic!("not a publish") };
        assert_eq!(serde_json::to_string(&data).unwrap(), r#"{"zeta":1,"alpha":{"y":2,"b":3}}"#);
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let err = ClientFrame::decode_limited(&deep, 32).unwrap_err();
        assert_eq!(err.code, ErrorCode::INVALID_FRAME);
        let fine =
            r#"{"type":"publish","room":"r","event":"e","data":{"a":[[1]],"s":"[[[[[[\"{{{{"}}"#;
        assert!(ClientFrame::decode_limited(fine, 4).is_ok(), "brackets in strings do not count");
        assert!(ClientFrame::decode_limited(fine, 3).is_err());
    }

    #[test]
    fn long_unknown_types_are_truncated_in_messages() {
        let kind = "x".repeat(10_000);
        let err = ClientFrame::decode(&format!(r#"{{"type":"{kind}"}}"#)).unwrap_err();
        assert!(err.message.len() < 200, "{}", err.message);
    }
}
