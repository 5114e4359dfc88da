//! Dialling a probe's host and port, with failures worded as kubelet's (Go's) dialer words
//! them, since they end up in Events: `dial tcp 10.0.0.5:80: connect: connection refused`.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

/// `host:port`, with an IPv6 host in brackets.
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Connects to `host:port` within `timeout`.
pub async fn dial(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, String> {
    let address = join_host_port(host, port);
    let attempt = async {
        let candidates: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|_| format!("dial tcp: lookup {host}: no such host"))?
            .collect();
        let mut last = format!("dial tcp: lookup {host}: no such host");
        for candidate in candidates {
            match TcpStream::connect(candidate).await {
                Ok(stream) => return Ok(stream),
                Err(error) => last = format!("dial tcp {address}: connect: {}", errno_text(&error)),
            }
        }
        Err(last)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!("dial tcp {address}: i/o timeout")),
    }
}

/// An OS error as Go prints it: the C library's text in lower case, without Rust's
/// "(os error N)".
fn errno_text(error: &std::io::Error) -> String {
    let text = error.to_string();
    let text = match text.find(" (os error") {
        Some(at) => &text[..at],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(join_host_port("10.0.0.5", 80), "10.0.0.5:80");
        assert_eq!(join_host_port("fd00::5", 80), "[fd00::5]:80");
    }

    #[test]
    fn os_errors_read_as_gos() {
        let refused = std::io::Error::from_raw_os_error(111);
        assert_eq!(errno_text(&refused), "connection refused");
    }
}
