//! `keel server`: etcd's member flags, mapped onto the store's configuration.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use keel_store::config::{ClusterState, NodeConfig, TlsFiles};

use crate::client_port::ClientPort;
use tokio_util::sync::CancellationToken;

#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// Human-readable name for this member.
    #[arg(long, default_value = "default")]
    name: String,
    /// Path to the data directory.
    #[arg(long, default_value = "./keel-data")]
    data_dir: PathBuf,
    /// URLs to listen on for client traffic [default: https://127.0.0.1:2379 for a control
    /// plane, whose client port requires TLS with client certificates (see --store-insecure);
    /// http://127.0.0.1:2379 with --store-only or --store-insecure].
    #[arg(long, value_delimiter = ',')]
    listen_client_urls: Vec<String>,
    /// Client URLs advertised to the rest of the cluster [default: as --listen-client-urls].
    #[arg(long, value_delimiter = ',')]
    advertise_client_urls: Vec<String>,
    /// URLs to listen on for peer traffic.
    #[arg(long, default_value = "http://127.0.0.1:2380", value_delimiter = ',')]
    listen_peer_urls: Vec<String>,
    /// This member's peer URLs, advertised to the rest of the cluster.
    #[arg(long, default_value = "http://127.0.0.1:2380", value_delimiter = ',')]
    initial_advertise_peer_urls: Vec<String>,
    /// Initial cluster configuration for bootstrapping: name=peer-url,...
    #[arg(long)]
    initial_cluster: Option<String>,
    /// Initial cluster state: new or existing.
    #[arg(long, default_value = "new")]
    initial_cluster_state: String,
    /// Initial cluster token, distinguishing clusters during bootstrap.
    #[arg(long, default_value = "keel-cluster")]
    initial_cluster_token: String,
    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, default_value_t = 100)]
    heartbeat_interval: u64,
    /// Time (in milliseconds) a follower waits without hearing from the leader before it
    /// campaigns (spread over one more heartbeat interval). Shorter than etcd's 1000 ms default:
    /// a dead leader is replaced within about 0.6 s on a LAN.
    #[arg(long, default_value_t = 500)]
    election_timeout: u64,
    /// Number of committed entries that triggers a snapshot, after which the log before it is
    /// purged (keeping a tail for slow followers). etcd's flag; a lower default than etcd's
    /// 100000 because keel snapshots are cheap to build.
    #[arg(long, default_value_t = 20_000)]
    snapshot_count: u64,
    /// Bytes the keyspace (keys, history, leases) may take before writes needing space are
    /// refused with a NOSPACE alarm; 0 means the default (8 GiB).
    #[arg(long, default_value_t = 0)]
    quota_backend_bytes: u64,
    /// Automatic compaction: `periodic` (keep --auto-compaction-retention worth of time) or
    /// `revision` (keep that many revisions).
    #[arg(long, default_value = "periodic")]
    auto_compaction_mode: String,
    /// History automatic compaction keeps: a duration such as `1h`/`30m`/`10s` or a number of
    /// hours (periodic), or a revision count (revision). 0 turns it off.
    #[arg(long, default_value = "0")]
    auto_compaction_retention: String,
    /// How a leader confirms it leads before a linearizable read: `read-index` (a heartbeat round
    /// to a quorum, batched across concurrent reads) or `lease` (no round trip while the leader
    /// lease holds; assumes bounded clock drift).
    #[arg(long, default_value = "read-index")]
    linearizable_read: String,
    /// URLs to serve Prometheus `/metrics` and `/health` on (plain HTTP).
    #[arg(long, value_delimiter = ',')]
    listen_metrics_urls: Vec<String>,
    /// Certificate of the client port (PEM); with it, clients must use https:// URLs.
    #[arg(long)]
    cert_file: Option<PathBuf>,
    /// Key of the client port's certificate (PEM).
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// CA that client certificates must chain to.
    #[arg(long)]
    trusted_ca_file: Option<PathBuf>,
    /// Refuse clients without a certificate signed by --trusted-ca-file.
    #[arg(long)]
    client_cert_auth: bool,
    /// Certificate of the peer port (PEM); also this member's identity when it dials peers.
    #[arg(long)]
    peer_cert_file: Option<PathBuf>,
    /// Key of the peer certificate (PEM).
    #[arg(long)]
    peer_key_file: Option<PathBuf>,
    /// CA that peers' certificates must chain to.
    #[arg(long)]
    peer_trusted_ca_file: Option<PathBuf>,
    /// Refuse peers without a certificate signed by --peer-trusted-ca-file.
    #[arg(long)]
    peer_client_cert_auth: bool,
    /// Serve a control plane's client port in the clear, reachable without credentials: the
    /// whole keyspace (every Secret, the cluster's keys) to anyone who can connect. Without it
    /// (and without --cert-file), the port requires TLS with client certificates from a CA the
    /// master makes in <data-dir>/pki/store on its first start, where it also leaves a client
    /// certificate for etcdctl.
    #[arg(long)]
    store_insecure: bool,
    /// Run as an etcd stand-in only: serve the etcd API and nothing else, and write nothing to
    /// the keyspace on start (no keel API server, no system namespaces). For clients that own
    /// the keyspace themselves, such as a Kubernetes API server.
    #[arg(long)]
    store_only: bool,
    /// Bearer tokens for the API: lines of `token,user,uid[,"group1,group2"]`, as
    /// kube-apiserver's file of the same name.
    #[arg(long)]
    token_auth_file: Option<PathBuf>,
    /// An EncryptionConfiguration (apiserver.config.k8s.io/v1) saying which resources are
    /// encrypted at rest and with which keys, as kube-apiserver's flag of the same name.
    #[arg(long, value_name = "FILE")]
    encryption_provider_config: Option<PathBuf>,
    /// The audit Policy (audit.k8s.io/v1) deciding which requests are audited and how much of
    /// them; without one nothing is audited.
    #[arg(long, value_name = "FILE")]
    audit_policy_file: Option<PathBuf>,
    /// Where audit events are appended as JSON lines (`-` for standard output).
    #[arg(long, value_name = "FILE")]
    audit_log_path: Option<PathBuf>,
    /// Answer a write whose selector matches no pod or pod template of its namespace, or
    /// overlaps another controller's, with a warning (as `keel lint` would report it).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    selector_warnings: bool,
    /// A comma-separated chain of `Node` (node agents reach their own node's objects),
    /// `RBAC` (Roles and bindings) and `AlwaysAllow` (anything authenticated), as
    /// kube-apiserver's flag. With the default, a request without credentials reaches only
    /// what `system:public-info-viewer` grants (/healthz, /livez, /readyz, /version).
    #[arg(long, default_value = "Node,RBAC")]
    authorization_mode: String,
    /// The audiences ServiceAccount tokens must be issued for to authenticate here, and what
    /// a TokenRequest without audiences gets [default: the issuer,
    /// https://kubernetes.default.svc.cluster.local], as kube-apiserver's flag.
    #[arg(long, value_delimiter = ',')]
    api_audiences: Vec<String>,
    /// Whether requests without credentials are served as system:anonymous (in the group
    /// system:unauthenticated, which RBAC grants only the public information above).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    anonymous_auth: bool,
    /// Port of the Kubernetes REST API (HTTPS), as kube-apiserver's flag.
    #[arg(long, default_value_t = 6443)]
    secure_port: u16,
    /// Address the REST API listens on, as kube-apiserver's flag.
    #[arg(long, default_value = "127.0.0.1")]
    bind_address: std::net::IpAddr,
    #[command(flatten)]
    limits: crate::limits::LimitArgs,
    #[command(flatten)]
    service_network: crate::service_network::ServiceNetworkArgs,
    /// The certificate key (64 hexadecimal digits) sealing the cluster's private keys in the
    /// store, as kubeadm's --certificate-key [default: <data-dir>/pki/certificate.key, made
    /// by the first master]. Every master of a cluster needs the same: give the others a copy
    /// of the first one's, or `keel certificate-key` one to all before they first start.
    #[arg(long, value_name = "FILE")]
    certificate_key_file: Option<PathBuf>,
    /// Run the scheduler in this master (one active across all masters, elected through the
    /// Lease kube-system/kube-scheduler).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    scheduler: bool,
    #[command(flatten)]
    scheduler_election: crate::scheduler::ElectionArgs,
    /// Run the controller manager in this master (one active across all masters, elected
    /// through the Lease kube-system/kube-controller-manager).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    controller_manager: bool,
    #[command(flatten)]
    controller_manager_settings: crate::controller_manager::ManagerArgs,
    /// Test-only: plant a known bug so the fault harness can prove it notices. `stale-reads`
    /// serves linearizable reads from local state without confirming leadership. Never use it
    /// for anything but tests.
    #[arg(long, hide = true)]
    unsafe_fault: Option<String>,
}

impl Default for ServerArgs {
    fn default() -> Self {
        use clap::FromArgMatches;
        let matches = <Self as clap::Args>::augment_args(clap::Command::new("server"))
            .get_matches_from(["server"]);
        // The defaults above always parse.
        #[allow(clippy::expect_used)]
        Self::from_arg_matches(&matches).expect("default server arguments parse")
    }
}

/// `http://host:port` -> socket address (the scheme is not used: keel serves plain gRPC).
fn socket_addr(url: &str) -> anyhow::Result<SocketAddr> {
    crate::client_port::host_port(url)
        .to_socket_addrs()
        .with_context(|| format!("bad URL {url}"))?
        .next()
        .with_context(|| format!("URL {url} resolves to no address"))
}

fn parse_initial_cluster(spec: &str) -> anyhow::Result<Vec<(String, String)>> {
    spec.split(',')
        .filter(|s| !s.is_empty())
        .map(|pair| {
            let (name, url) = pair
                .split_once('=')
                .with_context(|| format!("--initial-cluster entry {pair:?} is not name=url"))?;
            Ok((name.to_string(), url.to_string()))
        })
        .collect()
}

fn tls_files(
    which: &str,
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
    ca: &Option<PathBuf>,
    client_cert_auth: bool,
) -> anyhow::Result<Option<TlsFiles>> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            trusted_ca: ca.clone(),
            client_cert_auth,
        })),
        (None, None) if !client_cert_auth => Ok(None),
        (None, None) => {
            bail!("--{which}client-cert-auth needs --{which}cert-file and --{which}key-file")
        }
        _ => bail!("--{which}cert-file and --{which}key-file go together"),
    }
}

impl ServerArgs {
    /// The client port's URLs and security (see `client_port`).
    fn client_port(&self) -> anyhow::Result<(Vec<String>, Vec<String>, ClientPort)> {
        crate::client_port::resolve(crate::client_port::Wanted {
            given: tls_files(
                "",
                &self.cert_file,
                &self.key_file,
                &self.trusted_ca_file,
                self.client_cert_auth,
            )?,
            secured: !self.store_only && !self.store_insecure,
            data_dir: &self.data_dir,
            listen: &self.listen_client_urls,
            advertise: &self.advertise_client_urls,
        })
    }

    fn into_config(self) -> anyhow::Result<(NodeConfig, ClientPort)> {
        let (listen_client_urls, advertise_client_urls, client_port) = self.client_port()?;
        let client_tls = client_port.served.clone();
        let peer_tls = tls_files(
            "peer-",
            &self.peer_cert_file,
            &self.peer_key_file,
            &self.peer_trusted_ca_file,
            self.peer_client_cert_auth,
        )?;
        let initial_cluster = match &self.initial_cluster {
            Some(spec) => parse_initial_cluster(spec)?,
            None => self
                .initial_advertise_peer_urls
                .iter()
                .map(|u| (self.name.clone(), u.clone()))
                .collect(),
        };
        let initial_cluster_state = match self.initial_cluster_state.as_str() {
            "new" => ClusterState::New,
            "existing" => ClusterState::Existing,
            other => bail!("--initial-cluster-state must be new or existing, not {other:?}"),
        };
        let unsafe_stale_reads = match self.unsafe_fault.as_deref() {
            None => false,
            Some("stale-reads") => true,
            Some(other) => bail!("--unsafe-fault must be stale-reads, not {other:?}"),
        };
        if unsafe_stale_reads {
            tracing::warn!("--unsafe-fault=stale-reads: linearizable reads are NOT linearizable");
        }
        if self.election_timeout < 5 * self.heartbeat_interval {
            bail!(
                "--election-timeout[{}ms] should be at least 5 times --heartbeat-interval[{}ms]",
                self.election_timeout,
                self.heartbeat_interval
            );
        }
        let config = NodeConfig {
            name: self.name,
            data_dir: self.data_dir,
            listen_client: listen_client_urls
                .iter()
                .map(|u| socket_addr(u))
                .collect::<Result<_, _>>()?,
            advertise_client_urls,
            listen_peer: self
                .listen_peer_urls
                .iter()
                .map(|u| socket_addr(u))
                .collect::<Result<_, _>>()?,
            advertise_peer_urls: self.initial_advertise_peer_urls,
            initial_cluster,
            initial_cluster_state,
            initial_cluster_token: self.initial_cluster_token,
            heartbeat_ms: self.heartbeat_interval,
            election_timeout_ms: self.election_timeout,
            snapshot_count: self.snapshot_count.max(1),
            quota_backend_bytes: match self.quota_backend_bytes {
                0 => keel_store::config::DEFAULT_QUOTA_BYTES,
                n => n,
            },
            auto_compaction: keel_store::compactor::Retention::parse(
                &self.auto_compaction_mode,
                &self.auto_compaction_retention,
            )
            .map_err(|e| anyhow::anyhow!(e))?,
            read_mode: match self.linearizable_read.as_str() {
                "read-index" => keel_store::read_index::ReadMode::ReadIndex,
                "lease" => keel_store::read_index::ReadMode::Lease,
                other => bail!("--linearizable-read must be read-index or lease, not {other:?}"),
            },
            listen_metrics: self
                .listen_metrics_urls
                .iter()
                .map(|u| socket_addr(u))
                .collect::<Result<_, _>>()?,
            client_tls,
            peer_tls,
            unsafe_stale_reads,
        };
        Ok((config, client_port))
    }
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let store_only = args.store_only;
    let selector_warnings = args.selector_warnings;
    let scheduler = (args.scheduler && !store_only)
        .then(|| args.scheduler_election.config(&args.name))
        .transpose()?;
    let controller_manager = (args.controller_manager && !store_only)
        .then(|| args.controller_manager_settings.config(&args.name))
        .transpose()?;
    if controller_manager.is_some() {
        keel_store::metrics::add_source(std::sync::Arc::new(keel_controllers::metrics::render));
    }
    crate::private::restrict_new_files();
    crate::private::private_dir(&args.data_dir)?;
    let auth = auth_config(&args)?;
    let transformer = match &args.encryption_provider_config {
        Some(path) => keel_api::encryption::Transformer::from_file(path)
            .map_err(|e| anyhow::anyhow!("--encryption-provider-config: {e}"))?,
        None => keel_api::encryption::Transformer::default(),
    };
    let auditor = auditor(&args)?;
    let fairness = args.limits.fairness()?;
    if let Some(fairness) = fairness.clone() {
        keel_store::metrics::add_source(std::sync::Arc::new(move |out: &mut String| {
            fairness.render(out)
        }));
    }
    let max_connections = args
        .limits
        .max_connections(crate::accept::raise_open_file_limit());
    let service_network = args.service_network.network()?;
    let dns = args.service_network.dns(args.bind_address);
    let kubernetes_service = args.service_network.kubernetes_service(
        &args.name,
        SocketAddr::new(args.bind_address, args.secure_port),
    );
    let rest_config = crate::rest::RestConfig {
        listen: SocketAddr::new(args.bind_address, args.secure_port),
        data_dir: args.data_dir.clone(),
        certificate_key_file: args.certificate_key_file.clone(),
        extra_hosts: args
            .service_network
            .serving_names(&service_network, kubernetes_service.advertise.ip()),
    };
    let (config, client_port) = args.into_config()?;
    let shutdown = CancellationToken::new();
    let signals = tokio::spawn(crate::signals::cancel_on_signal(shutdown.clone()));
    let (routes, background) = if store_only {
        (tonic::service::Routes::default(), None)
    } else {
        // Bind now, so a port clash fails the start instead of a background task.
        let rest_listener = tokio::net::TcpListener::bind(rest_config.listen)
            .await
            .with_context(|| format!("binding the REST API on {}", rest_config.listen))?;
        let api = api_server(
            &config,
            &client_port,
            auth,
            transformer,
            auditor,
            service_network,
            selector_warnings,
        )?;
        // Control loops in this master reach the API as any client does: over gRPC, here on
        // this member's own client port.
        let scheme = if client_port.dialer.is_some() {
            "https"
        } else {
            "http"
        };
        let loopback_url = format!("{scheme}://{}", loopback(&config)?);
        let loopback_client = move |token: &str| match &client_port.dialer {
            Some(dialer) => dialer.api_client(&loopback_url, token),
            None => Ok(keel_client::Client::with_token(
                std::slice::from_ref(&loopback_url),
                token,
            )?),
        };
        // The in-master scheduler and controller manager authenticate as
        // system:kube-scheduler and system:kube-controller-manager with tokens only this
        // process knows, so they work whatever --authorization-mode and --anonymous-auth say
        // (RBAC grants those users what their bootstrap roles grant).
        let scheduler_token =
            component_token(&api, keel_api::auth::bootstrap_roles::KUBE_SCHEDULER_USER);
        let controller_manager_token = component_token(
            &api,
            keel_api::auth::bootstrap_roles::KUBE_CONTROLLER_MANAGER_USER,
        );
        let dns_token = component_token(&api, keel_api::auth::bootstrap_roles::KUBE_DNS_USER);
        // One service, served twice: on the store's plain client port (loopback and in-process
        // users) and on the HTTPS port beside REST (the SDK with a kubeconfig).
        let service = match fairness.clone() {
            Some(fairness) => keel_api::grpc::GrpcApi::new(api.clone()).with_fairness(fairness),
            None => keel_api::grpc::GrpcApi::new(api.clone()),
        };
        let grpc = keel_proto::keelapi::api_server::ApiServer::new(service)
            .max_decoding_message_size(API_MAX_REQUEST);
        let routes = tonic::service::Routes::new(grpc.clone());
        let bootstrap_stop = shutdown.clone();
        // The cluster's CA, once the REST endpoint has read (or made) it: the controller
        // manager publishes it in every namespace.
        let (root_ca_tx, mut root_ca_rx) = tokio::sync::watch::channel(None::<String>);
        // The watch cache, the bootstrap objects and namespace finalization: one task, joined at
        // shutdown.
        let background = tokio::spawn(async move {
            let cache = api.run_cache(bootstrap_stop.clone());
            // The REST endpoint (and the kubeconfig it writes) waits for the bootstrap objects,
            // so the first client never meets an RBAC policy without its default bindings.
            let (bootstrapped_tx, mut bootstrapped) = tokio::sync::watch::channel(false);
            let namespaces = async {
                tokio::select! {
                    _ = bootstrap_stop.cancelled() => {}
                    _ = async {
                        keel_api::bootstrap::ensure_namespaces(&api).await;
                        keel_api::bootstrap::ensure_rbac(&api).await;
                        keel_api::bootstrap::ensure_priority_classes(&api).await;
                        keel_api::bootstrap::wait_for_cache(&api).await;
                        bootstrapped_tx.send_replace(true);
                    } => {}
                }
            };
            let finalizer = api.run_namespace_finalizer(bootstrap_stop.clone());
            let definitions = api.run_definition_cleanup(bootstrap_stop.clone());
            // The `kubernetes` Service and this master's place in its endpoints, once the
            // namespaces exist.
            let mut service_ready = bootstrapped_tx.subscribe();
            let kubernetes_service = async {
                if service_ready.wait_for(|done| *done).await.is_ok() {
                    keel_api::services::ensure_kubernetes_service(
                        &api,
                        kubernetes_service,
                        bootstrap_stop.clone(),
                    )
                    .await;
                }
            };
            let rest = async {
                let tls = tokio::select! {
                    _ = bootstrap_stop.cancelled() => return Ok(()),
                    tls = async {
                        let _ = bootstrapped.wait_for(|done| *done).await;
                        crate::rest::prepare(&api, &rest_config).await
                    } => tls,
                };
                match tls {
                    Ok((tls, ca_pem)) => {
                        let _ = root_ca_tx.send(Some(ca_pem));
                        tracing::info!(listen = %rest_config.listen, "serving the Kubernetes API and keelapi.Api");
                        let app = crate::multiplex::Multiplex::new(
                            match fairness.clone() {
                                Some(fairness) => {
                                    keel_api::rest::router_with_fairness(api.clone(), fairness)
                                }
                                None => keel_api::rest::router(api.clone()),
                            },
                            tonic::service::Routes::new(grpc),
                        );
                        crate::https::serve(
                            rest_listener,
                            tls,
                            app,
                            max_connections,
                            bootstrap_stop.clone(),
                        )
                        .await;
                        api.close_node_streams().await;
                        Ok(())
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "the Kubernetes API cannot start");
                        bootstrap_stop.cancel();
                        Err(e.context("the Kubernetes API cannot start"))
                    }
                }
            };
            let scheduler = async {
                let Some(config) = scheduler else {
                    return;
                };
                match loopback_client(&scheduler_token) {
                    Ok(client) => {
                        let stats =
                            keel_scheduler::run::run(client, config, bootstrap_stop.clone()).await;
                        tracing::info!(?stats, "scheduler stopped");
                    }
                    Err(e) => tracing::error!(error = %e, "the scheduler cannot start"),
                }
            };
            let controller_manager = async {
                let Some(mut config) = controller_manager else {
                    return;
                };
                let root_ca = tokio::select! {
                    _ = bootstrap_stop.cancelled() => return,
                    ca = root_ca_rx.wait_for(Option::is_some) => match ca {
                        Ok(ca) => ca.clone(),
                        Err(_) => return,
                    },
                };
                config.set_root_ca(root_ca);
                match loopback_client(&controller_manager_token) {
                    Ok(client) => {
                        keel_controllers::run(client, config, bootstrap_stop.clone()).await;
                        tracing::info!("controller manager stopped");
                    }
                    Err(e) => tracing::error!(error = %e, "the controller manager cannot start"),
                }
            };
            // The cluster DNS, from the API like any client, once the bootstrap policy
            // lets it read.
            let mut dns_ready = bootstrapped_tx.subscribe();
            let dns = async {
                let Some(config) = dns else {
                    return;
                };
                if dns_ready.wait_for(|done| *done).await.is_err() {
                    return;
                }
                let listen = config.listen;
                match loopback_client(&dns_token) {
                    Ok(client) => {
                        tracing::info!(%listen, domain = %config.domain, "serving the cluster DNS");
                        if let Err(e) = keel_dns::run(client, config, bootstrap_stop.clone()).await
                        {
                            tracing::error!(%listen, error = %e, "the cluster DNS cannot serve");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "the cluster DNS cannot start"),
                }
            };
            let (_, _, _, _, rest, _, _, _, _) = tokio::join!(
                cache,
                namespaces,
                finalizer,
                definitions,
                rest,
                scheduler,
                controller_manager,
                kubernetes_service,
                dns
            );
            rest
        });
        (routes, Some(background))
    };
    let result = keel_store::server::run(config, routes, shutdown.clone()).await;
    shutdown.cancel();
    signals.abort();
    // The API failing to start fails the master (after the store has shut down cleanly).
    let api = match background {
        Some(background) => background
            .await
            .unwrap_or_else(|e| Err(anyhow::anyhow!("the API tasks failed: {e}"))),
        None => Ok(()),
    };
    result?;
    api
}

/// A fresh random token authenticating `user` (in the authenticated group) to `api`, for a
/// control loop inside this process.
fn component_token<S: keel_api::storage::Storage>(
    api: &keel_api::ApiServer<S>,
    user: &str,
) -> String {
    let token = crate::rest::random_hex();
    api.add_token(
        &token,
        keel_api::auth::UserInfo {
            name: user.to_string(),
            uid: String::new(),
            groups: vec![keel_api::auth::authn::AUTHENTICATED.to_string()],
        },
    );
    token
}

/// Largest API request body: the store's limit on one value, as Kubernetes' (3 MiB) would not fit.
const API_MAX_REQUEST: usize = 2 * 1024 * 1024;

/// The API server of this master, talking to its own store member over loopback gRPC as a
/// Kubernetes API server talks to etcd.
fn auth_config(args: &ServerArgs) -> anyhow::Result<keel_api::auth::AuthConfig> {
    let tokens = match &args.token_auth_file {
        Some(path) => keel_api::auth::authn::TokenFile::load(path)?,
        None => Default::default(),
    };
    let mode = args
        .authorization_mode
        .parse()
        .map_err(|e: String| anyhow::anyhow!(e))?;
    Ok(keel_api::auth::AuthConfig {
        authenticator: keel_api::auth::authn::Authenticator::new(tokens, args.anonymous_auth),
        mode,
        api_audiences: args.api_audiences.clone(),
    })
}

/// This member's client port as reached from this host.
fn loopback(config: &keel_store::config::NodeConfig) -> anyhow::Result<SocketAddr> {
    let addr = config
        .listen_client
        .first()
        .ok_or_else(|| anyhow::anyhow!("no client listener"))?;
    Ok(if addr.ip().is_unspecified() {
        std::net::SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        *addr
    })
}

/// The audit log `--audit-policy-file` and `--audit-log-path` ask for: both or neither.
fn auditor(args: &ServerArgs) -> anyhow::Result<Option<keel_api::audit::Auditor>> {
    match (&args.audit_policy_file, &args.audit_log_path) {
        (None, None) => Ok(None),
        (Some(policy), Some(log)) => {
            let text = std::fs::read_to_string(policy)
                .with_context(|| format!("reading --audit-policy-file {}", policy.display()))?;
            let policy = keel_api::audit::Policy::parse(&text)
                .map_err(|e| anyhow::anyhow!("--audit-policy-file: {e}"))?;
            Ok(Some(
                keel_api::audit::Auditor::open(policy, log)
                    .map_err(|e| anyhow::anyhow!("--audit-log-path: {e}"))?,
            ))
        }
        (Some(_), None) => anyhow::bail!("--audit-policy-file needs --audit-log-path"),
        (None, Some(_)) => anyhow::bail!("--audit-log-path needs --audit-policy-file"),
    }
}

fn api_server(
    config: &keel_store::config::NodeConfig,
    client_port: &ClientPort,
    auth: keel_api::auth::AuthConfig,
    transformer: keel_api::encryption::Transformer,
    auditor: Option<keel_api::audit::Auditor>,
    service_network: keel_api::services::ServiceNetwork,
    selector_warnings: bool,
) -> anyhow::Result<std::sync::Arc<keel_api::ApiServer<keel_api::storage::etcd::EtcdStorage>>> {
    let host = loopback(config)?;
    // Over TLS when the client port uses it, presenting this master's client certificate.
    let (scheme, tls) = match &client_port.dialer {
        Some(dialer) => (
            "https",
            Some(keel_store::tls::client_config(&dialer.tls_files())?),
        ),
        None => ("http", None),
    };
    let channel = keel_store::tls::channel(&format!("{scheme}://{host}"), tls)?;
    let mut api = keel_api::ApiServer::with_cache(
        keel_api::storage::etcd::EtcdStorage::new(channel).with_transformer(transformer),
    )
    .with_auth(auth)
    .with_service_network(service_network)
    .with_selector_warnings(selector_warnings);
    if let Some(auditor) = auditor {
        api = api.with_auditor(auditor);
    }
    Ok(std::sync::Arc::new(api))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_cluster_parses_name_url_pairs() {
        let got =
            parse_initial_cluster("a=http://127.0.0.1:1,b=http://127.0.0.1:2").expect("parse");
        assert_eq!(
            got,
            vec![
                ("a".into(), "http://127.0.0.1:1".into()),
                ("b".into(), "http://127.0.0.1:2".into())
            ]
        );
        assert!(parse_initial_cluster("a").is_err());
    }

    fn args(data_dir: &std::path::Path, flags: &[&str]) -> ServerArgs {
        use clap::FromArgMatches;
        let mut argv = vec![
            "server".to_string(),
            format!("--data-dir={}", data_dir.display()),
        ];
        argv.extend(flags.iter().map(|f| f.to_string()));
        let matches = <ServerArgs as clap::Args>::augment_args(clap::Command::new("server"))
            .get_matches_from(argv);
        ServerArgs::from_arg_matches(&matches).expect("arguments parse")
    }

    #[test]
    fn defaults_are_a_single_member_on_etcds_ports() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let (cfg, port) = args(dir.path(), &[]).into_config()?;
        assert_eq!(
            cfg.listen_client,
            vec![SocketAddr::from(([127, 0, 0, 1], 2379))]
        );
        assert_eq!(cfg.advertise_client_urls, ["https://127.0.0.1:2379"]);
        assert_eq!(cfg.initial_cluster.len(), 1);
        assert_eq!(ServerArgs::default().data_dir, PathBuf::from("./keel-data"));
        // A control plane's client port takes TLS clients with certificates only.
        let served = port.served.expect("TLS");
        assert!(served.client_cert_auth);
        assert_eq!(
            served.trusted_ca.as_deref(),
            Some(crate::store_pki::dir(dir.path()).join("ca.crt").as_path())
        );
        assert!(port.dialer.is_some());
        Ok(())
    }

    #[test]
    fn a_plain_client_port_is_an_explicit_choice() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let refused = args(dir.path(), &["--listen-client-urls=http://127.0.0.1:2379"])
            .into_config()
            .expect_err("plain URL on a control plane");
        assert!(
            refused.to_string().contains("--store-insecure"),
            "{refused}"
        );
        for flag in ["--store-insecure", "--store-only"] {
            let (cfg, port) = args(dir.path(), &[flag]).into_config()?;
            assert_eq!(
                cfg.advertise_client_urls,
                ["http://127.0.0.1:2379"],
                "{flag}"
            );
            assert!(port.served.is_none() && port.dialer.is_none(), "{flag}");
        }
        let refused = args(
            dir.path(),
            &[
                "--store-only",
                "--listen-client-urls=https://127.0.0.1:2379",
            ],
        )
        .into_config()
        .expect_err("TLS URL without certificates");
        assert!(refused.to_string().contains("--cert-file"), "{refused}");
        Ok(())
    }
}
