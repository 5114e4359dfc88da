//! Runs the packet-filter tools (`nft`, `iptables-restore`, …) the proxy drives: in the
//! agent's own network namespace (the node's), or inside a named one through
//! `ip netns exec <name>`, a document fed on stdin, stdout returned, and what the tool printed
//! on stderr carried in the error.

use std::process::Stdio;

use tokio::io::AsyncWriteExt;

/// Where the tools run: directly, or behind a command that enters another namespace.
#[derive(Debug, Clone, Default)]
pub struct Tools {
    /// Arguments before the tool's name (empty: run it directly).
    prefix: Vec<String>,
}

impl Tools {
    /// The tools run inside the named network namespace.
    pub fn in_namespace(namespace: &str) -> Self {
        Tools {
            prefix: vec!["ip".into(), "netns".into(), "exec".into(), namespace.into()],
        }
    }

    /// A command for `tool`, its stdin closed, killed if dropped.
    pub fn command(&self, tool: &str) -> tokio::process::Command {
        let mut command = match self.prefix.split_first() {
            Some((first, rest)) => {
                let mut command = tokio::process::Command::new(first);
                command.args(rest).arg(tool);
                command
            }
            None => tokio::process::Command::new(tool),
        };
        command.stdin(Stdio::null()).kill_on_drop(true);
        command
    }

    /// Whether `tool --version` runs and succeeds here.
    pub async fn available(&self, tool: &str) -> bool {
        self.command(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .is_ok_and(|s| s.success())
    }

    /// Runs `tool` with `args` (and `input` on its stdin); its stdout, or what it printed on
    /// failure.
    pub async fn run(
        &self,
        tool: &str,
        args: &[&str],
        input: Option<&str>,
    ) -> Result<String, String> {
        let mut child = self
            .command(tool)
            .args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("running {tool}: {e}"))?;
        if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin
                .write_all(text.as_bytes())
                .await
                .map_err(|e| format!("writing to {tool}: {e}"))?;
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| format!("waiting for {tool}: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "{tool} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Tools;

    #[tokio::test]
    async fn output_input_and_failures_come_back_as_the_tool_gave_them() {
        let tools = Tools::default();
        assert_eq!(
            tools.run("cat", &[], Some("a document\n")).await,
            Ok("a document\n".to_string())
        );
        let failed = tools
            .run("sh", &["-c", "echo no such table >&2; exit 3"], None)
            .await
            .expect_err("exit 3");
        assert!(failed.starts_with("sh failed ("), "{failed}");
        assert!(failed.ends_with(": no such table"), "{failed}");
        let missing = tools
            .run("keel-no-such-tool", &[], None)
            .await
            .expect_err("not on PATH");
        assert!(
            missing.starts_with("running keel-no-such-tool: "),
            "{missing}"
        );
        assert!(tools.available("cat").await);
        assert!(!tools.available("keel-no-such-tool").await);
    }

    #[test]
    fn a_namespace_puts_ip_netns_exec_before_the_tool() {
        let command = Tools::in_namespace("node-a").command("nft");
        let std = command.as_std();
        assert_eq!(std.get_program(), "ip");
        let args: Vec<_> = std.get_args().collect();
        assert_eq!(args, ["netns", "exec", "node-a", "nft"]);
    }
}
