//! The bench's results: the printed tables (Markdown, pasted into the README as they are),
//! the ratios and the goals with PASS/MISS, and the same as JSON.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::stats::Latency;

/// The ways to call that the bench compares: (a)–(f) against the test shim (`shim.sh`),
/// (g)–(k) against `tether shim` as the forced command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Mode {
    A,
    B,
    C,
    D,
    E,
    F,
    G,
    H,
    I,
    J,
    K,
}

impl Mode {
    pub fn label(self) -> &'static str {
        match self {
            Mode::A => "(a) fresh `ssh` per call",
            Mode::B => "(b) `ssh` via a ControlMaster",
            Mode::C => "(c) tether, HTTP on the socket (keep-alive)",
            Mode::D => "(d) `tether call` (process per call)",
            Mode::E => "(e) floor: russh exec on an open connection",
            Mode::F => "(f) tether as (c), `warm_channels = 0` (a channel opened per call)",
            Mode::G => "(g) tether, shim session (`shim_session = \"auto\"`, the default)",
            Mode::H => "(h) tether, exec per call on warm channels (`shim_session = \"off\"`)",
            Mode::I => "(i) tether as (h), `warm_channels = 0` too",
            Mode::J => "(j) floor: russh exec on an open connection",
            Mode::K => "(k) `ssh` via a ControlMaster",
        }
    }
}

/// How sshd starts `tether shim` for an exec: directly, or behind a login shell whose start-up
/// costs 30 ms (an rc that sleeps 0.03 s).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Shell {
    Quick,
    Slow,
}

/// A row against `tether shim`: a mode with one of the two shells.
#[derive(Debug, Serialize)]
pub struct ShimRow {
    pub mode: Mode,
    pub label: &'static str,
    pub shell: Shell,
    #[serde(flatten)]
    pub latency: Latency,
}

#[derive(Debug, Serialize)]
pub struct LatencyRow {
    pub mode: Mode,
    pub label: &'static str,
    #[serde(flatten)]
    pub latency: Latency,
}

#[derive(Debug, Serialize)]
pub struct ThroughputRow {
    pub mode: Mode,
    pub callers: usize,
    pub seconds: f64,
    pub ok: usize,
    pub errors: usize,
    pub calls_per_s: f64,
}

#[derive(Debug, Serialize)]
pub struct HealthUnderLoad {
    pub reads: Latency,
    /// The control: a bare Unix-socket echo round trip, read in turn with the health reads.
    pub echo: Latency,
    pub callers: usize,
    pub turns_ok: usize,
    pub turn_errors: usize,
}

#[derive(Debug, Serialize)]
pub struct Resources {
    /// VmRSS after start-up and warm-up calls, before any load.
    pub rss_idle_kib: u64,
    /// Highest VmRSS sampled while 64 callers ran.
    pub rss_64_callers_kib: u64,
    /// VmHWM at the end of the 64-caller phases.
    pub rss_peak_kib: u64,
    /// tether's utime+stime per 1,000 calls during the sequential (c) runs.
    pub cpu_ms_per_1000_sequential: f64,
    /// The same during the 64-caller (c) throughput run.
    pub cpu_ms_per_1000_64_callers: f64,
}

#[derive(Debug, Serialize)]
pub struct Goal {
    pub goal: &'static str,
    pub wanted: String,
    pub measured: String,
    pub pass: bool,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub conditions: serde_json::Value,
    pub latency: Vec<LatencyRow>,
    /// A streamed line's age when the app has read it: (c) through tether, (e) the floor.
    pub streamed: Vec<LatencyRow>,
    pub throughput: Vec<ThroughputRow>,
    /// Through the delay proxy: `one_way_ms` each way, as configured.
    pub one_way_ms: f64,
    /// What the proxy really added per chunk, on average.
    pub proxy_added_ms: f64,
    pub latency_proxy: Vec<LatencyRow>,
    /// (g)–(k) against `tether shim`, with both shells: on loopback, and through the proxy.
    pub shim_latency: Vec<ShimRow>,
    pub shim_latency_proxy: Vec<ShimRow>,
    /// 64 callers through (g) the shim session and (h) exec per call, on loopback.
    pub shim_throughput: Vec<ThroughputRow>,
    pub health_under_load: HealthUnderLoad,
    pub resources: Resources,
    pub ratios: serde_json::Value,
    pub goals: Vec<Goal>,
    /// The first failure message per phase that had any.
    pub first_errors: Vec<(String, String)>,
}

fn latency(rows: &[LatencyRow], mode: Mode) -> Option<&Latency> {
    rows.iter().find(|r| r.mode == mode).map(|r| &r.latency)
}

fn p50(rows: &[LatencyRow], mode: Mode) -> f64 {
    latency(rows, mode).map_or(f64::NAN, |l| l.p50_ms)
}

fn p99(rows: &[LatencyRow], mode: Mode) -> f64 {
    latency(rows, mode).map_or(f64::NAN, |l| l.p99_ms)
}

fn shim_p50(rows: &[ShimRow], mode: Mode, shell: Shell) -> f64 {
    rows.iter()
        .find(|r| r.mode == mode && r.shell == shell)
        .map_or(f64::NAN, |r| r.latency.p50_ms)
}

/// What the slow login shell adds to each mode's p50, by mode letter.
fn slow_shell_adds(rows: &[ShimRow]) -> serde_json::Value {
    let mut modes: Vec<Mode> = rows.iter().map(|r| r.mode).collect();
    modes.dedup();
    modes
        .into_iter()
        .map(|m| {
            let added = shim_p50(rows, m, Shell::Slow) - shim_p50(rows, m, Shell::Quick);
            (format!("{m:?}"), serde_json::json!(added))
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn rate(rows: &[ThroughputRow], mode: Mode, callers: usize) -> Option<&ThroughputRow> {
    rows.iter().find(|r| r.mode == mode && r.callers == callers)
}

impl Report {
    /// Fills in the ratios and the goals from the measured figures.
    pub fn judge(&mut self) {
        let (a, b, c, e) = (
            p50(&self.latency, Mode::A),
            p50(&self.latency, Mode::B),
            p50(&self.latency, Mode::C),
            p50(&self.latency, Mode::E),
        );
        let (tb, tc) = (
            rate(&self.throughput, Mode::B, 64),
            rate(&self.throughput, Mode::C, 64),
        );
        let (tb_rate, tc_rate) = (
            tb.map_or(f64::NAN, |r| r.calls_per_s),
            tc.map_or(f64::NAN, |r| r.calls_per_s),
        );
        let tc_errors = tc.map_or(usize::MAX, |r| r.errors);
        let pc = p50(&self.latency_proxy, Mode::C);
        let rtt = 2.0 * self.one_way_ms;
        let proxy_bound = 2.0 * rtt + e + 2.0;
        let (sc, se) = (p50(&self.streamed, Mode::C), p50(&self.streamed, Mode::E));
        let health_p99 = self.health_under_load.reads.p99_ms;
        let idle_mib = self.resources.rss_idle_kib as f64 / 1024.0;
        let (g, j) = (
            shim_p50(&self.shim_latency, Mode::G, Shell::Quick),
            shim_p50(&self.shim_latency, Mode::J, Shell::Quick),
        );
        let g_slow_added = shim_p50(&self.shim_latency, Mode::G, Shell::Slow) - g;
        let (pg, pk) = (
            shim_p50(&self.shim_latency_proxy, Mode::G, Shell::Quick),
            shim_p50(&self.shim_latency_proxy, Mode::K, Shell::Quick),
        );
        let session_64_errors =
            rate(&self.shim_throughput, Mode::G, 64).map_or(usize::MAX, |r| r.errors);
        self.ratios = serde_json::json!({
            "c_over_b_p50": c / b,
            "c_over_a_p50": c / a,
            "a_over_c_p50": a / c,
            "c_over_e_p50": c / e,
            "c_over_b_throughput_64": tc_rate / tb_rate,
            "streamed_c_minus_e_p50_ms": sc - se,
            "streamed_c_minus_e_p99_ms": p99(&self.streamed, Mode::C) - p99(&self.streamed, Mode::E),
            "shim_g_over_j_p50": g / j,
            "shim_proxy_g_over_k_p50": pg / pk,
            "shim_slow_shell_adds_p50_ms": slow_shell_adds(&self.shim_latency),
            "shim_proxy_slow_shell_adds_p50_ms": slow_shell_adds(&self.shim_latency_proxy),
        });
        self.goals = vec![
            Goal {
                goal: "(c) p50 <= 0.5 x (b) p50",
                wanted: format!("<= {:.2} ms", 0.5 * b),
                measured: format!("{c:.2} ms (c/b = {:.2})", c / b),
                pass: c <= 0.5 * b,
            },
            Goal {
                goal: "(c) >= 20x faster than (a) at p50",
                wanted: ">= 20x".into(),
                measured: format!("{:.1}x", a / c),
                pass: a / c >= 20.0,
            },
            Goal {
                goal: "(c) p50 within 1.25 x the floor (e)",
                wanted: format!("<= {:.2} ms", 1.25 * e),
                measured: format!("{c:.2} ms (c/e = {:.2})", c / e),
                pass: c <= 1.25 * e,
            },
            Goal {
                goal: "streamed line: (c) p50 - floor (e) p50 < 1 ms",
                wanted: "< 1 ms".into(),
                measured: format!("{:.3} ms ({sc:.3} - {se:.3})", sc - se),
                pass: sc - se < 1.0,
            },
            Goal {
                goal: "64 callers: (c) throughput >= 2 x (b)",
                wanted: format!(">= {:.0} calls/s", 2.0 * tb_rate),
                measured: format!("{tc_rate:.0} calls/s ({:.2}x)", tc_rate / tb_rate),
                pass: tc_rate >= 2.0 * tb_rate,
            },
            Goal {
                goal: "64 callers: (c) zero errors",
                wanted: "0".into(),
                measured: tc_errors.to_string(),
                pass: tc_errors == 0,
            },
            Goal {
                goal: "10 ms each way: (c) p50 <= 2 RTT + floor (e) + 2 ms",
                wanted: format!("<= {proxy_bound:.2} ms"),
                measured: format!("{pc:.2} ms"),
                pass: pc <= proxy_bound,
            },
            Goal {
                goal: "10 ms each way: (g) shim session p50 < 2 RTT",
                wanted: format!("< {:.0} ms", 2.0 * rtt),
                measured: format!("{pg:.2} ms"),
                pass: pg < 2.0 * rtt,
            },
            Goal {
                goal: "10 ms each way: (g) p50 <= 0.55 x (k) ControlMaster to tether shim",
                wanted: format!("<= {:.2} ms", 0.55 * pk),
                measured: format!("{pg:.2} ms (g/k = {:.2})", pg / pk),
                pass: pg <= 0.55 * pk,
            },
            Goal {
                goal: "loopback: (g) p50 <= 0.5 x the exec floor to tether shim (j)",
                wanted: format!("<= {:.2} ms", 0.5 * j),
                measured: format!("{g:.2} ms (g/j = {:.2})", g / j),
                pass: g <= 0.5 * j,
            },
            Goal {
                goal: "slow login shell: (g) p50 unchanged within 1 ms (loopback)",
                wanted: "within 1 ms".into(),
                measured: format!("{g_slow_added:+.3} ms"),
                pass: g_slow_added.abs() <= 1.0,
            },
            Goal {
                goal: "64 callers through the shim session (g): zero errors",
                wanted: "0".into(),
                measured: session_64_errors.to_string(),
                pass: session_64_errors == 0,
            },
            Goal {
                goal: "cached /v1/health p99 < 1 ms under load",
                wanted: "< 1 ms".into(),
                measured: format!("{health_p99:.3} ms"),
                pass: health_p99 < 1.0,
            },
            Goal {
                goal: "idle RSS < 20 MiB",
                wanted: "< 20 MiB".into(),
                measured: format!("{idle_mib:.1} MiB"),
                pass: idle_mib < 20.0,
            },
        ];
    }

    /// Markdown tables, as pasted into the README.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let c = &self.conditions;
        let _ = writeln!(
            s,
            "Run {} on {} ({} cores, {} GiB RAM, load average {} at start), OpenSSH {}, \
             verb `{}` through the test shim.\n",
            c["date"].as_str().unwrap_or("?"),
            c["kernel"].as_str().unwrap_or("?"),
            c["cores"],
            c["memory_gib"],
            c["loadavg_start"].as_str().unwrap_or("?"),
            c["openssh"].as_str().unwrap_or("?"),
            c["verb"].as_str().unwrap_or("?"),
        );
        let _ = writeln!(s, "Sequential latency, one caller:\n");
        latency_table(&mut s, &self.latency, "calls");
        let r = &self.ratios;
        let _ = writeln!(
            s,
            "\nRatios at p50: c/b = {:.2}, c/a = {:.3} ((a) is {:.1}x slower), c/e = {:.2}.\n",
            r["c_over_b_p50"].as_f64().unwrap_or(f64::NAN),
            r["c_over_a_p50"].as_f64().unwrap_or(f64::NAN),
            r["a_over_c_p50"].as_f64().unwrap_or(f64::NAN),
            r["c_over_e_p50"].as_f64().unwrap_or(f64::NAN),
        );
        let _ = writeln!(
            s,
            "Streamed output, one caller: a line's age from the remote writing it (`date +%s.%N` \
             in the shim's `drip {} {}`) to the app having read it:\n",
            c["stream_lines_per_run"],
            c["stream_interval_s"].as_str().unwrap_or("?"),
        );
        latency_table(&mut s, &self.streamed, "lines");
        let _ = writeln!(
            s,
            "\nDifference (c) - (e): {:.3} ms at p50, {:.3} ms at p99.\n",
            r["streamed_c_minus_e_p50_ms"].as_f64().unwrap_or(f64::NAN),
            r["streamed_c_minus_e_p99_ms"].as_f64().unwrap_or(f64::NAN),
        );
        let _ = writeln!(
            s,
            "Throughput, concurrent callers each calling in a loop:\n"
        );
        let _ = writeln!(
            s,
            "| callers | (b) calls/s | (b) errors | (c) calls/s | (c) errors | c/b |\n|---:|---:|---:|---:|---:|---:|"
        );
        let mut levels: Vec<usize> = self.throughput.iter().map(|t| t.callers).collect();
        levels.dedup();
        for n in levels {
            let (b, c) = (
                rate(&self.throughput, Mode::B, n),
                rate(&self.throughput, Mode::C, n),
            );
            let cell = |t: Option<&ThroughputRow>| {
                t.map_or(("-".to_string(), "-".to_string()), |t| {
                    (format!("{:.0}", t.calls_per_s), t.errors.to_string())
                })
            };
            let ((br, be), (cr, ce)) = (cell(b), cell(c));
            let ratio = match (b, c) {
                (Some(b), Some(c)) => format!("{:.2}", c.calls_per_s / b.calls_per_s),
                _ => "-".into(),
            };
            let _ = writeln!(s, "| {n} | {br} | {be} | {cr} | {ce} | {ratio} |");
        }
        let _ = writeln!(
            s,
            "\nThrough a loopback proxy adding {} ms each way (RTT {} ms; measured {:.2} ms \
             added per chunk on average):\n",
            self.one_way_ms,
            2.0 * self.one_way_ms,
            self.proxy_added_ms
        );
        latency_table(&mut s, &self.latency_proxy, "calls");
        self.render_shim(&mut s);
        let h = &self.health_under_load;
        let _ = writeln!(
            s,
            "\nCached `GET /v1/health` on a kept-alive connection while {} callers ran turns: \
             p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms over {} reads ({} errors); {} turns ok, \
             {} failed meanwhile. The control, a 1-byte echo over a Unix socket served by a \
             plain thread, read in turn under the same load: p50 {:.3} ms, p99 {:.3} ms, max \
             {:.3} ms.\n",
            h.callers,
            h.reads.p50_ms,
            h.reads.p99_ms,
            h.reads.max_ms,
            h.reads.calls,
            h.reads.errors,
            h.turns_ok,
            h.turn_errors,
            h.echo.p50_ms,
            h.echo.p99_ms,
            h.echo.max_ms
        );
        let m = &self.resources;
        let _ = writeln!(
            s,
            "tether's memory: RSS {:.1} MiB idle (warm, before load), {:.1} MiB at 64 callers \
             (peak VmHWM {:.1} MiB). CPU (utime+stime): {:.0} ms per 1,000 sequential calls, \
             {:.0} ms per 1,000 calls at 64 callers.\n",
            m.rss_idle_kib as f64 / 1024.0,
            m.rss_64_callers_kib as f64 / 1024.0,
            m.rss_peak_kib as f64 / 1024.0,
            m.cpu_ms_per_1000_sequential,
            m.cpu_ms_per_1000_64_callers
        );
        let _ = writeln!(
            s,
            "Goals:\n\n| goal | wanted | measured | |\n|---|---|---|---|"
        );
        for g in &self.goals {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                g.goal,
                g.wanted,
                g.measured,
                if g.pass { "PASS" } else { "MISS" }
            );
        }
        if !self.first_errors.is_empty() {
            let _ = writeln!(s, "\nFirst error per phase:");
            for (phase, e) in &self.first_errors {
                let _ = writeln!(s, "- {phase}: {}", e.lines().next().unwrap_or(""));
            }
        }
        s
    }

    /// The section against `tether shim`: both places, the two shells side by side, and the
    /// 64 callers.
    fn render_shim(&self, s: &mut String) {
        let c = &self.conditions;
        let _ = writeln!(
            s,
            "\nAgainst `tether shim` as the forced command (verb `{}` as `{}`), sshd starting it \
             directly (quick) or through a login shell that costs {} ms to start (slow: `{}`), \
             loopback:\n",
            c["verb"].as_str().unwrap_or("?"),
            c["shim_verb_exec"].as_str().unwrap_or("?"),
            c["slow_shell_ms"],
            c["slow_shell_command"].as_str().unwrap_or("?"),
        );
        shim_table(s, &self.shim_latency);
        let _ = writeln!(
            s,
            "\nThe same through the proxy adding {} ms each way:\n",
            self.one_way_ms
        );
        shim_table(s, &self.shim_latency_proxy);
        let _ = writeln!(
            s,
            "\nConcurrent callers against `tether shim` (quick shell), each calling in a loop:\n\n\
             | | callers | calls/s | ok | errors |\n|---|---:|---:|---:|---:|"
        );
        for t in &self.shim_throughput {
            let _ = writeln!(
                s,
                "| {} | {} | {:.0} | {} | {} |",
                t.mode.label(),
                t.callers,
                t.calls_per_s,
                t.ok,
                t.errors
            );
        }
        let _ = writeln!(s);
    }

    pub fn write_json(&self, path: &Path) {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create target/bench");
        }
        let text = serde_json::to_string_pretty(self).expect("serialize report");
        std::fs::write(path, text + "\n").expect("write compare.json");
    }
}

/// One row per mode; `counted` names what the count column counts (calls, lines).
fn latency_table(s: &mut String, rows: &[LatencyRow], counted: &str) {
    let _ = writeln!(
        s,
        "| | p50 ms | p99 ms | mean ms | {counted} | errors |\n|---|---:|---:|---:|---:|---:|"
    );
    for r in rows {
        let l = &r.latency;
        let _ = writeln!(
            s,
            "| {} | {:.2} | {:.2} | {:.2} | {} | {} |",
            r.label, l.p50_ms, l.p99_ms, l.mean_ms, l.calls, l.errors
        );
    }
}

/// One line per mode, the quick shell and the slow one side by side, and what the slow one adds.
fn shim_table(s: &mut String, rows: &[ShimRow]) {
    let _ = writeln!(
        s,
        "| | p50 ms | p99 ms | slow shell p50 ms | slow shell p99 ms | slow - quick p50 ms | \
         calls | errors |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    let mut modes: Vec<Mode> = rows.iter().map(|r| r.mode).collect();
    modes.dedup();
    for mode in modes {
        let of = |shell| rows.iter().find(|r| r.mode == mode && r.shell == shell);
        let (Some(quick), Some(slow)) = (of(Shell::Quick), of(Shell::Slow)) else {
            continue;
        };
        let (q, w) = (&quick.latency, &slow.latency);
        let _ = writeln!(
            s,
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:+.2} | {} + {} | {} + {} |",
            mode.label(),
            q.p50_ms,
            q.p99_ms,
            w.p50_ms,
            w.p99_ms,
            w.p50_ms - q.p50_ms,
            q.calls,
            w.calls,
            q.errors,
            w.errors
        );
    }
}
