//! `keel sim-nodes`' command line, and the parsers behind its flag syntaxes: Kubernetes' taint
//! syntax (`key=value:Effect`, `key:Effect`), `key=value` labels, `name=quantity` resources
//! and Go-style durations. Pure: every parser is a function from text to a value or a message.

use std::time::Duration;

use keel_types::k8s_openapi::api::core::v1::Taint;
use keel_types::names;

use crate::duration;

/// Simulated nodes: register them, keep them alive, and run the pods bound to them.
#[derive(clap::Args, Debug, Clone)]
pub struct SimArgs {
    /// How many nodes to simulate.
    #[arg(long)]
    pub count: usize,
    /// Node names are this prefix and a zero-padded index (`sim-node-0000`, …), so they sort.
    #[arg(long, default_value = "sim-node-")]
    pub name_prefix: String,
    /// Zones to spread the nodes over, round-robin (`topology.kubernetes.io/zone=zone-<i>`).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub zones: u32,
    /// Each node's CPU capacity (= allocatable).
    #[arg(long, default_value = "32", value_parser = quantity)]
    pub cpu: String,
    /// Each node's memory capacity.
    #[arg(long, default_value = "256Gi", value_parser = quantity)]
    pub memory: String,
    /// How many pods each node takes.
    #[arg(long, default_value = "110", value_parser = quantity)]
    pub pods: String,
    /// Each node's ephemeral-storage capacity.
    #[arg(long, default_value = "100Gi", value_parser = quantity)]
    pub ephemeral_storage: String,
    /// An extended resource every node offers, as `name=quantity` (repeatable).
    #[arg(long = "extended-resource", value_name = "NAME=QTY", value_parser = extended_resource)]
    pub extended_resources: Vec<(String, String)>,
    /// A label on every node, as `key=value` (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = label)]
    pub labels: Vec<(String, String)>,
    /// A taint on every node, as `key=value:Effect` or `key:Effect` (repeatable).
    #[arg(long = "taint", value_name = "KEY[=VALUE]:EFFECT", value_parser = taint)]
    pub taints: Vec<Taint>,
    /// How long a node's Lease holds without renewal (kubelet's default).
    #[arg(long, default_value = "40s", value_parser = positive_duration)]
    pub lease_duration: Duration,
    /// How often each node renews its Lease; renewals are spread over the interval.
    #[arg(long, default_value = "10s", value_parser = positive_duration)]
    pub renew_interval: Duration,
    /// Writes in flight at once, over all nodes and pods.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: u32,
    /// Where the masters are.
    #[command(flatten)]
    pub masters: crate::connect::MasterArgs,
    /// Delete the nodes (and their Leases) on exit; by default they stay registered.
    #[arg(long)]
    pub delete_on_exit: bool,
}

/// A non-negative Kubernetes quantity, in the canonical form Kubernetes would print.
pub fn quantity(text: &str) -> Result<String, String> {
    let q = keel_types::Quantity::parse(text).map_err(|e| format!("{text:?}: {e}"))?;
    if q.is_negative() {
        return Err(format!("{text:?}: a capacity cannot be negative"));
    }
    Ok(q.to_canonical_string())
}

/// `name=quantity`: an extended resource (`example.com/gpu=8`, `hugepages-2Mi=1Gi`).
pub fn extended_resource(text: &str) -> Result<(String, String), String> {
    let (name, amount) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected name=quantity"))?;
    let problems = names::qualified_name(name);
    if !problems.is_empty() {
        return Err(format!("{name:?}: {}", problems.join("; ")));
    }
    Ok((name.to_string(), quantity(amount)?))
}

/// `key=value` with a valid label key and value.
pub fn label(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected key=value"))?;
    let mut problems = names::qualified_name(key);
    problems.extend(names::label_value(value));
    if !problems.is_empty() {
        return Err(format!("{text:?}: {}", problems.join("; ")));
    }
    Ok((key.to_string(), value.to_string()))
}

/// Effects a taint may have.
const EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];

/// A taint in kubectl's syntax: `key=value:Effect`, or `key:Effect` for a taint without a
/// value.
pub fn taint(text: &str) -> Result<Taint, String> {
    let (key_value, effect) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?}: expected key=value:Effect or key:Effect"))?;
    if !EFFECTS.contains(&effect) {
        return Err(format!(
            "{text:?}: unknown taint effect {effect:?} (valid: {})",
            EFFECTS.join(", ")
        ));
    }
    let (key, value) = match key_value.split_once('=') {
        Some((key, value)) => (key, Some(value)),
        None => (key_value, None),
    };
    let mut problems = names::qualified_name(key);
    if let Some(value) = value {
        problems.extend(names::label_value(value));
    }
    if !problems.is_empty() {
        return Err(format!("{text:?}: {}", problems.join("; ")));
    }
    Ok(Taint {
        key: key.to_string(),
        value: value.map(str::to_string),
        effect: effect.to_string(),
        time_added: None,
    })
}

/// A Go duration above zero: an interval of zero would spin.
pub fn positive_duration(text: &str) -> Result<Duration, String> {
    match duration::parse(text) {
        Ok(d) if d.is_zero() => Err(format!("{text:?}: must be above zero")),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taint_with_a_value_keeps_key_value_and_effect() {
        let t = taint("dedicated=gpu:NoSchedule").unwrap();

        assert_eq!(t.key, "dedicated");
        assert_eq!(t.value.as_deref(), Some("gpu"));
        assert_eq!(t.effect, "NoSchedule");
    }

    #[test]
    fn a_taint_without_a_value_has_none() {
        let t = taint("node.kubernetes.io/maintenance:NoExecute").unwrap();

        assert_eq!(t.key, "node.kubernetes.io/maintenance");
        assert_eq!(t.value, None);
        assert_eq!(t.effect, "NoExecute");
    }

    #[test]
    fn an_empty_taint_value_is_kept_as_empty() {
        let t = taint("spot=:PreferNoSchedule").unwrap();

        assert_eq!(t.value.as_deref(), Some(""));
    }

    #[test]
    fn malformed_taints_are_refused() {
        assert!(taint("dedicated=gpu").is_err(), "no effect");
        assert!(taint("dedicated=gpu:Sometimes").is_err(), "unknown effect");
        assert!(taint(":NoSchedule").is_err(), "empty key");
        assert!(taint("bad key:NoSchedule").is_err(), "invalid key");
        assert!(taint("k=bad value:NoSchedule").is_err(), "invalid value");
    }

    #[test]
    fn quantities_are_checked_and_canonicalised() {
        assert_eq!(quantity("32").unwrap(), "32");
        assert_eq!(quantity("262144Mi").unwrap(), "256Gi");
        assert_eq!(quantity("1.5").unwrap(), "1500m");
        assert!(quantity("-1").is_err());
        assert!(quantity("lots").is_err());
    }

    #[test]
    fn extended_resources_need_a_qualified_name_and_a_quantity() {
        assert_eq!(
            extended_resource("example.com/gpu=8").unwrap(),
            ("example.com/gpu".to_string(), "8".to_string())
        );
        assert!(extended_resource("example.com/gpu").is_err());
        assert!(extended_resource("example.com/gpu=many").is_err());
        assert!(extended_resource("not a name=1").is_err());
    }

    #[test]
    fn labels_need_a_valid_key_and_value() {
        assert_eq!(
            label("tier=gold").unwrap(),
            ("tier".to_string(), "gold".to_string())
        );
        assert_eq!(
            label("example.com/empty=").unwrap(),
            ("example.com/empty".to_string(), String::new())
        );
        assert!(label("tier").is_err());
        assert!(label("tier=not valid").is_err());
    }

    #[test]
    fn timing_flags_take_go_durations_above_zero() {
        assert_eq!(positive_duration("40s").unwrap(), Duration::from_secs(40));
        assert_eq!(positive_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert!(positive_duration("0s").is_err());
        assert!(positive_duration("10").is_err());
    }
}
