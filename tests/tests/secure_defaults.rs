//! A `keel server` started with no security flags, tried as an attacker and a careless user
//! would: requests without credentials reach only the public information Kubernetes gives
//! anonymous users (REST and gRPC alike), and a node agent's credential reaches only its own
//! node's objects (the Node authorizer), with kube-apiserver's messages; and nothing in a
//! master's data dir is readable by anyone but its owner.

use std::process::{Command, Stdio};

use anyhow::ensure;
use keel_proto::keelapi::api_client::ApiClient;
use keel_proto::keelapi::{ListRequest, ResourceRef};
use keel_tests::cluster::keel_bin;
use keel_tests::etcdctl::etcdctl;
use keel_tests::kubectl::Kubectl;
use keel_tests::{Cluster, Flavor};
use serde_json::json;

/// What the store holds for each of the cluster's private keys.
const SEALED: &str = "keel:sealed:aes256gcm:v1:";

/// The value at `key` as the store's root client reads it with etcdctl.
fn stored(cluster: &Cluster, key: &str) -> anyhow::Result<String> {
    let member = &cluster.members[0];
    let mut args = member.etcdctl_flags();
    args.extend(["get", key, "--print-value-only"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = etcdctl(&[member.client_url()], &args, None)?;
    ensure!(out.status == 0, "etcdctl get {key}: {}", out.stderr);
    Ok(out.stdout)
}

/// An anonymous HTTPS request: the status code and body.
fn anonymous(server: &str, method: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let mut curl = Command::new("curl");
    // HTTP/1.1: over HTTP/2 curl reports the server's early refusal of a request whose body it
    // never read (RST_STREAM after the response) as a framing error.
    curl.args(["--silent", "--show-error", "--insecure", "--http1.1"])
        .args(["--max-time", "30", "-X", method]);
    if method == "POST" {
        curl.args(["-H", "Content-Type: application/json"])
            .args(["--data-binary", r#"{"metadata":{"name":"planted"}}"#]);
    }
    let out = curl
        .args(["-w", "\n%{http_code}"])
        .arg(format!("{server}{path}"))
        .stdin(Stdio::null())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    ensure!(
        out.status.success(),
        "curl {method} {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((code.trim().parse()?, body.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_credentials_reach_only_public_information() -> anyhow::Result<()> {
    let cluster = Cluster::start(Flavor::Keel, 1).await?;
    let admin = Kubectl::for_cluster(&cluster).await?;
    admin.ok(&[
        "create",
        "secret",
        "generic",
        "db",
        "--from-literal=password=hunter2",
    ]);
    let server = format!("https://127.0.0.1:{}", cluster.members[0].rest_port);

    let (code, body) = anonymous(&server, "GET", "/api/v1/namespaces/default/secrets")?;
    assert_eq!(code, 403, "{body}");
    assert!(
        !body.contains("hunter2") && !body.contains("aHVudGVyMg"),
        "{body}"
    );
    let status: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(status["reason"], "Forbidden");
    assert_eq!(
        status["message"],
        "secrets is forbidden: User \"system:anonymous\" cannot list resource \"secrets\" in API group \"\" in the namespace \"default\""
    );
    let (code, body) = anonymous(&server, "POST", "/api/v1/namespaces/default/configmaps")?;
    assert_eq!(code, 403, "{body}");
    let (code, body) = anonymous(&server, "DELETE", "/api/v1/namespaces/default/secrets/db")?;
    assert_eq!(code, 403, "{body}");
    admin.ok(&["get", "secret", "db"]);
    // What system:public-info-viewer grants, and nothing of discovery (authenticated only).
    for path in ["/version", "/healthz", "/readyz", "/livez"] {
        let (code, body) = anonymous(&server, "GET", path)?;
        assert_eq!(code, 200, "{path}: {body}");
    }
    let (code, _) = anonymous(&server, "GET", "/api")?;
    assert_eq!(code, 403);

    // The gRPC API on the client port, even with the port's client certificate: no token,
    // no secrets.
    let mut grpc = ApiClient::new(cluster.channel(0).await?);
    let refused = grpc
        .list(ListRequest {
            r#ref: Some(ResourceRef {
                version: "v1".into(),
                resource: "secrets".into(),
                namespace: "default".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect_err("anonymous gRPC list");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_port_takes_only_clients_with_the_masters_certificates() -> anyhow::Result<()> {
    let cluster = Cluster::start(Flavor::Keel, 1).await?;
    cluster.admin_token()?;
    let member = &cluster.members[0];
    let url = member.client_url();
    assert!(url.starts_with("https://"), "{url}");
    let key = "/keel/pki/admin-token";
    // No certificate, or the port taken for a plain one: nothing comes back.
    let plain = url.replace("https://", "http://");
    for (endpoint, flags) in [
        (
            &url,
            vec![format!(
                "--cacert={}",
                member.store_credentials()[0].display()
            )],
        ),
        (&url, vec!["--insecure-skip-tls-verify".to_string()]),
        (&plain, vec![]),
    ] {
        let mut args = flags.clone();
        args.extend(["--command-timeout=3s", "get", key].map(String::from));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = etcdctl(std::slice::from_ref(endpoint), &args, None)?;
        assert_ne!(out.status, 0, "{endpoint} {flags:?}: {}", out.stdout);
        assert!(out.stdout.is_empty(), "{}", out.stdout);
    }
    // A certificate from another CA is refused too.
    let stranger = Cluster::start(Flavor::Keel, 1).await?;
    stranger.admin_token()?;
    let [_, cert, key_file] = stranger.members[0].store_credentials();
    let out = etcdctl(
        std::slice::from_ref(&url),
        &[
            &format!("--cacert={}", member.store_credentials()[0].display()),
            &format!("--cert={}", cert.display()),
            &format!("--key={}", key_file.display()),
            "--command-timeout=3s",
            "get",
            key,
        ],
        None,
    )?;
    assert_ne!(out.status, 0, "{}", out.stdout);
    // The operator's client certificate in the data dir works, as etcdctl's flags say.
    let mut args = member.etcdctl_flags();
    args.extend(["get", key, "--print-value-only"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = etcdctl(std::slice::from_ref(&url), &args, None)?;
    assert_eq!(out.status, 0, "{}", out.stderr);
    // What it reads there is sealed.
    assert!(out.stdout.starts_with(SEALED), "{}", out.stdout);
    assert!(!out.stdout.contains(&cluster.admin_token()?));
    // Its files are the owner's only.
    use std::os::unix::fs::PermissionsExt;
    for file in member.store_credentials() {
        let mode = std::fs::metadata(&file)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_store_port_is_an_explicit_choice() -> anyhow::Result<()> {
    let refused = std::process::Command::new(keel_bin()?)
        .args(["server", "--listen-client-urls=http://127.0.0.1:1"])
        .arg(format!(
            "--data-dir={}",
            tempfile::tempdir()?.path().join("d").display()
        ))
        .output()?;
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("requires TLS with client certificates") && said.contains("--store-insecure"),
        "{said}"
    );
    let cluster = Cluster::start_with(Flavor::Keel, 1, &["--store-insecure".to_string()]).await?;
    let url = cluster.members[0].client_url();
    assert!(url.starts_with("http://"), "{url}");
    let out = etcdctl(
        std::slice::from_ref(&url),
        &["get", "/registry/namespaces/default"],
        None,
    )?;
    assert_eq!(out.status, 0, "{}", out.stderr);
    Ok(())
}

/// Writes node `name`'s credentials (as an operator would, with `keel node-certificate` on a
/// master) and returns kubectl acting as that node.
fn node_kubectl(cluster: &Cluster, dir: &std::path::Path, name: &str) -> anyhow::Result<Kubectl> {
    cluster.admin_token()?;
    let out = dir.join(name);
    let status = Command::new(keel_bin()?)
        .arg("node-certificate")
        .arg("--data-dir")
        .arg(&cluster.members[0].data_dir)
        .args(["--node-name", name, "--address", "127.0.0.1", "--out-dir"])
        .arg(&out)
        .status()?;
    ensure!(status.success(), "keel node-certificate failed");
    Ok(Kubectl {
        kubeconfig: out.join("kubelet.kubeconfig"),
        dir: tempfile::tempdir()?,
    })
}

fn apply(k: &Kubectl, object: serde_json::Value) -> anyhow::Result<()> {
    let file = k.dir.path().join("object.json");
    std::fs::write(&file, serde_json::to_vec(&object)?)?;
    k.ok(&["create", "-f", &file.display().to_string()]);
    Ok(())
}

fn node(name: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_credential_reaches_only_its_own_nodes_objects() -> anyhow::Result<()> {
    // No scheduler or controllers: the pods stay as written, bound by hand.
    let (cluster, admin) = keel_tests::kubectl::api_only_cluster().await?;
    let dir = tempfile::tempdir()?;
    let n1 = node_kubectl(&cluster, dir.path(), "n1")?;
    let n2 = node_kubectl(&cluster, dir.path(), "n2")?;

    // Each node registers itself; neither may create the other.
    apply(&n1, node("n1"))?;
    apply(&n2, node("n2"))?;
    let file = n1.dir.path().join("other.json");
    std::fs::write(&file, serde_json::to_vec(&node("n3"))?)?;
    let refused = n1.fails(&["create", "-f", &file.display().to_string()]);
    assert!(
        refused.contains("node \"n1\" is not allowed to modify node \"n3\""),
        "{refused}"
    );
    n1.ok(&["label", "node", "n1", "disk=ssd"]);
    let refused = n2.fails(&["label", "node", "n1", "zone=a"]);
    assert!(
        refused.contains("User \"system:node:n2\" cannot patch resource \"nodes\"")
            && refused.contains("node 'n2' cannot modify node 'n1'"),
        "{refused}"
    );

    // A secret used by a pod bound to n1 is n1's to read, not n2's.
    admin.ok(&[
        "create",
        "secret",
        "generic",
        "db",
        "--from-literal=password=hunter2",
    ]);
    apply(
        &admin,
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "app", "namespace": "default"},
            "spec": {
                "nodeName": "n1",
                "containers": [{"name": "c", "image": "busybox", "env": [
                    {"name": "P", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}
                ]}]
            }
        }),
    )?;
    let read = n1.ok(&["get", "secret", "db", "-o", "jsonpath={.data.password}"]);
    assert_eq!(read, "aHVudGVyMg==");
    let refused = n2.fails(&["get", "secret", "db"]);
    assert!(
        refused.contains("User \"system:node:n2\" cannot get resource \"secrets\"")
            && refused.contains("no relationship found between node 'n2' and this object"),
        "{refused}"
    );
    // Listing secrets is no node's business.
    let refused = n1.fails(&["get", "secrets"]);
    assert!(
        refused.contains("cannot list resource \"secrets\""),
        "{refused}"
    );

    // Pods: every node reads them; only the pod's node writes its status or deletes it.
    n2.ok(&["get", "pod", "app"]);
    let status = r#"{"status":{"phase":"Running"}}"#;
    let refused = n2.fails(&[
        "patch",
        "pod",
        "app",
        "--subresource=status",
        "--type=merge",
        "-p",
        status,
    ]);
    assert!(refused.contains("no relationship found"), "{refused}");
    n1.ok(&[
        "patch",
        "pod",
        "app",
        "--subresource=status",
        "--type=merge",
        "-p",
        status,
    ]);
    let refused = n2.fails(&["delete", "pod", "app", "--wait=false"]);
    assert!(
        refused.contains("cannot delete resource \"pods\""),
        "{refused}"
    );

    // Leases: only its own, in kube-node-lease.
    let lease = |name: &str| {
        json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": name}
        })
    };
    apply(&n1, lease("n1"))?;
    std::fs::write(&file, serde_json::to_vec(&lease("n2"))?)?;
    let refused = n1.fails(&["create", "-f", &file.display().to_string()]);
    assert!(
        refused.contains("not allowed to modify lease \"n2\""),
        "{refused}"
    );

    // Anything else falls to RBAC, which grants nodes nothing.
    let refused = n1.fails(&["create", "namespace", "mine"]);
    assert!(
        refused.contains("cannot create resource \"namespaces\""),
        "{refused}"
    );
    let refused = n1.fails(&["get", "clusterroles"]);
    assert!(refused.contains("forbidden"), "{refused}");
    Ok(())
}

/// Every entry under `dir` whose mode lets group or others in.
fn open_entries(dir: &std::path::Path) -> anyhow::Result<Vec<String>> {
    use std::os::unix::fs::PermissionsExt;
    let mut open = Vec::new();
    let meta = std::fs::symlink_metadata(dir)?;
    if meta.permissions().mode() & 0o077 != 0 && !meta.file_type().is_symlink() {
        open.push(format!(
            "{} {:o}",
            dir.display(),
            meta.permissions().mode() & 0o777
        ));
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(dir)? {
            open.extend(open_entries(&entry?.path())?);
        }
    }
    Ok(open)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_masters_data_dir_is_readable_by_its_owner_only() -> anyhow::Result<()> {
    let cluster = Cluster::start(Flavor::Keel, 1).await?;
    let admin = Kubectl::for_cluster(&cluster).await?;
    admin.ok(&["create", "secret", "generic", "db", "--from-literal=k=v"]);
    let open = open_entries(&cluster.members[0].data_dir)?;
    assert!(open.is_empty(), "open to others: {open:#?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clusters_private_keys_are_sealed_in_the_store() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(Flavor::Keel, 1).await?;
    let token = cluster.admin_token()?;
    let ca_key = stored(&cluster, "/keel/pki/ca.key")?;
    assert!(ca_key.starts_with(SEALED), "{ca_key}");
    assert!(!ca_key.contains("PRIVATE KEY"), "{ca_key}");
    let admin = stored(&cluster, "/keel/pki/admin-token")?;
    assert!(
        admin.starts_with(SEALED) && !admin.contains(&token),
        "{admin}"
    );
    let signing = stored(&cluster, "/keel/pki/service-account-signing-key")?;
    assert!(signing.starts_with(SEALED), "{signing}");
    // The CA's certificate is public.
    assert!(stored(&cluster, "/keel/pki/ca.crt")?.contains("BEGIN CERTIFICATE"));

    // A token an older version stored in the clear still works, and is sealed at start.
    let member = &cluster.members[0];
    let mut args = member.etcdctl_flags();
    args.extend(["put", "/keel/pki/admin-token", "token-from-before"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = etcdctl(&[member.client_url()], &args, None)?;
    assert_eq!(out.status, 0, "{}", out.stderr);
    std::fs::remove_file(member.kubeconfig())?;
    cluster.terminate(0)?;
    cluster
        .wait_exit(0, std::time::Duration::from_secs(30))
        .await?;
    cluster.restart(0)?;
    assert_eq!(cluster.admin_token()?, "token-from-before");
    let resealed = stored(&cluster, "/keel/pki/admin-token")?;
    assert!(
        resealed.starts_with(SEALED) && !resealed.contains("token-from-before"),
        "{resealed}"
    );

    // A master with another certificate key cannot open them, and says what it needs.
    cluster.terminate(0)?;
    cluster
        .wait_exit(0, std::time::Duration::from_secs(30))
        .await?;
    let key_file = cluster.certificate_key_file()?;
    let other = Command::new(keel_bin()?).arg("certificate-key").output()?;
    std::fs::write(&key_file, &other.stdout)?;
    cluster.restart(0)?;
    let status = cluster
        .wait_exit(0, std::time::Duration::from_secs(60))
        .await?;
    assert!(!status.success());
    let log = cluster.log_of(0);
    assert!(
        log.contains("sealed with another certificate key")
            && log.contains("--certificate-key-file"),
        "{}",
        &log[log.len().saturating_sub(2000)..]
    );
    Ok(())
}
