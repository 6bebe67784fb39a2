//! SDK values to plain JavaScript objects, and JavaScript values to JSON
//! data.
//!
//! Objects are written as JSON text field by field
//! (`switchboard_sdk::js::ObjectWriter`) and cross into JavaScript as one
//! string for `JSON.parse`: no serde derive per event type in the module, no
//! copy of a message's data, and one string crossing the boundary per event
//! rather than one per field. Both directions have the semantics web
//! developers expect of a JSON API (`undefined` fields dropped, `toJSON`
//! honoured). Field names are the TypeScript declarations'
//! (`typescript.rs`).

use js_sys::Uint8Array;
use serde_json::Value;
use switchboard_sdk::Payload;
use switchboard_sdk::js::{ObjectWriter, json_array, json_to_js, value_from_js, value_to_js};
use switchboard_sdk::{
    Connected, Connecting, Disconnected, History, Joined, Left, MembersPage, Message, Occupancy,
    Presence, PresenceAction, Reset, RoomInfo,
};
use wasm_bindgen::{JsCast as _, JsValue};

use crate::error::js_error;

/// Reads application data from any JSON-compatible JavaScript value;
/// `undefined` is `null`.
pub(crate) fn to_json(value: JsValue) -> Result<Value, JsValue> {
    value_from_js(&value).map_err(|reason| {
        js_error("invalid_options", &format!("data is not JSON: {reason}")).into()
    })
}

/// A payload from JavaScript: a `Uint8Array` (a Node.js `Buffer` is one),
/// any other view of bytes (`DataView`, `Int8Array`, …) or an
/// `ArrayBuffer` is bytes, anything else JSON data.
pub(crate) fn to_payload(value: JsValue) -> Result<Payload, JsValue> {
    if let Some(bytes) = value.dyn_ref::<Uint8Array>() {
        return Ok(Payload::Bytes(bytes.to_vec()));
    }
    if let Some(buffer) = value.dyn_ref::<js_sys::ArrayBuffer>() {
        return Ok(Payload::Bytes(Uint8Array::new(buffer).to_vec()));
    }
    if js_sys::ArrayBuffer::is_view(&value) {
        // The bytes the view covers, whatever its element type.
        let field = |name: &str| js_sys::Reflect::get(&value, &name.into()).unwrap_or_default();
        let (offset, length) = (field("byteOffset"), field("byteLength"));
        let bytes = Uint8Array::new_with_byte_offset_and_length(
            &field("buffer"),
            offset.as_f64().unwrap_or(0.0) as u32,
            length.as_f64().unwrap_or(0.0) as u32,
        );
        return Ok(Payload::Bytes(bytes.to_vec()));
    }
    to_json(value).map(Payload::Json)
}

/// Application data for JavaScript.
pub(crate) fn data(value: &Value) -> JsValue {
    value_to_js(value)
}

/// A list of strings (user ids).
pub(crate) fn strings(items: &[String]) -> JsValue {
    json_to_js(&serde_json::to_string(items).unwrap_or_default())
}

fn optional_flag(out: &mut ObjectWriter, key: &str, value: Option<bool>) {
    match value {
        Some(flag) => out.flag(key, flag),
        None => out.null(key),
    };
}

pub(crate) fn connecting(event: &Connecting) -> JsValue {
    let mut out = ObjectWriter::new();
    out.integer("attempt", event.attempt.into());
    json_to_js(&out.finish())
}

pub(crate) fn connected(event: &Connected) -> JsValue {
    let mut out = ObjectWriter::new();
    out.text("session", &event.session)
        .text("user", &event.user)
        .integer("heartbeatMs", event.heartbeat_ms);
    optional_flag(&mut out, "inboxRecovered", event.inbox_recovered);
    json_to_js(&out.finish())
}

pub(crate) fn disconnected(event: &Disconnected) -> JsValue {
    let mut out = ObjectWriter::new();
    match event.code {
        Some(code) => out.integer("code", code.0.into()),
        None => out.null("code"),
    };
    out.text("reason", &event.reason).flag("willReconnect", event.will_reconnect);
    json_to_js(&out.finish())
}

pub(crate) fn joined(event: &Joined) -> JsValue {
    let mut out = ObjectWriter::new();
    out.text("room", &event.room)
        .strings("members", &event.members)
        .integer("memberCount", event.member_count)
        .flag("large", event.large)
        .flag("rejoin", event.rejoin);
    optional_flag(&mut out, "recovered", event.recovered);
    out.flag("byServer", event.by_server);
    match &event.info {
        Some(info) => out.raw("info", &room_info(info)),
        None => out.null("info"),
    };
    json_to_js(&out.finish())
}

fn room_info(info: &RoomInfo) -> String {
    let mut out = ObjectWriter::new();
    out.opt_text("name", info.name.as_deref()).opt_text("description", info.description.as_deref());
    if let Some(data) = &info.data {
        out.data("data", data);
    }
    out.finish()
}

pub(crate) fn left(event: &Left) -> JsValue {
    let mut out = ObjectWriter::new();
    out.text("room", &event.room);
    json_to_js(&out.finish())
}

pub(crate) fn reset(event: &Reset) -> JsValue {
    let mut out = ObjectWriter::new();
    out.opt_text("room", event.room.as_deref());
    json_to_js(&out.finish())
}

/// A message for JavaScript: its `data` a `Uint8Array` when the payload
/// is bytes.
pub(crate) fn message(message: &Message) -> JsValue {
    with_bytes(json_to_js(&message_text(message)), message)
}

/// `object` (a message's) with the message's bytes as its `data`, if it
/// has bytes.
fn with_bytes(object: JsValue, message: &Message) -> JsValue {
    if let Some(bytes) = &message.binary {
        let _ = js_sys::Reflect::set(&object, &"data".into(), &Uint8Array::from(&bytes[..]));
    }
    object
}

fn message_text(message: &Message) -> String {
    let mut out = ObjectWriter::new();
    out.opt_text("room", message.room.as_deref())
        .opt_text("to", message.to.as_deref())
        .text("from", &message.from)
        .text("event", &message.event)
        .data("data", &message.data)
        .integer("ts", message.ts)
        .opt_integer("offset", message.offset);
    out.finish()
}

pub(crate) fn presence(presence: &Presence) -> JsValue {
    let mut out = ObjectWriter::new();
    out.text("room", &presence.room).text("user", &presence.user).text(
        "action",
        match presence.action {
            PresenceAction::Join => "join",
            PresenceAction::Leave => "leave",
        },
    );
    json_to_js(&out.finish())
}

pub(crate) fn occupancy(occupancy: &Occupancy) -> JsValue {
    let mut out = ObjectWriter::new();
    out.text("room", &occupancy.room).integer("count", occupancy.count);
    json_to_js(&out.finish())
}

pub(crate) fn members_page(page: &MembersPage) -> JsValue {
    let mut out = ObjectWriter::new();
    out.strings("members", &page.members)
        .integer("memberCount", page.member_count)
        .opt_text("cursor", page.cursor.as_deref());
    json_to_js(&out.finish())
}

pub(crate) fn history(page: &History) -> JsValue {
    let mut out = ObjectWriter::new();
    out.opt_text("epoch", page.epoch.as_deref())
        .integer("offset", page.offset)
        .raw("messages", &json_array(page.messages.iter().map(message_text)));
    let object = json_to_js(&out.finish());
    if page.messages.iter().any(|message| message.binary.is_some()) {
        let messages = js_sys::Reflect::get(&object, &"messages".into()).unwrap_or_default();
        let messages = js_sys::Array::from(&messages);
        for (at, message) in page.messages.iter().enumerate() {
            with_bytes(messages.get(at as u32), message);
        }
    }
    object
}
