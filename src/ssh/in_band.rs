//! In-band data (trace context, credentials) on exec: a request that carries some goes out
//! as `@in-band VERB ARGS…` with its frame before stdin (docs/shim.md, "In-band data"), but
//! only to a forced command that is a `tether shim` taking it. Whether it is, is asked once
//! per connection with `@hello`, on a channel outside the pool, and remembered for the
//! connection's life. An older shim refuses the word; another forced command prints whatever
//! it prints: both are "no". Credentials for a remote that cannot take them are refused
//! before anything is sent; a trace context then stays in tether.

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::connection::Connection;
use super::exec::{self, Command, On};
use crate::error::Error;
use crate::transport::interest::Interest;
use crate::transport::{BoxFuture, Limits, Request, Sink, Stream};
use zeroize::Zeroizing;

use crate::wire::frame::FrameError;
use crate::wire::in_band::{HELLO, Hello, framed, in_band_word_before};

/// Whether a target sends in-band data at all (`targets.NAME.in_band`): `Auto` when the
/// remote's `@hello` says it takes it; `Off` never (credentials are refused, trace context
/// stays in tether).
pub use super::Ask as Mode;

/// What goes on the channel for `request` on `conn`: the plain command, or the in-band one.
/// `target` names the target in a refusal.
pub async fn command<'a>(
    conn: &Arc<Connection>,
    request: &'a Request,
    mode: Mode,
    target: &str,
    stop: &CancellationToken,
) -> Result<Command<'a>, Error> {
    let takes = takes_in_band(conn, stop);
    let Some(payload) = payload(request, mode, target, takes).await? else {
        return Ok(Command::plain(request));
    };
    Ok(Command {
        line: Cow::Owned(in_band_word_before(&request.line)?),
        preamble: Some(framed(&payload).map_err(too_large)?),
        stdin: request.stdin.as_ref(),
    })
}

/// The in-band payload (the JSON of an in-band frame) for `request`, when it carries
/// something to send and the remote `takes` it (asked only then). Credentials for a remote
/// that cannot take them are refused; trace context alone then stays in tether (`None`).
pub async fn payload(
    request: &Request,
    mode: Mode,
    target: &str,
    takes: impl Future<Output = bool>,
) -> Result<Option<Zeroizing<Vec<u8>>>, Error> {
    let Some(in_band) = request.in_band.as_deref() else {
        return Ok(None);
    };
    let secrets = !in_band.credentials.is_empty();
    if !secrets && in_band.trace_id().is_none() {
        return Ok(None);
    }
    if mode == Mode::Off || !takes.await {
        return match secrets {
            false => Ok(None),
            true => Err(cannot_take(target, mode)),
        };
    }
    in_band.payload().map(Some).map_err(too_large)
}

fn too_large(e: FrameError) -> Error {
    Error::PayloadTooLarge(format!("the credentials do not fit in-band: {e}"))
}

/// Why credentials cannot go to `target`'s remote, and what to do about it.
fn cannot_take(target: &str, mode: Mode) -> Error {
    let (problem, fix) = match mode {
        Mode::Off => (
            format!("the call carries credentials, but targets.{target}.in_band is \"off\""),
            "set it to \"auto\", with tether shim as the laptop's forced command (docs/shim.md)"
                .to_string(),
        ),
        Mode::Auto => (
            "the call carries credentials, but the laptop's forced command is not a tether \
             shim that takes them (it did not answer @hello: an older tether shim, or another \
             program)"
                .to_string(),
            "install a current tether shim on the laptop (docs/shim.md, \"In-band data\")"
                .to_string(),
        ),
    };
    Error::UpstreamMisconfigured {
        addr: format!("target {target}"),
        problem,
        fix,
    }
}

/// How long the hello may take, whatever the call that asks.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Output of the hello kept; a hello line is far shorter.
const HELLO_OUTPUT_CAP: usize = 4096;

/// Whether `conn` takes in-band data; asks it the first time (at most [`HELLO_TIMEOUT`]).
/// The asking is a task of its own, so a caller that gives up never leaves its channel open.
pub async fn takes_in_band(conn: &Arc<Connection>, stop: &CancellationToken) -> bool {
    let asked = conn.in_band.get_or_init(|| {
        let (conn, stop) = (conn.clone(), stop.clone());
        async move {
            let asking = tokio::spawn(async move { ask(&conn, &stop).await });
            asking.await.unwrap_or(false)
        }
    });
    *asked.await
}

async fn ask(conn: &Arc<Connection>, stop: &CancellationToken) -> bool {
    let request = Request {
        line: HELLO.to_string(),
        stdin: None,
        in_band: None,
    };
    let command = Command::plain(&request);
    let limits = Limits {
        deadline: Instant::now() + HELLO_TIMEOUT,
        stuck_after: Duration::ZERO,
        drain_cap: HELLO_OUTPUT_CAP,
    };
    let mut stdout = Stdout::default();
    let mut interest = Interest::lasting();
    let ran = exec::run(
        On::new_channel(conn),
        &command,
        limits,
        stop,
        &mut interest,
        (),
        &mut stdout,
    )
    .await;
    ran.release.await;
    let hello = match ran.result {
        Ok(exit) if exit.status == Some(0) => Hello::parse(&stdout.0),
        _ => None,
    };
    let takes = hello.as_ref().is_some_and(Hello::supports_in_band);
    match &hello {
        Some(hello) => {
            tracing::info!(conn = conn.id, version = %hello.version, in_band = takes, "the remote runs tether shim")
        }
        None => tracing::info!(
            conn = conn.id,
            "the remote's forced command is not a tether shim that takes in-band data (it did not answer @hello): trace context stays in tether, and calls with credentials are refused"
        ),
    }
    takes
}

/// The hello's stdout, up to its cap.
#[derive(Default)]
struct Stdout(Vec<u8>);

impl Sink for Stdout {
    fn output<'a>(&'a mut self, stream: Stream, data: &'a [u8]) -> BoxFuture<'a, ()> {
        if stream == Stream::Stdout {
            let room = HELLO_OUTPUT_CAP.saturating_sub(self.0.len());
            self.0.extend_from_slice(&data[..data.len().min(room)]);
        }
        Box::pin(std::future::ready(()))
    }

    fn restart(&mut self) -> bool {
        self.0.clear();
        true
    }
}
