//! The per-target pool. Its deadpool objects are channel slots bound to shared connections:
//! up to `max_connections` connections, each carrying up to `channels_per_connection` slots.
//! A dead connection's slots fail recycling and are replaced on a fresh connection.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool::managed::{
    self, Metrics as PoolMetrics, PoolError, RecycleError, RecycleResult, Timeouts,
};
use tokio::time::Instant;

use super::conn::{Connection, Endpoint};
use crate::error::Error;
use crate::metrics::TargetMetrics;

/// The live connections of one target, and the one place that opens new ones.
pub struct Connections {
    endpoint: Endpoint,
    max_connections: usize,
    per_connection: usize,
    live: Mutex<Vec<Arc<Connection>>>,
    /// Serialises connection attempts.
    connecting: tokio::sync::Mutex<()>,
    /// The last failed attempt: callers who queued behind it share its answer instead of
    /// each waiting out their own, and a target known down does not storm the remote.
    last_failure: Mutex<Option<(Instant, Error)>>,
    metrics: TargetMetrics,
}

impl Connections {
    pub fn new(
        endpoint: Endpoint,
        max_connections: usize,
        per_connection: usize,
        metrics: TargetMetrics,
    ) -> Self {
        Connections {
            endpoint,
            max_connections,
            per_connection,
            live: Mutex::new(Vec::new()),
            connecting: tokio::sync::Mutex::new(()),
            last_failure: Mutex::new(None),
            metrics,
        }
    }

    /// The live connections, pruning dead ones.
    pub fn live(&self) -> Vec<Arc<Connection>> {
        let mut live = self.live.lock().expect("poisoned");
        live.retain(|c| !c.is_closed());
        self.metrics.connections.set(live.len() as i64);
        live.clone()
    }

    /// Any live connection, else a new one (for probes).
    pub async fn any(&self) -> Result<Arc<Connection>, Error> {
        let asked = Instant::now();
        if let Some(conn) = self.live().into_iter().next() {
            return Ok(conn);
        }
        self.connect(asked, |live| live.first().cloned()).await
    }

    /// A connection with room for one more slot, leased to the caller. When every connection
    /// is at its (learned) capacity and no more may be opened, the least loaded one is shared:
    /// its channel opens then wait for the server to free one.
    async fn lease(&self) -> Result<Arc<Connection>, Error> {
        let asked = Instant::now();
        let conn = match self.with_room() {
            Some(conn) => conn,
            None => self.connect(asked, |_| self.with_room()).await?,
        };
        conn.leases.fetch_add(1, Ordering::SeqCst);
        Ok(conn)
    }

    fn with_room(&self) -> Option<Arc<Connection>> {
        self.live()
            .into_iter()
            .find(|c| c.leases.load(Ordering::SeqCst) < c.capacity())
    }

    fn least_loaded(&self) -> Result<Arc<Connection>, Error> {
        self.live()
            .into_iter()
            .min_by_key(|c| c.leases.load(Ordering::SeqCst))
            .ok_or_else(|| Error::UpstreamUnreachable("no live connection".into()))
    }

    /// Opens one connection, unless another caller's attempt already answered: `reuse` looks
    /// for a connection made meanwhile, and a failure newer than `asked` is shared. At
    /// `max_connections`, the least loaded connection is shared instead.
    async fn connect(
        &self,
        asked: Instant,
        reuse: impl Fn(&[Arc<Connection>]) -> Option<Arc<Connection>>,
    ) -> Result<Arc<Connection>, Error> {
        let _serial = self.connecting.lock().await;
        if let Some(conn) = reuse(&self.live()) {
            return Ok(conn);
        }
        if let Some(err) = self.failure_since(asked) {
            return Err(err);
        }
        if self.live().len() >= self.max_connections {
            return self.least_loaded();
        }
        match Connection::open(&self.endpoint, self.per_connection).await {
            Ok(conn) => {
                self.metrics.connect("ok");
                tracing::info!(target_addr = %self.endpoint.addr(), conn = conn.id, "SSH connection up");
                let conn = Arc::new(conn);
                self.live.lock().expect("poisoned").push(conn.clone());
                self.live();
                *self.last_failure.lock().expect("poisoned") = None;
                Ok(conn)
            }
            Err(err) => {
                self.metrics.connect(err.code());
                *self.last_failure.lock().expect("poisoned") = Some((Instant::now(), err.clone()));
                Err(err)
            }
        }
    }

    /// The last connection failure if it happened at or after `since`.
    pub fn failure_since(&self, since: Instant) -> Option<Error> {
        match &*self.last_failure.lock().expect("poisoned") {
            Some((at, err)) if *at >= since => Some(err.clone()),
            _ => None,
        }
    }

    /// Closes every connection politely (draining).
    pub async fn close_all(&self) {
        for conn in self.live() {
            conn.close().await;
        }
    }

    /// Drops a connection that stopped answering, so calls and probes stop using it.
    pub async fn discard(&self, conn: &Arc<Connection>) {
        self.live
            .lock()
            .expect("poisoned")
            .retain(|c| !Arc::ptr_eq(c, conn));
        self.live();
        conn.close().await;
    }
}

/// A channel slot: the right to open one channel on `conn`.
pub struct Slot {
    pub conn: Arc<Connection>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.conn.leases.fetch_sub(1, Ordering::SeqCst);
    }
}

/// deadpool's view: creating a slot leases a connection (opening one if needed).
pub struct SlotManager {
    connections: Arc<Connections>,
}

impl managed::Manager for SlotManager {
    type Type = Slot;
    type Error = Error;

    async fn create(&self) -> Result<Slot, Error> {
        let conn = self.connections.lease().await?;
        Ok(Slot { conn })
    }

    async fn recycle(&self, slot: &mut Slot, _: &PoolMetrics) -> RecycleResult<Error> {
        if slot.conn.is_closed() {
            return Err(RecycleError::message("the slot's connection closed"));
        }
        Ok(())
    }
}

/// A slot taken from the pool; it goes back when dropped.
pub type PooledSlot = managed::Object<SlotManager>;

/// The pool of one target.
pub struct SlotPool {
    pool: managed::Pool<SlotManager>,
    pub connections: Arc<Connections>,
    metrics: TargetMetrics,
    name: String,
}

impl SlotPool {
    pub fn new(
        name: &str,
        connections: Arc<Connections>,
        capacity: usize,
        metrics: TargetMetrics,
    ) -> Self {
        let pool = managed::Pool::builder(SlotManager {
            connections: connections.clone(),
        })
        .max_size(capacity)
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .expect("a runtime is configured");
        metrics.channels_capacity.set(capacity as i64);
        SlotPool {
            pool,
            connections,
            metrics,
            name: name.to_string(),
        }
    }

    /// Waits up to `wait` for a slot; `busy` when none came free.
    pub async fn get(&self, wait: Duration) -> Result<InUse, Error> {
        let start = Instant::now();
        self.metrics.waiting.inc();
        let timeouts = Timeouts {
            wait: Some(wait),
            create: None,
            recycle: None,
        };
        let got = self.pool.timeout_get(&timeouts).await;
        self.metrics.waiting.dec();
        self.metrics
            .queue_wait
            .observe(start.elapsed().as_secs_f64());
        match got {
            Ok(slot) => {
                self.metrics.channels_in_use.inc();
                Ok(InUse {
                    slot,
                    in_use: self.metrics.channels_in_use.clone(),
                })
            }
            Err(PoolError::Timeout(_)) => Err(Error::Busy {
                target: self.name.clone(),
                waited: wait,
            }),
            Err(PoolError::Backend(e)) => Err(e),
            Err(PoolError::Closed) => Err(Error::ShuttingDown),
            Err(e) => Err(Error::Internal(format!("pool: {e}"))),
        }
    }

    /// Slots held by calls right now.
    pub fn in_use(&self) -> usize {
        self.metrics.channels_in_use.get().max(0) as usize
    }

    pub fn waiting(&self) -> usize {
        self.metrics.waiting.get().max(0) as usize
    }

    pub fn close(&self) {
        self.pool.close();
    }
}

/// A slot held by a call; counted in `tether_channels_in_use` until dropped.
pub struct InUse {
    pub slot: PooledSlot,
    in_use: prometheus::IntGauge,
}

impl Drop for InUse {
    fn drop(&mut self) {
        self.in_use.dec();
    }
}
