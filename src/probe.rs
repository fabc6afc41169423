//! The probe loop of one target: every `probe.interval` an SSH round trip on a live pooled
//! connection (connecting when there is none), and every `probe.shim_interval` the shim verb
//! through the shim. Results go to the target's cached [`crate::health::Health`].

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::Error;
use crate::health::Status;
use crate::ssh::exec::{self, Command, ExecError};
use crate::target::Target;
use crate::validation::command_line;

/// Output of a shim probe is small; anything more is not kept.
const SHIM_OUTPUT_CAP: usize = 64 * 1024;

/// Probes `target` until `cancel` fires.
pub async fn run(target: Arc<Target>, tracker: TaskTracker, cancel: CancellationToken) {
    let probe = &target.config.probe;
    let mut ticks = tokio::time::interval(probe.interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut next_shim = Instant::now();
    let mut was_ok = true;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let transport_ok = tokio::select! {
            _ = cancel.cancelled() => return,
            ok = transport(&target) => ok,
        };
        // A shim result from before an outage is stale: a returning remote gets its shim
        // probed at once, not up to shim_interval later (it would stay `degraded` meanwhile).
        if transport_ok && !was_ok {
            next_shim = Instant::now();
        }
        was_ok = transport_ok;
        if transport_ok && !probe.shim_verb.is_empty() && Instant::now() >= next_shim {
            next_shim = Instant::now() + probe.shim_interval;
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = shim(&target, &tracker) => {}
            }
        }
    }
}

/// One transport probe; a connection that does not answer in time is retired.
async fn transport(target: &Target) -> bool {
    let start = Instant::now();
    let bound = target.config.probe.timeout;
    let result = match target.pool.connections.any().await {
        Ok(conn) => {
            let pinged = conn.ping(bound).await;
            if pinged.is_err() {
                target.pool.connections.discard(&conn).await;
            }
            pinged.map_err(|e| match e {
                Error::Timeout(_) => Error::UpstreamUnreachable(format!(
                    "no answer to an SSH ping within {bound:?} (probe.timeout): the remote may be frozen or asleep"
                )),
                other => other,
            })
        }
        Err(e) => Err(e),
    };
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
async fn shim(target: &Target, tracker: &TaskTracker) {
    let probe = &target.config.probe;
    let start = Instant::now();
    let result = async {
        let conn = target.pool.connections.any().await?;
        let cmd = Command {
            line: command_line(&probe.shim_verb, &probe.shim_args)?,
            stdin: None,
            max_output: SHIM_OUTPUT_CAP,
        };
        let out = exec::run(&conn, cmd, start + probe.timeout, (), tracker)
            .await
            .map_err(|(ExecError::NotSent(e) | ExecError::Sent(e))| e)?;
        match out.exit_status {
            Some(0) => Ok(start.elapsed()),
            status => Err(Error::UpstreamUnreachable(format!(
                "shim probe `{}` exited with {status:?}: {}",
                probe.shim_verb,
                out.stderr.text().trim()
            ))),
        }
    }
    .await;
    target
        .metrics
        .probe("shim", result.is_ok(), start.elapsed().as_secs_f64());
    target.metrics.shim_up.set(result.is_ok() as i64);
    target.health.shim(result.as_ref().copied());
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
