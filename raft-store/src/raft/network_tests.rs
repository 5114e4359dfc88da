//! The append stream's client side against a stand-in peer on loopback.

use std::pin::Pin;
use std::sync::atomic::AtomicUsize;

use futures::Stream;
use keel_proto::keelpb::raft_peer_server::{RaftPeer, RaftPeerServer};
use keel_proto::keelpb::{ForwardReply as ForwardReplyPb, ReadIndexReply};
use openraft::network::RaftNetworkFactory;
use tokio_stream::wrappers::{TcpListenerStream, UnboundedReceiverStream};
use tonic::{Request, Response, Status, Streaming};

use super::*;

/// A peer that answers every append after `delay`, or has no append stream at all.
struct StandIn {
    delay: Duration,
    has_stream: bool,
    unary_appends: Arc<AtomicUsize>,
}

fn ok_reply<T: Serialize>(value: &T) -> Result<RaftReply, Status> {
    Ok(RaftReply {
        data: codec::encode(value).map_err(|e| Status::internal(e.to_string()))?,
        error: String::new(),
        removed: false,
    })
}

type Replies = Pin<Box<dyn Stream<Item = Result<RaftReply, Status>> + Send>>;

#[tonic::async_trait]
impl RaftPeer for StandIn {
    type AppendStreamStream = Replies;

    async fn append_stream(
        &self,
        req: Request<Streaming<RaftRequest>>,
    ) -> Result<Response<Replies>, Status> {
        if !self.has_stream {
            return Err(Status::unimplemented("no append stream here"));
        }
        let delay = self.delay;
        let replies = req.into_inner().then(move |_| async move {
            tokio::time::sleep(delay).await;
            let appended: StreamAppendResult<TypeConfig> = Ok(None);
            ok_reply(&appended)
        });
        Ok(Response::new(Box::pin(replies)))
    }

    async fn append_entries(
        &self,
        _req: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        self.unary_appends.fetch_add(1, Ordering::SeqCst);
        ok_reply(&AppendEntriesResponse::<TypeConfig>::Success).map(Response::new)
    }

    async fn vote(&self, _: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        Err(Status::unimplemented("vote"))
    }

    async fn pre_vote(&self, _: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        Err(Status::unimplemented("pre-vote"))
    }

    async fn install_snapshot(
        &self,
        _: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<RaftReply>, Status> {
        Err(Status::unimplemented("snapshot"))
    }

    async fn forward(
        &self,
        _: Request<ForwardRequest>,
    ) -> Result<Response<ForwardReplyPb>, Status> {
        Err(Status::unimplemented("forward"))
    }

    async fn read_index(
        &self,
        _: Request<ReadIndexRequest>,
    ) -> Result<Response<ReadIndexReply>, Status> {
        Err(Status::unimplemented("read index"))
    }

    async fn transfer_leader(
        &self,
        _: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        Err(Status::unimplemented("transfer leader"))
    }
}

/// Serves `peer` on a loopback port and returns a network to it.
async fn network_to(peer: StandIn) -> PeerNetwork {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(RaftPeerServer::new(peer))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let member = Member {
        name: "peer".into(),
        peer_urls: vec![url],
    };
    NetworkFactory::new(Arc::default(), None)
        .new_client(2, &member)
        .await
}

fn heartbeat() -> AppendEntriesRequest<TypeConfig> {
    AppendEntriesRequest {
        vote: Vote::new(1, 1),
        prev_log_id: None,
        leader_commit: None,
        entries: Vec::new(),
    }
}

fn option() -> RPCOption {
    RPCOption::new(Duration::from_millis(100))
}

#[tokio::test]
async fn a_request_after_an_idle_spell_gets_its_full_patience() {
    let mut net = network_to(StandIn {
        delay: Duration::from_millis(300),
        has_stream: true,
        unary_appends: Arc::default(),
    })
    .await;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut replies = net
        .stream_append(UnboundedReceiverStream::new(rx), option())
        .await
        .expect("stream opens");
    let read = async {
        let first = replies.next().await;
        (first, replies.next().await)
    };
    // Idle for most of the reply timeout (1 s), then a request whose answer takes 300 ms: it must
    // not be cut short by the time the stream already spent waiting.
    let write = async move {
        tokio::time::sleep(Duration::from_millis(850)).await;
        tx.send(heartbeat()).expect("send");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let ((first, second), ()) = tokio::join!(read, write);
    assert!(
        matches!(first, Some(Ok(Ok(None)))),
        "the reply was {first:?}"
    );
    assert!(second.is_none(), "the stream ends with its requests");
}

#[tokio::test]
async fn a_dropped_session_takes_no_more_requests() {
    let mut net = network_to(StandIn {
        delay: Duration::ZERO,
        has_stream: true,
        unary_appends: Arc::default(),
    })
    .await;
    let taken = Arc::new(AtomicUsize::new(0));
    let counted = taken.clone();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let input = UnboundedReceiverStream::new(rx).inspect(move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
    });
    let mut replies = net
        .stream_append(input, option())
        .await
        .expect("stream opens");
    tx.send(heartbeat()).expect("send");
    assert!(matches!(replies.next().await, Some(Ok(Ok(None)))));
    drop(replies);
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The session may already have let go of its input, which is as good.
    let _ = tx.send(heartbeat());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        taken.load(Ordering::SeqCst),
        1,
        "a request was taken after openraft dropped the session"
    );
}

#[tokio::test]
async fn a_peer_without_the_stream_gets_appends_one_call_at_a_time() {
    let unary = Arc::new(AtomicUsize::new(0));
    let mut net = network_to(StandIn {
        delay: Duration::ZERO,
        has_stream: false,
        unary_appends: unary.clone(),
    })
    .await;
    let refused = net
        .stream_append(futures::stream::iter(vec![heartbeat()]), option())
        .await
        .is_err();
    assert!(refused, "the missing stream is reported");
    let mut replies = net
        .stream_append(futures::stream::iter(vec![heartbeat()]), option())
        .await
        .expect("falls back");
    assert!(matches!(replies.next().await, Some(Ok(Ok(_)))));
    assert!(replies.next().await.is_none());
    assert_eq!(unary.load(Ordering::SeqCst), 1);
}
