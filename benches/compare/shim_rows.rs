//! The rows against `tether shim` (shim_laptop.rs) in one place, loopback or through the
//! proxy: for each shell, (g) tether on the shim session (its default), (h) tether with an
//! exec per call on warm channels, (i) an exec per call on a channel opened per call, (j) the
//! floor and (k) `ssh` via a ControlMaster, interleaved in rounds like the other modes; and
//! concurrent callers through (g) and (h).
//!
//! With a `tether shim` that has no session mode, (g) falls back to an exec per call, as
//! tether does for any such forced command, and measures what (h) does.

use std::path::{Path, PathBuf};

use crate::common::sshd::Sshd;
use crate::common::tether::Tether;
use crate::report::{Mode, Shell, ShimRow, ThroughputRow};
use crate::shim_laptop::ShimLaptop;
use crate::{
    ControlMaster, Route, Series, connect_floor, floor_caller, http_caller, sequential,
    spawn_tether, ssh_call, throughput,
};

/// (h): an exec per call, on the warm channels tether keeps by default.
const EXEC: &str = "[targets.laptop]\nshim_session = \"off\"\n";
/// (i): an exec per call on a channel opened for it.
const EXEC_COLD: &str = "[targets.laptop]\nshim_session = \"off\"\nwarm_channels = 0\n";

/// One place's callers, and what they call through, alive until it is dropped.
pub struct ShimPlace {
    series: Vec<Series>,
    /// The sockets of (g) and (h) on the quick shell, for the concurrent callers.
    concurrent: Vec<(Mode, PathBuf)>,
    _tethers: Vec<Tether>,
    _masters: Vec<ControlMaster>,
}

impl ShimPlace {
    /// Starts, for each shell, the three tethers, the floor's connection and a ControlMaster,
    /// all reaching `sshd` on `port` (its own or the proxy's, pinned in `known_hosts`); each
    /// tether has answered one call before the next starts.
    pub async fn start(
        sshd: &Sshd,
        laptop: &ShimLaptop,
        port: u16,
        known_hosts: &Path,
        name: &str,
        calls: usize,
    ) -> ShimPlace {
        let (mut series, mut concurrent, mut tethers, mut masters) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for shell in [Shell::Quick, Shell::Slow] {
            let route = Route {
                port,
                key: laptop.key(shell).clone(),
                known_hosts: known_hosts.to_path_buf(),
                control_path: sshd.dir().join(format!("cm-{name}-{shell:?}.sock")),
            };
            for (mode, extra) in [
                (Mode::G, None),
                (Mode::H, Some(EXEC)),
                (Mode::I, Some(EXEC_COLD)),
            ] {
                let tether = spawn_tether(sshd, &route, extra);
                let mut caller = http_caller(tether.socket_path()).await;
                if let Err(e) = caller.call().await {
                    panic!("{name}: the first call through ({mode:?}, {shell:?}) failed: {e}");
                }
                if shell == Shell::Quick && mode != Mode::I {
                    concurrent.push((mode, tether.socket_path().to_path_buf()));
                }
                series.push(Series::new(mode, caller, calls).on(shell));
                tethers.push(tether);
            }
            let floor = connect_floor(sshd, &route).await;
            series.push(Series::new(Mode::J, floor_caller(&floor), calls).on(shell));
            masters.push(tokio::task::block_in_place(|| {
                ControlMaster::start(sshd, &route)
            }));
            series.push(Series::new(Mode::K, ssh_call(sshd, &route, true), calls).on(shell));
        }
        ShimPlace {
            series,
            concurrent,
            _tethers: tethers,
            _masters: masters,
        }
    }

    /// Every series in `rounds` interleaved rounds; one row per mode and shell.
    pub async fn latency(
        &mut self,
        rounds: usize,
        errors: &mut Vec<(String, String)>,
        phase: &str,
    ) -> Vec<ShimRow> {
        sequential(&mut self.series, rounds, errors, phase).await;
        let mut rows: Vec<ShimRow> = self
            .series
            .iter()
            .map(|s| ShimRow {
                mode: s.mode,
                label: s.mode.label(),
                shell: s.shell.expect("a shim series has a shell"),
                latency: s.samples.summary(),
            })
            .collect();
        rows.sort_by_key(|r| (r.mode, r.shell));
        rows
    }

    /// `callers` concurrent callers for `seconds` through (g), then through (h).
    pub async fn concurrent(
        &self,
        callers: usize,
        seconds: f64,
        errors: &mut Vec<(String, String)>,
    ) -> Vec<ThroughputRow> {
        let mut rows = Vec::new();
        for (mode, socket) in &self.concurrent {
            rows.push(throughput(*mode, callers, seconds, || http_caller(socket), errors).await);
        }
        rows
    }
}
