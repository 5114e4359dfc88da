//! Cluster IPs and node ports for Services, allocated in the store.
//!
//! Each number handed out is a key of its own (`/keel/allocations/serviceips/<ip>`,
//! `/keel/allocations/nodeports/<port>`), created with the Service in one transaction that
//! expects the key absent, and deleted with it. Two masters allocating at once therefore can
//! never hand out one number twice: one transaction fails, and a dynamic allocation tries
//! again with another number. Nothing needs repairing after a crash, because no allocation is
//! ever written apart from its Service.
//!
//! The `kubernetes` Service in `default` (the masters' own) is kept by [`ensure_kubernetes_service`].

mod master;
pub mod plan;
pub mod range;
#[cfg(test)]
mod tests;

use std::net::Ipv4Addr;

use keel_types::ResourceInfo;
use serde_json::Value;

pub use master::{ensure_kubernetes_service, KubernetesServiceConfig};
use plan::{Plan, Want};
use range::{dynamic_order, IpRange, PortRange};

use crate::error::{ApiError, Cause};
use crate::meta;
use crate::server::ApiServer;
use crate::storage::{Change, Expect, Storage, StorageError, WriteOp};

const IP_KEYS: &str = "/keel/allocations/serviceips/";
const PORT_KEYS: &str = "/keel/allocations/nodeports/";
/// Random picks tried before a dynamic allocation reads the whole range's allocations.
const RANDOM_TRIES: usize = 32;

/// The ranges a cluster gives Services numbers from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceNetwork {
    pub ips: IpRange,
    pub node_ports: PortRange,
}

impl Default for ServiceNetwork {
    fn default() -> Self {
        ServiceNetwork {
            ips: IpRange::parse(range::DEFAULT_SERVICE_CIDR)
                .unwrap_or_else(|e| unreachable!("{e}")),
            node_ports: PortRange::parse(range::DEFAULT_NODE_PORTS)
                .unwrap_or_else(|e| unreachable!("{e}")),
        }
    }
}

/// Whether writes of this kind allocate numbers.
fn is_service(info: &ResourceInfo) -> bool {
    info.group.is_empty() && info.kind == "Service"
}

pub fn ip_key(ip: Ipv4Addr) -> Vec<u8> {
    format!("{IP_KEYS}{ip}").into_bytes()
}

pub fn port_key(port: u16) -> Vec<u8> {
    format!("{PORT_KEYS}{port}").into_bytes()
}

/// Whether `key` is one of the allocation keys (a failed expectation on it is a lost race
/// for a number, not a conflict on the object).
pub fn is_allocation_key(key: &[u8]) -> bool {
    key.starts_with(IP_KEYS.as_bytes()) || key.starts_with(PORT_KEYS.as_bytes())
}

/// Before validation of an update: numbers the request leaves out are carried over.
pub(crate) fn carry_over(info: &ResourceInfo, new: &mut Value, old: &Value) {
    if is_service(info) {
        plan::carry_over(new, old);
    }
}

fn invalid(svc: &Value, causes: Vec<Cause>) -> ApiError {
    ApiError::Invalid {
        group: String::new(),
        kind: "Service".into(),
        name: meta::name(svc).to_string(),
        causes,
    }
}

fn cause(error: &keel_types::field::FieldError) -> Cause {
    Cause {
        field: error.field.clone(),
        reason: error.reason().to_string(),
        message: error.message_without_field(),
    }
}

impl<S: Storage> ApiServer<S> {
    /// The writes that claim the numbers a Service written as `new` over `old` (None on
    /// create) needs and release those it no longer holds; fills the numbers got into `new`.
    /// Other kinds write nothing more.
    pub(crate) async fn allocate(
        &self,
        info: &ResourceInfo,
        new: &mut Value,
        old: Option<&Value>,
    ) -> Result<Vec<WriteOp>, ApiError> {
        if !is_service(info) {
            return Ok(Vec::new());
        }
        plan::mirror_cluster_ips(new);
        let net = self.service_network;
        let plan = plan::plan(Some(new), old, &net.ips, &net.node_ports)
            .map_err(|errors| invalid(new, errors.iter().map(cause).collect()))?;
        let owner = format!("{}/{}", meta::namespace(new), meta::name(new)).into_bytes();
        let mut ops = release_ops(&plan);
        let ip = match plan.ip {
            None => None,
            Some(want) => {
                let ip = self.claim_ip(new, want).await?;
                ops.push(claim(ip_key(ip), &owner));
                Some(ip)
            }
        };
        let mut got_ports = Vec::new();
        let mut taken: Vec<u16> = plan::held_node_ports(new).into_iter().collect();
        for (index, want) in &plan.node_ports {
            let port = self.claim_port(new, *index, *want, &taken).await?;
            taken.push(port);
            got_ports.push((*index, port));
            ops.push(claim(port_key(port), &owner));
        }
        let chosen_ip = match plan.ip {
            Some(Want::Chosen(ip)) => Some(ip),
            _ => ip,
        };
        plan::fill(new, chosen_ip, &got_ports);
        Ok(ops)
    }

    /// The writes that give back what a deleted Service held.
    pub(crate) fn release(&self, info: &ResourceInfo, current: &Value) -> Vec<WriteOp> {
        if !is_service(info) {
            return Vec::new();
        }
        let net = self.service_network;
        match plan::plan(None, Some(current), &net.ips, &net.node_ports) {
            Ok(plan) => release_ops(&plan),
            Err(_) => Vec::new(),
        }
    }

    async fn claim_ip(&self, svc: &Value, want: Want<Ipv4Addr>) -> Result<Ipv4Addr, ApiError> {
        let ips = self.service_network.ips;
        match want {
            Want::Chosen(ip) => {
                if self.allocated(&ip_key(ip)).await? {
                    return Err(invalid(
                        svc,
                        vec![Cause {
                            field: "spec.clusterIPs".into(),
                            reason: "FieldValueInvalid".into(),
                            message: format!(
                                "Invalid value: []string{{\"{ip}\"}}: failed to allocate IP {ip}: provided IP is already allocated"
                            ),
                        }],
                    ));
                }
                Ok(ip)
            }
            Want::Any => {
                let index = self
                    .free_index(ips.size(), ips.static_band(), IP_KEYS, |i| {
                        ips.nth(i).map(ip_key)
                    })
                    .await?
                    .ok_or_else(|| {
                        ApiError::Internal("failed to allocate a serviceIP: range is full".into())
                    })?;
                ips.nth(index)
                    .ok_or_else(|| ApiError::Internal("failed to allocate a serviceIP".into()))
            }
        }
    }

    async fn claim_port(
        &self,
        svc: &Value,
        index: usize,
        want: Want<u16>,
        taken: &[u16],
    ) -> Result<u16, ApiError> {
        let ports = self.service_network.node_ports;
        match want {
            Want::Chosen(port) => {
                if self.allocated(&port_key(port)).await? {
                    return Err(invalid(
                        svc,
                        vec![Cause {
                            field: format!("spec.ports[{index}].nodePort"),
                            reason: "FieldValueInvalid".into(),
                            message: format!(
                                "Invalid value: {port}: provided port is already allocated"
                            ),
                        }],
                    ));
                }
                Ok(port)
            }
            Want::Any => {
                let taken: Vec<Vec<u8>> = taken.iter().map(|p| port_key(*p)).collect();
                let index = self
                    .free_index(ports.size(), ports.static_band(), PORT_KEYS, |i| {
                        ports
                            .nth(i)
                            .map(port_key)
                            .filter(|key| !taken.contains(key))
                    })
                    .await?
                    .ok_or_else(|| {
                        ApiError::Internal("failed to allocate a nodePort: range is full".into())
                    })?;
                ports
                    .nth(index)
                    .ok_or_else(|| ApiError::Internal("failed to allocate a nodePort".into()))
            }
        }
    }

    /// A free index of a range: random picks in the dynamic order first; when those keep
    /// landing on taken numbers, one read of every allocation under `prefix` and the first free
    /// index in that order. `key_of` gives an index's key, or None for one not to use.
    async fn free_index(
        &self,
        size: u32,
        band: u32,
        prefix: &str,
        key_of: impl Fn(u32) -> Option<Vec<u8>>,
    ) -> Result<Option<u32>, ApiError> {
        let start: u32 = rand::random();
        let upper = size - band.min(size);
        for _ in 0..RANDOM_TRIES {
            // Random places in the upper band while it has room.
            let index = if upper > 0 {
                band + rand::random::<u32>() % upper
            } else {
                rand::random::<u32>() % size.max(1)
            };
            let Some(key) = key_of(index) else { continue };
            if !self.allocated(&key).await? {
                return Ok(Some(index));
            }
        }
        let taken = self.allocations(prefix).await?;
        Ok(dynamic_order(size, band, start)
            .find(|i| key_of(*i).is_some_and(|key| !taken.contains(&key))))
    }

    async fn allocated(&self, key: &[u8]) -> Result<bool, ApiError> {
        self.storage
            .get(key)
            .await
            .map(|v| v.is_some())
            .map_err(allocation_read_error)
    }

    async fn allocations(
        &self,
        prefix: &str,
    ) -> Result<std::collections::HashSet<Vec<u8>>, ApiError> {
        let start = prefix.as_bytes();
        let end = crate::storage::prefix_end(start);
        let page = self
            .storage
            .list(start, &end, 0, 0)
            .await
            .map_err(allocation_read_error)?;
        Ok(page.items.into_iter().map(|s| s.key).collect())
    }
}

fn allocation_read_error(e: StorageError) -> ApiError {
    ApiError::Internal(format!("reading service allocations: {e}"))
}

fn claim(key: Vec<u8>, owner: &[u8]) -> WriteOp {
    WriteOp {
        key,
        change: Change::Put(owner.to_vec()),
        expect: Expect::Absent,
    }
}

fn release_ops(plan: &Plan) -> Vec<WriteOp> {
    plan.release_ip
        .map(ip_key)
        .into_iter()
        .chain(plan.release_ports.iter().map(|p| port_key(*p)))
        .map(|key| WriteOp {
            key,
            change: Change::Delete,
            expect: Expect::Any,
        })
        .collect()
}
