//! Running one request on a channel (a new one, or for a pool slot's call a warm one,
//! [`super::warm`]), the SSH side of [`crate::transport`]: stdin then EOF,
//! stdout and stderr handed to a [`Sink`] as they arrive, the exit status or signal, the
//! deadline, a stop signal (drain), and the caller's [`Interest`]: nothing is sent once
//! nobody wants the answer.
//!
//! [`run`] answers as soon as the caller can be answered, and hands back the rest of the
//! channel's life as a [`crate::transport::Release`]: whoever owns the call awaits it, so the
//! slot stays taken until the server has really freed the session. A channel is never just
//! dropped open.

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use russh::client::Msg;
use russh::{Channel, ChannelMsg, ChannelOpenFailure, ChannelReadHalf, ChannelWriteHalf};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

use super::connection::{Connection, OpenChannel};
use super::warm;
use crate::error::Error;
use crate::transport::interest::Interest;
use crate::transport::{Exit, Failed, Limits, Ran, Request, Sink, Stream};

/// How long the release waits for the server's answer to its round trip.
const RELEASE_PING_TIMEOUT: Duration = Duration::from_secs(10);
/// First and longest pause between retries of a refused channel open.
const OPEN_RETRY_FIRST: Duration = Duration::from_millis(5);
const OPEN_RETRY_MAX: Duration = Duration::from_millis(50);

/// What goes on the channel: the command line, then stdin: an in-band preamble first when
/// there is one ([`super::in_band`]), then the caller's stdin.
pub struct Command<'a> {
    pub line: Cow<'a, str>,
    pub preamble: Option<Zeroizing<Vec<u8>>>,
    pub stdin: Option<&'a Bytes>,
}

impl<'a> Command<'a> {
    /// `request` as it is, with no in-band data.
    pub fn plain(request: &'a Request) -> Command<'a> {
        Command {
            line: Cow::Borrowed(&request.line),
            preamble: None,
            stdin: request.stdin.as_ref(),
        }
    }
}

/// Why reading stopped early.
enum Cut {
    Deadline,
    Stop,
    /// Nobody wants the answer any more (only before the exec request has left).
    Unwanted,
    /// An operator cancelled the call after it was sent: its channel is closed.
    Cancelled,
}

/// Where a command runs: the connection, and whether one of its warm channels may be taken.
pub struct On<'a> {
    conn: &'a Arc<Connection>,
    warm: bool,
}

impl<'a> On<'a> {
    /// A new channel of `conn`: probes, `@hello`, doctor.
    pub fn new_channel(conn: &'a Arc<Connection>) -> On<'a> {
        On { conn, warm: false }
    }

    /// One of `conn`'s warm channels when one is ready ([`super::warm`]), so the exec goes
    /// out at once; else a new channel: a pool slot's call.
    pub fn warm_or_new(conn: &'a Arc<Connection>) -> On<'a> {
        On { conn, warm: true }
    }
}

/// Runs `cmd` on a channel of `on`, sending its output to `sink`. `hold` (the pool
/// slot) is dropped at the end of the returned release. `stop` (the drain's hard stop) ends
/// the wait like a deadline does, answering `shutting_down`. Once `interest` is lost, the
/// command is not sent (`cancelled`); after it was sent, the command runs on unless an
/// operator cancels it (the channel is then closed, as on a hard stop).
pub async fn run(
    on: On<'_>,
    cmd: &Command<'_>,
    limits: Limits,
    stop: &CancellationToken,
    interest: &mut Interest,
    hold: impl Send + 'static,
    sink: &mut dyn Sink,
) -> Ran {
    let conn = on.conn;
    let deadline = limits.deadline;
    let budget = deadline.saturating_duration_since(Instant::now());
    let mut open = Box::pin(open_channel(conn.clone(), deadline, on.warm));
    let opened = tokio::select! {
        opened = &mut open => opened,
        cut = cut(deadline, stop) => return Ran::not_sent(cut.error(budget), conn, open, hold),
        _ = interest.lost() => return Ran::not_sent(Cut::Unwanted.error(budget), conn, open, hold),
    };
    let (channel, open) = match opened {
        Ok(opened) => opened,
        Err(e) => return Ran::at_once(Err(Failed::NotSent(e)), hold),
    };
    if interest.is_lost().await {
        let opened = Box::pin(std::future::ready(Ok((channel, open))));
        return Ran::not_sent(Cut::Unwanted.error(budget), conn, opened, hold);
    }
    let held = (hold, open);
    // A failed send means the connection's session loop is gone (a warm channel's too): no
    // fresh channel could be opened there either, and nothing was sent.
    if channel.exec(true, cmd.line.as_bytes()).await.is_err() {
        let gone = Error::UpstreamUnreachable(format!(
            "SSH connection {} was lost before the command was sent; nothing was sent",
            conn.id
        ));
        return Ran::at_once(Err(Failed::NotSent(gone)), held);
    }
    sink.sent();
    let (mut reader, writer) = channel.split();
    let mut exit = Exit::default();
    let ended = {
        let write = async {
            if let Some(preamble) = &cmd.preamble {
                writer.data(&preamble[..]).await?;
            }
            if let Some(data) = cmd.stdin {
                writer.data(&data[..]).await?;
            }
            writer.eof().await
        };
        let read = read_until_close(&mut reader, &mut exit, sink);
        tokio::pin!(write, read);
        let mut writing = true;
        loop {
            tokio::select! {
                // A remote that exits without reading stdin is not an error of ours.
                _ = &mut write, if writing => writing = false,
                closed = &mut read => break Ok(closed),
                cut = cut(deadline, stop) => break Err(cut),
                _ = interest.cancelled() => break Err(Cut::Cancelled),
            }
        }
    };
    let conn = conn.clone();
    match ended {
        Ok(true) => Ran {
            result: Ok(exit),
            // The server frees its session slot once it has processed our CLOSE; one round
            // trip after it proves that.
            release: Box::pin(async move {
                let _ = conn.ping(RELEASE_PING_TIMEOUT).await;
                drop(held);
            }),
        },
        Ok(false) => Ran::at_once(
            Err(Failed::Sent(lost(
                &conn,
                "while the command ran: it may have run",
            ))),
            held,
        ),
        Err(cut) => {
            let result = Err(Failed::Sent(cut.error(budget)));
            let stop = stop.clone();
            let release = Box::pin(async move {
                let closed = match cut {
                    Cut::Deadline => wait_for_close(&mut reader, limits, &stop).await,
                    Cut::Stop | Cut::Unwanted | Cut::Cancelled => false,
                };
                if !closed {
                    let _ = close(&writer, &conn).await;
                }
                release_after_close(&mut reader, &conn).await;
                drop(held);
            });
            Ran { result, release }
        }
    }
}

impl Ran {
    /// A result with nothing left to wait for on the server.
    fn at_once(result: Result<Exit, Failed>, hold: impl Send + 'static) -> Ran {
        Ran {
            result,
            release: Box::pin(async move { drop(hold) }),
        }
    }

    /// Nothing was sent; a channel that `open` still yields is closed, not left open.
    fn not_sent(
        error: Error,
        conn: &Arc<Connection>,
        open: impl Future<Output = Result<(Channel<Msg>, OpenChannel), Error>> + Send + 'static,
        hold: impl Send + 'static,
    ) -> Ran {
        let conn = conn.clone();
        let release = Box::pin(async move {
            if let Ok((channel, open)) = open.await {
                let _ = channel.close().await;
                let _ = conn.ping(RELEASE_PING_TIMEOUT).await;
                drop(open);
            }
            drop(hold);
        });
        Ran {
            result: Err(Failed::NotSent(error)),
            release,
        }
    }
}

impl Cut {
    fn error(&self, budget: Duration) -> Error {
        match self {
            Cut::Deadline => Error::Timeout(budget),
            Cut::Stop => Error::ShuttingDown,
            Cut::Unwanted => Error::Cancelled(
                "the caller hung up while the call waited for a channel; it was never sent".into(),
            ),
            // The call task words it (it knows what the cancel reached).
            Cut::Cancelled => Error::Cancelled("an operator cancelled the call".into()),
        }
    }
}

/// Resolves when the deadline passes or the drain's hard stop fires.
async fn cut(deadline: Instant, stop: &CancellationToken) -> Cut {
    tokio::select! {
        _ = tokio::time::sleep_until(deadline) => Cut::Deadline,
        _ = stop.cancelled() => Cut::Stop,
    }
}

/// After a deadline the command goes on running (forced-command sessions refuse signals) and
/// holds its server-side session until it ends. Its output is read and dropped (an unread
/// channel would freeze the whole connection) until the server's Close. russh drops that
/// Close once we have sent ours, so we close only when the command looks stuck (it ran
/// `stuck_after` past its deadline, or printed `drain_cap` more bytes) or tether stops. True
/// when the server closed the channel itself.
async fn wait_for_close(
    reader: &mut ChannelReadHalf,
    limits: Limits,
    stop: &CancellationToken,
) -> bool {
    let mut drained = 0usize;
    let closed = async {
        while let Some(msg) = reader.wait().await {
            match msg {
                ChannelMsg::Close => return Some(true),
                ChannelMsg::Data { data } | ChannelMsg::ExtendedData { data, .. } => {
                    drained = drained.saturating_add(data.len());
                    if drained >= limits.drain_cap {
                        return None;
                    }
                }
                _ => {}
            }
        }
        Some(false)
    };
    let stuck = limits.stuck_after;
    tokio::select! {
        closed = tokio::time::timeout(stuck, closed) => match closed {
            Ok(Some(closed)) => closed,
            Ok(None) => {
                tracing::warn!(bytes = limits.drain_cap, "a timed-out command printed its output cap after its deadline; closing its channel");
                false
            }
            Err(_) => {
                tracing::warn!("a timed-out command still runs {stuck:?} after its deadline (stuck_after); closing its channel");
                false
            }
        },
        _ = stop.cancelled() => false,
    }
}

/// One round trip after our CLOSE, while whatever russh still forwards is read and dropped.
/// Until russh's session loop takes our CLOSE from its queue it goes on passing the command's
/// output to this channel; unread, that would fill the channel's buffer and block the loop
/// before it reaches the CLOSE, freezing every channel of the connection. The ping's answer
/// comes after the CLOSE was taken (one queue, in order), and from then on russh drops the
/// channel's data itself.
async fn release_after_close(reader: &mut ChannelReadHalf, conn: &Connection) {
    let drain = async {
        while reader.wait().await.is_some() {}
        std::future::pending::<()>().await
    };
    tokio::select! {
        _ = conn.ping(RELEASE_PING_TIMEOUT) => {}
        _ = drain => {}
    }
}

async fn close(writer: &ChannelWriteHalf<Msg>, conn: &Connection) -> Result<(), russh::Error> {
    tracing::debug!(conn = conn.id, "closing a channel before the server did");
    writer.close().await
}

fn lost(conn: &Connection, when: &str) -> Error {
    Error::ConnectionLost(format!("SSH connection {} was lost {when}", conn.id))
}

/// Takes a warm channel when `warm` and one is ready, else opens a session channel. A
/// refusal (the server's MaxSessions is lower than ours, or it has not yet freed a closed
/// channel) teaches the connection its real limit, and the open is retried until the
/// deadline: a refused open never surfaces as a failed call.
pub(crate) async fn open_channel(
    conn: Arc<Connection>,
    deadline: Instant,
    warm: bool,
) -> Result<(Channel<Msg>, OpenChannel), Error> {
    if warm && let Some(taken) = warm::take(&conn) {
        return Ok(taken);
    }
    let mut delay = OPEN_RETRY_FIRST;
    loop {
        match conn.handle().channel_open_session().await {
            Ok(channel) => return Ok((channel, conn.opened())),
            Err(russh::Error::ChannelOpenFailure(
                ChannelOpenFailure::ConnectFailed | ChannelOpenFailure::ResourceShortage,
            )) if Instant::now() + delay < deadline => {
                conn.refused();
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(OPEN_RETRY_MAX);
            }
            Err(e) if conn.is_closed() => {
                return Err(Error::UpstreamUnreachable(format!(
                    "SSH connection {} closed before the command was sent ({e}); nothing was sent",
                    conn.id
                )));
            }
            Err(e) => {
                return Err(Error::UpstreamUnreachable(format!(
                    "the server refused a channel ({e}); nothing was sent"
                )));
            }
        }
    }
}

/// Hands everything the channel says to `sink` until the server closes it; false if the
/// connection died first.
async fn read_until_close(
    reader: &mut ChannelReadHalf,
    exit: &mut Exit,
    sink: &mut dyn Sink,
) -> bool {
    loop {
        let Some(msg) = reader.wait().await else {
            return false;
        };
        match msg {
            ChannelMsg::Data { data } => sink.output(Stream::Stdout, &data).await,
            ChannelMsg::ExtendedData { data, ext: 1 } => sink.output(Stream::Stderr, &data).await,
            ChannelMsg::ExitStatus { exit_status } => exit.status = Some(exit_status),
            ChannelMsg::ExitSignal { signal_name, .. } => {
                exit.signal = Some(match signal_name {
                    russh::Sig::Custom(name) => name,
                    known => format!("{known:?}"),
                })
            }
            ChannelMsg::Close => return true,
            _ => {}
        }
    }
}
