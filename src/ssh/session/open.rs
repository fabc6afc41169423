//! Asking a connection's forced command for a session: a channel outside the pool, the
//! command line `@session`, tether's hello, and the shim's hello back, all within
//! [`OPEN_TIMEOUT`]. A forced command without session mode (an older `tether shim`, which
//! refuses the word with exit 2, or any other program) ends the channel without a hello:
//! refused. Whatever happens, the channel is closed or handed to the session, never dropped
//! open.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use prometheus::IntGauge;
use russh::client::Msg;
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use super::live::{Live, keep};
use crate::ssh::connection::Connection;
use crate::ssh::exec::open_channel;
use crate::wire::session::{FEATURE_IN_BAND, Frame, SESSION, VERSION};

/// How long asking for a session may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of a refusal's stderr kept for the log.
const STDERR_CAP: usize = 512;

/// Why a connection has no session.
#[derive(Debug)]
pub enum Declined {
    /// The forced command has no session mode (what it said, if anything).
    Refused(String),
    /// Asking failed (a timeout, the connection, a broken hello).
    Failed(String),
}

/// Opens `conn`'s session.
pub async fn open(
    conn: &Arc<Connection>,
    tracker: &TaskTracker,
    up: &IntGauge,
) -> Result<Arc<Live>, Declined> {
    let deadline = Instant::now() + OPEN_TIMEOUT;
    let (channel, open) = open_channel(conn.clone(), deadline, false)
        .await
        .map_err(|e| Declined::Failed(e.to_string()))?;
    if channel.exec(true, SESSION.as_bytes()).await.is_err() {
        return Err(Declined::Failed("the connection ended".into()));
    }
    let (mut reader, writer) = channel.split();
    let hello = tokio::time::timeout_at(deadline, hellos(&mut reader, &writer)).await;
    let answer = hello.unwrap_or_else(|_| {
        Err(Declined::Failed(format!(
            "no hello within {OPEN_TIMEOUT:?}"
        )))
    });
    match answer {
        Ok((in_band, buf)) => {
            tracing::debug!(conn = conn.id, in_band, "the shim session is up");
            let channel = (reader, writer, open);
            Ok(Live::start(
                conn,
                in_band,
                channel,
                buf,
                tracker,
                up.clone(),
            ))
        }
        Err(declined) => {
            let _ = writer.close().await;
            let drain = async { while reader.wait().await.is_some() {} };
            let _ = tokio::time::timeout(OPEN_TIMEOUT, drain).await;
            drop(open);
            Err(declined)
        }
    }
}

/// Sends tether's hello and reads the shim's: whether it takes in-band data, and whatever
/// followed its hello on the channel.
async fn hellos(
    reader: &mut ChannelReadHalf,
    writer: &ChannelWriteHalf<Msg>,
) -> Result<(bool, BytesMut), Declined> {
    let ours = Frame::Hello {
        version: VERSION,
        features: vec![FEATURE_IN_BAND.to_string()],
    };
    let mut wire = Vec::new();
    ours.encode(&mut wire)
        .map_err(|e| Declined::Failed(e.to_string()))?;
    if writer.data(&wire[..]).await.is_err() {
        return Err(Declined::Failed("the connection ended".into()));
    }
    let mut buf = BytesMut::new();
    let mut stderr = Vec::new();
    let mut status = None;
    loop {
        match reader.wait().await {
            Some(ChannelMsg::Data { data }) => {
                buf.extend_from_slice(&data);
                match Frame::take(&mut buf) {
                    Ok(None) => {}
                    Ok(Some(Frame::Hello { version, features })) if version == VERSION => {
                        return Ok((features.iter().any(|f| f == FEATURE_IN_BAND), buf));
                    }
                    Ok(Some(Frame::Hello { version, .. })) => {
                        return Err(Declined::Refused(format!(
                            "it speaks session version {version}, tether {VERSION}"
                        )));
                    }
                    Ok(Some(other)) => {
                        return Err(Declined::Failed(format!(
                            "it answered with {other:?} instead of a hello"
                        )));
                    }
                    // Not frames: a program that printed something else.
                    Err(_) => return Err(refused(status, &stderr, "it printed something else")),
                }
            }
            Some(ChannelMsg::ExtendedData { data, .. }) => keep(&mut stderr, &data, STDERR_CAP),
            Some(ChannelMsg::ExitStatus { exit_status }) => status = Some(exit_status),
            Some(ChannelMsg::Close) | None => return Err(refused(status, &stderr, "")),
            Some(_) => {}
        }
    }
}

fn refused(status: Option<u32>, stderr: &[u8], what: &str) -> Declined {
    let said = String::from_utf8_lossy(stderr);
    let said = said.trim();
    let status = status.map_or("no exit status".to_string(), |s| format!("exit {s}"));
    let mut why = format!("@session ended with {status}");
    if !said.is_empty() {
        why.push_str(&format!(": {said:?}"));
    }
    if !what.is_empty() {
        why.push_str(&format!("; {what}"));
    }
    Declined::Refused(why)
}
