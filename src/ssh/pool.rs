//! The per-target pool. Its deadpool objects are channel slots, each a [`Lease`] on a shared
//! connection (see [`super::connection_set`]): up to `max_connections` connections, each
//! carrying up to its capacity of slots. A dead connection's slots fail recycling and are
//! replaced.

use std::sync::Arc;
use std::time::Duration;

use deadpool::managed::{
    self, Metrics as PoolMetrics, PoolError, RecycleError, RecycleResult, Timeouts,
};
use tokio::time::Instant;

use super::connection::{Connection, Lease};
use super::connection_set::ConnectionSet;
use crate::error::Error;
use crate::metrics::TargetMetrics;

/// deadpool's view: creating a slot leases a connection (opening one if needed).
pub struct SlotManager {
    connections: Arc<ConnectionSet>,
}

impl managed::Manager for SlotManager {
    type Type = Lease;
    type Error = Error;

    async fn create(&self) -> Result<Lease, Error> {
        self.connections.lease().await
    }

    async fn recycle(&self, lease: &mut Lease, _: &PoolMetrics) -> RecycleResult<Error> {
        if lease.conn().is_closed() {
            return Err(RecycleError::message("the slot's connection closed"));
        }
        Ok(())
    }
}

/// A slot taken from the pool: the right to run one channel on its connection. It goes back
/// when dropped, which a call does only once the server has freed the channel.
pub struct Slot(managed::Object<SlotManager>);

impl Slot {
    pub fn conn(&self) -> &Arc<Connection> {
        self.0.conn()
    }
}

/// Slots in use and callers waiting for one, as the pool counts them.
pub struct Occupancy {
    pub in_use: usize,
    pub waiting: usize,
}

/// The pool of one target.
pub struct SlotPool {
    pool: managed::Pool<SlotManager>,
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
        let pool = managed::Pool::builder(SlotManager { connections })
            .max_size(capacity)
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .expect("a runtime is configured");
        metrics.channels_capacity.set(capacity as i64);
        SlotPool {
            pool,
            metrics,
            name: name.to_string(),
        }
    }

    /// Waits up to `wait` for a slot; `busy` when none came free.
    pub async fn get(&self, wait: Duration) -> Result<Slot, Error> {
        let start = Instant::now();
        let timeouts = Timeouts {
            wait: Some(wait),
            create: None,
            recycle: None,
        };
        let got = self.pool.timeout_get(&timeouts).await;
        self.metrics
            .queue_wait
            .observe(start.elapsed().as_secs_f64());
        match got {
            Ok(slot) => Ok(Slot(slot)),
            Err(PoolError::Timeout(_)) => Err(Error::Busy {
                target: self.name.clone(),
                waited: wait,
            }),
            Err(PoolError::Backend(e)) => Err(e),
            Err(PoolError::Closed) => Err(Error::ShuttingDown),
            Err(e) => Err(Error::Internal(format!("pool: {e}"))),
        }
    }

    pub fn occupancy(&self) -> Occupancy {
        let status = self.pool.status();
        Occupancy {
            in_use: status.size - status.available,
            waiting: status.waiting,
        }
    }

    pub fn close(&self) {
        self.pool.close();
    }
}
