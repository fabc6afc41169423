//! The probe loop of one target: every `probe.interval` an SSH round trip on a live pooled
//! connection (connecting when there is none), and every `probe.shim_interval` the shim verb
//! through the shim. Results go to the target's cached [`crate::health::Health`].

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::call::buffer::Buffer;
use crate::error::Error;
use crate::health::Status;
use crate::target::Target;
use crate::transport::{Failed, Ran, Request};
use crate::wire;

/// Output of a shim probe is small; anything more is not kept.
const SHIM_OUTPUT_CAP: usize = 64 * 1024;

/// Probes `target` until `cancel` fires.
pub async fn run(target: Arc<Target>, tracker: TaskTracker, cancel: CancellationToken) {
    let probe = &target.config.probe;
    let start = Instant::now();
    let mut ticks = tokio::time::interval_at(start, probe.interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut shim_schedule = target.health.policy().shim_schedule(start);
    loop {
        let tick = tokio::select! {
            _ = cancel.cancelled() => return,
            tick = ticks.tick() => tick,
        };
        let transport_ok = tokio::select! {
            _ = cancel.cancelled() => return,
            ok = transport(&target) => ok,
        };
        if !transport_ok {
            shim_schedule.transport_failed(Instant::now());
        } else if shim_schedule.due(tick) {
            let shim_ok = tokio::select! {
                _ = cancel.cancelled() => return,
                ok = shim(&target, &tracker, &cancel) => ok,
            };
            shim_schedule.probed(tick, shim_ok);
        }
    }
}

/// One transport probe: every live connection is pinged at once (connecting when there is
/// none), and one that does not answer in time is retired, so calls stop waiting on it. The
/// target's transport is ok when any connection answered.
async fn transport(target: &Target) -> bool {
    let start = Instant::now();
    let result = target.ping(target.config.probe.timeout).await;
    let elapsed = start.elapsed();
    target
        .metrics
        .probe("transport", result.is_ok(), elapsed.as_secs_f64());
    let before = target.health.status();
    let after = target.health.transport(result.as_ref().copied());
    publish(target, after, result.is_ok());
    if before != after {
        match &result {
            Ok(_) => {
                tracing::info!(target_name = %target.name, status = after.as_str(), "target status changed")
            }
            Err(e) => {
                tracing::warn!(target_name = %target.name, status = after.as_str(), code = e.code(), error = %e, "target status changed")
            }
        }
    }
    result.is_ok()
}

/// One shim probe: the configured verb, through the shim, on a channel outside the pool.
async fn shim(target: &Target, tracker: &TaskTracker, cancel: &CancellationToken) -> bool {
    let probe = &target.config.probe;
    let start = Instant::now();
    let result = async {
        let line = wire::encode(&probe.shim_verb, &probe.shim_args)?;
        let cmd = Request {
            line,
            stdin: None,
            in_band: None,
        };
        let mut buffer = Buffer::new(SHIM_OUTPUT_CAP, target.budget());
        let Ran { result, release } = target
            .probe_run(&cmd, probe.timeout, SHIM_OUTPUT_CAP, cancel, &mut buffer)
            .await;
        tracker.spawn(release);
        let out = buffer.finish(result.map_err(Failed::into_error)?);
        let ended = match (out.exit.status, &out.exit.signal) {
            (Some(0), _) => return Ok(start.elapsed()),
            (Some(status), _) => format!("exited with status {status}"),
            (None, Some(signal)) => format!("was killed by SIG{signal}"),
            (None, None) => "ended without an exit status".to_string(),
        };
        Err(Error::UpstreamUnreachable(format!(
            "the shim probe `{}` {ended}: {}; SSH works, so check the shim on the remote \
             (and probe.shim_args)",
            cmd.line,
            out.stderr.text().trim()
        )))
    }
    .await;
    target
        .metrics
        .probe("shim", result.is_ok(), start.elapsed().as_secs_f64());
    target.metrics.shim_up.set(result.is_ok() as i64);
    target.health.shim(result.as_ref().copied());
    result.is_ok()
}

fn publish(target: &Target, status: Status, ok: bool) {
    target
        .metrics
        .up
        .set(matches!(status, Status::Up | Status::Degraded) as i64);
    if ok {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        target.metrics.last_ok.set(now.as_secs_f64());
    }
}
