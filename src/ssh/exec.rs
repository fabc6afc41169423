//! Running one command on a channel: stdin then EOF, stdout and stderr drained continuously,
//! exit status or signal, and the deadline. A channel whose deadline passed is closed and its
//! slot kept busy in the background until the server has really freed it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use russh::client::Msg;
use russh::{Channel, ChannelMsg, ChannelOpenFailure, ChannelReadHalf};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::connection::{Connection, OpenChannel};
use super::output::Captured;
use crate::error::Error;

/// How long the background release waits for the server's answer before giving up.
const RELEASE_PING_TIMEOUT: Duration = Duration::from_secs(10);
/// A command still running this long after its deadline gets its channel closed.
const STUCK_AFTER: Duration = Duration::from_secs(300);
/// First and longest pause between retries of a refused channel open.
const OPEN_RETRY_FIRST: Duration = Duration::from_millis(5);
const OPEN_RETRY_MAX: Duration = Duration::from_millis(50);

/// What to run.
pub struct Command {
    pub line: String,
    pub stdin: Option<Bytes>,
    pub max_output: usize,
}

/// What the remote command did.
#[derive(Debug)]
pub struct Output {
    pub exit_status: Option<u32>,
    pub exit_signal: Option<String>,
    pub stdout: Captured,
    pub stderr: Captured,
}

/// A failure, split by whether the exec request had left: only a failure before it may be
/// retried, because after it the command may have run.
#[derive(Debug)]
pub enum ExecError {
    NotSent(Error),
    Sent(Error),
}

/// Runs `cmd` on a new channel of `conn`. `hold` (typically the pool slot) is dropped only
/// once the server has freed the channel, which may be after this returns.
pub async fn run<H: Send + 'static>(
    conn: &Arc<Connection>,
    cmd: Command,
    deadline: Instant,
    hold: H,
    tracker: &TaskTracker,
) -> Result<Output, ExecError> {
    let budget = deadline.saturating_duration_since(Instant::now());
    // The open runs as its own task: if the deadline passes first, it still completes and the
    // channel is closed, instead of being left open on the server for the connection's life.
    let mut open = tracker.spawn(open_channel(conn.clone(), deadline).in_current_span());
    let (channel, hold) = match tokio::time::timeout_at(deadline, &mut open).await {
        Ok(Ok(Ok((channel, opened)))) => (channel, (hold, opened)),
        Ok(Ok(Err(e))) => return Err(ExecError::NotSent(e)),
        Ok(Err(e)) => {
            return Err(ExecError::NotSent(Error::Internal(format!(
                "channel open task: {e}"
            ))));
        }
        Err(_) => {
            let conn = conn.clone();
            tracker.spawn(
                async move {
                    if let Ok(Ok((channel, opened))) = open.await {
                        let _ = channel.close().await;
                        let _ = conn.ping(RELEASE_PING_TIMEOUT).await;
                        drop(opened);
                    }
                    drop(hold);
                }
                .in_current_span(),
            );
            return Err(ExecError::NotSent(Error::Timeout(budget)));
        }
    };
    if channel.exec(true, cmd.line.as_bytes()).await.is_err() {
        return Err(ExecError::NotSent(lost(
            conn,
            "before the command was sent",
        )));
    }
    let (mut reader, writer) = channel.split();
    let io = async {
        let write = async {
            if let Some(data) = &cmd.stdin {
                writer.data(&data[..]).await?;
            }
            writer.eof().await
        };
        let read = read_until_close(&mut reader, cmd.max_output);
        tokio::pin!(write, read);
        let mut writing = true;
        loop {
            tokio::select! {
                // A remote that exits without reading stdin is not an error of ours.
                _ = &mut write, if writing => writing = false,
                out = &mut read => break out,
            }
        }
    };
    match tokio::time::timeout_at(deadline, io).await {
        Ok(Some(output)) => {
            let conn = conn.clone();
            tracker.spawn(
                async move {
                    // The server frees its session slot once it has processed our CLOSE; one
                    // round trip after it proves that.
                    let _ = conn.ping(RELEASE_PING_TIMEOUT).await;
                    drop(hold);
                }
                .in_current_span(),
            );
            Ok(output)
        }
        Ok(None) => Err(ExecError::Sent(lost(
            conn,
            "while the command ran: it may have run",
        ))),
        Err(_) => {
            let conn = conn.clone();
            tracker.spawn(async move {
                // The command goes on running (forced-command sessions refuse signals) and
                // holds its server-side session until it ends, so the slot stays taken until
                // the server's Close. russh drops that Close once we have sent ours, so we
                // close only when the command looks stuck, and then trust one round trip.
                let finished = tokio::time::timeout(STUCK_AFTER, async {
                    while let Some(msg) = reader.wait().await {
                        if matches!(msg, ChannelMsg::Close) {
                            return true;
                        }
                    }
                    false
                })
                .await;
                if finished.is_err() {
                    tracing::warn!(
                        conn = conn.id,
                        "a timed-out command still runs after {STUCK_AFTER:?}; closing its channel"
                    );
                    let _ = writer.close().await;
                }
                let _ = conn.ping(RELEASE_PING_TIMEOUT).await;
                drop(hold);
            }.in_current_span());
            Err(ExecError::Sent(Error::Timeout(budget)))
        }
    }
}

fn lost(conn: &Connection, when: &str) -> Error {
    Error::ConnectionLost(format!("SSH connection {} was lost {when}", conn.id))
}

/// Opens a session channel. A refusal (the server's MaxSessions is lower than ours, or it
/// has not yet freed a closed channel) teaches the connection its real limit, and the open
/// is retried until the deadline: a refused open never surfaces as a failed call.
async fn open_channel(
    conn: Arc<Connection>,
    deadline: Instant,
) -> Result<(Channel<Msg>, OpenChannel), Error> {
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

/// Reads everything the channel says until the server closes it; `None` if the connection
/// died first.
async fn read_until_close(reader: &mut ChannelReadHalf, max_output: usize) -> Option<Output> {
    let mut out = Output {
        exit_status: None,
        exit_signal: None,
        stdout: Captured::new(max_output),
        stderr: Captured::new(max_output),
    };
    loop {
        match reader.wait().await? {
            ChannelMsg::Data { data } => out.stdout.push(&data),
            ChannelMsg::ExtendedData { data, ext: 1 } => out.stderr.push(&data),
            ChannelMsg::ExitStatus { exit_status } => out.exit_status = Some(exit_status),
            ChannelMsg::ExitSignal { signal_name, .. } => {
                out.exit_signal = Some(match signal_name {
                    russh::Sig::Custom(name) => name,
                    known => format!("{known:?}"),
                })
            }
            ChannelMsg::Close => return Some(out),
            _ => {}
        }
    }
}
