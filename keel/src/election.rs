//! What the elected components (scheduler, controller manager) share on the command line:
//! validating their Lease timings and naming their candidates.

use std::time::Duration;

use anyhow::bail;
use keel_client::leader::Timing;

/// Lease timings from flags named `--{prefix}-lease-duration`, `-renew-deadline` and
/// `-retry-period`, checked as client-go checks them.
pub fn timing(
    prefix: &str,
    lease_duration: Duration,
    renew_deadline: Duration,
    retry_period: Duration,
) -> anyhow::Result<Timing> {
    if renew_deadline >= lease_duration {
        bail!(
            "--{prefix}-renew-deadline ({renew_deadline:?}) must be shorter than --{prefix}-lease-duration ({lease_duration:?})"
        );
    }
    if retry_period.is_zero() {
        bail!("--{prefix}-retry-period must be positive");
    }
    Ok(Timing {
        lease_duration,
        renew_deadline,
        retry_period,
    })
}

/// A candidate's identity: host, member and a random suffix, so two runs of the same member
/// never share a Lease holder (a restarted leader must not inherit its old fence).
pub fn identity(member: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    let suffix: u32 = rand::random();
    format!("{host}_{member}_{suffix:08x}")
}
