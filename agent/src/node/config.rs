//! What the node side of the agent is told by its flags (`keel agent`), with kubelet's
//! defaults, and the parsing of the flags whose values have a syntax of their own
//! (`--node-labels`, `--register-with-taints`), as kubelet parses them.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use keel_types::k8s_openapi::api::core::v1::Taint;

/// kubelet's `--max-pods` default.
pub const DEFAULT_MAX_PODS: u32 = 110;
/// kubelet's `--port` default: where its (and our agent's) server listens.
pub const DEFAULT_PORT: u16 = 10250;
/// kubelet's `--node-status-update-frequency` default.
pub const DEFAULT_STATUS_UPDATE_FREQUENCY: Duration = Duration::from_secs(10);
/// kubelet's `nodeStatusReportFrequency` default: a status is posted at least this often even
/// when nothing changed.
pub const DEFAULT_STATUS_REPORT_FREQUENCY: Duration = Duration::from_secs(300);
/// kubelet's `nodeLeaseDurationSeconds` default.
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(40);
/// kubelet's `--image-gc-high-threshold` default (percent of the image filesystem).
pub const DEFAULT_IMAGE_GC_HIGH_THRESHOLD: u8 = 85;
/// kubelet's `--image-gc-low-threshold` default.
pub const DEFAULT_IMAGE_GC_LOW_THRESHOLD: u8 = 80;
/// kubelet's `ImageGCPeriod`.
pub const DEFAULT_IMAGE_GC_PERIOD: Duration = Duration::from_secs(300);
/// kubelet's `--minimum-image-ttl-duration` default: younger unused images are kept.
pub const DEFAULT_IMAGE_MINIMUM_GC_AGE: Duration = Duration::from_secs(120);
/// How often kubelet asks the runtime whether it is ready (`updateRuntimeUp`).
pub const DEFAULT_RUNTIME_CHECK_PERIOD: Duration = Duration::from_secs(5);
/// containerd's default root, whose filesystem holds the images when the runtime does not
/// say where they are.
pub const DEFAULT_CONTAINERD_ROOT: &str = "/var/lib/containerd";
/// kubelet's `--root-dir` default.
pub const DEFAULT_ROOT_DIR: &str = "/var/lib/kubelet";

/// The node side of the agent's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    /// The Node's name (`--hostname-override`, default [`default_node_name`]).
    pub node_name: String,
    /// The node's InternalIP (`--node-ip`, default [`default_node_ip`]).
    pub node_ip: IpAddr,
    /// `--node-labels`, put on the Node when it is registered.
    pub labels: BTreeMap<String, String>,
    /// `--register-with-taints`, put on the Node when it is registered.
    pub taints: Vec<Taint>,
    /// `--max-pods`: the node's `pods` capacity.
    pub max_pods: u32,
    /// `--pod-cidr`: the Node's `spec.podCIDR`, when it has none yet.
    pub pod_cidr: Option<String>,
    /// The agent server's port, published as `status.daemonEndpoints.kubeletEndpoint.port`.
    pub port: u16,
    /// `--root-dir`: its filesystem is the node's ephemeral storage (kubelet's nodefs).
    pub root_dir: PathBuf,
    /// `--node-status-update-frequency`: how often the status is computed (and posted if it
    /// changed).
    pub status_update_frequency: Duration,
    /// How often the status is posted when nothing changed.
    pub status_report_frequency: Duration,
    /// The node Lease's duration; it is renewed every quarter of it, as kubelet renews.
    pub lease_duration: Duration,
    /// `--image-gc-high-threshold`: image filesystem usage (percent) that starts image GC.
    pub image_gc_high_threshold: u8,
    /// `--image-gc-low-threshold`: the usage (percent) image GC frees down to.
    pub image_gc_low_threshold: u8,
    /// How often image GC looks at the image filesystem.
    pub image_gc_period: Duration,
    /// Unused images first seen less than this long ago are not removed.
    pub image_minimum_gc_age: Duration,
    /// The sandbox (pause) image, which image GC never removes.
    pub sandbox_image: String,
    /// containerd's root, measured for image GC when the runtime reports no image filesystem.
    pub containerd_root: PathBuf,
    /// How often the runtime's readiness is checked; a change is posted at once.
    pub runtime_check_period: Duration,
}

impl NodeConfig {
    /// The configuration kubelet's defaults give a node named `node_name` at `node_ip`.
    pub fn new(node_name: impl Into<String>, node_ip: IpAddr) -> Self {
        Self {
            node_name: node_name.into(),
            node_ip,
            labels: BTreeMap::new(),
            taints: Vec::new(),
            max_pods: DEFAULT_MAX_PODS,
            pod_cidr: None,
            port: DEFAULT_PORT,
            root_dir: PathBuf::from(DEFAULT_ROOT_DIR),
            status_update_frequency: DEFAULT_STATUS_UPDATE_FREQUENCY,
            status_report_frequency: DEFAULT_STATUS_REPORT_FREQUENCY,
            lease_duration: DEFAULT_LEASE_DURATION,
            image_gc_high_threshold: DEFAULT_IMAGE_GC_HIGH_THRESHOLD,
            image_gc_low_threshold: DEFAULT_IMAGE_GC_LOW_THRESHOLD,
            image_gc_period: DEFAULT_IMAGE_GC_PERIOD,
            image_minimum_gc_age: DEFAULT_IMAGE_MINIMUM_GC_AGE,
            sandbox_image: crate::image::PAUSE_IMAGE.to_owned(),
            containerd_root: PathBuf::from(DEFAULT_CONTAINERD_ROOT),
            runtime_check_period: DEFAULT_RUNTIME_CHECK_PERIOD,
        }
    }

    /// How often the Lease is renewed: a quarter of its duration (kubelet's
    /// `renewIntervalFraction`), so three renewals may fail before it expires.
    pub fn lease_renew_interval(&self) -> Duration {
        (self.lease_duration / 4).max(Duration::from_millis(100))
    }

    /// Refuses a configuration kubelet would refuse.
    pub fn validate(&self) -> Result<(), FlagError> {
        validate_node_name(&self.node_name)?;
        let high = self.image_gc_high_threshold;
        let low = self.image_gc_low_threshold;
        if high > 100 {
            return Err(FlagError::new(
                "--image-gc-high-threshold",
                high.to_string(),
                "must be between 0 and 100, inclusive",
            ));
        }
        if low > 100 {
            return Err(FlagError::new(
                "--image-gc-low-threshold",
                low.to_string(),
                "must be between 0 and 100, inclusive",
            ));
        }
        if low >= high {
            return Err(FlagError::new(
                "--image-gc-low-threshold",
                low.to_string(),
                format!("must be less than --image-gc-high-threshold ({high})"),
            ));
        }
        if self.max_pods == 0 {
            return Err(FlagError::new("--max-pods", "0", "must be positive"));
        }
        if self.image_gc_period.is_zero() {
            return Err(FlagError::new(
                "--image-gc-period",
                "0s",
                "must be positive",
            ));
        }
        if let Some(cidr) = &self.pod_cidr {
            parse_cidr(cidr)?;
        }
        Ok(())
    }
}

/// A flag value that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {flag} {value:?}: {reason}")]
pub struct FlagError {
    pub flag: &'static str,
    pub value: String,
    pub reason: String,
}

impl FlagError {
    fn new(flag: &'static str, value: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            flag,
            value: value.into(),
            reason: reason.into(),
        }
    }
}

/// The node name kubelet uses without `--hostname-override`: the host's name, lowercased.
pub fn default_node_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .trim()
        .to_lowercase()
}

/// The node IP used without `--node-ip`: the address this host sends from on its default
/// route, else the first non-loopback IPv4 address it holds.
pub fn default_node_ip() -> Option<IpAddr> {
    // Connecting a UDP socket sends nothing; it only makes the kernel pick a source address.
    let routed = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|socket| {
            socket.connect("192.0.2.1:9")?;
            socket.local_addr()
        })
        .ok()
        .map(|addr| addr.ip())
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified());
    routed.or_else(|| {
        let trie = std::fs::read_to_string("/proc/net/fib_trie").ok()?;
        super::host::local_ipv4s(&trie)
            .into_iter()
            .next()
            .map(IpAddr::V4)
    })
}

/// Parses `--node-labels` (`key=value,key2=value2`) and refuses, as kubelet does, labels in
/// the `kubernetes.io` and `k8s.io` namespaces that a node may not set on itself.
pub fn parse_node_labels(text: &str) -> Result<BTreeMap<String, String>, FlagError> {
    const FLAG: &str = "--node-labels";
    let mut labels = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((key, value)) = item.split_once('=') else {
            return Err(FlagError::new(FLAG, item, "must be key=value"));
        };
        let (key, value) = (key.trim(), value.trim());
        qualified_name(key).map_err(|reason| FlagError::new(FLAG, item, reason))?;
        label_value(value).map_err(|reason| FlagError::new(FLAG, item, reason))?;
        labels.insert(key.to_owned(), value.to_owned());
    }
    let unknown: Vec<&str> = labels
        .keys()
        .map(String::as_str)
        .filter(|key| !node_may_set_label(key))
        .collect();
    if !unknown.is_empty() {
        return Err(FlagError::new(
            FLAG,
            text,
            format!(
                "unknown 'kubernetes.io' or 'k8s.io' labels specified with --node-labels: [{}]; \
                 --node-labels in the 'kubernetes.io' namespace must begin with an allowed prefix \
                 (kubelet.kubernetes.io, node.kubernetes.io) or be in the specifically allowed set",
                unknown.join(" ")
            ),
        ));
    }
    Ok(labels)
}

/// Labels in the `kubernetes.io`/`k8s.io` namespaces a kubelet may set on its own Node.
fn node_may_set_label(key: &str) -> bool {
    const ALLOWED: [&str; 12] = [
        "kubernetes.io/hostname",
        "kubernetes.io/instance-type",
        "kubernetes.io/os",
        "kubernetes.io/arch",
        "beta.kubernetes.io/instance-type",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/arch",
        "failure-domain.beta.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/region",
        "topology.kubernetes.io/zone",
        "topology.kubernetes.io/region",
        "node.kubernetes.io/instance-type",
    ];
    let Some((prefix, _)) = key.split_once('/') else {
        return true;
    };
    let restricted = ["kubernetes.io", "k8s.io"]
        .iter()
        .any(|ns| prefix == *ns || prefix.ends_with(&format!(".{ns}")));
    if !restricted || ALLOWED.contains(&key) {
        return true;
    }
    ["kubelet.kubernetes.io", "node.kubernetes.io"]
        .iter()
        .any(|ns| prefix == *ns || prefix.ends_with(&format!(".{ns}")))
}

/// Parses `--register-with-taints` (`key=value:Effect,key2:Effect`), as kubelet's
/// `ParseTaints`: effects NoSchedule, PreferNoSchedule or NoExecute, one taint per key and
/// effect.
pub fn parse_taints(text: &str) -> Result<Vec<Taint>, FlagError> {
    const FLAG: &str = "--register-with-taints";
    let mut taints: Vec<Taint> = Vec::new();
    for spec in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let taint = parse_taint(spec).map_err(|reason| FlagError::new(FLAG, spec, reason))?;
        if taints
            .iter()
            .any(|t| t.key == taint.key && t.effect == taint.effect)
        {
            return Err(FlagError::new(
                FLAG,
                spec,
                "duplicated taints with the same key and effect",
            ));
        }
        taints.push(taint);
    }
    Ok(taints)
}

fn parse_taint(spec: &str) -> Result<Taint, String> {
    let Some((key_value, effect)) = spec.rsplit_once(':') else {
        return Err("invalid taint spec: must be key=value:Effect or key:Effect".into());
    };
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return Err(format!(
            "invalid taint effect: {effect}, unsupported taint effect \
             (NoSchedule, PreferNoSchedule, NoExecute)"
        ));
    }
    let (key, value) = match key_value.split_once('=') {
        Some((key, value)) => (key, Some(value)),
        None => (key_value, None),
    };
    qualified_name(key).map_err(|reason| format!("invalid taint key: {reason}"))?;
    if let Some(value) = value {
        label_value(value).map_err(|reason| format!("invalid taint value: {reason}"))?;
    }
    Ok(Taint {
        key: key.to_owned(),
        value: value.filter(|v| !v.is_empty()).map(str::to_owned),
        effect: effect.to_owned(),
        time_added: None,
    })
}

/// Checks a Kubernetes qualified name: an optional DNS-subdomain prefix and `/`, then a name
/// of at most 63 alphanumerics, `-`, `_` and `.`, beginning and ending alphanumeric.
fn qualified_name(key: &str) -> Result<(), String> {
    let name = match key.split_once('/') {
        Some((prefix, name)) => {
            dns_subdomain(prefix).map_err(|reason| format!("prefix of {key:?}: {reason}"))?;
            name
        }
        None => key,
    };
    if name.is_empty() {
        return Err(format!("{key:?}: name part must be non-empty"));
    }
    label_value(name).map_err(|reason| format!("name part of {key:?}: {reason}"))
}

/// Checks a label value: empty, or at most 63 alphanumerics, `-`, `_` and `.`, beginning and
/// ending alphanumeric.
fn label_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    if value.len() > 63 {
        return Err(format!("{value:?} must be no more than 63 characters"));
    }
    let inner = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let ends = value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !ends || !value.chars().all(inner) {
        return Err(format!(
            "{value:?} must consist of alphanumeric characters, '-', '_' or '.', and must start \
             and end with an alphanumeric character"
        ));
    }
    Ok(())
}

fn dns_subdomain(text: &str) -> Result<(), String> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if text.is_empty() || text.len() > 253 || !text.split('.').all(label_ok) {
        return Err(format!(
            "{text:?} must be a lowercase RFC 1123 subdomain of at most 253 characters"
        ));
    }
    Ok(())
}

/// A Node's name must be a DNS subdomain.
fn validate_node_name(name: &str) -> Result<(), FlagError> {
    dns_subdomain(name).map_err(|reason| FlagError::new("--hostname-override", name, reason))
}

/// Checks `--pod-cidr`: an address and a prefix length that fits it.
pub fn parse_cidr(text: &str) -> Result<(IpAddr, u8), FlagError> {
    let invalid = |reason: &str| FlagError::new("--pod-cidr", text, reason);
    let (addr, bits) = text
        .split_once('/')
        .ok_or_else(|| invalid("must be address/prefix-length"))?;
    let addr: IpAddr = addr.parse().map_err(|_| invalid("not an IP address"))?;
    let bits: u8 = bits.parse().map_err(|_| invalid("bad prefix length"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if bits > max {
        return Err(invalid("prefix length too long for the address"));
    }
    Ok((addr, bits))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_labels_are_key_value_pairs_separated_by_commas() {
        let labels = parse_node_labels("zone=a, example.com/tier=gold,empty=").unwrap();
        assert_eq!(labels["zone"], "a");
        assert_eq!(labels["example.com/tier"], "gold");
        assert_eq!(labels["empty"], "");
        assert!(parse_node_labels("").unwrap().is_empty());
    }

    #[test]
    fn node_labels_without_a_value_or_with_bad_syntax_are_refused() {
        assert!(parse_node_labels("zone").is_err());
        assert!(parse_node_labels("-bad=x").is_err());
        assert!(parse_node_labels("Example.COM/x=y").is_err());
        assert!(parse_node_labels("k=has space").is_err());
    }

    #[test]
    fn node_labels_in_the_kubernetes_namespace_are_limited_as_kubelet_limits_them() {
        assert!(parse_node_labels("node.kubernetes.io/pool=a").is_ok());
        assert!(parse_node_labels("kubelet.kubernetes.io/x=a").is_ok());
        assert!(parse_node_labels("topology.kubernetes.io/zone=z1").is_ok());
        assert!(parse_node_labels("a.node.kubernetes.io/x=1").is_ok());
        let error = parse_node_labels("node-role.kubernetes.io/master=").unwrap_err();
        assert!(
            error.reason.contains("node-role.kubernetes.io/master"),
            "{error}"
        );
        assert!(parse_node_labels("foo.k8s.io/x=1").is_err());
    }

    #[test]
    fn taints_take_key_value_and_effect_or_key_and_effect() {
        let taints = parse_taints("dedicated=gpu:NoSchedule,spot:PreferNoSchedule").unwrap();
        assert_eq!(taints.len(), 2);
        assert_eq!(taints[0].key, "dedicated");
        assert_eq!(taints[0].value.as_deref(), Some("gpu"));
        assert_eq!(taints[0].effect, "NoSchedule");
        assert_eq!(taints[1].key, "spot");
        assert_eq!(taints[1].value, None);
        assert_eq!(taints[1].effect, "PreferNoSchedule");
        assert!(parse_taints("").unwrap().is_empty());
    }

    #[test]
    fn taints_with_an_unknown_effect_or_no_effect_are_refused_with_the_reason() {
        let error = parse_taints("a=b:Sometimes").unwrap_err();
        assert!(
            error.to_string().contains("invalid taint effect"),
            "{error}"
        );
        let error = parse_taints("a=b").unwrap_err();
        assert!(error.to_string().contains("invalid taint spec"), "{error}");
        assert!(parse_taints("=b:NoSchedule").is_err());
        assert!(parse_taints("a=b c:NoExecute").is_err());
    }

    #[test]
    fn the_same_taint_key_and_effect_twice_is_refused() {
        let error = parse_taints("a=1:NoSchedule,a=2:NoSchedule").unwrap_err();
        assert!(error.reason.contains("duplicated"), "{error}");
        assert!(parse_taints("a=1:NoSchedule,a=2:NoExecute").is_ok());
    }

    #[test]
    fn the_defaults_are_kubelets() {
        let config = NodeConfig::new("n1", "10.0.0.1".parse().unwrap());
        assert_eq!(config.max_pods, 110);
        assert_eq!(config.port, 10250);
        assert_eq!(config.status_update_frequency, Duration::from_secs(10));
        assert_eq!(config.lease_duration, Duration::from_secs(40));
        assert_eq!(config.lease_renew_interval(), Duration::from_secs(10));
        assert_eq!(
            (
                config.image_gc_high_threshold,
                config.image_gc_low_threshold
            ),
            (85, 80)
        );
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn gc_thresholds_out_of_order_or_range_and_bad_names_are_refused() {
        let ok = NodeConfig::new("n1", "10.0.0.1".parse().unwrap());
        let inverted = NodeConfig {
            image_gc_low_threshold: 90,
            ..ok.clone()
        };
        assert_eq!(
            inverted.validate().unwrap_err().flag,
            "--image-gc-low-threshold"
        );
        let too_high = NodeConfig {
            image_gc_high_threshold: 101,
            ..ok.clone()
        };
        assert!(too_high.validate().is_err());
        let bad_name = NodeConfig {
            node_name: "Bad_Name".into(),
            ..ok.clone()
        };
        assert_eq!(bad_name.validate().unwrap_err().flag, "--hostname-override");
        let bad_cidr = NodeConfig {
            pod_cidr: Some("10.0.0.0/40".into()),
            ..ok.clone()
        };
        assert!(bad_cidr.validate().is_err());
        let spinning = NodeConfig {
            image_gc_period: Duration::ZERO,
            ..ok
        };
        assert_eq!(spinning.validate().unwrap_err().flag, "--image-gc-period");
    }

    #[test]
    fn the_default_node_name_is_lowercase_and_non_empty() {
        let name = default_node_name();
        assert!(!name.is_empty());
        assert_eq!(name, name.to_lowercase());
    }
}
