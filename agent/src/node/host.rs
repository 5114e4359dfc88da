//! Facts about the host the Node reports: CPUs, memory, filesystems, identity, kernel and OS,
//! read from /proc, /sys and /etc. The parsing is pure (over the files' text) and tested; the
//! readers around it are thin and never fail a status update: what cannot be read is left
//! empty or zero, as kubelet leaves what cAdvisor cannot tell it.

use std::net::Ipv4Addr;
use std::path::Path;

/// What the host is and has; read once, when the agent starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// CPUs this process may run on.
    pub cpus: u32,
    /// MemTotal, in bytes.
    pub memory_bytes: u64,
    /// Huge pages reserved, in bytes, of 2 MiB and of 1 GiB pages.
    pub hugepages_2mi_bytes: u64,
    pub hugepages_1gi_bytes: u64,
    pub machine_id: String,
    pub system_uuid: String,
    pub boot_id: String,
    pub kernel_version: String,
    pub os_image: String,
}

/// What the host has left; read for every status update.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostUsage {
    /// MemAvailable, in bytes.
    pub memory_available_bytes: u64,
    /// The root dir's filesystem (kubelet's nodefs).
    pub nodefs: FsStats,
    /// The largest PID the kernel hands out (the lower of pid_max and threads-max).
    pub pid_max: u64,
    /// Processes and threads currently running.
    pub pids_running: u64,
}

/// Size and free space of one filesystem.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsStats {
    pub capacity_bytes: u64,
    /// Free space an unprivileged process may use.
    pub available_bytes: u64,
}

impl HostFacts {
    /// Reads the host's facts.
    pub fn read() -> Self {
        let cpus = read("/proc/self/status")
            .as_deref()
            .and_then(cpus_allowed)
            .or_else(|| {
                std::thread::available_parallelism()
                    .ok()
                    .map(|n| n.get() as u32)
            })
            .unwrap_or(1);
        let meminfo = read("/proc/meminfo").unwrap_or_default();
        let hugepages = |size_kb: u64| {
            read(&format!(
                "/sys/kernel/mm/hugepages/hugepages-{size_kb}kB/nr_hugepages"
            ))
            .and_then(|t| t.trim().parse::<u64>().ok())
            .unwrap_or(0)
                * size_kb
                * 1024
        };
        let machine_id = read("/etc/machine-id")
            .or_else(|| read("/var/lib/dbus/machine-id"))
            .unwrap_or_default();
        Self {
            cpus,
            memory_bytes: meminfo_bytes(&meminfo, "MemTotal").unwrap_or(0),
            hugepages_2mi_bytes: hugepages(2048),
            hugepages_1gi_bytes: hugepages(1_048_576),
            machine_id: machine_id.trim().to_owned(),
            system_uuid: read("/sys/class/dmi/id/product_uuid")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            boot_id: read("/proc/sys/kernel/random/boot_id")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            kernel_version: read("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            os_image: read("/etc/os-release")
                .as_deref()
                .and_then(os_pretty_name)
                .unwrap_or_else(|| "Linux".to_owned()),
        }
    }
}

impl HostUsage {
    /// Reads what the host has left, the node filesystem being `root_dir`'s.
    pub fn read(root_dir: &Path) -> Self {
        let meminfo = read("/proc/meminfo").unwrap_or_default();
        let number = |path: &str| read(path).and_then(|t| t.trim().parse::<u64>().ok());
        let pid_max = match (
            number("/proc/sys/kernel/pid_max"),
            number("/proc/sys/kernel/threads-max"),
        ) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or(0),
        };
        Self {
            memory_available_bytes: meminfo_bytes(&meminfo, "MemAvailable").unwrap_or(0),
            nodefs: fs_stats(root_dir).unwrap_or_default(),
            pid_max,
            pids_running: read("/proc/loadavg")
                .as_deref()
                .and_then(loadavg_threads)
                .unwrap_or(0),
        }
    }
}

/// The size and free space of the filesystem holding `path` (its nearest existing ancestor,
/// so a root dir not made yet is measured where it will be).
pub fn fs_stats(path: &Path) -> Option<FsStats> {
    let existing = path.ancestors().find(|p| p.exists())?;
    let stats = rustix::fs::statvfs(existing).ok()?;
    Some(FsStats {
        capacity_bytes: stats.f_blocks.saturating_mul(stats.f_frsize),
        available_bytes: stats.f_bavail.saturating_mul(stats.f_frsize),
    })
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// The number of CPUs in /proc/self/status's `Cpus_allowed_list` (`0-3,6,8-9`).
pub fn cpus_allowed(status: &str) -> Option<u32> {
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?;
    cpu_list_len(list.trim())
}

/// The number of CPUs a kernel CPU list (`0-3,6,8-9`) names.
pub fn cpu_list_len(list: &str) -> Option<u32> {
    let mut count = 0u32;
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?),
            None => {
                let n = part.parse::<u32>().ok()?;
                (n, n)
            }
        };
        count = count.checked_add(last.checked_sub(first)?.checked_add(1)?)?;
    }
    (count > 0).then_some(count)
}

/// A /proc/meminfo field (`MemTotal:  8029412 kB`) in bytes.
pub fn meminfo_bytes(meminfo: &str, field: &str) -> Option<u64> {
    meminfo.lines().find_map(|line| {
        let (name, rest) = line.split_once(':')?;
        if name.trim() != field {
            return None;
        }
        let mut words = rest.split_whitespace();
        let value: u64 = words.next()?.parse().ok()?;
        match words.next() {
            Some("kB") => value.checked_mul(1024),
            None => Some(value),
            Some(_) => None,
        }
    })
}

/// /etc/os-release's PRETTY_NAME, unquoted.
pub fn os_pretty_name(os_release: &str) -> Option<String> {
    let value = os_release
        .lines()
        .find_map(|l| l.trim().strip_prefix("PRETTY_NAME="))?
        .trim();
    let unquoted = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
        .unwrap_or(value);
    Some(unquoted.replace("\\\"", "\"")).filter(|v| !v.is_empty())
}

/// The number of processes and threads from /proc/loadavg (`0.10 0.20 0.30 2/345 6789`).
pub fn loadavg_threads(loadavg: &str) -> Option<u64> {
    let field = loadavg.split_whitespace().nth(3)?;
    field.split_once('/')?.1.parse().ok()
}

/// The host's own IPv4 addresses, in the order /proc/net/fib_trie lists them, loopback
/// excluded: the addresses marked `/32 host LOCAL`.
pub fn local_ipv4s(fib_trie: &str) -> Vec<Ipv4Addr> {
    let mut found = Vec::new();
    let mut last: Option<Ipv4Addr> = None;
    for line in fib_trie.lines() {
        let trimmed = line.trim_start();
        if let Some(addr) = trimmed.strip_prefix("|-- ") {
            last = addr.trim().parse().ok();
        } else if trimmed.starts_with("/32 host LOCAL") {
            if let Some(addr) = last.filter(|a| !a.is_loopback() && !found.contains(a)) {
                found.push(addr);
            }
        }
    }
    found
}

/// Kubernetes' (Go's) name for the architecture Rust calls `arch`.
pub fn go_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpus_counted_are_those_this_process_may_use() {
        let status = "Name:\tkeel\nCpus_allowed:\tff\nCpus_allowed_list:\t0-3,6,8-9\n";
        assert_eq!(cpus_allowed(status), Some(7));
        assert_eq!(cpu_list_len("0"), Some(1));
        assert_eq!(cpu_list_len("3-1"), None);
        assert_eq!(cpu_list_len(""), None);
    }

    #[test]
    fn meminfo_fields_are_read_in_bytes() {
        let meminfo = "MemTotal:        8029412 kB\nMemFree:  100 kB\nMemAvailable:    4000000 kB\nHugePages_Total:       0\n";
        assert_eq!(meminfo_bytes(meminfo, "MemTotal"), Some(8_029_412 * 1024));
        assert_eq!(
            meminfo_bytes(meminfo, "MemAvailable"),
            Some(4_000_000 * 1024)
        );
        assert_eq!(meminfo_bytes(meminfo, "HugePages_Total"), Some(0));
        assert_eq!(meminfo_bytes(meminfo, "Mem"), None);
    }

    #[test]
    fn the_os_image_is_the_pretty_name_unquoted() {
        let text = "NAME=\"Ubuntu\"\nPRETTY_NAME=\"Ubuntu 24.04.1 LTS\"\nID=ubuntu\n";
        assert_eq!(os_pretty_name(text).as_deref(), Some("Ubuntu 24.04.1 LTS"));
        assert_eq!(
            os_pretty_name("PRETTY_NAME=Alpine").as_deref(),
            Some("Alpine")
        );
        assert_eq!(os_pretty_name("NAME=x"), None);
    }

    #[test]
    fn running_threads_are_the_total_of_loadavg() {
        assert_eq!(loadavg_threads("0.10 0.20 0.30 2/345 6789\n"), Some(345));
        assert_eq!(loadavg_threads("garbage"), None);
    }

    #[test]
    fn local_addresses_come_from_the_fib_trie_without_loopback_or_repeats() {
        let trie = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n     +-- 10.0.0.0/8 2 0 2\n        |-- 10.1.2.3\n           /32 host LOCAL\n        |-- 10.255.255.255\n           /32 link BROADCAST\n     +-- 127.0.0.0/8 2 0 2\n        |-- 127.0.0.1\n           /32 host LOCAL\n     |-- 192.168.5.7\n        /32 host LOCAL\nLocal:\n        |-- 10.1.2.3\n           /32 host LOCAL\n";
        assert_eq!(
            local_ipv4s(trie),
            vec![Ipv4Addr::new(10, 1, 2, 3), Ipv4Addr::new(192, 168, 5, 7)]
        );
    }

    #[test]
    fn architectures_carry_kubernetes_names() {
        assert_eq!(go_arch("x86_64"), "amd64");
        assert_eq!(go_arch("aarch64"), "arm64");
        assert_eq!(go_arch("s390x"), "s390x");
    }

    #[test]
    fn this_host_has_cpus_memory_and_a_kernel() {
        let facts = HostFacts::read();
        assert!(facts.cpus >= 1);
        assert!(facts.memory_bytes > 0);
        assert!(!facts.kernel_version.is_empty());
        let usage = HostUsage::read(Path::new("/nonexistent/root/dir"));
        assert!(usage.nodefs.capacity_bytes > 0, "measured at /");
        assert!(usage.pid_max > 0);
    }
}
