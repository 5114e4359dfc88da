//! A containerd 1.6 configuration (format version 2) for a containerd that keel runs itself:
//! every path its own, the CRI plugin set up for the agent.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Where containerd keeps image layers and container root filesystems.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Snapshotter {
    /// Layers stacked with overlayfs: cheap to create, the default.
    Overlayfs,
    /// Full copies of each layer: works on any filesystem, for where overlayfs cannot mount.
    Native,
}

impl Snapshotter {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Overlayfs => "overlayfs",
            Self::Native => "native",
        }
    }
}

/// Debian's containernetworking-plugins install here (not the upstream `/opt/cni/bin`).
pub const DEBIAN_CNI_BIN_DIR: &str = "/usr/lib/cni";

/// The settings keel chooses for a containerd; [`ContainerdConfig::render`] writes the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerdConfig {
    /// Persistent data: content store, snapshots, metadata.
    pub root: PathBuf,
    /// Runtime state: sockets of shims, fifos, mounts of running containers.
    pub state: PathBuf,
    /// The gRPC socket; the ttrpc socket sits next to it.
    pub address: PathBuf,
    /// Where containerd's `opt` plugin installs things (otherwise `/opt/containerd`).
    pub opt_dir: PathBuf,
    /// The pause image every sandbox runs.
    pub sandbox_image: String,
    pub snapshotter: Snapshotter,
    pub cni_bin_dir: PathBuf,
    /// Holds the CNI network configuration the CRI plugin loads (the first, by name).
    pub cni_conf_dir: PathBuf,
}

impl ContainerdConfig {
    /// Everything under `dir`, so that this containerd shares no path with the host's.
    pub fn under(dir: &Path, sandbox_image: &str) -> Self {
        Self {
            root: dir.join("root"),
            state: dir.join("state"),
            address: dir.join("containerd.sock"),
            opt_dir: dir.join("opt"),
            sandbox_image: sandbox_image.to_owned(),
            snapshotter: Snapshotter::Overlayfs,
            cni_bin_dir: PathBuf::from(DEBIAN_CNI_BIN_DIR),
            cni_conf_dir: dir.join("cni").join("net.d"),
        }
    }

    /// The socket as a CRI endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.address.display())
    }

    /// The configuration file's text.
    pub fn render(&self) -> String {
        let cri = r#"plugins."io.containerd.grpc.v1.cri""#;
        let mut ttrpc = self.address.clone().into_os_string();
        ttrpc.push(".ttrpc");
        let mut text = String::new();
        // Writing to a String cannot fail; the results are ignored for that reason.
        let _ = writeln!(text, "# Written by keel for a containerd of its own.");
        let _ = writeln!(text, "version = 2");
        let _ = writeln!(text, "root = {}", quote(&self.root));
        let _ = writeln!(text, "state = {}", quote(&self.state));
        let _ = writeln!(text, "\n[grpc]\n  address = {}", quote(&self.address));
        let _ = writeln!(text, "\n[ttrpc]\n  address = {}", quote(Path::new(&ttrpc)));
        let _ = writeln!(
            text,
            "\n[plugins.\"io.containerd.internal.v1.opt\"]\n  path = {}",
            quote(&self.opt_dir)
        );
        let _ = writeln!(text, "\n[{cri}]");
        let _ = writeln!(
            text,
            "  sandbox_image = {}",
            quote(Path::new(&self.sandbox_image))
        );
        // Without CAP_SYS_RESOURCE the runtime cannot lower oom_score_adj below its own; unless
        // told to clamp, runc fails every sandbox ("can't get final child's PID from pipe").
        let _ = writeln!(text, "  restrict_oom_score_adj = true");
        // The agent sets no AppArmor profiles; hosts without AppArmor must not be asked for one.
        let _ = writeln!(text, "  disable_apparmor = true");
        // exec, attach and port-forward streams on loopback, on a port the kernel picks.
        let _ = writeln!(text, "  stream_server_address = \"127.0.0.1\"");
        let _ = writeln!(text, "  stream_server_port = \"0\"");
        let _ = writeln!(text, "\n[{cri}.containerd]");
        let _ = writeln!(text, "  snapshotter = \"{}\"", self.snapshotter.as_str());
        let _ = writeln!(text, "  default_runtime_name = \"runc\"");
        let _ = writeln!(text, "\n[{cri}.containerd.runtimes.runc]");
        let _ = writeln!(text, "  runtime_type = \"io.containerd.runc.v2\"");
        // runc keeps its container state in /run/containerd/runc otherwise.
        let _ = writeln!(text, "\n[{cri}.containerd.runtimes.runc.options]");
        let _ = writeln!(text, "  Root = {}", quote(&self.state.join("runc")));
        let _ = writeln!(text, "\n[{cri}.cni]");
        let _ = writeln!(text, "  bin_dir = {}", quote(&self.cni_bin_dir));
        let _ = writeln!(text, "  conf_dir = {}", quote(&self.cni_conf_dir));
        let _ = writeln!(text, "  max_conf_num = 1");
        text
    }
}

/// A TOML basic string.
fn quote(path: &Path) -> String {
    let mut quoted = String::from("\"");
    for c in path.to_string_lossy().chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(quoted, "\\u{:04X}", u32::from(c));
            }
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ContainerdConfig {
        ContainerdConfig::under(Path::new("/tmp/k"), "keel.local/pause:1")
    }

    #[test]
    fn every_path_lies_under_the_given_directory() {
        let text = config().render();
        assert!(text.contains("root = \"/tmp/k/root\"\n"), "{text}");
        assert!(text.contains("state = \"/tmp/k/state\"\n"), "{text}");
        assert!(
            text.contains("[grpc]\n  address = \"/tmp/k/containerd.sock\"\n"),
            "{text}"
        );
        assert!(
            text.contains("[ttrpc]\n  address = \"/tmp/k/containerd.sock.ttrpc\"\n"),
            "{text}"
        );
        assert!(text.contains("path = \"/tmp/k/opt\"\n"), "{text}");
        assert!(text.contains("Root = \"/tmp/k/state/runc\"\n"), "{text}");
        assert!(text.contains("conf_dir = \"/tmp/k/cni/net.d\"\n"), "{text}");
    }

    #[test]
    fn the_cri_plugin_clamps_oom_scores_and_uses_the_local_pause_image() {
        let text = config().render();
        assert!(text.contains("restrict_oom_score_adj = true"), "{text}");
        assert!(
            text.contains("sandbox_image = \"keel.local/pause:1\""),
            "{text}"
        );
        assert!(text.contains("bin_dir = \"/usr/lib/cni\""), "{text}");
        assert!(text.contains("snapshotter = \"overlayfs\""), "{text}");
    }

    #[test]
    fn the_native_snapshotter_can_be_chosen() {
        let config = ContainerdConfig {
            snapshotter: Snapshotter::Native,
            ..config()
        };
        assert!(config.render().contains("snapshotter = \"native\""));
    }

    #[test]
    fn quotes_and_backslashes_in_paths_are_escaped() {
        assert_eq!(quote(Path::new("/a\"b\\c")), r#""/a\"b\\c""#);
    }

    #[test]
    fn the_endpoint_is_a_unix_url() {
        assert_eq!(config().endpoint(), "unix:///tmp/k/containerd.sock");
    }
}
