//! The etcd Watch service: each call becomes one watch session task.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use keel_proto::etcdserverpb::watch_server::Watch;
use keel_proto::etcdserverpb::{WatchRequest, WatchResponse};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status, Streaming};

use crate::node::Node;
use crate::server::guard::{Guard, Identity};
use crate::watch::session;

/// Responses buffered per stream before the session waits for the client to read.
const OUT_BUFFER: usize = 256;

pub struct WatchService {
    node: Arc<Node>,
    guard: Arc<Guard>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl WatchService {
    pub fn new(
        node: Arc<Node>,
        guard: Arc<Guard>,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            node,
            guard,
            tasks,
            shutdown,
        }
    }
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send + 'static>>;

    async fn watch(
        &self,
        req: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        // The stream's caller, checked for read access to each range it asks to watch.
        let caller = self.guard.caller(Identity::of(&req)).await?;
        let (tx, rx) = mpsc::channel(OUT_BUFFER);
        self.tasks.spawn(session::run(
            self.node.clone(),
            caller,
            req.into_inner(),
            tx,
            self.shutdown.child_token(),
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
