//! `SwitchboardError`: the JavaScript `Error` that every rejected Promise and
//! every `error` event carries, with a machine-readable `kind` and, for the
//! hub's refusals, its numeric `code`.

use js_sys::{Error as JsError, Reflect};
use switchboard_sdk::Error;
use wasm_bindgen::{JsCast, JsValue};

/// A `SwitchboardError` of `kind` with `message`.
pub(crate) fn js_error(kind: &str, message: &str) -> JsError {
    let error = JsError::new(message);
    error.set_name("SwitchboardError");
    set(&error, "kind", &JsValue::from_str(kind));
    error
}

/// The `SwitchboardError` for an SDK error.
pub(crate) fn to_js_error(error: &Error) -> JsValue {
    let js = js_error(kind(error), &error.to_string());
    match error {
        Error::Server { code, .. } => set(&js, "code", &JsValue::from(code.0)),
        Error::QueueFull { capacity } => set(&js, "capacity", &JsValue::from(*capacity as u32)),
        _ => {}
    }
    js.into()
}

/// The `SwitchboardError` reported when an application callback throws.
pub(crate) fn callback_error(event: &str, thrown: JsValue) -> JsValue {
    let message = thrown
        .dyn_ref::<JsError>()
        .map(|e| String::from(e.message()))
        .or_else(|| thrown.as_string())
        .unwrap_or_else(|| "a non-Error value was thrown".to_owned());
    let js = js_error("handler", &format!("the `{event}` callback threw: {message}"));
    set(&js, "cause", &thrown);
    js.into()
}

fn kind(error: &Error) -> &'static str {
    match error {
        Error::Server { .. } => "server",
        Error::Timeout => "timeout",
        Error::QueueFull { .. } => "queue_full",
        Error::ConnectionLost => "connection_lost",
        Error::Closed => "closed",
        Error::GaveUp(_) => "gave_up",
        Error::Refused(_) => "refused",
        Error::Unreachable(_) => "unauthorized_or_unreachable",
        Error::NoWebSocket(_) => "no_websocket",
        Error::Tls(_) => "tls",
        Error::InvalidOptions(_) => "invalid_options",
        Error::Transport(_) => "transport",
        Error::Protocol(_) => "protocol",
        Error::HandlerPanicked(_) => "handler",
        Error::InvalidName { .. } => "invalid_name",
        Error::InvalidUrl(_) | Error::NoRuntime => "invalid_url",
        // Variants added to the SDK later map to the most general kind.
        _ => "protocol",
    }
}

fn set(target: &JsError, key: &str, value: &JsValue) {
    // Setting a property on a fresh Error object cannot fail.
    let _ = Reflect::set(target, &JsValue::from_str(key), value);
}
