//! Helpers for tests of keel's API over gRPC: a client that waits for the API to be ready, and
//! reading the Kubernetes Status out of an error.

use std::time::Duration;

use anyhow::{bail, Result};
use keel_proto::keelapi::api_client::ApiClient;
use keel_proto::keelapi::{GetRequest, ResourceRef};
use serde_json::Value;
use tonic::codegen::InterceptedService;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

use crate::Cluster;

/// Sends the cluster's admin token with every call (the API refuses anonymous callers).
#[derive(Clone)]
pub struct AdminToken(MetadataValue<Ascii>);

impl tonic::service::Interceptor for AdminToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// A gRPC API client acting as the cluster's admin.
pub type Api = ApiClient<InterceptedService<Channel, AdminToken>>;

/// An API client for member `i` with the admin's token, once the system namespaces exist (the
/// API is serving).
pub async fn ready_client(cluster: &Cluster, i: usize) -> Result<Api> {
    let token = AdminToken(format!("Bearer {}", cluster.admin_token()?).parse()?);
    let mut api = ApiClient::with_interceptor(cluster.channel(i).await?, token)
        .max_encoding_message_size(8 << 20);
    for _ in 0..300 {
        let ns = api
            .get(GetRequest {
                r#ref: Some(ResourceRef {
                    version: "v1".into(),
                    resource: "namespaces".into(),
                    name: "default".into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await;
        if ns.is_ok() {
            return Ok(api);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("namespace default never appeared")
}

/// The Kubernetes Status an API error carries (Null if it carries none).
pub fn status_of(e: &tonic::Status) -> Value {
    serde_json::from_slice(e.details()).unwrap_or(Value::Null)
}

/// An object reply's JSON (Null if it is not JSON).
pub fn obj(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or(Value::Null)
}
