//! The audit log, as kube-apiserver's `--audit-policy-file` and `--audit-log-path` write it:
//! one `audit.k8s.io/v1` Event per request stage (RequestReceived, then ResponseComplete, or
//! ResponseStarted for watches and other long-running requests) as a JSON line, at the level
//! the policy's first matching rule gives (Metadata: who did what to which object and the
//! response code; Request: also the request body; RequestResponse: also the response body).
//!
//! Writes are synchronous and in order, as kube-apiserver's blocking log backend: a request
//! is not answered before its events are written.

pub mod policy;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Body;
use axum::extract::Request;
use axum::http::header;
use axum::response::Response;
use chrono::{SecondsFormat, Utc};
use rand::RngCore;
use serde_json::{json, Map, Value};

pub use policy::{Level, Policy};

/// The remote address of a REST connection, attached to each of its requests.
#[derive(Debug, Clone, Copy, Default)]
pub struct PeerAddress(pub Option<SocketAddr>);

/// Where events go, and by which policy.
pub struct Auditor {
    policy: Policy,
    sink: Mutex<Box<dyn Write + Send>>,
}

impl std::fmt::Debug for Auditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Auditor")
    }
}

/// One request being audited.
pub struct Audit {
    auditor: Arc<Auditor>,
    decision: policy::Decision,
    base: Map<String, Value>,
    long_running: bool,
}

/// What the audit middleware knows about a request.
pub struct RequestFacts {
    pub attributes: policy::Attributes,
    pub uid: String,
    pub api_version: String,
    pub long_running: bool,
}

fn micro_time() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A random version-4 UUID, as kube-apiserver's audit IDs are.
fn audit_id() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

impl Auditor {
    /// An auditor writing to `path` (appended; `-` is standard output) by `policy`.
    pub fn open(policy: Policy, path: &std::path::Path) -> Result<Self, String> {
        let sink: Box<dyn Write + Send> = if path.as_os_str() == "-" {
            Box::new(std::io::stdout())
        } else {
            let mut options = std::fs::OpenOptions::new();
            options.create(true).append(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                // The log names users and objects: readable by the server's user only.
                options.mode(0o600);
            }
            Box::new(
                options
                    .open(path)
                    .map_err(|e| format!("opening the audit log {}: {e}", path.display()))?,
            )
        };
        Ok(Self::with_sink(policy, sink))
    }

    /// An auditor writing to any sink (tests).
    pub fn with_sink(policy: Policy, sink: Box<dyn Write + Send>) -> Self {
        Self {
            policy,
            sink: Mutex::new(sink),
        }
    }

    fn write(&self, event: &Value) {
        let mut line = event.to_string();
        line.push('\n');
        let mut sink = self.sink.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(error) = sink.write_all(line.as_bytes()).and_then(|()| sink.flush()) {
            tracing::error!(%error, "writing the audit log failed");
        }
    }

    /// Starts auditing a request; `None` when the policy says not to.
    pub fn begin(
        self: &Arc<Self>,
        facts: RequestFacts,
        request: &Request,
        peer: Option<SocketAddr>,
    ) -> Option<Audit> {
        let decision = self.policy.decide(&facts.attributes);
        if decision.level == Level::None {
            return None;
        }
        let a = &facts.attributes;
        let mut base = Map::new();
        base.insert("kind".into(), json!("Event"));
        base.insert("apiVersion".into(), json!("audit.k8s.io/v1"));
        base.insert("level".into(), json!(decision.level.as_str()));
        base.insert("auditID".into(), json!(audit_id()));
        base.insert(
            "requestURI".into(),
            json!(request
                .uri()
                .path_and_query()
                .map_or(request.uri().path(), |p| p.as_str())),
        );
        base.insert("verb".into(), json!(a.verb));
        let mut user = json!({"username": a.user, "groups": a.groups});
        if !facts.uid.is_empty() {
            user["uid"] = json!(facts.uid);
        }
        base.insert("user".into(), user);
        let forwarded = request
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let mut sources = forwarded;
        if let Some(peer) = peer {
            sources.push(peer.ip().to_string());
        }
        base.insert("sourceIPs".into(), json!(sources));
        if let Some(agent) = request
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
        {
            base.insert("userAgent".into(), json!(agent));
        }
        if let Some(r) = &a.resource {
            let mut object = Map::new();
            object.insert("resource".into(), json!(r.resource));
            for (field, value) in [
                ("namespace", &r.namespace),
                ("name", &r.name),
                ("apiGroup", &r.group),
                ("subresource", &r.subresource),
            ] {
                if !value.is_empty() {
                    object.insert(field.into(), json!(value));
                }
            }
            object.insert("apiVersion".into(), json!(facts.api_version));
            base.insert("objectRef".into(), Value::Object(object));
        }
        base.insert("requestReceivedTimestamp".into(), json!(micro_time()));
        Some(Audit {
            auditor: self.clone(),
            decision,
            base,
            long_running: facts.long_running,
        })
    }
}

impl Audit {
    pub fn level(&self) -> Level {
        self.decision.level
    }

    fn emit(&self, stage: &str, extra: Map<String, Value>) {
        if self.decision.omit_stages.iter().any(|s| s == stage) {
            return;
        }
        let mut event = self.base.clone();
        event.insert("stage".into(), json!(stage));
        event.insert("stageTimestamp".into(), json!(micro_time()));
        event.extend(extra);
        self.auditor.write(&Value::Object(event));
    }

    /// The RequestReceived stage. Then, as kube-apiserver does once it has decoded the body,
    /// the object's name and namespace complete the object reference of later stages (a
    /// create names its object only in the body), and at Request level and above the body
    /// itself is kept for them.
    pub fn received(&mut self, body: Option<Value>) {
        self.emit("RequestReceived", Map::new());
        let Some(object) = body else {
            return;
        };
        if let Some(Value::Object(reference)) = self.base.get_mut("objectRef") {
            for field in ["name", "namespace"] {
                let value = object["metadata"][field].as_str().unwrap_or_default();
                if !value.is_empty() && !reference.contains_key(field) {
                    reference.insert(field.into(), json!(value));
                }
            }
        }
        if self.decision.level >= Level::Request {
            self.base.insert("requestObject".into(), object);
        }
    }

    /// The final stage: ResponseComplete (ResponseStarted for long-running requests), with
    /// the response's code and, at RequestResponse level, its body.
    pub fn responded(&self, code: u16, body: Option<&[u8]>) {
        let mut extra = Map::new();
        extra.insert(
            "responseStatus".into(),
            json!({"metadata": {}, "code": code}),
        );
        if self.decision.level >= Level::RequestResponse {
            if let Some(object) = body.and_then(|b| serde_json::from_slice::<Value>(b).ok()) {
                extra.insert("responseObject".into(), object);
            }
        }
        let stage = if self.long_running {
            "ResponseStarted"
        } else {
            "ResponseComplete"
        };
        self.emit(stage, extra);
    }
}

/// Buffers a response body of known size up to `limit` (for RequestResponse level) and gives
/// the response back whole; a larger or streaming body is passed on untouched.
pub async fn buffered(response: Response, limit: usize) -> (Response, Option<Vec<u8>>) {
    use axum::body::HttpBody;
    let small = response
        .body()
        .size_hint()
        .exact()
        .is_some_and(|n| n <= limit as u64);
    if !small {
        return (response, None);
    }
    let (parts, body) = response.into_parts();
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => {
            let copy = bytes.to_vec();
            (Response::from_parts(parts, Body::from(bytes)), Some(copy))
        }
        Err(_) => (Response::from_parts(parts, Body::empty()), None),
    }
}
