//! Request bodies in Kubernetes' protobuf encoding, which client-go's typed clients send
//! (`kubectl create namespace|configmap|secret|deployment …`, `kubectl auth can-i`): the
//! `k8s\0` envelope around a runtime.Unknown, whose TypeMeta names the kind and whose raw
//! bytes are the object. The object is read with the kind's wire schema into the JSON form the
//! rest of the server works on; responses stay JSON, which those clients also accept.

mod decode;
pub(crate) mod wire;

use serde_json::Value;

use crate::error::ApiError;
use wire::bad;

/// The media type of Kubernetes protobuf bodies.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

const MAGIC: &[u8] = b"k8s\0";

/// Splits an envelope into its apiVersion, kind and the encoded object.
pub fn unwrap(body: &[u8]) -> Result<(String, String, &[u8]), ApiError> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("missing the k8s envelope"))?;
    let unknown = wire::fields(rest)?;
    let type_meta = wire::fields(wire::bytes_of(&unknown, 1).unwrap_or_default())?;
    let text = |n| {
        wire::bytes_of(&type_meta, n)
            .map(wire::text)
            .transpose()
            .map(Option::unwrap_or_default)
    };
    let (api_version, kind) = (text(1)?, text(2)?);
    Ok((
        api_version,
        kind,
        wire::bytes_of(&unknown, 2).unwrap_or_default(),
    ))
}

/// A protobuf-encoded object as its JSON form, `apiVersion` and `kind` included.
pub fn object(body: &[u8]) -> Result<Value, ApiError> {
    let (api_version, kind, raw) = unwrap(body)?;
    let message = keel_types::schema::schema()
        .kind(&api_version, &kind)
        .ok_or_else(|| {
            ApiError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json (no protobuf schema for {api_version}, Kind={kind})"
            ))
        })?;
    let mut object = decode::message(message, raw)?;
    if let Value::Object(m) = &mut object {
        m.insert("apiVersion".into(), Value::String(api_version));
        m.insert("kind".into(), Value::String(kind));
    }
    Ok(object)
}

#[cfg(test)]
mod tests;
