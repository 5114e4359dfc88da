//! The cluster's certificates: one CA shared by every master (kept in the store, so the first
//! master to start creates it and the others use it), a serving certificate per master for the
//! HTTPS API, and the admin's credential in `<data-dir>/admin.kubeconfig`.

use std::net::IpAddr;

use anyhow::Context;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// A CA's certificate and private key, PEM-encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ca {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A certificate and its private key, PEM-encoded.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

const CA_YEARS: i64 = 10;
const LEAF_DAYS: i64 = 365;

fn validity(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    // Tolerate small clock differences between masters and clients.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days);
}

/// A new self-signed CA: the cluster's.
pub fn new_ca() -> anyhow::Result<Ca> {
    new_ca_named("keel-ca")
}

/// A new self-signed CA with common name `name`.
pub fn new_ca_named(name: &str) -> anyhow::Result<Ca> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, CA_YEARS * 365);
    let cert = params.self_signed(&key)?;
    Ok(Ca {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn issue(ca: &Ca, params: CertificateParams) -> anyhow::Result<Issued> {
    let ca_key = KeyPair::from_pem(&ca.key_pem).context("CA key")?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key).context("CA certificate")?;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A leaf certificate named `common_name` in `organizations`, valid for `hosts` (IP addresses
/// and DNS names), for the one use `usage` says (serving or client).
fn issue_leaf(
    ca: &Ca,
    common_name: &str,
    organizations: &[&str],
    hosts: &[String],
    usage: ExtendedKeyUsagePurpose,
) -> anyhow::Result<Issued> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    for organization in organizations {
        dn.push(DnType::OrganizationName, *organization);
    }
    params.distinguished_name = dn;
    for host in hosts {
        params.subject_alt_names.push(match host.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(host.as_str().try_into()?),
        });
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![usage];
    validity(&mut params, LEAF_DAYS);
    issue(ca, params)
}

/// A serving certificate for `hosts` (IP addresses and DNS names).
pub fn issue_serving(ca: &Ca, hosts: &[String]) -> anyhow::Result<Issued> {
    issue_leaf(
        ca,
        "keel-apiserver",
        &[],
        hosts,
        ExtendedKeyUsagePurpose::ServerAuth,
    )
}

/// A client certificate for user `name` in `groups` (CN and O, as Kubernetes reads them).
pub fn issue_client(ca: &Ca, name: &str, groups: &[&str]) -> anyhow::Result<Issued> {
    issue_leaf(ca, name, groups, &[], ExtendedKeyUsagePurpose::ClientAuth)
}

/// A node agent's serving certificate, as kubelet's serving certificates are named
/// (`system:node:<name>` in `system:nodes`), valid for the node's name and `addresses`.
pub fn issue_node_serving(ca: &Ca, node: &str, addresses: &[String]) -> anyhow::Result<Issued> {
    use keel_api::auth::node::{NODES_GROUP, NODE_USER_PREFIX};
    let mut hosts = vec![node.to_owned()];
    hosts.extend(addresses.iter().filter(|a| *a != node).cloned());
    issue_leaf(
        ca,
        &format!("{NODE_USER_PREFIX}{node}"),
        &[NODES_GROUP],
        &hosts,
        ExtendedKeyUsagePurpose::ServerAuth,
    )
}

/// A kubeconfig for `server` trusting `ca_pem`, authenticating with a bearer token.
pub fn kubeconfig(server: &str, ca_pem: &str, token: &str) -> String {
    kubeconfig_for(server, ca_pem, "keel-admin", &format!("token: {token}"))
}

/// A kubeconfig for `server` trusting `ca_pem`, authenticating as `user` with a client
/// certificate (both embedded), as kubelet's own kubeconfig.
pub fn client_certificate_kubeconfig(
    server: &str,
    ca_pem: &str,
    user: &str,
    client: &Issued,
) -> String {
    let credentials = format!(
        "client-certificate-data: {}\n    client-key-data: {}",
        STANDARD.encode(&client.cert_pem),
        STANDARD.encode(&client.key_pem)
    );
    kubeconfig_for(server, ca_pem, user, &credentials)
}

fn kubeconfig_for(server: &str, ca_pem: &str, user: &str, credentials: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: keel
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: {user}
  user:
    {credentials}
contexts:
- name: {user}@keel
  context:
    cluster: keel
    user: {user}
    namespace: default
current-context: {user}@keel
",
        ca = STANDARD.encode(ca_pem),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serving_certificates_chain_to_the_ca_and_name_their_hosts() {
        let ca = new_ca().expect("ca");
        let serving =
            issue_serving(&ca, &["127.0.0.1".into(), "localhost".into()]).expect("serving");
        let (_, pem) = x509_parser::pem::parse_x509_pem(serving.cert_pem.as_bytes()).expect("pem");
        let cert = pem.parse_x509().expect("x509");
        let (_, ca_pem) = x509_parser::pem::parse_x509_pem(ca.cert_pem.as_bytes()).expect("pem");
        let ca_cert = ca_pem.parse_x509().expect("x509");
        cert.verify_signature(Some(ca_cert.public_key()))
            .expect("signed by the CA");
        let sans = cert
            .subject_alternative_name()
            .expect("parses")
            .expect("has SANs")
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>();
        assert_eq!(sans.len(), 2, "{sans:?}");
        assert!(ca_cert.is_ca());
    }

    #[test]
    fn node_serving_certificates_name_the_node_and_its_addresses() {
        let ca = new_ca().expect("ca");
        let issued = issue_node_serving(&ca, "n1", &["10.0.0.5".into()]).expect("node serving");
        let (_, pem) = x509_parser::pem::parse_x509_pem(issued.cert_pem.as_bytes()).expect("pem");
        let cert = pem.parse_x509().expect("x509");
        assert_eq!(
            cert.subject().to_string(),
            "CN=system:node:n1, O=system:nodes"
        );
        let sans = cert
            .subject_alternative_name()
            .expect("parses")
            .expect("has SANs")
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>();
        // The address as x509-parser prints an IPv4 SAN: its four bytes in hex.
        assert_eq!(sans, ["DNSName(n1)", "IPAddress(0a:00:00:05)"]);
    }

    #[test]
    fn kubeconfig_embeds_the_credentials() {
        let ca = new_ca().expect("ca");
        let cfg = kubeconfig("https://127.0.0.1:6443", &ca.cert_pem, "secret");
        assert!(cfg.contains("server: https://127.0.0.1:6443"));
        assert!(cfg.contains(&STANDARD.encode(&ca.cert_pem)));
        assert!(cfg.contains("current-context: keel-admin@keel"));
        assert!(cfg.contains("token: secret"));
    }
}
