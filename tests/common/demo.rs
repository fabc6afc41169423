//! A running `tether demo` (docs/cli.md, "tether demo"): the real binary with its built-in
//! SSH server, on a socket in a fresh temp dir and a free admin port, env scrubbed like every
//! other tether the tests start.
//!
//! ```ignore
//! let demo = Demo::start(); // returns once target "demo" is up
//! let (status, body) = demo.call("health", &["s1"]);
//! ```

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tempfile::TempDir;

use super::http;
use super::tether::cli_command;
use super::wait_until;

/// Bound on the demo becoming ready (keys, server, first probes); it takes milliseconds.
const READY_WITHIN: Duration = Duration::from_secs(30);
/// The demo's one target.
pub const DEMO_TARGET: &str = "demo";

/// A running `tether demo`; dropping it kills the process (and shows its output if the test
/// is failing).
pub struct Demo {
    child: Child,
    socket: PathBuf,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    _dir: TempDir,
}

impl Demo {
    /// Starts `tether demo --socket TMP/t.sock --admin-addr 127.0.0.1:0` and waits until its
    /// target is up.
    pub fn start() -> Demo {
        let dir = tempfile::Builder::new()
            .prefix("tether-demo-")
            .tempdir()
            .expect("tempdir");
        let socket = dir.path().join("t.sock");
        let socket_arg = socket.display().to_string();
        let mut child = cli_command(&["demo", "--socket", &socket_arg])
            .args(["--admin-addr", "127.0.0.1:0"])
            .env("RUST_LOG", "info,russh=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tether demo");
        let stdout = collect(child.stdout.take().expect("stdout"));
        let stderr = collect(child.stderr.take().expect("stderr"));
        let demo = Demo {
            child,
            socket,
            stdout,
            stderr,
            _dir: dir,
        };
        let up = wait_until(READY_WITHIN, || {
            http::unix(&demo.socket, "GET", "/v1/health", None).is_ok_and(|r| {
                r.status == 200 && r.json()["targets"][DEMO_TARGET]["status"] == "up"
            })
        });
        assert!(up, "tether demo not up within {READY_WITHIN:?}");
        demo
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Everything printed on stdout so far, once the banner is complete (it ends with the
    /// admin URLs).
    pub fn banner(&self) -> String {
        let done = || self.stdout.lock().unwrap().contains("Health       http://");
        assert!(wait_until(READY_WITHIN, done), "no complete banner");
        self.stdout.lock().unwrap().clone()
    }

    /// `POST /v1/call` with a verb and its arguments.
    pub fn call(&self, verb: &str, args: &[&str]) -> (u16, Value) {
        http::post_json(
            &self.socket,
            "/v1/call",
            &json!({"verb": verb, "args": args}),
        )
    }

    pub fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), sig).expect("signal tether demo");
    }

    /// Waits up to 30 s for the process to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let mut status = None;
        let exited = wait_until(READY_WITHIN, || {
            status = self.child.try_wait().expect("try_wait");
            status.is_some()
        });
        assert!(exited, "tether demo still running after {READY_WITHIN:?}");
        status.unwrap()
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
