//! The sink of a streamed call: output goes to the caller as it arrives, as UTF-8 text that
//! never splits a character, each stream cut at the target's `max_output_bytes`. At most
//! [`PIECES_IN_FLIGHT`] pieces wait for the caller; one that reads nothing for
//! [`STALLED_READER`] is treated as gone, so a stuck reader cannot freeze the SSH connection.
//! Until the first stdout, stderr that may be the shim's busy refusal ([`super::refusal`])
//! is held back: such a call ends with an `error` event `busy` and no output events.

use std::time::Duration;

use tokio::sync::mpsc;

use super::{Ending, Meta, Output, refusal};
use crate::error::Error;
use crate::transport::{BoxFuture, Exit, Sink, Stream};
use crate::utf8::Utf8Pieces;

/// Pieces a streamed call holds for its caller at most.
pub const PIECES_IN_FLIGHT: usize = 4;
/// A caller that takes nothing for this long is dropped; its call runs on.
const STALLED_READER: Duration = Duration::from_secs(5);

/// What a streamed caller receives, in order: `Started` once the command was sent (or a
/// cached result is replayed), output, then exactly one `End`. An `End` that comes before
/// `Started` is an error found before anything was sent.
#[derive(Debug)]
pub enum Piece {
    Started,
    Output(Stream, String),
    End(Meta, Result<Ending, Error>),
}

/// One output stream's state.
#[derive(Default)]
struct Text {
    decoder: Utf8Pieces,
    bytes: usize,
    truncated: bool,
}

/// Sends a call's output to its streamed caller.
pub struct Streamer {
    tx: mpsc::Sender<Piece>,
    cap: usize,
    stdout: Text,
    stderr: Text,
    started: bool,
    /// Some output has reached the caller.
    forwarded: bool,
    /// Output may still be the shim's busy refusal: stderr is held in `held`.
    holding: bool,
    held: Vec<u8>,
    /// The caller hung up or stalled: nothing more is sent.
    gone: bool,
}

impl Streamer {
    pub fn new(tx: mpsc::Sender<Piece>, cap: usize) -> Streamer {
        Streamer {
            tx,
            cap,
            stdout: Text::default(),
            stderr: Text::default(),
            started: false,
            forwarded: false,
            holding: true,
            held: Vec::new(),
            gone: false,
        }
    }

    /// Replays a finished (cached) result: one stdout piece, one stderr piece when there is
    /// any, then the end.
    pub async fn replay(&mut self, out: &Output) {
        self.start().await;
        for stream in [Stream::Stdout, Stream::Stderr] {
            let text = out.stream(stream).text();
            if stream == Stream::Stdout || !text.is_empty() {
                self.send(Piece::Output(stream, text)).await;
            }
        }
    }

    /// How the command ended, with this stream's cut flags; `busy` when it was the shim's
    /// over-a-limit refusal (whose stderr was held back, and is never sent).
    pub fn ending(&self, exit: Exit) -> Result<Ending, Error> {
        if self.holding
            && let Some(busy) = refusal::busy(&exit, &self.held)
        {
            return Err(busy);
        }
        Ok(Ending {
            exit,
            stdout_truncated: self.stdout.truncated,
            stderr_truncated: self.stderr.truncated,
        })
    }

    /// Sends the one terminal piece; true when the caller was gone before it.
    pub async fn end(mut self, meta: Meta, result: Result<Ending, Error>) -> bool {
        if !matches!(result, Err(Error::ShimBusy(_))) {
            self.release_held().await;
        }
        if result.is_ok() {
            for stream in [Stream::Stdout, Stream::Stderr] {
                let text = self.text(stream);
                let mut rest = String::new();
                text.decoder.finish(text.truncated, &mut rest);
                if !rest.is_empty() {
                    self.send(Piece::Output(stream, rest)).await;
                }
            }
        }
        self.send(Piece::End(meta, result)).await;
        self.gone
    }

    /// One piece of output: held while it may be the shim's refusal, else forwarded.
    async fn take(&mut self, stream: Stream, data: &[u8]) {
        if self.holding {
            if stream == Stream::Stderr {
                self.held.extend_from_slice(data);
                if !refusal::may_be_busy(&self.held) {
                    self.release_held().await;
                }
                return;
            }
            self.release_held().await;
        }
        self.forward(stream, data).await;
    }

    fn text(&mut self, stream: Stream) -> &mut Text {
        match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        }
    }

    async fn start(&mut self) {
        if !self.started {
            self.started = true;
            self.send(Piece::Started).await;
        }
    }

    async fn send(&mut self, piece: Piece) {
        if self.gone {
            return;
        }
        match tokio::time::timeout(STALLED_READER, self.tx.send(piece)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => self.gone = true,
            Err(_) => {
                tracing::info!(
                    "a streaming caller read nothing for {STALLED_READER:?}; its output is dropped from here on"
                );
                self.gone = true;
            }
        }
    }

    /// Forwards held stderr, and holds nothing from now on.
    async fn release_held(&mut self) {
        self.holding = false;
        let held = std::mem::take(&mut self.held);
        if !held.is_empty() {
            self.forward(Stream::Stderr, &held).await;
        }
    }

    /// Cuts `data` at the stream's cap and sends it as text.
    async fn forward(&mut self, stream: Stream, data: &[u8]) {
        let cap = self.cap;
        let text = self.text(stream);
        if text.truncated {
            return;
        }
        let take = data.len().min(cap - text.bytes);
        text.bytes += take;
        let mut piece = String::new();
        text.decoder.push(&data[..take], &mut piece);
        if take < data.len() {
            text.truncated = true;
            text.decoder.finish(true, &mut piece);
        }
        if !piece.is_empty() {
            self.forwarded = true;
            self.send(Piece::Output(stream, piece)).await;
        }
    }
}

impl Sink for Streamer {
    fn sent(&mut self) {
        // `Started` goes out with the first output or the end at the latest; a full queue
        // cannot happen before anything else was sent.
        if !self.started {
            self.started = true;
            if self.tx.try_send(Piece::Started).is_err() {
                self.gone = true;
            }
        }
    }

    fn output<'a>(&'a mut self, stream: Stream, data: &'a [u8]) -> BoxFuture<'a, ()> {
        Box::pin(self.take(stream, data))
    }

    fn restart(&mut self) -> bool {
        if self.forwarded {
            return false;
        }
        self.held.clear();
        self.holding = true;
        true
    }
}
