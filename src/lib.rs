//! tether: a sidecar that keeps warm, multiplexed SSH connections to a remote machine and
//! runs allowlisted verbs there for a local app, over a Unix-socket RPC.
//!
//! docs/architecture.md maps the rooms below and walks a call and a shim turn through them.
//!
//! # Layout
//! - [`config`]: sources (file, env, legacy env), typed defaults, validation, secrets.
//! - [`error`]: the one error enum with the codes of docs/rpc.md, HTTP statuses and retry hints.
//! - [`wire`]: the tether ↔ shim wire (command line, frames, in-band data), one codec for both.
//! - [`exit`]: the process exit statuses of tether and its shim.
//! - [`transport`]: the seam between the call path and what carries a request: request,
//!   output, exit, sink, and the `Transport` trait.
//! - [`ssh`]: keys, pinned host keys, connections, the slot pool, exec on a channel with
//!   in-band data for a shim that takes it: the transport targets run on.
//! - [`target`]: one target at run time: the call path (fail fast, queue, run, re-send).
//! - [`call`]: a call as a task of its own: buffered and streamed answers, the verb cache,
//!   the calls in flight and their cancel.
//! - [`trace`]: W3C trace context: the caller's traceparent, or a fresh one.
//! - [`utf8`]: output bytes to text, piece by piece, never splitting a character.
//! - [`health`] and [`probe`]: the cached probe results, the policy that judges them, and
//!   the loop that feeds them.
//! - [`metrics`]: every metric of docs/metrics.md on tether's own registry.
//! - [`http`], [`rpc`], [`admin`], [`status_page`]: the Unix-socket RPC and the admin port.
//! - [`runtime`]: the run-time state: task trackers, the drain's hard stop, the output budget.
//! - [`sidecar`]: what the servers share, and the drain flag.
//! - [`serve`]: startup and shutdown: build (every bind), spawn (servers, probes), drain.
//! - [`shutdown`]: signals; [`cli`]: the `call`, `check`, `calls` and `cancel` commands
//!   (main.rs has `serve` and `config`).
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
pub mod runtime;
pub mod serve;
pub mod shim;
pub mod shutdown;
pub mod sidecar;
pub mod ssh;
pub mod status_page;
pub mod target;
pub mod trace;
pub mod transport;
pub mod utf8;
pub mod wire;

use std::future::Future;

use config::Loaded;
use serve::StartError;

/// Runs tether until `shutdown` resolves, then drains: new calls get `shutting_down`, calls
/// in flight get up to `shutdown_grace`, connections close politely, the socket is removed.
pub async fn run(loaded: Loaded, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
    let serving = serve::build(loaded).await?.spawn();
    shutdown.await;
    serving.drain().await;
    Ok(())
}
