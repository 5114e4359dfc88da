//! The EndpointSlice controller (kube-controller-manager's `endpointslice`): keeps the
//! discovery.k8s.io/v1 EndpointSlices of every Service with a selector in line with the pods
//! it selects ([`reconciler`] decides the writes). Slices are named client-side from the
//! Service's name and their creations and deletions are expected, so a slice cache that lags
//! never makes the controller create a slice twice or act on one it already deleted; updates
//! carry the resourceVersion they were computed from, so a stale one is refused and retried.
//! Slices of a deleted Service go with it through their ownerReference.

pub mod reconciler;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::StreamExt;
use keel_client::api::Preconditions;
use keel_client::k8s_openapi::api::core::v1::{Node, Pod, Service};
use keel_client::k8s_openapi::api::discovery::v1::EndpointSlice;
use keel_client::runtime::{Action, Controller};
use keel_client::store::Store;
use keel_client::{DeleteParams, Error, ObjectKey};
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::events;
use crate::expectations::Expectations;
use crate::pods::generate_name;
use crate::service_pods::{self, pod_changes, services_of, Memberships};
use reconciler::{Inputs, Plan};

/// The component name on this controller's Events.
const COMPONENT: &str = "endpoint-slice-controller";
/// How soon a Service is looked at again when it waits for its cache or for a node.
const RECHECK: Duration = Duration::from_secs(1);

pub fn start(ctx: Arc<Context>, stop: CancellationToken) -> BoxFuture<'static, ()> {
    Box::pin(run(ctx, stop))
}

struct State {
    ctx: Arc<Context>,
    pods: Store<Pod>,
    slices: Store<EndpointSlice>,
    nodes: Store<Node>,
    expectations: Arc<Expectations>,
}

async fn run(ctx: Arc<Context>, stop: CancellationToken) {
    let services = ctx.informers.of::<Service>();
    let pods = ctx.informers.of::<Pod>();
    let slices = ctx.informers.of::<EndpointSlice>();
    let nodes = ctx.informers.of::<Node>();
    let ready = async {
        services.store().wait_until_ready().await?;
        pods.store().wait_until_ready().await?;
        slices.store().wait_until_ready().await?;
        nodes.store().wait_until_ready().await
    };
    tokio::select! {
        _ = stop.cancelled() => return,
        ready = ready => if ready.is_err() { return },
    }
    let expectations = Arc::new(Expectations::new());
    let state = Arc::new(State {
        ctx: ctx.clone(),
        pods: pods.store(),
        slices: slices.store(),
        nodes: nodes.store(),
        expectations: expectations.clone(),
    });
    let memberships = Arc::new(Memberships::new());
    let service_store = services.store();
    let slice_events = slices.subscribe().inspect(move |event| {
        if let Ok(event) = event {
            expectations.observe(event);
        }
    });
    Controller::for_events(services.subscribe())
        .owns_events(slice_events)
        .watches_events(pod_changes(pods.subscribe()), move |change| {
            services_of(&service_store, &memberships, change)
        })
        .run(sync_service, retry, state, stop.clone())
        .for_each(|outcome| async move {
            if let Err(error) = outcome {
                tracing::debug!(%error, "endpointslice controller");
            }
        })
        .await;
}

fn retry(_: &Arc<Service>, _: &Error, _: &State) -> Action {
    Action::requeue(RECHECK)
}

/// The slices labelled as `service`'s, from the cache.
fn slices_of(slices: &Store<EndpointSlice>, service: &Service) -> Vec<Arc<EndpointSlice>> {
    slices
        .state()
        .into_iter()
        .filter(|s| {
            let labels = s.metadata.labels.as_ref();
            let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
            s.metadata.namespace == service.metadata.namespace
                && label(reconciler::SERVICE_NAME) == service.metadata.name.as_deref()
                && label(reconciler::MANAGED_BY) == Some(reconciler::CONTROLLER_NAME)
        })
        .collect()
}

/// Brings one Service's slices in line with its pods.
async fn sync_service(service: Arc<Service>, state: Arc<State>) -> Result<Action, Error> {
    if service_pods::selector(&service).is_none()
        || service_pods::is_external_name(&service)
        || service.metadata.deletion_timestamp.is_some()
    {
        return Ok(Action::await_change());
    }
    let key = ObjectKey::of(service.as_ref());
    if !state.expectations.satisfied(&key, Instant::now()) {
        return Ok(Action::requeue(RECHECK));
    }
    let (plan, missing_node) = decide(&state, &service);
    if let Err(error) = apply(&state, &key, plan).await {
        if !error.is_fence_lost() && !error.is_conflict() {
            state.ctx.recorder.event(
                COMPONENT,
                events::reference(service.as_ref()),
                events::WARNING,
                "FailedToUpdateEndpointSlices",
                format!(
                    "Error updating Endpoint Slices for Service {}/{}: {error}",
                    key.namespace.as_deref().unwrap_or_default(),
                    key.name
                ),
            );
        }
        return Err(error);
    }
    Ok(if missing_node {
        Action::requeue(RECHECK)
    } else {
        Action::await_change()
    })
}

/// The writes `service` needs, from the caches; and whether a pod waits for its node.
fn decide(state: &State, service: &Service) -> (Plan, bool) {
    let all = state.pods.state();
    let selected: Vec<&Pod> = all
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| service_pods::selects(service, p))
        .collect();
    let existing = slices_of(&state.slices, service);
    let existing: Vec<&EndpointSlice> = existing.iter().map(|s| s.as_ref()).collect();
    let zone_of = |node: &str| {
        let node = state.nodes.get(&ObjectKey::cluster(node))?;
        let labels = node.metadata.labels.as_ref();
        Some(labels.and_then(|l| l.get(reconciler::ZONE_LABEL)).cloned())
    };
    let inputs = Inputs {
        zone_of: &zone_of,
        max_per_slice: state.ctx.options.max_endpoints_per_slice,
    };
    reconciler::plan(service, &selected, &existing, &inputs)
}

/// Writes `plan`: creations, then updates, then deletions, as Kubernetes orders them.
/// Returns the first error after trying every write.
async fn apply(state: &State, key: &ObjectKey, plan: Plan) -> Result<(), Error> {
    let namespace = key.namespace.clone().unwrap_or_default();
    let api = state.ctx.api::<EndpointSlice>(&namespace);
    let prefix = format!("{}-", key.name);
    let mut creates = plan.create;
    for slice in &mut creates {
        slice.metadata.name = Some(generate_name(&prefix));
    }
    let child = |s: &EndpointSlice| {
        ObjectKey::namespaced(
            namespace.clone(),
            s.metadata.name.clone().unwrap_or_default(),
        )
    };
    let now = Instant::now();
    state
        .expectations
        .expect_creations(key, creates.iter().map(child), now);
    state
        .expectations
        .expect_deletions(key, plan.delete.iter().map(child), now);
    let mut first: Option<Error> = None;
    for slice in &creates {
        if let Err(error) = api.create(slice).await {
            state.expectations.write_failed(key, &child(slice));
            first.get_or_insert(error);
        }
    }
    for slice in &plan.update {
        let name = slice.metadata.name.clone().unwrap_or_default();
        if let Err(error) = api.replace(&name, slice).await {
            first.get_or_insert(error);
        }
    }
    for slice in &plan.delete {
        let name = slice.metadata.name.clone().unwrap_or_default();
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: slice.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        if let Err(error) = api.delete(&name, &params).await {
            // Gone already (its event may have come before the expectation): nothing to wait for.
            state.expectations.write_failed(key, &child(slice));
            if !error.is_not_found() {
                first.get_or_insert(error);
            }
        }
    }
    first.map_or(Ok(()), Err)
}
