//! The record of what `keel up` made, written to the cluster's directory after every step
//! (atomically), so that `keel down` undoes exactly that, also after an `up` that failed or
//! was interrupted half-way.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// A process started for the cluster, found again by pid.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Started {
    pub name: String,
    pub pid: u32,
}

/// Everything made so far.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    pub name: String,
    /// The cluster's directory; every started process names a path inside it on its command
    /// line, which is how a pid is known to still be ours.
    pub dir: PathBuf,
    /// The host bridge, once made.
    pub bridge: Option<String>,
    /// Network namespaces made, by name.
    pub netns: Vec<String>,
    /// The host's ends of the veth pairs made.
    pub veths: Vec<String>,
    pub masters: Vec<Started>,
    /// Each node's containerd, with its directory.
    pub containerds: Vec<(PathBuf, Started)>,
    pub agents: Vec<Started>,
}

impl Record {
    /// Reads the record in `dir`.
    pub fn read(dir: &Path) -> anyhow::Result<Self> {
        let path = super::plan::Plan::record_path(dir);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Writes the record to its directory, replacing the last one in one rename.
    pub fn write(&self) -> anyhow::Result<()> {
        let path = super::plan::Plan::record_path(&self.dir);
        let temporary = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self).context("encoding the cluster record")?;
        std::fs::write(&temporary, text)
            .with_context(|| format!("writing {}", temporary.display()))?;
        std::fs::rename(&temporary, &path)
            .with_context(|| format!("renaming {} into place", temporary.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_written() {
        let dir = tempfile::tempdir().expect("dir");
        let record = Record {
            name: "keel".into(),
            dir: dir.path().to_owned(),
            bridge: Some("keel-br".into()),
            netns: vec!["keel-agent-1".into()],
            veths: vec!["keel-a1".into()],
            masters: vec![Started {
                name: "master-1".into(),
                pid: 42,
            }],
            containerds: vec![(
                dir.path().join("agent-1"),
                Started {
                    name: "agent-1".into(),
                    pid: 43,
                },
            )],
            agents: vec![],
        };
        record.write().expect("write");
        assert_eq!(Record::read(dir.path()).expect("read"), record);
    }
}
