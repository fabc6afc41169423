//! The sink of a buffered call: both streams held, each up to the target's
//! `max_output_bytes` and all calls together within `server.max_buffered_bytes`; the answer
//! made from them.

use std::sync::Arc;

use super::refusal;
use crate::error::Error;
use crate::transport::output::{Budget, Captured};
use crate::transport::{BoxFuture, Exit, Sink, Stream};

/// A finished buffered call's output, held once and shared by cached copies.
#[derive(Debug)]
pub struct Output {
    pub exit: Exit,
    pub stdout: Captured,
    pub stderr: Captured,
}

impl Output {
    /// Bytes held.
    pub fn len(&self) -> usize {
        self.stdout.len() + self.stderr.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn stream(&self, stream: Stream) -> &Captured {
        match stream {
            Stream::Stdout => &self.stdout,
            Stream::Stderr => &self.stderr,
        }
    }
}

/// Collects a command's output for a buffered answer.
pub struct Buffer {
    cap: usize,
    budget: Arc<Budget>,
    stdout: Captured,
    stderr: Captured,
}

impl Buffer {
    pub fn new(cap: usize, budget: Arc<Budget>) -> Buffer {
        Buffer {
            stdout: Captured::new(cap, budget.clone()),
            stderr: Captured::new(cap, budget.clone()),
            cap,
            budget,
        }
    }

    pub fn finish(self, exit: Exit) -> Output {
        Output {
            exit,
            stdout: self.stdout,
            stderr: self.stderr,
        }
    }

    /// A call's answer: the output, or `busy` when the command was the shim's over-a-limit
    /// refusal ([`refusal`]).
    pub fn answer(self, exit: Exit) -> Result<Output, Error> {
        let out = self.finish(exit);
        let stderr = out.stderr.head(refusal::MAX_REFUSAL_BYTES + 1);
        match refusal::busy(&out.exit, &stderr) {
            Some(busy) if out.stdout.is_empty() => Err(busy),
            _ => Ok(out),
        }
    }
}

impl Sink for Buffer {
    fn output<'a>(&'a mut self, stream: Stream, data: &'a [u8]) -> BoxFuture<'a, ()> {
        match stream {
            Stream::Stdout => self.stdout.push(data),
            Stream::Stderr => self.stderr.push(data),
        }
        Box::pin(std::future::ready(()))
    }

    fn restart(&mut self) -> bool {
        *self = Buffer::new(self.cap, self.budget.clone());
        true
    }
}
