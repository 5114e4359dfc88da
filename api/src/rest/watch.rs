//! Watches over HTTP: a chunked `application/json` body with one `{"type":…,"object":…}` per
//! line, each object as stored or as a one-row Table, ending when the client goes away, the
//! core's stream ends, or `timeoutSeconds` passes.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use futures::StreamExt;
use serde_json::json;

use super::response::JSON;
use super::table::{self, IncludeObject};
use crate::watch::{WatchEvent, WatchObject, WatchStream};

/// How watch objects are encoded.
#[derive(Debug, Clone, Copy)]
pub enum Encoding {
    Object,
    Table(IncludeObject),
}

/// One event as its line on the wire (with the trailing newline).
pub fn line(kind: &table::Columns, event: WatchEvent, encoding: Encoding) -> Vec<u8> {
    let is_object = matches!(event.kind, "ADDED" | "MODIFIED" | "DELETED");
    let object = match (kind, encoding, event.object) {
        // A custom kind's object shown at the watched version, or an object as a table row
        // (bookmarks and errors are never rows): both need the object decoded.
        (table::Columns::Custom(_), _, object) | (_, Encoding::Table(_), object) if is_object => {
            let mut object = object.into_value();
            if let table::Columns::Custom(version) = kind {
                crate::crd::present(version, &mut object);
            }
            match encoding {
                Encoding::Table(include) => {
                    table::single(kind, &object, include, chrono::Utc::now())
                }
                Encoding::Object => object,
            }
        }
        (_, _, WatchObject::Value(object)) => object,
        // Stored JSON goes into the line as it is.
        (_, _, WatchObject::Json(json)) => {
            let mut bytes = Vec::with_capacity(json.len() + 40);
            bytes.extend_from_slice(b"{\"type\":\"");
            bytes.extend_from_slice(event.kind.as_bytes());
            bytes.extend_from_slice(b"\",\"object\":");
            bytes.extend_from_slice(&json);
            bytes.extend_from_slice(b"}\n");
            return bytes;
        }
    };
    let mut bytes = serde_json::to_vec(&json!({"type": event.kind, "object": object}))
        .unwrap_or_else(|_| b"{}".to_vec());
    bytes.push(b'\n');
    bytes
}

/// The streaming response for `events`.
pub fn respond(
    kind: table::Columns,
    events: WatchStream,
    encoding: Encoding,
    timeout: Option<Duration>,
) -> Response {
    let lines = events
        .map(move |ev| Ok::<_, std::convert::Infallible>(Bytes::from(line(&kind, ev, encoding))));
    let body = match timeout {
        Some(limit) => {
            let deadline = tokio::time::sleep(limit);
            Body::from_stream(lines.take_until(deadline))
        }
        None => Body::from_stream(lines),
    };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    response
}
