//! SDK values to plain JavaScript objects, and JavaScript values to JSON
//! data.
//!
//! Objects are built as JSON values field by field
//! (`switchboard_sdk::js::ObjectBuilder`) and cross into JavaScript as one
//! JSON text for `JSON.parse`: no serde derive per event type in the module,
//! and one string crossing the boundary per event rather than one per field.
//! Both directions have the semantics web developers expect of a JSON API
//! (`undefined` fields dropped, `toJSON` honoured). Field names are the
//! TypeScript declarations' (`typescript.rs`).

use serde_json::Value;
use switchboard_sdk::js::{ObjectBuilder, value_from_js, value_to_js};
use switchboard_sdk::{
    Connected, Connecting, Disconnected, History, Joined, Left, MembersPage, Message, Occupancy,
    Presence, PresenceAction, RoomInfo,
};
use wasm_bindgen::JsValue;

use crate::error::js_error;

/// Reads application data from any JSON-compatible JavaScript value;
/// `undefined` is `null`.
pub(crate) fn to_json(value: JsValue) -> Result<Value, JsValue> {
    value_from_js(&value).map_err(|reason| {
        js_error("invalid_options", &format!("data is not JSON: {reason}")).into()
    })
}

/// Application data for JavaScript.
pub(crate) fn data(value: &Value) -> JsValue {
    value_to_js(value)
}

/// A list of strings (user ids).
pub(crate) fn strings(items: &[String]) -> JsValue {
    value_to_js(&string_list(items))
}

fn string_list(items: &[String]) -> Value {
    Value::Array(items.iter().map(|item| Value::String(item.clone())).collect())
}

fn optional_flag(value: Option<bool>) -> Value {
    value.map_or(Value::Null, Value::Bool)
}

pub(crate) fn connecting(event: &Connecting) -> JsValue {
    let mut out = ObjectBuilder::new();
    out.integer("attempt", event.attempt.into());
    value_to_js(&out.build())
}

pub(crate) fn connected(event: &Connected) -> JsValue {
    let mut out = ObjectBuilder::new();
    out.text("session", &event.session)
        .text("user", &event.user)
        .integer("heartbeatMs", event.heartbeat_ms)
        .set("inboxRecovered", optional_flag(event.inbox_recovered));
    value_to_js(&out.build())
}

pub(crate) fn disconnected(event: &Disconnected) -> JsValue {
    let mut out = ObjectBuilder::new();
    out.set("code", event.code.map_or(Value::Null, |c| Value::from(c.0)))
        .text("reason", &event.reason)
        .flag("willReconnect", event.will_reconnect);
    value_to_js(&out.build())
}

pub(crate) fn joined(event: &Joined) -> JsValue {
    let mut out = ObjectBuilder::new();
    out.text("room", &event.room)
        .set("members", string_list(&event.members))
        .integer("memberCount", event.member_count)
        .flag("large", event.large)
        .flag("rejoin", event.rejoin)
        .set("recovered", optional_flag(event.recovered))
        .flag("byServer", event.by_server)
        .set("info", event.info.as_ref().map_or(Value::Null, room_info));
    value_to_js(&out.build())
}

fn room_info(info: &RoomInfo) -> Value {
    let mut out = ObjectBuilder::new();
    out.opt_text("name", info.name.as_deref()).opt_text("description", info.description.as_deref());
    if let Some(data) = &info.data {
        out.set("data", data.clone());
    }
    out.build()
}

pub(crate) fn left(event: &Left) -> JsValue {
    let mut out = ObjectBuilder::new();
    out.text("room", &event.room);
    value_to_js(&out.build())
}

pub(crate) fn message(message: &Message) -> JsValue {
    value_to_js(&message_value(message))
}

fn message_value(message: &Message) -> Value {
    let mut out = ObjectBuilder::new();
    out.opt_text("room", message.room.as_deref())
        .opt_text("to", message.to.as_deref())
        .text("from", &message.from)
        .text("event", &message.event)
        .set("data", message.data.clone())
        .integer("ts", message.ts)
        .opt_integer("offset", message.offset);
    out.build()
}

pub(crate) fn presence(presence: &Presence) -> JsValue {
    let mut out = ObjectBuilder::new();
    out.text("room", &presence.room).text("user", &presence.user).text(
        "action",
        match presence.action {
            PresenceAction::Join => "join",
            PresenceAction::Leave => "leave",
        },
    );
    value_to_js(&out.build())
}

pub(crate) fn occupancy(occupancy: &Occupancy) -> JsValue {
    let mut out = ObjectBuilder::new();
    out.text("room", &occupancy.room).integer("count", occupancy.count);
    value_to_js(&out.build())
}

pub(crate) fn members_page(page: &MembersPage) -> JsValue {
    let mut out = ObjectBuilder::new();
    out.set("members", string_list(&page.members))
        .integer("memberCount", page.member_count)
        .opt_text("cursor", page.cursor.as_deref());
    value_to_js(&out.build())
}

pub(crate) fn history(page: &History) -> JsValue {
    let mut out = ObjectBuilder::new();
    out.opt_text("epoch", page.epoch.as_deref())
        .integer("offset", page.offset)
        .set("messages", Value::Array(page.messages.iter().map(message_value).collect()));
    value_to_js(&out.build())
}
