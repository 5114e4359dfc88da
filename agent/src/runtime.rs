//! A typed client for a CRI v1 container runtime (RuntimeService and ImageService) over its
//! unix socket: one method per call the agent makes, each under a deadline, with failures
//! sorted into [`Error`] by gRPC code.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::cri::image_service_client::ImageServiceClient;
use crate::cri::runtime_service_client::RuntimeServiceClient;
use crate::cri::{
    AuthConfig, Container, ContainerConfig, ContainerFilter, ContainerStatus,
    ContainerStatusRequest, CreateContainerRequest, Image, ImageSpec, ImageStatusRequest,
    ListContainersRequest, ListImagesRequest, ListPodSandboxRequest, PodSandbox, PodSandboxConfig,
    PodSandboxFilter, PodSandboxStatus, PodSandboxStatusRequest, PullImageRequest,
    RemoveContainerRequest, RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest,
    StatusRequest, StatusResponse, StopContainerRequest, StopPodSandboxRequest, VersionRequest,
    VersionResponse,
};
use crate::Error;

/// The CRI version the agent speaks, sent in `Version` as kubelet does.
pub const CRI_API_VERSION: &str = "v1";

/// kubelet's default `--runtime-request-timeout`: the deadline of every call that has no
/// reason to take longer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// CRI replies (ListContainers on a busy node, ListImages) outgrow tonic's 4 MiB default;
/// kubelet allows 16 MiB.
const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// A connection to one container runtime. Cheap to clone; clones share the connection.
#[derive(Clone, Debug)]
pub struct RuntimeClient {
    // Crate-visible so that calls on one topic (exec, streaming, stats) can live in their own
    // file as another `impl RuntimeClient` block.
    pub(crate) runtime: RuntimeServiceClient<Channel>,
    pub(crate) images: ImageServiceClient<Channel>,
    pub(crate) timeout: Duration,
}

/// The socket path of a runtime endpoint: `unix:///path` as kubelet's
/// `--container-runtime-endpoint` takes it, or a bare absolute path.
pub fn socket_path(endpoint: &str) -> Result<PathBuf, Error> {
    let invalid = |reason| Error::InvalidEndpoint {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let path = match endpoint.split_once("://") {
        Some(("unix", path)) => path,
        Some(_) => return Err(invalid("only unix sockets are supported")),
        None => endpoint,
    };
    if !path.starts_with('/') {
        return Err(invalid("the socket path must be absolute"));
    }
    Ok(PathBuf::from(path))
}

impl RuntimeClient {
    /// Connects to the runtime at `endpoint` (see [`socket_path`]). Fails at once if nothing
    /// listens there, so a caller can tell "no runtime" from "runtime refused".
    pub async fn connect(endpoint: &str) -> Result<Self, Error> {
        let path = socket_path(endpoint)?;
        let channel = Self::channel(&path)
            .await
            .map_err(|source| Error::Connect {
                endpoint: endpoint.to_owned(),
                source,
            })?;
        Ok(Self {
            runtime: RuntimeServiceClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE),
            images: ImageServiceClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    async fn channel(path: &Path) -> Result<Channel, tonic::transport::Error> {
        let path = path.to_owned();
        // The URI is required by tonic but never dialled: every connection is the socket.
        Endpoint::from_static("http://localhost")
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
            }))
            .await
    }

    /// The same client with another deadline for calls that take no explicit one.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The runtime's name and version and the CRI version it serves.
    pub async fn version(&self) -> Result<VersionResponse, Error> {
        let mut client = self.runtime.clone();
        let request = VersionRequest {
            version: CRI_API_VERSION.to_owned(),
        };
        call("Version", self.timeout, |r| client.version(r), request).await
    }

    /// The runtime's conditions (RuntimeReady, NetworkReady).
    pub async fn status(&self) -> Result<StatusResponse, Error> {
        let mut client = self.runtime.clone();
        let request = StatusRequest { verbose: false };
        call("Status", self.timeout, |r| client.status(r), request).await
    }

    /// Creates and starts a pod sandbox (its pause container and network); returns its id.
    /// `runtime_handler` picks a RuntimeClass handler; empty means the runtime's default.
    pub async fn run_pod_sandbox(
        &self,
        config: PodSandboxConfig,
        runtime_handler: &str,
    ) -> Result<String, Error> {
        let mut client = self.runtime.clone();
        let request = RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: runtime_handler.to_owned(),
        };
        let reply = call(
            "RunPodSandbox",
            self.timeout,
            |r| client.run_pod_sandbox(r),
            request,
        )
        .await?;
        non_empty("RunPodSandbox", "pod_sandbox_id", reply.pod_sandbox_id)
    }

    /// Stops every container of the sandbox and tears down its network. Idempotent.
    pub async fn stop_pod_sandbox(&self, pod_sandbox_id: &str) -> Result<(), Error> {
        let mut client = self.runtime.clone();
        let request = StopPodSandboxRequest {
            pod_sandbox_id: pod_sandbox_id.to_owned(),
        };
        call(
            "StopPodSandbox",
            self.timeout,
            |r| client.stop_pod_sandbox(r),
            request,
        )
        .await
        .map(drop)
    }

    /// Removes the sandbox and its containers. Removing one that is gone succeeds.
    pub async fn remove_pod_sandbox(&self, pod_sandbox_id: &str) -> Result<(), Error> {
        let mut client = self.runtime.clone();
        let request = RemovePodSandboxRequest {
            pod_sandbox_id: pod_sandbox_id.to_owned(),
        };
        call(
            "RemovePodSandbox",
            self.timeout,
            |r| client.remove_pod_sandbox(r),
            request,
        )
        .await
        .map(drop)
    }

    /// The sandbox's state, network (pod IP) and metadata.
    pub async fn pod_sandbox_status(
        &self,
        pod_sandbox_id: &str,
    ) -> Result<PodSandboxStatus, Error> {
        let mut client = self.runtime.clone();
        let request = PodSandboxStatusRequest {
            pod_sandbox_id: pod_sandbox_id.to_owned(),
            verbose: false,
        };
        let reply = call(
            "PodSandboxStatus",
            self.timeout,
            |r| client.pod_sandbox_status(r),
            request,
        )
        .await?;
        reply.status.ok_or(Error::MissingField {
            operation: "PodSandboxStatus",
            field: "status",
        })
    }

    /// The sandboxes the runtime holds, optionally only those matching `filter`.
    pub async fn list_pod_sandboxes(
        &self,
        filter: Option<PodSandboxFilter>,
    ) -> Result<Vec<PodSandbox>, Error> {
        let mut client = self.runtime.clone();
        let request = ListPodSandboxRequest { filter };
        let reply = call(
            "ListPodSandbox",
            self.timeout,
            |r| client.list_pod_sandbox(r),
            request,
        )
        .await?;
        Ok(reply.items)
    }

    /// Creates a container in a sandbox; returns its id. `sandbox_config` must be the config
    /// the sandbox was run with, as CRI requires.
    pub async fn create_container(
        &self,
        pod_sandbox_id: &str,
        config: ContainerConfig,
        sandbox_config: PodSandboxConfig,
    ) -> Result<String, Error> {
        let mut client = self.runtime.clone();
        let request = CreateContainerRequest {
            pod_sandbox_id: pod_sandbox_id.to_owned(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        };
        let reply = call(
            "CreateContainer",
            self.timeout,
            |r| client.create_container(r),
            request,
        )
        .await?;
        non_empty("CreateContainer", "container_id", reply.container_id)
    }

    /// Starts a created container.
    pub async fn start_container(&self, container_id: &str) -> Result<(), Error> {
        let mut client = self.runtime.clone();
        let request = StartContainerRequest {
            container_id: container_id.to_owned(),
        };
        call(
            "StartContainer",
            self.timeout,
            |r| client.start_container(r),
            request,
        )
        .await
        .map(drop)
    }

    /// Stops a container: its stop signal, then SIGKILL after `grace` (whole seconds, as CRI
    /// counts them; zero kills at once). The call's deadline covers the grace period.
    pub async fn stop_container(&self, container_id: &str, grace: Duration) -> Result<(), Error> {
        let mut client = self.runtime.clone();
        let request = StopContainerRequest {
            container_id: container_id.to_owned(),
            timeout: i64::try_from(grace.as_secs()).unwrap_or(i64::MAX),
        };
        let deadline = self.timeout.saturating_add(grace);
        call(
            "StopContainer",
            deadline,
            |r| client.stop_container(r),
            request,
        )
        .await
        .map(drop)
    }

    /// Removes a container (stopping it first if it runs). Removing one that is gone succeeds.
    pub async fn remove_container(&self, container_id: &str) -> Result<(), Error> {
        let mut client = self.runtime.clone();
        let request = RemoveContainerRequest {
            container_id: container_id.to_owned(),
        };
        call(
            "RemoveContainer",
            self.timeout,
            |r| client.remove_container(r),
            request,
        )
        .await
        .map(drop)
    }

    /// The containers the runtime holds, optionally only those matching `filter`.
    pub async fn list_containers(
        &self,
        filter: Option<ContainerFilter>,
    ) -> Result<Vec<Container>, Error> {
        let mut client = self.runtime.clone();
        let request = ListContainersRequest { filter };
        let reply = call(
            "ListContainers",
            self.timeout,
            |r| client.list_containers(r),
            request,
        )
        .await?;
        Ok(reply.containers)
    }

    /// A container's state, exit code and reason, times, image and log path.
    pub async fn container_status(&self, container_id: &str) -> Result<ContainerStatus, Error> {
        let mut client = self.runtime.clone();
        let request = ContainerStatusRequest {
            container_id: container_id.to_owned(),
            verbose: false,
        };
        let reply = call(
            "ContainerStatus",
            self.timeout,
            |r| client.container_status(r),
            request,
        )
        .await?;
        reply.status.ok_or(Error::MissingField {
            operation: "ContainerStatus",
            field: "status",
        })
    }

    /// The image `image` names, if the runtime has it.
    pub async fn image_status(&self, image: &str) -> Result<Option<Image>, Error> {
        let mut client = self.images.clone();
        let request = ImageStatusRequest {
            image: Some(image_spec(image)),
            verbose: false,
        };
        let reply = call(
            "ImageStatus",
            self.timeout,
            |r| client.image_status(r),
            request,
        )
        .await?;
        Ok(reply.image)
    }

    /// The images the runtime holds.
    pub async fn list_images(&self) -> Result<Vec<Image>, Error> {
        let mut client = self.images.clone();
        let request = ListImagesRequest { filter: None };
        let reply = call(
            "ListImages",
            self.timeout,
            |r| client.list_images(r),
            request,
        )
        .await?;
        Ok(reply.images)
    }

    /// Pulls `image` and returns the reference the runtime stored it under. Pulls have their
    /// own `deadline`, since an image's size, not the runtime, decides how long one takes.
    /// A registry that cannot be reached, refuses us or lacks the image gives
    /// [`Error::PullFailed`].
    pub async fn pull_image(
        &self,
        image: &str,
        auth: Option<AuthConfig>,
        sandbox_config: Option<PodSandboxConfig>,
        deadline: Duration,
    ) -> Result<String, Error> {
        let mut client = self.images.clone();
        let request = PullImageRequest {
            image: Some(image_spec(image)),
            auth,
            sandbox_config,
        };
        let reply = call("PullImage", deadline, |r| client.pull_image(r), request)
            .await
            .map_err(|error| match error {
                Error::NotFound { message, .. }
                | Error::InvalidArgument { message, .. }
                | Error::Failed { message, .. } => Error::PullFailed {
                    image: image.to_owned(),
                    message,
                },
                other => other,
            })?;
        non_empty("PullImage", "image_ref", reply.image_ref)
    }
}

pub(crate) fn image_spec(image: &str) -> ImageSpec {
    ImageSpec {
        image: image.to_owned(),
        ..ImageSpec::default()
    }
}

fn non_empty(operation: &'static str, field: &'static str, value: String) -> Result<String, Error> {
    if value.is_empty() {
        return Err(Error::MissingField { operation, field });
    }
    Ok(value)
}

/// Makes one call under `deadline`. The deadline travels to the runtime as grpc-timeout so it
/// gives up too, and is enforced here as well so that a runtime that ignores it cannot hang us.
pub(crate) async fn call<Req, Reply, Fut>(
    operation: &'static str,
    deadline: Duration,
    send: impl FnOnce(tonic::Request<Req>) -> Fut,
    message: Req,
) -> Result<Reply, Error>
where
    Fut: Future<Output = Result<tonic::Response<Reply>, tonic::Status>>,
{
    let mut request = tonic::Request::new(message);
    request.set_timeout(deadline);
    match tokio::time::timeout(deadline, send(request)).await {
        Ok(Ok(reply)) => Ok(reply.into_inner()),
        Ok(Err(status)) => Err(Error::from_status(operation, deadline, status)),
        Err(_) => Err(Error::DeadlineExceeded {
            operation,
            timeout: deadline,
            message: "the runtime did not answer".to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_unix_urls_or_absolute_paths() {
        assert_eq!(
            socket_path("unix:///run/containerd/containerd.sock").ok(),
            Some(PathBuf::from("/run/containerd/containerd.sock"))
        );
        assert_eq!(
            socket_path("/tmp/c.sock").ok(),
            Some(PathBuf::from("/tmp/c.sock"))
        );
    }

    #[test]
    fn tcp_and_relative_endpoints_are_refused() {
        assert!(matches!(
            socket_path("tcp://127.0.0.1:1234"),
            Err(Error::InvalidEndpoint { .. })
        ));
        assert!(matches!(
            socket_path("unix://relative.sock"),
            Err(Error::InvalidEndpoint { .. })
        ));
    }

    #[tokio::test]
    async fn connecting_where_nothing_listens_is_a_connect_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let endpoint = format!("unix://{}/absent.sock", dir.path().display());
        let error = RuntimeClient::connect(&endpoint).await.err();
        assert!(
            matches!(&error, Some(Error::Connect { endpoint: e, .. }) if *e == endpoint),
            "{error:?}"
        );
        assert!(error.is_some_and(|e| e.is_retryable()));
    }
}
