//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's — and, beyond it, a
//! fencing token: the leader's writes carry its holder and transition count, and the store
//! refuses them in the same transaction once the Lease names anyone else. A leader that was
//! paused or partitioned past its lease cannot write, whatever it believes.
//!
//! Expiry is judged by local observation, never by comparing clocks: a candidate takes over
//! only after seeing the Lease unchanged for a whole lease duration on its own monotonic clock.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use keel_types::k8s_openapi;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::api::{Api, Fence};
use crate::client::Client;
use crate::error::Error;

/// One candidate for one Lease.
pub struct LeaseLock {
    api: Api<Lease>,
    namespace: String,
    name: String,
    identity: String,
    lease_duration: Duration,
    /// The last version of the Lease seen, and when (on this candidate's clock).
    observed: Option<(String, Instant)>,
}

/// Timing of [`LeaseLock::run`], as client-go's LeaderElectionConfig.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub lease_duration: Duration,
    /// A leader that cannot renew within this long steps down (must be < lease_duration).
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::chrono::Utc::now())
}

impl LeaseLock {
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        lease_duration: Duration,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            lease_duration,
            observed: None,
        }
    }

    fn fence(&self, transitions: i32) -> Fence {
        Fence {
            lease_namespace: self.namespace.clone(),
            lease_name: self.name.clone(),
            holder: self.identity.clone(),
            transitions,
        }
    }

    fn spec(&self, transitions: i32, acquired: Option<MicroTime>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.lease_duration.as_secs().max(1) as i32),
            lease_transitions: Some(transitions),
            acquire_time: acquired.or_else(|| Some(now())),
            renew_time: Some(now()),
            ..Default::default()
        }
    }

    /// One round: acquires the Lease if it is free or expired, renews it if held. Returns the
    /// fence to write with while leading, or None if another candidate holds it.
    pub async fn try_acquire_or_renew(&mut self) -> Result<Option<Fence>, Error> {
        let current = match self.api.get(&self.name).await {
            Ok(lease) => lease,
            Err(e) if e.is_not_found() => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        namespace: Some(self.namespace.clone()),
                        ..Default::default()
                    },
                    spec: Some(self.spec(0, None)),
                };
                return match self.api.create(&lease).await {
                    Ok(created) => {
                        self.observe(&created);
                        Ok(Some(self.fence(0)))
                    }
                    Err(e) if e.is_conflict() => Ok(None),
                    Err(e) => Err(e),
                };
            }
            Err(e) => return Err(e),
        };
        self.observe(&current);
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let transitions = spec.lease_transitions.unwrap_or(0);
        let (transitions, acquired) = if holder == self.identity {
            (transitions, spec.acquire_time.clone())
        } else if holder.is_empty() || self.expired() {
            (transitions + 1, None)
        } else {
            return Ok(None);
        };
        let mut next = current.clone();
        next.spec = Some(self.spec(transitions, acquired));
        match self.api.replace(&self.name, &next).await {
            Ok(updated) => {
                self.observe(&updated);
                Ok(Some(self.fence(transitions)))
            }
            // Someone else renewed or took it first.
            Err(e) if e.is_conflict() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up (if held) so another candidate need not wait for it to expire.
    pub async fn release(&mut self) -> Result<(), Error> {
        let current = self.api.get(&self.name).await?;
        let mut spec = current.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        let mut next = current;
        next.spec = Some(spec);
        self.api.replace(&self.name, &next).await.map(|_| ())
    }

    fn observe(&mut self, lease: &Lease) {
        let rv = lease.metadata.resource_version.clone().unwrap_or_default();
        let changed = self.observed.as_ref().is_none_or(|(seen, _)| *seen != rv);
        if changed {
            self.observed = Some((rv, Instant::now()));
        }
    }

    /// Whether the Lease has gone unrenewed for a whole duration since this candidate saw it
    /// change.
    fn expired(&self) -> bool {
        self.observed
            .as_ref()
            .is_some_and(|(_, at)| at.elapsed() >= self.lease_duration)
    }

    /// Campaigns until `shutdown`: publishes the current fence (Some while leading) on `tx`.
    /// A leader that fails to renew within `renew_deadline` publishes None at once; the store
    /// would refuse its fenced writes anyway once another candidate takes over.
    pub async fn run(
        mut self,
        timing: Timing,
        tx: watch::Sender<Option<Fence>>,
        shutdown: CancellationToken,
    ) {
        let mut last_renewed: Option<Instant> = None;
        loop {
            let round = tokio::time::timeout(timing.renew_deadline, self.try_acquire_or_renew());
            let result = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = round => r,
            };
            match result {
                Ok(Ok(Some(fence))) => {
                    last_renewed = Some(Instant::now());
                    tx.send_if_modified(|cur| {
                        let changed = cur.as_ref() != Some(&fence);
                        *cur = Some(fence);
                        changed
                    });
                }
                Ok(Ok(None)) => {
                    last_renewed = None;
                    tx.send_if_modified(|cur| cur.take().is_some());
                }
                Ok(Err(_)) | Err(_) => {
                    let stale = last_renewed.is_none_or(|t| t.elapsed() >= timing.renew_deadline);
                    if stale {
                        tx.send_if_modified(|cur| cur.take().is_some());
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(timing.retry_period) => {}
            }
        }
        if tx.borrow().is_some() {
            tx.send_replace(None);
            let _ = self.release().await;
        }
    }
}
