//! The writing half of the Mesos JSON mapping: turns a reflected protobuf
//! message into a `serde_json::Value` and that into the single-line,
//! ASCII-only text that goes on the wire. It decides which fields appear and
//! how each scalar is spelled; it does not know about HTTP, RecordIO or the
//! concrete generated types.

use base64::Engine as _;
use prost_reflect::{
    DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor, ReflectMessage as _, Value,
};
use serde_json::{Map, Number, Value as Json};

/// Largest magnitude below which every integer is exactly representable in an
/// `f64`; integral doubles inside it are written without a fraction (`0`, not
/// `0.0`), as Mesos does.
const EXACT_INTEGER_LIMIT: f64 = 9_007_199_254_740_992.0;

/// Converts `msg` into the JSON object Mesos would write for it.
pub(crate) fn message_to_value(msg: &DynamicMessage) -> Json {
    let desc = msg.descriptor();
    let mut object = Map::new();
    for field in desc.fields() {
        if let Some(value) = field_to_value(msg, &field) {
            object.insert(field.name().to_owned(), value);
        }
    }
    Json::Object(object)
}

/// The value written for `field`, or `None` when the field is left out.
///
/// Mesos writes set fields, non-empty repeated fields and unset fields that
/// declare an explicit default, unless they are deprecated.
fn field_to_value(msg: &DynamicMessage, field: &FieldDescriptor) -> Option<Json> {
    if field.is_map() {
        let value = msg.get_field(field);
        let Value::Map(entries) = value.as_ref() else {
            return None;
        };
        if entries.is_empty() {
            return None;
        }
        let value_field = map_value_field(field)?;
        let mut object = Map::new();
        for (key, value) in entries {
            object.insert(map_key_to_string(key), scalar_to_value(&value_field.kind(), value));
        }
        return Some(Json::Object(object));
    }
    if field.is_list() {
        let value = msg.get_field(field);
        let Value::List(items) = value.as_ref() else {
            return None;
        };
        if items.is_empty() {
            return None;
        }
        let kind = field.kind();
        return Some(Json::Array(items.iter().map(|item| scalar_to_value(&kind, item)).collect()));
    }
    if msg.has_field(field) {
        return Some(scalar_to_value(&field.kind(), &msg.get_field(field)));
    }
    if has_explicit_default(field) && !is_deprecated(field) {
        return Some(scalar_to_value(&field.kind(), &field.default_value()));
    }
    None
}

/// Whether the `.proto` file gives the field a `[default = ...]`.
pub(crate) fn has_explicit_default(field: &FieldDescriptor) -> bool {
    field.field_descriptor_proto().default_value.is_some()
}

/// Whether the field carries `[deprecated = true]`.
pub(crate) fn is_deprecated(field: &FieldDescriptor) -> bool {
    field
        .field_descriptor_proto()
        .options
        .as_ref()
        .and_then(|options| options.deprecated)
        .unwrap_or(false)
}

/// The `value` field of a map field's synthetic entry message; `None` only
/// if `field` is not a map field.
pub(crate) fn map_value_field(field: &FieldDescriptor) -> Option<FieldDescriptor> {
    entry_descriptor(field).map(|entry| entry.map_entry_value_field())
}

/// The synthetic entry message of a map field.
pub(crate) fn entry_descriptor(field: &FieldDescriptor) -> Option<MessageDescriptor> {
    field.kind().as_message().cloned()
}

pub(crate) fn map_key_to_string(key: &MapKey) -> String {
    match key {
        MapKey::Bool(b) => b.to_string(),
        MapKey::I32(n) => n.to_string(),
        MapKey::I64(n) => n.to_string(),
        MapKey::U32(n) => n.to_string(),
        MapKey::U64(n) => n.to_string(),
        MapKey::String(s) => s.clone(),
    }
}

/// Converts one non-repeated value of the given kind.
fn scalar_to_value(kind: &Kind, value: &Value) -> Json {
    match value {
        Value::Bool(b) => Json::Bool(*b),
        Value::I32(n) => Json::from(*n),
        Value::I64(n) => Json::from(*n),
        Value::U32(n) => Json::from(*n),
        Value::U64(n) => Json::from(*n),
        Value::F32(f) => float_to_value(f64::from(*f)),
        Value::F64(f) => float_to_value(*f),
        Value::String(s) => Json::String(s.clone()),
        Value::Bytes(b) => Json::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Value::EnumNumber(number) => match kind {
            Kind::Enum(desc) => match desc.get_value(*number) {
                Some(v) => Json::String(v.name().to_owned()),
                None => Json::from(*number),
            },
            _ => Json::from(*number),
        },
        Value::Message(m) => message_to_value(m),
        // Lists and maps only occur at field level, which `field_to_value`
        // handles; nested ones cannot be declared in a `.proto` file.
        Value::List(items) => Json::Array(items.iter().map(|i| scalar_to_value(kind, i)).collect()),
        Value::Map(_) => Json::Object(Map::new()),
    }
}

/// Doubles are JSON numbers; integral ones are written without a fraction,
/// and the non-finite ones as the strings stout uses.
fn float_to_value(f: f64) -> Json {
    if f.is_nan() {
        return Json::String("NaN".to_owned());
    }
    if f.is_infinite() {
        let text = if f > 0.0 { "Infinity" } else { "-Infinity" };
        return Json::String(text.to_owned());
    }
    if f.fract() == 0.0 && f.abs() < EXACT_INTEGER_LIMIT {
        // Exact: the value is integral and below 2^53 in magnitude.
        return Json::from(f as i64);
    }
    Number::from_f64(f).map_or(Json::Null, Json::Number)
}

/// Serialises `value` on one line and escapes every non-ASCII character as
/// `\uXXXX` (UTF-16 surrogate pairs above the BMP): clients slice RecordIO
/// records by byte length and some count characters, so the text must be
/// ASCII for both to agree.
pub(crate) fn value_to_ascii_string(value: &Json) -> String {
    let text = value.to_string();
    if text.is_ascii() {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut units = [0u16; 2];
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            // serde_json only leaves non-ASCII characters inside string
            // literals, where a `\u` escape means the same character.
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_are_spelled_like_mesos() {
        assert_eq!(float_to_value(0.0).to_string(), "0");
        assert_eq!(float_to_value(15.0).to_string(), "15");
        assert_eq!(float_to_value(-3.0).to_string(), "-3");
        assert_eq!(float_to_value(0.5).to_string(), "0.5");
        assert_eq!(float_to_value(0.1).to_string(), "0.1");
        assert_eq!(float_to_value(1e300).to_string(), "1e+300");
        assert_eq!(float_to_value(f64::NAN), Json::String("NaN".into()));
        assert_eq!(float_to_value(f64::INFINITY), Json::String("Infinity".into()));
        assert_eq!(float_to_value(f64::NEG_INFINITY), Json::String("-Infinity".into()));
    }

    #[test]
    fn non_ascii_is_escaped_with_surrogates() {
        let value = serde_json::json!({"s": "h\u{e9}llo \u{1F600}\n\"q\""});
        let text = value_to_ascii_string(&value);
        assert_eq!(text, r#"{"s":"h\u00e9llo \ud83d\ude00\n\"q\""}"#);
        assert!(text.is_ascii());
        let back: Json = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(back, value);
    }

    #[test]
    fn ascii_text_is_untouched() {
        let value = serde_json::json!({"a": [1, 2.5, "x"], "b": {"c": true}});
        assert_eq!(value_to_ascii_string(&value), r#"{"a":[1,2.5,"x"],"b":{"c":true}}"#);
    }
}
