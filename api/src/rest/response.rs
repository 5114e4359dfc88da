//! Responses as Kubernetes sends them: JSON bodies, errors as Status objects with the status
//! code `ApiError::code()` gives, and warnings as `Warning: 299` headers.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::Value;

use crate::error::ApiError;

pub const JSON: &str = "application/json";

/// `value` as a JSON response with `code`, carrying `warnings`.
pub fn json(code: StatusCode, value: &Value, warnings: &[String]) -> Response {
    let body = match serde_json::to_vec(value) {
        Ok(body) => body,
        Err(e) => return error(&ApiError::Internal(format!("encoding the response: {e}"))),
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = code;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    for warning in warnings {
        if let Ok(v) = HeaderValue::from_str(&warning_header(warning)) {
            response.headers_mut().append("warning", v);
        }
    }
    response
}

pub fn ok(value: &Value) -> Response {
    json(StatusCode::OK, value, &[])
}

/// The one mapping of an API error to an HTTP response: its code, its Status body.
pub fn error(e: &ApiError) -> Response {
    let code = StatusCode::from_u16(e.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(&e.status()).unwrap_or_default();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = code;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    response
}

/// A plain-text response (health checks).
pub fn text(body: &'static str) -> Response {
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// An RFC 7234 warning as kube-apiserver sends it: code 299, agent "-", the text quoted with
/// quotes and backslashes escaped; characters a header cannot carry become spaces.
pub fn warning_header(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                quoted.push('\\');
                quoted.push(c);
            }
            c if c.is_control() || !c.is_ascii() => quoted.push(' '),
            c => quoted.push(c),
        }
    }
    format!("299 - \"{quoted}\"")
}
