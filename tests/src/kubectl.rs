//! The real kubectl, run against a keel cluster with only the admin kubeconfig the cluster
//! wrote, in a home directory of its own (so no user configuration or cache leaks in); and,
//! for what kubectl cannot show (a response's status code and Status body), raw requests with
//! the same credentials through curl.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{Cluster, Flavor};

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

/// One master serving only the API (no scheduler, no controllers: the caller's tests need
/// neither), and kubectl for it.
pub async fn api_only_cluster() -> anyhow::Result<(Cluster, Kubectl)> {
    let cluster = Cluster::start_with(
        Flavor::Keel,
        1,
        &[
            "--scheduler=false".to_string(),
            "--controller-manager=false".to_string(),
        ],
    )
    .await?;
    let k = Kubectl::for_cluster(&cluster).await?;
    Ok((cluster, k))
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

    /// kubectl with the kubeconfig at `path` (one `keel up` wrote, say).
    pub fn for_kubeconfig(path: &Path) -> anyhow::Result<Kubectl> {
        Ok(Kubectl {
            kubeconfig: path.to_owned(),
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

    /// One field of the kubeconfig (`server`, `token`, …), as keel writes it: one per line.
    fn kubeconfig_field(&self, field: &str) -> anyhow::Result<String> {
        let text = std::fs::read_to_string(&self.kubeconfig)?;
        let prefix = format!("{field}: ");
        text.lines()
            .find_map(|l| l.trim().strip_prefix(&prefix).map(str::to_string))
            .ok_or_else(|| anyhow::anyhow!("no {field} in the kubeconfig"))
    }

    /// POSTs `body` as JSON to `path` on the API server with the admin's credentials,
    /// verifying the server against the kubeconfig's CA. Returns the status code and the
    /// JSON body.
    pub fn post_json(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        use base64::Engine;
        let server = self.kubeconfig_field("server")?;
        let token = self.kubeconfig_field("token")?;
        let ca = base64::engine::general_purpose::STANDARD
            .decode(self.kubeconfig_field("certificate-authority-data")?)?;
        let ca_path = self.dir.path().join("ca.crt");
        std::fs::write(&ca_path, ca)?;
        let body_path = self.dir.path().join("request.json");
        std::fs::write(&body_path, serde_json::to_vec(body)?)?;
        let out = Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "30", "-X", "POST"])
            .arg("--cacert")
            .arg(&ca_path)
            .args(["-H", "Content-Type: application/json"])
            .arg("-H")
            .arg(format!("Authorization: Bearer {token}"))
            .arg("--data-binary")
            .arg(format!("@{}", body_path.display()))
            .args(["-w", "\n%{http_code}"])
            .arg(format!("{server}{path}"))
            .stdin(Stdio::null())
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "curl failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let (json, code) = stdout
            .rsplit_once('\n')
            .ok_or_else(|| anyhow::anyhow!("no status code in {stdout:?}"))?;
        Ok((code.trim().parse()?, serde_json::from_str(json)?))
    }

    /// Writes `text` to a file in the private directory; returns its path.
    pub fn manifest(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap_or_default();
        path.display().to_string()
    }
}
