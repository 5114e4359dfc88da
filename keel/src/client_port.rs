//! How a control plane's client port is secured and reached: its URLs (given, or the defaults
//! for its security), TLS with client certificates from the master's store CA unless the
//! operator chose otherwise, and what this master presents when it dials its own port.

use std::path::Path;

use anyhow::bail;
use keel_store::config::TlsFiles;

/// `host:port` of `scheme://host:port/`.
pub fn host_port(url: &str) -> &str {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    rest.trim_end_matches('/')
}

/// The host of `scheme://host:port` (without brackets for IPv6).
fn url_host(url: &str) -> Option<String> {
    let hostport = host_port(url);
    let host = match hostport.strip_prefix('[') {
        Some(v6) => v6.split_once(']')?.0,
        None => hostport.rsplit_once(':').map_or(hostport, |(h, _)| h),
    };
    (!host.is_empty()).then(|| host.to_string())
}

/// How a control plane's client port is secured, and how this master's own API server,
/// scheduler and controller manager reach it.
#[derive(Debug, Clone)]
pub struct ClientPort {
    /// The port's TLS (None: in the clear).
    pub served: Option<TlsFiles>,
    /// What this process presents when it dials the port (None: in the clear).
    pub dialer: Option<crate::store_pki::StoreClient>,
}

/// What the command line asks of the client port.
pub struct Wanted<'a> {
    /// The operator's TLS files (`--cert-file` and the rest), if given.
    pub given: Option<TlsFiles>,
    /// A control plane without `--store-insecure`: the port must require client certificates.
    pub secured: bool,
    pub data_dir: &'a Path,
    pub listen: &'a [String],
    pub advertise: &'a [String],
}

/// The client port's listen and advertise URLs and its security: for a control plane, TLS
/// with client certificates unless --store-insecure.
pub fn resolve(wanted: Wanted) -> anyhow::Result<(Vec<String>, Vec<String>, ClientPort)> {
    let given = wanted.given;
    let automatic = wanted.secured && given.is_none();
    let default_url = if automatic || given.is_some() {
        "https://127.0.0.1:2379"
    } else {
        "http://127.0.0.1:2379"
    };
    let or_default = |urls: &[String], fallback: &[String]| {
        if !urls.is_empty() {
            urls.to_vec()
        } else if !fallback.is_empty() {
            fallback.to_vec()
        } else {
            vec![default_url.to_string()]
        }
    };
    let listen = or_default(wanted.listen, &[]);
    let advertise = or_default(wanted.advertise, &listen);
    let all = listen.iter().chain(&advertise);
    if wanted.secured {
        if let Some(plain) = all.clone().find(|u| u.starts_with("http://")) {
            bail!(
                "client URL {plain}: a control plane's client port serves the whole keyspace (every Secret, the cluster's keys) and requires TLS with client certificates; use https:// URLs (keel issues the certificates into {}) or --store-insecure",
                crate::store_pki::dir(wanted.data_dir).display()
            );
        }
        if given.as_ref().is_some_and(|t| !t.client_cert_auth) {
            bail!("a control plane's client port requires client certificates: add --client-cert-auth and --trusted-ca-file, or --store-insecure");
        }
    }
    if given.is_none() && !automatic {
        if let Some(tls) = all.clone().find(|u| u.starts_with("https://")) {
            bail!("client URL {tls} asks for TLS: give --cert-file and --key-file");
        }
    }
    let port = if automatic {
        let mut hosts = vec!["127.0.0.1".to_string(), "localhost".to_string()];
        for host in all.filter_map(|u| url_host(u)) {
            let unspecified = host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_unspecified());
            if !unspecified && !hosts.contains(&host) {
                hosts.push(host);
            }
        }
        let (served, dialer) = crate::store_pki::ensure(wanted.data_dir, &hosts)?;
        ClientPort {
            served: Some(served),
            dialer: Some(dialer),
        }
    } else {
        // With the operator's files, this master dials its own port with the port's
        // certificate, as etcd deployments do.
        let dialer = given.as_ref().map(|files| crate::store_pki::StoreClient {
            ca: files
                .trusted_ca
                .clone()
                .unwrap_or_else(|| files.cert.clone()),
            cert: files.cert.clone(),
            key: files.key.clone(),
        });
        ClientPort {
            served: given,
            dialer,
        }
    };
    Ok((listen, advertise, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_come_out_of_urls() {
        assert_eq!(
            url_host("https://10.0.0.1:2379").as_deref(),
            Some("10.0.0.1")
        );
        assert_eq!(url_host("https://[::1]:2379/").as_deref(), Some("::1"));
        assert_eq!(
            url_host("https://m1.example:2379").as_deref(),
            Some("m1.example")
        );
        assert_eq!(host_port("http://127.0.0.1:2380/"), "127.0.0.1:2380");
    }
}
