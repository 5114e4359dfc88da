//! [`Controller`]: watches one kind (and kinds related to it), caches it, and reconciles each
//! object whenever it, or something mapped to it, changes.

use std::future::Future;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use futures::stream::{self, Stream, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{ListableResource, Metadata, Resource};
use keel_types::k8s_openapi;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::action::Action;
use super::applier::{applier, Outcome, Settings, Triggers};
use super::config::Config;
use super::triggers::{own_keys, owner_keys, related_keys};
use crate::api::{Api, WatchParams};
use crate::error::Error;
use crate::object_key::ObjectKey;
use crate::reflector::reflector;
use crate::store::{store, Store};
use crate::watcher::{watcher, Event};

/// A controller for kind `K`, built up before it is [`run`](Controller::run):
///
/// ```no_run
/// # use std::sync::Arc;
/// # use std::time::Duration;
/// # use futures::StreamExt;
/// # use keel_client::k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
/// # use keel_client::runtime::{Action, Controller};
/// # use keel_client::{Api, Client, WatchParams};
/// # use tokio_util::sync::CancellationToken;
/// # #[derive(Debug, thiserror::Error)] #[error("failed")] struct Failed;
/// # async fn example(client: Client, shutdown: CancellationToken) {
/// async fn reconcile(deployment: Arc<Deployment>, ctx: Arc<Client>) -> Result<Action, Failed> {
///     // Read the world, compare with `deployment`, converge, and say when to look again.
///     Ok(Action::requeue(Duration::from_secs(300)))
/// }
/// fn error_policy(_: &Arc<Deployment>, _: &Failed, _: &Client) -> Action {
///     Action::requeue(Duration::from_secs(1))
/// }
///
/// Controller::new(Api::<Deployment>::all(client.clone()), WatchParams::default())
///     .owns(Api::<ReplicaSet>::all(client.clone()), WatchParams::default())
///     .run(reconcile, error_policy, Arc::new(client), shutdown)
///     .for_each(|outcome| async move {
///         if let Err(error) = outcome {
///             tracing::warn!(%error, "reconcile failed");
///         }
///     })
///     .await;
/// # }
/// ```
pub struct Controller<K> {
    store: Store<K>,
    triggers: Vec<Triggers>,
    config: Config,
    depth: Option<Arc<AtomicUsize>>,
}

impl<K> Controller<K>
where
    K: Resource + Metadata<Ty = ObjectMeta> + Clone + Send + Sync + 'static,
{
    /// A controller for the objects of `api` that match `params`, watched with [`watcher`].
    pub fn new(api: Api<K>, params: WatchParams) -> Self
    where
        K: ListableResource + Serialize + DeserializeOwned,
    {
        Self::for_events(watcher(api, params))
    }

    /// A controller fed by any stream of watch events for its kind (a [`watcher`], or a
    /// scripted stream in tests). The controller caches the events in its own [`Store`]; every
    /// applied object, and every object of a restart, is queued for reconciling.
    pub fn for_events<S>(events: S) -> Self
    where
        S: Stream<Item = Result<Event<K>, Error>> + Send + 'static,
    {
        let (store, writer) = store();
        let keys = reflector(writer, events)
            .flat_map(|event| stream::iter(own_keys(event)))
            .boxed();
        Self {
            store,
            triggers: vec![keys],
            config: Config::default(),
            depth: None,
        }
    }

    /// Also reconciles an object when a `C` it owns changes or is deleted: each of the
    /// child's ownerReferences naming kind `K` queues that owner (see [`owner_keys`]).
    pub fn owns<C>(self, api: Api<C>, params: WatchParams) -> Self
    where
        C: Resource
            + ListableResource
            + Metadata<Ty = ObjectMeta>
            + Serialize
            + DeserializeOwned
            + Clone
            + Send
            + 'static,
    {
        self.owns_events(watcher(api, params))
    }

    /// [`owns`](Controller::owns), fed by any stream of watch events for the child kind.
    pub fn owns_events<C, S>(self, events: S) -> Self
    where
        C: Metadata<Ty = ObjectMeta> + Send + 'static,
        S: Stream<Item = Result<Event<C>, Error>> + Send + 'static,
    {
        self.watches_events(events, owner_keys::<K, C>)
    }

    /// Also reconciles the objects `map` names whenever a `C` changes or is deleted: for
    /// relations other than ownership (a ConfigMap referenced by name, a Node a Pod runs on…).
    pub fn watches<C, F, I>(self, api: Api<C>, params: WatchParams, map: F) -> Self
    where
        C: Resource
            + ListableResource
            + Metadata<Ty = ObjectMeta>
            + Serialize
            + DeserializeOwned
            + Clone
            + Send
            + 'static,
        F: Fn(&C) -> I + Send + 'static,
        I: IntoIterator<Item = ObjectKey>,
    {
        self.watches_events(watcher(api, params), map)
    }

    /// [`watches`](Controller::watches), fed by any stream of watch events for the related
    /// kind.
    pub fn watches_events<C, S, F, I>(mut self, events: S, map: F) -> Self
    where
        C: Send + 'static,
        S: Stream<Item = Result<Event<C>, Error>> + Send + 'static,
        F: Fn(&C) -> I + Send + 'static,
        I: IntoIterator<Item = ObjectKey>,
    {
        let keys = events
            .flat_map(move |event| stream::iter(related_keys(event, &map)))
            .boxed();
        self.triggers.push(keys);
        self
    }

    pub fn with_config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Publishes the work queue's depth (keys due and waiting for a reconcile slot) to
    /// `gauge` as it changes, for metrics.
    pub fn with_depth_gauge(mut self, gauge: Arc<AtomicUsize>) -> Self {
        self.depth = Some(gauge);
        self
    }

    /// The controller's cache of `K`: filled while [`run`](Controller::run)'s stream is
    /// polled.
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// Runs the controller. Nothing happens until the returned stream is polled; poll it to
    /// the end (e.g. with `for_each`) to keep the controller running. It yields one
    /// [`Outcome`] per finished reconcile, and watch errors.
    ///
    /// The contract:
    /// - `reconcile` gets the object as the cache holds it when its turn comes, never the
    ///   event that queued it: many events may be folded into one reconcile, so it must
    ///   compare desired with actual state and be idempotent.
    /// - A key is reconciled by at most one task at a time. Events for a key being reconciled
    ///   queue it (once) for another reconcile right after.
    /// - At most [`Config::concurrency`] reconciles run at once.
    /// - On success, the key is requeued as the [`Action`] says, and its backoff is reset.
    /// - On error, `error_policy` is called with the object and the error. If it returns
    ///   [`Action::requeue`], the key is retried after the longer of that delay and the key's
    ///   exponential backoff ([`Config::backoff`]), which grows with each consecutive failure.
    ///   [`Action::await_change`] retries only on the next event. A panicking reconcile is
    ///   retried after its backoff.
    /// - An object deleted from the cache before its turn is not reconciled. Cleanup that
    ///   must happen on deletion belongs behind a finalizer: while it is set, the deleting
    ///   object stays in the cache (with `deletionTimestamp`) and is reconciled.
    /// - When `shutdown` is cancelled, no new key is started, the reconciles already running
    ///   finish and their outcomes are yielded, then the stream ends. Dropping the stream
    ///   instead cancels running reconciles at their next await.
    ///
    /// Reconciles run as tasks on the current tokio runtime.
    pub fn run<Ctx, E, R, Fut, P>(
        self,
        reconcile: R,
        error_policy: P,
        ctx: Arc<Ctx>,
        shutdown: CancellationToken,
    ) -> impl Stream<Item = Outcome<E>> + Send
    where
        Ctx: Send + Sync + 'static,
        E: Send + 'static,
        R: Fn(Arc<K>, Arc<Ctx>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Action, E>> + Send + 'static,
        P: Fn(&Arc<K>, &E, &Ctx) -> Action + Send + 'static,
    {
        applier(
            self.store,
            self.triggers,
            Settings {
                config: self.config,
                depth: self.depth,
            },
            reconcile,
            error_policy,
            ctx,
            shutdown,
        )
    }
}
