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
use super::cache::{self, Results, SharedResult};
use super::registry::{Registration, Registry, Tracked};
use super::stream::Streamer;
use super::{Answer, Call, Ending, Meta, Reply};
use crate::error::Error;
use crate::target::Target;
use crate::transport::interest::Interest;
use crate::transport::{Exit, Release};

/// Starts `call` on `target` as a task of its own, listed in `calls` (the calls in flight)
/// until its slot is released; `reply` is how the caller listens, and `results` holds what
/// cached verbs share.
pub fn start(
    target: &Arc<Target>,
    results: &Arc<Results>,
    calls: &Arc<Registry>,
    call: Call,
    reply: Reply,
) {
    let span = tracing::info_span!("call", request_id = %call.request_id, target = %target.name, verb = %call.verb);
    let tracked = calls.register(Registration {
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
    let task = run(target.clone(), results.clone(), call, reply, tracked);
    target.calls().spawn(task.instrument(span));
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

/// A streamed subscription: the receiver yields the call's pieces.
pub fn streamed() -> (Reply, mpsc::Receiver<super::Piece>) {
    let (tx, rx) = mpsc::channel(super::stream::PIECES_IN_FLIGHT);
    (Reply::Streamed(tx), rx)
}

/// The caller's interest in its call: lost when it drops its subscription (hangs up) or an
/// operator cancels the call.
fn interest<T: Send + 'static>(tx: &mpsc::Sender<T>, tracked: &Tracked) -> Interest {
    let tx = tx.clone();
    Interest::until(async move { tx.closed().await }).cancelled_by(tracked.cancel_token())
}

/// How a call went, for its log line and metrics.
struct Outcome {
    cached: bool,
    summary: Result<Exit, Error>,
    /// The caller had hung up before its answer.
    abandoned: bool,
    /// What remains of the call on the remote once the caller was answered.
    release: Release,
}

async fn run(
    target: Arc<Target>,
    results: Arc<Results>,
    call: Call,
    reply: Reply,
    tracked: Tracked,
) {
    let started = Instant::now();
    let meta = |cached| Meta {
        request_id: call.request_id.clone(),
        target: target.name.clone(),
        verb: call.verb.clone(),
        duration: started.elapsed(),
        cached,
        idempotent: call.verb_config.idempotent,
        trace_id: call.trace.trace_id.clone(),
    };
    let outcome = match reply {
        Reply::Buffered(tx) => {
            let mut interest = interest(&tx, &tracked);
            let (result, cached, release) =
                buffered_result(&target, &results, &call, &mut interest, &tracked).await;
            let summary = result
                .as_ref()
                .map(|out| out.exit.clone())
                .map_err(Error::clone);
            let answer = Answer {
                meta: meta(cached),
                result,
            };
            let abandoned = tx.try_send(answer).is_err();
            Outcome {
                cached,
                summary,
                abandoned,
                release,
            }
        }
        Reply::Streamed(tx) => {
            let mut interest = interest(&tx, &tracked);
            let mut streamer = Streamer::new(tx, target.config.max_output_bytes);
            let (result, cached, release) = if cached_verb(&call) {
                let (result, cached, release) =
                    buffered_result(&target, &results, &call, &mut interest, &tracked).await;
                if let Ok(out) = &result {
                    streamer.replay(out).await;
                }
                (result.map(|out| ending_of(&out)), cached, release)
            } else {
                let (result, release) =
                    execute(&target, &call, &mut interest, &tracked, &mut streamer).await;
                (
                    result.and_then(|exit| streamer.ending(exit)),
                    false,
                    release,
                )
            };
            let summary = result
                .as_ref()
                .map(|e| e.exit.clone())
                .map_err(Error::clone);
            let abandoned = streamer.end(meta(cached), result).await;
            Outcome {
                cached,
                summary,
                abandoned,
                release,
            }
        }
    };
    let abandoned_at = outcome.abandoned.then(|| tracked.stage());
    record(
        &target,
        &meta(outcome.cached),
        outcome.summary.as_ref(),
        abandoned_at,
    );
    tracked.answered(outcome.abandoned);
    outcome.release.await;
    drop(tracked);
}

fn cached_verb(call: &Call) -> bool {
    !call.verb_config.cache_ttl.is_zero()
}

/// Runs `call` for this caller alone, its output going to `sink`; its entry in the calls in
/// flight follows it, and a cancel's failure says what the cancel did.
async fn execute(
    target: &Target,
    call: &Call,
    interest: &mut Interest,
    tracked: &Tracked,
    sink: &mut dyn crate::transport::Sink,
) -> (Result<Exit, Error>, Release) {
    let idempotent = call.verb_config.idempotent;
    let mut sink = tracked.sink(sink);
    let (result, release) = target
        .execute(&call.request, call.timeout, idempotent, interest, &mut sink)
        .await;
    (tracked.overrule(result), release)
}

/// The whole output of `call`: shared through `results` when its verb is cached (the flight
/// owns the release then), else run for this caller alone. True when cached.
async fn buffered_result(
    target: &Arc<Target>,
    results: &Results,
    call: &Call,
    interest: &mut Interest,
    tracked: &Tracked,
) -> (SharedResult, bool, Release) {
    if cached_verb(call) {
        // An operator's cancel detaches only this caller; the shared run goes on.
        tracked.waits_on_shared_run();
        let (result, cached) = tokio::select! {
            ran = cache::shared_run(results, target, call) => ran,
            _ = tracked.cancelled() => (Err(tracked.cancellation()), false),
        };
        return (result, cached, crate::transport::released());
    }
    let mut buffer = Buffer::new(target.config.max_output_bytes, target.budget());
    let (result, release) = execute(target, call, interest, tracked, &mut buffer).await;
    let result = result.and_then(|exit| buffer.answer(exit)).map(Arc::new);
    (result, false, release)
}

fn ending_of(out: &Output) -> Ending {
    Ending {
        exit: out.exit.clone(),
        stdout_truncated: out.stdout.truncated(),
        stderr_truncated: out.stderr.truncated(),
    }
}

/// Logs the call's one line and counts it; `abandoned_at` is the stage its caller left at.
pub fn record(
    target: &Target,
    meta: &Meta,
    result: Result<&Exit, &Error>,
    abandoned_at: Option<&str>,
) {
    let code = result.map_or_else(|e| e.code(), |_| "ok");
    let duration_ms = crate::health::millis(meta.duration);
    let abandoned = abandoned_at.is_some();
    target.record_call(&meta.verb, result.err(), meta.duration, abandoned_at);
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
