//! What the agent's server contributes to its Node's status, for the component that keeps
//! the Node's status: where the API server reaches the server (`status.addresses`, InternalIP
//! then Hostname, the order the API server prefers) and on which port
//! (`status.daemonEndpoints.kubeletEndpoint.Port`, capitalised as Kubernetes spells it).

use serde_json::{json, Value};

/// A merge patch of a Node's status naming the agent's server: `internal_ip` and `hostname`
/// as addresses, `port` as the kubelet endpoint.
pub fn node_status_patch(internal_ip: &str, hostname: &str, port: u16) -> Value {
    json!({"status": {
        "addresses": [
            {"type": "InternalIP", "address": internal_ip},
            {"type": "Hostname", "address": hostname}
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}
    }})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patch_names_the_address_and_the_kubelet_port() {
        let patch = node_status_patch("10.0.0.5", "n1", 10250);
        assert_eq!(
            patch.pointer("/status/daemonEndpoints/kubeletEndpoint/Port"),
            Some(&json!(10250))
        );
        assert_eq!(
            patch.pointer("/status/addresses/0"),
            Some(&json!({"type": "InternalIP", "address": "10.0.0.5"}))
        );
    }
}
