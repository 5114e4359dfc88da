//! Registering the simulated nodes, as kubelet registers its node: create the Node, then
//! post its status. A node that already exists (a restarted sim) is updated in place, so a
//! restart is idempotent. Also the reverse, for `--delete-on-exit`.

use std::sync::Arc;
use std::time::Duration;

use keel_client::runtime::Backoff;
use keel_client::{Api, Client, DeleteParams, Error};
use keel_types::k8s_openapi::api::coordination::v1::Lease;
use keel_types::k8s_openapi::api::core::v1::Node;
use keel_types::k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use keel_types::k8s_openapi::chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::heartbeat::Registered;
use super::limit::WriteLimit;
use super::nodes::Fleet;
use super::stats::Stats;
use keel_client::node_lease::LEASE_NAMESPACE;

/// Retries of a node whose registration fails.
const RETRY: Backoff = Backoff {
    initial: Duration::from_millis(200),
    max: Duration::from_secs(10),
};
/// Attempts at a conditional update of an existing node before backing off.
const CONFLICT_RETRIES: usize = 5;

pub struct Registrar {
    pub client: Client,
    pub fleet: Arc<Fleet>,
    pub writes: WriteLimit,
    pub stats: Arc<Stats>,
}

impl Registrar {
    /// Registers node `i`, retrying with backoff until it succeeds; None if `shutdown`
    /// came first.
    pub async fn register(&self, i: usize, shutdown: &CancellationToken) -> Option<Registered> {
        let mut failures = 0;
        loop {
            let attempt = tokio::select! {
                _ = shutdown.cancelled() => return None,
                attempt = self.register_once(i) => attempt,
            };
            match attempt {
                Ok(registered) => return Some(registered),
                Err(error) => {
                    failures += 1;
                    Stats::count(&self.stats.failed_writes);
                    tracing::warn!(node = %self.fleet.name(i), %error, "registering the node failed; retrying");
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = tokio::time::sleep(RETRY.delay(failures)) => {}
            }
        }
    }

    async fn register_once(&self, i: usize) -> Result<Registered, Error> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let name = self.fleet.name(i);
        let wanted = self.fleet.node(i);
        let now = Time(Utc::now());
        let (node, since) = match self.writes.run(nodes.create(&wanted)).await {
            Ok(created) => (created, now.clone()),
            // AlreadyExists: a sim ran before. Take the node over as this one describes it.
            Err(e) if e.code() == Some(409) => {
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    let existing = nodes.get(&name).await?;
                    let since = self
                        .fleet
                        .unchanged_since(i, existing.status.as_ref(), &now);
                    let updated = self.fleet.updated(i, existing);
                    match self.writes.run(nodes.replace(&name, &updated)).await {
                        Ok(node) => break (node, since),
                        Err(e) if e.is_conflict() && attempt < CONFLICT_RETRIES => continue,
                        Err(e) => return Err(e),
                    }
                }
            }
            Err(e) => return Err(e),
        };
        let status = Node {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            spec: None,
            status: Some(self.fleet.status(i, now, since.clone())),
        };
        self.writes
            .run(nodes.replace_status(&name, &status))
            .await?;
        Stats::count(&self.stats.node_statuses);
        Ok(Registered {
            uid: node.metadata.uid.unwrap_or_default(),
            since,
        })
    }

    /// Deletes node `i` and its Lease (a few attempts each; what is already gone is fine).
    pub async fn unregister(&self, i: usize) {
        let name = self.fleet.name(i);
        let nodes: Api<Node> = Api::all(self.client.clone());
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), LEASE_NAMESPACE);
        let params = DeleteParams::default();
        for (what, result) in [
            (
                "node",
                self.delete_with_retries(|| nodes.delete(&name, &params))
                    .await,
            ),
            (
                "lease",
                self.delete_with_retries(|| leases.delete(&name, &params))
                    .await,
            ),
        ] {
            if let Err(error) = result {
                tracing::warn!(node = %name, %error, "deleting the {what} failed");
            }
        }
    }

    async fn delete_with_retries<T, F, Fut>(&self, delete: F) -> Result<(), Error>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let mut failures = 0;
        loop {
            match self.writes.run(delete()).await {
                Ok(_) => return Ok(()),
                Err(e) if e.is_not_found() => return Ok(()),
                Err(e) if failures >= 3 => return Err(e),
                Err(_) => {
                    failures += 1;
                    tokio::time::sleep(RETRY.delay(failures)).await;
                }
            }
        }
    }
}
