//! What every controller of one leadership term shares: the client, the fence every write
//! carries, the shared informers, the event recorder and the expectations of the controllers
//! that create children.

use std::sync::Arc;

use keel_client::k8s_openapi::{ListableResource, Resource};
use keel_client::{Api, Client, DynamicObject, Fence};
use keel_types::ResourceInfo;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::events::Recorder;
use crate::informer::Informers;
use crate::manager::Options;

/// One term's shared state. Built when this candidate becomes leader and dropped when it
/// stops leading: a new term starts with a new fence and its controllers' own state anew; the
/// informers' caches (what the API holds, as watched) are the manager's and carry over.
pub struct Context {
    client: Client,
    fence: Fence,
    pub informers: Arc<Informers>,
    pub recorder: Recorder,
    pub options: Arc<Options>,
}

impl Context {
    pub fn new(
        client: Client,
        fence: Fence,
        informers: Arc<Informers>,
        recorder: Recorder,
        options: Arc<Options>,
    ) -> Self {
        Self {
            client,
            fence,
            informers,
            recorder,
            options,
        }
    }

    /// Fenced access to `K` in `namespace`: every write is refused once this term is over.
    pub fn api<K>(&self, namespace: &str) -> Api<K>
    where
        K: Resource + ListableResource + Serialize + DeserializeOwned + Send + 'static,
    {
        Api::namespaced(self.client.clone(), namespace).with_fence(self.fence.clone())
    }

    /// Fenced access to `K` across namespaces (or a cluster-scoped kind).
    pub fn api_all<K>(&self) -> Api<K>
    where
        K: Resource + ListableResource + Serialize + DeserializeOwned + Send + 'static,
    {
        Api::all(self.client.clone()).with_fence(self.fence.clone())
    }

    /// Fenced access to the kind `info` describes, whatever it is, in `namespace` ("" for all
    /// namespaces or a cluster-scoped kind).
    pub fn dynamic_api(&self, info: &ResourceInfo, namespace: &str) -> Api<DynamicObject> {
        Api::for_resource(
            self.client.clone(),
            info.group,
            info.version,
            info.plural,
            namespace,
        )
        .with_fence(self.fence.clone())
    }

    /// The client itself, for what the fence does not cover (watches of kinds no informer
    /// holds).
    pub fn client(&self) -> &Client {
        &self.client
    }
}
