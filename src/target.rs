//! One target at run time: its transport, health and metrics, and the call path that ties
//! them together (fail fast when down, wait for room, run, re-send only what is safe). The
//! call tasks of [`crate::call`] run their calls through [`Target::execute`]; nothing here
//! knows of them.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::TargetConfig;
use crate::error::Error;
use crate::health::{Health, Policy, PoolNumbers};
use crate::metrics::TargetMetrics;
use crate::runtime::Runtime;
use crate::ssh::connection::Endpoint;
use crate::ssh::credentials::Credentials;
use crate::ssh::transport::{Shape, SshTransport};
use crate::transport::interest::Interest;
use crate::transport::output::Budget;
use crate::transport::{
    Attempt, Exit, Failed, Limits, Ran, Release, Request, Room, Sink, Transport, released,
};

/// A configured target with everything it runs on.
pub struct Target {
    pub name: String,
    pub config: TargetConfig,
    pub health: Health,
    pub metrics: TargetMetrics,
    transport: Arc<dyn Transport>,
    runtime: Runtime,
}

impl Target {
    /// A target that runs its requests over pooled SSH connections (a shim session or exec).
    pub fn new(
        name: &str,
        config: TargetConfig,
        credentials: Arc<Credentials>,
        metrics: TargetMetrics,
        runtime: Runtime,
    ) -> Target {
        let endpoint = Endpoint::new(config.destination(), credentials);
        let shape = Shape {
            max_connections: config.max_connections,
            channels_per_connection: config.channels_per_connection,
            warm_channels: config.warm_channels,
            backoff_cap: Policy::new(&config.probe).backoff_cap(),
            in_band: config.in_band,
            shim_session: config.shim_session,
        };
        let ssh = SshTransport::new(
            name,
            endpoint,
            shape,
            metrics.clone(),
            runtime.tracker.clone(),
        );
        Target::with_transport(name, config, Arc::new(ssh), metrics, runtime)
    }

    /// A target that runs its requests on `transport`.
    pub fn with_transport(
        name: &str,
        config: TargetConfig,
        transport: Arc<dyn Transport>,
        metrics: TargetMetrics,
        runtime: Runtime,
    ) -> Target {
        let health = Health::new(Policy::new(&config.probe));
        Target {
            name: name.to_string(),
            config,
            health,
            metrics,
            transport,
            runtime,
        }
    }

    /// The tracker call tasks run on.
    pub fn calls(&self) -> &TaskTracker {
        &self.runtime.calls
    }

    /// Fired when the drain's grace is over.
    pub fn hard_stop(&self) -> &CancellationToken {
        &self.runtime.hard_stop
    }

    pub fn budget(&self) -> Arc<Budget> {
        self.runtime.budget.clone()
    }

    /// Runs `request`, its output going to `sink`, within `timeout`. Returns the answer and
    /// the release its owner awaits after answering. A lost connection is re-sent once on a
    /// fresh one when the request is `idempotent` and none of the lost attempt's output
    /// reached the caller. Once `interest` is lost (the caller hung up), nothing more is sent:
    /// `cancelled`.
    pub async fn execute(
        &self,
        request: &Request,
        timeout: Duration,
        idempotent: bool,
        interest: &mut Interest,
        sink: &mut dyn Sink,
    ) -> (Result<Exit, Error>, Release) {
        let deadline = Instant::now() + timeout;
        let mut resent = false;
        loop {
            let Ran { result, release } = self.attempt(request, deadline, interest, sink).await;
            let failed = match result {
                Ok(exit) => return (Ok(exit), release),
                Err(failed) => failed,
            };
            if !resent && may_resend(&failed, idempotent) && sink.restart() {
                tracing::info!(error = %failed.error(), "the connection was lost; sending the call again on a fresh one");
                release.await;
                resent = true;
                continue;
            }
            let error = match failed.into_error() {
                // Every wait is bounded by the deadline the call started with.
                Error::Timeout(_) => Error::Timeout(timeout),
                e => e,
            };
            return (Err(error), release);
        }
    }

    /// One attempt, in the pool: fail fast when the target is known down, then wait for room
    /// at most queue_timeout and never past the deadline (`timeout` when the deadline comes
    /// first); the drain's hard stop ends the wait.
    async fn attempt(
        &self,
        request: &Request,
        deadline: Instant,
        interest: &mut Interest,
        sink: &mut dyn Sink,
    ) -> Ran {
        let not_sent = |e| Ran {
            result: Err(Failed::NotSent(e)),
            release: released(),
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let fail_fast = tokio::select! {
            checked = tokio::time::timeout_at(deadline, self.fail_fast()) => {
                checked.unwrap_or(Err(Error::Timeout(left)))
            }
            _ = self.runtime.hard_stop.cancelled() => Err(Error::ShuttingDown),
        };
        if let Err(e) = fail_fast {
            return not_sent(e);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let queue = self.config.queue_timeout;
        let attempt = Attempt {
            request,
            limits: self.limits(deadline),
            room: Room::Pooled(left.min(queue)),
            stop: &self.runtime.hard_stop,
            interest,
            sink,
        };
        let mut ran = self.transport.run(attempt).await;
        if let Err(Failed::NotSent(Error::Busy { .. })) = &ran.result
            && left < queue
        {
            ran.result = Err(Failed::NotSent(Error::Timeout(left)));
        }
        ran
    }

    /// Runs a probe's request outside the pool, within `bound`, until `stop`; the probe owns
    /// the release.
    pub async fn probe_run(
        &self,
        request: &Request,
        bound: Duration,
        drain_cap: usize,
        stop: &CancellationToken,
        sink: &mut dyn Sink,
    ) -> Ran {
        let mut interest = Interest::lasting();
        let limits = Limits {
            drain_cap,
            ..self.limits(Instant::now() + bound)
        };
        let attempt = Attempt {
            request,
            limits,
            room: Room::Unpooled,
            stop,
            interest: &mut interest,
            sink,
        };
        self.transport.run(attempt).await
    }

    fn limits(&self, deadline: Instant) -> Limits {
        Limits {
            deadline,
            stuck_after: self.config.stuck_after,
            drain_cap: self.config.max_output_bytes,
        }
    }

    /// A target known down with no connection up gets at most one bounded connect attempt,
    /// not the verb's whole timeout; none while the last attempt's back-off runs, so a busy
    /// app cannot storm a sleeping laptop.
    async fn fail_fast(&self) -> Result<(), Error> {
        let (status, connected) = (self.health.status(), self.transport.is_connected());
        if !self.health.policy().must_check_first(status, connected) {
            return Ok(());
        }
        match self.transport.connect().await {
            Ok(_) => Ok(()),
            Err(e) if e.is_security() => Err(e),
            Err(e) => Err(Error::UpstreamUnreachable(format!(
                "target {} is down: {e}",
                self.name
            ))),
        }
    }

    /// Counts a finished call (`error` None for a result) and keeps a security refusal as
    /// the target's last error, so operators see it. An abandoned call (its caller hung up)
    /// is counted by the stage it was left at: `queued` (dropped unsent) or `running`.
    pub fn record_call(
        &self,
        verb: &str,
        error: Option<&Error>,
        took: Duration,
        abandoned_at: Option<&str>,
    ) {
        let code = error.map_or("ok", Error::code);
        self.metrics.call(verb, code, took.as_secs_f64());
        if let Some(stage) = abandoned_at {
            self.metrics.abandoned(verb, stage);
        }
        if let Some(e) = error.filter(|e| e.is_security()) {
            self.health.note_error(e);
        }
    }

    /// The transport probe: one round trip on every live connection, each within `bound`.
    pub async fn ping(&self, bound: Duration) -> Result<Duration, Error> {
        self.transport.ping(bound).await
    }

    /// Live numbers for the health JSON, from the pool and the connection set.
    pub fn pool_numbers(&self) -> PoolNumbers {
        self.transport.numbers()
    }

    /// Sets the pool and connection gauges from the pool and the connection set, before a
    /// scrape.
    pub fn refresh_gauges(&self) {
        let numbers = self.pool_numbers();
        self.metrics.connections.set(numbers.connections as i64);
        self.metrics
            .channels_in_use
            .set(numbers.channels_in_use as i64);
        self.metrics.waiting.set(numbers.waiting as i64);
    }

    /// The per-target object of `/v1/health`.
    pub fn health_json(&self) -> serde_json::Value {
        self.health.to_json(self.pool_numbers())
    }

    /// Stops handing out slots and closes the connections politely.
    pub async fn close(&self) {
        self.transport.close().await;
    }
}

/// Whether a failed attempt may be sent again: only when the connection failed (a lost one,
/// or none to be had) and the verb is idempotent, that is, safe to re-send.
fn may_resend(failed: &Failed, idempotent: bool) -> bool {
    idempotent
        && matches!(
            failed.error(),
            Error::ConnectionLost(_) | Error::UpstreamUnreachable(_)
        )
}
