//! Reading and building JavaScript objects field by field. The frames'
//! codec uses them, and so does `switchboard-js` for its options and
//! events, so a wrong field reads the same everywhere: "missing field
//! `room`", "`count` must be a non-negative integer in range".

use js_sys::{Array, Object, Reflect};
use serde_json::Value;
use wasm_bindgen::{JsCast as _, JsValue};

use super::json_value::{value_from_js, value_to_js};

/// A JavaScript object's fields, read by name. For optional fields,
/// absent, `undefined` and `null` are the same, as with serde's `Option`.
#[derive(Debug, Clone)]
pub struct Fields(JsValue);

impl Fields {
    /// The fields of `value`, if it is an object (not an array, not `null`,
    /// not a function).
    pub fn of(value: JsValue) -> Option<Fields> {
        (value.is_object() && !Array::is_array(&value)).then_some(Fields(value))
    }

    /// The object's own enumerable keys, in order.
    pub fn keys(&self) -> Vec<String> {
        Object::keys(self.0.unchecked_ref::<Object>())
            .iter()
            .filter_map(|key| key.as_string())
            .collect()
    }

    /// The field's value; `undefined` when absent (or when a getter throws).
    pub fn get(&self, key: &str) -> JsValue {
        Reflect::get(&self.0, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
    }

    /// The field, unless absent, `undefined` or `null`.
    pub fn present(&self, key: &str) -> Option<JsValue> {
        let value = self.get(key);
        (!value.is_undefined() && !value.is_null()).then_some(value)
    }

    /// A required string.
    pub fn string(&self, key: &str) -> Result<String, String> {
        self.opt_string(key)?.ok_or_else(|| missing(key))
    }

    /// An optional string.
    pub fn opt_string(&self, key: &str) -> Result<Option<String>, String> {
        self.present(key)
            .map(|v| v.as_string().ok_or_else(|| mistyped(key, "a string")))
            .transpose()
    }

    /// A required whole number from 0 to `max`.
    pub fn integer(&self, key: &str, max: u64) -> Result<u64, String> {
        let value = self.present(key).ok_or_else(|| missing(key))?;
        match value.as_f64() {
            // `as u64` saturates where `max as f64` rounded up.
            Some(n) if n.fract() == 0.0 && n >= 0.0 && n <= max as f64 => Ok(n as u64),
            _ => Err(mistyped(key, "a non-negative integer in range")),
        }
    }

    /// An optional whole number from 0 to `max`.
    pub fn opt_integer(&self, key: &str, max: u64) -> Result<Option<u64>, String> {
        self.present(key).map(|_| self.integer(key, max)).transpose()
    }

    /// An optional boolean.
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, String> {
        self.present(key).map(|v| v.as_bool().ok_or_else(|| mistyped(key, "a boolean"))).transpose()
    }

    /// Application data: any JSON value, `null` when absent.
    pub fn data(&self, key: &str) -> Result<Value, String> {
        value_from_js(&self.get(key)).map_err(|reason| format!("`{key}`: {reason}"))
    }

    /// Optional application data.
    pub fn opt_data(&self, key: &str) -> Result<Option<Value>, String> {
        self.present(key).map(|_| self.data(key)).transpose()
    }

    /// An optional nested object, read by `read`.
    pub fn optional<T>(
        &self,
        key: &str,
        read: fn(&Fields) -> Result<T, String>,
    ) -> Result<Option<T>, String> {
        self.present(key)
            .map(|v| Fields::of(v).ok_or_else(|| mistyped(key, "an object")).and_then(|f| read(&f)))
            .transpose()
    }

    /// An optional array of objects, each read by `read`.
    pub fn opt_list<T>(
        &self,
        key: &str,
        read: fn(&Fields) -> Result<T, String>,
    ) -> Result<Option<Vec<T>>, String> {
        let Some(array) = self.opt_array(key)? else { return Ok(None) };
        array
            .iter()
            .map(|item| Fields::of(item).ok_or_else(|| mistyped(key, "a list of objects")))
            .map(|fields| fields.and_then(|f| read(&f)))
            .collect::<Result<Vec<T>, String>>()
            .map(Some)
    }

    /// An optional array of strings.
    pub fn opt_strings(&self, key: &str) -> Result<Option<Vec<String>>, String> {
        let Some(array) = self.opt_array(key)? else { return Ok(None) };
        array
            .iter()
            .map(|item| item.as_string().ok_or_else(|| mistyped(key, "a list of strings")))
            .collect::<Result<Vec<String>, String>>()
            .map(Some)
    }

    fn opt_array(&self, key: &str) -> Result<Option<Array>, String> {
        self.present(key)
            .map(|v| v.dyn_into::<Array>().map_err(|_| mistyped(key, "an array")))
            .transpose()
    }
}

fn missing(key: &str) -> String {
    format!("missing field `{key}`")
}

/// The message for a field of the wrong type: "`key` must be `expected`".
pub fn mistyped(key: &str, expected: &str) -> String {
    format!("`{key}` must be {expected}")
}

/// Builds a plain object, its fields in the order they are set (the order
/// `JSON.stringify` writes them in).
#[derive(Debug)]
pub struct ObjectBuilder(Object);

impl Default for ObjectBuilder {
    fn default() -> ObjectBuilder {
        ObjectBuilder::new()
    }
}

impl ObjectBuilder {
    /// An empty object.
    pub fn new() -> ObjectBuilder {
        ObjectBuilder(Object::new())
    }

    /// Sets `key` to `value`.
    pub fn set(&self, key: &str, value: &JsValue) -> &ObjectBuilder {
        // Setting a data field on a fresh plain object cannot fail; the keys
        // are the program's own, never `__proto__`.
        let _ = Reflect::set(&self.0, &JsValue::from_str(key), value);
        self
    }

    /// Sets a string.
    pub fn text(&self, key: &str, value: &str) -> &ObjectBuilder {
        self.set(key, &JsValue::from_str(value))
    }

    /// Sets a number; exact up to 2^53, which offsets, counts and times
    /// stay far below.
    pub fn integer(&self, key: &str, value: u64) -> &ObjectBuilder {
        self.set(key, &JsValue::from_f64(value as f64))
    }

    /// Sets a boolean.
    pub fn flag(&self, key: &str, value: bool) -> &ObjectBuilder {
        self.set(key, &JsValue::from_bool(value))
    }

    /// Sets application data.
    pub fn data(&self, key: &str, value: &Value) -> &ObjectBuilder {
        self.set(key, &value_to_js(value))
    }

    /// The object.
    pub fn build(self) -> JsValue {
        self.0.into()
    }
}
