//! One target at run time: its connections, pool, health and result cache, and the call
//! path that ties them together (fail fast when down, queue for a slot, run, re-send only
//! what is safe). Calls run as tasks (see [`crate::call`]); this is what they run.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::call::cache::{self, Cacheable, ResultCache};
use crate::call::{Call, Output, buffer::Buffer};
use crate::config::TargetConfig;
use crate::error::Error;
use crate::health::{Health, PoolNumbers, Status};
use crate::metrics::TargetMetrics;
use crate::runtime::Runtime;
use crate::ssh::connection::{Connection, Endpoint};
use crate::ssh::connection_set::ConnectionSet;
use crate::ssh::credentials::Credentials;
use crate::ssh::exec::{self, Command, ExecError, Exit, Limits, Ran, Release, Sink};
use crate::ssh::interest::Interest;
use crate::ssh::output::Budget;
use crate::ssh::pool::{Slot, SlotPool};

/// A buffered result, shared by the callers of a cached verb.
pub type SharedResult = Result<Arc<Output>, Error>;

impl Cacheable for SharedResult {
    fn keep(&self) -> bool {
        self.is_ok()
    }

    fn weight(&self) -> usize {
        self.as_ref().map_or(0, |out| out.len())
    }
}

/// A configured target with everything it runs on.
pub struct Target {
    pub name: String,
    pub config: TargetConfig,
    pub health: Health,
    pub metrics: TargetMetrics,
    connections: Arc<ConnectionSet>,
    pool: SlotPool,
    cache: ResultCache<SharedResult>,
    runtime: Runtime,
}

impl Target {
    pub fn new(
        name: &str,
        config: TargetConfig,
        credentials: Arc<Credentials>,
        metrics: TargetMetrics,
        runtime: Runtime,
    ) -> Target {
        let endpoint = Endpoint::new(config.destination(), credentials);
        let connections = Arc::new(ConnectionSet::new(
            endpoint,
            config.max_connections,
            config.channels_per_connection,
            config.probe.interval.mul_f64(0.9),
            metrics.clone(),
            runtime.tracker.clone(),
        ));
        let pool = SlotPool::new(
            name,
            connections.clone(),
            config.channels_capacity(),
            metrics.clone(),
        );
        let health = Health::new(
            config.probe.fail_threshold,
            !config.probe.shim_verb.is_empty(),
        );
        Target {
            name: name.to_string(),
            config,
            health,
            metrics,
            connections,
            pool,
            cache: ResultCache::default(),
            runtime,
        }
    }

    /// The tracker call tasks run on.
    pub fn calls(&self) -> &TaskTracker {
        &self.runtime.calls
    }

    pub fn budget(&self) -> Arc<Budget> {
        self.runtime.budget.clone()
    }

    /// Runs `call` once through the result cache: joins an identical call that is running or
    /// finished within the verb's ttl, else starts one as a task of its own. True when shared.
    pub async fn shared_run(self: &Arc<Self>, call: &Call) -> (SharedResult, bool) {
        let key = cache::key(&call.verb, &call.args, call.stdin.as_deref());
        let (mut landed, joined) = self.cache.join(key, call.verb_config.cache_ttl, |tx| {
            let (target, call) = (self.clone(), call.clone());
            self.runtime.calls.spawn(async move {
                // Shared by every caller who joins, now or later: never dropped for one.
                let mut interest = Interest::lasting();
                let mut buffer = Buffer::new(target.config.max_output_bytes, target.budget());
                let (result, release) = target.execute(&call, &mut buffer, &mut interest).await;
                let result = result.and_then(|exit| buffer.answer(exit)).map(Arc::new);
                tx.send_replace(Some((Instant::now(), result)));
                release.await;
            });
        });
        let result = tokio::select! {
            landed = landed.wait_for(Option::is_some) => match landed {
                Ok(landed) => landed.as_ref().map(|(_, r)| r.clone()),
                Err(_) => None,
            },
            _ = self.runtime.hard_stop.cancelled() => Some(Err(Error::ShuttingDown)),
        };
        let result = result.unwrap_or_else(|| {
            Err(Error::Internal(
                "a shared call ended without a result".into(),
            ))
        });
        (result, joined)
    }

    /// Runs `call`, its output going to `sink`. Returns the answer and the release its owner
    /// awaits after answering. A lost connection is re-sent once on a fresh one when the verb
    /// is idempotent and none of the lost attempt's output reached the caller. Once
    /// `interest` is lost (the caller hung up), nothing more is sent: `cancelled`.
    pub async fn execute<S: Sink>(
        &self,
        call: &Call,
        sink: &mut S,
        interest: &mut Interest,
    ) -> (Result<Exit, Error>, Release) {
        let deadline = Instant::now() + call.timeout;
        let limits = Limits {
            deadline,
            stuck_after: self.config.stuck_after,
            drain_cap: self.config.max_output_bytes,
        };
        let cmd = Command {
            line: call.line.clone(),
            stdin: call.stdin.clone(),
        };
        let mut resent = false;
        loop {
            let slot = tokio::select! {
                slot = self.slot(call.timeout, deadline) => slot,
                _ = interest.lost() => Err(Error::Cancelled(
                    "the caller hung up while the call was queued; it was never sent".into(),
                )),
            };
            let slot = match slot {
                Ok(slot) => slot,
                Err(e) => return (Err(e), Box::pin(async {})),
            };
            let conn = slot.conn().clone();
            let hard_stop = &self.runtime.hard_stop;
            let Ran { result, release } =
                exec::run(&conn, &cmd, limits, hard_stop, interest, slot, sink).await;
            let failed = match result {
                Ok(exit) => return (Ok(exit), release),
                Err(failed) => failed,
            };
            if !resent && may_resend(&failed, call.verb_config.idempotent) && sink.restart() {
                tracing::info!(error = %failed.error(), "the connection was lost; sending the call again on a fresh one");
                release.await;
                resent = true;
                continue;
            }
            let error = match failed.into_error() {
                // exec's deadline is the one the call started with.
                Error::Timeout(_) => Error::Timeout(call.timeout),
                e => e,
            };
            return (Err(error), release);
        }
    }

    /// A slot for the call, waiting at most queue_timeout and never past the deadline. A
    /// target known down fails fast first; the drain's hard stop ends the wait.
    async fn slot(&self, timeout: Duration, deadline: Instant) -> Result<Slot, Error> {
        let too_late = || Error::Timeout(timeout);
        let get = async {
            // Waiting for a connection (fail fast, or a slot whose connection is still being
            // made) is bounded by the call's deadline too, not only by connect_timeout.
            self.fail_fast().await?;
            let left = deadline.saturating_duration_since(Instant::now());
            match self.pool.get(left.min(self.config.queue_timeout)).await {
                Err(Error::Busy { .. }) if left < self.config.queue_timeout => Err(too_late()),
                got => got,
            }
        };
        tokio::select! {
            got = tokio::time::timeout_at(deadline, get) => got.unwrap_or_else(|_| Err(too_late())),
            _ = self.runtime.hard_stop.cancelled() => Err(Error::ShuttingDown),
        }
    }

    /// A target known down with no connection up gets at most one bounded connect attempt,
    /// not the verb's whole timeout; none while the last attempt's back-off runs, so a busy
    /// app cannot storm a sleeping laptop.
    async fn fail_fast(&self) -> Result<(), Error> {
        if self.health.status() != Status::Down || !self.connections.live().is_empty() {
            return Ok(());
        }
        match self.connections.any().await {
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
    /// is counted by stage: `queued` when it was dropped unsent, else `running`.
    pub fn record_call(&self, verb: &str, error: Option<&Error>, took: Duration, abandoned: bool) {
        let code = error.map_or("ok", Error::code);
        self.metrics.call(verb, code, took.as_secs_f64());
        if abandoned {
            let stage = match error {
                Some(Error::Cancelled(_)) => "queued",
                _ => "running",
            };
            self.metrics.abandoned(verb, stage);
        }
        if let Some(e) = error.filter(|e| e.is_security()) {
            self.health.note_error(e);
        }
    }

    /// The live connections (for probes).
    pub fn live_connections(&self) -> Vec<Arc<Connection>> {
        self.connections.live()
    }

    /// Any live connection, else a new one (for probes).
    pub async fn any_connection(&self) -> Result<Arc<Connection>, Error> {
        self.connections.any().await
    }

    /// Retires a connection that stopped answering, so calls and probes stop using it.
    pub async fn discard(&self, conn: &Arc<Connection>) {
        self.connections.discard(conn).await;
    }

    /// Live numbers for the health JSON, from the pool and the connection set.
    pub fn pool_numbers(&self) -> PoolNumbers {
        let occupancy = self.pool.occupancy();
        PoolNumbers {
            connections: self.connections.live().len(),
            channels_in_use: occupancy.in_use,
            channels_capacity: self.config.channels_capacity(),
            waiting: occupancy.waiting,
        }
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
        self.pool.close();
        self.connections.close_all().await;
    }
}

/// Whether a failed attempt may be sent again: only when the connection failed (a lost one,
/// or none to be had) and the verb is idempotent, that is, safe to re-send.
fn may_resend(failed: &ExecError, idempotent: bool) -> bool {
    idempotent
        && matches!(
            failed.error(),
            Error::ConnectionLost(_) | Error::UpstreamUnreachable(_)
        )
}
