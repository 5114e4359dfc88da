//! The address and port ranges Services are given numbers from: the service cluster IP range
//! (`--service-cluster-ip-range`, an IPv4 CIDR) and the NodePort range
//! (`--service-node-port-range`, `first-last`), and the order a dynamic allocation tries them in.

use std::net::Ipv4Addr;

/// Kubernetes' default service cluster IP range.
pub const DEFAULT_SERVICE_CIDR: &str = "10.96.0.0/12";
/// Kubernetes' default NodePort range.
pub const DEFAULT_NODE_PORTS: &str = "30000-32767";

/// The index in the range of the cluster DNS Service's address.
pub const DNS_SERVICE_INDEX: u32 = 9;

/// An IPv4 range for cluster IPs. Its network and broadcast addresses are never handed out;
/// the first usable address belongs to the `kubernetes` Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    network: u32,
    prefix: u8,
}

impl IpRange {
    /// Parses `a.b.c.d/n` (n from 8 to 30: at least two usable addresses, at most 2^24).
    pub fn parse(cidr: &str) -> Result<Self, String> {
        let (addr, prefix) = cidr
            .split_once('/')
            .ok_or_else(|| format!("{cidr:?} is not a CIDR (a.b.c.d/n)"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("{cidr:?}: {addr:?} is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| format!("{cidr:?}: {prefix:?} is not a prefix length"))?;
        if !(8..=30).contains(&prefix) {
            return Err(format!(
                "{cidr:?}: the prefix length must be between 8 and 30 (at least two and at most 2^24 addresses)"
            ));
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(IpRange {
            network: u32::from(addr) & mask,
            prefix,
        })
    }

    /// How many addresses can be handed out.
    pub fn size(&self) -> u32 {
        (1u32 << (32 - self.prefix)) - 2
    }

    /// The `index`th usable address (0-based), if the range has one.
    pub fn nth(&self, index: u32) -> Option<Ipv4Addr> {
        (index < self.size()).then(|| Ipv4Addr::from(self.network + 1 + index))
    }

    /// Where `ip` sits among the usable addresses, if it is one.
    pub fn index_of(&self, ip: Ipv4Addr) -> Option<u32> {
        let ip = u32::from(ip);
        let index = ip.checked_sub(self.network + 1)?;
        (index < self.size()).then_some(index)
    }

    /// The address of the `kubernetes` Service: the first usable one.
    pub fn kubernetes_service_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network + 1)
    }

    /// The address of the cluster DNS Service (`kube-dns`): the tenth usable one, as kubeadm
    /// chooses (10.96.0.10 in the default range), which agents write into pods' resolv.conf.
    pub fn dns_service_ip(&self) -> Option<Ipv4Addr> {
        self.nth(DNS_SERVICE_INDEX)
    }

    /// The size of the lower band kept for addresses users choose (Kubernetes' static
    /// subrange: a sixteenth of the range, at least 16 and at most 256 addresses, for ranges of
    /// 16 or more).
    pub fn static_band(&self) -> u32 {
        let size = self.size();
        if size < 16 {
            return 0;
        }
        (size / 16).clamp(16, 256)
    }
}

impl std::fmt::Display for IpRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.network), self.prefix)
    }
}

/// An inclusive range of node ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    /// Parses `first-last` (or one port alone).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (first, last) = text.split_once('-').unwrap_or((text, text));
        let port = |s: &str| {
            s.trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("{text:?}: {s:?} is not a port number"))
        };
        let (first, last) = (port(first)?, port(last)?);
        if first > last {
            return Err(format!("{text:?}: the first port is above the last"));
        }
        Ok(PortRange { first, last })
    }

    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }

    pub fn size(&self) -> u32 {
        u32::from(self.last - self.first) + 1
    }

    /// The `index`th port of the range.
    pub fn nth(&self, index: u32) -> Option<u16> {
        (index < self.size())
            .then(|| u16::try_from(u32::from(self.first) + index).ok())
            .flatten()
    }

    /// The size of the lower band kept for ports users choose, as for IPs (Kubernetes' static
    /// node port subrange: a sixteenth, between 16 and 128).
    pub fn static_band(&self) -> u32 {
        let size = self.size();
        if size < 16 {
            return 0;
        }
        (size / 16).clamp(16, 128)
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// The order a dynamic allocation tries indexes of a range of `size` with a lower band of
/// `band` kept for static choices: the upper band from a random place (`start`), wrapping, then
/// the lower band from the same offset. Every index appears exactly once.
pub fn dynamic_order(size: u32, band: u32, start: u32) -> impl Iterator<Item = u32> {
    let upper = size - band.min(size);
    let upper_start = if upper == 0 { 0 } else { start % upper };
    let lower_start = if band == 0 { 0 } else { start % band };
    (0..upper)
        .map(move |i| band + (upper_start + i) % upper)
        .chain((0..band.min(size)).map(move |i| (lower_start + i) % band))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_range_has_a_million_addresses_and_starts_with_the_kubernetes_service() {
        let range = IpRange::parse(DEFAULT_SERVICE_CIDR).expect("default");
        assert_eq!(range.size(), (1 << 20) - 2);
        assert_eq!(range.kubernetes_service_ip(), Ipv4Addr::new(10, 96, 0, 1));
        assert_eq!(range.nth(9), Some(Ipv4Addr::new(10, 96, 0, 10)));
        assert_eq!(range.index_of(Ipv4Addr::new(10, 96, 0, 10)), Some(9));
        assert_eq!(range.index_of(Ipv4Addr::new(10, 96, 0, 0)), None, "network");
        assert_eq!(
            range.index_of(Ipv4Addr::new(10, 111, 255, 255)),
            None,
            "broadcast"
        );
        assert_eq!(range.index_of(Ipv4Addr::new(10, 112, 0, 1)), None);
        assert_eq!(range.static_band(), 256);
        assert_eq!(range.to_string(), "10.96.0.0/12");
    }

    #[test]
    fn bad_ranges_are_refused_with_the_reason() {
        assert!(IpRange::parse("10.96.0.0").is_err());
        assert!(IpRange::parse("10.96.0/12").is_err());
        assert!(IpRange::parse("10.96.0.0/31").is_err());
        assert_eq!(
            IpRange::parse("10.96.7.9/24").map(|r| r.to_string()),
            Ok("10.96.7.0/24".into())
        );
        assert!(PortRange::parse("32767-30000").is_err());
        assert!(PortRange::parse("0-10").is_err());
        assert_eq!(
            PortRange::parse(DEFAULT_NODE_PORTS),
            Ok(PortRange {
                first: 30000,
                last: 32767
            })
        );
        assert_eq!(
            PortRange::parse(DEFAULT_NODE_PORTS).map(|r| r.static_band()),
            Ok(128)
        );
    }

    #[test]
    fn dynamic_order_tries_the_upper_band_first_and_every_index_once() {
        let order: Vec<u32> = dynamic_order(10, 4, 3).collect();
        assert_eq!(order, vec![7, 8, 9, 4, 5, 6, 3, 0, 1, 2]);
        let mut all: Vec<u32> = dynamic_order(1000, 62, 777).collect();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        assert_eq!(
            dynamic_order(5, 0, 2).collect::<Vec<_>>(),
            vec![2, 3, 4, 0, 1]
        );
    }
}
