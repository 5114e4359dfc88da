//! A minimal ustar writer: directories, regular files and symlinks, owned by root, with a fixed
//! modification time so that the same content always gives the same bytes (and digests).

use crate::Error;

const BLOCK: usize = 512;

/// Builds a tar archive in memory.
#[derive(Debug, Default)]
pub struct TarBuilder {
    bytes: Vec<u8>,
}

enum Kind<'a> {
    File(&'a [u8]),
    Dir,
    Symlink(&'a str),
}

impl TarBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a directory; `path` has no trailing slash.
    pub fn dir(&mut self, path: &str, mode: u32) -> Result<(), Error> {
        self.entry(path, mode, Kind::Dir)
    }

    /// Adds a regular file.
    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> Result<(), Error> {
        self.entry(path, mode, Kind::File(data))
    }

    /// Adds a symbolic link at `path` pointing to `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<(), Error> {
        self.entry(path, 0o777, Kind::Symlink(target))
    }

    /// The archive, closed by the two zero blocks tar readers expect.
    pub fn finish(mut self) -> Vec<u8> {
        self.bytes.resize(self.bytes.len() + 2 * BLOCK, 0);
        self.bytes
    }

    fn entry(&mut self, path: &str, mode: u32, kind: Kind<'_>) -> Result<(), Error> {
        let mut header = [0u8; BLOCK];
        let (prefix, name) = split_path(path)?;
        let (size, type_flag, link) = match kind {
            Kind::File(data) => (data.len(), b'0', ""),
            Kind::Dir => (0, b'5', ""),
            Kind::Symlink(target) => (0, b'2', target),
        };
        if link.len() > 100 {
            return Err(Error::ImageArchive {
                reason: format!("symlink target {link:?} is longer than 100 bytes"),
            });
        }
        put(&mut header[0..100], name.as_bytes());
        octal(&mut header[100..108], u64::from(mode));
        octal(&mut header[108..116], 0);
        octal(&mut header[116..124], 0);
        octal(&mut header[124..136], size as u64);
        octal(&mut header[136..148], 0);
        header[156] = type_flag;
        put(&mut header[157..257], link.as_bytes());
        put(&mut header[257..263], b"ustar\0");
        put(&mut header[263..265], b"00");
        put(&mut header[265..297], b"root");
        put(&mut header[297..329], b"root");
        put(&mut header[345..500], prefix.as_bytes());
        // The checksum is computed with its own field read as spaces.
        header[148..156].fill(b' ');
        let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
        put(&mut header[148..156], format!("{sum:06o}\0 ").as_bytes());
        self.bytes.extend_from_slice(&header);
        if let Kind::File(data) = kind {
            self.bytes.extend_from_slice(data);
            let padding = (BLOCK - data.len() % BLOCK) % BLOCK;
            self.bytes.resize(self.bytes.len() + padding, 0);
        }
        Ok(())
    }
}

/// ustar holds a path as a name of up to 100 bytes and a prefix of up to 155, split at a slash.
fn split_path(path: &str) -> Result<(&str, &str), Error> {
    if path.len() <= 100 {
        return Ok(("", path));
    }
    let fits = path
        .char_indices()
        .filter(|&(i, c)| c == '/' && i <= 155 && path.len() - i - 1 <= 100)
        .map(|(i, _)| i)
        .next();
    match fits {
        Some(i) => Ok((&path[..i], &path[i + 1..])),
        None => Err(Error::ImageArchive {
            reason: format!("path {path:?} does not fit a ustar header"),
        }),
    }
}

fn put(field: &mut [u8], value: &[u8]) {
    field[..value.len()].copy_from_slice(value);
}

/// Writes `value` as zero-padded octal, NUL-terminated, filling the field.
fn octal(field: &mut [u8], value: u64) {
    let text = format!("{value:0width$o}\0", width = field.len() - 1);
    put(field, text.as_bytes());
}

/// One entry read back from an archive, for tests that check what was written.
#[cfg(test)]
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub path: String,
    pub type_flag: u8,
    pub mode: u32,
    pub link: String,
    pub data: Vec<u8>,
}

/// Reads an archive written by [`TarBuilder`], checking every header's checksum.
#[cfg(test)]
pub(crate) fn read(bytes: &[u8]) -> Vec<Entry> {
    fn text(field: &[u8]) -> String {
        let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
        String::from_utf8(field[..end].to_vec()).expect("utf-8 field")
    }
    fn number(field: &[u8]) -> u64 {
        u64::from_str_radix(text(field).trim(), 8).expect("octal field")
    }
    let mut entries = Vec::new();
    let mut at = 0;
    while at + BLOCK <= bytes.len() && bytes[at..at + BLOCK].iter().any(|&b| b != 0) {
        let header = &bytes[at..at + BLOCK];
        let mut blanked = header.to_vec();
        blanked[148..156].fill(b' ');
        let sum: u64 = blanked.iter().map(|&b| u64::from(b)).sum();
        assert_eq!(sum, number(&header[148..156]), "checksum of entry at {at}");
        let prefix = text(&header[345..500]);
        let name = text(&header[0..100]);
        let path = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let size = usize::try_from(number(&header[124..136])).expect("size");
        at += BLOCK;
        entries.push(Entry {
            path,
            type_flag: header[156],
            mode: u32::try_from(number(&header[100..108])).expect("mode"),
            link: text(&header[157..257]),
            data: bytes[at..at + size].to_vec(),
        });
        at += size.div_ceil(BLOCK) * BLOCK;
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_read_back_as_written() {
        let mut tar = TarBuilder::new();
        tar.dir("bin", 0o755).expect("dir");
        tar.file("bin/busybox", 0o755, b"\x7fELF...").expect("file");
        tar.symlink("bin/sh", "busybox").expect("symlink");
        let bytes = tar.finish();

        assert_eq!(bytes.len() % BLOCK, 0);
        let entries = read(&bytes);
        let summary: Vec<_> = entries
            .iter()
            .map(|e| (e.path.as_str(), e.type_flag, e.mode, e.link.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                ("bin", b'5', 0o755, ""),
                ("bin/busybox", b'0', 0o755, ""),
                ("bin/sh", b'2', 0o777, "busybox"),
            ]
        );
        assert_eq!(entries[1].data, b"\x7fELF...");
    }

    #[test]
    fn file_data_is_padded_to_whole_blocks() {
        let mut tar = TarBuilder::new();
        tar.file("a", 0o644, &[7u8; 513]).expect("file");
        tar.file("b", 0o644, b"x").expect("file");
        let entries = read(&tar.finish());
        assert_eq!(entries[0].data.len(), 513);
        assert_eq!(entries[1].path, "b");
        assert_eq!(entries[1].data, b"x");
    }

    #[test]
    fn long_paths_use_the_prefix_field() {
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(90));
        let mut tar = TarBuilder::new();
        tar.file(&long, 0o644, b"").expect("file");
        assert_eq!(read(&tar.finish())[0].path, long);
    }

    #[test]
    fn a_path_that_cannot_be_split_is_refused() {
        let mut tar = TarBuilder::new();
        let error = tar.file(&"x".repeat(101), 0o644, b"").err();
        assert!(
            matches!(error, Some(Error::ImageArchive { .. })),
            "{error:?}"
        );
    }

    #[test]
    fn the_same_content_gives_the_same_bytes() {
        let build = || {
            let mut tar = TarBuilder::new();
            tar.file("etc/passwd", 0o644, b"root:x:0:0::/root:/bin/sh\n")
                .expect("file");
            tar.finish()
        };
        assert_eq!(build(), build());
    }
}
