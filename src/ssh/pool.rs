//! The per-target pool. Its deadpool objects are channel slots bound to shared connections
//! (see [`super::connections`]): up to `max_connections` connections, each carrying up to
//! its capacity of slots. A dead connection's slots fail recycling and are replaced.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use deadpool::managed::{
    self, Metrics as PoolMetrics, PoolError, RecycleError, RecycleResult, Timeouts,
};
use tokio::time::Instant;

use super::connection::Connection;
use super::connection_set::ConnectionSet;
use crate::error::Error;
use crate::metrics::TargetMetrics;

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
    connections: Arc<ConnectionSet>,
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
    pub connections: Arc<ConnectionSet>,
    metrics: TargetMetrics,
    name: String,
}

impl SlotPool {
    pub fn new(
        name: &str,
        connections: Arc<ConnectionSet>,
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
