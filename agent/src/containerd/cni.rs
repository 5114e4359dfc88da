//! The CNI network configuration for a node's pods: one Linux bridge, addresses from the
//! node's pod CIDR by host-local, loopback in every pod, host ports by portmap.

use serde_json::{json, Value};

/// A CNI spec version that containerd 1.6 and Debian's plugins both speak.
const CNI_VERSION: &str = "0.4.0";

/// What a node's pod network is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeNetwork {
    /// The network's name; host-local keeps its allocations per name.
    pub name: String,
    /// The Linux bridge device (at most 15 bytes).
    pub bridge: String,
    /// The pod CIDR, e.g. `10.244.1.0/24`.
    pub subnet: String,
    /// Where host-local records allocated addresses (otherwise `/var/lib/cni/networks`).
    pub ipam_data_dir: Option<String>,
    /// Whether pod traffic leaving the node is masqueraded (adds iptables rules).
    pub masquerade: bool,
}

impl BridgeNetwork {
    /// The `.conflist` document.
    pub fn conflist(&self) -> Value {
        let mut ipam = json!({
            "type": "host-local",
            "ranges": [[{ "subnet": self.subnet }]],
            "routes": [{ "dst": "0.0.0.0/0" }],
        });
        if let Some(dir) = &self.ipam_data_dir {
            ipam["dataDir"] = json!(dir);
        }
        json!({
            "cniVersion": CNI_VERSION,
            "name": self.name,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": true,
                    "ipMasq": self.masquerade,
                    "hairpinMode": true,
                    "ipam": ipam,
                },
                { "type": "portmap", "capabilities": { "portMappings": true } },
                { "type": "loopback" },
            ],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network() -> BridgeNetwork {
        BridgeNetwork {
            name: "keel".into(),
            bridge: "keel0".into(),
            subnet: "10.244.1.0/24".into(),
            ipam_data_dir: Some("/tmp/ipam".into()),
            masquerade: false,
        }
    }

    #[test]
    fn the_bridge_allocates_from_the_pod_cidr_and_is_the_gateway() {
        let conf = network().conflist();
        let bridge = &conf["plugins"][0];
        assert_eq!(bridge["type"], "bridge");
        assert_eq!(bridge["bridge"], "keel0");
        assert_eq!(bridge["isGateway"], true);
        assert_eq!(bridge["ipam"]["type"], "host-local");
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.244.1.0/24");
        assert_eq!(bridge["ipam"]["dataDir"], "/tmp/ipam");
    }

    #[test]
    fn portmap_and_loopback_follow_the_bridge() {
        let conf = network().conflist();
        let types: Vec<_> = conf["plugins"]
            .as_array()
            .expect("plugins")
            .iter()
            .map(|p| p["type"].clone())
            .collect();
        assert_eq!(types, ["bridge", "portmap", "loopback"]);
        assert_eq!(conf["plugins"][1]["capabilities"]["portMappings"], true);
    }

    #[test]
    fn without_a_data_dir_host_local_uses_its_default() {
        let conf = BridgeNetwork {
            ipam_data_dir: None,
            ..network()
        }
        .conflist();
        assert!(conf["plugins"][0]["ipam"].get("dataDir").is_none());
    }
}
