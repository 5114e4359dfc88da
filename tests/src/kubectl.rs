//! The real kubectl, run against a keel cluster with only the admin kubeconfig the cluster
//! wrote, in a home directory of its own (so no user configuration or cache leaks in).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::Cluster;

pub struct Kubectl {
    pub kubeconfig: PathBuf,
    pub dir: tempfile::TempDir,
}

/// What one kubectl run printed.
pub struct Out {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Kubectl {
    /// kubectl for `cluster`, once its first member has written the admin kubeconfig.
    pub async fn for_cluster(cluster: &Cluster) -> anyhow::Result<Kubectl> {
        let path = cluster.members[0].kubeconfig();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !Path::new(&path).exists() {
            anyhow::ensure!(Instant::now() < deadline, "no kubeconfig written");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Kubectl {
            kubeconfig: path,
            dir: tempfile::tempdir()?,
        })
    }

    /// The command, ready to run, with the environment every run gets.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("kubectl");
        c.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.dir.path())
            .stdin(Stdio::null());
        c
    }

    pub fn run_with(&self, mut command: Command) -> Out {
        match command.output() {
            Ok(o) => Out {
                ok: o.status.success(),
                stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            },
            Err(e) => Out {
                ok: false,
                stdout: String::new(),
                stderr: format!("running kubectl: {e}"),
            },
        }
    }

    pub fn run(&self, args: &[&str]) -> Out {
        self.run_with(self.command(args))
    }

    /// Runs and requires success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.ok,
            "kubectl {args:?} failed:\n{}\n{}",
            out.stdout, out.stderr
        );
        out.stdout
    }

    /// Runs and requires failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.ok, "kubectl {args:?} succeeded:\n{}", out.stdout);
        out.stderr
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&a)).unwrap_or(Value::Null)
    }

    /// Writes `text` to a file in the private directory; returns its path.
    pub fn manifest(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap_or_default();
        path.display().to_string()
    }
}
