//! tether: a sidecar that keeps warm, multiplexed SSH connections to a remote machine and
//! runs allowlisted verbs there for a local app, over a Unix-socket RPC.
//!
//! # Layout
//! - [`config`]: sources (file, env, legacy env), typed defaults, validation, secrets.
//! - [`error`]: the one error enum with the codes of docs/rpc.md, HTTP statuses and retry hints.
//! - [`wire`]: the tether ↔ shim command line, encoded here and decoded by the shim.
//! - [`exit`]: the process exit statuses of tether and its shim.
//! - [`ssh`]: keys, pinned host keys, connections, the slot pool, command execution.
//! - [`target`]: one target at run time: the call path (fail fast, queue, run, re-send).
//! - [`call`]: a call as a task of its own: buffered and streamed answers, the verb cache.
//! - [`utf8`]: output bytes to text, piece by piece, never splitting a character.
//! - [`health`] and [`probe`]: the cached probe results and the loop that feeds them.
//! - [`metrics`]: every metric of docs/metrics.md on tether's own registry.
//! - [`http`], [`rpc`], [`admin`], [`status_page`]: the Unix-socket RPC and the admin port.
//! - [`sidecar`]: what the servers share, and the drain flags.
//! - [`shutdown`]: signals; [`cli`]: the `call`, `check` and `config` commands.
//! - [`demo`]: `tether demo`, a loopback SSH server running the real shim behind the real sidecar.
//! - [`doctor`]: `tether doctor`, the operator's preflight against the real remote.
//! - [`shim`]: `tether shim`, the laptop half: sshd's forced command, exactly-once keyed calls.
#![forbid(unsafe_code)]

pub mod admin;
pub mod call;
pub mod cli;
pub mod config;
pub mod demo;
pub mod doctor;
pub mod error;
pub mod exit;
pub mod health;
pub mod http;
pub mod metrics;
pub mod probe;
pub mod rpc;
pub mod shim;
pub mod shutdown;
pub mod sidecar;
pub mod ssh;
pub mod status_page;
pub mod target;
pub mod utf8;
pub mod wire;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use config::Loaded;
use metrics::Metrics;
use sidecar::Sidecar;
use ssh::output::Budget;
use target::{Runtime, Target};

/// How long in-flight calls get, after the grace period, to send their `shutting_down`.
const HARD_STOP_FLUSH: Duration = Duration::from_secs(2);
/// How long background tasks get to finish once everything else has stopped.
const TASKS_FLUSH: Duration = Duration::from_secs(3);

/// A problem that stops tether from starting (the socket is taken, a port is busy…).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

/// Runs tether until `shutdown` resolves, then drains: new calls get `shutting_down`, calls
/// in flight get up to `shutdown_grace`, connections close politely, the socket is removed.
pub async fn run(loaded: Loaded, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
    let Loaded {
        config,
        credentials,
    } = loaded;
    let tracker = TaskTracker::new();
    let cancel = CancellationToken::new();
    let metrics = Metrics::new();
    let runtime = Runtime {
        tracker: tracker.clone(),
        calls: TaskTracker::new(),
        stop: CancellationToken::new(),
        budget: Budget::new(
            config.server.max_buffered_bytes,
            metrics.call_buffered_bytes.clone(),
        ),
    };
    let targets: BTreeMap<String, Arc<Target>> = config
        .targets
        .iter()
        .map(|(name, t)| {
            let creds = credentials[name].clone();
            let target = Target::new(
                name,
                t.clone(),
                creds,
                metrics.target(name),
                runtime.clone(),
            );
            (name.clone(), Arc::new(target))
        })
        .collect();
    let socket = config.server.socket.clone();
    let listener = rpc::bind(&socket, config.server.socket_mode.0).map_err(StartError)?;
    let admin = match config.server.admin_addr.as_str() {
        "" => None,
        addr => match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => Some(listener),
            Err(e) => {
                // Nothing will listen on the socket: leave no file behind that looks alive.
                let _ = std::fs::remove_file(&socket);
                return Err(StartError(format!(
                    "cannot listen on server.admin_addr {addr}: {e}"
                )));
            }
        },
    };
    let admin_addr = admin.as_ref().and_then(|l| l.local_addr().ok());
    let shared = Arc::new(Sidecar::new(
        config.server.clone(),
        targets,
        config.verbs.clone(),
        metrics,
        &runtime,
    ));

    tracker.spawn(rpc::serve(
        listener,
        shared.clone(),
        tracker.clone(),
        cancel.clone(),
    ));
    if let Some(admin) = admin {
        tracker.spawn(admin::serve(
            admin,
            shared.clone(),
            tracker.clone(),
            cancel.clone(),
        ));
    }
    for target in shared.targets.values() {
        let span = tracing::info_span!("probe", target = %target.name);
        tracker.spawn(probe::run(target.clone(), tracker.clone(), cancel.clone()).instrument(span));
    }
    tracing::info!(socket = %socket.display(), admin = ?admin_addr, targets = shared.targets.len(), "tether is serving");

    shutdown.await;
    drain(&shared, config.server.shutdown_grace).await;
    cancel.cancel();
    for target in shared.targets.values() {
        target.close().await;
    }
    let _ = std::fs::remove_file(&socket);
    tracker.close();
    if tokio::time::timeout(TASKS_FLUSH, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some background tasks did not stop in time");
    }
    tracing::info!("tether stopped");
    Ok(())
}

/// Refuses new calls and gives those in flight up to `grace`; past it, they answer
/// `shutting_down` rather than silence.
async fn drain(shared: &Sidecar, grace: Duration) {
    shared.start_draining();
    shared.calls.close();
    let in_flight = shared.calls.len();
    tracing::info!(in_flight, grace = ?grace, "draining");
    if tokio::time::timeout(grace, shared.calls.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            in_flight = shared.calls.len(),
            "grace period over; answering the rest shutting_down"
        );
        shared.hard_stop.cancel();
        let _ = tokio::time::timeout(HARD_STOP_FLUSH, shared.calls.wait()).await;
    }
}
