//! `keel scheduler`: the scheduler alone, against any masters, and the flags it shares with
//! the scheduler inside `keel server` (its leader election timings, as kube-scheduler's
//! `--leader-elect-*` flags with faster defaults).

use std::time::Duration;

use anyhow::bail;
use clap::Args;

/// `keel scheduler`'s command line.
#[derive(Args, Debug, Clone)]
pub struct SchedulerArgs {
    /// This scheduler's name in its Lease identity.
    #[arg(long, default_value = "standalone")]
    name: String,
    #[command(flatten)]
    election: ElectionArgs,
    #[command(flatten)]
    masters: crate::connect::MasterArgs,
}

/// Runs a scheduler until SIGINT or SIGTERM. It campaigns for the same Lease as the
/// schedulers inside the masters, so it acts only while it holds it.
pub async fn run(args: SchedulerArgs) -> anyhow::Result<()> {
    let config = args.election.config(&args.name)?;
    let client = args.masters.connect()?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let signals = tokio::spawn(crate::signals::cancel_on_signal(shutdown.clone()));
    tracing::info!(identity = %config.identity, "scheduler starting");
    let stats = keel_scheduler::run::run(client, config, shutdown.clone()).await;
    tracing::info!(?stats, "scheduler stopped");
    shutdown.cancel();
    let _ = signals.await;
    Ok(())
}

#[derive(Args, Debug, Clone)]
pub struct ElectionArgs {
    /// How long a scheduler's Lease lasts without renewal before another may take it.
    #[arg(long = "scheduler-lease-duration", default_value = "2s", value_parser = crate::duration::flag)]
    lease_duration: Duration,
    /// A leading scheduler that cannot renew within this long stops scheduling (must be
    /// shorter than the lease duration).
    #[arg(long = "scheduler-renew-deadline", default_value = "1s", value_parser = crate::duration::flag)]
    renew_deadline: Duration,
    /// How often candidates try to acquire or renew the Lease.
    #[arg(long = "scheduler-retry-period", default_value = "250ms", value_parser = crate::duration::flag)]
    retry_period: Duration,
    /// percentageOfNodesToScore: the share of nodes searched for feasible ones before scoring;
    /// 0 is Kubernetes' adaptive default.
    #[arg(long = "percentage-of-nodes-to-score", default_value_t = 0)]
    percentage_of_nodes_to_score: u32,
    /// Binds in flight at once (each goes through `pods/binding` on its own; the loop goes on
    /// deciding meanwhile).
    #[arg(long = "scheduler-bind-concurrency", default_value_t = keel_scheduler::run::DEFAULT_BIND_CONCURRENCY,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    bind_concurrency: u32,
}

impl ElectionArgs {
    /// The scheduler's configuration for a candidate named after `member`.
    pub fn config(&self, member: &str) -> anyhow::Result<keel_scheduler::run::Config> {
        let timing = crate::election::timing(
            "scheduler",
            self.lease_duration,
            self.renew_deadline,
            self.retry_period,
        )?;
        if self.percentage_of_nodes_to_score > 100 {
            bail!("--percentage-of-nodes-to-score must be between 0 and 100");
        }
        let mut config = keel_scheduler::run::Config::new(&crate::election::identity(member));
        config.timing = timing;
        config.percentage_of_nodes_to_score = self.percentage_of_nodes_to_score;
        config.bind_concurrency = self.bind_concurrency as usize;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        election: ElectionArgs,
    }

    #[test]
    fn timings_take_go_durations() {
        let cli = Cli::parse_from([
            "x",
            "--scheduler-retry-period",
            "500ms",
            "--scheduler-lease-duration",
            "1m",
        ]);
        assert_eq!(cli.election.retry_period, Duration::from_millis(500));
        assert_eq!(cli.election.lease_duration, Duration::from_secs(60));
        assert!(Cli::try_parse_from(["x", "--scheduler-lease-duration", "4 weeks"]).is_err());
        assert!(Cli::try_parse_from(["x", "--scheduler-lease-duration", ""]).is_err());
    }
}
