//! The little of Kubernetes' protobuf encoding keel reads: the `k8s\0` envelope
//! (runtime.Unknown with its TypeMeta) and a SelfSubjectAccessReview's spec, which
//! client-go's typed clients (`kubectl auth can-i`) send as protobuf. Other kinds in protobuf
//! are refused with 415; decoding them needs the kinds' generated .proto field numbers.

use serde_json::{json, Map, Value};

use crate::error::ApiError;

/// The media type of Kubernetes protobuf bodies.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

const MAGIC: &[u8] = b"k8s\0";

/// One field of a protobuf message: its number and, for length-delimited fields, the bytes
/// (varints and fixed-width values are skipped: nothing read here has them).
struct Field<'a> {
    number: u64,
    bytes: Option<&'a [u8]>,
}

fn bad(what: &str) -> ApiError {
    ApiError::BadRequest(format!("the protobuf body is malformed: {what}"))
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, ApiError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*pos).ok_or_else(|| bad("truncated varint"))?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(bad("varint too long"))
}

fn fields(buf: &[u8]) -> Result<Vec<Field<'_>>, ApiError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let (number, wire) = (key >> 3, key & 7);
        let bytes = match wire {
            0 => {
                varint(buf, &mut pos)?;
                None
            }
            1 => {
                pos += 8;
                None
            }
            5 => {
                pos += 4;
                None
            }
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?).map_err(|_| bad("length"))?;
                let end = pos.checked_add(len).ok_or_else(|| bad("length"))?;
                let slice = buf.get(pos..end).ok_or_else(|| bad("truncated field"))?;
                pos = end;
                Some(slice)
            }
            _ => return Err(bad("unsupported wire type")),
        };
        if pos > buf.len() {
            return Err(bad("truncated field"));
        }
        out.push(Field { number, bytes });
    }
    Ok(out)
}

fn field<'a>(fields: &[Field<'a>], number: u64) -> Option<&'a [u8]> {
    fields
        .iter()
        .rev()
        .find(|f| f.number == number)
        .and_then(|f| f.bytes)
}

fn text(bytes: Option<&[u8]>) -> Result<Option<String>, ApiError> {
    bytes
        .map(|b| String::from_utf8(b.to_vec()).map_err(|_| bad("a string is not UTF-8")))
        .transpose()
}

/// A message of string fields as a JSON object, `names[i]` naming field `i + 1`.
fn strings(bytes: &[u8], names: &[&str]) -> Result<Value, ApiError> {
    let fs = fields(bytes)?;
    let mut out = Map::new();
    for (i, name) in names.iter().enumerate() {
        if let Some(s) = text(field(&fs, i as u64 + 1))? {
            out.insert((*name).to_string(), Value::String(s));
        }
    }
    Ok(Value::Object(out))
}

/// Splits an envelope into its apiVersion, kind and the encoded object.
pub fn unwrap(body: &[u8]) -> Result<(String, String, &[u8]), ApiError> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("missing the k8s envelope"))?;
    let unknown = fields(rest)?;
    let type_meta = fields(field(&unknown, 1).unwrap_or_default())?;
    let api_version = text(field(&type_meta, 1))?.unwrap_or_default();
    let kind = text(field(&type_meta, 2))?.unwrap_or_default();
    Ok((api_version, kind, field(&unknown, 2).unwrap_or_default()))
}

/// A protobuf SelfSubjectAccessReview as its JSON form (metadata and status are dropped:
/// a review's answer does not depend on them).
pub fn access_review(body: &[u8]) -> Result<Value, ApiError> {
    let (api_version, kind, raw) = unwrap(body)?;
    if kind != "SelfSubjectAccessReview" {
        return Err(ApiError::UnsupportedMediaType(format!(
            "protobuf bodies are not supported for {kind}: send application/json"
        )));
    }
    let review = fields(raw)?;
    let spec = fields(field(&review, 2).unwrap_or_default())?;
    let mut out = Map::new();
    if let Some(r) = field(&spec, 1) {
        out.insert(
            "resourceAttributes".into(),
            strings(
                r,
                &[
                    "namespace",
                    "verb",
                    "group",
                    "version",
                    "resource",
                    "subresource",
                    "name",
                ],
            )?,
        );
    }
    if let Some(n) = field(&spec, 2) {
        out.insert(
            "nonResourceAttributes".into(),
            strings(n, &["path", "verb"])?,
        );
    }
    Ok(json!({"apiVersion": api_version, "kind": kind, "spec": out}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(fields: &[(u8, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (number, bytes) in fields {
            out.push((number << 3) | 2);
            out.push(bytes.len() as u8);
            out.extend_from_slice(bytes);
        }
        out
    }

    #[test]
    fn a_protobuf_access_review_reads_as_its_json_form() {
        let attrs = message(&[(1, b"default"), (2, b"list"), (5, b"pods")]);
        let spec = message(&[(1, &attrs)]);
        let review = message(&[(2, &spec)]);
        let type_meta = message(&[
            (1, b"authorization.k8s.io/v1"),
            (2, b"SelfSubjectAccessReview"),
        ]);
        let mut body = b"k8s\0".to_vec();
        body.extend(message(&[(1, &type_meta), (2, &review)]));
        let out = access_review(&body).expect("decodes");
        assert_eq!(
            out,
            json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": {"namespace": "default", "verb": "list", "resource": "pods"}}})
        );
    }

    #[test]
    fn bodies_without_the_envelope_or_cut_short_are_bad_requests() {
        assert_eq!(access_review(b"{}").expect_err("no magic").code(), 400);
        assert_eq!(
            access_review(b"k8s\0\x0a\x05ab").expect_err("short").code(),
            400
        );
    }
}
