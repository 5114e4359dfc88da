//! The client side of SPDY/3 as far as a pod stream needs it, for translating a WebSocket
//! caller's streams to the node's runtime, which speaks SPDY (as kube-apiserver's stream
//! translator does): opening streams with headers, data frames with and without FIN, and
//! reading what the server sends.
//!
//! Header blocks are zlib streams that go on across the connection. Ours are written as
//! deflate *stored* blocks (no compression, so no dictionary is needed to read them; the zlib
//! header does not claim one), each block ending with the empty stored block of a sync flush. The server's header blocks are never needed (its replies only
//! acknowledge streams), so they are skipped unread.

use tokio::io::{AsyncRead, AsyncReadExt};

/// SPDY's version on the wire.
const VERSION: u16 = 3;
const SYN_STREAM: u16 = 1;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const WINDOW_UPDATE: u16 = 9;
/// The last frame of a stream from its sender.
pub const FLAG_FIN: u8 = 0x01;
/// The most a deflate stored block holds.
const MAX_STORED: usize = 0xffff;
/// The most one data frame we write carries.
const MAX_DATA: usize = 32 * 1024;
/// The longest frame we accept from the server (SPDY's 24-bit length allows 16 MiB).
const MAX_FRAME: usize = 1 << 24;

/// A frame read from the server.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Data {
        stream: u32,
        fin: bool,
        data: Vec<u8>,
    },
    /// The server reset a stream.
    Reset { stream: u32 },
    /// A ping to answer with the same id.
    Ping { id: u32 },
    /// The server is done with the connection.
    GoAway,
    /// Replies, settings, window updates, headers: nothing a pod stream acts on.
    Other,
}

/// Writes the frames of the client side, keeping the header compression state.
#[derive(Debug, Default)]
pub struct Writer {
    /// Whether the zlib header has been written (it starts the first header block only).
    zlib_started: bool,
}

impl Writer {
    /// A SYN_STREAM opening `stream` with `headers` (names lower case, as SPDY wants).
    pub fn open(&mut self, stream: u32, headers: &[(&str, &str)], fin: bool) -> Vec<u8> {
        let block = self.header_block(headers);
        let mut payload = Vec::with_capacity(10 + block.len());
        payload.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
        payload.extend_from_slice(&0u32.to_be_bytes()); // associated-to stream: none
        payload.extend_from_slice(&[0, 0]); // priority 0, slot 0
        payload.extend_from_slice(&block);
        control(SYN_STREAM, if fin { FLAG_FIN } else { 0 }, &payload)
    }

    /// The header block: a count, then length-prefixed names and values, as one or more
    /// stored deflate blocks continuing the connection's zlib stream.
    fn header_block(&mut self, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut raw = Vec::new();
        raw.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        for (name, value) in headers {
            raw.extend_from_slice(&(name.len() as u32).to_be_bytes());
            raw.extend_from_slice(name.as_bytes());
            raw.extend_from_slice(&(value.len() as u32).to_be_bytes());
            raw.extend_from_slice(value.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 16);
        if !self.zlib_started {
            // CMF 0x78 (deflate, 32 KiB window), FLG 0x01: no preset dictionary, check bits.
            out.extend_from_slice(&[0x78, 0x01]);
            self.zlib_started = true;
        }
        for chunk in raw.chunks(MAX_STORED).chain(std::iter::once(&[][..])) {
            // Stored blocks, not the final one. The last is empty: the sync flush marker, which
            // makes the reader hand over the block's bytes without waiting for the next one.
            let len = chunk.len() as u16;
            out.push(0x00);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&(!len).to_le_bytes());
            out.extend_from_slice(chunk);
        }
        out
    }
}

/// Data frames carrying `data` on `stream`, the last with FIN if `fin` (an empty FIN frame
/// when there is no data).
pub fn data(stream: u32, data: &[u8], fin: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 8);
    let mut chunks: Vec<&[u8]> = data.chunks(MAX_DATA).collect();
    if chunks.is_empty() {
        chunks.push(&[]);
    }
    let last = chunks.len() - 1;
    for (i, chunk) in chunks.into_iter().enumerate() {
        out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
        out.push(if fin && i == last { FLAG_FIN } else { 0 });
        out.extend_from_slice(&(chunk.len() as u32).to_be_bytes()[1..]);
        out.extend_from_slice(chunk);
    }
    out
}

/// A WINDOW_UPDATE giving `stream` back `delta` bytes of window.
pub fn window_update(stream: u32, delta: u32) -> Vec<u8> {
    let mut payload = Vec::with_capacity(8);
    payload.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    payload.extend_from_slice(&(delta & 0x7fff_ffff).to_be_bytes());
    control(WINDOW_UPDATE, 0, &payload)
}

/// The answer to the server's ping `id`.
pub fn ping(id: u32) -> Vec<u8> {
    control(PING, 0, &id.to_be_bytes())
}

fn control(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.push(flags);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(payload);
    out
}

/// Reads the next frame; `None` at the end of the connection.
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> std::io::Result<Option<Frame>> {
    let mut head = [0u8; 8];
    match reader.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let flags = head[4];
    let length = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
    if length >= MAX_FRAME {
        return Err(std::io::Error::other("SPDY frame too long"));
    }
    let mut payload = vec![0u8; length];
    reader.read_exact(&mut payload).await?;
    if head[0] & 0x80 == 0 {
        let stream = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) & 0x7fff_ffff;
        return Ok(Some(Frame::Data {
            stream,
            fin: flags & FLAG_FIN != 0,
            data: payload,
        }));
    }
    let kind = u16::from_be_bytes([head[2], head[3]]);
    let word = |at: usize| {
        payload
            .get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    Ok(Some(match kind {
        RST_STREAM => Frame::Reset {
            stream: word(0).unwrap_or(0) & 0x7fff_ffff,
        },
        PING => Frame::Ping {
            id: word(0).unwrap_or(0),
        },
        GOAWAY => Frame::GoAway,
        _ => Frame::Other,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_written_read_back_as_spdy_lays_them_out() {
        let mut wire = data(5, b"hello", false);
        wire.extend(data(5, b"", true));
        wire.extend(ping(7));
        let mut reader = wire.as_slice();
        assert_eq!(
            read_frame(&mut reader).await.unwrap(),
            Some(Frame::Data {
                stream: 5,
                fin: false,
                data: b"hello".to_vec()
            })
        );
        assert_eq!(
            read_frame(&mut reader).await.unwrap(),
            Some(Frame::Data {
                stream: 5,
                fin: true,
                data: Vec::new()
            })
        );
        assert_eq!(
            read_frame(&mut reader).await.unwrap(),
            Some(Frame::Ping { id: 7 })
        );
        assert_eq!(read_frame(&mut reader).await.unwrap(), None);
    }

    #[test]
    fn header_blocks_are_a_zlib_stream_of_stored_blocks_that_goes_on() {
        let mut writer = Writer::default();
        let first = writer.open(1, &[("streamtype", "error")], false);
        // Control bit and version 3, SYN_STREAM, no flags.
        assert_eq!(&first[..5], &[0x80, 0x03, 0x00, 0x01, 0x00]);
        let block = &first[8 + 10..];
        assert_eq!(
            &block[..2],
            &[0x78, 0x01],
            "a zlib header without a dictionary"
        );
        assert_eq!((0x78u32 * 256 + 0x01) % 31, 0, "the zlib check bits hold");
        let raw_len = 4 + 4 + "streamtype".len() + 4 + "error".len();
        assert_eq!(block[2], 0x00, "a stored, non-final block");
        assert_eq!(u16::from_le_bytes([block[3], block[4]]) as usize, raw_len);
        assert_eq!(u16::from_le_bytes([block[5], block[6]]), !(raw_len as u16));
        assert_eq!(
            &block[7 + raw_len..],
            &[0x00, 0x00, 0x00, 0xff, 0xff],
            "each block ends with a sync flush"
        );
        let second = writer.open(3, &[("streamtype", "stdout")], false);
        assert_eq!(
            second[8 + 10],
            0x00,
            "later blocks go on without a zlib header"
        );
        // Long data is cut into frames, FIN on the last only.
        let long = data(3, &vec![7u8; MAX_DATA + 1], true);
        assert_eq!(long[4], 0);
        assert_eq!(long[8 + MAX_DATA + 4], FLAG_FIN);
    }
}
