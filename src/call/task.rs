//! The call task: runs one call to its end whatever its caller does once it was sent (a call
//! whose caller leaves while it is queued is dropped, never sent), answers the caller if it
//! is still there, writes the call's one log line and its metrics, and only then lets the
//! server's side of the channel finish before the slot goes back to the pool. Until then the
//! call is listed in the [`Registry`] of calls in flight, where an operator may cancel it.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::Instrument;

use super::buffer::{Buffer, Output};
use super::registry::{Registration, Registry, Tracked};
use super::stream::Streamer;
use super::{Answer, Call, Ending, Meta, Reply};
use crate::error::Error;
use crate::ssh::exec::Exit;
use crate::ssh::interest::Interest;
use crate::target::{SharedResult, Target};

/// Starts `call` on `target` as a task of its own, listed in `registry` until its slot is
/// released; `reply` is how the caller listens.
pub fn start(registry: &Arc<Registry>, target: &Arc<Target>, call: Call, reply: Reply) {
    let span = tracing::info_span!("call", request_id = %call.request_id, target = %target.name, verb = %call.verb);
    let tracked = registry.register(Registration {
        request_id: call.request_id.clone(),
        target: target.name.clone(),
        verb: call.verb.clone(),
        caller_uid: call.caller_uid,
        stream: matches!(reply, Reply::Streamed(_)),
        trace_id: call.trace.trace_id.clone(),
        hung_up: match &reply {
            Reply::Buffered(tx) => hung_up(tx),
            Reply::Streamed(tx) => hung_up(tx),
        },
    });
    target
        .calls()
        .spawn(run(target.clone(), call, reply, tracked).instrument(span));
}

/// Whether the caller behind `tx` has gone, without keeping its channel open.
fn hung_up<T: Send + 'static>(tx: &mpsc::Sender<T>) -> Box<dyn Fn() -> bool + Send + Sync> {
    let weak = tx.downgrade();
    Box::new(move || weak.upgrade().is_none_or(|tx| tx.is_closed()))
}

/// A buffered subscription: the receiver yields the answer, once.
pub fn buffered() -> (Reply, mpsc::Receiver<Answer>) {
    let (tx, rx) = mpsc::channel(1);
    (Reply::Buffered(tx), rx)
}

/// The caller's interest in its call: lost when it drops its subscription (hangs up) or an
/// operator cancels the call.
fn interest<T: Send + 'static>(tx: &mpsc::Sender<T>, tracked: &Tracked) -> Interest {
    let tx = tx.clone();
    Interest::until(async move { tx.closed().await }).cancelled_by(tracked.cancel_token())
}

/// A cached verb's run, shared with identical calls; an operator's cancel detaches only
/// this caller.
async fn shared_run(target: &Arc<Target>, call: &Call, tracked: &Tracked) -> (SharedResult, bool) {
    tracked.waits_on_shared_run();
    tokio::select! {
        ran = target.shared_run(call) => ran,
        _ = tracked.cancelled() => (Err(tracked.cancellation()), false),
    }
}

/// A streamed subscription: the receiver yields the call's pieces.
pub fn streamed() -> (Reply, mpsc::Receiver<super::Piece>) {
    let (tx, rx) = mpsc::channel(super::stream::PIECES_IN_FLIGHT);
    (Reply::Streamed(tx), rx)
}

async fn run(target: Arc<Target>, call: Call, reply: Reply, tracked: Tracked) {
    let started = Instant::now();
    let cap = target.config.max_output_bytes;
    let cacheable = !call.verb_config.cache_ttl.is_zero();
    let meta = |cached| Meta {
        request_id: call.request_id.clone(),
        target: target.name.clone(),
        verb: call.verb.clone(),
        duration: started.elapsed(),
        cached,
        idempotent: call.verb_config.idempotent,
        trace_id: call.trace.trace_id.clone(),
    };
    let (meta, summary, abandoned, release) = match reply {
        Reply::Buffered(tx) => {
            let (result, cached, release) = if cacheable {
                let (result, cached) = shared_run(&target, &call, &tracked).await;
                (result, cached, None)
            } else {
                let mut buffer = Buffer::new(cap, target.budget());
                let mut interest = interest(&tx, &tracked);
                let mut sink = tracked.sink(&mut buffer);
                let (result, release) = target.execute(&call, &mut sink, &mut interest).await;
                let result = tracked.overrule(result);
                let result = result.and_then(|exit| buffer.answer(exit)).map(Arc::new);
                (result, false, Some(release))
            };
            let meta = meta(cached);
            let summary = result
                .as_ref()
                .map(|out| out.exit.clone())
                .map_err(Error::clone);
            let answer = Answer {
                meta: meta.clone(),
                result,
            };
            let abandoned = tx.try_send(answer).is_err();
            (meta, summary, abandoned, release)
        }
        Reply::Streamed(tx) => {
            let mut interest = interest(&tx, &tracked);
            let mut streamer = Streamer::new(tx, cap);
            let (result, cached, release) = if cacheable {
                let (result, cached) = shared_run(&target, &call, &tracked).await;
                if let Ok(out) = &result {
                    streamer.replay(out).await;
                }
                (result.map(|out| ending_of(&out)), cached, None)
            } else {
                let mut sink = tracked.sink(&mut streamer);
                let (result, release) = target.execute(&call, &mut sink, &mut interest).await;
                (
                    tracked
                        .overrule(result)
                        .and_then(|exit| streamer.ending(exit)),
                    false,
                    Some(release),
                )
            };
            let meta = meta(cached);
            let summary = result
                .as_ref()
                .map(|e| e.exit.clone())
                .map_err(Error::clone);
            let abandoned = streamer.end(meta.clone(), result).await;
            (meta, summary, abandoned, release)
        }
    };
    record(&target, &meta, summary.as_ref(), abandoned);
    tracked.answered(abandoned);
    if let Some(release) = release {
        release.await;
    }
    drop(tracked);
}

fn ending_of(out: &Output) -> Ending {
    Ending {
        exit: out.exit.clone(),
        stdout_truncated: out.stdout.truncated(),
        stderr_truncated: out.stderr.truncated(),
    }
}

/// Logs the call's one line and counts it.
pub fn record(target: &Target, meta: &Meta, result: Result<&Exit, &Error>, abandoned: bool) {
    let code = result.map_or_else(|e| e.code(), |_| "ok");
    let duration_ms = crate::health::millis(meta.duration);
    target.record_call(&meta.verb, result.err(), meta.duration, abandoned);
    tracing::info!(
        request_id = meta.request_id,
        target = meta.target,
        verb = meta.verb,
        code,
        duration_ms,
        cached = meta.cached,
        exit_status = result.ok().and_then(|exit| exit.status),
        abandoned,
        trace_id = meta.trace_id,
        error = result.err().map(tracing::field::display),
        "call"
    );
}
