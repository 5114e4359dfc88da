//! The node's heartbeat Lease `kube-node-lease/<node>`, renewed as kubelet's lease controller
//! renews it: every quarter of its duration, with a conditional write against the version
//! last written, created again if someone deleted it, retried sooner after a failure.

use std::time::Duration;

use keel_client::node_lease::{lease, renewed, LEASE_NAMESPACE};
use keel_client::{Api, Client, Error};
use keel_types::k8s_openapi::api::coordination::v1::Lease;
use keel_types::k8s_openapi::chrono::Utc;
use tokio_util::sync::CancellationToken;

/// The delay before the `failures`-th retry of a failed renewal: 200 ms doubling, never
/// beyond the renew interval (kubelet's lease controller backs off from 200 ms to 7 s).
pub fn retry_delay(failures: u32, interval: Duration) -> Duration {
    Duration::from_millis(200)
        .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(16)))
        .min(Duration::from_secs(7))
        .min(interval)
}

/// Renews the Lease of node `node` (uid `node_uid`) until `stop`.
pub async fn run(
    client: Client,
    node: String,
    node_uid: String,
    duration: Duration,
    interval: Duration,
    stop: CancellationToken,
) {
    let leases: Api<Lease> = Api::namespaced(client, LEASE_NAMESPACE);
    let mut held: Option<Lease> = None;
    let mut failures = 0u32;
    loop {
        let delay = match renew(&leases, &node, &node_uid, duration, &mut held).await {
            Ok(()) => {
                failures = 0;
                interval
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                tracing::warn!(%node, %error, "renewing the node Lease failed; retrying");
                retry_delay(failures, interval)
            }
        };
        if stop
            .run_until_cancelled(tokio::time::sleep(delay))
            .await
            .is_none()
        {
            return;
        }
    }
}

/// One renewal: a conditional write against the Lease last written (or read), a new Lease
/// when there is none. A failed write forgets the Lease held, so the next attempt reads it.
async fn renew(
    leases: &Api<Lease>,
    node: &str,
    node_uid: &str,
    duration: Duration,
    held: &mut Option<Lease>,
) -> Result<(), Error> {
    let now = Utc::now();
    let current = match held.take() {
        Some(lease) => Some(lease),
        None => match leases.get(node).await {
            Ok(stored) => Some(stored),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        },
    };
    let written = match current {
        Some(current) => {
            let next = renewed(current, node, node_uid, duration, now);
            match leases.replace(node, &next).await {
                Err(e) if e.is_not_found() => {
                    leases.create(&lease(node, node_uid, duration, now)).await?
                }
                other => other?,
            }
        }
        None => leases.create(&lease(node, node_uid, duration, now)).await?,
    };
    *held = Some(written);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_renewals_are_retried_sooner_than_the_interval() {
        let interval = Duration::from_secs(10);
        assert_eq!(retry_delay(1, interval), Duration::from_millis(200));
        assert_eq!(retry_delay(2, interval), Duration::from_millis(400));
        assert_eq!(retry_delay(10, interval), Duration::from_secs(7));
        assert_eq!(
            retry_delay(10, Duration::from_secs(1)),
            Duration::from_secs(1)
        );
    }
}
