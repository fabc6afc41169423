//! What the RPC and admin servers share: the targets, the allowlist, metrics, the run-time
//! state, the calls in flight, and the drain flag.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::call::cache::Results;
use crate::call::registry::Registry;
use crate::config::{ServerConfig, VerbConfig};
use crate::error::Error;
use crate::health::Status;
use crate::metrics::Metrics;
use crate::runtime::Runtime;
use crate::target::Target;

/// What the servers of a running tether share.
pub struct Sidecar {
    pub server: ServerConfig,
    pub targets: BTreeMap<String, Arc<Target>>,
    pub verbs: BTreeMap<String, VerbConfig>,
    pub metrics: Metrics,
    /// The tasks, the hard stop and the budget the targets share.
    pub runtime: Runtime,
    /// What the cached verbs of every target share.
    pub results: Arc<Results>,
    /// The calls in flight, all targets together (`GET /v1/calls`, cancel).
    pub calls: Arc<Registry>,
    /// Set from the first signal on: /readyz is 503 and new calls get `shutting_down`.
    draining: AtomicBool,
}

impl Sidecar {
    pub fn new(
        server: ServerConfig,
        targets: BTreeMap<String, Arc<Target>>,
        verbs: BTreeMap<String, VerbConfig>,
        metrics: Metrics,
        runtime: Runtime,
    ) -> Self {
        Sidecar {
            server,
            targets,
            verbs,
            metrics,
            runtime,
            results: Arc::default(),
            calls: Arc::default(),
            draining: AtomicBool::new(false),
        }
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// The named target, else the default one (or the only one).
    pub fn target(&self, name: Option<&str>) -> Result<&Arc<Target>, Error> {
        let name = match name.filter(|n| !n.is_empty()) {
            Some(name) => name,
            None if !self.server.default_target.is_empty() => &self.server.default_target,
            None if self.targets.len() == 1 => self.targets.keys().next().expect("one target"),
            None => {
                return Err(Error::UnknownTarget(
                    "no target given and no server.default_target configured".into(),
                ));
            }
        };
        self.targets.get(name).ok_or_else(|| {
            Error::UnknownTarget(format!(
                "no target named {name:?}; configured: {}",
                self.targets.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// Sets every target's pool and connection gauges, before a scrape.
    pub fn refresh_gauges(&self) {
        for target in self.targets.values() {
            target.refresh_gauges();
        }
    }

    /// The `/v1/health` document (docs/rpc.md), from memory only.
    pub fn health_json(&self) -> serde_json::Value {
        let mut worst = Status::Up;
        let mut targets = serde_json::Map::new();
        for (name, target) in &self.targets {
            worst = worst.max(target.health.status());
            targets.insert(name.clone(), target.health_json());
        }
        serde_json::json!({ "status": worst, "targets": targets })
    }
}
