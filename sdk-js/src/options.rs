//! The options object of `new Client(url, options)`, read field by field so
//! a wrong type or an unknown field is a clear `invalid_options` error
//! instead of a silent default.

use std::time::Duration;

use js_sys::{Function, Reflect};
use switchboard_sdk::js::{Fields, mistyped, value_from_js};
use switchboard_sdk::{ClientBuilder, Heartbeat, ReconnectPolicy};
use wasm_bindgen::{JsCast as _, JsValue};

/// `ClientOptions` in TypeScript.
#[derive(Debug, Default)]
pub(crate) struct Options {
    user_id: String,
    reconnect: Option<Toggle<ReconnectOptions>>,
    heartbeat: Option<Toggle<HeartbeatOptions>>,
    request_timeout_ms: Option<u64>,
    connect_timeout_ms: Option<u64>,
    offline_queue: Option<usize>,
    token: Option<String>,
    fallbacks: Vec<String>,
    /// `getToken`: a function returning a token or a Promise of one.
    get_token: Option<Function>,
    /// `headers`, sent with the upgrade by Node.js, Deno and Bun.
    headers: Vec<(String, String)>,
    /// `WebSocket`: the constructor to open sockets with.
    web_socket: Option<Function>,
}

/// An options object, or `false` to switch the feature off.
#[derive(Debug)]
enum Toggle<T> {
    Off,
    On(T),
}

#[derive(Debug)]
struct ReconnectOptions {
    enabled: Option<bool>,
    min_delay_ms: Option<u64>,
    max_delay_ms: Option<u64>,
    max_attempts: Option<u32>,
}

#[derive(Debug)]
struct HeartbeatOptions {
    interval_ms: u64,
    timeout_ms: u64,
}

/// The options' field names, as the TypeScript declarations spell them.
const FIELDS: [&str; 11] = [
    "userId",
    "token",
    "getToken",
    "reconnect",
    "heartbeat",
    "requestTimeoutMs",
    "connectTimeoutMs",
    "offlineQueue",
    "fallbacks",
    "headers",
    "WebSocket",
];
const RECONNECT_FIELDS: [&str; 4] = ["enabled", "minDelayMs", "maxDelayMs", "maxAttempts"];
const HEARTBEAT_FIELDS: [&str; 2] = ["intervalMs", "timeoutMs"];

/// Every field of `fields` must be one of `known`: a misspelled option
/// fails loudly rather than being ignored.
fn only(fields: Fields<'_>, known: &[&str]) -> Result<(), String> {
    match fields.keys().find(|key| !known.contains(key)) {
        Some(key) => {
            Err(format!("unknown field `{key}`, expected one of `{}`", known.join("`, `")))
        }
        None => Ok(()),
    }
}

/// Reads `false` or an options object with `read`. Only `false` means off;
/// `true` is refused rather than guessed at.
fn toggle<T>(
    fields: Fields<'_>,
    key: &str,
    read: fn(Fields<'_>) -> Result<T, String>,
) -> Result<Option<Toggle<T>>, String> {
    let Some(value) = fields.present(key) else { return Ok(None) };
    if value.as_bool() == Some(false) {
        return Ok(Some(Toggle::Off));
    }
    let expected = || mistyped(key, "an options object or `false`");
    let nested = Fields::of(value).ok_or_else(expected)?;
    read(nested).map(|options| Some(Toggle::On(options)))
}

fn reconnect(fields: Fields<'_>) -> Result<ReconnectOptions, String> {
    only(fields, &RECONNECT_FIELDS)?;
    Ok(ReconnectOptions {
        enabled: fields.opt_bool("enabled")?,
        min_delay_ms: fields.opt_integer("minDelayMs", u64::MAX)?,
        max_delay_ms: fields.opt_integer("maxDelayMs", u64::MAX)?,
        max_attempts: fields.opt_integer("maxAttempts", u32::MAX.into())?.map(|n| n as u32),
    })
}

fn heartbeat(fields: Fields<'_>) -> Result<HeartbeatOptions, String> {
    only(fields, &HEARTBEAT_FIELDS)?;
    Ok(HeartbeatOptions {
        interval_ms: fields.integer("intervalMs", u64::MAX)?,
        timeout_ms: fields.integer("timeoutMs", u64::MAX)?,
    })
}

/// Reads the options argument: `undefined` and `null` are the defaults.
/// The object is read as JSON (`JSON.stringify`'s rules), except
/// `getToken`, the one function among the options.
pub(crate) fn read(options: JsValue) -> Result<Options, String> {
    if options.is_undefined() || options.is_null() {
        return Ok(Options::default());
    }
    if !options.is_object() {
        return Err("options must be an object".to_owned());
    }
    let get_token = function(&options, "getToken")?;
    let web_socket = function(&options, "WebSocket")?;
    let value = value_from_js(&options)?;
    let fields = Fields::of(&value).ok_or_else(|| "options must be an object".to_owned())?;
    only(fields, &FIELDS)?;
    Ok(Options {
        user_id: fields.opt_string("userId")?.unwrap_or_default(),
        reconnect: toggle(fields, "reconnect", reconnect)?,
        heartbeat: toggle(fields, "heartbeat", heartbeat)?,
        request_timeout_ms: fields.opt_integer("requestTimeoutMs", u64::MAX)?,
        connect_timeout_ms: fields.opt_integer("connectTimeoutMs", u64::MAX)?,
        offline_queue: fields.opt_integer("offlineQueue", u32::MAX.into())?.map(|n| n as usize),
        token: fields.opt_string("token")?,
        fallbacks: fields.opt_strings("fallbacks")?.unwrap_or_default(),
        get_token,
        headers: headers(fields)?,
        web_socket,
    })
}

/// A function among the options (JSON leaves functions out), if present.
fn function(options: &JsValue, key: &str) -> Result<Option<Function>, String> {
    match Reflect::get(options, &JsValue::from_str(key)) {
        Ok(value) if !value.is_undefined() && !value.is_null() => {
            value.dyn_into::<Function>().map(Some).map_err(|_| mistyped(key, "a function"))
        }
        _ => Ok(None),
    }
}

/// `headers`: an object of header names to string values.
fn headers(fields: Fields<'_>) -> Result<Vec<(String, String)>, String> {
    let Some(value) = fields.present("headers") else { return Ok(Vec::new()) };
    let expected = || mistyped("headers", "an object of strings");
    let object = value.as_object().ok_or_else(expected)?;
    object
        .iter()
        .map(|(name, value)| Ok((name.clone(), value.as_str().ok_or_else(expected)?.to_owned())))
        .collect()
}

impl Options {
    /// Applies the options to a builder.
    pub(crate) fn apply(self, mut builder: ClientBuilder) -> ClientBuilder {
        if !self.user_id.is_empty() {
            builder = builder.user(self.user_id);
        }
        if !self.fallbacks.is_empty() {
            builder = builder.fallbacks(self.fallbacks);
        }
        match self.reconnect {
            Some(Toggle::Off) => builder = builder.reconnect(ReconnectPolicy::disabled()),
            Some(Toggle::On(options)) => {
                let defaults = ReconnectPolicy::default();
                builder = builder.reconnect(ReconnectPolicy {
                    enabled: options.enabled.unwrap_or(defaults.enabled),
                    min_delay: options
                        .min_delay_ms
                        .map_or(defaults.min_delay, Duration::from_millis),
                    max_delay: options
                        .max_delay_ms
                        .map_or(defaults.max_delay, Duration::from_millis),
                    max_attempts: options.max_attempts.unwrap_or(defaults.max_attempts),
                });
            }
            None => {}
        }
        match self.heartbeat {
            Some(Toggle::Off) => builder = builder.heartbeat(None),
            Some(Toggle::On(options)) => {
                builder = builder.heartbeat(Some(Heartbeat {
                    interval: Duration::from_millis(options.interval_ms),
                    timeout: Duration::from_millis(options.timeout_ms),
                }));
            }
            None => {}
        }
        if let Some(ms) = self.request_timeout_ms {
            builder = builder.request_timeout(Duration::from_millis(ms));
        }
        if let Some(ms) = self.connect_timeout_ms {
            builder = builder.connect_timeout(Duration::from_millis(ms));
        }
        if let Some(capacity) = self.offline_queue {
            builder = builder.offline_queue(capacity);
        }
        if let Some(token) = self.token {
            builder = builder.token(token);
        }
        if let Some(function) = self.get_token {
            builder = builder.token_provider(provider(function));
        }
        for (name, value) in self.headers {
            builder = builder.header(name, value);
        }
        if let Some(constructor) = self.web_socket {
            builder = builder.web_socket(constructor);
        }
        builder
    }
}

/// A token provider calling a JavaScript function.
fn provider(
    function: Function,
) -> impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>>>> {
    move || {
        let function = function.clone();
        Box::pin(async move {
            let value = function
                .call0(&wasm_bindgen::JsValue::UNDEFINED)
                .map_err(|e| format!("getToken threw: {e:?}"))?;
            let value = match value.dyn_into::<js_sys::Promise>() {
                Ok(promise) => wasm_bindgen_futures::JsFuture::from(promise)
                    .await
                    .map_err(|e| format!("getToken rejected: {e:?}"))?,
                Err(value) => value,
            };
            value.as_string().ok_or_else(|| "getToken must give a string".to_owned())
        })
    }
}
