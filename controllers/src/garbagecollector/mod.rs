//! The garbage collector: deletes objects whose owners are gone, finishes foreground
//! deletions once the owner's blocking dependents are gone, and orphans dependents for
//! deletions that asked for it (the `foregroundDeletion` and `orphan` finalizers the API
//! server adds), over every kind served, as kube-controller-manager's does.
//!
//! The picture of ownership ([`graph`]) and the decisions ([`decide`]) are pure; this module
//! is the shell: one watch per kind feeding the graph, a [`queue`] of uids to look at, and the
//! writes, each fenced. Watches of different kinds are independent, so the graph may see a
//! dependent before its owner: nothing is deleted, and no reference dropped, because the
//! cache says an owner is absent. The object and its owners are read from the server first,
//! and only an owner the server does not have (or has under another uid) counts as gone.

pub mod decide;
pub mod graph;
pub mod queue;

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::future::{join_all, BoxFuture};
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use keel_client::api::Preconditions;
use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use keel_client::watcher::{watcher, Event};
use keel_client::{Api, DeleteParams, DynamicObject, Error, Patch, WatchParams};
use keel_types::ResourceInfo;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::context::Context;
use decide::{decide, foreground, unblocked, without, Decision, Foreground, OwnerState};
use graph::{Change, Graph, Node, Uid, FOREGROUND, ORPHAN};
use queue::{WorkQueue, BACKOFF};

/// Objects looked at concurrently (kube-controller-manager's `--concurrent-gc-syncs`).
const CONCURRENCY: usize = 20;
/// Changes buffered between the watches and the graph.
const CHANGES: usize = 4096;
/// Changes applied to the graph before work is handed out again.
const BATCH: usize = 1024;
/// How long to wait for every kind's first list before working anyway: a kind that cannot be
/// listed must not stop the rest (the server is asked before anything is deleted).
const SYNC_GRACE: Duration = Duration::from_secs(30);

/// The kinds collected: every kind served except Events, which nothing owns and which are
/// too many to watch for nothing.
pub fn collected_kinds() -> Vec<&'static ResourceInfo> {
    keel_types::kinds::all()
        .iter()
        .filter(|k| !(k.kind == "Event" && k.group.is_empty()))
        .collect()
}

struct State {
    ctx: Arc<Context>,
    graph: Mutex<Graph>,
}

impl State {
    fn graph(&self) -> std::sync::MutexGuard<'_, Graph> {
        self.graph.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One watch's report: which kind (its index in the collected kinds) and what changed.
type Report = (usize, Option<Change>);

/// Runs the garbage collector until `stop`.
pub fn start(ctx: Arc<Context>, stop: CancellationToken) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let kinds = collected_kinds();
        let watches = TaskTracker::new();
        let (reports, received) = mpsc::channel(CHANGES);
        for (index, info) in kinds.iter().copied().enumerate() {
            watches.spawn(watch_kind(
                ctx.clone(),
                info,
                index,
                reports.clone(),
                stop.clone(),
            ));
        }
        drop(reports);
        watches.close();
        let state = Arc::new(State {
            ctx,
            graph: Mutex::new(Graph::new()),
        });
        run(state, kinds.len(), received, stop).await;
        watches.wait().await;
    })
}

/// Feeds one kind's watch events to the graph until `stop`.
async fn watch_kind(
    ctx: Arc<Context>,
    info: &'static ResourceInfo,
    index: usize,
    reports: mpsc::Sender<Report>,
    stop: CancellationToken,
) {
    let api = Api::<DynamicObject>::for_resource(
        ctx.client().clone(),
        info.group,
        info.version,
        info.plural,
        "",
    );
    let stream = watcher(api, WatchParams::default());
    let mut stream = std::pin::pin!(stream);
    loop {
        let next = tokio::select! {
            _ = stop.cancelled() => return,
            next = stream.next() => next,
        };
        let event = match next {
            Some(Ok(event)) => event,
            Some(Err(error)) => {
                tracing::debug!(kind = info.kind, %error, "garbage collector watch; retrying");
                continue;
            }
            None => return,
        };
        let node = |o: &DynamicObject| Node::of(info.api_version, info.kind, &o.metadata);
        let change = match event {
            Event::Applied(o) => node(&o).map(Change::Applied),
            Event::Deleted(o) => node(&o).map(Change::Deleted),
            Event::Restarted(objects) => Some(Change::Restarted {
                api_version: info.api_version.to_string(),
                kind: info.kind.to_string(),
                nodes: objects.iter().filter_map(node).collect(),
            }),
        };
        if reports.send((index, change)).await.is_err() {
            return;
        }
    }
}

/// The loop: applies what the watches report to the graph, queues what it concerns, and looks
/// at queued objects, at most [`CONCURRENCY`] at a time.
async fn run(
    state: Arc<State>,
    kinds: usize,
    mut reports: mpsc::Receiver<Report>,
    stop: CancellationToken,
) {
    let metrics = crate::metrics::of("garbagecollector");
    let mut queue = WorkQueue::new(BACKOFF);
    let mut synced: HashSet<usize> = HashSet::new();
    let began = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    loop {
        let working = synced.len() == kinds || began.elapsed() >= SYNC_GRACE;
        if working {
            while in_flight.len() < CONCURRENCY {
                let Some(uid) = queue.next(Instant::now()) else {
                    break;
                };
                in_flight.push(look_at(state.clone(), uid));
            }
        }
        metrics.depth.store(queue.len(), Ordering::Relaxed);
        // A retry due while every slot is busy waits for a slot, not for the clock.
        let wake = if working {
            queue.next_retry().filter(|_| in_flight.len() < CONCURRENCY)
        } else {
            Some(began + SYNC_GRACE)
        };
        tokio::select! {
            _ = stop.cancelled() => break,
            report = reports.recv() => {
                let Some(first) = report else { break };
                let mut batch = vec![first];
                while batch.len() < BATCH {
                    match reports.try_recv() {
                        Ok(report) => batch.push(report),
                        Err(_) => break,
                    }
                }
                let was_synced = synced.len() == kinds;
                let mut graph = state.graph();
                for (index, change) in batch {
                    let Some(change) = change else { continue };
                    if matches!(change, Change::Restarted { .. }) {
                        synced.insert(index);
                    }
                    for uid in graph.apply(change) {
                        queue.add(uid);
                    }
                }
                if !was_synced && synced.len() == kinds {
                    tracing::debug!(objects = graph.len(), queued = queue.len(), "garbage collector: every kind listed");
                }
            }
            Some((uid, outcome, took)) = in_flight.next(), if !in_flight.is_empty() => {
                metrics.observe(took, outcome.is_err());
                match outcome {
                    Ok(more) => {
                        queue.done(&uid, true, Instant::now());
                        for uid in more {
                            queue.add(uid);
                        }
                    }
                    Err(error) => {
                        tracing::debug!(%uid, %error, "garbage collection failed; will retry");
                        queue.done(&uid, false, Instant::now());
                    }
                }
            }
            _ = sleep_until(wake), if wake.is_some() => {}
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
    }
}

/// Looks at the object `uid`; returns the uids to look at next.
async fn look_at(state: Arc<State>, uid: Uid) -> (Uid, Result<Vec<Uid>, Error>, Duration) {
    let began = Instant::now();
    let node = state.graph().node(&uid).cloned();
    let outcome = match node {
        // Gone since it was queued: whoever it concerned was queued by its deletion.
        None => Ok(Vec::new()),
        Some(node) if node.orphaning() => orphan_dependents(&state, &node).await,
        Some(node) if node.deleting_dependents() => finish_foreground(&state, &node).await,
        // Being deleted is a one-way trip: its deletion will concern its dependents.
        Some(node) if node.deleting || node.owners.is_empty() => Ok(Vec::new()),
        Some(node) => attempt_to_delete(&state, &node).await,
    };
    (uid, outcome, began.elapsed())
}

/// What the graph says of `node`'s own dependents.
fn surroundings(state: &State, uid: &str) -> decide::Surroundings {
    let graph = state.graph();
    let dependents = graph.dependents(uid);
    decide::Surroundings {
        has_dependents: !dependents.is_empty(),
        a_dependent_deletes_dependents: dependents.iter().any(|d| d.deleting_dependents()),
    }
}

/// The kind an owner reference names, if served.
fn owner_kind(reference: &OwnerReference) -> Option<&'static ResourceInfo> {
    keel_types::kinds::by_kind(&reference.api_version, &reference.kind)
}

/// An owner's state as the graph has it: a first opinion, never the last word for an absent
/// one.
fn cached_state(graph: &Graph, reference: &OwnerReference) -> OwnerState {
    if owner_kind(reference).is_none() {
        return OwnerState::Unknown;
    }
    match graph.node(&reference.uid) {
        Some(owner) if owner.deleting_dependents() => OwnerState::Waiting,
        Some(_) => OwnerState::Solid,
        None => OwnerState::Absent,
    }
}

/// An owner's state as the server has it now.
async fn live_state(
    state: &State,
    dependent: &Node,
    reference: &OwnerReference,
) -> Result<OwnerState, Error> {
    let Some(info) = owner_kind(reference) else {
        tracing::info!(
            dependent = %dependent.identity.name,
            api_version = %reference.api_version,
            kind = %reference.kind,
            "an owner reference names a kind not served; leaving it alone"
        );
        return Ok(OwnerState::Unknown);
    };
    let namespace = if info.namespaced() {
        match &dependent.identity.namespace {
            Some(namespace) => namespace.as_str(),
            // A cluster-scoped object cannot be owned by a namespaced one: there is no such
            // owner to find.
            None => return Ok(OwnerState::Absent),
        }
    } else {
        ""
    };
    match state
        .ctx
        .dynamic_api(info, namespace)
        .get(&reference.name)
        .await
    {
        Err(error) if error.is_not_found() => Ok(OwnerState::Absent),
        Err(error) => Err(error),
        Ok(owner) if owner.metadata.uid.as_deref() != Some(reference.uid.as_str()) => {
            Ok(OwnerState::Absent)
        }
        Ok(owner) => {
            let waiting = owner.metadata.deletion_timestamp.is_some()
                && owner
                    .metadata
                    .finalizers
                    .iter()
                    .flatten()
                    .any(|f| f == FOREGROUND);
            Ok(if waiting {
                OwnerState::Waiting
            } else {
                OwnerState::Solid
            })
        }
    }
}

/// The object `node` names, as the server has it now: None if it is gone or replaced.
async fn live_object(
    state: &State,
    node: &Node,
) -> Result<Option<(Api<DynamicObject>, DynamicObject)>, Error> {
    let identity = &node.identity;
    let Some(info) = keel_types::kinds::by_kind(&identity.api_version, &identity.kind) else {
        return Ok(None);
    };
    let api = state
        .ctx
        .dynamic_api(info, identity.namespace.as_deref().unwrap_or(""));
    match api.get(&identity.name).await {
        Err(error) if error.is_not_found() => Ok(None),
        Err(error) => Err(error),
        Ok(object) if object.metadata.uid.as_deref() != Some(identity.uid.as_str()) => Ok(None),
        Ok(object) => Ok(Some((api, object))),
    }
}

/// Deletes `node` if no owner of it remains, or drops its references to owners that are gone
/// or waiting, as the server confirms.
async fn attempt_to_delete(state: &State, node: &Node) -> Result<Vec<Uid>, Error> {
    let around = surroundings(state, node.uid());
    let cached = {
        let graph = state.graph();
        let states: Vec<_> = node
            .owners
            .iter()
            .map(|r| (r, cached_state(&graph, r)))
            .collect();
        decide(&states, &node.finalizers, around)
    };
    if cached == Decision::Keep {
        return Ok(Vec::new());
    }
    // The cache suggests a change: decide again on what the server holds now.
    let Some((api, object)) = live_object(state, node).await? else {
        return Ok(Vec::new());
    };
    let Some(live) = Node::of(
        &node.identity.api_version,
        &node.identity.kind,
        &object.metadata,
    ) else {
        return Ok(Vec::new());
    };
    if live.deleting {
        // Its own update brings it back if there is work on it.
        return Ok(Vec::new());
    }
    let mut states = Vec::with_capacity(live.owners.len());
    for reference in &live.owners {
        states.push((reference, live_state(state, &live, reference).await?));
    }
    let name = &live.identity.name;
    match decide(&states, &live.finalizers, around) {
        Decision::Keep => {}
        Decision::RemoveReferences(uids) => {
            tracing::debug!(kind = %live.identity.kind, %name, owners = ?uids, "dropping owner references");
            set_references(&api, &object, &without(&live.owners, &uids)).await?;
        }
        Decision::Delete {
            propagation,
            unblock_first,
        } => {
            if unblock_first {
                set_references(&api, &object, &unblocked(&live.owners)).await?;
            }
            tracing::debug!(kind = %live.identity.kind, %name, policy = propagation.policy(), "deleting an object whose owners are gone");
            let params = DeleteParams {
                propagation_policy: Some(propagation.policy().to_string()),
                preconditions: Some(Preconditions {
                    uid: Some(live.identity.uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match api.delete(name, &params).await {
                // Gone, or replaced by another object of the same name: nothing to do.
                Err(error) if error.is_not_found() || error.is_conflict() => {}
                Err(error) => return Err(error),
                Ok(_) => {}
            }
        }
    }
    Ok(Vec::new())
}

/// For an owner deleted in the foreground: removes its finalizer once no dependent blocks it,
/// and otherwise has its blocking dependents looked at (so they are deleted).
async fn finish_foreground(state: &State, node: &Node) -> Result<Vec<Uid>, Error> {
    let step = {
        let graph = state.graph();
        foreground(node.uid(), &graph.dependents(node.uid()))
    };
    match step {
        Foreground::Wait(dependents) => Ok(dependents),
        Foreground::Finish => {
            remove_finalizer(state, node, FOREGROUND).await?;
            Ok(Vec::new())
        }
    }
}

/// For an owner deleted with orphaning: removes its references from every dependent, then its
/// `orphan` finalizer.
async fn orphan_dependents(state: &State, node: &Node) -> Result<Vec<Uid>, Error> {
    let dependents: Vec<Node> = state
        .graph()
        .dependents(node.uid())
        .into_iter()
        .cloned()
        .collect();
    let owner: BTreeSet<Uid> = BTreeSet::from([node.uid().to_string()]);
    for batch in dependents.chunks(CONCURRENCY) {
        let results = join_all(batch.iter().map(|d| release(state, d, &owner))).await;
        results.into_iter().collect::<Result<Vec<()>, Error>>()?;
    }
    remove_finalizer(state, node, ORPHAN).await?;
    Ok(Vec::new())
}

/// Removes `dependent`'s references to `owner`, if it still has any.
async fn release(state: &State, dependent: &Node, owner: &BTreeSet<Uid>) -> Result<(), Error> {
    let Some((api, object)) = live_object(state, dependent).await? else {
        return Ok(());
    };
    let references = object.metadata.owner_references.clone().unwrap_or_default();
    let kept = without(&references, owner);
    if kept.len() == references.len() {
        return Ok(());
    }
    set_references(&api, &object, &kept).await
}

/// Removes `finalizer` from the object `node` names, if it is still that object and still
/// has it. An object being deleted whose last finalizer goes is deleted by the server.
async fn remove_finalizer(state: &State, node: &Node, finalizer: &str) -> Result<(), Error> {
    let Some((api, object)) = live_object(state, node).await? else {
        return Ok(());
    };
    let finalizers = object.metadata.finalizers.clone().unwrap_or_default();
    let kept: Vec<&String> = finalizers.iter().filter(|f| *f != finalizer).collect();
    if kept.len() == finalizers.len() {
        return Ok(());
    }
    tracing::debug!(kind = %node.identity.kind, name = %node.identity.name, finalizer, "removing a finalizer");
    let change = if kept.is_empty() {
        json!({"op": "remove", "path": "/metadata/finalizers"})
    } else {
        json!({"op": "add", "path": "/metadata/finalizers", "value": kept})
    };
    patch_checked(&api, &object, change).await
}

/// Replaces `object`'s owner references with `references`.
async fn set_references(
    api: &Api<DynamicObject>,
    object: &DynamicObject,
    references: &[OwnerReference],
) -> Result<(), Error> {
    let change = if references.is_empty() {
        json!({"op": "remove", "path": "/metadata/ownerReferences"})
    } else {
        json!({"op": "add", "path": "/metadata/ownerReferences", "value": references})
    };
    patch_checked(api, object, change).await
}

/// Applies the JSON patch operation `change` to `object` only if the stored object is still
/// the one read: the same uid at the same resourceVersion.
async fn patch_checked(
    api: &Api<DynamicObject>,
    object: &DynamicObject,
    change: Value,
) -> Result<(), Error> {
    let name = object.metadata.name.clone().unwrap_or_default();
    let patch = json!([
        {"op": "test", "path": "/metadata/uid", "value": object.metadata.uid},
        {"op": "test", "path": "/metadata/resourceVersion", "value": object.metadata.resource_version},
        change,
    ]);
    match api.patch(&name, &Patch::Json(patch)).await {
        Err(error) if error.is_not_found() => Ok(()),
        Err(error) => Err(error),
        Ok(_) => Ok(()),
    }
}
