//! A protobuf message as the JSON object Kubernetes would have sent instead, driven by
//! [`keel_types::schema`]: fields by number become fields by JSON name; times, quantities,
//! int-or-strings and raw extensions take their JSON forms; byte fields become base64; and a
//! zero value in a field whose Go type is not a pointer is left out where the JSON form omits
//! it (the wire cannot tell "unset" from zero there, and neither can Kubernetes).

use base64::Engine;
use keel_types::schema::{self, special, Cardinality, Field, Message};
use serde_json::{json, Map, Number, Value};

use super::wire::{self, bad, Raw, WireField};
use crate::error::ApiError;

/// Seconds from 0001-01-01 to 1970-01-01: Go's zero time, which Kubernetes writes as null.
const GO_ZERO_SECONDS: i64 = -62_135_596_800;

/// Nesting deeper than this is refused rather than followed.
const MAX_DEPTH: usize = 64;

/// Decodes `bytes` as `message`.
pub fn message(message: &Message, bytes: &[u8]) -> Result<Value, ApiError> {
    decode_message(message, bytes, 0)
}

fn decode_message(message: &Message, bytes: &[u8], depth: usize) -> Result<Value, ApiError> {
    if depth > MAX_DEPTH {
        return Err(bad("nested too deeply"));
    }
    let mut out = Map::new();
    for f in wire::fields(bytes)? {
        let Some(field) = message.by_number(f.number) else {
            continue;
        };
        match &field.cardinality {
            Cardinality::One if field.inline => {
                if let Some(Value::Object(inner)) = value(field.ty, f.raw, depth)? {
                    out.extend(inner);
                }
            }
            Cardinality::One => match value(field.ty, f.raw, depth)? {
                Some(v) => {
                    out.insert(field.json.to_string(), v);
                }
                None => {
                    out.remove(field.json);
                }
            },
            Cardinality::Repeated => {
                let list = out
                    .entry(field.json.to_string())
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(items) = list {
                    items.extend(repeated(field.ty, f.raw, depth)?);
                }
            }
            Cardinality::Map { key } => {
                let Raw::Bytes(entry) = f.raw else {
                    return Err(bad("a map entry is not a message"));
                };
                let entry = wire::fields(entry)?;
                let k = match find(&entry, 1) {
                    Some(raw) => value(key, raw, depth)?,
                    None => None,
                };
                let k = match k {
                    Some(Value::String(s)) => s,
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                let v = match find(&entry, 2) {
                    Some(raw) => value(field.ty, raw, depth)?.unwrap_or(Value::Null),
                    None => zero_of(field.ty),
                };
                let map = out
                    .entry(field.json.to_string())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(m) = map {
                    m.insert(k, v);
                }
            }
        }
    }
    for field in message.json_fields() {
        if field.cardinality == Cardinality::One && omitted(field, out.get(field.json)) {
            out.remove(field.json);
        }
    }
    Ok(Value::Object(out))
}

fn find<'a>(fields: &[WireField<'a>], number: u64) -> Option<Raw<'a>> {
    fields
        .iter()
        .rev()
        .find(|f| f.number == number)
        .map(|f| f.raw)
}

/// Whether a decoded single value is the zero value of a non-pointer field that JSON omits.
fn omitted(field: &Field, value: Option<&Value>) -> bool {
    if field.pointer || !field.omit_empty || !field.is_scalar() {
        return false;
    }
    match value {
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Bool(b)) => !b,
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
        _ => false,
    }
}

fn zero_of(ty: &str) -> Value {
    match ty {
        "string" | "bytes" => json!(""),
        "bool" => json!(false),
        t if schema::is_scalar(t) => json!(0),
        _ => json!({}),
    }
}

/// The values of one occurrence of a repeated field: one value, or several packed scalars.
fn repeated(ty: &str, raw: Raw<'_>, depth: usize) -> Result<Vec<Value>, ApiError> {
    let packed_numbers = matches!(ty, "int32" | "int64" | "uint32" | "uint64" | "bool");
    if let (true, Raw::Bytes(b)) = (packed_numbers, raw) {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < b.len() {
            let v = wire::varint(b, &mut pos)?;
            out.extend(value(ty, Raw::Varint(v), depth)?);
        }
        return Ok(out);
    }
    Ok(value(ty, raw, depth)?.into_iter().collect())
}

/// One value of type `ty`; `None` for values whose JSON form is absent (a zero time).
fn value(ty: &str, raw: Raw<'_>, depth: usize) -> Result<Option<Value>, ApiError> {
    let mismatch = || bad(&format!("a {ty} field has the wrong wire type"));
    Ok(Some(match (ty, raw) {
        ("string", Raw::Bytes(b)) => Value::String(wire::text(b)?),
        ("bytes", Raw::Bytes(b)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        // int32 is sign-extended to 64 bits on the wire.
        ("int32" | "int64", Raw::Varint(v)) => json!(v as i64),
        ("uint32" | "uint64", Raw::Varint(v)) => json!(v),
        ("bool", Raw::Varint(v)) => Value::Bool(v != 0),
        ("double", Raw::Fixed64(v)) => {
            Number::from_f64(f64::from_bits(v)).map_or(Value::Null, Value::Number)
        }
        ("float", Raw::Fixed32(v)) => {
            Number::from_f64(f64::from(f32::from_bits(v))).map_or(Value::Null, Value::Number)
        }
        (t, _) if schema::is_scalar(t) => return Err(mismatch()),
        (t, Raw::Bytes(b)) => return special_or_message(t, b, depth),
        _ => return Err(mismatch()),
    }))
}

fn special_or_message(ty: &str, b: &[u8], depth: usize) -> Result<Option<Value>, ApiError> {
    let fields = wire::fields(b)?;
    let int = |n| wire::varint_of(&fields, n).unwrap_or(0) as i64;
    let text = |n| wire::bytes_of(&fields, n).map(wire::text).transpose();
    Ok(Some(match ty {
        special::TIME => return Ok(time(int(1), int(2), false)),
        special::MICRO_TIME => return Ok(time(int(1), int(2), true)),
        special::DURATION => Value::String(go_duration(int(1))),
        special::QUANTITY => Value::String(text(1)?.unwrap_or_default()),
        special::INT_OR_STRING => {
            if int(1) == 1 {
                Value::String(text(3)?.unwrap_or_default())
            } else {
                json!(int(2))
            }
        }
        special::RAW_EXTENSION | special::FIELDS_V1 => {
            let raw = wire::bytes_of(&fields, 1).unwrap_or_default();
            if raw.is_empty() {
                return Ok(None);
            }
            serde_json::from_slice(raw)
                .map_err(|_| bad("an embedded object is not JSON: send application/json"))?
        }
        t if special::STRING_LISTS.contains(&t) => Value::Array(
            fields
                .iter()
                .filter_map(|f| match f.raw {
                    Raw::Bytes(b) if f.number == 1 => Some(wire::text(b).map(Value::String)),
                    _ => None,
                })
                .collect::<Result<_, _>>()?,
        ),
        t => {
            let message = schema::schema()
                .message(t)
                .ok_or_else(|| bad(&format!("no schema for {t}")))?;
            decode_message(message, b, depth + 1)?
        }
    }))
}

/// A meta/v1 Time (whole seconds) or MicroTime (microseconds) in RFC 3339, UTC.
fn time(seconds: i64, nanos: i64, micro: bool) -> Option<Value> {
    if (seconds == 0 && nanos == 0) || seconds == GO_ZERO_SECONDS {
        return None;
    }
    let at = chrono::DateTime::from_timestamp(seconds, u32::try_from(nanos).unwrap_or(0))?;
    let format = if micro {
        "%Y-%m-%dT%H:%M:%S%.6fZ"
    } else {
        "%Y-%m-%dT%H:%M:%SZ"
    };
    Some(Value::String(at.format(format).to_string()))
}

/// Nanoseconds as Go prints a time.Duration: `1h2m3s`, `1.5s`, `0s`.
fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    let (h, m) = (n / 3_600_000_000_000, (n / 60_000_000_000) % 60);
    let s = (n % 60_000_000_000) as f64 / 1e9;
    let mut out = sign.to_string();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{s}s"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_as_kubernetes_prints_them() {
        assert_eq!(time(0, 0, false), None);
        assert_eq!(time(GO_ZERO_SECONDS, 0, false), None);
        assert_eq!(
            time(1_700_000_000, 0, false),
            Some(json!("2023-11-14T22:13:20Z"))
        );
        assert_eq!(
            time(1_700_000_000, 123_456_000, true),
            Some(json!("2023-11-14T22:13:20.123456Z"))
        );
        assert_eq!(go_duration(90_000_000_000), "1m30s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
    }
}
