//! The two deadlines of an HTTP connection (docs/rpc.md, "HTTP connections"): an idle
//! keep-alive connection is closed after `server.idle_timeout`; a request whose first byte
//! has arrived must be complete within `server.request_timeout`. hyper's own header timer
//! cannot tell the two apart (it runs while a connection idles), so tether keeps its own.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// The idle and request timeouts of one server.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub idle: Duration,
    pub request: Duration,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for a request since then.
    Idle(Instant),
    /// A request's first byte came then; its handler has not started.
    Arriving(Instant),
    /// A handler runs or its answer is being written: its own bounds apply.
    Busy,
}

/// Where one connection is, shared by its reader, its handlers and its watcher.
#[derive(Debug)]
pub struct Clock {
    phase: Mutex<Phase>,
    changed: Notify,
}

impl Clock {
    pub fn new() -> Arc<Clock> {
        Arc::new(Clock {
            phase: Mutex::new(Phase::Idle(Instant::now())),
            changed: Notify::new(),
        })
    }

    fn set(&self, phase: Phase) {
        *self.phase.lock().expect("poisoned") = phase;
        self.changed.notify_one();
    }

    fn bytes_arrived(&self) {
        let mut phase = self.phase.lock().expect("poisoned");
        if let Phase::Idle(_) = *phase {
            *phase = Phase::Arriving(Instant::now());
            drop(phase);
            self.changed.notify_one();
        }
    }

    /// A handler has the request.
    pub fn busy(&self) {
        self.set(Phase::Busy);
    }

    /// The answer is written (or abandoned): the connection idles from now.
    pub fn idle(&self) {
        self.set(Phase::Idle(Instant::now()));
    }

    /// Resolves when the connection has idled, or a request has been arriving, for too long.
    pub async fn expired(&self, timeouts: Timeouts) {
        loop {
            let changed = self.changed.notified();
            let deadline = match *self.phase.lock().expect("poisoned") {
                Phase::Idle(since) => Some(since + timeouts.idle),
                Phase::Arriving(since) => Some(since + timeouts.request),
                Phase::Busy => None,
            };
            match deadline {
                Some(deadline) => tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => return,
                    _ = changed => {}
                },
                None => changed.await,
            }
        }
    }
}

/// A connection's stream that tells its clock when bytes arrive.
pub struct Watched<S> {
    io: S,
    clock: Arc<Clock>,
}

impl<S> Watched<S> {
    pub fn new(io: S, clock: Arc<Clock>) -> Self {
        Watched { io, clock }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.clock.bytes_arrived();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// A response body that sets its connection idle once hyper is done with it.
pub struct UntilWritten<B> {
    body: B,
    clock: Arc<Clock>,
}

impl<B> UntilWritten<B> {
    pub fn new(body: B, clock: Arc<Clock>) -> Self {
        UntilWritten { body, clock }
    }
}

impl<B> Drop for UntilWritten<B> {
    fn drop(&mut self) {
        self.clock.idle();
    }
}

impl<B: Body + Unpin> Body for UntilWritten<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUTS: Timeouts = Timeouts {
        idle: Duration::from_secs(120),
        request: Duration::from_secs(10),
    };

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_gets_the_idle_timeout() {
        let clock = Clock::new();
        let start = Instant::now();
        clock.expired(TIMEOUTS).await;
        assert_eq!(start.elapsed(), TIMEOUTS.idle);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_started_arriving_gets_the_request_timeout() {
        let clock = Clock::new();
        tokio::time::advance(Duration::from_secs(100)).await;
        clock.bytes_arrived();
        let arrived = Instant::now();
        clock.expired(TIMEOUTS).await;
        assert_eq!(arrived.elapsed(), TIMEOUTS.request);
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_connection_has_no_deadline_and_idles_again_after_its_answer() {
        let clock = Clock::new();
        clock.bytes_arrived();
        clock.busy();
        let watcher = tokio::spawn({
            let clock = clock.clone();
            async move { clock.expired(TIMEOUTS).await }
        });
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert!(!watcher.is_finished(), "a long call keeps its connection");
        clock.idle();
        let idle = Instant::now();
        watcher.await.unwrap();
        assert_eq!(idle.elapsed(), TIMEOUTS.idle);
    }
}
