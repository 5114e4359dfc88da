//! `keel controller-manager`: the controller manager alone, against any masters, and the
//! flags it shares with the one inside `keel server` (kube-controller-manager's names where it
//! has them: `--controllers`, `--node-monitor-grace-period`, `--terminated-pod-gc-threshold`,
//! `--max-endpoints-per-slice`;
//! leader election timings with the same short defaults as the scheduler's).

use std::sync::Arc;
use std::time::Duration;

use clap::Args;

/// `keel controller-manager`'s command line.
#[derive(Args, Debug, Clone)]
pub struct ControllerManagerArgs {
    /// This controller manager's name in its Lease identity.
    #[arg(long, default_value = "standalone")]
    name: String,
    #[command(flatten)]
    settings: ManagerArgs,
    #[command(flatten)]
    masters: crate::connect::MasterArgs,
}

/// Runs a controller manager until SIGINT or SIGTERM. It campaigns for the same Lease as the
/// controller managers inside the masters, so it acts only while it holds it.
pub async fn run(args: ControllerManagerArgs) -> anyhow::Result<()> {
    let mut config = args.settings.config(&args.name)?;
    let (client, root_ca) = args.masters.connect_with_ca()?;
    config.set_root_ca(root_ca);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let signals = tokio::spawn(crate::signals::cancel_on_signal(shutdown.clone()));
    tracing::info!(identity = %config.identity, controllers = ?config.controllers, "controller manager starting");
    keel_controllers::run(client, config, shutdown.clone()).await;
    tracing::info!("controller manager stopped");
    shutdown.cancel();
    let _ = signals.await;
    Ok(())
}

#[derive(Args, Debug, Clone)]
pub struct ManagerArgs {
    /// Controllers to run: `*` runs every default one, `name` adds one, `-name` removes one
    /// (e.g. `*,-job`).
    #[arg(long, value_delimiter = ',', default_value = "*")]
    controllers: Vec<String>,
    /// How long a controller manager's Lease lasts without renewal before another may take it.
    #[arg(long = "controller-manager-lease-duration", value_name = "DURATION", default_value = "2s", value_parser = crate::duration::flag)]
    manager_lease_duration: Duration,
    /// A leading controller manager that cannot renew within this long stops its controllers
    /// (must be shorter than the lease duration).
    #[arg(long = "controller-manager-renew-deadline", value_name = "DURATION", default_value = "1s", value_parser = crate::duration::flag)]
    manager_renew_deadline: Duration,
    /// How often candidates try to acquire or renew the Lease.
    #[arg(long = "controller-manager-retry-period", value_name = "DURATION", default_value = "250ms", value_parser = crate::duration::flag)]
    manager_retry_period: Duration,
    /// How long a node may go without renewing its Lease before it is marked unreachable.
    #[arg(long, default_value = "50s", value_parser = crate::duration::flag)]
    node_monitor_grace_period: Duration,
    /// Terminated pods kept before the oldest are deleted.
    #[arg(long, default_value_t = 12_500)]
    terminated_pod_gc_threshold: usize,
    /// Endpoints one EndpointSlice holds at most.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1000))]
    max_endpoints_per_slice: u16,
}

impl ManagerArgs {
    /// The configuration of a candidate named after `member`.
    pub fn config(&self, member: &str) -> anyhow::Result<keel_controllers::Config> {
        let timing = crate::election::timing(
            "controller-manager",
            self.manager_lease_duration,
            self.manager_renew_deadline,
            self.manager_retry_period,
        )?;
        if self.node_monitor_grace_period.is_zero() {
            anyhow::bail!("--node-monitor-grace-period must be positive");
        }
        let mut config = keel_controllers::Config::new(&crate::election::identity(member));
        config.timing = timing;
        config.select(&self.controllers)?;
        config.options = Arc::new(keel_controllers::manager::Options {
            node_monitor_grace_period: self.node_monitor_grace_period,
            terminated_pod_gc_threshold: self.terminated_pod_gc_threshold,
            max_endpoints_per_slice: usize::from(self.max_endpoints_per_slice),
            root_ca: None,
        });
        Ok(config)
    }
}
