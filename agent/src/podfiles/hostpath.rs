//! kubelet's hostPath type checks: a typed hostPath volume must be what its type says, and
//! the `…OrCreate` types make a missing directory (0755) or empty file (0644) first.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

/// Checks (and for the `…OrCreate` types makes) the hostPath `path` of type `kind`; an empty
/// type checks nothing.
pub fn check_type(path: &Path, kind: &str) -> Result<(), String> {
    let shown = path.display();
    let file_type = || fs::metadata(path).ok().map(|m| m.file_type());
    let is = |test: fn(&fs::FileType) -> bool| file_type().as_ref().is_some_and(test);
    let (ok, what) = match kind {
        "" => return Ok(()),
        "DirectoryOrCreate" if file_type().is_none() => {
            return make_dir(path).map_err(|e| format!("mkdir {shown}: {e}"));
        }
        "DirectoryOrCreate" | "Directory" => (is(fs::FileType::is_dir), "a directory"),
        "FileOrCreate" if file_type().is_none() => {
            return make_file(path).map_err(|e| format!("open {shown}: {e}"));
        }
        "FileOrCreate" | "File" => (is(fs::FileType::is_file), "a file"),
        "Socket" => (is(FileTypeExt::is_socket), "a socket file"),
        "CharDevice" => (is(FileTypeExt::is_char_device), "a character device"),
        "BlockDevice" => (is(FileTypeExt::is_block_device), "a block device"),
        other => return Err(format!("{other} is an invalid volume type")),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("hostPath type check failed: {shown} is not {what}"))
    }
}

fn make_dir(path: &Path) -> io::Result<()> {
    fs::create_dir_all(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
}

fn make_file(path: &Path) -> io::Result<()> {
    // Like kubelet, the parent must exist: only the file itself is made.
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o644))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn or_create_types_make_what_is_missing() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("a/b");
        assert_eq!(check_type(&dir, "DirectoryOrCreate"), Ok(()));
        assert!(dir.is_dir());
        let file = tmp.path().join("f");
        assert_eq!(check_type(&file, "FileOrCreate"), Ok(()));
        assert!(file.is_file());
        assert_eq!(
            check_type(&file, "FileOrCreate"),
            Ok(()),
            "existing is fine"
        );
    }

    #[test]
    fn a_path_of_the_wrong_kind_fails_with_kubelets_message() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let file = tmp.path().join("f");
        std::fs::write(&file, "").expect("file");
        let shown = |p: &Path| p.display().to_string();
        assert_eq!(
            check_type(&file, "Directory"),
            Err(format!(
                "hostPath type check failed: {} is not a directory",
                shown(&file)
            ))
        );
        assert_eq!(
            check_type(tmp.path(), "File"),
            Err(format!(
                "hostPath type check failed: {} is not a file",
                shown(tmp.path())
            ))
        );
        assert_eq!(
            check_type(&file, "DirectoryOrCreate"),
            Err(format!(
                "hostPath type check failed: {} is not a directory",
                shown(&file)
            ))
        );
        assert_eq!(
            check_type(&file, "Socket"),
            Err(format!(
                "hostPath type check failed: {} is not a socket file",
                shown(&file)
            ))
        );
        assert_eq!(
            check_type(&file, "BlockDevice"),
            Err(format!(
                "hostPath type check failed: {} is not a block device",
                shown(&file)
            ))
        );
        let missing = tmp.path().join("missing");
        assert_eq!(
            check_type(&missing, "Directory"),
            Err(format!(
                "hostPath type check failed: {} is not a directory",
                shown(&missing)
            ))
        );
        assert_eq!(check_type(&missing, ""), Ok(()), "untyped checks nothing");
    }

    #[test]
    fn devices_are_told_apart() {
        assert_eq!(check_type(Path::new("/dev/null"), "CharDevice"), Ok(()));
        assert!(check_type(Path::new("/dev/null"), "File").is_err());
        assert_eq!(
            check_type(Path::new("/dev/null"), "Fifo"),
            Err("Fifo is an invalid volume type".into())
        );
    }
}
