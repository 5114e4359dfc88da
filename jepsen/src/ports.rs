//! Loopback ports for the listeners of clusters started under test, chosen outside the
//! kernel's ephemeral range.
//!
//! Asking the kernel for port 0 and releasing the socket hands out a port from the same range
//! the kernel draws from for every outgoing connection. Between the release and the member's
//! own bind, a connection from another member (peers retrying while the cluster starts, clients
//! reaching the API) may take that port, and the member then fails to bind it. Ports below the
//! ephemeral range are never chosen for outgoing connections, so once a probe bind shows one
//! free, only another listener can take it; a process-wide cursor keeps this process from
//! handing the same port out twice.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};

/// Where the kernel's ephemeral range is read; Linux's default is used if it cannot be.
const EPHEMERAL_RANGE: &str = "/proc/sys/net/ipv4/ip_local_port_range";
const DEFAULT_EPHEMERAL: (u16, u16) = (32768, 60999);
/// The lowest port handed out: above the well-known and most registered service ports.
const LOWEST: u16 = 10000;
/// Kubernetes' default NodePort range, left alone: a node's Service proxy claims these ports
/// on every local address.
const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

/// Offset of the next candidate in the chosen range; starts at a random place so that two
/// test processes running side by side rarely probe the same ports.
static CURSOR: AtomicU32 = AtomicU32::new(u32::MAX);

/// `n` distinct loopback ports that were free a moment ago and are outside the ephemeral
/// range.
pub fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let (low, high) = range(ephemeral());
    let span = u32::from(high - low) + 1;
    if CURSOR.load(Ordering::Relaxed) == u32::MAX {
        let _ = CURSOR.compare_exchange(
            u32::MAX,
            rand::random::<u32>() % span,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
    // Probe listeners stay open until all `n` are chosen, so the same port is never chosen twice
    // even if the cursor wraps.
    let mut held = Vec::with_capacity(n);
    let mut probed = 0u32;
    while held.len() < n {
        if probed == span {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("no free loopback port in {low}..={high}"),
            ));
        }
        probed += 1;
        let offset = CURSOR.fetch_add(1, Ordering::Relaxed) % span;
        let Ok(port) = u16::try_from(u32::from(low) + offset) else {
            continue;
        };
        if let Ok(listener) = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)) {
            held.push((port, listener));
        }
    }
    Ok(held.into_iter().map(|(port, _)| port).collect())
}

/// The kernel's ephemeral range, as `(first, last)`.
fn ephemeral() -> (u16, u16) {
    std::fs::read_to_string(EPHEMERAL_RANGE)
        .ok()
        .and_then(|text| parse_range(&text))
        .unwrap_or(DEFAULT_EPHEMERAL)
}

fn parse_range(text: &str) -> Option<(u16, u16)> {
    let mut fields = text.split_whitespace().map(str::parse::<u16>);
    match (fields.next(), fields.next()) {
        (Some(Ok(first)), Some(Ok(last))) if first <= last => Some((first, last)),
        _ => None,
    }
}

/// The range ports are handed out from: below the ephemeral range when there is room there,
/// else above it; below, the NodePort range is left out.
fn range((first, last): (u16, u16)) -> (u16, u16) {
    if first > LOWEST + 1000 {
        (LOWEST, (first - 1).min(NODE_PORTS.start() - 1))
    } else if last < u16::MAX - 1000 {
        (last + 1, u16::MAX)
    } else {
        // The ephemeral range covers nearly everything: collisions cannot be avoided.
        (LOWEST, u16::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_come_from_below_the_ephemeral_range() {
        assert_eq!(range((32768, 60999)), (10000, 29999));
        assert_eq!(range((10500, 60000)), (60001, 65535));
        assert_eq!(range((1024, 65535)), (10000, 65535));
    }

    #[test]
    fn the_kernel_range_is_parsed_or_refused() {
        assert_eq!(parse_range("32768\t60999\n"), Some((32768, 60999)));
        assert_eq!(parse_range("60999 32768"), None);
        assert_eq!(parse_range("x"), None);
    }

    #[test]
    fn ports_handed_out_are_distinct_and_outside_the_ephemeral_range() -> std::io::Result<()> {
        let (first, last) = ephemeral();
        let mut ports = free_ports(50)?;
        ports.extend(free_ports(50)?);
        assert!(ports
            .iter()
            .all(|p| !(first..=last).contains(p) && !NODE_PORTS.contains(p)));
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 100);
        Ok(())
    }
}
