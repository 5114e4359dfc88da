//! The CRI calls behind `kubectl exec`, `attach` and `port-forward`: each asks the runtime to
//! prepare a stream and answers with a one-use URL on the runtime's own streaming server,
//! which the agent's server then proxies the caller's upgraded connection to.

use crate::cri::{AttachRequest, ExecRequest, PortForwardRequest};
use crate::runtime::call;
use crate::{Error, RuntimeClient};

/// Which of a process's standard streams a stream request attaches, and whether it is a
/// terminal (a TTY merges stderr into stdout, so it never asks for stderr).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamFlags {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl RuntimeClient {
    /// Prepares running `cmd` in a running container; returns the streaming URL.
    pub async fn exec(
        &self,
        container_id: &str,
        cmd: Vec<String>,
        flags: StreamFlags,
    ) -> Result<String, Error> {
        let mut client = self.runtime.clone();
        let request = ExecRequest {
            container_id: container_id.to_owned(),
            cmd,
            tty: flags.tty,
            stdin: flags.stdin,
            stdout: flags.stdout,
            stderr: flags.stderr,
        };
        let reply = call("Exec", self.timeout, |r| client.exec(r), request).await?;
        url("Exec", reply.url)
    }

    /// Prepares attaching to a running container's main process; returns the streaming URL.
    pub async fn attach(&self, container_id: &str, flags: StreamFlags) -> Result<String, Error> {
        let mut client = self.runtime.clone();
        let request = AttachRequest {
            container_id: container_id.to_owned(),
            stdin: flags.stdin,
            tty: flags.tty,
            stdout: flags.stdout,
            stderr: flags.stderr,
        };
        let reply = call("Attach", self.timeout, |r| client.attach(r), request).await?;
        url("Attach", reply.url)
    }

    /// Prepares forwarding connections into a sandbox's network namespace; returns the
    /// streaming URL. The ports travel inside the stream (SPDY) so `ports` may be empty.
    pub async fn port_forward(
        &self,
        pod_sandbox_id: &str,
        ports: Vec<i32>,
    ) -> Result<String, Error> {
        let mut client = self.runtime.clone();
        let request = PortForwardRequest {
            pod_sandbox_id: pod_sandbox_id.to_owned(),
            port: ports,
        };
        let reply = call(
            "PortForward",
            self.timeout,
            |r| client.port_forward(r),
            request,
        )
        .await?;
        url("PortForward", reply.url)
    }
}

fn url(operation: &'static str, url: String) -> Result<String, Error> {
    if url.is_empty() {
        return Err(Error::MissingField {
            operation,
            field: "url",
        });
    }
    Ok(url)
}
