//! One session request, relayed: its stdin, stdout and stderr are pipes, and its own threads
//! move bytes between them and frames. The handler thread answers the request with
//! [`Shim::answer`], exactly as exec would; a feeder writes the request's stdin frames into
//! its stdin pipe and grants tether credit as it does; two pumps read its stdout and stderr
//! in pieces of at most [`MAX_DATA`] and send them within the output credit. Once the handler
//! returned and both pumps reached their pipe's end, the handler thread sends the request's
//! exit status, after all of its output.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, PipeReader, PipeWriter, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::{Builder, Scope};

use bytes::Bytes;
use zeroize::Zeroizing;

use super::flow::Flow;
use super::writer::Writer;
use crate::shim::call::Shim;
use crate::shim::gate::Start;
use crate::shim::io::Io;
use crate::shim::request;
use crate::wire::session::{Frame, MAX_DATA};

/// The exit status of a Rust program that panicked (what an exec shim would end with).
const PANICKED: u8 = 101;

/// What the reader holds of a request in flight.
pub struct Relay {
    pub flow: Arc<Flow>,
    /// Where its stdin frames go; `None` once its stdin ended (or it was cancelled).
    stdin: Option<mpsc::Sender<Bytes>>,
    done: Arc<AtomicBool>,
}

/// What a request is: its id, its command line and in-band data, and when it came.
pub struct Opened {
    pub id: u32,
    pub line: String,
    pub in_band: Option<Zeroizing<Vec<u8>>>,
    pub start: Start,
}

impl Relay {
    /// Starts answering `opened` on threads of `scope`.
    pub fn start<'scope, 'env>(
        scope: &'scope Scope<'scope, 'env>,
        shim: &'env Shim<'env>,
        writer: &'env Writer,
        opened: Opened,
    ) -> io::Result<Relay> {
        let id = opened.id;
        let flow = Arc::new(Flow::new()?);
        let done = Arc::new(AtomicBool::new(false));
        let (stdin_rx, stdin_tx) = io::pipe()?;
        let (stdout_rx, stdout_tx) = io::pipe()?;
        let (stderr_rx, stderr_tx) = io::pipe()?;
        let (chunks_tx, chunks_rx) = mpsc::channel();
        let thread = |what: &str| Builder::new().name(format!("request {id} {what}"));
        let feeding = flow.clone();
        thread("stdin").spawn_scoped(scope, move || {
            feed(id, stdin_tx, &chunks_rx, &feeding, writer);
        })?;
        let pump_out = {
            let flow = flow.clone();
            thread("stdout").spawn_scoped(scope, move || {
                pump(stdout_rx, &flow, writer, |data| Frame::Stdout { id, data });
            })?
        };
        let pump_err = {
            let flow = flow.clone();
            thread("stderr").spawn_scoped(scope, move || {
                pump(stderr_rx, &flow, writer, |data| Frame::Stderr { id, data });
            })?
        };
        let io = Io {
            stdin: file(stdin_rx),
            stdout: file(stdout_tx),
            stderr: file(stderr_tx),
            in_band: opened.in_band,
        };
        let (handling, finished) = (flow.clone(), done.clone());
        thread("handler").spawn_scoped(scope, move || {
            let asked = request::parse(Some(OsStr::new(&opened.line)), shim.config);
            // A handler that panics ends its request as the panic would end an exec shim,
            // and the session goes on.
            let answer = AssertUnwindSafe(|| shim.answer(&opened.start, asked, io));
            let status = panic::catch_unwind(answer).unwrap_or(PANICKED);
            let _ = (pump_out.join(), pump_err.join());
            if !handling.cancelled() {
                writer.send(&Frame::Exit {
                    id,
                    status: Some(u32::from(status)),
                    signal: None,
                });
            }
            finished.store(true, Ordering::SeqCst);
        })?;
        Ok(Relay {
            flow,
            stdin: Some(chunks_tx),
            done,
        })
    }

    /// Queues a piece of stdin; `Err` names the rule when it breaks one.
    pub fn stdin(&self, id: u32, data: Bytes) -> Result<(), String> {
        let Some(chunks) = &self.stdin else {
            return match self.flow.cancelled() {
                true => Ok(()),
                false => Err(format!("stdin for request {id} after its end")),
            };
        };
        if !self.flow.queue_stdin(data.len()) {
            return Err(format!(
                "stdin for request {id} beyond the {} bytes of credit granted",
                crate::wire::session::WINDOW
            ));
        }
        // A feeder already gone (the request ended) takes nothing more: dropped.
        let _ = chunks.send(data);
        Ok(())
    }

    /// The request's stdin is complete: its pipe closes once the queued data is written.
    pub fn stdin_end(&mut self) {
        self.stdin = None;
    }

    /// As a closed channel would: every pipe end the session holds of the request closes (so
    /// its handler sees EOF, EPIPE and a caller gone), and nothing more is sent for it.
    pub fn cancel(&mut self) {
        self.flow.cancel();
        self.stdin = None;
    }

    /// Whether the request ended (its exit sent, or it was cancelled and its handler returned).
    pub fn done(&self) -> bool {
        self.done.load(Ordering::SeqCst)
    }
}

fn file(end: impl Into<OwnedFd>) -> File {
    File::from(end.into())
}

/// Writes the request's stdin frames into its pipe, granting credit for each piece written,
/// until its stdin ends or it is cancelled. A handler that closed its stdin (its verb takes
/// none, or its program ended) gets nothing more: the rest is dropped and credited still, so
/// tether's sending never stalls on it.
fn feed(id: u32, pipe: PipeWriter, chunks: &mpsc::Receiver<Bytes>, flow: &Flow, writer: &Writer) {
    let mut pipe = Some(pipe);
    for chunk in chunks {
        if flow.cancelled() {
            return;
        }
        if let Some(open) = &mut pipe
            && open.write_all(&chunk).is_err()
        {
            pipe = None;
        }
        flow.stdin_taken(chunk.len());
        let bytes = u32::try_from(chunk.len()).unwrap_or(u32::MAX);
        writer.send(&Frame::Credit { id, bytes });
    }
}

/// Sends what the request writes to `pipe` as frames made by `frame`, within its credit, until
/// the pipe's end or a cancel (which closes the pipe: the writer sees EPIPE).
fn pump(pipe: PipeReader, flow: &Flow, writer: &Writer, frame: impl Fn(Bytes) -> Frame) {
    let mut buf = vec![0; MAX_DATA];
    while flow.readable(pipe.as_fd()) {
        let Some(room) = flow.reserve(MAX_DATA) else {
            return;
        };
        let read = (&pipe).read(&mut buf[..room]);
        flow.refund(room - read.as_ref().map_or(0, |n| *n));
        match read {
            Ok(0) => return,
            Ok(n) if !flow.cancelled() => writer.send(&frame(Bytes::copy_from_slice(&buf[..n]))),
            Ok(_) => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}
