//! Warm channels: session channels each connection opens ahead of demand, so that a pooled
//! call's exec goes out at once on a channel that is already there (one round trip, not two).
//!
//! The stock of a connection is refilled in the background (a task on the runtime's tracker,
//! never on a call's path) when the connection comes up, when a call takes a warm channel and
//! when the server frees a channel. A warm channel is counted open from its open, like any
//! other, and one is opened only while, after it, one session stays free within the
//! connection's learned capacity (MaxSessions): pooled calls take warm channels before they
//! open one, so the stock never starves them, and the free one is there for the shim probe,
//! which opens its own. One that opened when calls had meanwhile taken that room is closed
//! at once; a refused open lowers the capacity as a call's would and ends the refill.
//! A warm channel receives nothing before its exec but, perhaps, the server's EOF and CLOSE
//! (a handful of messages, far below the channel's buffer, so they never block russh's
//! session loop); a channel found that way is stale and is discarded, never used. When the
//! connection is closed its stock is closed politely: CLOSE, then one round trip (not
//! awaited on one that stopped answering), then the goodbye ([`Connection::close`]).
//!
//! What a warm channel cannot tell: whether its connection died a moment ago without tether
//! having read that yet. An exec on it then counts as sent (`connection_lost` or `timeout`,
//! "it may have run"), where a fresh open would have failed before anything was sent.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use prometheus::IntGauge;
use russh::client::Msg;
use russh::{Channel, ChannelMsg, ChannelOpenFailure};
use tokio_util::task::TaskTracker;

use super::connection::{Connection, OpenChannel};

/// The longest a background open may take before the refill gives up for now.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long closing a surplus warm channel waits for the server's answer to its round trip.
const CLOSE_PING_TIMEOUT: Duration = Duration::from_secs(1);

/// How many warm channels a target's connections keep, and where their refills run.
#[derive(Clone)]
pub struct Plan {
    pub channels: usize,
    pub tracker: TaskTracker,
    /// The target's count of warm channels ready (`tether_warm_channels`).
    pub ready: IntGauge,
}

/// One connection's warm channels.
pub struct Stock {
    plan: Plan,
    ready: Mutex<Vec<Channel<Msg>>>,
    /// Set while a refill task runs (one at a time per connection).
    refilling: AtomicBool,
}

impl Plan {
    /// No warm channels (a one-off connection, e.g. the doctor's).
    pub fn none() -> Plan {
        Plan {
            channels: 0,
            tracker: TaskTracker::new(),
            ready: IntGauge::new("tether_warm_channels", "unregistered").expect("a valid name"),
        }
    }
}

impl Stock {
    pub fn new(plan: Plan) -> Stock {
        Stock {
            plan,
            ready: Mutex::new(Vec::new()),
            refilling: AtomicBool::new(false),
        }
    }

    /// Warm channels ready right now.
    fn ready(&self) -> usize {
        self.ready.lock().expect("poisoned").len()
    }

    fn push(&self, channel: Channel<Msg>) {
        self.ready.lock().expect("poisoned").push(channel);
        self.plan.ready.inc();
    }

    fn pop(&self) -> Option<Channel<Msg>> {
        let channel = self.ready.lock().expect("poisoned").pop()?;
        self.plan.ready.dec();
        Some(channel)
    }

    fn take_all(&self) -> Vec<Channel<Msg>> {
        let channels = std::mem::take(&mut *self.ready.lock().expect("poisoned"));
        self.plan.ready.sub(channels.len() as i64);
        channels
    }
}

/// A connection that died goes with its stock.
impl Drop for Stock {
    fn drop(&mut self) {
        self.take_all();
    }
}

/// A warm channel of `conn`, counted open from now on by the guard, if one is ready and
/// still usable; the refill starts either way.
pub fn take(conn: &Arc<Connection>) -> Option<(Channel<Msg>, OpenChannel)> {
    let taken = loop {
        let Some(mut channel) = conn.warm().pop() else {
            break None;
        };
        if is_fresh(&mut channel) {
            break Some((channel, conn.adopt_open()));
        }
        // The server closed it, and russh has already answered its CLOSE.
        tracing::debug!(
            conn = conn.id,
            "a warm channel was closed by the server; discarded"
        );
        conn.uncount_open();
    };
    refill(conn);
    taken
}

/// Starts the background refill of `conn`'s stock, unless one runs, none is wanted, or
/// the runtime is gone (shutting down).
pub fn refill(conn: &Arc<Connection>) {
    let stock = conn.warm();
    if stock.plan.channels == 0 || !wanted(conn) || tokio::runtime::Handle::try_current().is_err() {
        return;
    }
    if stock.refilling.swap(true, Ordering::SeqCst) {
        return;
    }
    let conn = conn.clone();
    stock.plan.tracker.clone().spawn(async move {
        loop {
            fill(&conn).await;
            conn.warm().refilling.store(false, Ordering::SeqCst);
            // A take that came while this task was ending found the flag still set.
            if !wanted(&conn) || conn.warm().refilling.swap(true, Ordering::SeqCst) {
                return;
            }
        }
    });
}

/// Sends CLOSE on every warm channel of `conn` (whose close then makes the one round trip
/// after which the server has freed them, within its goodbye's bound); how many there were.
pub async fn close_all(conn: &Connection) -> usize {
    let channels = conn.warm().take_all();
    for channel in &channels {
        let _ = channel.close().await;
        conn.uncount_open();
    }
    channels.len()
}

/// Whether the stock is short and the connection has room for one more warm channel.
fn wanted(conn: &Connection) -> bool {
    !conn.is_closed() && conn.warm().ready() < conn.warm().plan.channels && room(conn, 1)
}

/// Whether `more` channels beyond those open still leave one session free.
fn room(conn: &Connection, more: usize) -> bool {
    conn.open_channels() + more < conn.capacity()
}

/// Opens warm channels one at a time while they are wanted.
async fn fill(conn: &Connection) {
    while wanted(conn) {
        let opened = tokio::time::timeout(OPEN_TIMEOUT, conn.handle().channel_open_session()).await;
        match opened {
            Ok(Ok(channel)) => {
                conn.count_open();
                if conn.is_closed() || !room(conn, 0) {
                    // Calls took the room while it opened.
                    let _ = channel.close().await;
                    let _ = conn.ping(CLOSE_PING_TIMEOUT).await;
                    conn.uncount_open();
                    return;
                }
                conn.warm().push(channel);
            }
            Ok(Err(russh::Error::ChannelOpenFailure(
                ChannelOpenFailure::ConnectFailed | ChannelOpenFailure::ResourceShortage,
            ))) => {
                conn.refused();
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!(conn = conn.id, error = %e, "a warm channel did not open");
                return;
            }
            Err(_) => return,
        }
    }
}

/// Reads what the server sent a warm channel so far, without waiting: false once it sent EOF
/// or CLOSE (or russh dropped the channel).
fn is_fresh(channel: &mut Channel<Msg>) -> bool {
    loop {
        match poll_once(channel.wait()) {
            Poll::Pending => return true,
            Poll::Ready(None | Some(ChannelMsg::Eof | ChannelMsg::Close)) => return false,
            Poll::Ready(Some(_)) => {}
        }
    }
}

/// Polls `future` once with a waker that does nothing.
fn poll_once<F: Future>(future: F) -> Poll<F::Output> {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    future.as_mut().poll(&mut cx)
}
