//! Kubeconfig files as kubectl reads them: the current context's cluster (server URL, CA, TLS
//! options) and user (bearer token or client certificate). File references resolve against the
//! directory of the kubeconfig that names them, and a `$KUBECONFIG`-style list of files merges
//! as kubectl merges it: the first file to define a name wins.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::error::Error;

/// What a client needs from one context of a kubeconfig, with every file it references read.
#[derive(Clone, PartialEq, Eq)]
pub struct Kubeconfig {
    /// Where this came from (the file, the files of a list joined by `:`, or `(inline)`), for
    /// messages.
    pub origin: String,
    /// The context used.
    pub context: String,
    /// The API server: `https://host:port`, or `http://host:port` for a plain port.
    pub server: String,
    /// PEM certificates the server's certificate must chain to.
    pub certificate_authority: Option<Vec<u8>>,
    /// Accept any server certificate (kubectl's `insecure-skip-tls-verify`).
    pub insecure_skip_tls_verify: bool,
    /// The name the server's certificate must carry, when not the URL's host.
    pub tls_server_name: Option<String>,
    /// The bearer token sent on every call: the inline `token`, else the contents of
    /// `tokenFile` when it was read.
    pub token: Option<String>,
    /// The `tokenFile` the token came from: tokens there rotate, so clients read it again.
    pub token_file: Option<PathBuf>,
    /// A client certificate and its key (PEM), presented during the TLS handshake.
    pub client_certificate: Option<ClientCertificate>,
    /// The context's namespace, if it names one.
    pub namespace: Option<String>,
}

/// A client certificate chain and its private key, PEM-encoded.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

/// Credentials stay out of logs.
impl fmt::Debug for Kubeconfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kubeconfig")
            .field("origin", &self.origin)
            .field("context", &self.context)
            .field("server", &self.server)
            .field(
                "certificate_authority",
                &self.certificate_authority.is_some(),
            )
            .field("insecure_skip_tls_verify", &self.insecure_skip_tls_verify)
            .field("tls_server_name", &self.tls_server_name)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_file", &self.token_file)
            .field("client_certificate", &self.client_certificate)
            .field("namespace", &self.namespace)
            .finish()
    }
}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("cert_pem", &String::from_utf8_lossy(&self.cert_pem))
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl Kubeconfig {
    /// The current context of the kubeconfig at `path`.
    pub fn read(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let raw = RawConfig::read(path)?;
        raw.resolve(&path.display().to_string())
    }

    /// The current context of a `$KUBECONFIG` list: files that do not exist are skipped, as
    /// kubectl skips them, and the others merge, the first file to define a name (or the
    /// current context) winning.
    pub fn read_all(paths: &[PathBuf]) -> Result<Self, Error> {
        let origin = paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        let mut merged: Option<RawConfig> = None;
        for path in paths.iter().filter(|p| p.exists()) {
            let raw = RawConfig::read(path)?;
            merged = Some(match merged {
                Some(m) => m.merge(raw),
                None => raw,
            });
        }
        match merged {
            Some(raw) => raw.resolve(&origin),
            None => Err(problem(&origin, "none of these files exists")),
        }
    }

    /// The current context of a kubeconfig given as text. Relative file references resolve
    /// against the working directory.
    pub fn parse(text: &str) -> Result<Self, Error> {
        const ORIGIN: &str = "(inline)";
        RawConfig::parse(text, ORIGIN, None)?.resolve(ORIGIN)
    }
}

fn problem(origin: &str, problem: impl Into<String>) -> Error {
    Error::Kubeconfig {
        origin: origin.to_string(),
        problem: problem.into(),
    }
}

/// A kubeconfig file as written. Unknown fields (extensions, preferences, …) are ignored, as
/// kubectl ignores what it does not use.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawConfig {
    current_context: Option<String>,
    // Lists may be written as `null` (kubectl does for empty ones): Option, then empty.
    clusters: Option<Vec<NamedCluster>>,
    users: Option<Vec<NamedUser>>,
    contexts: Option<Vec<NamedContext>>,
}

#[derive(Debug, Deserialize)]
struct NamedCluster {
    name: String,
    cluster: RawCluster,
}

#[derive(Debug, Deserialize)]
struct NamedUser {
    name: String,
    #[serde(default)]
    user: RawUser,
}

#[derive(Debug, Deserialize)]
struct NamedContext {
    name: String,
    context: RawContext,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawCluster {
    server: Option<String>,
    certificate_authority: Option<PathBuf>,
    certificate_authority_data: Option<String>,
    #[serde(default)]
    insecure_skip_tls_verify: bool,
    tls_server_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawUser {
    token: Option<String>,
    #[serde(rename = "tokenFile")]
    token_file: Option<PathBuf>,
    client_certificate: Option<PathBuf>,
    client_certificate_data: Option<String>,
    client_key: Option<PathBuf>,
    client_key_data: Option<String>,
    /// Only noticed, to refuse clearly: the SDK runs no credential plugins.
    exec: Option<IgnoredAny>,
    auth_provider: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
struct RawContext {
    cluster: String,
    #[serde(default)]
    user: String,
    namespace: Option<String>,
}

/// `path` as written, or relative to `dir` when it is relative and the kubeconfig came from a
/// file: kubectl resolves references against the file that makes them, not the working
/// directory.
fn absolute(path: &mut Option<PathBuf>, dir: Option<&Path>) {
    if let (Some(p), Some(dir)) = (path.as_mut(), dir) {
        if p.is_relative() {
            *p = dir.join(&*p);
        }
    }
}

impl RawConfig {
    fn read(path: &Path) -> Result<Self, Error> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| problem(&origin, format!("cannot be read: {e}")))?;
        Self::parse(
            &text,
            &origin,
            Some(path.parent().unwrap_or(Path::new("."))),
        )
    }

    fn parse(text: &str, origin: &str, dir: Option<&Path>) -> Result<Self, Error> {
        let mut raw: RawConfig = match serde_norway::from_str::<Option<RawConfig>>(text) {
            Ok(raw) => raw.unwrap_or_default(),
            Err(e) => return Err(problem(origin, format!("is not a kubeconfig: {e}"))),
        };
        for c in raw.clusters.iter_mut().flatten() {
            absolute(&mut c.cluster.certificate_authority, dir);
        }
        for u in raw.users.iter_mut().flatten() {
            absolute(&mut u.user.token_file, dir);
            absolute(&mut u.user.client_certificate, dir);
            absolute(&mut u.user.client_key, dir);
        }
        Ok(raw)
    }

    /// `self` with what `later` defines and `self` does not.
    fn merge(mut self, later: RawConfig) -> RawConfig {
        fn add<T>(into: &mut Option<Vec<T>>, from: Option<Vec<T>>, name: impl Fn(&T) -> &str) {
            let into = into.get_or_insert_with(Vec::new);
            for item in from.into_iter().flatten() {
                if !into.iter().any(|i| name(i) == name(&item)) {
                    into.push(item);
                }
            }
        }
        if self.current_context.as_deref().unwrap_or("").is_empty() {
            self.current_context = later.current_context;
        }
        add(&mut self.clusters, later.clusters, |c| &c.name);
        add(&mut self.users, later.users, |u| &u.name);
        add(&mut self.contexts, later.contexts, |c| &c.name);
        self
    }

    /// The current context, its cluster and its user, with referenced files read.
    fn resolve(self, origin: &str) -> Result<Kubeconfig, Error> {
        let fail = |p: String| problem(origin, p);
        let name = self
            .current_context
            .filter(|c| !c.is_empty())
            .ok_or_else(|| fail("sets no current-context".into()))?;
        let contexts = self.contexts.unwrap_or_default();
        let context = match contexts.iter().find(|c| c.name == name) {
            Some(c) => &c.context,
            None => {
                let known: Vec<&str> = contexts.iter().map(|c| c.name.as_str()).collect();
                return Err(fail(format!(
                    "current-context {name:?} is not among its contexts {known:?}"
                )));
            }
        };
        let cluster = self
            .clusters
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.name == context.cluster)
            .ok_or_else(|| {
                fail(format!(
                    "context {name:?} names cluster {:?}, which it does not define",
                    context.cluster
                ))
            })?;
        let user = match context.user.as_str() {
            "" => RawUser::default(),
            wanted => {
                self.users
                    .unwrap_or_default()
                    .into_iter()
                    .find(|u| u.name == wanted)
                    .ok_or_else(|| {
                        fail(format!(
                            "context {name:?} names user {wanted:?}, which it does not define"
                        ))
                    })?
                    .user
            }
        };
        let (cluster_name, cluster) = (cluster.name, cluster.cluster);
        let server = cluster
            .server
            .filter(|s| !s.is_empty())
            .ok_or_else(|| fail(format!("cluster {cluster_name:?} has no server")))?;
        if !(server.starts_with("https://") || server.starts_with("http://")) {
            return Err(fail(format!(
                "cluster {cluster_name:?} has server {server:?}, not an https:// or http:// URL"
            )));
        }
        let cluster_owner = format!("cluster {cluster_name:?}");
        let user_owner = format!("user {:?}", context.user);
        let certificate_authority = material(
            cluster.certificate_authority_data.as_deref(),
            cluster.certificate_authority.as_deref(),
            "certificate-authority",
            &cluster_owner,
        )
        .map_err(fail)?;
        let cert_pem = material(
            user.client_certificate_data.as_deref(),
            user.client_certificate.as_deref(),
            "client-certificate",
            &user_owner,
        )
        .map_err(fail)?;
        let key_pem = material(
            user.client_key_data.as_deref(),
            user.client_key.as_deref(),
            "client-key",
            &user_owner,
        )
        .map_err(fail)?;
        let client_certificate = match (cert_pem, key_pem) {
            (Some(cert_pem), Some(key_pem)) => Some(ClientCertificate { cert_pem, key_pem }),
            (None, None) => None,
            _ => {
                return Err(fail(format!(
                    "{user_owner} needs both a client certificate and its key"
                )))
            }
        };
        let (token, token_file) = match (user.token.filter(|t| !t.is_empty()), user.token_file) {
            // An inline token wins, as in kubectl.
            (Some(token), _) => (Some(token), None),
            (None, Some(file)) => {
                let token = std::fs::read_to_string(&file).map_err(|e| {
                    fail(format!(
                        "tokenFile of {user_owner}: reading {}: {e}",
                        file.display()
                    ))
                })?;
                (Some(token.trim().to_string()), Some(file))
            }
            (None, None) => (None, None),
        };
        let plugin = match (&user.exec, &user.auth_provider) {
            (Some(_), _) => Some("exec"),
            (None, Some(_)) => Some("auth-provider"),
            (None, None) => None,
        };
        if let (Some(plugin), None, None) = (plugin, &token, &client_certificate) {
            return Err(fail(format!(
                "{user_owner} authenticates with an {plugin} plugin, which keel's SDK does not \
                 run; give it a token, tokenFile or client certificate"
            )));
        }
        Ok(Kubeconfig {
            origin: origin.to_string(),
            context: name.clone(),
            server,
            certificate_authority,
            insecure_skip_tls_verify: cluster.insecure_skip_tls_verify,
            tls_server_name: cluster.tls_server_name.filter(|n| !n.is_empty()),
            token,
            token_file,
            client_certificate,
            namespace: context.namespace.clone().filter(|n| !n.is_empty()),
        })
    }
}

/// PEM given inline as base64 (`<field>-data`, which wins, as in kubectl) or as a file
/// (`<field>`).
fn material(
    data: Option<&str>,
    file: Option<&Path>,
    field: &str,
    owner: &str,
) -> Result<Option<Vec<u8>>, String> {
    if let Some(data) = data.filter(|d| !d.is_empty()) {
        // Tolerate the line breaks some tools fold long base64 into.
        let compact: String = data.split_whitespace().collect();
        return STANDARD
            .decode(compact)
            .map(Some)
            .map_err(|e| format!("{field}-data of {owner} is not base64: {e}"));
    }
    match file {
        Some(path) => std::fs::read(path)
            .map(Some)
            .map_err(|e| format!("{field} of {owner}: reading {}: {e}", path.display())),
        None => Ok(None),
    }
}

#[cfg(test)]
#[path = "kubeconfig_tests.rs"]
mod tests;
