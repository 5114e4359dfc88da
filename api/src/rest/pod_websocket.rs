//! Pod streams over WebSocket, which kubectl 1.32 asks for before SPDY, served as
//! kube-apiserver serves them while the node's runtime speaks SPDY only:
//!
//! - `pods/exec` and `pods/attach` with `v5.channel.k8s.io`: each binary message starts with
//!   its channel (0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize; 255 closes the stream the
//!   next byte names). The API server opens the matching SPDY streams to the node (the error
//!   stream first, then those the query asks for) and translates between the two.
//! - `pods/portforward` with `SPDY/3.1+portforward.k8s.io`: the caller speaks SPDY inside the
//!   binary messages, so their payloads are the bytes of an SPDY connection to the node.
//!
//! A caller that offers neither protocol is refused with 400, after which kubectl uses SPDY.

use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::pod_streams::{flag, QueryPairs, Stream};
use super::spdy;

/// The remote command protocol kubectl 1.32's WebSocket client speaks (and only it).
pub const CHANNEL_V5: &str = "v5.channel.k8s.io";
/// Port forwarding tunnelled through WebSocket: SPDY inside binary messages.
pub const PORT_FORWARD_TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";
/// The SPDY protocol versions asked of the node for each.
pub const NODE_REMOTE_COMMAND: &str = "v4.channel.k8s.io";
pub const NODE_PORT_FORWARD: &str = "portforward.k8s.io";
/// RFC 6455's key suffix.
const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// `Sec-WebSocket-Accept` for the caller's `Sec-WebSocket-Key`.
pub fn accept_key(key: &[u8]) -> String {
    let mut input = key.to_vec();
    input.extend_from_slice(WEBSOCKET_GUID.as_bytes());
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// The subprotocol served for `stream` among those `offered` (the `Sec-WebSocket-Protocol`
/// values), or why none is.
pub fn negotiate<'a>(
    offered: impl Iterator<Item = &'a str>,
    stream: Stream,
) -> Result<&'static str, String> {
    let wanted = match stream {
        Stream::Exec | Stream::Attach => CHANNEL_V5,
        Stream::PortForward => PORT_FORWARD_TUNNEL,
        Stream::Log => return Err("pods/log is not a WebSocket stream".into()),
    };
    let mut offered_any = false;
    for protocol in offered.flat_map(|v| v.split(',')).map(str::trim) {
        offered_any = true;
        if protocol == wanted {
            return Ok(wanted);
        }
    }
    Err(if offered_any {
        format!(
            "pods/{} over WebSocket needs the {wanted} protocol",
            stream.subresource()
        )
    } else {
        format!(
            "pods/{} over WebSocket needs a protocol",
            stream.subresource()
        )
    })
}

/// The streams a remote command asked for in its query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Channels {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl Channels {
    /// The streams `query` asks for (kubelet's `stdin`, `stdout`, `stderr`, `tty`).
    pub fn of(query: &QueryPairs) -> Self {
        Channels {
            stdin: flag(query, "stdin"),
            stdout: flag(query, "stdout"),
            stderr: flag(query, "stderr"),
            tty: flag(query, "tty"),
        }
    }
}

/// The SPDY streams to open to the node for `channels`, in the order kubectl opens them: the
/// error stream first. Each is (stream id, `streamtype`, the WebSocket channel it maps to).
fn node_streams(channels: Channels) -> Vec<(u32, &'static str, u8)> {
    let mut kinds = vec![("error", ERROR)];
    if channels.stdin {
        kinds.push(("stdin", STDIN));
    }
    if channels.stdout {
        kinds.push(("stdout", STDOUT));
    }
    // With a terminal, stderr is merged into stdout.
    if channels.stderr && !channels.tty {
        kinds.push(("stderr", STDERR));
    }
    if channels.tty {
        kinds.push(("resize", RESIZE));
    }
    kinds
        .into_iter()
        .enumerate()
        .map(|(i, (kind, channel))| (2 * i as u32 + 1, kind, channel))
        .collect()
}

/// The caller's side, once upgraded.
pub async fn caller(upgraded: Upgraded) -> WebSocketStream<TokioIo<Upgraded>> {
    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await
}

/// Translates a `v5.channel.k8s.io` caller to SPDY streams on `node` until the node closes the
/// error stream (the command is over) or either side goes away.
pub async fn translate(
    caller: WebSocketStream<TokioIo<Upgraded>>,
    node: TokioIo<Upgraded>,
    channels: Channels,
) {
    let streams = node_streams(channels);
    let stream_of = |channel: u8| {
        streams
            .iter()
            .find(|(_, _, c)| *c == channel)
            .map(|(id, _, _)| *id)
    };
    let channel_of = |id: u32| {
        streams
            .iter()
            .find(|(s, _, _)| *s == id)
            .map(|(_, _, c)| *c)
    };
    let (mut node_read, mut node_write) = tokio::io::split(node);
    let mut writer = spdy::Writer::default();
    let mut opening = Vec::new();
    for (id, kind, _) in &streams {
        opening.extend(writer.open(*id, &[("streamtype", kind)], false));
    }
    if node_write.write_all(&opening).await.is_err() || node_write.flush().await.is_err() {
        return;
    }
    // Everything bound for the node goes through one writer.
    let (to_node, mut outgoing) = mpsc::channel::<Vec<u8>>(64);
    let writing = async move {
        while let Some(bytes) = outgoing.recv().await {
            // The node connection is TLS: what is written waits in it until flushed.
            if node_write.write_all(&bytes).await.is_err() || node_write.flush().await.is_err() {
                return;
            }
        }
    };
    let (mut caller_write, mut caller_read) = caller.split();
    let from_caller = {
        let to_node = to_node.clone();
        async move {
            while let Some(Ok(message)) = caller_read.next().await {
                let bytes = match message {
                    Message::Binary(bytes) => bytes,
                    Message::Close(_) => return,
                    _ => continue,
                };
                let Some((&channel, payload)) = bytes.split_first() else {
                    continue;
                };
                let frame = match channel {
                    CLOSE => match payload.first().and_then(|c| stream_of(*c)) {
                        Some(id) => spdy::data(id, &[], true),
                        None => continue,
                    },
                    STDIN | RESIZE => match stream_of(channel) {
                        Some(id) => spdy::data(id, payload, false),
                        None => continue,
                    },
                    _ => continue,
                };
                if to_node.send(frame).await.is_err() {
                    return;
                }
            }
        }
    };
    let from_node = async move {
        let error_stream = stream_of(ERROR);
        loop {
            let frame = match spdy::read_frame(&mut node_read).await {
                Ok(Some(frame)) => frame,
                Ok(None) | Err(_) => break,
            };
            match frame {
                spdy::Frame::Data { stream, fin, data } => {
                    if !data.is_empty() {
                        let _ = to_node
                            .send(spdy::window_update(stream, data.len() as u32))
                            .await;
                        if let Some(channel) = channel_of(stream) {
                            let mut message = Vec::with_capacity(data.len() + 1);
                            message.push(channel);
                            message.extend_from_slice(&data);
                            if caller_write
                                .send(Message::Binary(message.into()))
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                    }
                    if fin && Some(stream) == error_stream {
                        break;
                    }
                }
                spdy::Frame::Reset { stream } if Some(stream) == error_stream => break,
                spdy::Frame::Ping { id } => {
                    let _ = to_node.send(spdy::ping(id)).await;
                }
                spdy::Frame::GoAway => break,
                _ => {}
            }
        }
        let _ = caller_write
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            })))
            .await;
        let _ = caller_write.close().await;
    };
    tokio::select! {
        _ = from_node => {}
        _ = async { tokio::join!(from_caller, writing) } => {}
    }
}

/// Carries a port-forward caller's tunnelled SPDY connection to `node` byte for byte.
pub async fn tunnel(caller: WebSocketStream<TokioIo<Upgraded>>, node: TokioIo<Upgraded>) {
    let (mut node_read, mut node_write) = tokio::io::split(node);
    let (mut caller_write, mut caller_read) = caller.split();
    let up = async move {
        while let Some(Ok(message)) = caller_read.next().await {
            let bytes = match message {
                Message::Binary(bytes) => bytes,
                Message::Close(_) => return,
                _ => continue,
            };
            if node_write.write_all(&bytes).await.is_err() || node_write.flush().await.is_err() {
                return;
            }
        }
    };
    let down = async move {
        let mut buffer = vec![0u8; 32 * 1024];
        loop {
            match node_read.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let message = Message::Binary(buffer[..n].to_vec().into());
                    if caller_write.send(message).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = caller_write.close().await;
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_key_is_rfc_6455s() {
        // The example of RFC 6455, section 1.3.
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn each_stream_takes_only_its_own_protocol() {
        let offered = ["v5.channel.k8s.io"];
        assert_eq!(negotiate(offered.into_iter(), Stream::Exec), Ok(CHANNEL_V5));
        assert_eq!(
            negotiate(
                ["v4.channel.k8s.io, v5.channel.k8s.io"].into_iter(),
                Stream::Attach
            ),
            Ok(CHANNEL_V5)
        );
        assert!(negotiate(["v4.channel.k8s.io"].into_iter(), Stream::Exec).is_err());
        assert_eq!(
            negotiate(
                ["SPDY/3.1+portforward.k8s.io"].into_iter(),
                Stream::PortForward
            ),
            Ok(PORT_FORWARD_TUNNEL)
        );
        assert!(negotiate(offered.into_iter(), Stream::PortForward).is_err());
        assert!(negotiate(std::iter::empty(), Stream::Exec).is_err());
    }

    #[test]
    fn the_error_stream_opens_first_and_a_terminal_merges_stderr() {
        let plain = Channels {
            stdin: true,
            stdout: true,
            stderr: true,
            tty: false,
        };
        assert_eq!(
            node_streams(plain),
            vec![
                (1, "error", ERROR),
                (3, "stdin", STDIN),
                (5, "stdout", STDOUT),
                (7, "stderr", STDERR)
            ]
        );
        let terminal = Channels { tty: true, ..plain };
        assert_eq!(
            node_streams(terminal),
            vec![
                (1, "error", ERROR),
                (3, "stdin", STDIN),
                (5, "stdout", STDOUT),
                (7, "resize", RESIZE)
            ]
        );
    }
}
