//! The images keel builds locally from the host's busybox-static: a general-purpose
//! `keel.local/busybox:1` for test workloads and `keel.local/pause:1`, the sandbox image that
//! holds a pod's namespaces. Both share one layer.

use std::path::Path;

use super::oci::{OciArchive, RunConfig};
use super::tar::TarBuilder;
use crate::Error;

/// A busybox image: `sh` by default, every applet on the PATH.
pub const BUSYBOX_IMAGE: &str = "keel.local/busybox:1";
/// The pause image named as the sandbox image in the containerd configuration keel writes.
pub const PAUSE_IMAGE: &str = "keel.local/pause:1";
/// The same busybox under a second tag with a config of its own (so another image id), for
/// rolling a workload from one image to another.
pub const BUSYBOX_IMAGE_2: &str = "keel.local/busybox:2";
/// Where Debian's busybox-static installs its binary.
pub const HOST_BUSYBOX: &str = "/bin/busybox";

const PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The pause process: sleeps for ever and exits on SIGTERM or SIGINT. As PID 1 of its PID
/// namespace it would ignore signals it has no handler for, hence the trap; sleeping in the
/// background and waiting lets the trap run at once.
const PAUSE_SCRIPT: &str = "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait; done";

/// A root filesystem: `/bin/busybox`, a symlink per applet, and the few files and
/// directories a container runtime and shell expect.
pub fn rootfs_layer(busybox: &[u8], applets: &[String]) -> Result<Vec<u8>, Error> {
    let mut tar = TarBuilder::new();
    for dir in [
        "bin", "dev", "etc", "proc", "root", "sys", "usr", "usr/bin", "var",
    ] {
        tar.dir(dir, 0o755)?;
    }
    tar.dir("tmp", 0o1777)?;
    tar.file("bin/busybox", 0o755, busybox)?;
    for applet in applets {
        if applet == "busybox" || applet.is_empty() || applet.contains('/') {
            continue;
        }
        tar.symlink(&format!("bin/{applet}"), "busybox")?;
    }
    tar.file(
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )?;
    tar.file("etc/group", 0o644, b"root:x:0:\nnogroup:x:65534:\n")?;
    Ok(tar.finish())
}

/// An OCI archive holding [`BUSYBOX_IMAGE`], [`BUSYBOX_IMAGE_2`] and [`PAUSE_IMAGE`].
pub fn archive(busybox: &[u8], applets: &[String]) -> Result<Vec<u8>, Error> {
    let layer = rootfs_layer(busybox, applets)?;
    let mut archive = OciArchive::new();
    archive.add_image(
        BUSYBOX_IMAGE,
        &RunConfig {
            cmd: vec!["sh".to_owned()],
            env: vec![PATH.to_owned()],
            working_dir: "/".to_owned(),
            ..RunConfig::default()
        },
        std::slice::from_ref(&layer),
    );
    archive.add_image(
        BUSYBOX_IMAGE_2,
        &RunConfig {
            cmd: vec!["sh".to_owned()],
            env: vec![PATH.to_owned(), "KEEL_IMAGE_VERSION=2".to_owned()],
            working_dir: "/".to_owned(),
            ..RunConfig::default()
        },
        std::slice::from_ref(&layer),
    );
    archive.add_image(
        PAUSE_IMAGE,
        &RunConfig {
            entrypoint: ["/bin/sh", "-c", PAUSE_SCRIPT].map(str::to_owned).to_vec(),
            env: vec![PATH.to_owned()],
            working_dir: "/".to_owned(),
            ..RunConfig::default()
        },
        &[layer],
    );
    archive.to_tar()
}

/// Builds the archive from the host's busybox-static binary and its applet list, and writes
/// it to `path`.
pub fn write_host_archive(path: &Path) -> Result<(), Error> {
    let (busybox, applets) = host_busybox()?;
    let bytes = archive(&busybox, &applets)?;
    std::fs::write(path, bytes).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// One busybox image named `name` (shell by default), built from the host's busybox-static:
/// for serving from a registry, where the archive's fixed names would not do. Its name is in
/// its environment (`KEEL_IMAGE`), so that it is an image of its own, not another name of
/// [`BUSYBOX_IMAGE`].
pub fn host_image(name: &str) -> Result<OciArchive, Error> {
    let (busybox, applets) = host_busybox()?;
    let mut archive = OciArchive::new();
    archive.add_image(
        name,
        &RunConfig {
            cmd: vec!["sh".to_owned()],
            env: vec![PATH.to_owned(), format!("KEEL_IMAGE={name}")],
            working_dir: "/".to_owned(),
            ..RunConfig::default()
        },
        &[rootfs_layer(&busybox, &applets)?],
    );
    Ok(archive)
}

/// The host's busybox-static binary and the applets it lists.
fn host_busybox() -> Result<(Vec<u8>, Vec<String>), Error> {
    let busybox = std::fs::read(HOST_BUSYBOX).map_err(|e| {
        Error::io(
            format!("reading {HOST_BUSYBOX} (install busybox-static)"),
            e,
        )
    })?;
    let listed = std::process::Command::new(HOST_BUSYBOX)
        .arg("--list")
        .output()
        .map_err(|e| Error::io(format!("running {HOST_BUSYBOX} --list"), e))?;
    if !listed.status.success() {
        return Err(Error::Command {
            command: format!("{HOST_BUSYBOX} --list"),
            detail: listed.status.to_string(),
        });
    }
    let applets: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect();
    Ok((busybox, applets))
}

#[cfg(test)]
mod tests {
    use super::super::tar::read;
    use super::*;

    fn applets() -> Vec<String> {
        ["sh", "sleep", "nc", "busybox", "../escape"]
            .map(str::to_owned)
            .to_vec()
    }

    #[test]
    fn the_rootfs_links_each_applet_to_busybox() {
        let entries = read(&rootfs_layer(b"BUSYBOX", &applets()).expect("layer"));
        let binary = entries.iter().find(|e| e.path == "bin/busybox");
        assert_eq!(
            binary.map(|e| (e.mode, e.data.as_slice())),
            Some((0o755, &b"BUSYBOX"[..]))
        );
        let links: Vec<_> = entries
            .iter()
            .filter(|e| e.type_flag == b'2')
            .map(|e| (e.path.as_str(), e.link.as_str()))
            .collect();
        assert_eq!(
            links,
            [
                ("bin/sh", "busybox"),
                ("bin/sleep", "busybox"),
                ("bin/nc", "busybox")
            ]
        );
    }

    #[test]
    fn the_rootfs_has_a_sticky_tmp_and_a_root_user() {
        let entries = read(&rootfs_layer(b"", &[]).expect("layer"));
        let tmp = entries.iter().find(|e| e.path == "tmp").map(|e| e.mode);
        assert_eq!(tmp, Some(0o1777));
        let passwd = entries
            .iter()
            .find(|e| e.path == "etc/passwd")
            .expect("passwd");
        assert!(passwd.data.starts_with(b"root:x:0:0:"));
    }

    #[test]
    fn every_image_is_in_one_archive_and_they_share_their_layer() {
        let entries = read(&archive(b"BUSYBOX", &applets()).expect("archive"));
        let index = entries
            .iter()
            .find(|e| e.path == "index.json")
            .expect("index");
        let index: serde_json::Value = serde_json::from_slice(&index.data).expect("json");
        let names: Vec<_> = index["manifests"]
            .as_array()
            .expect("manifests")
            .iter()
            .map(|m| m["annotations"]["io.containerd.image.name"].clone())
            .collect();
        assert_eq!(names, [BUSYBOX_IMAGE, BUSYBOX_IMAGE_2, PAUSE_IMAGE]);
        let blobs = entries
            .iter()
            .filter(|e| e.path.starts_with("blobs/sha256/") && e.type_flag == b'0')
            .count();
        // One shared layer, and a config and a manifest per image.
        assert_eq!(blobs, 7);
    }
}
