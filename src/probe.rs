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
use crate::ssh::connection::Connection;
use crate::ssh::exec::{self, Command, ExecError, Limits, Ran};
use crate::ssh::interest::Interest;
use crate::target::Target;
use crate::wire;

/// Output of a shim probe is small; anything more is not kept.
const SHIM_OUTPUT_CAP: usize = 64 * 1024;

/// Probes `target` until `cancel` fires.
pub async fn run(target: Arc<Target>, tracker: TaskTracker, cancel: CancellationToken) {
    let probe = &target.config.probe;
    let start = Instant::now();
    let mut ticks = tokio::time::interval_at(start, probe.interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut next_shim = start;
    let mut recheck_pending = false;
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
            // Whatever the shim said before is stale once the transport failed (a shim probe
            // cut off by the outage would otherwise keep the target degraded for up to
            // shim_interval after it is back): check it again at the first success.
            next_shim = Instant::now();
        } else if !probe.shim_verb.is_empty() && tick >= next_shim {
            // Counted from the tick, not from after the transport probe: otherwise a
            // shim_interval that is a multiple of interval slips a whole tick at random.
            next_shim = tick + probe.shim_interval;
            let shim_ok = tokio::select! {
                _ = cancel.cancelled() => return,
                ok = shim(&target, &tracker, &cancel) => ok,
            };
            if !shim_ok && !recheck_pending {
                // One failure may be a passing hiccup (a slow laptop under load): look again
                // at the next tick before holding `degraded` for a whole shim_interval.
                next_shim = tick + probe.interval;
            }
            recheck_pending = !shim_ok && !recheck_pending;
        }
    }
}

/// One transport probe: every live connection is pinged at once (connecting when there is
/// none), and one that does not answer in time is retired, so calls stop waiting on it. The
/// target's transport is ok when any connection answered.
async fn transport(target: &Target) -> bool {
    let start = Instant::now();
    let live = match target.live_connections() {
        live if live.is_empty() => target.any_connection().await.map(|conn| vec![conn]),
        live => Ok(live),
    };
    let result = match live {
        Err(e) => Err(e),
        Ok(live) => {
            let mut pings = tokio::task::JoinSet::new();
            for conn in live {
                pings.spawn(ping(target.config.probe.timeout, conn));
            }
            let mut best = None;
            while let Some(Ok((conn, answer))) = pings.join_next().await {
                if answer.is_err() {
                    target.discard(&conn).await;
                }
                best = match (best, answer) {
                    (Some(Ok(fastest)), Ok(latency)) => Some(Ok(std::cmp::min(fastest, latency))),
                    (Some(Ok(latency)), Err(_)) | (_, Ok(latency)) => Some(Ok(latency)),
                    (_, Err(e)) => Some(Err(e)),
                };
            }
            best.unwrap_or_else(|| Err(Error::Internal("no ping finished".into())))
        }
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

/// One SSH round trip on `conn`, bounded by the probe timeout.
async fn ping(
    bound: Duration,
    conn: Arc<Connection>,
) -> (Arc<Connection>, Result<Duration, Error>) {
    let answer = conn.ping(bound).await.map_err(|e| match e {
        Error::Timeout(_) => Error::UpstreamUnreachable(format!(
            "no answer to an SSH ping within {bound:?} (probe.timeout): the remote may be frozen or asleep"
        )),
        other => other,
    });
    (conn, answer)
}

/// One shim probe: the configured verb, through the shim, on a channel outside the pool.
async fn shim(target: &Target, tracker: &TaskTracker, cancel: &CancellationToken) -> bool {
    let probe = &target.config.probe;
    let start = Instant::now();
    let result = async {
        let conn = target.any_connection().await?;
        let line = wire::encode(&probe.shim_verb, &probe.shim_args)?;
        let cmd = Command { line, stdin: None };
        let mut buffer = Buffer::new(SHIM_OUTPUT_CAP, target.budget());
        let limits = Limits {
            deadline: start + probe.timeout,
            stuck_after: target.config.stuck_after,
            drain_cap: SHIM_OUTPUT_CAP,
        };
        let mut interest = Interest::lasting();
        let Ran { result, release } =
            exec::run(&conn, &cmd, limits, cancel, &mut interest, (), &mut buffer).await;
        tracker.spawn(release);
        let out = buffer.finish(result.map_err(ExecError::into_error)?);
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
