//! The reading half of the Mesos JSON mapping: turns a parsed
//! `serde_json::Value` into a reflected protobuf message, with stout's
//! leniencies (unknown keys, `null`, numeric strings, unknown enum names on
//! optional fields) and strictness (types, ranges, base64, required fields).
//! It does not parse text (serde_json does) and does not build the concrete
//! generated types (the caller re-decodes the binary form).

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::GeneralPurpose;
use base64::engine::general_purpose::PAD_INDIFFERENT;
use prost_reflect::{DynamicMessage, Kind, MapKey, MessageDescriptor, ReflectMessage as _, Value};
use serde_json::Value as Json;

use super::JsonError;
use super::write::{entry_descriptor, map_key_to_string};

/// Deepest message nesting accepted. Real Mesos messages nest about a dozen
/// levels; the cap keeps hostile input from exhausting the stack.
pub(crate) const MAX_DEPTH: usize = 64;

/// Standard alphabet; padding optional, since some clients strip it.
const BASE64: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, PAD_INDIFFERENT);

/// One step of the path from the top-level message to the value being read.
/// Paths are only rendered into strings when an error needs them.
#[derive(Clone, Copy)]
pub(crate) struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    step: Step<'a>,
}

#[derive(Clone, Copy)]
enum Step<'a> {
    Field(&'a str),
    Index(usize),
    Key(&'a str),
}

impl Path<'_> {
    fn render(&self) -> String {
        let mut steps = Vec::new();
        let mut cursor = Some(self);
        while let Some(path) = cursor {
            steps.push(path.step);
            cursor = path.parent;
        }
        let mut out = String::new();
        for step in steps.iter().rev() {
            match step {
                Step::Field(name) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(name);
                }
                Step::Index(i) => out.push_str(&format!("[{i}]")),
                Step::Key(k) => out.push_str(&format!("[{k}]")),
            }
        }
        out
    }
}

fn render(path: Option<&Path<'_>>) -> String {
    path.map(Path::render).unwrap_or_default()
}

fn child<'a>(parent: Option<&'a Path<'a>>, step: Step<'a>) -> Path<'a> {
    Path { parent, step }
}

/// Reads `json` as a message of type `desc`. Required fields are not checked
/// here; see [`missing_required_fields`].
pub(crate) fn read_message(
    desc: &MessageDescriptor,
    json: &Json,
    path: Option<&Path<'_>>,
    depth: usize,
) -> Result<DynamicMessage, JsonError> {
    if depth > MAX_DEPTH {
        return Err(JsonError::TooDeep { limit: MAX_DEPTH });
    }
    let Json::Object(object) = json else {
        return Err(JsonError::NotAnObject { path: render(path) });
    };
    let mut msg = DynamicMessage::new(desc.clone());
    for (key, value) in object {
        // Unknown keys are ignored and `null` means absent, as in stout.
        let Some(field) = desc.get_field_by_name(key) else {
            continue;
        };
        if value.is_null() {
            continue;
        }
        let here = child(path, Step::Field(key));
        if field.is_map() {
            let entry = entry_descriptor(&field).ok_or_else(|| JsonError::WrongType {
                path: here.render(),
                expected: "a map field",
            })?;
            let map = read_map(&entry, value, &here, depth)?;
            msg.set_field(&field, Value::Map(map));
        } else if field.is_list() {
            let Json::Array(items) = value else {
                return Err(JsonError::WrongType { path: here.render(), expected: "an array" });
            };
            let kind = field.kind();
            let mut list = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                if item.is_null() {
                    continue;
                }
                let at = child(Some(&here), Step::Index(i));
                // An unknown enum name inside a repeated field is dropped.
                if let Some(v) = read_value(&kind, item, &at, depth)? {
                    list.push(v);
                }
            }
            msg.set_field(&field, Value::List(list));
        } else {
            match read_value(&field.kind(), value, &here, depth)? {
                Some(v) => msg.set_field(&field, v),
                None if field.is_required() => {
                    return Err(JsonError::UnknownEnumValue {
                        path: here.render(),
                        value: value.to_string(),
                    });
                }
                None => {}
            }
        }
    }
    Ok(msg)
}

fn read_map(
    entry: &MessageDescriptor,
    json: &Json,
    path: &Path<'_>,
    depth: usize,
) -> Result<HashMap<MapKey, Value>, JsonError> {
    let Json::Object(object) = json else {
        return Err(JsonError::WrongType { path: path.render(), expected: "an object" });
    };
    let key_kind = entry.map_entry_key_field().kind();
    let value_kind = entry.map_entry_value_field().kind();
    let mut map = HashMap::with_capacity(object.len());
    for (key, value) in object {
        if value.is_null() {
            continue;
        }
        let at = child(Some(path), Step::Key(key));
        let map_key = read_map_key(&key_kind, key)
            .ok_or_else(|| JsonError::InvalidMapKey { path: path.render(), key: key.clone() })?;
        if let Some(v) = read_value(&value_kind, value, &at, depth)? {
            map.insert(map_key, v);
        }
    }
    Ok(map)
}

fn read_map_key(kind: &Kind, key: &str) -> Option<MapKey> {
    Some(match kind {
        Kind::String => MapKey::String(key.to_owned()),
        Kind::Bool => MapKey::Bool(key.parse().ok()?),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => MapKey::I32(key.parse().ok()?),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => MapKey::I64(key.parse().ok()?),
        Kind::Uint32 | Kind::Fixed32 => MapKey::U32(key.parse().ok()?),
        Kind::Uint64 | Kind::Fixed64 => MapKey::U64(key.parse().ok()?),
        _ => return None,
    })
}

/// Reads one non-repeated value. `Ok(None)` means an enum value this
/// descriptor does not know, which the caller drops or rejects.
fn read_value(
    kind: &Kind,
    json: &Json,
    path: &Path<'_>,
    depth: usize,
) -> Result<Option<Value>, JsonError> {
    let value = match kind {
        Kind::Bool => match json {
            Json::Bool(b) => Value::Bool(*b),
            _ => return Err(wrong_type(path, "a boolean")),
        },
        Kind::String => match json {
            Json::String(s) => Value::String(s.clone()),
            _ => return Err(wrong_type(path, "a string")),
        },
        Kind::Bytes => match json {
            Json::String(s) => {
                let bytes = BASE64.decode(s).map_err(|e| JsonError::InvalidBase64 {
                    path: path.render(),
                    reason: e.to_string(),
                })?;
                Value::Bytes(bytes.into())
            }
            _ => return Err(wrong_type(path, "a base64 string")),
        },
        Kind::Double => Value::F64(read_float(json, path)?),
        // A `float` field stores f32; narrowing is the field's own precision.
        Kind::Float => Value::F32(read_float(json, path)? as f32),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            Value::I32(in_range(read_integer(json, path)?, json, path, "int32")?)
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            Value::I64(in_range(read_integer(json, path)?, json, path, "int64")?)
        }
        Kind::Uint32 | Kind::Fixed32 => {
            Value::U32(in_range(read_integer(json, path)?, json, path, "uint32")?)
        }
        Kind::Uint64 | Kind::Fixed64 => {
            Value::U64(in_range(read_integer(json, path)?, json, path, "uint64")?)
        }
        Kind::Enum(desc) => {
            let found = match json {
                Json::String(name) => desc.get_value_by_name(name),
                Json::Number(n) => {
                    n.as_i64().and_then(|n| i32::try_from(n).ok()).and_then(|n| desc.get_value(n))
                }
                _ => return Err(wrong_type(path, "an enum name")),
            };
            match found {
                Some(v) => Value::EnumNumber(v.number()),
                None => return Ok(None),
            }
        }
        Kind::Message(desc) => Value::Message(read_message(desc, json, Some(path), depth + 1)?),
    };
    Ok(Some(value))
}

fn wrong_type(path: &Path<'_>, expected: &'static str) -> JsonError {
    JsonError::WrongType { path: path.render(), expected }
}

/// Reads an integer given as a JSON number or a numeric string. Integral
/// floats such as `5.0` or `1e3` are accepted; fractions are not.
fn read_integer(json: &Json, path: &Path<'_>) -> Result<i128, JsonError> {
    let not_integer = || JsonError::NotAnInteger { path: path.render(), value: json.to_string() };
    match json {
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(i128::from(i))
            } else if let Some(u) = n.as_u64() {
                Ok(i128::from(u))
            } else {
                n.as_f64().and_then(integral_float).ok_or_else(not_integer)
            }
        }
        Json::String(s) => match s.parse::<i128>() {
            Ok(i) => Ok(i),
            Err(_) => s.parse::<f64>().ok().and_then(integral_float).ok_or_else(not_integer),
        },
        _ => Err(wrong_type(path, "an integer")),
    }
}

/// The float as an integer if it has no fraction. Values beyond the `i128`
/// range saturate, which the range check after it then rejects.
fn integral_float(f: f64) -> Option<i128> {
    (f.is_finite() && f.fract() == 0.0).then_some(f as i128)
}

fn in_range<T: TryFrom<i128>>(
    n: i128,
    json: &Json,
    path: &Path<'_>,
    kind: &'static str,
) -> Result<T, JsonError> {
    T::try_from(n).map_err(|_| JsonError::OutOfRange {
        path: path.render(),
        value: json.to_string(),
        kind,
    })
}

/// Reads a double given as a JSON number, a numeric string, or one of the
/// strings "Infinity", "-Infinity" and "NaN".
fn read_float(json: &Json, path: &Path<'_>) -> Result<f64, JsonError> {
    match json {
        Json::Number(n) => n.as_f64().ok_or_else(|| wrong_type(path, "a number")),
        Json::String(s) => match s.as_str() {
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            "NaN" => Ok(f64::NAN),
            other => other.parse::<f64>().map_err(|_| JsonError::InvalidNumber {
                path: path.render(),
                value: json.to_string(),
            }),
        },
        _ => Err(wrong_type(path, "a number")),
    }
}

/// Dotted paths of every required field left unset, recursively through
/// singular, repeated and map-valued sub-messages, in field order.
pub(crate) fn missing_required_fields(msg: &DynamicMessage) -> Vec<String> {
    let mut missing = Vec::new();
    collect_missing(msg, "", &mut missing);
    missing
}

fn collect_missing(msg: &DynamicMessage, prefix: &str, out: &mut Vec<String>) {
    for field in msg.descriptor().fields() {
        let name = field.name();
        if field.is_required() && !msg.has_field(&field) {
            out.push(format!("{prefix}{name}"));
            continue;
        }
        if !matches!(field.kind(), Kind::Message(_)) || !msg.has_field(&field) {
            continue;
        }
        match msg.get_field(&field).as_ref() {
            Value::Message(sub) => collect_missing(sub, &format!("{prefix}{name}."), out),
            Value::List(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let Value::Message(sub) = item {
                        collect_missing(sub, &format!("{prefix}{name}[{i}]."), out);
                    }
                }
            }
            Value::Map(entries) => {
                let mut keyed: Vec<_> = entries.iter().collect();
                keyed.sort_by_key(|(key, _)| map_key_to_string(key));
                for (key, value) in keyed {
                    if let Value::Message(sub) = value {
                        let key = map_key_to_string(key);
                        collect_missing(sub, &format!("{prefix}{name}[{key}]."), out);
                    }
                }
            }
            _ => {}
        }
    }
}
