//! SDK values to plain JavaScript objects, and JavaScript values to JSON.
//!
//! Both directions go through JSON text and the browser's own `JSON`
//! object: the values cross the boundary with exactly the semantics web
//! developers expect of a JSON API (`undefined` fields dropped, `toJSON`
//! honoured), and the module carries no second serde backend, which keeps
//! the package smaller.

use serde::Serialize;
use serde::de::DeserializeOwned;
use switchboard_sdk::{Connected, Connecting, Disconnected, Joined, Left};
use wasm_bindgen::{JsCast as _, JsValue};

use crate::error::js_error;

/// Plain objects and arrays, numbers for 64-bit integers: what JavaScript
/// code expects.
pub(crate) fn to_js<T: Serialize + ?Sized>(value: &T) -> JsValue {
    serde_json::to_string(value)
        .ok()
        .and_then(|text| js_sys::JSON::parse(&text).ok())
        .unwrap_or_else(|| js_error("protocol", "a value could not be converted to JS").into())
}

/// Reads any JSON-compatible JavaScript value; `undefined` is `null`.
pub(crate) fn to_json(value: JsValue) -> Result<serde_json::Value, JsValue> {
    if value.is_undefined() {
        return Ok(serde_json::Value::Null);
    }
    from_js(&value).map_err(|reason| {
        js_error("invalid_options", &format!("data is not JSON: {reason}")).into()
    })
}

/// Reads `value` as `T` through `JSON.stringify`; the reason when it cannot.
pub(crate) fn from_js<T: DeserializeOwned>(value: &JsValue) -> Result<T, String> {
    let text = js_sys::JSON::stringify(value).map_err(|err| {
        err.dyn_ref::<js_sys::Error>()
            .map_or_else(|| "JSON.stringify failed".to_owned(), |e| String::from(e.message()))
    })?;
    // `JSON.stringify` gives `undefined`, not a string, for a function or a symbol.
    let text = text.as_string().ok_or_else(|| "not a JSON value".to_owned())?;
    serde_json::from_str(&text).map_err(|err| err.to_string())
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
#[serde(rename_all = "camelCase")]
struct JoinedJs<'a> {
    room: &'a str,
    members: &'a [String],
    member_count: u64,
    large: bool,
    rejoin: bool,
    recovered: Option<bool>,
    by_server: bool,
    info: Option<&'a switchboard_sdk::RoomInfo>,
}

pub(crate) fn joined(event: &Joined) -> JsValue {
    to_js(&JoinedJs {
        room: &event.room,
        members: &event.members,
        member_count: event.member_count,
        large: event.large,
        rejoin: event.rejoin,
        recovered: event.recovered,
        by_server: event.by_server,
        info: event.info.as_ref(),
    })
}

#[derive(Serialize)]
struct LeftJs<'a> {
    room: &'a str,
}

pub(crate) fn left(event: &Left) -> JsValue {
    to_js(&LeftJs { room: &event.room })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MembersPageJs<'a> {
    members: &'a [String],
    member_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<&'a str>,
}

pub(crate) fn members_page(page: &switchboard_sdk::MembersPage) -> JsValue {
    to_js(&MembersPageJs {
        members: &page.members,
        member_count: page.member_count,
        cursor: page.cursor.as_deref(),
    })
}

#[derive(Serialize)]
struct HistoryJs<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    epoch: Option<&'a str>,
    offset: u64,
    messages: &'a [switchboard_sdk::Message],
}

pub(crate) fn history(page: &switchboard_sdk::History) -> JsValue {
    to_js(&HistoryJs {
        epoch: page.epoch.as_deref(),
        offset: page.offset,
        messages: &page.messages,
    })
}
