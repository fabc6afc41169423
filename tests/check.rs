//! `tether check` (docs/cli.md, "tether check"): 0 when up, 1 when degraded, down or unknown
//! (and for a target that does not exist), 2 when nothing answers; `--wait` polls until up;
//! `--ready` ignores the targets.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::sshd::Sshd;
use common::tether::{TARGET, Tether, TetherConfig, cli_command, run_cli};
use common::wait_until;

fn spawn(sshd: &Sshd) -> Tether {
    TetherConfig::for_sshd(sshd)
        .set("targets.laptop.probe.interval", "200ms")
        .set("targets.laptop.probe.timeout", "500ms")
        .set("targets.laptop.connect_timeout", "500ms")
        // About the transport: no shim probe, which could time out on a loaded machine.
        .set("targets.laptop.probe.shim_verb", "")
        .spawn()
}

#[test]
fn exit_codes_follow_the_target_and_ready_ignores_it() {
    let mut sshd = Sshd::start();
    let tether = spawn(&sshd);
    tether.wait_status("up");

    let up = tether.cli("check", &[]);
    assert_eq!((up.code, up.stdout.as_str()), (Some(0), "up\n"), "{up:?}");
    let named = tether.cli("check", &["--target", TARGET]);
    assert_eq!(named.code, Some(0), "{named:?}");
    let unknown = tether.cli("check", &["--target", "nope"]);
    assert_eq!(unknown.code, Some(1), "{unknown:?}");
    assert!(unknown.stderr.contains("nope"), "{unknown:?}");
    assert_eq!(tether.cli("check", &["--ready"]).code, Some(0));

    sshd.kill();
    tether.wait_status("down");
    let down = tether.cli("check", &[]);
    assert_eq!(
        (down.code, down.stdout.as_str()),
        (Some(1), "down\n"),
        "{down:?}"
    );
    assert_eq!(tether.cli("check", &["--target", TARGET]).code, Some(1));
    // The compose healthcheck: a sleeping laptop does not make the sidecar unhealthy.
    let ready = tether.cli("check", &["--ready"]);
    assert_eq!(ready.code, Some(0), "{ready:?}");

    // --wait gives up after its duration, still 1.
    let started = Instant::now();
    let waited = tether.cli("check", &["--wait", "1s"]);
    assert_eq!(waited.code, Some(1), "{waited:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(5),
        "--wait 1s took {took:?}"
    );
}

#[test]
fn check_wait_exits_zero_once_the_target_comes_up() {
    let mut sshd = Sshd::start();
    let tether = spawn(&sshd);
    tether.wait_status("up");
    sshd.kill();
    tether.wait_status("down");

    let socket = tether.socket_path().display().to_string();
    let mut child = cli_command(&["check", "--socket", &socket, "--wait", "10s"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tether check");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Its first poll saw the target down: from here on it is waiting.
    assert_eq!(lines.next().unwrap().unwrap(), "down");
    let restarted = Instant::now();
    sshd.restart();
    let exited = wait_until(Duration::from_secs(10), || {
        child.try_wait().unwrap().is_some()
    });
    assert!(exited, "tether check --wait 10s still running");
    let status = child.wait().unwrap();
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    assert_eq!(
        status.code(),
        Some(0),
        "{rest:?}\n{:#}\n{}",
        tether.health().1,
        sshd.invocation_log()
    );
    assert_eq!(rest.last().map(String::as_str), Some("up"), "{rest:?}");
    eprintln!(
        "check --wait returned 0 {:?} after restart",
        restarted.elapsed()
    );
}

#[test]
fn nothing_listening_is_exit_two() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("absent.sock");
    let socket = socket.to_str().unwrap();
    for args in [
        vec!["check", "--socket", socket],
        vec!["check", "--socket", socket, "--ready"],
        vec!["check", "--socket", socket, "--target", TARGET],
    ] {
        let out = run_cli(&args, &[], None);
        assert_eq!(out.code, Some(2), "{args:?}: {out:?}");
        assert!(out.stderr.contains("absent.sock"), "{out:?}");
    }
    // A socket file that nobody listens on (a tether that was killed) is the same.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let out = run_cli(&["check", "--socket", stale.to_str().unwrap()], &[], None);
    assert_eq!(out.code, Some(2), "{out:?}");
}
