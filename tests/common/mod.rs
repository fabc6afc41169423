//! Shared fixture for tether's black-box integration tests.
//!
//! # Layout
//! - [`sshd`]: a real OpenSSH `sshd` on a free loopback port, with its own host key, client
//!   keys, a forced-command test shim (`shim.sh`) that logs every invocation, and fault controls
//!   (freeze, resume, kill, restart, drop sessions).
//! - [`keys`]: client and host key pairs from ssh-keygen, OpenSSH and PEM text.
//! - [`tether`]: writes a tether config pointing at an [`sshd::Sshd`], spawns the real binary,
//!   waits until it answers, captures its output, and runs the CLI.
//! - [`demo`]: a running `tether demo`.
//! - [`fake_tailscale`]: a russh server that announces itself as Tailscale SSH, lets any key
//!   in and runs commands in a shell, logging each one.
//! - [`http`]: a tiny blocking HTTP/1.1 client over a Unix socket or TCP.
//! - [`metrics`]: the Prometheus text exposition, parsed into samples (name, labels, value).
//! - [`ports`]: free ports, and ports where nothing listens.
//! - [`proxy`]: a loopback TCP proxy that adds latency, black-holes traffic or cuts connections.
//! - [`procs`]: signalling process trees through /proc (freeze, thaw, kill).
//! - [`shim_fixture`]: a laptop whose forced command is the real `tether shim`, with a verb
//!   program that logs every run.
//! - [`in_band`]: such a laptop whose verbs record what in-band data reached them, and a
//!   search of every place on it a secret could be left in.
//!
//! Every fixture owns its temp dir and port; there is no shared mutable state, so tests can run
//! in parallel threads. Waiting is always polling against a deadline ([`wait_until`]).
#![allow(dead_code)] // each test binary uses a different subset of these helpers

pub mod demo;
pub mod fake_tailscale;
pub mod http;
pub mod in_band;
pub mod keys;
pub mod metrics;
pub mod ports;
pub mod procs;
pub mod proxy;
pub mod shim_fixture;
pub mod sshd;
pub mod tether;

use std::time::{Duration, Instant};

/// Polls `cond` every 10 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
