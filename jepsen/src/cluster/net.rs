//! The test network: one network namespace per member, each joined by a veth pair to a bridge in
//! the root namespace, where the clients run. Partitions are iptables rules inside the member
//! namespaces, so a member keeps talking to its clients while it cannot hear its peers.
//!
//! Each run owns a slot (the third octet of 10.77.<slot>.0/24 and the suffix of every device
//! name) recorded in a lock file with its pid; whatever a dead owner left behind is swept away.

use std::path::PathBuf;
use std::process::Command;

use crate::Error;

const LOCK_DIR: &str = "/run/keel-jepsen";

/// Runs a system command, failing with its stderr.
pub fn sh(program: &str, args: &[&str]) -> Result<(), Error> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| Error::Command {
            command: format!("{program} {}", args.join(" ")),
            detail: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Command {
            command: format!("{program} {}", args.join(" ")),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

fn stdout_of(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn bridge(slot: u8) -> String {
    format!("kjbr{slot}")
}

fn namespace(slot: u8, i: usize) -> String {
    format!("kj{slot}m{i}")
}

fn forward_rule(slot: u8) -> Vec<String> {
    let b = bridge(slot);
    ["FORWARD", "-i", &b, "-o", &b, "-j", "ACCEPT"]
        .map(String::from)
        .to_vec()
}

/// Removes everything a slot's owner created: namespaces, bridge, the root forward rule.
fn clean_slot(slot: u8) {
    for line in stdout_of("ip", &["netns", "list"]).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        if name.starts_with(&format!("kj{slot}m")) {
            // Members a crashed harness left running die with their namespace.
            for pid in stdout_of("ip", &["netns", "pids", name]).split_whitespace() {
                let _ = sh("kill", &["-9", pid]);
            }
            let _ = sh("ip", &["netns", "del", name]);
        }
    }
    // Deleting a namespace destroys its veth pairs asynchronously; delete the host ends now so
    // the names are free for the next run.
    let veth = format!("kj{slot}v");
    for line in stdout_of("ip", &["-o", "link", "show"]).lines() {
        let name = line.split(':').nth(1).unwrap_or("").trim();
        let name = name.split('@').next().unwrap_or("");
        if name.starts_with(&veth) {
            let _ = sh("ip", &["link", "del", name]);
        }
    }
    let _ = sh("ip", &["link", "del", &bridge(slot)]);
    let mut rule = forward_rule(slot);
    rule.insert(0, "-D".into());
    let args: Vec<&str> = rule.iter().map(String::as_str).collect();
    while sh("iptables", &args).is_ok() {}
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Sweeps slots whose owner process is gone.
pub fn sweep() {
    let Ok(dir) = std::fs::read_dir(LOCK_DIR) else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(slot) = name
            .strip_prefix("slot-")
            .and_then(|s| s.parse::<u8>().ok())
        else {
            continue;
        };
        let owner = std::fs::read_to_string(entry.path())
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        if owner.is_none_or(|p| !pid_alive(p)) {
            clean_slot(slot);
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// A created test network. Dropping it removes it.
#[derive(Debug)]
pub struct Net {
    pub slot: u8,
    members: usize,
    lock: PathBuf,
}

impl Net {
    /// Creates the bridge and one namespace per member.
    pub fn create(members: usize) -> Result<Net, Error> {
        sweep();
        std::fs::create_dir_all(LOCK_DIR).map_err(|e| Error::io(LOCK_DIR, e))?;
        // Successive runs of one process take successive slots, so a slot whose namespaces the
        // kernel is still tearing down is not reused at once.
        static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let start = (std::process::id() as usize)
            .wrapping_mul(7)
            .wrapping_add(run)
            % 200;
        let mut claimed = None;
        for k in 0..200 {
            let slot = (10 + (start + k) % 200) as u8;
            let lock = PathBuf::from(LOCK_DIR).join(format!("slot-{slot}"));
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&lock)
            {
                use std::io::Write;
                let _ = writeln!(f, "{}", std::process::id());
                claimed = Some((slot, lock));
                break;
            }
        }
        let (slot, lock) = claimed.ok_or_else(|| Error::Command {
            command: "claiming a network slot".into(),
            detail: "all slots are taken".into(),
        })?;
        clean_slot(slot);
        let net = Net {
            slot,
            members,
            lock,
        };
        net.build()?;
        Ok(net)
    }

    fn build(&self) -> Result<(), Error> {
        let (s, b) = (self.slot, bridge(self.slot));
        sh("ip", &["link", "add", &b, "type", "bridge"])?;
        sh(
            "ip",
            &["addr", "add", &format!("10.77.{s}.1/24"), "dev", &b],
        )?;
        sh("ip", &["link", "set", &b, "up"])?;
        let mut rule = forward_rule(s);
        rule.insert(0, "-I".into());
        let args: Vec<&str> = rule.iter().map(String::as_str).collect();
        sh("iptables", &args)?;
        for i in 0..self.members {
            let ns = namespace(s, i);
            let (host, peer) = (format!("kj{s}v{i}"), format!("kj{s}p{i}"));
            sh("ip", &["netns", "add", &ns])?;
            sh(
                "ip",
                &["link", "add", &host, "type", "veth", "peer", "name", &peer],
            )?;
            sh("ip", &["link", "set", &peer, "netns", &ns])?;
            sh("ip", &["link", "set", &host, "master", &b])?;
            sh("ip", &["link", "set", &host, "up"])?;
            sh("ip", &["-n", &ns, "link", "set", &peer, "name", "eth0"])?;
            sh(
                "ip",
                &[
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("{}/24", self.ip(i)),
                    "dev",
                    "eth0",
                ],
            )?;
            sh("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
            sh("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    pub fn ip(&self, i: usize) -> String {
        format!("10.77.{}.{}", self.slot, 11 + i)
    }

    pub fn namespace(&self, i: usize) -> String {
        namespace(self.slot, i)
    }

    /// Member `i` drops everything that comes from the members in `from`.
    pub fn block(&self, i: usize, from: &[usize]) -> Result<(), Error> {
        let ns = self.namespace(i);
        for j in from {
            sh(
                "ip",
                &[
                    "netns",
                    "exec",
                    &ns,
                    "iptables",
                    "-A",
                    "INPUT",
                    "-s",
                    &self.ip(*j),
                    "-j",
                    "DROP",
                ],
            )?;
        }
        Ok(())
    }

    /// Removes every partition rule.
    pub fn heal(&self) -> Result<(), Error> {
        for i in 0..self.members {
            sh(
                "ip",
                &[
                    "netns",
                    "exec",
                    &self.namespace(i),
                    "iptables",
                    "-F",
                    "INPUT",
                ],
            )?;
        }
        Ok(())
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        clean_slot(self.slot);
        let _ = std::fs::remove_file(&self.lock);
    }
}

/// Whether this machine lets us create network namespaces (root, iproute2 present).
pub fn available() -> bool {
    let probe = format!("kjprobe{}", std::process::id() % 100_000);
    if sh("ip", &["netns", "add", &probe]).is_err() {
        return false;
    }
    let _ = sh("ip", &["netns", "del", &probe]);
    sh("iptables", &["-S", "FORWARD"]).is_ok()
}
