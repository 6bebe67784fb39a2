//! SDK values to plain JavaScript objects, and JavaScript values to JSON.

use serde::Serialize;
use serde_wasm_bindgen::Serializer;
use switchboard_sdk::{Connected, Connecting, Disconnected, Joined};
use wasm_bindgen::JsValue;

use crate::error::js_error;

/// Serializes to plain objects and arrays (never `Map`), with 64-bit
/// integers as numbers, which is what JavaScript code expects.
pub(crate) fn to_js<T: Serialize + ?Sized>(value: &T) -> JsValue {
    value
        .serialize(&Serializer::json_compatible())
        .unwrap_or_else(|err| js_error("protocol", &format!("cannot convert to JS: {err}")).into())
}

/// Reads any JSON-compatible JavaScript value; `undefined` is `null`.
pub(crate) fn to_json(value: JsValue) -> Result<serde_json::Value, JsValue> {
    if value.is_undefined() {
        return Ok(serde_json::Value::Null);
    }
    serde_wasm_bindgen::from_value(value)
        .map_err(|err| js_error("invalid_options", &format!("data is not JSON: {err}")).into())
}

#[derive(Serialize)]
struct ConnectingJs {
    attempt: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConnectedJs<'a> {
    session: &'a str,
    user: &'a str,
    heartbeat_ms: u64,
    inbox_recovered: Option<bool>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DisconnectedJs<'a> {
    code: Option<u16>,
    reason: &'a str,
    will_reconnect: bool,
}

pub(crate) fn connecting(event: &Connecting) -> JsValue {
    to_js(&ConnectingJs { attempt: event.attempt })
}

pub(crate) fn connected(event: &Connected) -> JsValue {
    to_js(&ConnectedJs {
        session: &event.session,
        user: &event.user,
        heartbeat_ms: event.heartbeat_ms,
        inbox_recovered: event.inbox_recovered,
    })
}

pub(crate) fn disconnected(event: &Disconnected) -> JsValue {
    to_js(&DisconnectedJs {
        code: event.code.map(|c| c.0),
        reason: &event.reason,
        will_reconnect: event.will_reconnect,
    })
}

#[derive(Serialize)]
struct JoinedJs<'a> {
    room: &'a str,
    members: &'a [String],
    rejoin: bool,
    recovered: Option<bool>,
}

pub(crate) fn joined(event: &Joined) -> JsValue {
    to_js(&JoinedJs {
        room: &event.room,
        members: &event.members,
        rejoin: event.rejoin,
        recovered: event.recovered,
    })
}

#[derive(Serialize)]
struct HistoryJs<'a> {
    epoch: &'a str,
    offset: u64,
    messages: &'a [switchboard_sdk::Message],
}

pub(crate) fn history(page: &switchboard_sdk::History) -> JsValue {
    to_js(&HistoryJs { epoch: &page.epoch, offset: page.offset, messages: &page.messages })
}
