//! The process's life (docs/cli.md, "Signals and lifecycle"): drain on SIGTERM (calls in
//! flight finish, new ones are refused, exit 0, socket removed), the grace period's end, a
//! second signal, and the socket file at start.

mod common;

use std::time::{Duration, Instant};

use common::sshd::Sshd;
use common::tether::{Tether, TetherConfig};
use nix::sys::signal::Signal;
use serde_json::json;

/// Waits until the background `sleep` runs on the laptop, then sends SIGTERM and waits until
/// tether says it is draining.
fn sigterm_once_sleeping(sshd: &Sshd, tether: &Tether) {
    assert!(common::wait_until(Duration::from_secs(5), || sshd
        .count("sleep", &[])
        == 1));
    tether.signal(Signal::SIGTERM);
    assert!(common::wait_until(Duration::from_secs(2), || tether
        .admin_get("/readyz")
        .status
        == 503));
}

#[test]
fn sigterm_lets_a_turn_finish_refuses_new_calls_and_exits_cleanly() {
    let sshd = Sshd::start();
    let mut tether = TetherConfig::for_sshd(&sshd).test_verbs().spawn();
    let in_flight = tether.call_in_background(json!({"verb": "sleep", "args": ["1"]}));
    sigterm_once_sleeping(&sshd, &tether);
    let (status, body) = tether.call(&json!({"verb": "reset", "args": ["s"]}));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("shutting_down")),
        "{body}"
    );
    assert_eq!(body["error"]["retryable"], true);
    assert_eq!(tether.cli("check", &["--ready"]).code, Some(1));
    let (status, body) = in_flight.join().unwrap();
    assert_eq!(
        (status, body["stdout"].as_str()),
        (200, Some("slept 1\n")),
        "{body}"
    );
    let exit = tether
        .wait_exit(Duration::from_secs(10))
        .expect("exits after the drain");
    assert_eq!(exit.code(), Some(0), "{}", tether.logs());
    assert!(!tether.socket_path().exists(), "the socket file is removed");
    assert_eq!(sshd.count("reset", &[]), 0);
}

#[test]
fn past_the_grace_period_calls_answer_shutting_down_not_silence() {
    let sshd = Sshd::start();
    let mut tether = TetherConfig::for_sshd(&sshd)
        .test_verbs()
        .set("server.shutdown_grace", "300ms")
        .spawn();
    let in_flight = tether.call_in_background(json!({"verb": "sleep", "args": ["10"]}));
    assert!(common::wait_until(Duration::from_secs(5), || sshd
        .count("sleep", &[])
        == 1));
    let started = Instant::now();
    tether.signal(Signal::SIGTERM);
    let (status, body) = in_flight.join().unwrap();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("shutting_down")),
        "{body}"
    );
    let exit = tether.wait_exit(Duration::from_secs(10)).expect("exits");
    assert_eq!(exit.code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The call's task closed its channel and ended before the connections closed.
    assert!(
        !tether.logs().contains("did not stop in time"),
        "{}",
        tether.logs()
    );
}

#[test]
fn a_second_signal_exits_at_once() {
    let sshd = Sshd::start();
    let mut tether = TetherConfig::for_sshd(&sshd).test_verbs().spawn();
    let _in_flight = tether.call_in_background(json!({"verb": "sleep", "args": ["10"]}));
    sigterm_once_sleeping(&sshd, &tether);
    let started = Instant::now();
    tether.signal(Signal::SIGINT);
    let exit = tether
        .wait_exit(Duration::from_secs(2))
        .expect("exits at once");
    assert_ne!(exit.code(), Some(0));
    assert!(started.elapsed() < Duration::from_millis(500));
}

#[test]
fn a_stale_socket_is_replaced_and_a_live_one_refused() {
    let sshd = Sshd::start();
    let cfg = TetherConfig::for_sshd(&sshd);
    let socket = cfg.dir().join("tether.sock");
    // A stale file: bound once, nobody listening now (as after a crash or kill -9).
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let first = cfg.spawn();
    assert_eq!(first.health().0, 200);
    // A second tether on the same socket refuses to start and says why.
    let sshd2 = Sshd::start();
    let mut second = TetherConfig::for_sshd(&sshd2)
        .set("server.socket", socket.display().to_string())
        .spawn_unready();
    let exit = second
        .wait_exit(Duration::from_secs(10))
        .expect("refuses to start");
    assert_eq!(exit.code(), Some(1));
    assert!(
        second
            .logs()
            .contains("another process (probably another tether) is listening"),
        "{}",
        second.logs()
    );
    assert_eq!(first.health().0, 200, "the running tether keeps its socket");
}

/// The RPC socket is bound first; when a later start step fails (the admin port is taken),
/// tether exits and leaves no socket file behind that looks like a live tether.
#[test]
fn a_failed_start_leaves_no_socket_file() {
    let sshd = Sshd::start();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut tether = TetherConfig::for_sshd(&sshd)
        .set("server.admin_addr", addr.as_str())
        .spawn_unready();
    let exit = tether
        .wait_exit(Duration::from_secs(10))
        .expect("refuses to start");
    assert_eq!(exit.code(), Some(1), "{}", tether.logs());
    assert!(
        tether
            .logs()
            .contains(&format!("cannot listen on server.admin_addr {addr}")),
        "{}",
        tether.logs()
    );
    assert!(
        !tether.socket_path().exists(),
        "the socket file was left behind"
    );
}

#[test]
fn the_socket_appears_with_its_configured_mode() {
    use std::os::unix::fs::PermissionsExt;
    let sshd = Sshd::start();
    let config = TetherConfig::for_sshd(&sshd).set("server.socket_mode", "0600");
    let socket = config.dir().join("tether.sock");
    // Watch the path from before tether starts: the first mode anyone can see is the final
    // one (the socket is never there with the umask's mode, waiting for its chmod).
    let watcher = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(meta) = std::fs::symlink_metadata(&socket) {
                return Some(meta.permissions().mode() & 0o777);
            }
            std::hint::spin_loop();
        }
        None
    });
    let tether = config.spawn();
    let first_seen = watcher.join().unwrap().expect("the socket appeared");
    assert_eq!(first_seen, 0o600, "mode when the socket first appeared");
    let mode = std::fs::metadata(tether.socket_path())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let dir = tether.socket_path().parent().unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".tether-bind"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
