//! The decisions behind `pods/log`, `pods/exec`, `pods/attach` and `pods/portforward`, as
//! kube-apiserver makes them: which container a request means, where the pod's node agent
//! listens, and the agent URL with kubelet's query parameters. Pure functions over the pod,
//! the node and the request's query.

use serde_json::Value;

use crate::error::ApiError;

/// kubelet's default port, for nodes that do not say theirs.
pub const DEFAULT_KUBELET_PORT: u16 = 10250;

/// The four pod subresources served by the pod's node agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Log,
    Exec,
    Attach,
    PortForward,
}

impl Stream {
    pub fn subresource(self) -> &'static str {
        match self {
            Stream::Log => "log",
            Stream::Exec => "exec",
            Stream::Attach => "attach",
            Stream::PortForward => "portforward",
        }
    }
}

/// The decoded query, repeated names kept (exec's `command`).
pub type QueryPairs = Vec<(String, String)>;

pub fn parse_query(query: &str) -> QueryPairs {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
        .collect()
}

fn first<'a>(query: &'a QueryPairs, name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Whether `name` is set true in the query, as Go's strconv.ParseBool reads it.
pub fn flag(query: &QueryPairs, name: &str) -> bool {
    matches!(
        first(query, name),
        Some("1" | "t" | "T" | "true" | "TRUE" | "True")
    )
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn container_names(pod: &Value, field: &str) -> Vec<String> {
    pod.pointer(&format!("/spec/{field}"))
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The container a request means: the one it names, which must be in the pod, or the pod's
/// only container; kube-apiserver's messages otherwise.
pub fn pick_container(
    pod: &Value,
    name: &str,
    requested: Option<&str>,
) -> Result<String, ApiError> {
    let containers = container_names(pod, "containers");
    match requested.filter(|c| !c.is_empty()) {
        Some(container) => {
            let known = ["containers", "initContainers", "ephemeralContainers"]
                .iter()
                .any(|field| container_names(pod, field).iter().any(|c| c == container));
            if known {
                Ok(container.to_owned())
            } else {
                Err(ApiError::BadRequest(format!(
                    "container {container} is not valid for pod {name}"
                )))
            }
        }
        None => match containers.as_slice() {
            [only] => Ok(only.clone()),
            [] => Err(ApiError::BadRequest(format!(
                "a container name must be specified for pod {name}"
            ))),
            _ => {
                let mut all = containers.clone();
                all.extend(container_names(pod, "initContainers"));
                all.extend(container_names(pod, "ephemeralContainers"));
                Err(ApiError::BadRequest(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    all.join(" ")
                )))
            }
        },
    }
}

/// The node a pod is bound to, if any.
pub fn node_name(pod: &Value) -> Option<&str> {
    pod.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
}

/// Where a node's agent listens: its InternalIP, else its Hostname, and the port in
/// `status.daemonEndpoints.kubeletEndpoint` (kubelet's default if unset).
pub fn agent_endpoint(node: &Value) -> Result<(String, u16), ApiError> {
    let addresses = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let of_type = |kind: &str| {
        addresses.iter().find_map(|a| {
            (a.get("type").and_then(Value::as_str) == Some(kind))
                .then(|| a.get("address").and_then(Value::as_str))
                .flatten()
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        })
    };
    let host = of_type("InternalIP")
        .or_else(|| of_type("Hostname"))
        .ok_or_else(|| {
            ApiError::Internal(format!(
                "no preferred addresses found; known addresses: {}",
                Value::Array(addresses.clone())
            ))
        })?;
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)
        .unwrap_or(DEFAULT_KUBELET_PORT);
    Ok((host, port))
}

/// The agent's path and query for a request on pod `namespace/name`'s `container`
/// (ignored for port-forward), with the query parameters kube-apiserver sends kubelet.
pub fn agent_path(
    stream: Stream,
    namespace: &str,
    name: &str,
    container: &str,
    query: &QueryPairs,
) -> String {
    let mut params: Vec<(&str, String)> = Vec::new();
    let (ns, pod, c) = (encode(namespace), encode(name), encode(container));
    let path = match stream {
        Stream::Log => {
            for bool_param in ["follow", "previous", "timestamps"] {
                if flag(query, bool_param) {
                    params.push((bool_param, "true".to_owned()));
                }
            }
            for value_param in ["sinceSeconds", "sinceTime", "tailLines", "limitBytes"] {
                if let Some(v) = first(query, value_param).filter(|v| !v.is_empty()) {
                    params.push((value_param, v.to_owned()));
                }
            }
            format!("/containerLogs/{ns}/{pod}/{c}")
        }
        Stream::Exec | Stream::Attach => {
            for (asked, kubelet) in [
                ("stdin", "input"),
                ("stdout", "output"),
                ("stderr", "error"),
                ("tty", "tty"),
            ] {
                if flag(query, asked) {
                    params.push((kubelet, "1".to_owned()));
                }
            }
            if stream == Stream::Exec {
                for (n, v) in query {
                    if n == "command" {
                        params.push(("command", v.clone()));
                    }
                }
                format!("/exec/{ns}/{pod}/{c}")
            } else {
                format!("/attach/{ns}/{pod}/{c}")
            }
        }
        Stream::PortForward => {
            for (n, v) in query {
                if n == "ports" {
                    params.push(("port", v.clone()));
                }
            }
            format!("/portForward/{ns}/{pod}")
        }
    };
    if params.is_empty() {
        return path;
    }
    let query: Vec<String> = params
        .iter()
        .map(|(n, v)| format!("{n}={}", encode(v)))
        .collect();
    format!("{path}?{}", query.join("&"))
}

/// The container a request names in its query.
pub fn requested_container(query: &QueryPairs) -> Option<&str> {
    first(query, "container")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Value {
        json!({
            "metadata": {"name": "web"},
            "spec": {
                "nodeName": "n1",
                "containers": [{"name": "app"}, {"name": "side"}],
                "initContainers": [{"name": "init"}]
            }
        })
    }

    #[test]
    fn a_named_container_must_be_in_the_pod() {
        assert_eq!(
            pick_container(&pod(), "web", Some("side")).ok(),
            Some("side".into())
        );
        assert_eq!(
            pick_container(&pod(), "web", Some("init")).ok(),
            Some("init".into())
        );
        assert_eq!(
            pick_container(&pod(), "web", Some("x"))
                .err()
                .map(|e| e.to_string()),
            Some("container x is not valid for pod web".into())
        );
    }

    #[test]
    fn without_a_name_only_a_single_container_pod_is_unambiguous() {
        assert_eq!(
            pick_container(&pod(), "web", None)
                .err()
                .map(|e| e.to_string()),
            Some(
                "a container name must be specified for pod web, choose one of: [app side init]"
                    .into()
            )
        );
        let single = json!({"spec": {"containers": [{"name": "only"}]}});
        assert_eq!(pick_container(&single, "p", None).ok(), Some("only".into()));
    }

    #[test]
    fn the_agent_is_reached_at_the_internal_ip_and_the_nodes_kubelet_port() {
        let node = json!({"status": {
            "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.5"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 11250}}
        }});
        assert_eq!(agent_endpoint(&node).ok(), Some(("10.0.0.5".into(), 11250)));
        let bare = json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"}]}});
        assert_eq!(agent_endpoint(&bare).ok(), Some(("n1".into(), 10250)));
        assert!(agent_endpoint(&json!({})).is_err());
    }

    #[test]
    fn exec_parameters_take_kubelets_names() {
        let query = parse_query("command=cat&command=%2Fetc%2Fhostname&container=app&stdin=true&stdout=true&stderr=true&tty=false");
        assert_eq!(
            agent_path(Stream::Exec, "default", "web", "app", &query),
            "/exec/default/web/app?input=1&output=1&error=1&command=cat&command=%2Fetc%2Fhostname"
        );
    }

    #[test]
    fn log_parameters_pass_through() {
        let query =
            parse_query("container=app&follow=true&tailLines=2&timestamps=true&previous=false");
        assert_eq!(
            agent_path(Stream::Log, "default", "web", "app", &query),
            "/containerLogs/default/web/app?follow=true&timestamps=true&tailLines=2"
        );
        assert_eq!(
            agent_path(Stream::PortForward, "default", "web", "", &parse_query("")),
            "/portForward/default/web"
        );
    }
}
