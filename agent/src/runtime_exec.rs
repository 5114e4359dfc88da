//! Running a command in a container to completion (CRI `ExecSync`), as probes and lifecycle
//! hooks do: the exit code and both captured streams, under the command's own timeout.

use std::time::Duration;

use crate::cri::ExecSyncRequest;
use crate::runtime::{call, RuntimeClient};
use crate::Error;

/// What a command run in a container left behind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecSyncOutcome {
    /// The command's exit code; 0 is success.
    pub exit_code: i32,
    /// Everything it wrote to stdout (the runtime caps it at 16 MiB).
    pub stdout: Vec<u8>,
    /// Everything it wrote to stderr (capped likewise).
    pub stderr: Vec<u8>,
}

impl RuntimeClient {
    /// Runs `cmd` in the running container `container_id` and waits for it to exit. The
    /// runtime kills it after `timeout` (whole seconds as CRI counts them, at least one; zero
    /// means none) and then answers DeadlineExceeded ([`Error::DeadlineExceeded`]). Our own
    /// deadline is the timeout plus the client's usual one, as kubelet allows, so that a
    /// runtime that is slow to clean up is not mistaken for a command that hung.
    pub async fn exec_sync(
        &self,
        container_id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecSyncOutcome, Error> {
        let mut client = self.runtime.clone();
        let seconds = if timeout.is_zero() {
            0
        } else {
            // CRI counts whole seconds; a sub-second timeout must not become "forever".
            i64::try_from(timeout.as_secs().max(1)).unwrap_or(i64::MAX)
        };
        let request = ExecSyncRequest {
            container_id: container_id.to_owned(),
            cmd: cmd.to_vec(),
            timeout: seconds,
        };
        let deadline = self.timeout.saturating_add(timeout);
        let reply = call("ExecSync", deadline, |r| client.exec_sync(r), request).await?;
        Ok(ExecSyncOutcome {
            exit_code: reply.exit_code,
            stdout: reply.stdout,
            stderr: reply.stderr,
        })
    }
}
