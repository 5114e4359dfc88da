//! kubelet's atomic writer: a volume's files live in a timestamped directory that the `..data`
//! symlink points to, and the names a container sees are symlinks through `..data`. An
//! update writes a whole new timestamped directory and swaps `..data` with one rename, so a
//! reader sees either every old file or every new one, never half an update.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path};

/// The symlink to the current timestamped directory.
const DATA_DIR: &str = "..data";
/// Where the next `..data` link is made before it replaces the current one.
const DATA_DIR_TMP: &str = "..data_tmp";

/// One file of a volume: its contents and permission bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProjection {
    pub data: Vec<u8>,
    pub mode: u32,
}

/// A volume's files by path relative to the volume.
pub type Payload = BTreeMap<String, FileProjection>;

/// Kubernetes' checks of a payload path: relative, no `..` element, not starting with `..`
/// (the writer's own names).
pub fn validate_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("invalid path: must not be empty".into());
    }
    if Path::new(path).is_absolute() {
        return Err(format!("invalid path: must be relative path: {path}"));
    }
    if Path::new(path)
        .components()
        .any(|c| matches!(c, Component::ParentDir))
    {
        return Err(format!("invalid path: must not contain '..': {path}"));
    }
    if path.starts_with("..") {
        return Err(format!("invalid path: must not start with '..': {path}"));
    }
    Ok(())
}

fn first_component(path: &str) -> String {
    Path::new(path)
        .components()
        .find_map(|c| match c {
            Component::Normal(name) => Some(name.to_string_lossy().into_owned()),
            _ => None,
        })
        .unwrap_or_default()
}

/// Whether the timestamped directory `dir` holds exactly `payload`.
fn holds(dir: &Path, payload: &Payload) -> bool {
    let mut on_disk = BTreeSet::new();
    if list_files(dir, Path::new(""), &mut on_disk).is_err() {
        return false;
    }
    let wanted: BTreeSet<String> = payload
        .keys()
        .map(|p| Path::new(p).components().collect::<std::path::PathBuf>())
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    on_disk == wanted
        && payload.iter().all(|(path, file)| {
            let full = dir.join(path);
            let same_mode = fs::metadata(&full)
                .is_ok_and(|m| m.permissions().mode() & 0o7777 == file.mode & 0o7777);
            same_mode && fs::read(&full).is_ok_and(|data| data == file.data)
        })
}

fn list_files(root: &Path, rel: &Path, out: &mut BTreeSet<String>) -> io::Result<()> {
    for entry in fs::read_dir(root.join(rel))? {
        let entry = entry?;
        let path = rel.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            list_files(root, &path, out)?;
        } else {
            out.insert(path.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

fn new_timestamped_dir(dir: &Path) -> io::Result<String> {
    let stamp = chrono::Utc::now().format("..%Y_%m_%d_%H_%M_%S");
    for attempt in 0u32..1000 {
        let nanos = chrono::Utc::now().timestamp_subsec_nanos();
        let name = format!("{stamp}.{nanos}{attempt}");
        match fs::create_dir(dir.join(&name)) {
            Ok(()) => {
                fs::set_permissions(dir.join(&name), fs::Permissions::from_mode(0o755))?;
                return Ok(name);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "no free name for a timestamped directory",
    ))
}

fn io_error(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// Makes `dir` hold exactly `payload`, atomically. Returns whether anything changed (nothing
/// does when the current files already are the payload).
pub fn write_atomically(dir: &Path, payload: &Payload) -> io::Result<bool> {
    for path in payload.keys() {
        validate_path(path).map_err(io_error)?;
    }
    fs::create_dir_all(dir)?;
    let old = fs::read_link(dir.join(DATA_DIR))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|name| !name.contains('/') && name.starts_with(".."));
    let visible: BTreeSet<String> = payload.keys().map(|p| first_component(p)).collect();
    let unchanged = old
        .as_ref()
        .is_some_and(|old| holds(&dir.join(old), payload));
    let current = if unchanged {
        old.unwrap_or_default()
    } else {
        let fresh = new_timestamped_dir(dir)?;
        let written = write_files(&dir.join(&fresh), payload).and_then(|()| {
            let tmp = dir.join(DATA_DIR_TMP);
            match fs::remove_file(&tmp) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            symlink(&fresh, &tmp)?;
            fs::rename(&tmp, dir.join(DATA_DIR))
        });
        if let Err(e) = written {
            let _ = fs::remove_dir_all(dir.join(&fresh));
            return Err(e);
        }
        fresh
    };
    // The names a container sees, made after `..data` holds them so none dangles.
    for name in &visible {
        let link = dir.join(name);
        if fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(DATA_DIR).join(name), &link)?;
        }
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("..") {
            // The previous timestamped directory, and any a failed write left behind.
            if name != DATA_DIR && name != current && entry.file_type()?.is_dir() {
                fs::remove_dir_all(entry.path())?;
            }
            continue;
        }
        if !visible.contains(&name) && entry.file_type()?.is_symlink() {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(!unchanged)
}

fn write_files(root: &Path, payload: &Payload) -> io::Result<()> {
    for (path, file) in payload {
        let full = root.join(path);
        if let Some(parent) = full.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&full, &file.data)?;
        fs::set_permissions(&full, fs::Permissions::from_mode(file.mode & 0o7777))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(data: &str, mode: u32) -> FileProjection {
        FileProjection {
            data: data.as_bytes().to_vec(),
            mode,
        }
    }

    fn payload(entries: &[(&str, &str)]) -> Payload {
        entries
            .iter()
            .map(|(p, d)| ((*p).to_owned(), file(d, 0o644)))
            .collect()
    }

    fn timestamped_dirs(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("read dir")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("..") && n != DATA_DIR)
            .collect();
        names.sort();
        names
    }

    #[test]
    fn files_are_reached_through_symlinks_into_the_data_dir() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("vol");
        let changed = write_atomically(&dir, &payload(&[("a", "1"), ("sub/b", "2")]));
        assert!(changed.expect("written"));
        assert_eq!(fs::read_to_string(dir.join("a")).expect("a"), "1");
        assert_eq!(fs::read_to_string(dir.join("sub/b")).expect("b"), "2");
        assert_eq!(
            fs::read_link(dir.join("a")).expect("link"),
            Path::new("..data/a")
        );
        assert_eq!(
            fs::read_link(dir.join("sub")).expect("link"),
            Path::new("..data/sub")
        );
        let data = fs::read_link(dir.join(DATA_DIR)).expect("..data");
        assert_eq!(
            timestamped_dirs(&dir),
            [data.to_string_lossy().into_owned()]
        );
        let mode = fs::metadata(dir.join("a"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
    }

    #[test]
    fn writing_the_same_payload_again_changes_nothing() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("vol");
        let p = payload(&[("a", "1")]);
        write_atomically(&dir, &p).expect("first");
        let before = fs::read_link(dir.join(DATA_DIR)).expect("..data");
        assert!(!write_atomically(&dir, &p).expect("second"));
        assert_eq!(fs::read_link(dir.join(DATA_DIR)).expect("..data"), before);
    }

    #[test]
    fn an_update_swaps_the_data_dir_and_removes_the_old_one_and_dropped_names() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("vol");
        write_atomically(&dir, &payload(&[("a", "1"), ("gone", "x")])).expect("first");
        let first = fs::read_link(dir.join(DATA_DIR)).expect("..data");
        assert!(write_atomically(&dir, &payload(&[("a", "2"), ("new", "y")])).expect("second"));
        let second = fs::read_link(dir.join(DATA_DIR)).expect("..data");
        assert_ne!(first, second);
        assert_eq!(fs::read_to_string(dir.join("a")).expect("a"), "2");
        assert_eq!(fs::read_to_string(dir.join("new")).expect("new"), "y");
        assert!(
            fs::symlink_metadata(dir.join("gone")).is_err(),
            "dropped name removed"
        );
        assert_eq!(
            timestamped_dirs(&dir),
            [second.to_string_lossy().into_owned()]
        );
    }

    #[test]
    fn a_changed_mode_alone_is_an_update() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("vol");
        write_atomically(&dir, &payload(&[("a", "1")])).expect("first");
        let p: Payload = [("a".to_owned(), file("1", 0o400))].into();
        assert!(write_atomically(&dir, &p).expect("second"));
        let mode = fs::metadata(dir.join("a"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o400);
    }

    #[test]
    fn a_reader_holding_the_old_data_dir_keeps_a_whole_old_view() {
        // A reader that resolved `..data` before the swap reads the old files through its
        // open directory, and one resolving after reads only new ones.
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("vol");
        write_atomically(&dir, &payload(&[("a", "1"), ("b", "1")])).expect("first");
        let old = fs::File::open(dir.join("a")).expect("open old a");
        write_atomically(&dir, &payload(&[("a", "2"), ("b", "2")])).expect("second");
        let old_a = io::read_to_string(old).expect("old a");
        assert_eq!(old_a, "1");
        assert_eq!(fs::read_to_string(dir.join("a")).expect("a"), "2");
        assert_eq!(fs::read_to_string(dir.join("b")).expect("b"), "2");
    }

    #[test]
    fn escaping_paths_are_refused() {
        let tmp = tempfile::tempdir().expect("temp dir");
        for bad in ["/etc/passwd", "../x", "a/../../x", "..data"] {
            let result = write_atomically(tmp.path(), &payload(&[(bad, "x")]));
            assert!(result.is_err(), "{bad}");
        }
        assert_eq!(
            validate_path("a/../b"),
            Err("invalid path: must not contain '..': a/../b".into())
        );
    }
}
