//! The run-time state a running tether shares: where its tasks run, the drain's hard stop,
//! and the output budget. [`crate::serve::build`] makes the one [`Runtime`] and hands it
//! down: each target runs its calls on it, the servers reach it through
//! [`crate::sidecar::Sidecar`], and the drain waits on it.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::transport::output::Budget;

/// Handles to the run-time state; cloning one shares the same state.
#[derive(Clone)]
pub struct Runtime {
    /// Background work: servers, probes, connection attempts, probes' releases.
    pub tracker: TaskTracker,
    /// Call tasks in flight, abandoned ones included; the drain waits for them up to
    /// shutdown_grace.
    pub calls: TaskTracker,
    /// Fired when the drain's grace period is over: calls still running answer
    /// `shutting_down`.
    pub hard_stop: CancellationToken,
    /// Output that buffered calls may hold together.
    pub budget: Arc<Budget>,
}

impl Runtime {
    pub fn new(budget: Arc<Budget>) -> Self {
        Runtime {
            tracker: TaskTracker::new(),
            calls: TaskTracker::new(),
            hard_stop: CancellationToken::new(),
            budget,
        }
    }
}
