//! `make bench`: tether against `ssh` per call and an OpenSSH ControlMaster, against the same
//! OpenSSH sshd, in one run: (a)–(f) with the test shim (`shim.sh`) as the forced command,
//! (g)–(k) with the real `tether shim` (shim_laptop.rs, shim_rows.rs).
//!
//! Phases: sequential latency of (a)–(f), interleaved in rounds so that load from elsewhere
//! on the machine hits every mode alike; (g)–(k) against `tether shim`, each with sshd
//! starting it directly and through a login shell that costs 30 ms, all ten interleaved,
//! then 64 callers through (g) the shim session and (h) an exec per call; a streamed line's
//! age on arrival, (c) against (e), interleaved too (stream.rs); throughput of (b) and (c)
//! with 1, 8 and 64 callers; cached `/v1/health` reads while 64 callers run turns (tether's
//! RSS and CPU are read from /proc meanwhile); then (a), (b), (c), (e) and (f) again through
//! a proxy adding 10 ms each way, and (g)–(k) with both shells through it. (c) runs on warm
//! channels (the default `warm_channels`), (f) on a tether without them.
//! Prints Markdown tables and writes target/bench/compare.json.
//!
//! Knobs (environment): BENCH_CALLS (500: sequential calls for (b)–(e)), BENCH_SSH_CALLS
//! (100: for (a), ~0.3 s each), BENCH_PROXY_CALLS (200), BENCH_PROXY_SSH_CALLS (20),
//! BENCH_SECONDS (5: per throughput run), BENCH_HEALTH_READS (10000), BENCH_ROUNDS (5),
//! BENCH_STREAM_LINES (400: streamed lines read by (c) and by (e), in runs of 50),
//! BENCH_SHIM_CALLS (200: per mode and shell for (g)–(k) on loopback),
//! BENCH_PROXY_SHIM_CALLS (100: the same through the proxy). The defaults take about
//! 6 minutes on 2 cores.

#[path = "../../tests/common/mod.rs"]
mod common;

mod callers;
mod procstat;
mod proxy;
mod report;
mod shim_laptop;
mod shim_rows;
mod stats;
mod stream;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use tokio::task::block_in_place;

use callers::{Caller, Floor, HttpClient};
use common::keys::ClientKey;
use common::sshd::Sshd;
use common::tether::{BIN, Tether, TetherConfig};
use proxy::DelayProxy;
use report::{HealthUnderLoad, LatencyRow, Mode, Report, Resources, Shell, ThroughputRow};
use shim_laptop::ShimLaptop;
use shim_rows::ShimPlace;
use stats::Samples;

/// The verb every mode runs: not cached by tether (health is, for 2 s).
const VERB: [&str; 2] = ["reset", "s1"];
const EXPECT: &str = "reset s1\n";
const ONE_WAY: Duration = Duration::from_millis(10);
const LEVELS: [usize; 3] = [1, 8, 64];
const LOAD_CALLERS: usize = 64;
const WARMUP: usize = 20;
/// The config of mode (f): a tether without warm channels.
const COLD: &str = "[targets.laptop]\nwarm_channels = 0\n";

struct Settings {
    calls: usize,
    ssh_calls: usize,
    proxy_calls: usize,
    proxy_ssh_calls: usize,
    seconds: f64,
    health_reads: usize,
    rounds: usize,
    stream_lines: usize,
    shim_calls: usize,
    proxy_shim_calls: usize,
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

impl Settings {
    fn from_env() -> Settings {
        Settings {
            calls: env_num("BENCH_CALLS", 500),
            ssh_calls: env_num("BENCH_SSH_CALLS", 100),
            proxy_calls: env_num("BENCH_PROXY_CALLS", 200),
            proxy_ssh_calls: env_num("BENCH_PROXY_SSH_CALLS", 20),
            seconds: env_num("BENCH_SECONDS", 5.0),
            health_reads: env_num("BENCH_HEALTH_READS", 10_000),
            rounds: env_num::<usize>("BENCH_ROUNDS", 5).max(1),
            stream_lines: env_num("BENCH_STREAM_LINES", 400),
            shim_calls: env_num("BENCH_SHIM_CALLS", 200),
            proxy_shim_calls: env_num("BENCH_PROXY_SHIM_CALLS", 100),
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a `cargo test --benches` run passes nothing of ours
    // either: only run when asked to benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        println!("compare: skipped (run `make bench` or `cargo bench --bench compare`)");
        return;
    }
    let settings = Settings::from_env();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let started = Instant::now();
    let mut report = runtime.block_on(run(&settings));
    report.judge();
    let text = report.render();
    println!("\n{text}");
    let out = target_dir().join("bench/compare.json");
    report.write_json(&out);
    println!(
        "Wrote {} ({:.0} s in all).",
        out.display(),
        started.elapsed().as_secs_f64()
    );
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// Everything one way of reaching the sshd needs: its port, the client key (which picks the
/// forced command) and the ssh client's files.
struct Route {
    port: u16,
    key: ClientKey,
    known_hosts: PathBuf,
    control_path: PathBuf,
}

/// An OpenSSH ControlMaster (`ssh -M -N`), stopped when dropped.
struct ControlMaster {
    child: Child,
}

impl ControlMaster {
    fn start(sshd: &Sshd, route: &Route) -> ControlMaster {
        let mut argv = ssh_argv(route, &["-M", "-N", "-oControlPersist=no"]);
        argv.push(format!("{}@127.0.0.1", sshd.user()));
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .spawn()
            .expect("start the ControlMaster");
        let mut check = ssh_argv(route, &["-Ocheck"]);
        check.push(format!("{}@127.0.0.1", sshd.user()));
        let up = common::wait_until(Duration::from_secs(10), || {
            Command::new(&check[0])
                .args(&check[1..])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        assert!(up, "the ControlMaster did not come up");
        ControlMaster { child }
    }
}

impl Drop for ControlMaster {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ssh` with the route's key and pinned host key, no user config, `extra` options,
/// ControlPath set (used only when a master is asked for or up).
fn ssh_argv(route: &Route, extra: &[&str]) -> Vec<String> {
    let mut argv: Vec<String> = vec!["ssh".into()];
    argv.extend(extra.iter().map(|s| s.to_string()));
    argv.extend([
        "-F".into(),
        "/dev/null".into(),
        "-i".into(),
        route.key.path.display().to_string(),
        "-p".into(),
        route.port.to_string(),
        format!("-oUserKnownHostsFile={}", route.known_hosts.display()),
        "-oStrictHostKeyChecking=yes".into(),
        "-oBatchMode=yes".into(),
        "-oIdentitiesOnly=yes".into(),
        "-oIdentityAgent=none".into(),
        "-oLogLevel=ERROR".into(),
        format!("-oControlPath={}", route.control_path.display()),
    ]);
    argv
}

fn ssh_call(sshd: &Sshd, route: &Route, mux: bool) -> Caller {
    let extra: &[&str] = if mux {
        &["-oControlMaster=no"]
    } else {
        &["-oControlMaster=no", "-oControlPath=none"]
    };
    let mut argv = ssh_argv(route, extra);
    argv.push(format!("{}@127.0.0.1", sshd.user()));
    argv.extend(VERB.iter().map(|s| s.to_string()));
    Caller::Process {
        argv: Arc::new(argv),
        expect: EXPECT.into(),
    }
}

fn call_body() -> Bytes {
    Bytes::from(serde_json::json!({"verb": VERB[0], "args": [VERB[1]]}).to_string())
}

async fn http_caller(socket: &Path) -> Caller {
    Caller::Http {
        client: HttpClient::connect(socket).await,
        body: call_body(),
        expect: EXPECT.into(),
    }
}

fn cli_caller(tether: &Tether) -> Caller {
    let mut argv = vec![
        BIN.to_string(),
        "call".into(),
        "--socket".into(),
        tether.socket_path().display().to_string(),
    ];
    argv.extend(VERB.iter().map(|s| s.to_string()));
    Caller::Process {
        argv: Arc::new(argv),
        expect: EXPECT.into(),
    }
}

fn floor_caller(floor: &Arc<Floor>) -> Caller {
    Caller::Floor {
        conn: floor.clone(),
        line: VERB.join(" ").into(),
        expect: EXPECT.into(),
    }
}

/// A tether for `sshd` along `route` (its port, the sshd's own or the proxy's, and its key),
/// with `extra` (TOML: verbs, target settings) over tether's defaults; waits until its
/// socket answers.
fn spawn_tether(sshd: &Sshd, route: &Route, extra: Option<&str>) -> Tether {
    block_in_place(|| {
        TetherConfig::for_sshd(sshd)
            .via(route.port, sshd)
            .key(&route.key.private_key)
            .merge(extra.unwrap_or_default())
            .spawn()
    })
}

/// The floor's connection along `route`.
async fn connect_floor(sshd: &Sshd, route: &Route) -> Arc<Floor> {
    Arc::new(Floor::connect(route.port, sshd.user(), &route.key.private_key).await)
}

/// A known_hosts file pinning the sshd's key on `port`.
fn known_hosts_for(sshd: &Sshd, port: u16, name: &str) -> PathBuf {
    let pin = sshd.known_hosts_line();
    let key_part = pin.split_once(' ').expect("known_hosts line").1;
    let path = sshd.dir().join(name);
    std::fs::write(&path, format!("[127.0.0.1]:{port} {key_part}\n")).expect("known_hosts");
    path
}

/// One mode in the interleaved sequential runs.
struct Series {
    mode: Mode,
    /// Which shell starts the forced command, for the rows against `tether shim`.
    shell: Option<Shell>,
    caller: Caller,
    count: usize,
    samples: Samples,
    /// tether's pid, to charge its CPU time to this mode's calls.
    cpu_of: Option<u32>,
    cpu: Duration,
}

impl Series {
    fn new(mode: Mode, caller: Caller, count: usize) -> Series {
        Series {
            mode,
            shell: None,
            caller,
            count,
            samples: Samples::default(),
            cpu_of: None,
            cpu: Duration::ZERO,
        }
    }

    /// The same against a forced command that `shell` starts.
    fn on(mut self, shell: Shell) -> Series {
        self.shell = Some(shell);
        self
    }

    /// Its name in progress lines and error phases: the mode, and the shell if any.
    fn name(&self) -> String {
        match self.shell {
            Some(shell) => format!("{:?}/{shell:?}", self.mode),
            None => format!("{:?}", self.mode),
        }
    }
}

/// Runs every series in `rounds` rounds, in turn, after `WARMUP` unrecorded calls each.
async fn sequential(
    series: &mut [Series],
    rounds: usize,
    errors: &mut Vec<(String, String)>,
    phase: &str,
) {
    for s in series.iter_mut() {
        let warm = if s.mode == Mode::A { 3 } else { WARMUP };
        for _ in 0..warm {
            if let Err(e) = s.caller.call().await {
                panic!("{phase}: warm-up call for {} failed: {e}", s.name());
            }
        }
    }
    for round in 0..rounds {
        for s in series.iter_mut() {
            let n = s.count / rounds + usize::from(round < s.count % rounds);
            let cpu_before = s.cpu_of.map(procstat::cpu_time);
            for _ in 0..n {
                let start = Instant::now();
                let result = s.caller.call().await;
                let took = start.elapsed();
                if let Err(e) = &result
                    && s.samples.errors == 0
                {
                    errors.push((format!("{phase} {}", s.name()), e.clone()));
                }
                s.samples.record(took, result);
            }
            if let (Some(pid), Some(before)) = (s.cpu_of, cpu_before) {
                s.cpu += procstat::cpu_time(pid).saturating_sub(before);
            }
        }
        eprintln!(
            "{phase}: round {}/{rounds}: {}",
            round + 1,
            series
                .iter()
                .map(|s| format!("{} p50 {:.2} ms", s.name(), s.samples.summary().p50_ms))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}

fn rows(series: &[Series]) -> Vec<LatencyRow> {
    let mut rows: Vec<LatencyRow> = series
        .iter()
        .map(|s| LatencyRow {
            mode: s.mode,
            label: s.mode.label(),
            latency: s.samples.summary(),
        })
        .collect();
    rows.sort_by_key(|r| r.mode);
    rows
}

/// `callers` tasks, each with its own caller from `make`, calling in a loop for `seconds`.
async fn throughput<F, Fut>(
    mode: Mode,
    callers: usize,
    seconds: f64,
    make: F,
    errors: &mut Vec<(String, String)>,
) -> ThroughputRow
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Caller>,
{
    let mut all = Vec::with_capacity(callers);
    for _ in 0..callers {
        all.push(make().await);
    }
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = all
        .into_iter()
        .map(|mut caller| {
            tokio::spawn(async move { caller.call_while(|| Instant::now() < deadline).await })
        })
        .collect();
    let (mut ok, mut failed, mut first) = (0, 0, None);
    for t in tasks {
        let (o, f, e) = t.await.expect("caller task");
        ok += o;
        failed += f;
        first = first.or(e);
    }
    let elapsed = start.elapsed().as_secs_f64();
    if let Some(e) = first {
        errors.push((format!("throughput {mode:?} x{callers}"), e));
    }
    let row = ThroughputRow {
        mode,
        callers,
        seconds: elapsed,
        ok,
        errors: failed,
        calls_per_s: ok as f64 / elapsed,
    };
    eprintln!(
        "throughput {mode:?} x{callers}: {:.0} calls/s, {failed} errors",
        row.calls_per_s
    );
    row
}

async fn run(settings: &Settings) -> Report {
    let date = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let loadavg = || {
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    };
    let loadavg_start = loadavg();
    let sshd = block_in_place(Sshd::start);
    let laptop = block_in_place(|| ShimLaptop::install(&sshd));
    let direct = Route {
        port: sshd.port(),
        key: sshd.ed25519_key().clone(),
        known_hosts: sshd.known_hosts_file(),
        control_path: sshd.dir().join("cm-direct.sock"),
    };
    let tether = spawn_tether(&sshd, &direct, None);
    let cold_tether = spawn_tether(&sshd, &direct, Some(COLD));
    let pid = tether.pid();
    eprintln!(
        "sshd on 127.0.0.1:{}, tether {BIN} (pid {pid}), socket {}",
        sshd.port(),
        tether.socket_path().display()
    );
    if !BIN.contains("/release/") {
        eprintln!("warning: {BIN} is not a release build");
    }
    let master = block_in_place(|| ControlMaster::start(&sshd, &direct));
    let floor = connect_floor(&sshd, &direct).await;
    let mut errors = Vec::new();

    // 1. Sequential latency.
    let mut c = Series::new(
        Mode::C,
        http_caller(tether.socket_path()).await,
        settings.calls,
    );
    c.cpu_of = Some(pid);
    let mut series = vec![
        Series::new(Mode::E, floor_caller(&floor), settings.calls),
        c,
        Series::new(Mode::D, cli_caller(&tether), settings.calls),
        Series::new(Mode::B, ssh_call(&sshd, &direct, true), settings.calls),
        Series::new(Mode::A, ssh_call(&sshd, &direct, false), settings.ssh_calls),
        Series::new(
            Mode::F,
            http_caller(cold_tether.socket_path()).await,
            settings.calls,
        ),
    ];
    // Idle: started, connected, warmed by a few calls, nothing running.
    let mut warm = http_caller(tether.socket_path()).await;
    for _ in 0..WARMUP {
        warm.call().await.expect("warm-up call through tether");
    }
    drop(warm);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss_idle_kib, _) = procstat::memory_kib(pid);
    sequential(&mut series, settings.rounds, &mut errors, "latency").await;
    let c_series = series.iter().find(|s| s.mode == Mode::C).expect("c");
    let cpu_seq = c_series.cpu.as_secs_f64() * 1e3 * 1000.0 / c_series.samples.len().max(1) as f64;
    let latency = rows(&series);
    drop(series);
    drop(cold_tether);

    // 1b. Against `tether shim`, both shells; then 64 callers through its session.
    let (shim_latency, shim_throughput) = {
        let mut place = ShimPlace::start(
            &sshd,
            &laptop,
            sshd.port(),
            &direct.known_hosts,
            "direct",
            settings.shim_calls,
        )
        .await;
        let rows = place.latency(settings.rounds, &mut errors, "shim").await;
        let rates = place
            .concurrent(LOAD_CALLERS, settings.seconds, &mut errors)
            .await;
        (rows, rates)
    };

    // 2. Streamed output, through a second tether that also allows the shim's `drip`.
    let streamed = {
        let drip_tether = spawn_tether(&sshd, &direct, Some(stream::VERBS));
        let mut client = HttpClient::connect(drip_tether.socket_path()).await;
        stream::measure(&mut client, &floor, settings.stream_lines, &mut errors).await
    };

    // 3. Throughput.
    let mut rates = Vec::new();
    let mut cpu_64 = f64::NAN;
    let mut rss_64 = 0;
    for &n in &LEVELS {
        let b = ssh_call(&sshd, &direct, true);
        let Caller::Process { argv, expect } = b else {
            unreachable!()
        };
        rates.push(
            throughput(
                Mode::B,
                n,
                settings.seconds,
                || {
                    let (argv, expect) = (argv.clone(), expect.clone());
                    async move { Caller::Process { argv, expect } }
                },
                &mut errors,
            )
            .await,
        );
        let cpu_before = procstat::cpu_time(pid);
        let sampler = rss_sampler(pid);
        let perf = (n == LOAD_CALLERS).then(|| Perf::record(pid, "perf-c64.data"));
        let socket = tether.socket_path().to_path_buf();
        let row = throughput(
            Mode::C,
            n,
            settings.seconds,
            || http_caller(&socket),
            &mut errors,
        )
        .await;
        let peak = sampler.stop().await;
        drop(perf);
        if n == LOAD_CALLERS {
            cpu_64 = procstat::cpu_time(pid)
                .saturating_sub(cpu_before)
                .as_secs_f64()
                * 1e6
                / row.ok.max(1) as f64;
            rss_64 = rss_64.max(peak);
        }
        rates.push(row);
    }

    // 4. Cached health under load.
    let health = {
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = rss_sampler(pid);
        let turn = Bytes::from(
            serde_json::json!({"verb": "run-turn", "args": ["s1", "6f1c2d3e-0000-4000-8000-000000000001", "aGVsbG8="]})
                .to_string(),
        );
        let mut turners = Vec::new();
        for _ in 0..LOAD_CALLERS {
            let mut caller = Caller::Http {
                client: HttpClient::connect(tether.socket_path()).await,
                body: turn.clone(),
                expect: "reply: hello\n".into(),
            };
            let stop = stop.clone();
            turners.push(tokio::spawn(async move {
                caller.call_while(|| !stop.load(Ordering::Relaxed)).await
            }));
        }
        // Let the callers fill tether's queue before reading.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let perf = Perf::record(pid, "perf-health.data");
        let mut reader = HttpClient::connect(tether.socket_path()).await;
        let mut echo = Echo::start().await;
        let mut reads = Samples::default();
        let mut echoes = Samples::default();
        for _ in 0..settings.health_reads {
            let start = Instant::now();
            let result = echo.ping().await;
            echoes.record(start.elapsed(), result);
            let start = Instant::now();
            let got = reader
                .request(Method::GET, "/v1/health", Bytes::new())
                .await;
            let took = start.elapsed();
            let result = match got {
                Ok((200, _)) => Ok(()),
                Ok((status, body)) => Err(format!(
                    "status {status}: {}",
                    String::from_utf8_lossy(&body)
                )),
                Err(e) => Err(e),
            };
            if let Err(e) = &result
                && reads.errors == 0
            {
                errors.push(("health reads".into(), e.clone()));
            }
            reads.record(took, result);
        }
        stop.store(true, Ordering::Relaxed);
        drop(perf);
        let (mut ok, mut failed) = (0, 0);
        for t in turners {
            let (o, f, e) = t.await.expect("turn task");
            ok += o;
            failed += f;
            if let Some(e) = e {
                errors.push(("turns under health reads".into(), e));
            }
        }
        rss_64 = rss_64.max(sampler.stop().await);
        eprintln!("health under load: {:?}", reads.summary());
        eprintln!("echo under load: {:?}", echoes.summary());
        HealthUnderLoad {
            reads: reads.summary(),
            echo: echoes.summary(),
            callers: LOAD_CALLERS,
            turns_ok: ok,
            turn_errors: failed,
        }
    };
    let (_, rss_peak_kib) = procstat::memory_kib(pid);
    drop(master);

    // 5. Through the delay proxy.
    let proxy = DelayProxy::start(sshd.addr(), ONE_WAY).await;
    let far = Route {
        port: proxy.port,
        key: sshd.ed25519_key().clone(),
        known_hosts: known_hosts_for(&sshd, proxy.port, "known_hosts_proxy"),
        control_path: sshd.dir().join("cm-proxy.sock"),
    };
    let far_master = block_in_place(|| ControlMaster::start(&sshd, &far));
    let far_tether = spawn_tether(&sshd, &far, None);
    let far_cold_tether = spawn_tether(&sshd, &far, Some(COLD));
    let far_floor = connect_floor(&sshd, &far).await;
    let mut far_series = vec![
        Series::new(Mode::E, floor_caller(&far_floor), settings.proxy_calls),
        Series::new(
            Mode::C,
            http_caller(far_tether.socket_path()).await,
            settings.proxy_calls,
        ),
        Series::new(Mode::B, ssh_call(&sshd, &far, true), settings.proxy_calls),
        Series::new(
            Mode::A,
            ssh_call(&sshd, &far, false),
            settings.proxy_ssh_calls,
        ),
        Series::new(
            Mode::F,
            http_caller(far_cold_tether.socket_path()).await,
            settings.proxy_calls,
        ),
    ];
    sequential(&mut far_series, settings.rounds, &mut errors, "proxy").await;
    let latency_proxy = rows(&far_series);
    drop(far_series);
    drop(far_master);
    drop(far_tether);
    drop(far_cold_tether);

    // 5b. Against `tether shim` through the proxy, both shells.
    let shim_latency_proxy = {
        let mut place = ShimPlace::start(
            &sshd,
            &laptop,
            proxy.port,
            &far.known_hosts,
            "proxy",
            settings.proxy_shim_calls,
        )
        .await;
        place
            .latency(settings.rounds, &mut errors, "shim proxy")
            .await
    };
    let proxy_added_ms = proxy.added_ms();

    let openssh = Command::new("ssh")
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| format!("Linux {}", k.trim()))
        .unwrap_or_default();
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| (kib / 1024.0 / 1024.0).round());
    Report {
        conditions: serde_json::json!({
            "date": date,
            "kernel": kernel,
            "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
            "memory_gib": mem_gib,
            "loadavg_start": loadavg_start,
            "loadavg_end": loadavg(),
            "openssh": openssh,
            "tether_binary": BIN,
            "verb": VERB.join(" "),
            "calls": settings.calls,
            "ssh_calls": settings.ssh_calls,
            "proxy_calls": settings.proxy_calls,
            "proxy_ssh_calls": settings.proxy_ssh_calls,
            "throughput_seconds": settings.seconds,
            "rounds": settings.rounds,
            "stream_lines": settings.stream_lines,
            "stream_lines_per_run": stream::LINES_PER_RUN,
            "stream_interval_s": stream::INTERVAL,
            "tether_config": "defaults: max_connections 2, channels_per_connection 8, probe every 2 s, shim probe every 30 s",
            "sshd": "OpenSSH sshd on loopback, MaxSessions 10 (default), forced-command shim (sh)",
            "shim_calls": settings.shim_calls,
            "proxy_shim_calls": settings.proxy_shim_calls,
            "shim_verb_exec": shim_laptop::VERB_EXEC,
            "slow_shell_ms": shim_laptop::SLOW_SHELL.as_millis(),
            "slow_shell_command": shim_laptop::slow_command_shape(),
        }),
        latency,
        streamed,
        throughput: rates,
        one_way_ms: ONE_WAY.as_secs_f64() * 1e3,
        proxy_added_ms,
        latency_proxy,
        shim_latency,
        shim_latency_proxy,
        shim_throughput,
        health_under_load: health,
        resources: Resources {
            rss_idle_kib,
            rss_64_callers_kib: rss_64,
            rss_peak_kib,
            cpu_ms_per_1000_sequential: cpu_seq,
            cpu_ms_per_1000_64_callers: cpu_64,
        },
        ratios: serde_json::Value::Null,
        goals: Vec::new(),
        first_errors: errors,
    }
}

/// Samples a process's VmRSS every 50 ms until stopped; gives the highest.
struct RssSampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<u64>,
}

fn rss_sampler(pid: u32) -> RssSampler {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let task = tokio::spawn(async move {
        let mut peak = 0;
        while !flag.load(Ordering::Relaxed) {
            peak = peak.max(procstat::memory_kib(pid).0);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        peak.max(procstat::memory_kib(pid).0)
    });
    RssSampler { stop, task }
}

impl RssSampler {
    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or(0)
    }
}

/// The control for the health reads: a bare Unix-socket echo served by a plain OS thread of
/// the bench, read in turn with them under the same load. What it shows is the machine's
/// scheduling delay, not tether's.
struct Echo {
    stream: tokio::net::UnixStream,
    _dir: tempfile::TempDir,
}

impl Echo {
    async fn start() -> Echo {
        use std::io::{Read, Write};
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("echo.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind echo");
        std::thread::spawn(move || {
            let Ok((mut conn, _)) = listener.accept() else {
                return;
            };
            let mut byte = [0u8; 1];
            while conn.read_exact(&mut byte).is_ok() && conn.write_all(&byte).is_ok() {}
        });
        let stream = tokio::net::UnixStream::connect(&path)
            .await
            .expect("connect echo");
        Echo { stream, _dir: dir }
    }

    async fn ping(&mut self) -> Result<(), std::io::Error> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        self.stream.write_all(b"x").await?;
        let mut byte = [0u8; 1];
        self.stream.read_exact(&mut byte).await?;
        Ok(())
    }
}

/// `perf record -g -p PID` while it lives, when BENCH_PERF=1 (the data goes to target/bench/).
struct Perf(Option<Child>);

impl Perf {
    fn record(pid: u32, file: &str) -> Perf {
        if std::env::var("BENCH_PERF").as_deref() != Ok("1") {
            return Perf(None);
        }
        let out = target_dir().join("bench").join(file);
        let _ = std::fs::create_dir_all(out.parent().expect("parent"));
        let child = Command::new("perf")
            .args([
                "record",
                "-q",
                "-g",
                "-F",
                "999",
                "-p",
                &pid.to_string(),
                "-o",
            ])
            .arg(&out)
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| eprintln!("perf record: {e}"))
            .ok();
        eprintln!("perf record of tether into {}", out.display());
        Perf(child)
    }
}

impl Drop for Perf {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGINT,
            );
            let _ = child.wait();
        }
    }
}
