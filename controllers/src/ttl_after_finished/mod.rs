//! The `ttl-after-finished` controller: deletes a finished Job once its
//! `ttlSecondsAfterFinished` has passed, with background propagation so its pods go after it,
//! as Kubernetes' TTL-after-finished controller does. Before deleting it re-reads the job from
//! the server, so a TTL changed or removed meanwhile is honoured, and deletes with a uid
//! precondition, so a new job of the same name is never hit.

pub mod expiry;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use keel_client::api::Preconditions;
use keel_client::k8s_openapi::api::batch::v1::Job;
use keel_client::k8s_openapi::chrono::Utc;
use keel_client::runtime::{Action, Controller};
use keel_client::DeleteParams;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use expiry::{verdict, Verdict};

pub fn start(ctx: Arc<Context>, stop: CancellationToken) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let jobs = ctx.informers.of::<Job>().subscribe();
        Controller::for_events(jobs)
            .run(reconcile, error_policy, ctx, stop)
            .for_each(|outcome| async move {
                if let Err(error) = outcome {
                    tracing::debug!(%error, "ttl-after-finished");
                }
            })
            .await;
    })
}

fn error_policy(_: &Arc<Job>, _: &keel_client::Error, _: &Context) -> Action {
    Action::requeue(Duration::from_secs(1))
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Context>) -> Result<Action, keel_client::Error> {
    match verdict(&job, Utc::now()) {
        Verdict::Keep => return Ok(Action::await_change()),
        Verdict::Wait(after) => return Ok(Action::requeue(after)),
        Verdict::Delete => {}
    }
    let namespace = job.metadata.namespace.clone().unwrap_or_default();
    let name = job.metadata.name.clone().unwrap_or_default();
    let api = ctx.api::<Job>(&namespace);
    // The cache may be stale: decide again on the server's copy.
    let fresh = match api.get(&name).await {
        Ok(fresh) => fresh,
        Err(e) if e.is_not_found() => return Ok(Action::await_change()),
        Err(e) => return Err(e),
    };
    match verdict(&fresh, Utc::now()) {
        Verdict::Keep => return Ok(Action::await_change()),
        Verdict::Wait(after) => return Ok(Action::requeue(after)),
        Verdict::Delete => {}
    }
    let params = DeleteParams {
        propagation_policy: Some("Background".into()),
        preconditions: Some(Preconditions {
            uid: fresh.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&name, &params).await {
        Ok(_) => Ok(Action::await_change()),
        Err(e) if e.is_not_found() || e.is_conflict() => Ok(Action::await_change()),
        Err(e) => Err(e),
    }
}
