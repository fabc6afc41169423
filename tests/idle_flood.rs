//! 10,000 idle connections on the RPC socket, while a normal call still gets its answer.
//! tether starts with the common container default of a 1024 soft limit on open files (the
//! hard limit stays as it is): it must raise its own soft limit to serve (docs/cli.md,
//! "tether serve").
//!
//! A binary of its own: it changes the test process's file limit, which every tether spawned
//! meanwhile inherits.

mod common;

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::sshd::Sshd;
use common::tether::TetherConfig;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use serde_json::json;

const IDLE: usize = 10_000;

/// The soft and hard open-file limits of a process, from /proc/PID/limits.
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

#[test]
fn ten_thousand_idle_connections_do_not_stop_a_call() {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    assert!(
        hard >= (IDLE as u64) + 1000,
        "the hard open-file limit ({hard}) is too low for this test"
    );
    let sshd = Sshd::start();
    setrlimit(Resource::RLIMIT_NOFILE, 1024, hard).unwrap();
    // A short server.idle_timeout, so that the test sees tether reclaim them.
    let tether = TetherConfig::for_sshd(&sshd)
        .test_verbs()
        .set("server.idle_timeout", "3s")
        .spawn();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    let (t_soft, t_hard) = open_files_limit(tether.pid());
    eprintln!("tether started with 1024 open files allowed and runs with {t_soft} (hard {t_hard})");
    assert_eq!(
        t_soft, t_hard,
        "tether raises its soft limit to the hard one"
    );

    // Connect from a thread: at EMFILE, tether would stop accepting and connects would block.
    let idle = Arc::new(Mutex::new(Vec::with_capacity(IDLE)));
    let started = Instant::now();
    {
        let idle = idle.clone();
        let socket = tether.socket_path().to_path_buf();
        std::thread::spawn(move || {
            for _ in 0..IDLE {
                match UnixStream::connect(&socket) {
                    Ok(s) => idle.lock().unwrap().push(s),
                    Err(e) => panic!("connect: {e}"),
                }
            }
        });
    }
    assert!(
        common::wait_until(Duration::from_secs(30), || idle.lock().unwrap().len()
            == IDLE),
        "{} of {IDLE} connected",
        idle.lock().unwrap().len()
    );
    let connected = started.elapsed();
    let call_started = Instant::now();
    let (status, body) = tether.call(&json!({"verb": "reset", "args": ["s"]}));
    let took = call_started.elapsed();
    let rss = std::fs::read_to_string(format!("/proc/{}/status", tether.pid())).unwrap();
    let rss = rss
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .unwrap()
        .to_string();
    eprintln!(
        "{IDLE} idle connections made in {connected:?}; a call then took {took:?}; \
         tether {rss}"
    );
    assert_eq!(status, 200, "{body}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    // About 15 KiB per idle connection (debug build): bounded by the count and reclaimed
    // once they are closed for being idle, below.
    let rss_kib: u64 = rss.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(rss_kib < 256 * 1024, "{rss}");
    // Idle, they are closed by tether after server.idle_timeout (docs/rpc.md, "HTTP
    // connections"): check a few.
    let mut idle = std::mem::take(&mut *idle.lock().unwrap());
    for s in idle.iter_mut().step_by(1000) {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = Vec::new();
        assert!(s.read_to_end(&mut buf).is_ok(), "closed by tether");
    }
    eprintln!(
        "the idle connections were closed by tether {:?} after they connected",
        started.elapsed()
    );
    assert!(!tether.logs().contains("panicked"));
    drop(idle);
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
}
