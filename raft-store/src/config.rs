//! A member's configuration, with etcd's flag meanings and keel's defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

pub use crate::tls::TlsFiles;

/// The space quota when none is given: etcd's largest recommended size.
pub const DEFAULT_QUOTA_BYTES: u64 = 8 << 30;

/// Whether this member founds a new cluster or joins one that exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterState {
    New,
    Existing,
}

/// Everything needed to start one member.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub name: String,
    pub data_dir: PathBuf,
    pub listen_client: Vec<SocketAddr>,
    pub advertise_client_urls: Vec<String>,
    pub listen_peer: Vec<SocketAddr>,
    pub advertise_peer_urls: Vec<String>,
    /// `name=peer_url` pairs of the founding members.
    pub initial_cluster: Vec<(String, String)>,
    pub initial_cluster_state: ClusterState,
    pub initial_cluster_token: String,
    pub heartbeat_ms: u64,
    pub election_timeout_ms: u64,
    /// Committed entries between snapshots (etcd's `--snapshot-count`).
    pub snapshot_count: u64,
    /// Bytes the state machine may take before writes needing space are refused with NOSPACE
    /// (etcd's `--quota-backend-bytes`); 0 means no limit.
    pub quota_backend_bytes: u64,
    /// History kept by automatic compaction; `None` keeps everything.
    pub auto_compaction: Option<crate::compactor::Retention>,
    /// How the leader confirms leadership for linearizable reads.
    pub read_mode: crate::read_index::ReadMode,
    /// Where `/metrics` and `/health` are served (etcd's `--listen-metrics-urls`).
    pub listen_metrics: Vec<SocketAddr>,
    /// TLS on the client port.
    pub client_tls: Option<TlsFiles>,
    /// TLS on the peer port, and for dialling peers.
    pub peer_tls: Option<TlsFiles>,
    /// Test-only planted bug for the fault harness: serve linearizable reads from local state
    /// without the ReadIndex round, so a deposed or partitioned member answers stale data.
    /// Never set outside tests (`keel server --unsafe-fault=stale-reads`, a hidden flag).
    pub unsafe_stale_reads: bool,
}

impl NodeConfig {
    /// A single member with etcd's default ports and keel's default data dir.
    pub fn single(name: &str, data_dir: PathBuf) -> Self {
        let client: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 2379));
        let peer: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 2380));
        Self {
            name: name.to_string(),
            data_dir,
            listen_client: vec![client],
            advertise_client_urls: vec![format!("http://{client}")],
            listen_peer: vec![peer],
            advertise_peer_urls: vec![format!("http://{peer}")],
            initial_cluster: vec![(name.to_string(), format!("http://{peer}"))],
            initial_cluster_state: ClusterState::New,
            initial_cluster_token: "keel-cluster".to_string(),
            heartbeat_ms: 100,
            election_timeout_ms: 500,
            snapshot_count: 20_000,
            quota_backend_bytes: DEFAULT_QUOTA_BYTES,
            auto_compaction: None,
            read_mode: Default::default(),
            listen_metrics: Vec::new(),
            client_tls: None,
            peer_tls: None,
            unsafe_stale_reads: false,
        }
    }

    /// Log entries kept behind a snapshot, so a follower a little behind catches up from the log
    /// rather than by a whole snapshot (etcd keeps 5000).
    pub fn log_kept_after_snapshot(&self) -> u64 {
        self.snapshot_count.min(5_000)
    }

    /// The shortest lease TTL granted, as etcd derives it from the election timeout (1.5x, in
    /// whole seconds, rounded up).
    pub fn min_lease_ttl(&self) -> i64 {
        ((self.election_timeout_ms * 3).div_ceil(2)).div_ceil(1000) as i64
    }
}

/// 64-bit FNV-1a: a stable hash for deriving member and cluster IDs from names and URLs, the same
/// on every member and every version.
pub fn fnv64(parts: &[&[u8]]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for part in parts {
        for b in *part {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        h = (h ^ 0xff).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A member's ID from its peer URLs and the cluster token (as etcd derives it from the same).
pub fn member_id(peer_urls: &[String], token: &str) -> u64 {
    let mut urls: Vec<&str> = peer_urls.iter().map(String::as_str).collect();
    urls.sort_unstable();
    let mut parts: Vec<&[u8]> = urls.iter().map(|u| u.as_bytes()).collect();
    parts.push(token.as_bytes());
    fnv64(&parts).max(1)
}

/// The cluster ID from the founding members' IDs.
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let bytes: Vec<[u8; 8]> = ids.iter().map(|i| i.to_be_bytes()).collect();
    let parts: Vec<&[u8]> = bytes.iter().map(|b| b.as_slice()).collect();
    fnv64(&parts).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_id_ignores_url_order_and_depends_on_token() {
        let a = member_id(&["http://b".into(), "http://a".into()], "t");
        let b = member_id(&["http://a".into(), "http://b".into()], "t");
        assert_eq!(a, b);
        assert_ne!(
            a,
            member_id(&["http://a".into(), "http://b".into()], "other")
        );
    }

    #[test]
    fn min_lease_ttl_follows_the_election_timeout() {
        let mut c = NodeConfig::single("a", "/tmp/x".into());
        c.election_timeout_ms = 1000;
        assert_eq!(c.min_lease_ttl(), 2);
        c.election_timeout_ms = 5000;
        assert_eq!(c.min_lease_ttl(), 8);
    }
}
