//! Application data (`serde_json::Value`) to and from JavaScript values,
//! without JSON text in between.
//!
//! The browser package hands data to JavaScript and takes it from
//! JavaScript; converting through text would need serde_json's parser and
//! number formatting inside the wasm module, which is what it leaves out.

use js_sys::{Array, Object};
use serde_json::{Map, Number, Value};
use wasm_bindgen::{JsCast as _, JsValue};

/// How deeply nested arrays and objects may be: serde_json's own limit when
/// it reads text, so native and browser clients accept the same data (and
/// a hostile value cannot exhaust the wasm stack).
const MAX_DEPTH: usize = 128;

/// Reads a JSON-shaped JavaScript value: `null`, a boolean, a finite number,
/// a string, an array or a plain object of these (what `JSON.parse` gives).
/// `undefined` reads as `null`. Anything else (a function, a symbol, a
/// non-finite number, nesting past 128 levels) is an error with the
/// reason; run values through `JSON.stringify` semantics first to accept
/// what it accepts (`toJSON`, `undefined` fields dropped).
///
/// Whole numbers up to 2^53 become integers (as serde_json reads `3`, so
/// `as_u64` works), others floats.
pub fn value_from_js(value: &JsValue) -> Result<Value, String> {
    read(value, 0)
}

fn read(value: &JsValue, depth: usize) -> Result<Value, String> {
    if value.is_null() || value.is_undefined() {
        return Ok(Value::Null);
    }
    if let Some(flag) = value.as_bool() {
        return Ok(Value::Bool(flag));
    }
    if let Some(number) = value.as_f64() {
        return to_number(number).map(Value::Number).ok_or_else(|| "numbers must be finite".into());
    }
    if let Some(text) = value.as_string() {
        return Ok(Value::String(text));
    }
    if depth >= MAX_DEPTH {
        return Err(format!("nested deeper than {MAX_DEPTH} levels"));
    }
    if let Some(array) = value.dyn_ref::<Array>() {
        let mut items = Vec::with_capacity(array.length() as usize);
        for item in array.iter() {
            items.push(read(&item, depth + 1)?);
        }
        return Ok(Value::Array(items));
    }
    if value.is_object() && !value.is_function() {
        let mut object = Map::new();
        for entry in Object::entries(value.unchecked_ref()).iter() {
            let entry: Array = entry.unchecked_into();
            let key = entry.get(0).as_string().unwrap_or_default();
            object.insert(key, read(&entry.get(1), depth + 1)?);
        }
        return Ok(Value::Object(object));
    }
    Err("not a JSON value".into())
}

/// The largest integer a JavaScript number holds exactly.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

fn to_number(number: f64) -> Option<Number> {
    if number.fract() == 0.0 && number.abs() <= MAX_SAFE_INTEGER {
        // Exact: whole and within 2^53.
        Some(if number >= 0.0 { Number::from(number as u64) } else { Number::from(number as i64) })
    } else {
        Number::from_f64(number)
    }
}

/// Builds the JavaScript value for `value`: what `JSON.parse` would give
/// for its JSON text (integers past 2^53 round, as they do there). Keys
/// such as `__proto__` become own properties, as with `JSON.parse`.
pub fn value_to_js(value: &Value) -> JsValue {
    match value {
        Value::Null => JsValue::NULL,
        Value::Bool(flag) => JsValue::from_bool(*flag),
        // Always `Some` without serde_json's `arbitrary_precision`.
        Value::Number(number) => JsValue::from_f64(number.as_f64().unwrap_or(f64::NAN)),
        Value::String(text) => JsValue::from_str(text),
        Value::Array(items) => items.iter().map(value_to_js).collect::<Array>().into(),
        Value::Object(object) => {
            let entries: Array = object
                .iter()
                .map(|(key, item)| Array::of2(&JsValue::from_str(key), &value_to_js(item)))
                .collect();
            // `Object.fromEntries` defines own data properties; it only
            // throws for entries that are not pairs, which these are.
            Object::from_entries(&entries).map_or(JsValue::NULL, JsValue::from)
        }
    }
}
