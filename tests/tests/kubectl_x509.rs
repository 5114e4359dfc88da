//! x509 client certificates on the REST API: a certificate signed by the cluster CA
//! authenticates as its CN with its O as group (as Kubernetes reads them), RBAC then decides;
//! a certificate from another CA is refused at the TLS handshake.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use keel_tests::{Cluster, Flavor};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair,
};

/// A client certificate for `user` in `group`, signed by the CA given as PEM.
fn client_cert(
    ca_cert: &str,
    ca_key: &str,
    user: &str,
    group: &str,
) -> anyhow::Result<(String, String)> {
    let issuer = Issuer::from_ca_cert_pem(ca_cert, KeyPair::from_pem(ca_key)?)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, user);
    dn.push(DnType::OrganizationName, group);
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(1);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn other_ca() -> anyhow::Result<(String, String)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "someone-else");
    params.distinguished_name = dn;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn kubeconfig(
    dir: &Path,
    name: &str,
    server: &str,
    ca: &str,
    cert: &str,
    key: &str,
) -> anyhow::Result<String> {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: k\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\nusers:\n- name: u\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: c\n  context:\n    cluster: k\n    user: u\ncurrent-context: c\n",
            STANDARD.encode(ca),
            STANDARD.encode(cert),
            STANDARD.encode(key)
        ),
    )?;
    Ok(path.display().to_string())
}

fn kubectl(kubeconfig: &str, home: &Path, args: &[&str]) -> (bool, String) {
    match Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", home)
        .output()
    {
        Ok(o) => (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        ),
        Err(e) => (false, e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_authenticate_as_their_subject() -> anyhow::Result<()> {
    let cluster =
        Cluster::start_with(Flavor::Keel, 1, &["--authorization-mode=RBAC".to_string()]).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cluster.members[0].kubeconfig().exists() {
        anyhow::ensure!(Instant::now() < deadline, "no kubeconfig written");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The CA as the master keeps it in its data dir (the store holds its key sealed).
    let ca_file = cluster.ca_file()?;
    let ca_cert = std::fs::read_to_string(&ca_file)?;
    let ca_key = std::fs::read_to_string(ca_file.with_file_name("ca.key"))?;
    anyhow::ensure!(
        ca_cert.contains("BEGIN CERTIFICATE"),
        "no CA in the data dir"
    );
    let server = format!("https://127.0.0.1:{}", cluster.members[0].rest_port);
    let dir = tempfile::tempdir()?;

    let (cert, key) = client_cert(&ca_cert, &ca_key, "alice", "dev")?;
    let alice = kubeconfig(dir.path(), "alice", &server, &ca_cert, &cert, &key)?;
    let (cert, key) = client_cert(&ca_cert, &ca_key, "root", "system:masters")?;
    let root = kubeconfig(dir.path(), "root", &server, &ca_cert, &cert, &key)?;
    let (other_cert, other_key) = other_ca()?;
    let (cert, key) = client_cert(&other_cert, &other_key, "mallory", "system:masters")?;
    let mallory = kubeconfig(dir.path(), "mallory", &server, &ca_cert, &cert, &key)?;

    let out = tokio::task::block_in_place(|| {
        (
            kubectl(&alice, dir.path(), &["get", "pods"]),
            kubectl(&root, dir.path(), &["get", "pods"]),
            kubectl(&mallory, dir.path(), &["get", "pods"]),
        )
    });
    let ((alice_ok, alice_out), (root_ok, root_out), (mallory_ok, mallory_out)) = out;
    assert!(!alice_ok);
    assert!(
        alice_out.contains("User \"alice\" cannot list resource \"pods\""),
        "{alice_out}"
    );
    assert!(root_ok, "{root_out}");
    assert!(
        !mallory_ok,
        "a certificate from another CA is refused: {mallory_out}"
    );
    assert!(
        !mallory_out.contains("forbidden"),
        "refused before authorization: {mallory_out}"
    );
    Ok(())
}
