//! Small HTTP plumbing shared by the RPC and admin servers: JSON and text responses, and an
//! accept loop that serves HTTP/1.1 connections until cancelled, each within its idle and
//! request timeouts ([`clock`]).

pub mod clock;

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use clock::{Clock, Timeouts, UntilWritten, Watched};

/// Every response body: a whole one, or one written piece by piece (a streamed call, or a
/// large answer serialized from its buffers).
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Pause after a failed accept.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);
/// How long a draining server gives an open connection to finish its answer.
const GRACEFUL_CLOSE: Duration = Duration::from_secs(1);

pub fn json(status: u16, value: &serde_json::Value) -> Response<Body> {
    respond(status, "application/json", value.to_string())
}

pub fn respond(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    respond_with(status, content_type, Full::new(body.into()).boxed_unsync())
}

pub fn respond_with(status: u16, content_type: &str, body: Body) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", content_type)
        .header("cache-control", "no-store")
        .body(body)
        .expect("static headers are valid")
}

/// Accepts connections with `accept` and hands each to `serve` until `cancel` fires. A failed
/// accept (say, out of file descriptors) is logged and retried after a short pause.
pub async fn accept_loop<S, A, F>(
    what: &str,
    mut accept: A,
    mut serve: impl FnMut(S),
    cancel: CancellationToken,
) where
    A: FnMut() -> F,
    F: Future<Output = std::io::Result<S>>,
{
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = accept() => match accepted {
                Ok(stream) => serve(stream),
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed on the {what}");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            },
        }
    }
}

/// Serves one accepted connection with `handler` until it ends, its clock expires (idle or
/// a stalled request) or `cancel` fires; `hold` (its admission) is dropped then.
pub fn serve_connection<S, H, F>(
    stream: S,
    handler: H,
    timeouts: Timeouts,
    hold: impl Send + 'static,
    tracker: &TaskTracker,
    cancel: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let clock = Clock::new();
    let io = TokioIo::new(Watched::new(stream, clock.clone()));
    let service = {
        let clock = clock.clone();
        hyper::service::service_fn(move |req| {
            clock.busy();
            let response = handler(req);
            let clock = clock.clone();
            async move {
                let response = response.await;
                Ok::<_, Infallible>(
                    response.map(|body| UntilWritten::new(body, clock).boxed_unsync()),
                )
            }
        })
    };
    tracker.spawn(async move {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.header_read_timeout(None);
        let conn = builder.serve_connection(io, service);
        tokio::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => {}
            _ = clock.expired(timeouts) => {}
            _ = cancel.cancelled() => {
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(GRACEFUL_CLOSE, conn).await;
            }
        }
        drop(hold);
    });
}
