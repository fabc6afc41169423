//! `tether demo` as a newcomer runs it: the real binary, its socket, its CLI, its admin port,
//! and SIGTERM. The demo's SSH server is not a fixture for other tests (see the sshd fixture).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

const TETHER: &str = env!("CARGO_BIN_EXE_tether");
/// Bound on the demo becoming ready (keys, server, first probes); it takes milliseconds.
const READY_WITHIN: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(25);

/// A running `tether demo`, killed if a test fails before stopping it.
struct Demo {
    child: Child,
    socket: PathBuf,
    stdout: Arc<Mutex<String>>,
    /// Its log, shown when a test fails.
    stderr: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl Demo {
    fn start() -> Demo {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("t.sock");
        let mut child = Command::new(TETHER)
            .arg("demo")
            .arg("--socket")
            .arg(&socket)
            .args(["--admin-addr", "127.0.0.1:0"])
            .env("RUST_LOG", "info,russh=warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        Demo {
            child,
            socket,
            stdout,
            stderr,
            _dir: dir,
        }
    }

    /// Polls `/v1/health` on the socket until the demo target is up.
    fn wait_until_up(&self) {
        let health = poll(READY_WITHIN, || {
            let (status, body) = http_unix(&self.socket, "GET", "/v1/health", None).ok()?;
            (status == 200 && body["targets"]["demo"]["status"] == "up").then_some(body)
        });
        assert_eq!(health["status"], "up", "{health}");
    }

    /// The banner, once it has been printed in full.
    fn banner(&self) -> String {
        poll(READY_WITHIN, || {
            let text = self.stdout.lock().unwrap().clone();
            text.contains("Health       http://").then_some(text)
        })
    }

    fn call(&self, verb: &str, args: &[&str]) -> (u16, Value) {
        let body = json!({"verb": verb, "args": args});
        http_unix(&self.socket, "POST", "/v1/call", Some(&body)).unwrap()
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- tether demo stdout:\n{}", self.stdout.lock().unwrap());
            eprintln!("--- tether demo stderr:\n{}", self.stderr.lock().unwrap());
        }
    }
}

/// Reads a child's pipe into a shared string, line by line, as it comes.
fn collect(pipe: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    std::thread::spawn(move || {
        let mut pipe = BufReader::new(pipe);
        let mut line = String::new();
        while pipe.read_line(&mut line).unwrap_or(0) > 0 {
            sink.lock().unwrap().push_str(&line);
            line.clear();
        }
    });
    text
}

/// Calls `f` until it gives a value, for at most `within`.
fn poll<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let give_up = Instant::now() + within;
    loop {
        if let Some(value) = f() {
            return value;
        }
        assert!(Instant::now() < give_up, "not ready within {within:?}");
        std::thread::sleep(POLL);
    }
}

/// One HTTP/1.1 request with `Connection: close`; the answer's status and JSON body.
fn http_unix(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> std::io::Result<(u16, Value)> {
    let stream = UnixStream::connect(socket)?;
    let (status, body) = http(stream, method, path, body)?;
    Ok((
        status,
        serde_json::from_str(&body).map_err(std::io::Error::other)?,
    ))
}

fn http(
    mut stream: impl Read + Write,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> std::io::Result<(u16, String)> {
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: tether\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no HTTP head in {answer:?}")))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
    Ok((status, body.to_string()))
}

fn cli(socket: &Path, verb: &str, args: &[&str]) -> Output {
    Command::new(TETHER)
        .arg("call")
        .arg("--socket")
        .arg(socket)
        .arg(verb)
        .args(args)
        .output()
        .unwrap()
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn reply(said: &str) -> String {
    format!("paliadin (demo): you said \"{said}\"\n")
}

#[test]
fn demo_serves_the_seed_verbs_and_drains_on_sigterm() {
    let demo = Demo::start();
    demo.wait_until_up();

    // Over the socket, as the app does: umlauts survive the base64 round trip.
    let said = "Grüß dich, Ärger über Öl? ✓";
    let turn = uuid::Uuid::new_v4().to_string();
    let (status, body) = demo.call("run-turn", &["demo-session", &turn, &b64(said)]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["exit_status"], 0, "{body}");
    assert_eq!(body["target"], "demo");
    assert_eq!(body["stdout"], reply(said));
    assert_eq!(body["stderr"], "");

    let (status, body) = demo.call("health", &["demo-session"]);
    assert_eq!((status, &body["stdout"]), (200, &json!("ok\n")), "{body}");
    let (status, body) = demo.call("reset", &["demo-session"]);
    assert_eq!(
        (status, &body["stdout"]),
        (200, &json!("reset demo-session\n")),
        "{body}"
    );

    // The allowlist still applies: the shim never sees a verb outside it.
    let (status, body) = demo.call("sleep", &["1"]);
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "verb_not_allowed");

    // Through the CLI, which stands in for ssh.
    let out = cli(
        &demo.socket,
        "run-turn",
        &["demo-session", &turn, &b64(said)],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(String::from_utf8(out.stdout).unwrap(), reply(said));
    let out = cli(&demo.socket, "health", &["demo-session"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, b"ok\n");
    let out = cli(&demo.socket, "sleep", &["1"]);
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("tether: verb_not_allowed: "));

    // More calls at once than one connection has channels: every one gets its own answer.
    let calls: Vec<_> = (0..24)
        .map(|i| {
            let socket = demo.socket.clone();
            std::thread::spawn(move || {
                let said = format!("Nachricht Nr. {i} für dich");
                let turn = uuid::Uuid::new_v4().to_string();
                let body = json!({"verb": "run-turn", "args": ["demo-session", turn, b64(&said)]});
                let (status, body) = http_unix(&socket, "POST", "/v1/call", Some(&body)).unwrap();
                assert_eq!(status, 200, "{body}");
                assert_eq!(body["stdout"], reply(&said));
            })
        })
        .collect();
    for call in calls {
        call.join().unwrap();
    }

    // The banner names the socket and admin URLs that really answer.
    let banner = demo.banner();
    let socket = demo.socket.to_str().unwrap();
    assert!(
        banner.contains(&format!(
            "curl -s --unix-socket {socket} http://tether/v1/call"
        )),
        "{banner}"
    );
    assert!(
        banner.contains(&format!("call --socket {socket} run-turn demo-session")),
        "{banner}"
    );
    let admin = banner
        .split("Status page  http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no status page URL in {banner}"));
    let (status, text) = http(
        std::net::TcpStream::connect(admin).unwrap(),
        "GET",
        "/v1/health",
        None,
    )
    .unwrap();
    assert_eq!(status, 200);
    assert!(text.contains(r#""status":"up""#), "{text}");

    // SIGTERM: drain, exit 0, socket removed.
    let mut demo = demo;
    kill(Pid::from_raw(demo.child.id() as i32), Signal::SIGTERM).unwrap();
    let exit = poll(READY_WITHIN, || demo.child.try_wait().unwrap());
    assert_eq!(exit.code(), Some(0), "{exit:?}");
    assert!(!demo.socket.exists(), "the socket file is still there");
}

#[test]
fn the_demo_sends_one_turn_twice_and_its_shim_runs_it_once() {
    let demo = Demo::start();
    demo.wait_until_up();
    let banner = demo.banner();
    let shim_config = banner
        .lines()
        .find_map(|l| l.trim().strip_prefix("shim     "))
        .unwrap_or_else(|| panic!("no shim config in {banner}"))
        .trim_matches('\'')
        .to_string();
    // The banner sends its turn twice: once over the socket, once through the CLI.
    let printed = banner
        .split("run-turn demo-session ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("no CLI turn in {banner}"));
    assert!(uuid::Uuid::parse_str(printed).is_ok(), "{printed}");
    let curl = format!(r#""args":["demo-session","{printed}","#);
    assert!(banner.contains(&curl), "{banner}");
    assert!(banner.contains(&format!("--journal {printed}")), "{banner}");

    let turn = "6f1c2d3e-0a4b-4c5d-9e8f-112233445566";
    let said = "zweimal gesendet, einmal gelaufen";
    let first = demo.call("run-turn", &["demo-session", turn, &b64(said)]);
    let again = demo.call("run-turn", &["demo-session", turn, &b64(said)]);
    assert_eq!(first.0, 200, "{}", first.1);
    assert_eq!(again.1["stdout"], reply(said));
    assert_eq!(first.1["stdout"], again.1["stdout"]);

    let audit_path = Path::new(&shim_config).with_file_name("audit.jsonl");
    let audit = std::fs::read_to_string(&audit_path).unwrap();
    let outcomes: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["key"] == turn)
        .map(|l| l["outcome"].clone())
        .collect();
    assert_eq!(outcomes, ["ran", "replayed"], "{audit}");
    let journal = Command::new(TETHER)
        .args(["shim", "--config", &shim_config, "--journal", turn])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&journal.stdout);
    assert!(
        shown.contains("state   done") && shown.contains("lock    demo-session"),
        "{shown}"
    );
}
