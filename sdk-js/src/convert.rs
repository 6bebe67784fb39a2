//! SDK values to plain JavaScript objects, and JavaScript values to JSON
//! data.
//!
//! Objects are built field by field (`switchboard_sdk::js`), not through
//! JSON text: the module then carries no JSON parser or number formatting
//! of its own (the browser's `JSON` does that work), which keeps the package
//! small. Field names are the TypeScript declarations' (`typescript.rs`).

use js_sys::Array;
use serde_json::Value;
use switchboard_sdk::js::{ObjectBuilder, value_from_js, value_to_js};
use switchboard_sdk::{
    Connected, Connecting, Disconnected, History, Joined, Left, MembersPage, Message, Occupancy,
    Presence, PresenceAction, RoomInfo,
};
use wasm_bindgen::{JsCast as _, JsValue};

use crate::error::js_error;

/// Reads application data from any JSON-compatible JavaScript value, with
/// `JSON.stringify`'s rules (`toJSON` honoured, `undefined` fields and
/// functions dropped); `undefined` itself is `null`.
pub(crate) fn to_json(value: JsValue) -> Result<Value, JsValue> {
    if value.is_undefined() {
        return Ok(Value::Null);
    }
    json_semantics(&value).and_then(|plain| value_from_js(&plain)).map_err(|reason| {
        js_error("invalid_options", &format!("data is not JSON: {reason}")).into()
    })
}

/// `JSON.parse(JSON.stringify(value))`: what a JSON API would receive.
fn json_semantics(value: &JsValue) -> Result<JsValue, String> {
    let text = js_sys::JSON::stringify(value).map_err(|err| {
        err.dyn_ref::<js_sys::Error>()
            .map_or_else(|| "JSON.stringify failed".to_owned(), |e| String::from(e.message()))
    })?;
    // `JSON.stringify` gives `undefined`, not a string, for a function or a symbol.
    let text = text.as_string().ok_or_else(|| "not a JSON value".to_owned())?;
    js_sys::JSON::parse(&text).map_err(|_| "not a JSON value".to_owned())
}

/// Application data for JavaScript.
pub(crate) fn data(value: &Value) -> JsValue {
    value_to_js(value)
}

/// A list of strings (user ids).
pub(crate) fn strings(items: &[String]) -> JsValue {
    items.iter().map(|item| JsValue::from_str(item)).collect::<Array>().into()
}

fn optional_flag(value: Option<bool>) -> JsValue {
    value.map_or(JsValue::NULL, JsValue::from_bool)
}

pub(crate) fn connecting(event: &Connecting) -> JsValue {
    let out = ObjectBuilder::new();
    out.integer("attempt", event.attempt.into());
    out.build()
}

pub(crate) fn connected(event: &Connected) -> JsValue {
    let out = ObjectBuilder::new();
    out.text("session", &event.session)
        .text("user", &event.user)
        .integer("heartbeatMs", event.heartbeat_ms)
        .set("inboxRecovered", &optional_flag(event.inbox_recovered));
    out.build()
}

pub(crate) fn disconnected(event: &Disconnected) -> JsValue {
    let out = ObjectBuilder::new();
    out.set("code", &event.code.map_or(JsValue::NULL, |c| JsValue::from(c.0)))
        .text("reason", &event.reason)
        .flag("willReconnect", event.will_reconnect);
    out.build()
}

pub(crate) fn joined(event: &Joined) -> JsValue {
    let out = ObjectBuilder::new();
    out.text("room", &event.room)
        .set("members", &strings(&event.members))
        .integer("memberCount", event.member_count)
        .flag("large", event.large)
        .flag("rejoin", event.rejoin)
        .set("recovered", &optional_flag(event.recovered))
        .flag("byServer", event.by_server)
        .set("info", &event.info.as_ref().map_or(JsValue::NULL, room_info));
    out.build()
}

fn room_info(info: &RoomInfo) -> JsValue {
    let out = ObjectBuilder::new();
    if let Some(name) = &info.name {
        out.text("name", name);
    }
    if let Some(description) = &info.description {
        out.text("description", description);
    }
    if let Some(data) = &info.data {
        out.data("data", data);
    }
    out.build()
}

pub(crate) fn left(event: &Left) -> JsValue {
    let out = ObjectBuilder::new();
    out.text("room", &event.room);
    out.build()
}

pub(crate) fn message(message: &Message) -> JsValue {
    let out = ObjectBuilder::new();
    if let Some(room) = &message.room {
        out.text("room", room);
    }
    if let Some(to) = &message.to {
        out.text("to", to);
    }
    out.text("from", &message.from)
        .text("event", &message.event)
        .data("data", &message.data)
        .integer("ts", message.ts);
    if let Some(offset) = message.offset {
        out.integer("offset", offset);
    }
    out.build()
}

pub(crate) fn presence(presence: &Presence) -> JsValue {
    let out = ObjectBuilder::new();
    out.text("room", &presence.room).text("user", &presence.user).text(
        "action",
        match presence.action {
            PresenceAction::Join => "join",
            PresenceAction::Leave => "leave",
        },
    );
    out.build()
}

pub(crate) fn occupancy(occupancy: &Occupancy) -> JsValue {
    let out = ObjectBuilder::new();
    out.text("room", &occupancy.room).integer("count", occupancy.count);
    out.build()
}

pub(crate) fn members_page(page: &MembersPage) -> JsValue {
    let out = ObjectBuilder::new();
    out.set("members", &strings(&page.members)).integer("memberCount", page.member_count);
    if let Some(cursor) = &page.cursor {
        out.text("cursor", cursor);
    }
    out.build()
}

pub(crate) fn history(page: &History) -> JsValue {
    let out = ObjectBuilder::new();
    if let Some(epoch) = &page.epoch {
        out.text("epoch", epoch);
    }
    out.integer("offset", page.offset)
        .set("messages", &page.messages.iter().map(message).collect::<Array>());
    out.build()
}
