//! The live connections of one target, and the one place that opens new ones: attempts are
//! serialised, a failure is shared with everyone who queued behind it, and while the remote
//! stays away attempts back off with jitter (capped, so a returning remote is found fast).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::connection::{Connection, Endpoint, Lease};
use super::warm::{self, Plan};
use crate::error::Error;
use crate::metrics::TargetMetrics;

/// The first pause after a failed attempt; it doubles up to the cap.
const BACKOFF_FIRST: Duration = Duration::from_millis(250);

/// The live connections of one target.
pub struct ConnectionSet {
    endpoint: Endpoint,
    max_connections: usize,
    per_connection: usize,
    /// Warm channels per connection, refilled on the tracker.
    warm: Plan,
    /// Longest pause between attempts while the remote stays away.
    backoff_cap: Duration,
    live: Mutex<Vec<Arc<Connection>>>,
    /// Serialises connection attempts; an attempt holds it until its result is recorded.
    connecting: Arc<tokio::sync::Mutex<()>>,
    /// Attempts run as tasks here, so that a caller who gives up (its deadline passed) does
    /// not abandon a handshake half-way: the next caller finds its connection.
    tracker: TaskTracker,
    last_failure: Mutex<Option<Failure>>,
    metrics: TargetMetrics,
}

/// A failed attempt and the back-off it started.
struct Failure {
    at: Instant,
    error: Error,
    consecutive: u32,
    retry_at: Instant,
}

impl ConnectionSet {
    pub fn new(
        endpoint: Endpoint,
        max_connections: usize,
        per_connection: usize,
        warm_channels: usize,
        backoff_cap: Duration,
        metrics: TargetMetrics,
        tracker: TaskTracker,
    ) -> Self {
        ConnectionSet {
            endpoint,
            max_connections,
            per_connection,
            warm: Plan {
                channels: warm_channels,
                tracker: tracker.clone(),
                ready: metrics.warm_channels.clone(),
            },
            backoff_cap,
            live: Mutex::new(Vec::new()),
            connecting: Arc::new(tokio::sync::Mutex::new(())),
            tracker,
            last_failure: Mutex::new(None),
            metrics,
        }
    }

    /// The live connections, pruning dead ones.
    pub fn live(&self) -> Vec<Arc<Connection>> {
        let mut live = self.live.lock().expect("poisoned");
        live.retain(|c| !c.is_closed());
        live.clone()
    }

    /// Any live connection, else a new one (for probes).
    pub async fn any(self: &Arc<Self>) -> Result<Arc<Connection>, Error> {
        let asked = Instant::now();
        if let Some(conn) = self.live().into_iter().next() {
            return Ok(conn);
        }
        self.connect(asked, |live| live.first().cloned()).await
    }

    /// A connection with room for one more slot, leased to the caller. When every connection
    /// is at its (learned) capacity and no more may be opened, the least loaded one is shared:
    /// its channel opens then wait for the server to free one.
    pub async fn lease(self: &Arc<Self>) -> Result<Lease, Error> {
        let asked = Instant::now();
        if let Some(lease) = self.lease_with_room() {
            return Ok(lease);
        }
        let conn = self
            .connect(asked, |live| {
                live.iter().find(|c| c.leased() < c.capacity()).cloned()
            })
            .await?;
        Ok(conn.try_lease().unwrap_or_else(|| {
            // Full again, or the least loaded one shared at max_connections.
            conn.lease_beyond_capacity()
        }))
    }

    fn lease_with_room(&self) -> Option<Lease> {
        self.live().iter().find_map(|c| c.try_lease())
    }

    fn least_loaded(&self) -> Result<Arc<Connection>, Error> {
        self.live()
            .into_iter()
            .min_by_key(|c| c.leased())
            .ok_or_else(|| Error::UpstreamUnreachable("no live connection".into()))
    }

    /// Opens one connection, unless another caller's attempt already answered: `reuse` looks
    /// for a connection made meanwhile, and a failure newer than `asked`, or one whose
    /// back-off has not run out, is shared. At `max_connections`, the least loaded
    /// connection is shared instead.
    async fn connect(
        self: &Arc<Self>,
        asked: Instant,
        reuse: impl Fn(&[Arc<Connection>]) -> Option<Arc<Connection>>,
    ) -> Result<Arc<Connection>, Error> {
        let serial = self.connecting.clone().lock_owned().await;
        if let Some(conn) = reuse(&self.live()) {
            return Ok(conn);
        }
        if let Some(f) = &*self.last_failure.lock().expect("poisoned")
            && (f.at >= asked || Instant::now() < f.retry_at)
        {
            return Err(f.error.clone());
        }
        if self.live().len() >= self.max_connections {
            return self.least_loaded();
        }
        let this = self.clone();
        let attempt = self.tracker.spawn(
            async move {
                let result = this.attempt().await;
                drop(serial);
                result
            }
            .in_current_span(),
        );
        attempt
            .await
            .unwrap_or_else(|e| Err(Error::Internal(format!("connection attempt: {e}"))))
    }

    /// One connection attempt, its result recorded for everyone.
    async fn attempt(&self) -> Result<Arc<Connection>, Error> {
        match Connection::open(&self.endpoint, self.per_connection, &self.warm).await {
            Ok(conn) => {
                self.metrics.connect("ok");
                tracing::info!(target_addr = %self.endpoint.addr, conn = conn.id, "SSH connection up");
                let conn = Arc::new(conn);
                self.live.lock().expect("poisoned").push(conn.clone());
                *self.last_failure.lock().expect("poisoned") = None;
                warm::refill(&conn);
                Ok(conn)
            }
            Err(error) => {
                self.metrics.connect(error.code());
                self.record_failure(&error);
                Err(error)
            }
        }
    }

    fn record_failure(&self, error: &Error) {
        if error.is_security() {
            tracing::error!(target_addr = %self.endpoint.addr, code = error.code(), error = %error, "SSH connection refused for security reasons");
        } else {
            tracing::debug!(target_addr = %self.endpoint.addr, code = error.code(), error = %error, "SSH connection attempt failed");
        }
        let mut last = self.last_failure.lock().expect("poisoned");
        let consecutive = last.as_ref().map_or(1, |f| f.consecutive + 1);
        let now = Instant::now();
        *last = Some(Failure {
            at: now,
            error: error.clone(),
            consecutive,
            retry_at: now + backoff(consecutive, self.backoff_cap),
        });
    }

    /// Closes every connection politely (draining), all at once.
    pub async fn close_all(&self) {
        let mut closing = tokio::task::JoinSet::new();
        for conn in self.live() {
            closing.spawn(async move { conn.close().await });
        }
        closing.join_all().await;
    }

    /// Drops a connection that stopped answering, so calls and probes stop using it.
    pub async fn discard(&self, conn: &Arc<Connection>) {
        self.live
            .lock()
            .expect("poisoned")
            .retain(|c| !Arc::ptr_eq(c, conn));
        conn.close_unanswered().await;
    }
}

/// Exponential back-off from [`BACKOFF_FIRST`] up to `cap`, with jitter (75–100 %) so that
/// several sidecars do not knock in step.
fn backoff(consecutive: u32, cap: Duration) -> Duration {
    let exp = BACKOFF_FIRST.saturating_mul(1 << consecutive.saturating_sub(1).min(16));
    exp.min(cap).mul_f64(rand::random_range(0.75..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let cap = Duration::from_secs(2);
        let first = backoff(1, cap);
        assert!(
            first >= Duration::from_millis(187) && first <= BACKOFF_FIRST,
            "{first:?}"
        );
        for n in 4..40 {
            let d = backoff(n, cap);
            assert!(d >= cap.mul_f64(0.75) && d <= cap, "{n}: {d:?}");
        }
    }
}
