//! A session that is up. Its channel has one writer, a task that takes whole frames from a
//! queue (a frame is never cut by a caller that gives up), sends the heartbeat, and acknowledges
//! an open frame once it is on the channel; and one reader, a task that reads the channel
//! always (an unread channel would freeze the connection) and routes every frame to its
//! request's queue, which never blocks it. A request's queue holds at most [`WINDOW`] bytes of
//! its output: the shim sends no more before the request grants more credit.
//!
//! The session ends when its channel closes, the connection dies, the shim breaks the
//! protocol, or the connection is closed ([`super::end`]): then every request still routed
//! sees its queue end (a lost channel), and the channel is closed and given back.
//!
//! [`WINDOW`]: crate::wire::session::WINDOW

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use prometheus::IntGauge;
use russh::client::Msg;
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

use crate::ssh::connection::{Connection, OpenChannel};
use crate::transport::{Exit, Stream};
use crate::wire::session::{Frame, HEARTBEAT};

/// How long giving the channel back waits for the server's answer to its round trip.
const RELEASE_PING_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of the shim's own stderr (a refusal, say) kept for the log.
const STDERR_CAP: usize = 1024;

/// What the reader hands a request.
#[derive(Debug)]
pub enum Event {
    Output(Stream, Bytes),
    /// The shim passed on this many more bytes of the request's stdin.
    Credit(u32),
    Exit(Exit),
}

/// A frame for the writer, and whom to tell once it is on the channel.
struct Out {
    frame: Zeroizing<Vec<u8>>,
    written: Option<oneshot::Sender<()>>,
}

/// A session that is up, shared by the requests on it.
pub struct Live {
    pub conn_id: u64,
    /// The shim takes trace context and credentials in the open frame.
    pub in_band: bool,
    out: mpsc::UnboundedSender<Out>,
    routes: Mutex<HashMap<u32, mpsc::UnboundedSender<Event>>>,
    next_id: AtomicU32,
    ended: CancellationToken,
}

/// A request's place on the session: its id and what the reader routes to it. Dropping it
/// takes the route away (late frames for the id are then dropped).
pub struct Route {
    pub id: u32,
    pub events: mpsc::UnboundedReceiver<Event>,
    live: Arc<Live>,
}

impl Drop for Route {
    fn drop(&mut self) {
        self.live.routes.lock().expect("poisoned").remove(&self.id);
    }
}

impl Live {
    /// Starts the writer and the reader of a session whose hellos are done; `buf` holds what
    /// the reader already took off the channel after the shim's hello.
    pub fn start(
        conn: &Arc<Connection>,
        in_band: bool,
        channel: (ChannelReadHalf, ChannelWriteHalf<Msg>, OpenChannel),
        buf: BytesMut,
        tracker: &tokio_util::task::TaskTracker,
        up: IntGauge,
    ) -> Arc<Live> {
        let (reader, writer, open) = channel;
        let (live, queue) = Live::new(conn.id, in_band);
        up.inc();
        let room = (conn.clone(), open, Counted(up));
        tracker.spawn(write(live.clone(), writer, queue, room));
        tracker.spawn(read(live.clone(), reader, buf));
        live
    }

    /// A session with no channel yet, and the queue its writer takes frames from.
    fn new(conn_id: u64, in_band: bool) -> (Arc<Live>, mpsc::UnboundedReceiver<Out>) {
        let (out, queue) = mpsc::unbounded_channel();
        let live = Arc::new(Live {
            conn_id,
            in_band,
            out,
            routes: Mutex::new(HashMap::new()),
            next_id: AtomicU32::new(1),
            ended: CancellationToken::new(),
        });
        (live, queue)
    }

    /// Whether the session is still up.
    pub fn is_up(&self) -> bool {
        !self.ended.is_cancelled()
    }

    /// Ends the session: its requests see a lost channel, and the channel is closed.
    pub fn end(&self) {
        self.ended.cancel();
    }

    /// Opens a request: its id, its route, and its open frame queued for the writer, all
    /// under one lock, so open frames leave in the order of their ids (the shim takes ids
    /// only as they grow). `frame` builds the open frame for the id. `None` once the session
    /// has ended; else the route, and what says when the frame is on the channel.
    pub fn open(
        self: &Arc<Self>,
        frame: impl FnOnce(u32) -> Frame,
    ) -> Option<(Route, oneshot::Receiver<()>)> {
        let mut routes = self.routes.lock().expect("poisoned");
        if !self.is_up() {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let out = encoded(&frame(id))?;
        let (written, sent) = oneshot::channel();
        self.out
            .send(Out {
                frame: out,
                written: Some(written),
            })
            .ok()?;
        let (tx, events) = mpsc::unbounded_channel();
        routes.insert(id, tx);
        let route = Route {
            id,
            events,
            live: self.clone(),
        };
        Some((route, sent))
    }

    /// Queues `frame` for the writer (nothing happens once the session has ended).
    pub fn send(&self, frame: &Frame) {
        if let Some(out) = encoded(frame) {
            let _ = self.out.send(Out {
                frame: out,
                written: None,
            });
        }
    }

    fn dispatch(&self, frame: Frame) -> Result<(), String> {
        let event = match frame {
            Frame::Stdout { id, data } => (id, Event::Output(Stream::Stdout, data)),
            Frame::Stderr { id, data } => (id, Event::Output(Stream::Stderr, data)),
            Frame::Credit { id, bytes } => (id, Event::Credit(bytes)),
            Frame::Exit { id, status, signal } => (id, Event::Exit(Exit { status, signal })),
            Frame::Pong(_) => return Ok(()),
            other => return Err(format!("the shim sent a frame it must not send: {other:?}")),
        };
        let (id, event) = event;
        let routes = self.routes.lock().expect("poisoned");
        if let Some(route) = routes.get(&id) {
            let _ = route.send(event);
        }
        Ok(())
    }

    fn close_routes(&self) {
        self.routes.lock().expect("poisoned").clear();
    }
}

fn encoded(frame: &Frame) -> Option<Zeroizing<Vec<u8>>> {
    let mut out = Zeroizing::new(Vec::with_capacity(frame.wire_len()));
    match frame.encode(&mut out) {
        Ok(()) => Some(out),
        Err(refusal) => {
            tracing::error!("a session frame tether built does not encode: {refusal}");
            None
        }
    }
}

/// The channel's one writer: queued frames in order, and a ping when the session is idle.
/// At the end it closes the channel and, one round trip later, gives its room back.
async fn write(
    live: Arc<Live>,
    writer: ChannelWriteHalf<Msg>,
    mut queue: mpsc::UnboundedReceiver<Out>,
    room: (Arc<Connection>, OpenChannel, Counted),
) {
    let (conn, open, counted) = room;
    let mut beats = 0u64;
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.tick().await;
    loop {
        let out = tokio::select! {
            out = queue.recv() => out,
            _ = heartbeat.tick() => {
                beats += 1;
                encoded(&Frame::Ping(beats)).map(|frame| Out { frame, written: None })
            }
            _ = live.ended.cancelled() => break,
        };
        let Some(out) = out else { break };
        let sent = tokio::select! {
            sent = writer.data(&out.frame[..]) => sent.is_ok(),
            _ = live.ended.cancelled() => false,
        };
        if !sent {
            break;
        }
        heartbeat.reset();
        if let Some(written) = out.written {
            let _ = written.send(());
        }
    }
    live.end();
    live.close_routes();
    // Frames still queued were never sent; their senders learn it as the queue drops.
    drop(queue);
    let _ = writer.eof().await;
    let _ = writer.close().await;
    drop(counted);
    let _ = conn.ping(RELEASE_PING_TIMEOUT).await;
    drop(open);
}

/// A session counted in `tether_shim_sessions` until it drops.
struct Counted(IntGauge);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The channel's one reader: every frame to its request, until the channel or the session
/// ends. A frame the shim must not send ends the session (warned once).
async fn read(live: Arc<Live>, mut reader: ChannelReadHalf, mut buf: BytesMut) {
    let mut stderr = Vec::new();
    let why = loop {
        let msg = tokio::select! {
            msg = reader.wait() => msg,
            _ = live.ended.cancelled() => break None,
        };
        match msg {
            None => break Some("the connection ended".to_string()),
            Some(ChannelMsg::Data { data }) => {
                buf.extend_from_slice(&data);
                if let Err(why) = take_frames(&live, &mut buf) {
                    tracing::warn!(conn = live.conn_id, "ending the shim session: {why}");
                    break None;
                }
            }
            Some(ChannelMsg::ExtendedData { data, .. }) => keep(&mut stderr, &data, STDERR_CAP),
            Some(ChannelMsg::ExitStatus { exit_status }) => {
                break Some(format!("the shim exited with status {exit_status}"));
            }
            Some(ChannelMsg::Close | ChannelMsg::Eof) => {
                break Some("the server closed the session's channel".to_string());
            }
            Some(_) => {}
        }
    };
    if let Some(why) = why {
        let said = String::from_utf8_lossy(&stderr);
        tracing::info!(conn = live.conn_id, stderr = %said.trim(), "the shim session ended: {why}");
    }
    live.end();
    live.close_routes();
    // Read on until the channel is gone, so the connection never waits on it.
    while reader.wait().await.is_some() {}
}

/// Appends what of `data` fits in `kept` within `cap` bytes (the shim's stderr, for a log line).
pub(super) fn keep(kept: &mut Vec<u8>, data: &[u8], cap: usize) {
    let room = cap.saturating_sub(kept.len());
    kept.extend_from_slice(&data[..data.len().min(room)]);
}

fn take_frames(live: &Live, buf: &mut BytesMut) -> Result<(), String> {
    while let Some(frame) = Frame::take(buf).map_err(|r| r.to_string())? {
        live.dispatch(frame)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_frames_leave_in_the_order_of_their_ids_however_many_open_at_once() {
        let (live, mut queue) = Live::new(1, false);
        let routes: Vec<Route> = std::thread::scope(|scope| {
            let openers: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        (0..50)
                            .map(|_| {
                                live.open(|id| Frame::Open {
                                    id,
                                    line: "health".into(),
                                    in_band: None,
                                })
                                .expect("the session is up")
                                .0
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            openers
                .into_iter()
                .flat_map(|opener| opener.join().unwrap())
                .collect()
        });
        let mut ids = Vec::new();
        while let Ok(out) = queue.try_recv() {
            let mut buf = BytesMut::from(&out.frame[..]);
            match Frame::take(&mut buf) {
                Ok(Some(Frame::Open { id, .. })) => ids.push(id),
                other => panic!("not an open frame: {other:?}"),
            }
        }
        assert_eq!(ids, (1..=400).collect::<Vec<u32>>());
        assert_eq!(routes.len(), 400);
        // An ended session opens nothing.
        live.end();
        assert!(live.open(|id| Frame::Cancel { id }).is_none());
    }
}
