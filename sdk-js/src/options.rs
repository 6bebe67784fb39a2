//! The options object of `new Client(url, options)`, read with serde so a
//! wrong type is a clear `invalid_options` error instead of a silent default.

use std::time::Duration;

use wasm_bindgen::JsCast as _;

use serde::Deserialize;
use switchboard_sdk::{ClientBuilder, Heartbeat, ReconnectPolicy};

/// `ClientOptions` in TypeScript.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Options {
    #[serde(default)]
    user_id: String,
    #[serde(default)]
    reconnect: Option<Toggle<ReconnectOptions>>,
    #[serde(default)]
    heartbeat: Option<Toggle<HeartbeatOptions>>,
    request_timeout_ms: Option<u64>,
    offline_queue: Option<usize>,
    token: Option<String>,
    #[serde(default)]
    fallbacks: Vec<String>,
}

/// An options object, or `false` to switch the feature off.
#[derive(Debug)]
enum Toggle<T> {
    Off(Off),
    On(T),
}

/// Only `false` means off; `true` is refused rather than guessed at.
#[derive(Debug)]
struct Off;

// By hand rather than `#[serde(untagged)]`, which buffers the value to try
// each variant in turn: the shape alone says which one it is.
impl<'de, T: Deserialize<'de>> Deserialize<'de> for Toggle<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Toggle<T>, D::Error> {
        struct ToggleVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for ToggleVisitor<T> {
            type Value = Toggle<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an options object or `false`")
            }
            fn visit_bool<E: serde::de::Error>(self, on: bool) -> Result<Toggle<T>, E> {
                match on {
                    false => Ok(Toggle::Off(Off)),
                    true => Err(E::custom("use an options object or `false`")),
                }
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Toggle<T>, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Toggle::On)
            }
        }
        deserializer.deserialize_any(ToggleVisitor(std::marker::PhantomData))
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ReconnectOptions {
    enabled: Option<bool>,
    min_delay_ms: Option<u64>,
    max_delay_ms: Option<u64>,
    max_attempts: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct HeartbeatOptions {
    interval_ms: u64,
    timeout_ms: u64,
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
            Some(Toggle::Off(Off)) => builder = builder.reconnect(ReconnectPolicy::disabled()),
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
            Some(Toggle::Off(Off)) => builder = builder.heartbeat(None),
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
        if let Some(capacity) = self.offline_queue {
            builder = builder.offline_queue(capacity);
        }
        if let Some(token) = self.token {
            builder = builder.token(token);
        }
        builder
    }
}

/// Takes `getToken` (a function, which serde cannot read) out of the options
/// object and wraps it as a token provider: it may return a string or a
/// Promise of one.
pub(crate) fn take_token_function(
    options: &wasm_bindgen::JsValue,
) -> Result<(wasm_bindgen::JsValue, Option<js_sys::Function>), wasm_bindgen::JsValue> {
    use wasm_bindgen::JsCast;
    if !options.is_object() {
        return Ok((options.clone(), None));
    }
    let key = wasm_bindgen::JsValue::from_str("getToken");
    let function = js_sys::Reflect::get(options, &key)?.dyn_into::<js_sys::Function>().ok();
    let copy = js_sys::Object::assign(&js_sys::Object::new(), options.unchecked_ref());
    js_sys::Reflect::delete_property(&copy, &key)?;
    Ok((copy.into(), function))
}

/// A token provider calling a JavaScript function.
pub(crate) fn provider(
    function: js_sys::Function,
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
