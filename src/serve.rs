//! Startup and shutdown (docs/cli.md, "Signals and lifecycle"), in three steps: [`build`]
//! takes every step that can fail (the metrics, the targets, the socket, the admin port) and
//! spawns nothing, so a refusal leaves nothing running; [`Built::spawn`] starts the servers
//! and the probe loops; [`Serving::drain`] is the shutdown sequence.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::Loaded;
use crate::metrics::Metrics;
use crate::runtime::Runtime;
use crate::sidecar::Sidecar;
use crate::target::Target;
use crate::transport::output::Budget;
use crate::{admin, probe, rpc};

/// How long in-flight calls get, after the grace period, to send their `shutting_down`.
const HARD_STOP_FLUSH: Duration = Duration::from_secs(2);
/// How long background tasks get to finish once everything else has stopped.
const TASKS_FLUSH: Duration = Duration::from_secs(3);

/// A problem that stops tether from starting (the socket is taken, a port is busy…).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

/// A tether with everything bound and nothing running yet.
pub struct Built {
    shared: Arc<Sidecar>,
    rpc: UnixListener,
    admin: Option<TcpListener>,
}

/// A tether whose servers and probes run, until [`Serving::drain`].
pub struct Serving {
    shared: Arc<Sidecar>,
    /// Stops the servers' accept loops and the probes.
    cancel: CancellationToken,
}

/// Makes the targets and binds the socket, then the admin port. A socket that is taken, or
/// an admin port that is busy, is an error, and nothing has been spawned.
pub async fn build(loaded: Loaded) -> Result<Built, StartError> {
    let Loaded {
        config,
        credentials,
    } = loaded;
    let metrics = Metrics::new();
    let budget = Budget::new(
        config.server.max_buffered_bytes,
        metrics.call_buffered_bytes.clone(),
    );
    let runtime = Runtime::new(budget);
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
    let socket = &config.server.socket;
    let rpc = rpc::bind(socket, config.server.socket_mode.0).map_err(StartError)?;
    let admin = match config.server.admin_addr.as_str() {
        "" => None,
        addr => match TcpListener::bind(addr).await {
            Ok(listener) => Some(listener),
            Err(e) => {
                // Nothing will listen on the socket: leave no file behind that looks alive.
                let _ = std::fs::remove_file(socket);
                return Err(StartError(format!(
                    "cannot listen on server.admin_addr {addr}: {e}"
                )));
            }
        },
    };
    let shared = Arc::new(Sidecar::new(
        config.server,
        targets,
        config.verbs,
        metrics,
        runtime,
    ));
    Ok(Built { shared, rpc, admin })
}

impl Built {
    /// The path the RPC socket is bound at.
    pub fn socket(&self) -> &Path {
        &self.shared.server.socket
    }

    /// The address the admin server is bound to (its real port when port 0 was asked for),
    /// or None when it is disabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Starts the RPC and admin servers and one probe loop per target.
    pub fn spawn(self) -> Serving {
        let admin_addr = self.admin_addr();
        let Built { shared, rpc, admin } = self;
        let tracker = &shared.runtime.tracker;
        let cancel = CancellationToken::new();
        tracker.spawn(rpc::serve(
            rpc,
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
            tracker.spawn(
                probe::run(target.clone(), tracker.clone(), cancel.clone()).instrument(span),
            );
        }
        tracing::info!(socket = %shared.server.socket.display(), admin = ?admin_addr, targets = shared.targets.len(), "tether is serving");
        Serving { shared, cancel }
    }
}

impl Serving {
    /// New calls get `shutting_down`, calls in flight get up to `shutdown_grace`, then the
    /// servers and probes stop, connections close politely, and the socket is removed.
    pub async fn drain(self) {
        let Serving { shared, cancel } = self;
        wait_for_calls(&shared, shared.server.shutdown_grace).await;
        cancel.cancel();
        for target in shared.targets.values() {
            target.close().await;
        }
        let _ = std::fs::remove_file(&shared.server.socket);
        let tracker = &shared.runtime.tracker;
        tracker.close();
        if tokio::time::timeout(TASKS_FLUSH, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("some background tasks did not stop in time");
        }
        tracing::info!("tether stopped");
    }
}

/// Refuses new calls and gives those in flight up to `grace`; past it, they answer
/// `shutting_down` rather than silence.
async fn wait_for_calls(shared: &Sidecar, grace: Duration) {
    let calls = &shared.runtime.calls;
    shared.start_draining();
    calls.close();
    let in_flight = calls.len();
    tracing::info!(in_flight, grace = ?grace, "draining");
    if tokio::time::timeout(grace, calls.wait()).await.is_err() {
        tracing::warn!(
            in_flight = calls.len(),
            "grace period over; answering the rest shutting_down"
        );
        shared.runtime.hard_stop.cancel();
        let _ = tokio::time::timeout(HARD_STOP_FLUSH, calls.wait()).await;
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::config::Config;

    /// A config with no target: enough to bind, serve the admin port and drain.
    fn no_targets(dir: &Path, admin_addr: &str) -> Loaded {
        let mut config = Config::default();
        config.server.socket = dir.join("t.sock");
        config.server.admin_addr = admin_addr.into();
        Loaded {
            config,
            credentials: BTreeMap::new(),
        }
    }

    /// Bound on an answer from the admin port; a listener nobody serves never answers.
    const ANSWER_WITHIN: Duration = Duration::from_secs(10);

    /// The status line of `GET path` on the admin port.
    async fn status_line(addr: SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        tokio::time::timeout(ANSWER_WITHIN, stream.read_to_string(&mut answer))
            .await
            .expect("no answer from the admin port")
            .unwrap();
        answer.lines().next().unwrap_or_default().to_string()
    }

    #[tokio::test]
    async fn build_binds_port_zero_to_a_real_port_and_only_spawn_serves_it() {
        let dir = tempfile::tempdir().unwrap();
        let built = build(no_targets(dir.path(), "127.0.0.1:0")).await.unwrap();
        let admin = built.admin_addr().expect("the admin server is enabled");
        assert_ne!(admin.port(), 0, "{admin}");
        assert!(built.socket().exists(), "the socket is not bound");
        assert!(
            built.shared.runtime.tracker.is_empty(),
            "build spawned a task"
        );

        let serving = built.spawn();
        assert_eq!(status_line(admin, "/readyz").await, "HTTP/1.1 200 OK");
        serving.drain().await;
        assert!(!dir.path().join("t.sock").exists(), "the socket is left");
    }
}
