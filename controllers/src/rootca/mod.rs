//! The root CA publisher (kube-controller-manager's `root-ca-cert-publisher`): a
//! `kube-root-ca.crt` ConfigMap in every active namespace holding the cluster's CA
//! certificate, so pods can verify the API server ([`desired`] decides what it says). The CA
//! comes from the controller manager's options; without one (masters serving no TLS) the
//! controller does not run.

pub mod desired;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use keel_client::k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use keel_client::runtime::{Action, Controller};
use keel_client::store::Store;
use keel_client::{Error, ObjectKey};
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use desired::Write;

pub fn start(ctx: Arc<Context>, stop: CancellationToken) -> BoxFuture<'static, ()> {
    Box::pin(run(ctx, stop))
}

struct State {
    ctx: Arc<Context>,
    config_maps: Store<ConfigMap>,
    ca: String,
}

async fn run(ctx: Arc<Context>, stop: CancellationToken) {
    let Some(ca) = ctx.options.root_ca.clone() else {
        tracing::info!("no cluster CA known: root-ca-cert-publisher does not run");
        return;
    };
    let namespaces = ctx.informers.of::<Namespace>();
    let config_maps = ctx.informers.of::<ConfigMap>();
    let ready = async {
        namespaces.store().wait_until_ready().await?;
        config_maps.store().wait_until_ready().await
    };
    tokio::select! {
        _ = stop.cancelled() => return,
        ready = ready => if ready.is_err() { return },
    }
    let state = Arc::new(State {
        ctx: ctx.clone(),
        config_maps: config_maps.store(),
        ca,
    });
    Controller::for_events(namespaces.subscribe())
        .watches_events(config_maps.subscribe(), |cm: &ConfigMap| {
            let ours = cm.metadata.name.as_deref() == Some(desired::NAME);
            cm.metadata
                .namespace
                .clone()
                .filter(|_| ours)
                .map(ObjectKey::cluster)
        })
        .run(sync_namespace, retry, state, stop.clone())
        .for_each(|outcome| async move {
            if let Err(error) = outcome {
                tracing::debug!(%error, "root-ca-cert-publisher");
            }
        })
        .await;
}

fn retry(_: &Arc<Namespace>, _: &Error, _: &State) -> Action {
    Action::requeue(Duration::from_secs(1))
}

async fn sync_namespace(namespace: Arc<Namespace>, state: Arc<State>) -> Result<Action, Error> {
    let ns = namespace.metadata.name.clone().unwrap_or_default();
    let current = state
        .config_maps
        .get(&ObjectKey::namespaced(ns.clone(), desired::NAME));
    let api = state.ctx.api::<ConfigMap>(&ns);
    let result = match desired::reconcile(&namespace, current.as_deref(), &state.ca) {
        Write::Nothing => return Ok(Action::await_change()),
        Write::Create(cm) => api.create(&cm).await,
        Write::Update(cm) => api.replace(desired::NAME, &cm).await,
    };
    match result {
        Ok(_) => Ok(Action::await_change()),
        // The namespace began terminating meanwhile: nothing to publish there.
        Err(e) if e.code() == Some(403) => Ok(Action::await_change()),
        Err(e) => Err(e),
    }
}
