//! Reading and building JSON objects field by field, on `serde_json::Value`.
//!
//! The browser codec reads frames with these instead of serde's derived
//! decoders: one generic parse to a `Value`, then plain calls per field,
//! which compiles to a fraction of the code (see `mod.rs`). `switchboard-js`
//! reads its options and builds its events with them too, so a wrong field
//! reads the same everywhere: "missing field `room`", "`count` must be a
//! non-negative integer in range".

use serde_json::{Map, Value};

/// A JSON object's fields, read by name. For optional fields, absent and
/// `null` are the same, as with serde's `Option`.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a>(&'a Map<String, Value>);

impl<'a> Fields<'a> {
    /// The fields of `value`, if it is an object.
    pub fn of(value: &'a Value) -> Option<Fields<'a>> {
        value.as_object().map(Fields)
    }

    /// The object's keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        self.0.keys().map(String::as_str)
    }

    /// The field, unless absent or `null`.
    pub fn present(&self, key: &str) -> Option<&'a Value> {
        self.0.get(key).filter(|value| !value.is_null())
    }

    /// A required string.
    pub fn string(&self, key: &str) -> Result<String, String> {
        self.opt_string(key)?.ok_or_else(|| missing(key))
    }

    /// An optional string.
    pub fn opt_string(&self, key: &str) -> Result<Option<String>, String> {
        self.present(key)
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| mistyped(key, "a string")))
            .transpose()
    }

    /// A required whole number from 0 to `max`.
    pub fn integer(&self, key: &str, max: u64) -> Result<u64, String> {
        let value = self.present(key).ok_or_else(|| missing(key))?;
        value
            .as_u64()
            .filter(|n| *n <= max)
            .ok_or_else(|| mistyped(key, "a non-negative integer in range"))
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
    pub fn data(&self, key: &str) -> Value {
        self.0.get(key).cloned().unwrap_or(Value::Null)
    }

    /// Optional application data.
    pub fn opt_data(&self, key: &str) -> Option<Value> {
        self.present(key).cloned()
    }

    /// An optional nested object, read by `read`.
    pub fn optional<T>(
        &self,
        key: &str,
        read: fn(Fields<'_>) -> Result<T, String>,
    ) -> Result<Option<T>, String> {
        self.present(key)
            .map(|v| Fields::of(v).ok_or_else(|| mistyped(key, "an object")).and_then(read))
            .transpose()
    }

    /// An optional array of objects, each read by `read`.
    pub fn opt_list<T>(
        &self,
        key: &str,
        read: fn(Fields<'_>) -> Result<T, String>,
    ) -> Result<Option<Vec<T>>, String> {
        let Some(items) = self.opt_array(key)? else { return Ok(None) };
        items
            .iter()
            .map(|item| Fields::of(item).ok_or_else(|| mistyped(key, "a list of objects")))
            .map(|fields| fields.and_then(read))
            .collect::<Result<Vec<T>, String>>()
            .map(Some)
    }

    /// An optional array of strings.
    pub fn opt_strings(&self, key: &str) -> Result<Option<Vec<String>>, String> {
        let Some(items) = self.opt_array(key)? else { return Ok(None) };
        items
            .iter()
            .map(|item| {
                item.as_str().map(str::to_owned).ok_or_else(|| mistyped(key, "a list of strings"))
            })
            .collect::<Result<Vec<String>, String>>()
            .map(Some)
    }

    fn opt_array(&self, key: &str) -> Result<Option<&'a Vec<Value>>, String> {
        self.present(key).map(|v| v.as_array().ok_or_else(|| mistyped(key, "an array"))).transpose()
    }
}

fn missing(key: &str) -> String {
    format!("missing field `{key}`")
}

/// The message for a field of the wrong type: "`key` must be `expected`".
pub fn mistyped(key: &str, expected: &str) -> String {
    format!("`{key}` must be {expected}")
}

/// Writes a JSON object as text, field by field in the order they are
/// set, exactly as serde_json writes a struct with the same fields (compact,
/// same escaping). No `Value` tree is built: nothing is copied but the text.
#[derive(Debug)]
pub struct ObjectWriter(Vec<u8>);

impl Default for ObjectWriter {
    fn default() -> ObjectWriter {
        ObjectWriter::new()
    }
}

impl ObjectWriter {
    /// An empty object.
    pub fn new() -> ObjectWriter {
        ObjectWriter(vec![b'{'])
    }

    fn key(&mut self, key: &str) -> &mut ObjectWriter {
        if self.0.len() > 1 {
            self.0.push(b',');
        }
        self.json(key);
        self.0.push(b':');
        self
    }

    /// Appends `value` as JSON. Writing into a `Vec` cannot fail, and
    /// strings, numbers and `Value`s always serialize.
    fn json<T: serde::Serialize + ?Sized>(&mut self, value: &T) -> &mut ObjectWriter {
        let _ = serde_json::to_writer(&mut self.0, value);
        self
    }

    /// Sets a string.
    pub fn text(&mut self, key: &str, value: &str) -> &mut ObjectWriter {
        self.key(key).json(value)
    }

    /// Sets a whole number.
    pub fn integer(&mut self, key: &str, value: u64) -> &mut ObjectWriter {
        self.key(key).json(&value)
    }

    /// Sets a boolean.
    pub fn flag(&mut self, key: &str, value: bool) -> &mut ObjectWriter {
        self.key(key).json(&value)
    }

    /// Sets any JSON value (application data).
    pub fn data(&mut self, key: &str, value: &Value) -> &mut ObjectWriter {
        self.key(key).json(value)
    }

    /// Sets a list of strings.
    pub fn strings(&mut self, key: &str, values: &[String]) -> &mut ObjectWriter {
        self.key(key).json(values)
    }

    /// Sets JSON text written by another writer (a nested object, a list).
    pub fn raw(&mut self, key: &str, json: &str) -> &mut ObjectWriter {
        self.key(key).0.extend_from_slice(json.as_bytes());
        self
    }

    /// Sets `null`.
    pub fn null(&mut self, key: &str) -> &mut ObjectWriter {
        self.raw(key, "null")
    }

    /// Sets a string when there is one.
    pub fn opt_text(&mut self, key: &str, value: Option<&str>) -> &mut ObjectWriter {
        if let Some(value) = value {
            self.text(key, value);
        }
        self
    }

    /// Sets a number when there is one.
    pub fn opt_integer(&mut self, key: &str, value: Option<u64>) -> &mut ObjectWriter {
        if let Some(value) = value {
            self.integer(key, value);
        }
        self
    }

    /// The object's JSON text.
    pub fn finish(mut self) -> String {
        self.0.push(b'}');
        // Only whole UTF-8 strings were written.
        String::from_utf8(self.0).unwrap_or_default()
    }
}

/// JSON texts (objects written by [`ObjectWriter`]) as one JSON array.
pub fn json_array(items: impl IntoIterator<Item = String>) -> String {
    let mut text = String::from("[");
    for (index, item) in items.into_iter().enumerate() {
        if index > 0 {
            text.push(',');
        }
        text.push_str(&item);
    }
    text.push(']');
    text
}
