//! One target at run time: its pool, health and result cache, and the call path that ties
//! them together (fail fast when down, queue for a slot, run, retry only what is safe).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::cache::{self, ResultCache};
use crate::config::{Credentials, TargetConfig, VerbConfig};
use crate::error::Error;
use crate::health::{Health, PoolNumbers, Status};
use crate::metrics::TargetMetrics;
use crate::ssh::connection::Endpoint;
use crate::ssh::connection_set::ConnectionSet;
use crate::ssh::exec::{self, Command, ExecError, Output};
use crate::ssh::pool::SlotPool;

/// What a finished remote command gives back, shared by cached copies.
pub type CallResult = Result<Arc<Output>, Error>;

/// A call as the RPC hands it over, already validated.
pub struct Call<'a> {
    pub verb: &'a str,
    pub verb_config: &'a VerbConfig,
    pub line: String,
    pub args: &'a [String],
    pub stdin: Option<Bytes>,
    pub timeout: Duration,
}

/// A configured target with everything it runs on.
pub struct Target {
    pub name: String,
    pub config: TargetConfig,
    pub pool: SlotPool,
    pub health: Health,
    pub metrics: TargetMetrics,
    cache: ResultCache<CallResult>,
    tracker: TaskTracker,
}

impl Target {
    pub fn new(
        name: &str,
        config: TargetConfig,
        credentials: Arc<Credentials>,
        metrics: TargetMetrics,
        tracker: TaskTracker,
    ) -> Target {
        let endpoint = Endpoint::new(&config, credentials);
        let connections = Arc::new(ConnectionSet::new(
            endpoint,
            config.max_connections,
            config.channels_per_connection,
            config.probe.interval.mul_f64(0.9),
            metrics.clone(),
            tracker.clone(),
        ));
        let pool = SlotPool::new(
            name,
            connections,
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
            pool,
            health,
            metrics,
            cache: ResultCache::default(),
            tracker,
        }
    }

    /// Runs a call, through the result cache when the verb has a ttl. The flag is true for a
    /// shared copy.
    ///
    /// The call's future is boxed: nested inline, the futures of the call path came to
    /// ~70 KiB per waiting call (debug build), which 500 queued callers turned into ~80 MiB.
    pub async fn call(&self, call: Call<'_>) -> (CallResult, bool) {
        let ttl = call.verb_config.cache_ttl;
        let run = Box::pin(self.execute(&call));
        if ttl.is_zero() {
            return (run.await, false);
        }
        let key = cache::key(call.verb, call.args, call.stdin.as_deref());
        self.cache.get_or_run(key, ttl, Result::is_ok, run).await
    }

    async fn execute(&self, call: &Call<'_>) -> CallResult {
        let deadline = Instant::now() + call.timeout;
        // Waiting for a connection (fail fast, or a slot whose connection is still being
        // made) is bounded by the call's deadline too, not only by connect_timeout.
        let too_late = || Error::Timeout(call.timeout);
        tokio::time::timeout_at(deadline, self.fail_fast())
            .await
            .map_err(|_| too_late())??;
        let retries = if call.verb_config.idempotent { 1 } else { 0 };
        let mut attempt = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let wait = left.min(self.config.queue_timeout);
            let get = Box::pin(self.pool.get(wait));
            let held = match tokio::time::timeout_at(deadline, get).await {
                Err(_) => return Err(too_late()),
                Ok(Err(Error::Busy { .. })) if left < self.config.queue_timeout => {
                    return Err(too_late());
                }
                Ok(other) => other?,
            };
            let conn = held.slot.conn.clone();
            let cmd = Command {
                line: call.line.clone(),
                stdin: call.stdin.clone(),
                max_output: self.config.max_output_bytes,
            };
            match exec::run(&conn, cmd, deadline, held, &self.tracker).await {
                Ok(output) => return Ok(Arc::new(output)),
                // Nothing left tether: an idempotent verb may try once more on a fresh connection.
                Err(ExecError::NotSent(Error::UpstreamUnreachable(_))) if attempt < retries => {
                    attempt += 1;
                }
                // exec's timeout counts from the slot; the caller's is the whole call.
                Err(ExecError::NotSent(Error::Timeout(_)) | ExecError::Sent(Error::Timeout(_))) => {
                    return Err(too_late());
                }
                Err(ExecError::NotSent(e) | ExecError::Sent(e)) => return Err(e),
            }
        }
    }

    /// A target known down with no connection up gets at most one bounded connect attempt,
    /// not the verb's whole timeout; none while the last attempt's back-off runs, so a busy
    /// app cannot storm a sleeping laptop.
    async fn fail_fast(&self) -> Result<(), Error> {
        let connections = &self.pool.connections;
        if self.health.status() != Status::Down || !connections.live().is_empty() {
            return Ok(());
        }
        match connections.any().await {
            Ok(_) => Ok(()),
            Err(e @ (Error::HostKeyMismatch { .. } | Error::UpstreamAuthFailed { .. })) => Err(e),
            Err(e) => Err(Error::UpstreamUnreachable(format!(
                "target {} is down: {e}",
                self.name
            ))),
        }
    }

    /// Live numbers for the health JSON.
    pub fn pool_numbers(&self) -> PoolNumbers {
        PoolNumbers {
            connections: self.pool.connections.live().len(),
            channels_in_use: self.pool.in_use(),
            channels_capacity: self.config.channels_capacity(),
            waiting: self.pool.waiting(),
        }
    }

    /// The SPEC's per-target health object.
    pub fn health_json(&self) -> serde_json::Value {
        self.health.to_json(self.pool_numbers())
    }

    /// Stops handing out slots and closes the connections politely.
    pub async fn close(&self) {
        self.pool.close();
        self.pool.connections.close_all().await;
    }
}
