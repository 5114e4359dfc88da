//! The tcpSocket check: a TCP connection opened within the timeout is a success.

use std::time::Duration;

use super::net::dial;
use super::CheckOutcome;

/// Connects to `host:port`; the connection is closed again at once.
pub async fn tcp_socket(host: &str, port: u16, timeout: Duration) -> CheckOutcome {
    match dial(host, port, timeout).await {
        Ok(_) => CheckOutcome::Success(String::new()),
        Err(error) => CheckOutcome::Failure(error),
    }
}
