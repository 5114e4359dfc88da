//! The exec check: a command run in the container through CRI `ExecSync`; exit code 0 is a
//! success. Its output (stdout then stderr, cut at 10 KiB) is the probe's output either way,
//! and a command that outlives the timeout is a failure, as kubelet has treated it since 1.20.

use std::time::Duration;

use super::{output_text, CheckOutcome};
use crate::{Error, RuntimeClient};

/// Runs `command` in container `container_id`.
pub async fn exec(
    runtime: &RuntimeClient,
    container_id: &str,
    command: &[String],
    timeout: Duration,
) -> CheckOutcome {
    match runtime.exec_sync(container_id, command, timeout).await {
        Ok(done) => {
            let mut output = done.stdout;
            output.extend_from_slice(&done.stderr);
            let output = output_text(&output);
            if done.exit_code == 0 {
                CheckOutcome::Success(output)
            } else {
                CheckOutcome::Failure(output)
            }
        }
        Err(Error::DeadlineExceeded { .. }) => {
            CheckOutcome::Failure(format!("command {:?} timed out", command.join(" ")))
        }
        Err(error) => CheckOutcome::Error(error.to_string()),
    }
}
