//! The certificates that guard a master's client port, where the store's keyspace (every
//! object, every Secret, the cluster's private keys) is served. Each master keeps its own
//! store CA in `<data-dir>/pki/store/`, made on its first start before the store opens: the
//! cluster CA lives in the store and so cannot guard the port that serves it. This is
//! kubeadm's separate etcd CA, one per master since no other master dials this port (members
//! talk over the peer port).
//!
//! - `ca.crt`, `ca.key`: the store CA; client certificates must chain to it.
//! - `server.crt`, `server.key`: the port's serving certificate, re-issued on every start for
//!   the hosts the port is reached at.
//! - `client.crt`, `client.key`: the client identity of this master's API server, scheduler
//!   and controller manager, and the operator's, ready for etcdctl:
//!   `etcdctl --cacert=<dir>/ca.crt --cert=<dir>/client.crt --key=<dir>/client.key`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use keel_store::config::TlsFiles;

use crate::pki::{self, Ca};
use crate::rest::write_private;

/// What a client of the port needs: the CA to trust and a certificate to present (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreClient {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl StoreClient {
    /// As the store's TLS settings for dialling the port (the CA verifies the server).
    pub fn tls_files(&self) -> TlsFiles {
        TlsFiles {
            cert: self.cert.clone(),
            key: self.key.clone(),
            trusted_ca: Some(self.ca.clone()),
            client_cert_auth: false,
        }
    }

    /// An SDK client of the API on the port at `url`, as the user `token` names.
    pub fn api_client(&self, url: &str, token: &str) -> anyhow::Result<keel_client::Client> {
        let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
        let config = keel_client::Kubeconfig {
            origin: "the store's client certificate".into(),
            context: String::new(),
            server: url.to_string(),
            certificate_authority: Some(read(&self.ca)?),
            insecure_skip_tls_verify: false,
            tls_server_name: None,
            token: Some(token.to_string()),
            token_file: None,
            client_certificate: Some(keel_client::kubeconfig::ClientCertificate {
                cert_pem: read(&self.cert)?,
                key_pem: read(&self.key)?,
            }),
            namespace: None,
        };
        Ok(keel_client::Client::from_config(&config)?)
    }
}

/// The directory of a master's store certificates.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("pki").join("store")
}

/// Makes (on the first start) or reads the store CA, issues the serving certificate for
/// `hosts` and, if missing, the client certificate. Returns the port's TLS settings (client
/// certificates required) and the files a client uses.
pub fn ensure(data_dir: &Path, hosts: &[String]) -> anyhow::Result<(TlsFiles, StoreClient)> {
    let dir = dir(data_dir);
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let path = |name: &str| dir.join(name);
    let ca = match (
        std::fs::read_to_string(path("ca.crt")),
        std::fs::read_to_string(path("ca.key")),
    ) {
        (Ok(cert_pem), Ok(key_pem)) => Ca { cert_pem, key_pem },
        _ => {
            let ca = pki::new_ca_named("keel-store-ca")?;
            write_private(&path("ca.key"), &ca.key_pem)?;
            write_private(&path("ca.crt"), &ca.cert_pem)?;
            // A new CA invalidates any client certificate left from an earlier one.
            let _ = std::fs::remove_file(path("client.crt"));
            ca
        }
    };
    let serving = pki::issue_serving(&ca, hosts)?;
    write_private(&path("server.key"), &serving.key_pem)?;
    write_private(&path("server.crt"), &serving.cert_pem)?;
    if !path("client.crt").exists() || !path("client.key").exists() {
        // etcd's superuser name, which is what the certificate's holder is.
        let client = pki::issue_client(&ca, "root", &[])?;
        write_private(&path("client.key"), &client.key_pem)?;
        write_private(&path("client.crt"), &client.cert_pem)?;
    }
    let served = TlsFiles {
        cert: path("server.crt"),
        key: path("server.key"),
        trusted_ca: Some(path("ca.crt")),
        client_cert_auth: true,
    };
    let client = StoreClient {
        ca: path("ca.crt"),
        cert: path("client.crt"),
        key: path("client.key"),
    };
    Ok((served, client))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_ca_is_made_once_and_the_serving_certificate_follows_the_hosts(
    ) -> anyhow::Result<()> {
        let data = tempfile::tempdir()?;
        let (served, client) = ensure(data.path(), &["127.0.0.1".into()])?;
        assert!(served.client_cert_auth);
        let ca = std::fs::read_to_string(&client.ca)?;
        let client_cert = std::fs::read_to_string(&client.cert)?;
        let (_, again) = ensure(data.path(), &["127.0.0.1".into(), "10.0.0.1".into()])?;
        assert_eq!(std::fs::read_to_string(&again.ca)?, ca, "the CA is kept");
        assert_eq!(
            std::fs::read_to_string(&again.cert)?,
            client_cert,
            "so is the client"
        );
        let (_, pem) = x509_parser::pem::parse_x509_pem(std::fs::read(&served.cert)?.as_slice())?;
        let cert = pem.parse_x509()?;
        let sans = cert
            .subject_alternative_name()?
            .map(|s| s.value.general_names.len())
            .unwrap_or(0);
        assert_eq!(sans, 2, "re-issued for both hosts");
        use std::os::unix::fs::PermissionsExt;
        for file in ["ca.key", "server.key", "client.key"] {
            let mode = std::fs::metadata(dir(data.path()).join(file))?
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
        Ok(())
    }
}
