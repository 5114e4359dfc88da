//! How a command that talks to masters finds them, as kubectl finds its API server: flags to
//! flatten into any such subcommand, and the SDK client they lead to.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use keel_client::{Client, Kubeconfig};

/// The kubeconfig `keel server` writes with its default `--data-dir`.
const DEFAULT_KUBECONFIG: &str = "./keel-data/admin.kubeconfig";
/// The client port of `keel server` with its defaults.
const DEFAULT_SERVER: &str = "http://127.0.0.1:2379";

/// Where the masters are.
///
/// The first of these that is given decides:
/// 1. `--kubeconfig FILE`: its current context's server (the masters' HTTPS port), CA and
///    credentials;
/// 2. `--server URL...`: the masters' HTTPS ports (`https://`, with `--certificate-authority`
///    and `--token` or a client certificate), or the plain client ports of masters started
///    with `--store-insecure`;
/// 3. `$KUBECONFIG` (files separated by `:`, merged as kubectl merges them);
/// 4. `./keel-data/admin.kubeconfig`, if it exists (a master started here with its defaults);
/// 5. `http://127.0.0.1:2379`.
///
/// An explicit `--server` comes before `$KUBECONFIG` so that a flag on the command line is
/// never silently overridden by a variable left in the environment.
#[derive(Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct MasterArgs {
    /// Kubeconfig naming the masters' API server and credentials [default: $KUBECONFIG, then
    /// ./keel-data/admin.kubeconfig if it exists].
    #[arg(long, value_name = "FILE", conflicts_with = "server")]
    pub kubeconfig: Option<PathBuf>,
    /// URLs of the masters, every one tried in turn when one fails: their HTTPS ports
    /// (https://host:6443, with --certificate-authority and --token or a client certificate),
    /// or the plain client ports of masters started with --store-insecure (http://host:2379).
    #[arg(long, value_name = "URL", value_delimiter = ',', num_args = 1..)]
    pub server: Vec<String>,
    /// A bearer token sent to the `--server` URLs (a kubeconfig carries its own).
    #[arg(long, value_name = "TOKEN", requires = "server")]
    pub token: Option<String>,
    /// The CA (PEM file) `https://` `--server` URLs must chain to: the cluster CA for the
    /// masters' HTTPS ports (`<data-dir>/pki/ca.crt`), a master's store CA for its client port
    /// (`<data-dir>/pki/store/ca.crt`).
    #[arg(long, value_name = "FILE", requires = "server")]
    pub certificate_authority: Option<PathBuf>,
    /// A client certificate (PEM file) presented to `https://` `--server` URLs; a master's
    /// client port asks for one (`<data-dir>/pki/store/client.crt`).
    #[arg(long, value_name = "FILE", requires_all = ["server", "client_key"])]
    pub client_certificate: Option<PathBuf>,
    /// The key of `--client-certificate`.
    #[arg(long, value_name = "FILE", requires = "client_certificate")]
    pub client_key: Option<PathBuf>,
}

/// What [`MasterArgs`] and the environment resolve to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Masters {
    /// One kubeconfig file, which must exist.
    Kubeconfig(PathBuf),
    /// A `$KUBECONFIG` list, merged; files that do not exist are skipped.
    KubeconfigList(Vec<PathBuf>),
    Servers(Vec<String>),
}

impl MasterArgs {
    /// A client for the masters, chosen in the order [`MasterArgs`] documents. Call it within
    /// a tokio runtime: connections are made there, on first use.
    pub fn connect(&self) -> anyhow::Result<Client> {
        Ok(self.connect_with_ca()?.0)
    }

    /// These flags as given, for a child process that finds the same masters the same way.
    pub fn forwarded(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(kubeconfig) = &self.kubeconfig {
            args.push(format!("--kubeconfig={}", kubeconfig.display()));
        }
        if !self.server.is_empty() {
            args.push(format!("--server={}", self.server.join(",")));
        }
        if let Some(token) = &self.token {
            args.push(format!("--token={token}"));
        }
        for (flag, file) in [
            ("certificate-authority", &self.certificate_authority),
            ("client-certificate", &self.client_certificate),
            ("client-key", &self.client_key),
        ] {
            if let Some(file) = file {
                args.push(format!("--{flag}={}", file.display()));
            }
        }
        args
    }

    /// [`connect`](MasterArgs::connect), also returning the certificate authority (PEM) the
    /// kubeconfig trusts for the masters, if the masters were found through one.
    pub fn connect_with_ca(&self) -> anyhow::Result<(Client, Option<String>)> {
        let env = std::env::var_os("KUBECONFIG");
        let default_exists = Path::new(DEFAULT_KUBECONFIG).exists();
        let config = match self.masters(env.as_deref(), default_exists) {
            Masters::Kubeconfig(path) => Kubeconfig::read(path)?,
            Masters::KubeconfigList(paths) => Kubeconfig::read_all(&paths)?,
            Masters::Servers(urls) => return self.connect_servers(&urls),
        };
        let ca = config
            .certificate_authority
            .as_deref()
            .map(|pem| String::from_utf8_lossy(pem).into_owned());
        Ok((Client::from_config(&config)?, ca))
    }

    /// A client for `--server` URLs, with the token, CA and client certificate flags.
    fn connect_servers(&self, urls: &[String]) -> anyhow::Result<(Client, Option<String>)> {
        let read = |path: &Path| {
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))
        };
        let ca = self
            .certificate_authority
            .as_deref()
            .map(read)
            .transpose()?;
        let client_certificate = match (&self.client_certificate, &self.client_key) {
            (Some(cert), Some(key)) => Some(keel_client::kubeconfig::ClientCertificate {
                cert_pem: read(cert)?,
                key_pem: read(key)?,
            }),
            _ => None,
        };
        let config = Kubeconfig {
            origin: "--server".into(),
            context: String::new(),
            server: urls.first().cloned().unwrap_or_default(),
            certificate_authority: ca.clone(),
            insecure_skip_tls_verify: false,
            tls_server_name: None,
            token: self.token.clone(),
            token_file: None,
            client_certificate,
            namespace: None,
        };
        let ca = ca.map(|pem| String::from_utf8_lossy(&pem).into_owned());
        Ok((Client::from_config_for(&config, urls)?, ca))
    }

    /// The masters, given `$KUBECONFIG` and whether the default kubeconfig exists.
    fn masters(&self, kubeconfig_env: Option<&OsStr>, default_exists: bool) -> Masters {
        if let Some(path) = &self.kubeconfig {
            return Masters::Kubeconfig(path.clone());
        }
        if !self.server.is_empty() {
            return Masters::Servers(self.server.clone());
        }
        // kubectl treats an empty $KUBECONFIG as unset.
        if let Some(list) = kubeconfig_env.filter(|v| !v.is_empty()) {
            return Masters::KubeconfigList(
                std::env::split_paths(list)
                    .filter(|p| !p.as_os_str().is_empty())
                    .collect(),
            );
        }
        if default_exists {
            return Masters::Kubeconfig(PathBuf::from(DEFAULT_KUBECONFIG));
        }
        Masters::Servers(vec![DEFAULT_SERVER.to_string()])
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser, Debug)]
    struct Command {
        #[command(flatten)]
        masters: MasterArgs,
    }

    #[test]
    fn a_token_goes_with_server_urls_only() {
        let args = parse(&["--server", "http://a:2379", "--token", "t0k"]).expect("parses");
        assert_eq!(args.token.as_deref(), Some("t0k"));
        assert!(
            parse(&["--token", "t0k"]).is_err(),
            "a token needs --server"
        );
    }

    fn parse(args: &[&str]) -> Result<MasterArgs, clap::Error> {
        Command::try_parse_from(std::iter::once("cmd").chain(args.iter().copied()))
            .map(|c| c.masters)
    }

    fn args(args: &[&str]) -> MasterArgs {
        parse(args).expect("parses")
    }

    #[test]
    fn servers_are_given_repeated_or_comma_separated() {
        let want = vec!["http://a:2379".to_string(), "http://b:2379".to_string()];
        assert_eq!(
            args(&["--server", "http://a:2379,http://b:2379"]).server,
            want
        );
        assert_eq!(
            args(&["--server", "http://a:2379", "--server", "http://b:2379"]).server,
            want
        );
    }

    #[test]
    fn a_kubeconfig_and_servers_together_are_refused() {
        let error =
            parse(&["--kubeconfig", "k", "--server", "http://a:2379"]).expect_err("contradictory");
        assert_eq!(error.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn an_explicit_kubeconfig_comes_first() {
        let masters = args(&["--kubeconfig", "/etc/k"]).masters(Some(OsStr::new("/env/k")), true);
        assert_eq!(masters, Masters::Kubeconfig(PathBuf::from("/etc/k")));
    }

    #[test]
    fn explicit_servers_come_before_the_environment() {
        let masters =
            args(&["--server", "http://a:2379"]).masters(Some(OsStr::new("/env/k")), true);
        assert_eq!(masters, Masters::Servers(vec!["http://a:2379".into()]));
    }

    #[test]
    fn kubeconfig_in_the_environment_is_a_list_of_files() {
        let masters = args(&[]).masters(Some(OsStr::new("/a/k:/b/k")), true);
        assert_eq!(
            masters,
            Masters::KubeconfigList(vec![PathBuf::from("/a/k"), PathBuf::from("/b/k")])
        );
    }

    #[test]
    fn without_flags_or_environment_the_local_master_is_used() {
        assert_eq!(
            args(&[]).masters(Some(OsStr::new("")), true),
            Masters::Kubeconfig(PathBuf::from(DEFAULT_KUBECONFIG))
        );
        assert_eq!(
            args(&[]).masters(None, false),
            Masters::Servers(vec![DEFAULT_SERVER.to_string()])
        );
    }

    #[test]
    fn a_kubeconfig_that_cannot_be_read_is_named_in_the_error() {
        let error = args(&["--kubeconfig", "/nonexistent/kubeconfig"])
            .connect()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            error.starts_with("kubeconfig /nonexistent/kubeconfig: cannot be read"),
            "{error}"
        );
    }
}
