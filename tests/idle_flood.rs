//! Local callers cannot exhaust tether (docs/rpc.md, "HTTP connections"). While a uid that
//! is not in `server.allowed_uids` holds thousands of connections that each asked for
//! something, and an allowed uid holds thousands of idle ones, an allowed caller still gets
//! its answer promptly, tether's memory and descriptors stay bounded, and the refusals are
//! counted. tether starts with a 1024 soft limit on open files (a common container default)
//! and raises it to the hard one (docs/cli.md, "tether serve").
//!
//! A binary of its own: it changes the test process's file limit, which every tether spawned
//! meanwhile inherits. The floods come from child processes of this binary (the ignored
//! `flooder` below) running as other uids, since tether reads the caller's uid from the
//! kernel.

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use common::http;
use common::sshd::Sshd;
use common::tether::TetherConfig;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};
use serde_json::json;

/// A uid that may not use the socket, and one that may; neither needs a passwd entry.
const FORBIDDEN_UID: u32 = 60001;
const ALLOWED_UID: u32 = 60002;
/// Connections each flood opens.
const EACH: usize = 6000;
/// tether's open-files limit once started (set with prlimit): below the two floods together.
const TETHER_FILES: u64 = 8192;

/// The soft and hard open-files limits of a process, from /proc/PID/limits.
fn open_files_limit(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let mut words = line.split_whitespace().skip(3);
    (
        words.next().unwrap().to_string(),
        words.next().unwrap().to_string(),
    )
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// How a flooder's report line begins.
const REPORT: &str = "flood-report:";

/// What a flooder reports: its connections, and what became of them.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Report {
    connected: usize,
    answered: usize,
    closed: usize,
    open: usize,
}

/// A flood of connections from another uid: this test binary re-run as `flooder`.
struct Flood {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Flood {
    /// Opens `EACH` connections as `uid`; `ask`: each sends a request (and reads nothing).
    fn start(socket: &Path, uid: u32, ask: bool) -> Flood {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "flooder",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("FLOOD_SOCKET", socket)
            .env("FLOOD_COUNT", EACH.to_string())
            .env("FLOOD_ASK", if ask { "1" } else { "0" })
            .uid(uid)
            .gid(uid)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn a flooder");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Flood {
            child,
            stdin,
            stdout,
        }
    }

    /// The flooder's report now (it connects everything before its first).
    fn report(&mut self) -> Report {
        writeln!(self.stdin, "report").unwrap();
        loop {
            let mut line = String::new();
            assert!(
                self.stdout.read_line(&mut line).unwrap() > 0,
                "the flooder died"
            );
            // The harness's own "test flooder ... " may precede it on the same line.
            if let Some((_, numbers)) = line.trim().split_once(REPORT) {
                let n: Vec<usize> = numbers
                    .split_whitespace()
                    .map(|w| w.parse().unwrap())
                    .collect();
                return Report {
                    connected: n[0],
                    answered: n[1],
                    closed: n[2],
                    open: n[3],
                };
            }
        }
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn floods_of_local_connections_do_not_stop_an_allowed_caller() {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    assert!(
        hard >= EACH as u64 + 1000,
        "the hard open-files limit ({hard}) is too low for this test"
    );
    let sshd = Sshd::start();
    let config = TetherConfig::for_sshd(&sshd)
        .test_verbs()
        .set("server.allowed_uids", vec![0i64, i64::from(ALLOWED_UID)])
        .set("server.socket_mode", "0666");
    std::fs::set_permissions(config.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, 1024, hard).unwrap();
    let tether = config.spawn();
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
    let (t_soft, t_hard) = open_files_limit(tether.pid());
    eprintln!("tether started with 1024 open files allowed and runs with {t_soft} (hard {t_hard})");
    assert_eq!(
        t_soft, t_hard,
        "tether raises its soft limit to the hard one"
    );
    // Then less room than the two floods need (lowering needs no privilege).
    let limit = format!("--nofile={TETHER_FILES}:{TETHER_FILES}");
    let lowered = Command::new("prlimit")
        .args(["--pid", &tether.pid().to_string(), &limit])
        .status()
        .expect("run prlimit (util-linux)");
    assert!(lowered.success());
    tether.wait_status("up");
    let rss_before = rss_kib(tether.pid());

    let started = Instant::now();
    let mut forbidden = Flood::start(tether.socket_path(), FORBIDDEN_UID, true);
    let mut idle = Flood::start(tether.socket_path(), ALLOWED_UID, false);
    let (forbidden_first, idle_first) = (forbidden.report(), idle.report());
    let flooded = started.elapsed();

    // While both floods hold what they got, an allowed caller is answered promptly. (From a
    // thread: a tether that stopped accepting would leave the connect hanging.)
    let (tx, rx) = std::sync::mpsc::channel();
    let socket = tether.socket_path().to_path_buf();
    std::thread::spawn(move || {
        for _ in 0..5 {
            let call_started = Instant::now();
            let (status, body) = http::post_json(
                &socket,
                "/v1/call",
                &json!({"verb": "reset", "args": ["s"]}),
            );
            let _ = tx.send((status, body, call_started.elapsed()));
        }
    });
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let Ok((status, body, took)) = rx.recv_timeout(Duration::from_secs(20)) else {
            panic!(
                "an allowed caller got no answer within 20 s; floods: {forbidden_first:?} and \
                 {idle_first:?}; RSS {} KiB; tether's log:\n{}",
                rss_kib(tether.pid()),
                tether
                    .logs()
                    .lines()
                    .rev()
                    .take(5)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        };
        assert_eq!(status, 200, "{body}");
        slowest = slowest.max(took);
    }
    let fds = open_fds(tether.pid());
    let rss = rss_kib(tether.pid());
    eprintln!(
        "floods: forbidden uid {forbidden_first:?}, allowed uid {idle_first:?} in {flooded:?}; \
         meanwhile 5 calls, slowest {slowest:?}; tether holds {fds} descriptors, RSS \
         {rss_before} -> {rss} KiB"
    );
    // Measured 0.3-0.8 s on 2 busy cores while tether closes the floods' refused
    // connections; without the caps, no answer within 20 s.
    assert!(slowest < Duration::from_secs(2), "{slowest:?}");
    // Bounded by server.max_connections (1024), not by the floods (2 x 6000).
    assert!(fds < 1024 + 100, "{fds} descriptors");
    assert!(rss < rss_before + 64 * 1024, "{rss} KiB");

    // A forbidden caller's connections are all closed: after their answer, or at once.
    let mut last = forbidden_first;
    let closed = common::wait_until(Duration::from_secs(10), || {
        last = forbidden.report();
        last.open == 0
    });
    assert!(closed, "forbidden connections kept open: {last:?}");
    assert!(last.answered > 0, "{last:?}");
    // The allowed uid keeps at most its share (server.max_connections_per_uid, 512).
    let held = idle.report();
    assert!(held.open <= 512, "{held:?}");
    let refused = tether.metric("tether_rpc_connections_refused_total{reason=\"per_uid\"}");
    assert!(refused >= (EACH - 512) as f64, "{refused} refused per uid");
    eprintln!(
        "forbidden flood at the end: {last:?}; allowed flood: {held:?}; refused per uid: {refused}, \
         in total: {}",
        tether.metric("tether_rpc_connections_refused_total{reason=\"total\"}")
    );
    assert!(!tether.logs().contains("panicked"));
    drop((forbidden, idle));
}

/// Not a test: the flood of [`Flood::start`], run as another uid. Opens FLOOD_COUNT
/// connections (without blocking on a full backlog: those that cannot connect within 10 s
/// are not counted), sends a request on each when FLOOD_ASK=1, then answers every `report`
/// line on stdin with `flood-report: CONNECTED ANSWERED CLOSED OPEN`, until stdin closes.
#[test]
#[ignore = "run by floods_of_local_connections_do_not_stop_an_allowed_caller as another uid"]
fn flooder() {
    let Ok(socket) = std::env::var("FLOOD_SOCKET") else {
        return;
    };
    let count: usize = std::env::var("FLOOD_COUNT").unwrap().parse().unwrap();
    let ask = std::env::var("FLOOD_ASK").unwrap() == "1";
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    let addr = UnixAddr::new(socket.as_str()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut conns: Vec<(UnixStream, bool, bool)> = Vec::new();
    while conns.len() < count && Instant::now() < deadline {
        let fd = socket_fd();
        match connect(fd.as_raw_fd(), &addr) {
            Ok(()) => {
                let mut stream = UnixStream::from(fd);
                if ask {
                    let _ = stream.write_all(b"GET /v1/health HTTP/1.1\r\nHost: t\r\n\r\n");
                }
                conns.push((stream, false, false));
            }
            Err(nix::errno::Errno::EAGAIN) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => panic!("connect: {e}"),
        }
    }
    let mut buf = [0u8; 4096];
    for line in std::io::stdin().lock().lines() {
        if line.unwrap() != "report" {
            continue;
        }
        for (stream, answered, closed) in conns.iter_mut().filter(|c| !c.2) {
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => *closed = true,
                    Ok(_) => {
                        *answered = true;
                        continue;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => *closed = true,
                }
                break;
            }
        }
        let answered = conns.iter().filter(|c| c.1).count();
        let closed = conns.iter().filter(|c| c.2).count();
        println!(
            "{REPORT} {} {answered} {closed} {}",
            conns.len(),
            conns.len() - closed
        );
        std::io::stdout().flush().unwrap();
    }
}

fn socket_fd() -> std::os::fd::OwnedFd {
    socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("a socket")
}
