//! Runs the real `tether` binary for tests: config builder, process handle, CLI runner.
//!
//! ```ignore
//! let sshd = Sshd::start();
//! let tether = TetherConfig::for_sshd(&sshd)
//!     .set("targets.laptop.probe.interval", "200ms")
//!     .spawn(); // returns once GET /v1/health answers on the socket
//! let (status, body) = tether.call(&json!({"verb": "health", "args": ["s1"]}));
//! ```

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use tempfile::TempDir;
use toml::{Table, Value as Toml};

use super::http;
use super::metrics::Exposition;
use super::sshd::Sshd;

pub const BIN: &str = env!("CARGO_BIN_EXE_tether");
/// The target name [`TetherConfig::for_sshd`] uses.
pub const TARGET: &str = "laptop";
/// The allowlist [`TetherConfig::test_verbs`] installs.
pub const TEST_VERBS: &str = r#"
[verbs.health]
timeout = "5s"
cache_ttl = "2s"
idempotent = true
[verbs.run-turn]
timeout = "20s"
[verbs.reset]
timeout = "15s"
[verbs.sleep]
timeout = "20s"
[verbs.cat]
timeout = "10s"
[verbs.fail]
timeout = "5s"
[verbs.big]
timeout = "20s"
[verbs.stderr]
timeout = "5s"
[verbs.drip]
timeout = "20s"
[verbs.seq]
timeout = "30s"
"#;
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`Tether::wait_status`] waits.
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

/// A tether config under construction, as a TOML table plus environment variables.
pub struct TetherConfig {
    dir: TempDir,
    table: Table,
    env: Vec<(String, String)>,
    write_file: bool,
}

impl TetherConfig {
    /// Only `[server]`: socket in a fresh temp dir, admin on a free loopback port, text logs.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("tether-")
            .tempdir()
            .expect("tempdir");
        let mut cfg = TetherConfig {
            dir,
            table: Table::new(),
            env: Vec::new(),
            write_file: true,
        };
        let socket = cfg.dir.path().join("tether.sock").display().to_string();
        cfg = cfg
            .set("server.socket", socket)
            // Port 0: the kernel picks a free one as tether binds it (a port picked here and
            // bound later could meanwhile be any outgoing connection's local port).
            .set("server.admin_addr", "127.0.0.1:0")
            .set("server.log_format", "text");
        cfg
    }

    /// [`TetherConfig::new`] plus target [`TARGET`] pointing at `sshd` with its ed25519 key and
    /// host key pin. Probes and verbs keep tether's defaults.
    pub fn for_sshd(sshd: &Sshd) -> Self {
        let t = format!("targets.{TARGET}");
        Self::new()
            .set(&format!("{t}.host"), "127.0.0.1")
            .set(&format!("{t}.port"), i64::from(sshd.port()))
            .set(&format!("{t}.user"), sshd.user())
            .set(
                &format!("{t}.private_key"),
                sshd.ed25519_key().private_key.as_str(),
            )
            .set(&format!("{t}.known_hosts"), sshd.known_hosts_line())
    }

    /// Points the target at `port` on loopback (a [`super::proxy::Proxy`], a fake peer, a
    /// closed port) while keeping `sshd`'s host key pinned for that address: the pin is built
    /// from its parts, `[127.0.0.1]:PORT` and the key.
    pub fn via(self, port: u16, sshd: &Sshd) -> Self {
        let line = sshd.known_hosts_line();
        let (_address, key) = line.split_once(' ').expect("a known_hosts line");
        self.set(&format!("targets.{TARGET}.port"), i64::from(port))
            .set(
                &format!("targets.{TARGET}.known_hosts"),
                format!("[127.0.0.1]:{port} {key}"),
            )
    }

    /// Sets one key by dotted path ("targets.laptop.probe.interval"), creating tables on the way.
    pub fn set(mut self, path: &str, value: impl Into<Toml>) -> Self {
        let (parents, key) = path.rsplit_once('.').map_or(("", path), |(p, k)| (p, k));
        let mut table = &mut self.table;
        for part in parents.split('.').filter(|p| !p.is_empty()) {
            table = table
                .entry(part)
                .or_insert_with(|| Toml::Table(Table::new()))
                .as_table_mut()
                .unwrap_or_else(|| panic!("{part} in {path} is not a table"));
        }
        table.insert(key.to_string(), value.into());
        self
    }

    /// Removes one key by dotted path, if present.
    pub fn unset(mut self, path: &str) -> Self {
        let (parents, key) = path.rsplit_once('.').map_or(("", path), |(p, k)| (p, k));
        let mut table = Some(&mut self.table);
        for part in parents.split('.').filter(|p| !p.is_empty()) {
            table = table
                .and_then(|t| t.get_mut(part))
                .and_then(Toml::as_table_mut);
        }
        if let Some(t) = table {
            t.remove(key);
        }
        self
    }

    /// Deep-merges a TOML snippet over the config (later wins), e.g. `[verbs.sleep]\ntimeout="1s"`.
    pub fn merge(mut self, snippet: &str) -> Self {
        let extra: Table = snippet
            .parse()
            .unwrap_or_else(|e| panic!("bad TOML snippet: {e}"));
        merge_into(&mut self.table, extra);
        self
    }

    /// The seed verbs plus the test shim's verbs (sleep, cat, fail, big, stderr), short timeouts.
    pub fn test_verbs(self) -> Self {
        self.merge(TEST_VERBS)
    }

    /// Uses the ed25519 or RSA key (or any other) as the target's private key.
    pub fn key(self, private_key: &str) -> Self {
        self.set(&format!("targets.{TARGET}.private_key"), private_key)
    }

    /// Adds an environment variable for the process (`TETHER_*` and `PALIADIN_*` from the test's
    /// own environment are never inherited).
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// Starts tether without `--config` (env-only deployments; `TETHER_CONFIG` is unset too).
    /// The table is then ignored except `server.socket` and `server.admin_addr`, which are
    /// passed as `TETHER_SERVER__SOCKET`/`TETHER_SERVER__ADMIN_ADDR` unless [`Self::env`] set them.
    pub fn without_file(mut self) -> Self {
        self.write_file = false;
        self
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(&self.table).expect("serialize config")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs a one-shot `tether SUB [--config FILE] ARGS…` (e.g. `doctor`) with this config
    /// and its environment, and waits for it to exit.
    pub fn run(&self, sub: &str, args: &[&str]) -> CliOutput {
        let path = self.dir.path().join("tether.toml");
        fs::write(&path, self.to_toml()).expect("write tether.toml");
        let path = path.display().to_string();
        let mut all = vec![sub];
        if self.write_file {
            all.extend(["--config", path.as_str()]);
        }
        all.extend_from_slice(args);
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        run_cli(&all, &env, None)
    }

    /// Spawns `tether serve` and waits (up to 10 s) until `GET /v1/health` answers on the socket.
    /// Panics with the process output if it exits or does not answer in time.
    pub fn spawn(self) -> Tether {
        let mut tether = self.spawn_unready();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if http::unix(&tether.socket, "GET", "/v1/health", None).is_ok() {
                return tether;
            }
            if let Some(status) = tether.try_status() {
                panic!(
                    "tether exited with {status} before it answered:\n{}",
                    tether.logs()
                );
            }
            assert!(
                Instant::now() < deadline,
                "tether not ready after {READY_TIMEOUT:?}:\n{}",
                tether.logs()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Spawns `tether serve` and returns at once (for config errors, start-up races).
    pub fn spawn_unready(self) -> Tether {
        let d = self.dir.path();
        let config_path = d.join("tether.toml");
        let mut cmd = command(&self.env);
        cmd.arg("serve");
        if self.write_file {
            fs::write(&config_path, self.to_toml()).expect("write tether.toml");
            cmd.arg("--config").arg(&config_path);
        } else {
            for key in ["socket", "admin_addr"] {
                let name = format!("TETHER_SERVER__{}", key.to_ascii_uppercase());
                let value = self.table["server"].get(key).and_then(Toml::as_str);
                if let (Some(value), false) = (value, self.env.iter().any(|(n, _)| *n == name)) {
                    cmd.env(name, value);
                }
            }
        }
        let out = fs::File::create(d.join("stdout.log")).expect("create stdout.log");
        let err = fs::File::create(d.join("stderr.log")).expect("create stderr.log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn tether");
        let socket = PathBuf::from(
            self.table["server"]["socket"]
                .as_str()
                .expect("server.socket"),
        );
        let admin_config = self.table["server"]
            .get("admin_addr")
            .and_then(Toml::as_str)
            .map(str::to_string);
        Tether {
            config: self,
            child: Some(child),
            socket,
            admin_config,
            admin: std::sync::OnceLock::new(),
            config_path,
        }
    }
}

impl Default for TetherConfig {
    fn default() -> Self {
        Self::new()
    }
}

fn merge_into(base: &mut Table, extra: Table) {
    for (key, value) in extra {
        match (base.get_mut(&key), value) {
            (Some(Toml::Table(b)), Toml::Table(e)) => merge_into(b, e),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// `tether ARGS…` as a [`Command`] to spawn yourself (to read its output as it comes), with
/// the same clean environment as [`run_cli`].
pub fn cli_command(args: &[&str]) -> Command {
    let mut cmd = command(&[]);
    cmd.args(args);
    cmd
}

/// A `tether` command with a clean environment: no inherited `TETHER_*`/`PALIADIN_*`.
fn command(env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(BIN);
    for (name, _) in std::env::vars() {
        if name.starts_with("TETHER_") || name.starts_with("PALIADIN_") {
            cmd.env_remove(name);
        }
    }
    cmd.env("RUST_BACKTRACE", "1");
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd
}

/// A running `tether serve`. Dropping it kills the process (SIGKILL) and removes its temp dir.
pub struct Tether {
    config: TetherConfig,
    child: Option<Child>,
    socket: PathBuf,
    /// `server.admin_addr` as configured, and the address it is bound to once looked up.
    admin_config: Option<String>,
    admin: std::sync::OnceLock<Option<String>>,
    config_path: PathBuf,
}

impl Tether {
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// "127.0.0.1:PORT", or `None` when the config disabled it. For port 0, the port tether
    /// bound, from its start-up log line.
    pub fn admin_addr(&self) -> Option<&str> {
        self.admin
            .get_or_init(|| match self.admin_config.as_deref() {
                Some(addr) if addr.ends_with(":0") => Some(self.bound_admin_addr()),
                other => other.map(str::to_string),
            })
            .as_deref()
            .filter(|a| !a.is_empty())
    }

    /// The admin address in "tether is serving … admin=Some(ADDR)" (text or JSON logs).
    fn bound_admin_addr(&self) -> String {
        let find = |logs: &str| {
            let at = ["admin=Some(", "\"admin\":\"Some("]
                .iter()
                .find_map(|before| logs.find(before).map(|i| i + before.len()))?;
            let rest = &logs[at..];
            Some(rest[..rest.find(')')?].to_string())
        };
        let mut found = None;
        let logged = super::wait_until(READY_TIMEOUT, || {
            found = find(&self.logs());
            found.is_some()
        });
        assert!(
            logged,
            "tether never logged its admin address:\n{}",
            self.logs()
        );
        found.expect("found")
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("tether already reaped").id()
    }

    /// Everything the process wrote so far: stdout, then stderr.
    pub fn logs(&self) -> String {
        let d = self.config.dir.path();
        let out = fs::read_to_string(d.join("stdout.log")).unwrap_or_default();
        let err = fs::read_to_string(d.join("stderr.log")).unwrap_or_default();
        format!("{out}{err}")
    }

    /// `GET /v1/health` on the socket.
    pub fn health(&self) -> (u16, Value) {
        http::get_json(&self.socket, "/v1/health")
    }

    /// Target [`TARGET`]'s entry of `/v1/health` (docs/rpc.md, "GET /v1/health").
    pub fn target_health(&self) -> Value {
        let (code, mut body) = self.health();
        assert_eq!(code, 200, "{body}");
        body["targets"][TARGET].take()
    }

    /// The status of target [`TARGET`] in `/v1/health` ("unknown", "up", "down", …).
    pub fn status(&self) -> String {
        self.target_health()["status"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Waits up to `within` until target [`TARGET`]'s health satisfies `cond`, and returns
    /// that health; panics with the last one and the logs otherwise.
    pub fn wait_target(&self, within: Duration, cond: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        let held = super::wait_until(within, || {
            last = self.target_health();
            cond(&last)
        });
        assert!(
            held,
            "not reached within {within:?}; last health: {last:#}\n{}",
            self.logs()
        );
        last
    }

    /// Waits (up to 10 s) until target [`TARGET`] has status `want`; returns how long it took.
    pub fn wait_status(&self, want: &str) -> Duration {
        self.wait_status_within(want, STATUS_TIMEOUT)
    }

    /// Waits up to `within` until target [`TARGET`] has status `want`; returns how long it took.
    pub fn wait_status_within(&self, want: &str, within: Duration) -> Duration {
        let started = Instant::now();
        self.wait_target(within, |t| t["status"] == want);
        started.elapsed()
    }

    /// One scrape of `/metrics`, parsed.
    pub fn metrics(&self) -> Exposition {
        Exposition::parse(&self.admin_get("/metrics").text())
    }

    /// The value of one sample in `/metrics`, written as printed, e.g.
    /// `tether_connects_total{result="ok",target="laptop"}` (labels exactly these, any order);
    /// 0 when it is not there yet.
    /// Waits until target [`TARGET`]'s calls run on a resident `tether shim` session
    /// (`tether_shim_sessions`): a new connection asks for it in the background, and its
    /// calls go out as execs until then.
    pub fn wait_for_session(&self) {
        let sessions = || self.metric(&format!("tether_shim_sessions{{target=\"{TARGET}\"}}"));
        assert!(
            super::wait_until(STATUS_TIMEOUT, || sessions() >= 1.0),
            "no shim session up:\n{}",
            self.logs()
        );
    }

    pub fn metric(&self, sample: &str) -> f64 {
        self.metrics().get(sample).unwrap_or(0.0)
    }

    /// `POST /v1/call` on the socket.
    pub fn call(&self, body: &Value) -> (u16, Value) {
        http::post_json(&self.socket, "/v1/call", body)
    }

    /// Runs `bodies` as concurrent calls from threads released together; returns each
    /// (status, body, time taken), in order.
    pub fn calls_at_once(&self, bodies: Vec<Value>) -> Vec<(u16, Value, Duration)> {
        let start = std::sync::Arc::new(std::sync::Barrier::new(bodies.len()));
        let threads: Vec<_> = bodies
            .into_iter()
            .map(|body| {
                let socket = self.socket.clone();
                let start = start.clone();
                std::thread::spawn(move || {
                    start.wait();
                    let t = Instant::now();
                    let (status, answer) = http::post_json(&socket, "/v1/call", &body);
                    (status, answer, t.elapsed())
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    }

    /// No channel slot is held: every call's channel has been freed (`tether_channels_in_use`
    /// is 0).
    pub fn channels_idle(&self) -> bool {
        self.metric(&format!("tether_channels_in_use{{target=\"{TARGET}\"}}")) == 0.0
    }

    /// `POST /v1/call` from another thread; join the handle for the answer.
    pub fn call_in_background(&self, body: Value) -> std::thread::JoinHandle<(u16, Value)> {
        let socket = self.socket.clone();
        std::thread::spawn(move || http::post_json(&socket, "/v1/call", &body))
    }

    /// `GET path` on the admin listener; panics when admin is disabled.
    pub fn admin_get(&self, path: &str) -> http::Response {
        let addr = self.admin_addr().expect("admin listener disabled");
        http::tcp(addr, "GET", path, None).unwrap_or_else(|e| panic!("GET {path} on {addr}: {e}"))
    }

    /// Runs `tether SUB --socket SOCK ARGS…` (e.g. `cli("call", &["health", "s1"])`).
    pub fn cli(&self, sub: &str, args: &[&str]) -> CliOutput {
        let socket = self.socket.display().to_string();
        let mut all = vec![sub, "--socket", &socket];
        all.extend_from_slice(args);
        run_cli(&all, &[], None)
    }

    pub fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.pid() as i32), sig).expect("signal tether");
    }

    /// Sends `sig` and waits (up to 60 s) for the exit status.
    pub fn stop_with(&mut self, sig: Signal) -> ExitStatus {
        self.signal(sig);
        self.wait_exit(EXIT_TIMEOUT).unwrap_or_else(|| {
            panic!(
                "tether still running {EXIT_TIMEOUT:?} after {sig}:\n{}",
                self.logs()
            )
        })
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The exit status if the process has exited (it is reaped then, and stays reported).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().expect("try_wait")
    }

    /// The process's peak resident set so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status")
    }
}

impl Drop for Tether {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- tether's log (pid {}):\n{}", self.pid(), self.logs());
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The result of one CLI run.
#[derive(Debug, Clone)]
pub struct CliOutput {
    /// Exit code; `None` if killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `tether ARGS…` with extra env and optional stdin, bounded by 60 s (killed after).
pub fn run_cli(args: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>) -> CliOutput {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut child = command(&env)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tether CLI");
    let input = stdin.map(<[u8]>::to_vec);
    let mut pipe_in = child.stdin.take();
    let writer = std::thread::spawn(move || {
        if let (Some(pipe), Some(bytes)) = (pipe_in.as_mut(), input) {
            let _ = pipe.write_all(&bytes);
        }
    });
    let reader = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = reader(Box::new(child.stdout.take().expect("stdout")));
    let err = reader(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + EXIT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("tether {args:?} still running after {EXIT_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let _ = writer.join();
    CliOutput {
        code: status.code(),
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}
