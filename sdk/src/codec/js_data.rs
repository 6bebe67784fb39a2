//! Application data (`serde_json::Value`) to and from JavaScript values,
//! through JSON text: one string crossing the wasm boundary and the
//! browser's `JSON`, rather than one crossing per field, each of which
//! pays for a string conversion (in Chromium, about 4 µs against 23 µs for
//! a chat message's fields).

use js_sys::JSON;
use serde_json::Value;
use wasm_bindgen::{JsCast as _, JsValue};

/// Reads a JavaScript value as JSON data, by `JSON.stringify`'s rules
/// (`toJSON` honoured, `undefined` fields and functions dropped, `NaN`
/// written as `null`); `undefined` itself is `null`. The reason when it is
/// not JSON: a BigInt, a cycle, a function or a symbol, nesting past 128
/// levels.
pub fn value_from_js(value: &JsValue) -> Result<Value, String> {
    if value.is_undefined() {
        return Ok(Value::Null);
    }
    let text = JSON::stringify(value).map_err(|err| {
        err.dyn_ref::<js_sys::Error>()
            .map_or_else(|| "JSON.stringify failed".to_owned(), |e| String::from(e.message()))
    })?;
    // `JSON.stringify` gives `undefined`, not a string, for a function or a symbol.
    let text = text.as_string().ok_or_else(|| "not a JSON value".to_owned())?;
    serde_json::from_str(&text).map_err(|err| err.to_string())
}

/// The bytes of base64 text, decoded by the runtime's `atob` (browsers,
/// Node.js, Deno and Bun all have it); `None` when it is not base64.
pub(crate) fn from_base64(text: &str) -> Option<Vec<u8>> {
    let atob = js_sys::Reflect::get(&js_sys::global(), &"atob".into()).ok()?;
    let atob = atob.dyn_into::<js_sys::Function>().ok()?;
    let binary = atob.call1(&JsValue::NULL, &text.into()).ok()?.as_string()?;
    // `atob` gives one character per byte, each below 256.
    binary.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect()
}

/// The base64 text of `bytes`, by the runtime's `btoa` (bytes sent on a
/// connection that did not ask for binary); `None` if it has none.
pub(crate) fn to_base64(bytes: &[u8]) -> Option<String> {
    // `btoa` takes one character per byte.
    let binary: String = bytes.iter().map(|&byte| char::from(byte)).collect();
    let btoa = js_sys::Reflect::get(&js_sys::global(), &"btoa".into()).ok()?;
    let btoa = btoa.dyn_into::<js_sys::Function>().ok()?;
    btoa.call1(&JsValue::NULL, &binary.into()).ok()?.as_string()
}

/// The JavaScript value for `value`: what `JSON.parse` makes of its text
/// (integers past 2^53 round, as they do there).
pub fn value_to_js(value: &Value) -> JsValue {
    // A `Value` always serializes.
    serde_json::to_string(value).map_or(JsValue::NULL, |text| json_to_js(&text))
}

/// The JavaScript value of JSON text that serde_json or an
/// [`ObjectWriter`](super::fields::ObjectWriter) wrote (`JSON.parse`);
/// `null` if it is not JSON, which they never write.
pub fn json_to_js(text: &str) -> JsValue {
    JSON::parse(text).unwrap_or(JsValue::NULL)
}
