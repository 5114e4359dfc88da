//! The ServiceAccount controller (kube-controller-manager's `serviceaccount`): a `default`
//! ServiceAccount in every active namespace, created again if it is deleted. It only ever
//! creates: an existing `default` ServiceAccount is left as its owner made it.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use keel_client::k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use keel_client::runtime::{Action, Controller};
use keel_client::store::Store;
use keel_client::{Error, ObjectKey};
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use desired::{missing, MANAGED};

pub mod desired;

pub fn start(ctx: Arc<Context>, stop: CancellationToken) -> BoxFuture<'static, ()> {
    Box::pin(run(ctx, stop))
}

struct State {
    ctx: Arc<Context>,
    accounts: Store<ServiceAccount>,
}

async fn run(ctx: Arc<Context>, stop: CancellationToken) {
    let namespaces = ctx.informers.of::<Namespace>();
    let accounts = ctx.informers.of::<ServiceAccount>();
    let ready = async {
        namespaces.store().wait_until_ready().await?;
        accounts.store().wait_until_ready().await
    };
    tokio::select! {
        _ = stop.cancelled() => return,
        ready = ready => if ready.is_err() { return },
    }
    let state = Arc::new(State {
        ctx: ctx.clone(),
        accounts: accounts.store(),
    });
    Controller::for_events(namespaces.subscribe())
        .watches_events(accounts.subscribe(), |sa: &ServiceAccount| {
            let managed = MANAGED.contains(&sa.metadata.name.as_deref().unwrap_or_default());
            let namespace = sa.metadata.namespace.clone().filter(|_| managed);
            namespace.map(ObjectKey::cluster)
        })
        .run(sync_namespace, retry, state, stop.clone())
        .for_each(|outcome| async move {
            if let Err(error) = outcome {
                tracing::debug!(%error, "serviceaccount controller");
            }
        })
        .await;
}

fn retry(_: &Arc<Namespace>, _: &Error, _: &State) -> Action {
    Action::requeue(Duration::from_secs(1))
}

async fn sync_namespace(namespace: Arc<Namespace>, state: Arc<State>) -> Result<Action, Error> {
    let ns = namespace.metadata.name.clone().unwrap_or_default();
    let exists = |name: &str| {
        state
            .accounts
            .get(&ObjectKey::namespaced(ns.clone(), name))
            .is_some()
    };
    for account in missing(&namespace, exists) {
        match state.ctx.api::<ServiceAccount>(&ns).create(&account).await {
            Ok(_) => {}
            // Already there (the cache lags) or the namespace began terminating meanwhile.
            Err(e) if e.is_conflict() || e.code() == Some(403) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Action::await_change())
}
