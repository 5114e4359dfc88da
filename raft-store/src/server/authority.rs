//! Accepting etcd clients that put a URL in the HTTP/2 `:authority` pseudo-header.
//!
//! etcd 3.4's client dials one endpoint at a time for maintenance calls (`etcdctl endpoint
//! status`, `hashkv`, `defrag`, `snapshot save`) and then sends the endpoint exactly as given, so
//! `--endpoints=http://127.0.0.1:2379` arrives as `:authority: http://127.0.0.1:2379`. grpc-go
//! ignores that; the h2 server under tonic refuses the stream as malformed. [`AuthorityFix`] sits
//! between the socket and the HTTP/2 server and, on a connection whose first request carries such
//! an authority, rewrites every request's authority to its host and port. A connection whose
//! first request is well formed is passed through untouched after that request, so ordinary
//! clients pay for one header decode per connection.
//!
//! Rewriting means re-encoding header blocks, and HPACK state is per direction and per connection:
//! once a connection is rewritten, every header block on it is decoded with the client's table and
//! re-encoded with ours, so the server's decoder only ever sees our encoding.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use loona_hpack::{Decoder, Encoder};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The frame size every HTTP/2 peer must accept; rewritten blocks are split to fit it.
const MAX_FRAME: usize = 16_384;
/// A header block larger than this is not an etcd request; the connection is passed through.
const MAX_BLOCK: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Preface,
    /// Waiting for the first request to decide.
    Deciding,
    Rewrite,
    Pass,
}

/// A server-side connection that repairs URL-shaped `:authority` headers on the way in.
pub struct AuthorityFix<S> {
    inner: S,
    mode: Mode,
    input: Vec<u8>,
    output: Vec<u8>,
    out_pos: usize,
    eof: bool,
    decoder: Decoder<'static>,
    encoder: Encoder<'static>,
}

impl<S> AuthorityFix<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            mode: Mode::Preface,
            input: Vec::new(),
            output: Vec::new(),
            out_pos: 0,
            eof: false,
            decoder: Decoder::new(),
            encoder: Encoder::new(),
        }
    }

    /// Moves every complete unit in `input` to `output`; returns whether anything moved.
    fn process(&mut self) -> io::Result<bool> {
        let mut moved = false;
        loop {
            match self.mode {
                Mode::Pass => {
                    if !self.input.is_empty() {
                        self.output.append(&mut self.input);
                        moved = true;
                    }
                    return Ok(moved);
                }
                Mode::Preface => {
                    if self.input.len() < PREFACE.len() {
                        return Ok(moved);
                    }
                    self.mode = if self.input.starts_with(PREFACE) {
                        Mode::Deciding
                    } else {
                        Mode::Pass
                    };
                    if self.mode == Mode::Deciding {
                        self.output.extend(self.input.drain(..PREFACE.len()));
                        moved = true;
                    }
                }
                Mode::Deciding | Mode::Rewrite => match self.next_frames()? {
                    Some(consumed) => {
                        self.input.drain(..consumed);
                        moved = true;
                    }
                    None => return Ok(moved),
                },
            }
        }
    }

    /// Handles the next frame, or header block with its continuations, if it is complete.
    /// Returns how many input bytes it consumed.
    fn next_frames(&mut self) -> io::Result<Option<usize>> {
        let Some((len, kind, flags, stream)) = frame_header(&self.input) else {
            return Ok(None);
        };
        let end = FRAME_HEADER + len;
        if kind != HEADERS {
            if self.input.len() < end {
                return Ok(None);
            }
            self.output.extend_from_slice(&self.input[..end]);
            return Ok(Some(end));
        }
        // Collect the block: the HEADERS fragment and any CONTINUATION fragments after it.
        let Some(payload) = self.input.get(FRAME_HEADER..end) else {
            return Ok(None);
        };
        let Some((priority, mut block)) = headers_fragment(payload, flags) else {
            return self.give_up();
        };
        let mut consumed = end;
        let mut last_flags = flags;
        while last_flags & END_HEADERS == 0 {
            let Some((len, kind, flags, _)) = frame_header(&self.input[consumed..]) else {
                return Ok(None);
            };
            let Some(fragment) = self
                .input
                .get(consumed + FRAME_HEADER..consumed + FRAME_HEADER + len)
            else {
                return Ok(None);
            };
            if kind != CONTINUATION || block.len() + fragment.len() > MAX_BLOCK {
                return self.give_up();
            }
            block.extend_from_slice(fragment);
            consumed += FRAME_HEADER + len;
            last_flags = flags;
        }

        let mut headers = Vec::new();
        let decoded = self.decoder.decode_with_cb(&block, |name, value| {
            headers.push((name.into_owned(), value.into_owned()));
        });
        if let Err(e) = decoded {
            if self.mode == Mode::Rewrite {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("header block: {e}"),
                ));
            }
            return self.give_up();
        }
        let mut rewritten = false;
        for (name, value) in &mut headers {
            if name.as_slice() == b":authority" {
                if let Some(host) = authority_of_url(value) {
                    *value = host;
                    rewritten = true;
                }
            }
        }
        if self.mode == Mode::Deciding && !rewritten {
            // The client is well behaved: hand over this block as it came and stop looking.
            self.output.extend_from_slice(&self.input[..consumed]);
            self.mode = Mode::Pass;
            return Ok(Some(consumed));
        }
        self.mode = Mode::Rewrite;
        let mut encoded = Vec::with_capacity(block.len());
        self.encoder
            .encode_into(
                headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())),
                &mut encoded,
            )
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.write_block(stream, flags, priority, &encoded);
        Ok(Some(consumed))
    }

    /// Emits a re-encoded header block as one HEADERS frame and as many CONTINUATION frames as it
    /// needs, keeping END_STREAM and the priority fields and dropping padding.
    fn write_block(&mut self, stream: u32, flags: u8, priority: Option<[u8; 5]>, block: &[u8]) {
        let keep = flags & !(PADDED | END_HEADERS);
        let prefix = priority.map_or(0, |_| 5);
        let first = block.len().min(MAX_FRAME - prefix);
        let (head, mut rest) = block.split_at(first);
        let end = if rest.is_empty() { END_HEADERS } else { 0 };
        push_frame_header(
            &mut self.output,
            head.len() + prefix,
            HEADERS,
            keep | end,
            stream,
        );
        if let Some(p) = priority {
            self.output.extend_from_slice(&p);
        }
        self.output.extend_from_slice(head);
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(rest.len().min(MAX_FRAME));
            let end = if tail.is_empty() { END_HEADERS } else { 0 };
            push_frame_header(&mut self.output, chunk.len(), CONTINUATION, end, stream);
            self.output.extend_from_slice(chunk);
            rest = tail;
        }
    }

    /// Something this adapter does not understand: let the HTTP/2 server judge the bytes as sent.
    fn give_up(&mut self) -> io::Result<Option<usize>> {
        if self.mode == Mode::Rewrite {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "malformed header block on a rewritten connection",
            ));
        }
        self.mode = Mode::Pass;
        Ok(Some(0))
    }
}

fn frame_header(buf: &[u8]) -> Option<(usize, u8, u8, u32)> {
    let h = buf.get(..FRAME_HEADER)?;
    let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
    let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
    Some((len, h[3], h[4], stream))
}

fn push_frame_header(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    let len = len as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
}

/// Splits a HEADERS payload into its priority fields and its header block fragment.
fn headers_fragment(payload: &[u8], flags: u8) -> Option<(Option<[u8; 5]>, Vec<u8>)> {
    let mut body = payload;
    let mut pad = 0;
    if flags & PADDED != 0 {
        pad = usize::from(*body.first()?);
        body = &body[1..];
    }
    let mut priority = None;
    if flags & PRIORITY != 0 {
        let p: [u8; 5] = body.get(..5)?.try_into().ok()?;
        priority = Some(p);
        body = &body[5..];
    }
    let fragment = body.get(..body.len().checked_sub(pad)?)?;
    Some((priority, fragment.to_vec()))
}

/// `http://host:port[/...]` → `host:port`; anything else → `None` (left as it is).
fn authority_of_url(value: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(value).ok()?;
    let (_, rest) = text.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next()?;
    (!host.is_empty()).then(|| host.as_bytes().to_vec())
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.out_pos < this.output.len() {
                let n = buf.remaining().min(this.output.len() - this.out_pos);
                buf.put_slice(&this.output[this.out_pos..this.out_pos + n]);
                this.out_pos += n;
                if this.out_pos == this.output.len() {
                    this.output.clear();
                    this.out_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.mode == Mode::Pass && this.input.is_empty() {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            if this.process()? {
                continue;
            }
            if this.eof {
                // A partial frame at end of stream: hand it over and let the server complain.
                if this.input.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                this.mode = Mode::Pass;
                continue;
            }
            let mut chunk = [0u8; 16 * 1024];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    if read.filled().is_empty() {
                        this.eof = true;
                    }
                    this.input.extend_from_slice(read.filled());
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<S: Connected> Connected for AuthorityFix<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn request(encoder: &mut Encoder<'_>, authority: &[u8], stream: u32, pad: bool) -> Vec<u8> {
        let block = encoder.encode([
            (&b":method"[..], &b"POST"[..]),
            (b":scheme", b"http"),
            (b":path", b"/etcdserverpb.Maintenance/Status"),
            (b":authority", authority),
            (b"content-type", b"application/grpc"),
        ]);
        let mut out = Vec::new();
        if pad {
            push_frame_header(
                &mut out,
                block.len() + 4,
                HEADERS,
                END_HEADERS | PADDED,
                stream,
            );
            out.push(3);
            out.extend_from_slice(&block);
            out.extend_from_slice(&[0, 0, 0]);
        } else {
            // Split across a CONTINUATION to exercise reassembly.
            let (a, b) = block.split_at(block.len() / 2);
            push_frame_header(&mut out, a.len(), HEADERS, 0, stream);
            out.extend_from_slice(a);
            push_frame_header(&mut out, b.len(), CONTINUATION, END_HEADERS, stream);
            out.extend_from_slice(b);
        }
        out
    }

    fn authorities(bytes: &[u8]) -> Vec<String> {
        let mut decoder = Decoder::new();
        let mut pos = PREFACE.len();
        let mut found = Vec::new();
        let mut block = Vec::new();
        while let Some((len, kind, flags, _)) = frame_header(&bytes[pos..]) {
            let payload = &bytes[pos + FRAME_HEADER..pos + FRAME_HEADER + len];
            match kind {
                HEADERS => block = headers_fragment(payload, flags).unwrap().1,
                CONTINUATION => block.extend_from_slice(payload),
                _ => {}
            }
            if (kind == HEADERS || kind == CONTINUATION) && flags & END_HEADERS != 0 {
                decoder
                    .decode_with_cb(&block, |n, v| {
                        if n.as_ref() == b":authority" {
                            found.push(String::from_utf8(v.into_owned()).unwrap());
                        }
                    })
                    .unwrap();
            }
            pos += FRAME_HEADER + len;
        }
        assert_eq!(pos, bytes.len());
        found
    }

    async fn through_adapter(input: Vec<u8>) -> Vec<u8> {
        let (mut client, server) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            // Small writes so frames arrive split at every boundary.
            for chunk in input.chunks(7) {
                client.write_all(chunk).await.unwrap();
            }
        });
        let mut out = Vec::new();
        AuthorityFix::new(server)
            .read_to_end(&mut out)
            .await
            .unwrap();
        writer.await.unwrap();
        out
    }

    fn settings() -> Vec<u8> {
        let mut out = Vec::new();
        push_frame_header(&mut out, 6, 0x4, 0, 0);
        out.extend_from_slice(&[0, 3, 0, 0, 0, 100]);
        out
    }

    #[tokio::test]
    async fn url_authorities_are_rewritten_for_the_whole_connection() {
        let mut enc = Encoder::new();
        let mut input = PREFACE.to_vec();
        input.extend(settings());
        input.extend(request(&mut enc, b"http://127.0.0.1:2379", 1, false));
        input.extend(request(&mut enc, b"http://127.0.0.1:2379", 3, true));
        input.extend(request(&mut enc, b"localhost:2379", 5, false));
        let out = through_adapter(input).await;
        assert_eq!(
            authorities(&out),
            ["127.0.0.1:2379", "127.0.0.1:2379", "localhost:2379"]
        );
    }

    #[tokio::test]
    async fn well_formed_connections_pass_through_byte_for_byte() {
        let mut enc = Encoder::new();
        let mut input = PREFACE.to_vec();
        input.extend(settings());
        input.extend(request(&mut enc, b"127.0.0.1:2379", 1, true));
        input.extend(request(&mut enc, b"http://late.example:1", 3, false));
        let out = through_adapter(input.clone()).await;
        assert_eq!(out, input);
    }

    #[tokio::test]
    async fn non_http2_bytes_pass_through() {
        let input = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        assert_eq!(through_adapter(input.clone()).await, input);
    }

    #[test]
    fn authority_of_url_keeps_host_and_port() {
        assert_eq!(
            authority_of_url(b"http://127.0.0.1:2379").as_deref(),
            Some(&b"127.0.0.1:2379"[..])
        );
        assert_eq!(
            authority_of_url(b"https://a.example:1/x").as_deref(),
            Some(&b"a.example:1"[..])
        );
        assert_eq!(authority_of_url(b"127.0.0.1:2379"), None);
        assert_eq!(authority_of_url(b"http://"), None);
    }
}
