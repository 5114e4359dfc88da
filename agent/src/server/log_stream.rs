//! A container's log file as a stream of output chunks: what is there (after `tailLines`),
//! and with `follow` what the container goes on writing, until it has exited and its file is
//! read to the end. The stream does its work only when polled, so a client that goes away
//! (its response body dropped) ends it.

use std::io::SeekFrom;
use std::path::PathBuf;
use std::time::Duration;

use axum::body::Bytes;
use futures::Stream;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::logs::{tail_start, LogOptions, LogWriter};
use crate::cri::ContainerState;
use crate::RuntimeClient;

/// How often a followed file is looked at for more.
const POLL: Duration = Duration::from_millis(200);
/// How many empty polls pass between asking the runtime whether the container still runs.
const POLLS_PER_STATE_CHECK: u32 = 5;

struct Follow {
    path: PathBuf,
    options: LogOptions,
    writer: LogWriter,
    /// Where the next read of the file starts.
    offset: u64,
    /// Read bytes of an unterminated last line, kept until its newline arrives.
    pending: Vec<u8>,
    runtime: RuntimeClient,
    container_id: String,
    first: bool,
    done: bool,
    /// The container was seen exited: one more read finds what it wrote last, then the end.
    exited: bool,
    idle_polls: u32,
}

impl Follow {
    async fn read_more(&mut self) -> std::io::Result<Vec<u8>> {
        let mut file = match tokio::fs::File::open(&self.path).await {
            Ok(f) => f,
            // Not written yet: the container has not started, or wrote nothing.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        file.seek(SeekFrom::Start(self.offset)).await?;
        let mut data = Vec::new();
        file.read_to_end(&mut data).await?;
        self.offset += data.len() as u64;
        Ok(data)
    }

    async fn still_running(&self) -> bool {
        match self.runtime.container_status(&self.container_id).await {
            Ok(status) => status.state == ContainerState::ContainerRunning as i32,
            // Gone from the runtime: nothing will write to its file any more.
            Err(_) => false,
        }
    }

    /// The next chunk of output, or `None` at the end.
    async fn next(&mut self) -> Option<std::io::Result<Bytes>> {
        loop {
            if self.done || self.writer.is_done() {
                return None;
            }
            let data = match self.read_more().await {
                Ok(d) => d,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            let mut buffer = std::mem::take(&mut self.pending);
            buffer.extend_from_slice(&data);
            let mut start = 0;
            if self.first {
                self.first = false;
                if let Some(n) = self.options.tail_lines {
                    start = tail_start(&buffer, n);
                }
            }
            let mut out = Vec::new();
            let consumed = start + self.writer.write_complete_lines(&buffer[start..], &mut out);
            self.pending = buffer[consumed..].to_vec();
            let finished = !self.options.follow || self.exited;
            if finished {
                // Nothing more will be appended: an unterminated last line is whole.
                if !self.pending.is_empty() && !self.writer.is_done() {
                    let rest = std::mem::take(&mut self.pending);
                    self.writer.write_line(&rest, &mut out);
                }
                self.done = true;
            }
            if !out.is_empty() {
                self.idle_polls = 0;
                return Some(Ok(Bytes::from(out)));
            }
            if self.done {
                return None;
            }
            self.idle_polls += 1;
            if self.idle_polls >= POLLS_PER_STATE_CHECK {
                self.idle_polls = 0;
                if !self.still_running().await {
                    self.exited = true;
                    continue;
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// The output of the log file at `path` of container `container_id` under `options`.
pub fn log_stream(
    path: PathBuf,
    options: LogOptions,
    runtime: RuntimeClient,
    container_id: String,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    let state = Follow {
        path,
        writer: LogWriter::new(&options),
        options,
        offset: 0,
        pending: Vec::new(),
        runtime,
        container_id,
        first: true,
        done: false,
        exited: false,
        // The first time nothing is there, ask at once whether more can come.
        idle_polls: POLLS_PER_STATE_CHECK - 1,
    };
    futures::stream::unfold(state, |mut state| async move {
        let item = state.next().await?;
        Some((item, state))
    })
}
