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
use crate::watch::{WatchEvent, WatchStream};

/// How watch objects are encoded.
#[derive(Debug, Clone, Copy)]
pub enum Encoding {
    Object,
    Table(IncludeObject),
}

/// One event as its line on the wire (with the trailing newline).
pub fn line(kind: &table::Columns, event: &WatchEvent, encoding: Encoding) -> Vec<u8> {
    let mut event = event.clone();
    // A custom kind's objects, stored at their storage version, shown at the watched one.
    if let (table::Columns::Custom(version), "ADDED" | "MODIFIED" | "DELETED") = (kind, event.kind)
    {
        crate::crd::present(version, &mut event.object);
    }
    let event = &event;
    let object = match (encoding, event.kind) {
        // Bookmarks and errors are never rows.
        (Encoding::Table(include), "ADDED" | "MODIFIED" | "DELETED") => {
            table::single(kind, &event.object, include, chrono::Utc::now())
        }
        _ => event.object.clone(),
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
        .map(move |ev| Ok::<_, std::convert::Infallible>(Bytes::from(line(&kind, &ev, encoding))));
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
