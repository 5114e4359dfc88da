//! The Kubernetes REST endpoint of a master: the cluster's CA, admin token and ServiceAccount
//! signing key (created by the first master to start and kept in the store, the private ones
//! sealed with the certificate key, so every master serves the same CA and accepts the same
//! admin), this master's serving certificate, `<data-dir>/admin.kubeconfig`, and the HTTPS
//! listener serving the REST router.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use keel_api::auth::UserInfo;
use keel_api::storage::etcd::EtcdStorage;
use keel_api::storage::{Change, Expect, Storage, StorageError, WriteOp};
use keel_api::ApiServer;
use rand::Rng;

use crate::pki::{self, Ca};
use crate::sealing::{CertificateKey, Opened};

const CA_CERT: &[u8] = b"/keel/pki/ca.crt";
const CA_KEY: &[u8] = b"/keel/pki/ca.key";
const ADMIN_TOKEN: &[u8] = b"/keel/pki/admin-token";
/// The P-256 key (PKCS#8 DER) ServiceAccount tokens are signed with. (Clusters from before
/// ES256 also hold `/keel/pki/service-account-key`, an HMAC secret no longer used.)
const SA_SIGNING_KEY: &[u8] = b"/keel/pki/service-account-signing-key";
const ADMIN_USER: &str = "kubernetes-admin";
/// The identity the masters present to node agents (kube-apiserver's
/// `--kubelet-client-certificate`): agents serve `system:masters`.
const KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";

/// Where the REST endpoint listens and what the kubeconfig says.
#[derive(Debug, Clone)]
pub struct RestConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// The certificate key sealing the cluster's private keys (default: the data dir's).
    pub certificate_key_file: Option<PathBuf>,
    /// More names and addresses the serving certificate holds: those pods reach the masters
    /// by (the `kubernetes` Service's address and DNS names, the advertised address).
    pub extra_hosts: Vec<String>,
}

/// The cluster's shared secrets: the CA, the admin token, the ServiceAccount signing key.
struct Shared {
    ca: Ca,
    admin_token: String,
    sa_key: Vec<u8>,
}

/// 32 random bytes as 64 hexadecimal digits: the admin token, the masters' own components'
/// tokens, a certificate key.
pub(crate) fn random_hex() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One group of secrets created together (a CA's certificate and key must never be split).
type Group = Vec<(&'static [u8], Vec<u8>)>;

/// Whether the store keeps `key` sealed: everything but the CA's certificate, which is public.
fn is_private(key: &[u8]) -> bool {
    key != CA_CERT
}

/// The groups of shared secrets, each made fresh for a first master.
fn fresh(group: usize) -> anyhow::Result<Group> {
    Ok(match group {
        0 => {
            let ca = pki::new_ca()?;
            vec![
                (CA_CERT, ca.cert_pem.into_bytes()),
                (CA_KEY, ca.key_pem.into_bytes()),
            ]
        }
        1 => vec![(ADMIN_TOKEN, random_hex().into_bytes())],
        _ => vec![(
            SA_SIGNING_KEY,
            keel_api::auth::service_accounts::TokenSigner::generate_key()
                .map_err(|e| anyhow::anyhow!(e))?,
        )],
    })
}

/// Rounds in a row a secret group must read torn before a master refuses to start.
const TORN_ROUNDS: usize = 3;

/// A value read for [`shared`]: opened if private, and whether it still needs sealing (it
/// was stored in the clear by a version before sealing), with the revision it was read at.
struct Read {
    value: Vec<u8>,
    unsealed_at: Option<i64>,
}

/// Reads the cluster's CA, admin token and signing key, creating whichever is missing first
/// (a first master creates them all; a master of an older cluster adds what is new, and seals
/// what an older version left in the clear). Private values are sealed with `sealing`.
async fn shared(storage: &EtcdStorage, sealing: &CertificateKey) -> anyhow::Result<Shared> {
    let groups: [&[&[u8]]; 3] = [&[CA_CERT, CA_KEY], &[ADMIN_TOKEN], &[SA_SIGNING_KEY]];
    // Keys are read one at a time, so a group another master creates in the meantime (in one
    // transaction) can look torn for a round; only one that stays torn is.
    let mut torn_rounds = 0;
    loop {
        let mut values: Vec<Vec<Option<Read>>> = Vec::new();
        let mut unavailable = false;
        for keys in groups {
            let mut group = Vec::new();
            for key in keys {
                match storage.get(key).await {
                    Ok(Some(stored)) if is_private(key) => {
                        group.push(Some(match sealing.open(key, &stored.value)? {
                            Opened::Sealed(value) => Read {
                                value,
                                unsealed_at: None,
                            },
                            Opened::Plain(value) => Read {
                                value,
                                unsealed_at: Some(stored.mod_revision),
                            },
                        }));
                    }
                    Ok(stored) => group.push(stored.map(|s| Read {
                        value: s.value,
                        unsealed_at: None,
                    })),
                    Err(_) => unavailable = true,
                }
            }
            values.push(group);
        }
        if unavailable {
            // The store is not serving yet.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            continue;
        }
        if let Some(torn) = values
            .iter()
            .position(|g| g.iter().any(Option::is_some) && g.iter().any(Option::is_none))
        {
            torn_rounds += 1;
            if torn_rounds < TORN_ROUNDS {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                continue;
            }
            anyhow::bail!(
                "the store holds part of a secret group ({:?}): restore the missing key from a backup",
                groups[torn]
                    .iter()
                    .map(|k| String::from_utf8_lossy(k))
                    .collect::<Vec<_>>()
            );
        }
        torn_rounds = 0;
        let missing: Vec<usize> = values
            .iter()
            .enumerate()
            .filter(|(_, g)| g.iter().any(Option::is_none))
            .map(|(i, _)| i)
            .collect();
        if missing.is_empty() {
            seal_in_place(storage, sealing, &groups, &values).await?;
            let mut v = values.into_iter().flatten().flatten().map(|r| r.value);
            let mut next = || v.next().unwrap_or_default();
            return Ok(Shared {
                ca: Ca {
                    cert_pem: String::from_utf8(next())?,
                    key_pem: String::from_utf8(next())?,
                },
                admin_token: String::from_utf8(next())?,
                sa_key: next(),
            });
        }
        for group in missing {
            let mut ops = Vec::new();
            for (key, value) in fresh(group)? {
                let value = if is_private(key) {
                    sealing.seal(key, &value)?
                } else {
                    value
                };
                ops.push(WriteOp {
                    key: key.to_vec(),
                    change: Change::Put(value),
                    expect: Expect::Absent,
                });
            }
            // Another master may win the race; either way the next round reads the winner's.
            match storage.write(ops, vec![]).await {
                Ok(_) | Err(StorageError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Seals every private value an older version stored in the clear, each only if it is still
/// the value read (another master may be doing the same).
async fn seal_in_place(
    storage: &EtcdStorage,
    sealing: &CertificateKey,
    groups: &[&[&[u8]]],
    values: &[Vec<Option<Read>>],
) -> anyhow::Result<()> {
    let keys = groups.iter().flat_map(|g| g.iter());
    for (key, read) in keys.zip(values.iter().flatten()) {
        let Some(Read {
            value,
            unsealed_at: Some(revision),
        }) = read
        else {
            continue;
        };
        let op = WriteOp {
            key: key.to_vec(),
            change: Change::Put(sealing.seal(key, value)?),
            expect: Expect::Revision(*revision),
        };
        match storage.write(vec![op], vec![]).await {
            Ok(_) => {
                tracing::info!(key = %String::from_utf8_lossy(key), "sealed a key an older version stored in the clear")
            }
            Err(StorageError::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

pub(crate) fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Where a master keeps the cluster CA in its data dir, for `keel node-certificate`: the
/// certificate and its key, readable by the data dir's owner only (the key is in the store
/// under the same dir already).
pub fn ca_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = data_dir.join("pki");
    (dir.join("ca.crt"), dir.join("ca.key"))
}

fn write_ca(data_dir: &Path, ca: &Ca) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let (cert, key) = ca_paths(data_dir);
    if let Some(dir) = cert.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    write_private(&cert, &ca.cert_pem)?;
    write_private(&key, &ca.key_pem)
}

/// Issues node `node`'s credentials from the CA in a master's data dir and writes them as
/// kubelet keeps its own: the agent's serving certificate (`<out>/kubelet.crt`,
/// `<out>/kubelet.key`), the CA (`<out>/ca.crt`) for `--client-ca-file`, and
/// `<out>/kubelet.kubeconfig` reaching `server` (default: the server of the master's admin
/// kubeconfig) with a client certificate for `system:node:<node>` in `system:nodes`, which the
/// Node authorizer limits to this node's objects.
pub fn write_node_certificate(
    data_dir: &Path,
    node: &str,
    addresses: &[String],
    server: Option<&str>,
    out: &Path,
) -> anyhow::Result<()> {
    let (cert, key) = ca_paths(data_dir);
    let read = |path: &Path| {
        std::fs::read_to_string(path).with_context(|| {
            format!(
                "{} (a master writes it when it first serves the API)",
                path.display()
            )
        })
    };
    let ca = Ca {
        cert_pem: read(&cert)?,
        key_pem: read(&key)?,
    };
    let server = match server {
        Some(url) => url.to_string(),
        None => {
            keel_client::Kubeconfig::read(kubeconfig_path(data_dir))
                .context("the admin kubeconfig (a master writes it when it first serves the API)")?
                .server
        }
    };
    let user = format!("{}{node}", keel_api::auth::node::NODE_USER_PREFIX);
    let client = pki::issue_client(&ca, &user, &[keel_api::auth::node::NODES_GROUP])?;
    let issued = pki::issue_node_serving(&ca, node, addresses)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    write_private(&out.join("kubelet.crt"), &issued.cert_pem)?;
    write_private(&out.join("kubelet.key"), &issued.key_pem)?;
    write_private(&out.join("ca.crt"), &ca.cert_pem)?;
    write_private(
        &out.join("kubelet.kubeconfig"),
        &pki::client_certificate_kubeconfig(&server, &ca.cert_pem, &user, &client),
    )
}

/// The path of the admin kubeconfig in a data dir.
pub fn kubeconfig_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.kubeconfig")
}

/// Prepares this master's endpoint: shared secrets, serving certificate, admin kubeconfig, and
/// the admin token registered with the API server. Returns the TLS configuration to serve and
/// the cluster's CA certificate (PEM).
pub async fn prepare(
    api: &ApiServer<EtcdStorage>,
    config: &RestConfig,
) -> anyhow::Result<(Arc<rustls::ServerConfig>, String)> {
    let sealing = CertificateKey::load(&config.data_dir, config.certificate_key_file.as_deref())?;
    if sealing.created {
        tracing::info!(
            path = %sealing.path.display(),
            "made the certificate key sealing the cluster's private keys in the store; every other master needs a copy (--certificate-key-file)"
        );
    }
    let shared = shared(api.storage(), &sealing).await?;
    let ip = config.listen.ip();
    let host = if ip.is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        ip.to_string()
    };
    let mut hosts = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    for extra in std::iter::once(&host).chain(&config.extra_hosts) {
        if !hosts.contains(extra) {
            hosts.push(extra.clone());
        }
    }
    let serving = pki::issue_serving(&shared.ca, &hosts)?;
    let kubelet_client = pki::issue_client(&shared.ca, KUBELET_CLIENT_USER, &["system:masters"])?;
    api.set_kubelet_client(&keel_api::kubelet::KubeletClientConfig {
        ca_pem: shared.ca.cert_pem.clone(),
        cert_pem: kubelet_client.cert_pem,
        key_pem: kubelet_client.key_pem,
    })
    .map_err(|e| anyhow::anyhow!("the kubelet client certificate: {e}"))?;
    write_ca(&config.data_dir, &shared.ca)?;
    api.set_service_account_key(&shared.sa_key)
        .map_err(|e| anyhow::anyhow!(e))?;
    api.add_token(
        &shared.admin_token,
        UserInfo {
            name: ADMIN_USER.to_string(),
            uid: String::new(),
            groups: vec![
                "system:masters".to_string(),
                keel_api::auth::authn::AUTHENTICATED.to_string(),
            ],
        },
    );
    let server = format!("https://{host}:{}", config.listen.port());
    write_private(
        &kubeconfig_path(&config.data_dir),
        &pki::kubeconfig(&server, &shared.ca.cert_pem, &shared.admin_token),
    )?;
    let tls = crate::https::tls_config(&shared.ca, &serving)?;
    Ok((tls, shared.ca.cert_pem))
}
