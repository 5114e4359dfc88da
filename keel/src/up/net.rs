//! The node network of a `keel up` cluster, made and removed with iproute2: the host bridge
//! with the host's and the masters' addresses, and per agent a network namespace joined to
//! the bridge by a veth pair, with routes to every other node's pods.

use std::process::{Command, Stdio};

use anyhow::{bail, Context as _};

use super::plan::{AgentPlan, Plan};

/// Runs `ip` with `args`; the error carries what it printed.
fn ip(args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running ip (install iproute2)")?;
    if !output.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Whether a network interface of that name exists in the host's namespace.
pub fn link_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

/// Whether a named network namespace exists.
pub fn netns_exists(name: &str) -> bool {
    std::path::Path::new("/run/netns").join(name).exists()
}

/// Makes the bridge, up, with the host's address and one per master.
pub fn make_bridge(plan: &Plan) -> anyhow::Result<()> {
    let bridge = plan.bridge.as_str();
    ip(&["link", "add", bridge, "type", "bridge"])?;
    ip(&[
        "addr",
        "add",
        &format!("{}/{}", plan.gateway, plan.prefix_len),
        "dev",
        bridge,
    ])?;
    for master in &plan.masters {
        ip(&["addr", "add", &format!("{}/32", master.ip), "dev", bridge])?;
    }
    ip(&["link", "set", bridge, "up"])
}

/// Makes an agent's network namespace: `eth0` on the bridge with the node's address, the
/// default route through the host, routes to the other nodes' pods through those nodes,
/// forwarding on (the node routes between its pods' bridge and `eth0`), and the host's route
/// to this node's pods.
pub fn make_node(plan: &Plan, agent: &AgentPlan) -> anyhow::Result<()> {
    let ns = agent.netns.as_str();
    ip(&["netns", "add", ns])?;
    ip(&[
        "link",
        "add",
        &agent.host_veth,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        ns,
    ])?;
    ip(&[
        "link",
        "set",
        &agent.host_veth,
        "master",
        &plan.bridge,
        "up",
    ])?;
    ip(&["-n", ns, "link", "set", "lo", "up"])?;
    ip(&[
        "-n",
        ns,
        "addr",
        "add",
        &format!("{}/{}", agent.ip, plan.prefix_len),
        "dev",
        "eth0",
    ])?;
    ip(&["-n", ns, "link", "set", "eth0", "up"])?;
    ip(&[
        "-n",
        ns,
        "route",
        "add",
        "default",
        "via",
        &plan.gateway.to_string(),
    ])?;
    for (cidr, via) in plan.routes_of(agent) {
        ip(&["-n", ns, "route", "add", &cidr, "via", &via.to_string()])?;
    }
    let forwarding = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{ns}"))
        .args(["--", "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
        .status()
        .context("running nsenter sysctl")?;
    if !forwarding.success() {
        bail!("turning on forwarding in {ns} failed: {forwarding}");
    }
    ip(&[
        "route",
        "add",
        &agent.pod_cidr,
        "via",
        &agent.ip.to_string(),
        "dev",
        &plan.bridge,
    ])
}

/// Removes a network namespace (its interfaces go once nothing runs in it any more).
pub fn remove_netns(name: &str) -> anyhow::Result<()> {
    if !netns_exists(name) {
        return Ok(());
    }
    ip(&["netns", "delete", name])
}

/// Removes an interface of the host's: the bridge (and with it the host's routes through it)
/// or a veth pair.
pub fn remove_link(name: &str) -> anyhow::Result<()> {
    if !link_exists(name) {
        return Ok(());
    }
    ip(&["link", "delete", name])
}
