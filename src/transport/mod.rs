//! The transport seam: how a target runs one request on the remote, whatever carries it.
//! The call path ([`crate::target`], [`crate::call`], [`crate::probe`], [`crate::doctor`])
//! speaks only these types; [`crate::ssh::transport`] (exec on a pooled channel) is the
//! implementation. A test stands in for SSH with [`fake`].
//!
//! - [`output`]: output held in memory within a shared budget.
//! - [`interest`]: whether anyone still wants a request sent.

#[cfg(test)]
pub mod fake;
pub mod interest;
pub mod output;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::health::PoolNumbers;
use crate::wire::in_band::InBand;
use interest::Interest;

/// A boxed future, as the seam's methods return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What to run on the remote: the command line ([`crate::wire`]), its stdin, and what goes
/// with it in-band (trace context, credentials) when the remote takes it.
#[derive(Debug, Clone)]
pub struct Request {
    pub line: String,
    pub stdin: Option<Bytes>,
    pub in_band: Option<Arc<InBand>>,
}

/// How long a request may take, and when tether gives up on one that runs past it.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub deadline: Instant,
    /// After the deadline, the channel is closed once the command has run this much longer
    /// (the target's `stuck_after`)...
    pub stuck_after: Duration,
    /// ...or once this much more output was read and dropped (the target's
    /// `max_output_bytes`): a background child holding stdout open is not drained forever.
    pub drain_cap: usize,
}

/// Which output stream a piece of data belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// How the remote command ended.
#[derive(Debug, Clone, Default)]
pub struct Exit {
    pub status: Option<u32>,
    pub signal: Option<String>,
}

/// Where a running request's output goes, as it arrives.
pub trait Sink: Send {
    /// The request has left: from now on the command may run.
    fn sent(&mut self) {}
    /// One piece of output. A slow reader may make this wait; the deadline still applies.
    fn output<'a>(&'a mut self, stream: Stream, data: &'a [u8]) -> BoxFuture<'a, ()>;
    /// Forgets the output of a failed attempt before the request is sent again; false when
    /// some of it already reached the caller, so that a re-send would repeat it.
    fn restart(&mut self) -> bool;
}

/// A failure, split by whether the request had left: after it, the command may have run.
#[derive(Debug)]
pub enum Failed {
    NotSent(Error),
    Sent(Error),
}

impl Failed {
    pub fn error(&self) -> &Error {
        match self {
            Failed::NotSent(e) | Failed::Sent(e) => e,
        }
    }

    pub fn into_error(self) -> Error {
        match self {
            Failed::NotSent(e) | Failed::Sent(e) => e,
        }
    }
}

/// The rest of a request's life on the remote after the caller was answered (for exec: the
/// channel's close and one round trip); ends with its room given back. Whoever owns the call
/// awaits it, so nothing is reused before the server has really freed it.
pub type Release = BoxFuture<'static, ()>;

/// A release with nothing left to wait for.
pub fn released() -> Release {
    Box::pin(async {})
}

/// What one attempt gives back: the answer, and the release its owner must await.
pub struct Ran {
    pub result: Result<Exit, Failed>,
    pub release: Release,
}

/// Where an attempt waits for room to run.
#[derive(Debug, Clone, Copy)]
pub enum Room {
    /// In the target's pool, at most this long (`busy` after it).
    Pooled(Duration),
    /// Outside the pool, on any live connection: the probes'.
    Unpooled,
}

/// One attempt at running a request.
pub struct Attempt<'a> {
    pub request: &'a Request,
    pub limits: Limits,
    pub room: Room,
    /// The drain's hard stop: ends the wait like a deadline does, answering `shutting_down`.
    pub stop: &'a CancellationToken,
    /// Once lost, nothing more is sent (`cancelled`); after the send it no longer matters.
    pub interest: &'a mut Interest,
    pub sink: &'a mut dyn Sink,
}

/// A way to run requests on one target's remote.
pub trait Transport: Send + Sync {
    /// Runs one attempt: waits for room, sends the request, hands its output to the sink.
    fn run<'a>(&'a self, attempt: Attempt<'a>) -> BoxFuture<'a, Ran>;
    /// Whether a connection is up right now (answers from memory).
    fn is_connected(&self) -> bool;
    /// Makes sure a connection is up, making one if needed (one bounded attempt).
    fn connect(&self) -> BoxFuture<'_, Result<(), Error>>;
    /// One round trip on every live connection (connecting when there is none), each bounded
    /// by `bound`; one that does not answer is retired. The fastest answer wins.
    fn ping(&self, bound: Duration) -> BoxFuture<'_, Result<Duration, Error>>;
    /// Live numbers for the health JSON and the gauges.
    fn numbers(&self) -> PoolNumbers;
    /// Stops giving out room and closes the connections politely.
    fn close(&self) -> BoxFuture<'_, ()>;
}
