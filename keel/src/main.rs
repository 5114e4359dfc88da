//! The `keel` binary: every role of the control plane behind one CLI.

mod accept;
mod agent;
mod bench;
mod client_port;
mod connect;
mod controller_manager;
mod duration;
mod election;
mod https;
mod limits;
mod lint;
mod multiplex;
mod ops;
mod pki;
mod private;
mod rest;
mod scheduler;
mod sealing;
mod server;
mod service_network;
mod signals;
mod sim;
mod store_pki;
mod up;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "keel",
    version,
    about = "keel: a Kubernetes-style control plane on its own Raft store"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a store member (etcd's flags, same meanings). With no flags: a single member on
    /// 127.0.0.1:2379 with its data in ./keel-data.
    Server(Box<server::ServerArgs>),
    /// Run the scheduler alone against running masters (found by --kubeconfig, $KUBECONFIG or
    /// --server); it acts only while it holds the Lease kube-system/kube-scheduler.
    Scheduler(scheduler::SchedulerArgs),
    /// Run the controller manager alone against running masters (found by --kubeconfig,
    /// $KUBECONFIG or --server); it acts only while it holds the Lease
    /// kube-system/kube-controller-manager.
    ControllerManager(controller_manager::ControllerManagerArgs),
    /// Run a node agent (kubelet's role): register this host as a Node and run the pods bound
    /// to it as containers through a CRI runtime (containerd).
    Agent(Box<agent::AgentArgs>),
    /// Load-test etcd-v3 endpoints (keel or etcd) and print throughput and latency percentiles.
    Bench(bench::BenchArgs),
    /// Membership of a running cluster: list, add, remove, promote, update.
    Member(ops::MemberArgs),
    /// Backups: restore a snapshot saved with `etcdctl snapshot save` into a new data dir.
    Snapshot(ops::SnapshotArgs),
    /// Simulated nodes (KWOK's role): register N Nodes and play kubelet for them through the
    /// API — Leases, node status, and the life of the pods bound to them.
    SimNodes(Box<sim::SimArgs>),
    /// Issue a node agent's credentials from the cluster CA in a master's data dir (run on a
    /// master): writes kubelet.crt, kubelet.key and ca.crt into --out-dir, for the agent's
    /// --tls-cert-file, --tls-private-key-file and --client-ca-file, and kubelet.kubeconfig
    /// (a client certificate for system:node:<name>) for its --kubeconfig.
    NodeCertificate {
        #[arg(long, default_value = "./keel-data")]
        data_dir: std::path::PathBuf,
        /// The Node's name.
        #[arg(long)]
        node_name: String,
        /// An address the API server reaches the agent at (its InternalIP); repeatable.
        #[arg(long = "address")]
        addresses: Vec<String>,
        /// The masters' HTTPS URL the agent's kubeconfig names [default: the server of the
        /// admin kubeconfig in the data dir].
        #[arg(long)]
        server: Option<String>,
        #[arg(long)]
        out_dir: std::path::PathBuf,
    },
    /// Print a new certificate key (64 hexadecimal digits), as `kubeadm certs certificate-key`:
    /// save it to a file and start every master of a new cluster with --certificate-key-file.
    CertificateKey,
    /// Bring a whole cluster up on this host (root): masters on a host bridge, each agent a
    /// node in a network namespace of its own with its own containerd; writes a kubeconfig
    /// and says how to use it. With no flags: 1 master and 1 agent.
    Up(up::UpArgs),
    /// Stop a cluster `keel up` started and remove everything it made.
    Down(up::DownArgs),
    /// Check a set of manifests for selectors that match nothing, disagree with their own
    /// template or overlap, Service target ports no container exposes and Ingress backends
    /// that do not exist; exit 1 on errors (see --help for the checks and their severities).
    Lint(lint::LintArgs),
    /// Print the admin kubeconfig a master wrote into its data dir.
    Kubeconfig {
        #[arg(long, default_value = "./keel-data")]
        data_dir: std::path::PathBuf,
    },
}

/// The process allocator. Every API request builds and drops many small JSON values (with the
/// system allocator, malloc and free were about a fifth of a loaded master's samples); mimalloc
/// serves them from per-thread free pages.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KEEL_LOG")
                // hickory-server logs every DNS question at info.
                .unwrap_or_else(|_| "info,openraft=warn,hickory_server=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command.unwrap_or(Command::Server(Box::default())) {
        Command::Server(args) => runtime.block_on(server::run(*args)),
        Command::Scheduler(args) => runtime.block_on(scheduler::run(args)),
        Command::ControllerManager(args) => runtime.block_on(controller_manager::run(args)),
        Command::Agent(args) => runtime.block_on(agent::run(*args)),
        Command::Bench(args) => runtime.block_on(bench::run(args)),
        Command::Member(args) => runtime.block_on(ops::member(args)),
        Command::Snapshot(args) => ops::snapshot(args),
        Command::SimNodes(args) => runtime.block_on(sim::run(*args)),
        Command::NodeCertificate {
            data_dir,
            node_name,
            addresses,
            server,
            out_dir,
        } => rest::write_node_certificate(
            &data_dir,
            &node_name,
            &addresses,
            server.as_deref(),
            &out_dir,
        ),
        Command::Up(args) => runtime.block_on(up::up(args)),
        Command::Down(args) => runtime.block_on(up::down(args)),
        Command::CertificateKey => {
            println!("{}", sealing::new_key_hex());
            Ok(())
        }
        Command::Lint(args) => std::process::exit(lint::run(args)),
        Command::Kubeconfig { data_dir } => {
            let path = rest::kubeconfig_path(&data_dir);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                anyhow::anyhow!(
                    "{}: {e} (it is written when keel server first serves the API)",
                    path.display()
                )
            })?;
            print!("{text}");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Flattened flag groups (the scheduler's and the controller manager's elections) must not
    /// clash: clap checks names and ids only when a command is built, so build them all here.
    #[test]
    fn every_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
