//! The endpoint controller (kube-controller-manager's `endpoint`): keeps a core/v1 Endpoints
//! beside every Service that has a selector, listing the pods it selects ([`desired`] decides
//! what it says). Services without a selector are left alone: their Endpoints are written by
//! hand. When a Service goes, the Endpoints this controller made for it go too.
//!
//! Two loops on the SDK runtime: one per Service (woken by its pods, through
//! [`Memberships`], and by its Endpoints), and one per Endpoints that deletes those whose
//! Service is gone (a deleted Service is never reconciled by the first).

pub mod desired;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use keel_client::api::Preconditions;
use keel_client::k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use keel_client::runtime::{Action, Controller};
use keel_client::store::Store;
use keel_client::{DeleteParams, Error, ObjectKey};
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::events;
use crate::service_pods::{self, pod_changes, services_of, Memberships};
use desired::Write;

/// The component name on this controller's Events.
const COMPONENT: &str = "endpoint-controller";
/// Kubernetes skips Endpoints used as leader-election locks.
const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";

pub fn start(ctx: Arc<Context>, stop: CancellationToken) -> BoxFuture<'static, ()> {
    Box::pin(run(ctx, stop))
}

struct State {
    ctx: Arc<Context>,
    services: Store<Service>,
    pods: Store<Pod>,
    endpoints: Store<Endpoints>,
}

async fn run(ctx: Arc<Context>, stop: CancellationToken) {
    let services = ctx.informers.of::<Service>();
    let pods = ctx.informers.of::<Pod>();
    let endpoints = ctx.informers.of::<Endpoints>();
    let ready = async {
        services.store().wait_until_ready().await?;
        pods.store().wait_until_ready().await?;
        endpoints.store().wait_until_ready().await
    };
    tokio::select! {
        _ = stop.cancelled() => return,
        ready = ready => if ready.is_err() { return },
    }
    let state = Arc::new(State {
        ctx: ctx.clone(),
        services: services.store(),
        pods: pods.store(),
        endpoints: endpoints.store(),
    });
    let memberships = Arc::new(Memberships::new());
    let service_store = services.store();
    let sync = Controller::for_events(services.subscribe())
        .watches_events(pod_changes(pods.subscribe()), move |change| {
            services_of(&service_store, &memberships, change)
        })
        .watches_events(endpoints.subscribe(), |e: &Endpoints| [ObjectKey::of(e)])
        .run(sync_service, retry, state.clone(), stop.clone())
        .for_each(|outcome| async move {
            if let Err(error) = outcome {
                tracing::debug!(%error, "endpoint controller");
            }
        });
    let cleanup = Controller::for_events(endpoints.subscribe())
        .watches_events(services.subscribe(), |s: &Service| [ObjectKey::of(s)])
        .run(clean_up, retry, state, stop.clone())
        .for_each(|outcome| async move {
            if let Err(error) = outcome {
                tracing::debug!(%error, "endpoint controller cleanup");
            }
        });
    tokio::join!(sync, cleanup);
}

fn retry<K>(_: &Arc<K>, _: &Error, _: &State) -> Action {
    Action::requeue(Duration::from_secs(1))
}

/// Brings one Service's Endpoints in line with its pods.
async fn sync_service(service: Arc<Service>, state: Arc<State>) -> Result<Action, Error> {
    if service_pods::selector(&service).is_none() || service_pods::is_external_name(&service) {
        return Ok(Action::await_change());
    }
    let namespace = service.metadata.namespace.clone().unwrap_or_default();
    let all = state.pods.state();
    let selected: Vec<&Pod> = all
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| service_pods::selects(&service, p))
        .collect();
    let current = state.endpoints.get(&ObjectKey::of(service.as_ref()));
    let api = state.ctx.api::<Endpoints>(&namespace);
    let (result, written) = match desired::reconcile(&service, &selected, current.as_deref()) {
        Write::Nothing => return Ok(Action::await_change()),
        Write::Create(e) => (api.create(&e).await, e),
        Write::Update(e) => {
            let name = e.metadata.name.clone().unwrap_or_default();
            (api.replace(&name, &e).await, e)
        }
    };
    match result {
        Ok(_) => Ok(Action::await_change()),
        // A stale cache: the next event brings the newer object.
        Err(error) if error.is_conflict() || error.is_fence_lost() => Err(error),
        Err(error) => {
            state.ctx.recorder.event(
                COMPONENT,
                events::reference(&written),
                events::WARNING,
                "FailedToUpdateEndpoint",
                format!(
                    "Failed to update endpoint {namespace}/{}: {error}",
                    name(&service)
                ),
            );
            Err(error)
        }
    }
}

fn name(service: &Service) -> &str {
    service.metadata.name.as_deref().unwrap_or_default()
}

/// Deletes Endpoints this controller made once their Service is gone.
async fn clean_up(endpoints: Arc<Endpoints>, state: Arc<State>) -> Result<Action, Error> {
    let meta = &endpoints.metadata;
    let managed = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(desired::MANAGED_BY))
        .is_some_and(|v| v == desired::CONTROLLER_NAME);
    let lock = meta
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(LEADER_ANNOTATION));
    if !managed
        || lock
        || state
            .services
            .get(&ObjectKey::of(endpoints.as_ref()))
            .is_some()
    {
        return Ok(Action::await_change());
    }
    let namespace = meta.namespace.clone().unwrap_or_default();
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: meta.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    let name = meta.name.clone().unwrap_or_default();
    match state
        .ctx
        .api::<Endpoints>(&namespace)
        .delete(&name, &params)
        .await
    {
        Ok(_) => Ok(Action::await_change()),
        Err(error) if error.is_not_found() => Ok(Action::await_change()),
        Err(error) => Err(error),
    }
}
