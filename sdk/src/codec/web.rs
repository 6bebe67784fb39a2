//! Frames through the browser's JSON: `JSON.parse` then reading the
//! fields, building an object then `JSON.stringify`.
//!
//! Field names, optional fields and the order they are written in follow
//! the protocol crate's serde definitions (the wasm tests compare the two
//! on every frame type); a field added there must be added here.

use js_sys::JSON;
use switchboard_protocol::{
    Ack, ClientFrame, ErrorCode, ErrorFrame, Message, Occupancy, Position, Presence,
    PresenceAction, RoomInfo, RoomJoined, ServerFrame, Welcome,
};

use super::js_object::{Fields, ObjectBuilder, mistyped};

/// Decodes a frame from the hub; `Ok(None)` for a type this version does
/// not know; the reason when it is not a valid frame.
pub(crate) fn decode(text: &str) -> Result<Option<ServerFrame>, String> {
    let parsed = JSON::parse(text).map_err(|_| "not JSON".to_owned())?;
    let frame = Fields::of(parsed).ok_or_else(|| "a frame must be a JSON object".to_owned())?;
    let kind = frame.string("type")?;
    Ok(Some(match kind.as_str() {
        "welcome" => ServerFrame::Welcome(Welcome {
            session: frame.string("session")?,
            user: frame.string("user")?,
            protocol: frame.integer("protocol", u32::MAX.into())? as u32,
            heartbeat_ms: frame.integer("heartbeat_ms", u64::MAX)?,
            inbox: frame.optional("inbox", position)?,
            recovered: frame.opt_bool("recovered")?,
        }),
        "message" => ServerFrame::Message(message(&frame)?),
        "presence" => ServerFrame::Presence(Presence {
            room: frame.string("room")?,
            user: frame.string("user")?,
            action: match frame.string("action")?.as_str() {
                "join" => PresenceAction::Join,
                "leave" => PresenceAction::Leave,
                _ => return Err(mistyped("action", "\"join\" or \"leave\"")),
            },
        }),
        "occupancy" => ServerFrame::Occupancy(Occupancy {
            room: frame.string("room")?,
            count: frame.integer("count", u64::MAX)?,
        }),
        "ack" => ServerFrame::Ack(Ack {
            id: frame.string("id")?,
            members: frame.opt_strings("members")?,
            member_count: frame.opt_integer("member_count", u64::MAX)?,
            cursor: frame.opt_string("cursor")?,
            large: frame.opt_bool("large")?,
            delivered: frame.opt_integer("delivered", u64::MAX)?,
            status: frame.opt_string("status")?,
            epoch: frame.opt_string("epoch")?,
            offset: frame.opt_integer("offset", u64::MAX)?,
            recovered: frame.opt_bool("recovered")?,
            messages: frame.opt_list("messages", message)?,
            data: frame.opt_data("data")?,
            info: frame.optional("info", room_info)?,
        }),
        "error" => ServerFrame::Error(ErrorFrame {
            id: frame.opt_string("id")?,
            code: ErrorCode(frame.integer("code", u16::MAX.into())? as u16),
            message: frame.string("message")?,
        }),
        "refresh" => {
            ServerFrame::Refresh { expires_in_ms: frame.integer("expires_in_ms", u64::MAX)? }
        }
        "joined" => ServerFrame::Joined(RoomJoined {
            room: frame.string("room")?,
            members: frame.opt_strings("members")?,
            member_count: frame.opt_integer("member_count", u64::MAX)?,
            cursor: frame.opt_string("cursor")?,
            large: frame.opt_bool("large")?,
            epoch: frame.string("epoch")?,
            offset: frame.integer("offset", u64::MAX)?,
            info: frame.optional("info", room_info)?,
        }),
        "left" => ServerFrame::Left { room: frame.string("room")? },
        "pong" => ServerFrame::Pong { id: frame.opt_string("id")? },
        // A newer hub's frame: skipped, as the protocol allows.
        _ => return Ok(None),
    }))
}

fn message(fields: &Fields) -> Result<Message, String> {
    Ok(Message {
        room: fields.opt_string("room")?,
        to: fields.opt_string("to")?,
        from: fields.string("from")?,
        event: fields.string("event")?,
        data: fields.data("data")?,
        ts: fields.integer("ts", u64::MAX)?,
        offset: fields.opt_integer("offset", u64::MAX)?,
    })
}

fn position(fields: &Fields) -> Result<Position, String> {
    Ok(Position { epoch: fields.string("epoch")?, offset: fields.integer("offset", u64::MAX)? })
}

fn room_info(fields: &Fields) -> Result<RoomInfo, String> {
    Ok(RoomInfo {
        name: fields.opt_string("name")?,
        description: fields.opt_string("description")?,
        data: fields.opt_data("data")?,
    })
}

/// Encodes a frame for the hub, its fields in the order serde writes them.
pub(crate) fn encode(frame: &ClientFrame) -> String {
    let out = ObjectBuilder::new();
    match frame {
        ClientFrame::Join { id, room, since } => {
            head(&out, "join", id).text("room", room);
            if let Some(since) = since {
                let position = ObjectBuilder::new();
                position.text("epoch", &since.epoch).integer("offset", since.offset);
                out.set("since", &position.build());
            }
        }
        ClientFrame::Leave { id, room } => {
            head(&out, "leave", id).text("room", room);
        }
        ClientFrame::Publish { id, room, event, data, exclude_self } => {
            head(&out, "publish", id).text("room", room).text("event", event).data("data", data);
            if *exclude_self {
                out.flag("exclude_self", true);
            }
        }
        ClientFrame::Send { id, to, event, data } => {
            head(&out, "send", id).text("to", to).text("event", event).data("data", data);
        }
        ClientFrame::History { id, room, since, limit } => {
            head(&out, "history", id).text("room", room);
            if let Some(since) = since {
                out.integer("since", *since);
            }
            if let Some(limit) = limit {
                out.integer("limit", (*limit).into());
            }
        }
        ClientFrame::Members { id, room, cursor, limit } => {
            head(&out, "members", id).text("room", room);
            if let Some(cursor) = cursor {
                out.text("cursor", cursor);
            }
            if let Some(limit) = limit {
                out.integer("limit", (*limit).into());
            }
        }
        ClientFrame::Auth { id, token } => {
            head(&out, "auth", id).text("token", token);
        }
        ClientFrame::Rpc { id, method, data } => {
            head(&out, "rpc", id).text("method", method).data("data", data);
        }
        ClientFrame::Ping { id } => {
            head(&out, "ping", id);
        }
    }
    // `JSON.stringify` throws only for BigInts and cycles, which a tree
    // built from Rust values cannot hold.
    JSON::stringify(&out.build()).map(String::from).unwrap_or_default()
}

/// Sets `type`, then the request id when there is one: every client frame
/// starts so.
fn head<'a>(out: &'a ObjectBuilder, kind: &str, id: &Option<String>) -> &'a ObjectBuilder {
    out.text("type", kind);
    if let Some(id) = id {
        out.text("id", id);
    }
    out
}
