//! TLS on the client and peer ports, from certificate files as etcd takes them: etcdctl with a
//! certificate signed by the trusted CA works; without one, with one from another CA, or over
//! plain HTTP, it is refused. The members replicate to each other over mutually authenticated TLS.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use keel_tests::cluster::{free_ports, keel_bin};
use keel_tests::etcdctl::{etcdctl, Output};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, SanType,
};

struct Ca {
    cert: String,
    key: KeyPair,
}

fn ca(name: &str) -> Result<Ca> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    let cert = params.self_signed(&key)?;
    Ok(Ca {
        cert: cert.pem(),
        key,
    })
}

/// A certificate for 127.0.0.1/localhost usable to serve and to dial, signed by `ca`.
fn leaf(ca: &Ca, cn: &str, dir: &Path, name: &str) -> Result<(PathBuf, PathBuf)> {
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, &ca.key)?;
    let mut params = CertificateParams::new(vec!["localhost".to_string()])?;
    params
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    let (c, k) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&c, cert.pem())?;
    std::fs::write(&k, key.serialize_pem())?;
    Ok((c, k))
}

struct Members(Vec<Child>);

impl Drop for Members {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn with_certs(
    ca: &Path,
    cert: &Path,
    key: &Path,
    endpoints: &[String],
    args: &[&str],
) -> Result<Output> {
    let mut all = vec![
        format!("--cacert={}", ca.display()),
        format!("--cert={}", cert.display()),
        format!("--key={}", key.display()),
    ];
    all.extend(args.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    etcdctl(endpoints, &refs, None)
}

#[test]
fn etcdctl_needs_a_certificate_from_the_trusted_ca() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let trusted = ca("keel-test-ca")?;
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&ca_file, &trusted.cert)?;
    let (member_cert, member_key) = leaf(&trusted, "member", dir.path(), "member")?;
    let (client_cert, client_key) = leaf(&trusted, "client", dir.path(), "client")?;
    let rogue = ca("someone-else")?;
    let (rogue_cert, rogue_key) = leaf(&rogue, "client", dir.path(), "rogue")?;

    let ports = free_ports(6)?;
    let peer_url = |i: usize| format!("https://127.0.0.1:{}", ports[2 * i + 1]);
    let client_url = |i: usize| format!("https://127.0.0.1:{}", ports[2 * i]);
    let initial: Vec<String> = (0..3).map(|i| format!("m{i}={}", peer_url(i))).collect();
    let mut members = Members(Vec::new());
    for i in 0..3 {
        let log = std::fs::File::create(dir.path().join(format!("m{i}.log")))?;
        members.0.push(
            Command::new(keel_bin()?)
                .args(["server", "--store-only"])
                .arg(format!("--name=m{i}"))
                .arg(format!(
                    "--data-dir={}",
                    dir.path().join(format!("m{i}")).display()
                ))
                .arg(format!("--listen-client-urls={}", client_url(i)))
                .arg(format!("--advertise-client-urls={}", client_url(i)))
                .arg(format!("--listen-peer-urls={}", peer_url(i)))
                .arg(format!("--initial-advertise-peer-urls={}", peer_url(i)))
                .arg(format!("--initial-cluster={}", initial.join(",")))
                .arg(format!("--cert-file={}", member_cert.display()))
                .arg(format!("--key-file={}", member_key.display()))
                .arg(format!("--trusted-ca-file={}", ca_file.display()))
                .arg("--client-cert-auth")
                .arg(format!("--peer-cert-file={}", member_cert.display()))
                .arg(format!("--peer-key-file={}", member_key.display()))
                .arg(format!("--peer-trusted-ca-file={}", ca_file.display()))
                .arg("--peer-client-cert-auth")
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()?,
        );
    }
    let endpoints: Vec<String> = (0..3).map(client_url).collect();

    // With the trusted CA's client certificate: works, through any member (writes reach the
    // leader over the TLS peer port).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = with_certs(
            &ca_file,
            &client_cert,
            &client_key,
            &endpoints[2..],
            &["put", "greeting", "hello"],
        )?;
        if out.status == 0 {
            break;
        }
        if Instant::now() > deadline {
            let logs: String = (0..3)
                .map(|i| {
                    std::fs::read_to_string(dir.path().join(format!("m{i}.log")))
                        .unwrap_or_default()
                })
                .collect();
            bail!("no TLS write within 60 s: {out:?}\n{logs}");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let got = with_certs(
        &ca_file,
        &client_cert,
        &client_key,
        &endpoints[..1],
        &["get", "greeting", "--print-value-only"],
    )?;
    assert_eq!(got.status, 0, "{got:?}");
    assert_eq!(got.stdout.trim(), "hello");
    let listed = with_certs(
        &ca_file,
        &client_cert,
        &client_key,
        &endpoints[..1],
        &["member", "list"],
    )?;
    assert_eq!(listed.stdout.lines().count(), 3, "{listed:?}");

    // Without a client certificate, with one from another CA, or over plain HTTP: refused.
    let no_cert = etcdctl(
        &endpoints[..1],
        &[
            &format!("--cacert={}", ca_file.display()),
            "--dial-timeout=3s",
            "get",
            "greeting",
        ],
        None,
    )?;
    assert_ne!(
        no_cert.status, 0,
        "served without a client certificate: {no_cert:?}"
    );
    let rogue_out = with_certs(
        &ca_file,
        &rogue_cert,
        &rogue_key,
        &endpoints[..1],
        &["--dial-timeout=3s", "get", "greeting"],
    )?;
    assert_ne!(
        rogue_out.status, 0,
        "served a certificate from another CA: {rogue_out:?}"
    );
    let plain: Vec<String> = endpoints[..1]
        .iter()
        .map(|e| e.replace("https://", "http://"))
        .collect();
    let plain_out = etcdctl(&plain, &["--dial-timeout=3s", "get", "greeting"], None)?;
    assert_ne!(
        plain_out.status, 0,
        "served plain HTTP on a TLS port: {plain_out:?}"
    );
    assert!(
        !no_cert.stdout.contains("hello")
            && !rogue_out.stdout.contains("hello")
            && !plain_out.stdout.contains("hello")
    );
    Ok(())
}

#[test]
fn a_control_plane_reaches_its_own_tls_member() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let trusted = ca("keel-test-ca")?;
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&ca_file, &trusted.cert)?;
    let (cert, key) = leaf(&trusted, "member", dir.path(), "member")?;
    let ports = free_ports(3)?;
    let client = format!("https://127.0.0.1:{}", ports[0]);
    let peer = format!("http://127.0.0.1:{}", ports[1]);
    let data = dir.path().join("m0");
    let log = std::fs::File::create(dir.path().join("m0.log"))?;
    let _member = Members(vec![Command::new(keel_bin()?)
        .arg("server")
        .arg(format!("--data-dir={}", data.display()))
        .arg(format!("--listen-client-urls={client}"))
        .arg(format!("--advertise-client-urls={client}"))
        .arg(format!("--listen-peer-urls={peer}"))
        .arg(format!("--initial-advertise-peer-urls={peer}"))
        .arg(format!("--secure-port={}", ports[2]))
        .arg(format!("--cert-file={}", cert.display()))
        .arg(format!("--key-file={}", key.display()))
        .arg(format!("--trusted-ca-file={}", ca_file.display()))
        .arg("--client-cert-auth")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?]);
    // The API server stores its CA and admin token through its member before it writes the
    // kubeconfig: the kubeconfig appearing means it got through TLS with client auth.
    let kubeconfig = data.join("admin.kubeconfig");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = Command::new("kubectl")
            .env("KUBECONFIG", &kubeconfig)
            .env("HOME", dir.path())
            .args(["get", "namespace", "kube-system", "-o", "name"])
            .output()?;
        if out.status.success() {
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                "namespace/kube-system"
            );
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the API never came up: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(dir.path().join("m0.log")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
