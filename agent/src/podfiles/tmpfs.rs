//! Memory-backed directories: a tmpfs mounted on a volume's directory, found again through
//! the kernel's mount table, and unmounted before a pod's directory is removed.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The mount points at or under `dir`, deepest first (so they can be unmounted in order).
pub fn mounts_under(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let table = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mut found: Vec<PathBuf> = table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape)
        .map(PathBuf::from)
        .filter(|point| point.starts_with(dir))
        .collect();
    found.sort_by(|a, b| {
        let depth = |p: &PathBuf| p.components().count();
        depth(b).cmp(&depth(a)).then_with(|| a.cmp(b))
    });
    found.dedup();
    Ok(found)
}

/// mountinfo writes space, tab, newline and backslash as octal escapes.
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 4);
        match code.and_then(|c| u8::from_str_radix(c, 8).ok()) {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[at + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

pub fn is_mount_point(dir: &Path) -> io::Result<bool> {
    Ok(mounts_under(dir)?.iter().any(|p| p == dir))
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{program} {}: {}: {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    ))
}

/// Mounts a tmpfs of at most `size_bytes` (no limit of its own when `None`) on `dir`, unless
/// one is mounted there already.
pub fn mount(dir: &Path, size_bytes: Option<i64>) -> Result<(), String> {
    if is_mount_point(dir).map_err(|e| format!("reading the mount table: {e}"))? {
        return Ok(());
    }
    let options = match size_bytes {
        Some(size) => format!("size={size}"),
        None => String::from("defaults"),
    };
    let target = dir.display().to_string();
    run("mount", &["-t", "tmpfs", "-o", &options, "tmpfs", &target])
}

/// Unmounts everything mounted at or under `dir`.
pub fn unmount_all(dir: &Path) -> Result<(), String> {
    let points = mounts_under(dir).map_err(|e| format!("reading the mount table: {e}"))?;
    for point in points {
        run("umount", &[&point.display().to_string()])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape("/odd\\x"), "/odd\\x");
    }

    #[test]
    fn nothing_is_mounted_under_a_fresh_directory() {
        let tmp = tempfile::tempdir().expect("temp dir");
        assert_eq!(
            mounts_under(tmp.path()).expect("mountinfo"),
            Vec::<PathBuf>::new()
        );
        assert!(!is_mount_point(tmp.path()).expect("mountinfo"));
    }
}
