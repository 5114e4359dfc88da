//! Applies a ruleset with the `nft` command, one document per call (`nft -f -`): nftables
//! applies a document as one transaction, so a failed sync changes nothing.

use std::path::PathBuf;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;

/// Runs `nft` in the agent's own network namespace (the node's), or through a command that
/// enters another (`ip netns exec <name> nft`).
#[derive(Debug, Clone)]
pub struct Nft {
    program: PathBuf,
    /// Arguments before nft's own.
    prefix: Vec<String>,
}

impl Default for Nft {
    fn default() -> Self {
        Nft {
            program: PathBuf::from("nft"),
            prefix: Vec::new(),
        }
    }
}

impl Nft {
    /// `nft` run inside the named network namespace.
    pub fn in_namespace(namespace: &str) -> Self {
        Nft {
            program: PathBuf::from("ip"),
            prefix: vec![
                "netns".into(),
                "exec".into(),
                namespace.into(),
                "nft".into(),
            ],
        }
    }

    fn command(&self) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.program);
        command.args(&self.prefix);
        command
    }

    /// Whether `nft` can be run here.
    pub async fn available(&self) -> bool {
        self.command()
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .is_ok_and(|s| s.success())
    }

    /// Applies `document` in one transaction; the error carries what nft printed.
    pub async fn apply(&self, document: &str) -> Result<(), String> {
        let mut child = self
            .command()
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("running {}: {e}", self.program.display()))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(document.as_bytes())
                .await
                .map_err(|e| format!("writing the ruleset to nft: {e}"))?;
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| format!("waiting for nft: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "nft refused the ruleset ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}
