//! A containerd of our own: started as a child with a configuration whose every path lies in
//! one directory, so it runs beside the host's containerd (if any) without touching it, and
//! is stopped with everything it ran.
//!
//! Shutdown order: sandboxes are removed through CRI (which stops their containers, tears down
//! their networks and unmounts their filesystems), then containerd gets SIGTERM, then any shim
//! still serving our socket is killed with its containers, then whatever remains mounted
//! under the directory is unmounted. Dropping without [`PrivateContainerd::stop`] does the
//! last three, so a failed test leaves no processes behind. A containerd meant to outlive its
//! starter (`keel up`'s nodes) is detached, and later attached again by pid to be stopped.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::config::{ContainerdConfig, Snapshotter};
use crate::{host, Error, RuntimeClient};

/// How long containerd may take to serve CRI after it starts.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// How long containerd may take to exit after SIGTERM before it is killed.
const EXIT_WITHIN: Duration = Duration::from_secs(10);
/// The CRI plugin's containerd namespace: images must be imported there to be seen by CRI.
pub const CRI_NAMESPACE: &str = "k8s.io";

/// A running containerd that we started, with the configuration it runs under.
#[derive(Debug)]
pub struct PrivateContainerd {
    config: ContainerdConfig,
    dir: PathBuf,
    log: PathBuf,
    process: Option<Owned>,
    /// Let go of by [`PrivateContainerd::detach`]: nothing is stopped on drop.
    detached: bool,
}

/// The containerd process, as we know it.
#[derive(Debug)]
enum Owned {
    /// Started by this process.
    Child(Child),
    /// Started by another process (an earlier `keel up`), known by pid; it is ours only while
    /// its command line still names our configuration file (pids are reused).
    Pid(u32),
}

/// Where a containerd runs: the host's network namespace, or a named one (as each node of
/// `keel up` does), entered with `nsenter` so that the CNI bridge its pods join is that
/// namespace's.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    /// A network namespace file (`/run/netns/<name>`).
    pub netns: Option<PathBuf>,
    /// In a process group of its own, so that a terminal's ^C to whoever started it does not
    /// reach it: for a containerd that outlives its starter.
    pub own_process_group: bool,
}

impl PrivateContainerd {
    /// Writes `config` to `dir/containerd.toml` and starts `containerd` on it, logging to
    /// `dir/containerd.log`; returns once its CRI service answers `Version`. If overlayfs
    /// cannot be mounted under `dir`, the native snapshotter is used instead. CNI network
    /// configurations may be written to `config.cni_conf_dir` before or after.
    pub async fn start(dir: &Path, config: ContainerdConfig) -> Result<Self, Error> {
        Self::start_placed(dir, config, &Placement::default()).await
    }

    /// As [`PrivateContainerd::start`], in `placement`.
    pub async fn start_placed(
        dir: &Path,
        mut config: ContainerdConfig,
        placement: &Placement,
    ) -> Result<Self, Error> {
        for path in [
            &config.root,
            &config.state,
            &config.opt_dir,
            &config.cni_conf_dir,
        ] {
            fs::create_dir_all(path)
                .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        }
        if config.snapshotter == Snapshotter::Overlayfs
            && !overlay_mounts(&dir.join("overlay-probe"))
        {
            tracing::warn!("overlayfs cannot be mounted here; using the native snapshotter");
            config.snapshotter = Snapshotter::Native;
        }
        let config_file = dir.join("containerd.toml");
        fs::write(&config_file, config.render())
            .map_err(|e| Error::io(format!("writing {}", config_file.display()), e))?;
        let log = dir.join("containerd.log");
        let out = fs::File::create(&log)
            .map_err(|e| Error::io(format!("creating {}", log.display()), e))?;
        let err = out
            .try_clone()
            .map_err(|e| Error::io(format!("opening {}", log.display()), e))?;
        let mut command = match &placement.netns {
            Some(netns) => {
                // nsenter executes containerd in place: the pid we get is containerd's.
                let mut command = Command::new("nsenter");
                command
                    .arg(format!("--net={}", netns.display()))
                    .arg("--")
                    .arg("containerd");
                command
            }
            None => Command::new("containerd"),
        };
        if placement.own_process_group {
            use std::os::unix::process::CommandExt as _;
            command.process_group(0);
        }
        let child = command
            .arg("--config")
            .arg(&config_file)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| Error::io("starting containerd (install containerd)", e))?;
        let mut containerd = Self {
            config,
            dir: dir.to_owned(),
            log,
            process: Some(Owned::Child(child)),
            detached: false,
        };
        containerd.wait_until_serving().await?;
        Ok(containerd)
    }

    async fn wait_until_serving(&mut self) -> Result<(), Error> {
        let started = Instant::now();
        let mut last = String::from("no socket yet");
        loop {
            if let Some(Owned::Child(child)) = self.process.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.process = None;
                    return Err(Error::ContainerdExited {
                        status: status.to_string(),
                        log_tail: self.log_tail(),
                    });
                }
            }
            if self.config.address.exists() {
                match RuntimeClient::connect(&self.endpoint()).await {
                    Ok(client) => match client.version().await {
                        Ok(_) => return Ok(()),
                        // The CRI service is registered when its plugin loads, or never.
                        Err(
                            error @ Error::Failed {
                                code: tonic::Code::Unimplemented,
                                ..
                            },
                        ) => {
                            return Err(Error::ContainerdNotServing {
                                last: error.to_string(),
                                log_tail: self.log_tail(),
                            });
                        }
                        Err(error) => last = error.to_string(),
                    },
                    Err(error) => last = error.to_string(),
                }
            }
            if started.elapsed() > READY_WITHIN {
                return Err(Error::ContainerdNotServing {
                    last: format!("not serving after {READY_WITHIN:?}: {last}"),
                    log_tail: self.log_tail(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The CRI endpoint, `unix://…/containerd.sock`.
    pub fn endpoint(&self) -> String {
        self.config.endpoint()
    }

    /// The configuration it runs under (with the snapshotter actually chosen).
    pub fn config(&self) -> &ContainerdConfig {
        &self.config
    }

    /// Imports an image archive into the CRI namespace and unpacks it for our snapshotter,
    /// as `ctr images import` does.
    pub async fn import(&self, archive: &Path) -> Result<(), Error> {
        let command = format!("ctr -n {CRI_NAMESPACE} images import {}", archive.display());
        let output = tokio::process::Command::new("ctr")
            .arg("--address")
            .arg(&self.config.address)
            .args(["--namespace", CRI_NAMESPACE, "images", "import"])
            .args(["--snapshotter", self.config.snapshotter.as_str()])
            .arg(archive)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| Error::io(format!("running {command}"), e))?;
        if output.status.success() {
            return Ok(());
        }
        Err(Error::Command {
            command,
            detail: format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        })
    }

    /// Removes every sandbox, then stops containerd and cleans up after it. Returns the first
    /// error in removing sandboxes, after doing all the rest regardless.
    pub async fn stop(mut self) -> Result<(), Error> {
        let removed = self.remove_all_sandboxes().await;
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
            let asked = Instant::now();
            while self.runs() && asked.elapsed() < EXIT_WITHIN {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        self.kill_and_clean_up();
        removed
    }

    /// What a host's power loss and reboot do to containerd, for tests of recovery: it and
    /// everything it ran are killed without warning, and what a real host keeps in memory
    /// only is gone (its state directory, which lives on tmpfs; network namespaces; cgroups;
    /// mounts). Then it starts again, in the host's namespaces, on the same root, whose
    /// metadata (images, and the sandboxes and containers it had) survived.
    pub async fn reboot(mut self) -> Result<Self, Error> {
        self.kill_and_clean_up();
        let state = self.config.state.clone();
        fs::remove_dir_all(&state)
            .map_err(|e| Error::io(format!("removing {}", state.display()), e))?;
        let (dir, config) = (self.dir.clone(), self.config.clone());
        drop(self);
        Self::start(&dir, config).await
    }

    /// Lets containerd run on after this handle is gone (nothing is stopped or cleaned up
    /// on drop); returns its pid, from which [`PrivateContainerd::attach`] finds it again.
    pub fn detach(mut self) -> Option<u32> {
        let pid = self.pid();
        self.process = None;
        self.detached = true;
        pid
    }

    /// A handle on the containerd an earlier [`PrivateContainerd::start_placed`] started
    /// under `dir` with [`ContainerdConfig::under`]'s paths and then detached, running as
    /// `pid` (or gone), so that it can be stopped and cleaned up after.
    pub fn attach(dir: &Path, sandbox_image: &str, pid: Option<u32>) -> Self {
        let config = ContainerdConfig::under(dir, sandbox_image);
        let config_file = dir.join("containerd.toml");
        let ours = pid.filter(|pid| {
            host::command_line(*pid)
                .is_some_and(|args| args.iter().any(|arg| Path::new(arg) == config_file))
        });
        Self {
            config,
            dir: dir.to_owned(),
            log: dir.join("containerd.log"),
            process: ours.map(Owned::Pid),
            detached: false,
        }
    }

    /// containerd's pid while we know it.
    fn pid(&self) -> Option<u32> {
        match &self.process {
            Some(Owned::Child(child)) => Some(child.id()),
            Some(Owned::Pid(pid)) => Some(*pid),
            None => None,
        }
    }

    /// Whether containerd still runs (a child is reaped here; another's is watched in /proc).
    fn runs(&mut self) -> bool {
        match &mut self.process {
            Some(Owned::Child(child)) => matches!(child.try_wait(), Ok(None)),
            Some(Owned::Pid(pid)) => Path::new(&format!("/proc/{pid}")).exists(),
            None => false,
        }
    }

    async fn remove_all_sandboxes(&self) -> Result<(), Error> {
        let client = RuntimeClient::connect(&self.endpoint()).await?;
        let mut first_error = None;
        for sandbox in client.list_pod_sandboxes(None).await? {
            let result = match client.stop_pod_sandbox(&sandbox.id).await {
                Ok(()) => client.remove_pod_sandbox(&sandbox.id).await,
                Err(error) => Err(error),
            };
            if let Err(error) = result {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Kills containerd if it still runs, then the shims serving its socket and their
    /// containers; then removes what those containers leave behind when killed rather than
    /// removed through CRI: cgroups, network namespaces, mounts under our directory.
    fn kill_and_clean_up(&mut self) {
        match self.process.take() {
            Some(Owned::Child(mut child)) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Some(Owned::Pid(pid)) => {
                let _ = Command::new("kill")
                    .arg("-KILL")
                    .arg(pid.to_string())
                    .stderr(Stdio::null())
                    .status();
                wait_until_gone(&[pid]);
            }
            None => {}
        }
        let table = host::processes();
        let shims: Vec<u32> = table
            .iter()
            .filter(|p| serves(&p.args, &self.config.address))
            .map(|p| p.pid)
            .collect();
        let doomed = with_descendants(&shims, &table);
        let containers: Vec<u32> = doomed
            .iter()
            .copied()
            .filter(|p| !shims.contains(p))
            .collect();
        let cgroups = cgroups_of(&containers);
        let network_namespaces = network_namespaces_of(&containers);
        let sockets = shim_sockets(&self.config.state);
        if !doomed.is_empty() {
            let _ = Command::new("kill")
                .arg("-KILL")
                .args(doomed.iter().map(u32::to_string))
                .stderr(Stdio::null())
                .status();
            wait_until_gone(&doomed);
        }
        for path in named_network_namespaces(&network_namespaces) {
            let _ = Command::new("umount")
                .arg(&path)
                .stderr(Stdio::null())
                .status();
            let _ = fs::remove_file(&path);
        }
        for cgroup in cgroups {
            let _ = fs::remove_dir(cgroup);
        }
        // A shim removes its socket when it exits, but not when killed.
        for socket in sockets {
            let _ = fs::remove_file(socket);
        }
        for mount_point in mounts_under(&self.dir) {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&mount_point)
                .stderr(Stdio::null())
                .status();
        }
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for PrivateContainerd {
    fn drop(&mut self) {
        if self.detached {
            return;
        }
        self.kill_and_clean_up();
    }
}

/// Why this machine cannot run containers, if it cannot.
pub fn cannot_run_containers() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next().map(str::to_owned));
    if uid.as_deref() != Some("0") {
        return Some("containers need root".into());
    }
    let missing: Vec<&str> = ["containerd", "ctr", "runc"]
        .into_iter()
        .filter(|program| !host::on_path(program))
        .collect();
    if !missing.is_empty() {
        return Some(format!(
            "{} not installed (scripts/install-deps.sh)",
            missing.join(", ")
        ));
    }
    for file in ["/usr/lib/cni/bridge", "/bin/busybox"] {
        if !Path::new(file).exists() {
            return Some(format!("{file} missing (scripts/install-deps.sh)"));
        }
    }
    None
}

/// Whether an overlay filesystem can be mounted in `scratch` (created and removed here).
fn overlay_mounts(scratch: &Path) -> bool {
    let dirs = ["lower", "upper", "work", "merged"].map(|d| scratch.join(d));
    if dirs.iter().any(|d| fs::create_dir_all(d).is_err()) {
        return false;
    }
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        dirs[0].display(),
        dirs[1].display(),
        dirs[2].display()
    );
    let mounted = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &options])
        .arg(&dirs[3])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if mounted {
        let _ = Command::new("umount").arg(&dirs[3]).status();
    }
    let _ = fs::remove_dir_all(scratch);
    mounted
}

/// The sockets of the shims running our tasks: each task's directory in the state directory
/// records its shim's address (in containerd 1.6 under /run/containerd/s, whatever the state
/// directory).
fn shim_sockets(state: &Path) -> Vec<PathBuf> {
    let children = |dir: &Path| -> Vec<PathBuf> {
        fs::read_dir(dir)
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    };
    children(&state.join("io.containerd.runtime.v2.task"))
        .iter()
        .flat_map(|namespace| children(namespace))
        .filter_map(|task| fs::read_to_string(task.join("address")).ok())
        .filter_map(|address| {
            let path = address.trim().strip_prefix("unix://")?.to_owned();
            Some(PathBuf::from(path))
        })
        .collect()
}

/// Waits (briefly) until none of `pids` exists, so what they held can be removed.
fn wait_until_gone(pids: &[u32]) {
    let started = Instant::now();
    while pids
        .iter()
        .any(|pid| Path::new(&format!("/proc/{pid}")).exists())
        && started.elapsed() < EXIT_WITHIN
    {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The cgroup directories of `pids` (other than the ones this process lives in), in every
/// mounted hierarchy, deepest first.
fn cgroups_of(pids: &[u32]) -> Vec<PathBuf> {
    let paths = |pid: &str| -> Vec<String> {
        fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.splitn(3, ':').nth(2))
            .filter(|path| *path != "/")
            .map(str::to_owned)
            .collect()
    };
    let ours = paths("self");
    let mut relative: Vec<String> = pids
        .iter()
        .flat_map(|pid| paths(&pid.to_string()))
        .filter(|path| !ours.contains(path))
        .collect();
    relative.sort();
    relative.dedup();
    let hierarchies: Vec<PathBuf> = fs::read_dir("/sys/fs/cgroup")
        .map(|dir| dir.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    let mut found: Vec<PathBuf> = hierarchies
        .iter()
        .flat_map(|root| {
            relative
                .iter()
                .map(move |path| root.join(path.trim_start_matches('/')))
        })
        .filter(|path| path.is_dir())
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    found
}

/// The network namespaces (`net:[inode]`) `pids` live in.
fn network_namespaces_of(pids: &[u32]) -> Vec<String> {
    let mut namespaces: Vec<String> = pids
        .iter()
        .filter_map(|pid| fs::read_link(format!("/proc/{pid}/ns/net")).ok())
        .map(|link| link.to_string_lossy().into_owned())
        .collect();
    namespaces.sort();
    namespaces.dedup();
    namespaces
}

/// The files under /run/netns (where the CRI plugin pins sandbox network namespaces) that
/// pin one of `namespaces`. A pinned namespace file reports the namespace's inode.
fn named_network_namespaces(namespaces: &[String]) -> Vec<PathBuf> {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(entries) = fs::read_dir("/run/netns") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            fs::metadata(path).is_ok_and(|m| namespaces.contains(&format!("net:[{}]", m.ino())))
        })
        .collect()
}

/// Whether a command line is a containerd shim talking to the containerd at `address`.
fn serves(args: &[OsString], address: &Path) -> bool {
    let is_shim = args
        .first()
        .is_some_and(|program| program.to_string_lossy().contains("containerd-shim"));
    is_shim
        && args
            .windows(2)
            .any(|w| w[0] == "-address" && Path::new(&w[1]) == address)
}

/// `roots` and every process below them, children before their parents.
fn with_descendants(roots: &[u32], table: &[host::Process]) -> Vec<u32> {
    let mut found: Vec<u32> = roots.to_vec();
    let mut next = 0;
    while next < found.len() {
        let parent = found[next];
        found.extend(
            table
                .iter()
                .filter(|p| p.ppid == parent && !found.contains(&p.pid))
                .map(|p| p.pid)
                .collect::<Vec<_>>(),
        );
        next += 1;
    }
    found.reverse();
    found
}

/// Mount points under `dir`, deepest first, from /proc/self/mountinfo.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_mount_path(field)))
        .filter(|point| point.starts_with(dir) && point != dir)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    points
}

/// mountinfo writes space, tab, newline and backslash in paths as three-digit octal escapes.
fn unescape_mount_path(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match escaped {
            Some(digits) => {
                let value = digits.iter().fold(0u32, |v, d| v * 8 + u32::from(d - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(pid: u32, ppid: u32, args: &[&str]) -> host::Process {
        host::Process {
            pid,
            ppid,
            args: args.iter().map(OsString::from).collect(),
        }
    }

    #[test]
    fn only_shims_of_our_socket_are_ours() {
        let ours = Path::new("/tmp/k/containerd.sock");
        let shim = |address| {
            [
                "/usr/bin/containerd-shim-runc-v2",
                "-namespace",
                "k8s.io",
                "-id",
                "x",
                "-address",
                address,
            ]
            .map(OsString::from)
        };
        assert!(serves(&shim("/tmp/k/containerd.sock"), ours));
        assert!(!serves(&shim("/run/containerd/containerd.sock"), ours));
        assert!(!serves(
            &["containerd", "-address", "/tmp/k/containerd.sock"].map(OsString::from),
            ours
        ));
    }

    #[test]
    fn descendants_come_before_their_ancestors() {
        let table = [
            process(10, 1, &["shim"]),
            process(11, 10, &["pause"]),
            process(12, 11, &["sleep"]),
            process(20, 1, &["other"]),
        ];
        assert_eq!(with_descendants(&[10], &table), [12, 11, 10]);
    }

    #[test]
    fn escaped_mount_paths_are_decoded() {
        assert_eq!(unescape_mount_path(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape_mount_path(r"/tmp/plain"), "/tmp/plain");
        assert_eq!(unescape_mount_path(r"/tmp/x\0"), r"/tmp/x\0");
    }
}
