//! Proves the test fixture itself, without tether: the real OpenSSH client against the fixture
//! sshd, its forced-command shim, key and host-key checks, and the fault controls.

mod common;

use std::net::TcpStream;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::ports::ClosedPort;
use common::sshd::Sshd;
use common::wait_until;

fn run(mut cmd: std::process::Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("run ssh")
}

fn ssh_ok(sshd: &Sshd, remote: &[&str]) -> String {
    let out = run(sshd.ssh(sshd.ed25519_key(), remote));
    assert!(
        out.status.success(),
        "ssh {remote:?}: {out:?}\nsshd log:\n{}",
        sshd.log()
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn openssh_client_runs_a_turn_through_the_shim() {
    let started = Instant::now();
    let sshd = Sshd::start();
    eprintln!("fixture start took {:?}", started.elapsed());
    let uuid = "6f1c2d3e-0000-4000-8000-000000000001";
    let msg = B64.encode("Grüße");
    let started = Instant::now();
    let reply = ssh_ok(&sshd, &["run-turn", "s1", uuid, &msg]);
    eprintln!("one ssh run-turn took {:?}", started.elapsed());
    assert_eq!(reply, "reply: Grüße\n");
    assert_eq!(
        sshd.invocations(),
        vec![format!("run-turn s1 {uuid} {msg}")]
    );
    assert_eq!(sshd.count("run-turn", &["s1", uuid]), 1);
    assert_eq!(sshd.count("run-turn", &["s2"]), 0);
    let raw = sshd.invocation_log();
    let ts: f64 = raw.split(' ').next().unwrap().parse().expect("timestamp");
    assert!(ts > 1.0e9, "timestamp in {raw:?}");
}

#[test]
fn rsa_key_and_pem_form_are_authorized() {
    let sshd = Sshd::start();
    let rsa = sshd.rsa_key();
    let out = run(sshd.ssh(rsa, &["health", "s1"]));
    assert!(out.status.success(), "{out:?}\n{}", sshd.log());
    assert_eq!(out.stdout, b"ok\n");
    assert!(
        rsa.private_key
            .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----")
    );
    assert!(rsa.pem().starts_with("-----BEGIN RSA PRIVATE KEY-----"));
}

#[test]
fn the_test_shim_runs_each_of_its_verbs() {
    let sshd = Sshd::start();
    assert_eq!(ssh_ok(&sshd, &["health", "s1"]), "ok\n");
    assert_eq!(ssh_ok(&sshd, &["reset", "s1"]), "reset s1\n");
    assert_eq!(ssh_ok(&sshd, &["sleep", "0.1"]), "slept 0.1\n");
    assert_eq!(ssh_ok(&sshd, &["big", "100000"]).len(), 100_000);

    let mut cat = sshd.ssh(sshd.ed25519_key(), &["cat"]);
    let mut child = cat
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"line one\nline two\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.stdout, b"line one\nline two\n");

    let out = run(sshd.ssh(sshd.ed25519_key(), &["fail", "7"]));
    assert_eq!(out.status.code(), Some(7));
    assert!(!out.stderr.is_empty());
    let out = run(sshd.ssh(sshd.ed25519_key(), &["stderr", "to-stderr"]));
    assert_eq!(
        (out.status.code(), &out.stderr[..]),
        (Some(0), &b"to-stderr\n"[..])
    );
    let out = run(sshd.ssh(sshd.ed25519_key(), &["rm", "-rf", "/"]));
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "unknown verb\n");
    assert_eq!(sshd.invocations().len(), 8);
}

#[test]
fn unauthorized_key_and_wrong_host_key_are_refused() {
    let sshd = Sshd::start();
    let stranger = sshd.unauthorized_key();
    let out = run(sshd.ssh(&stranger, &["health", "s1"]));
    assert_eq!(out.status.code(), Some(255));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{out:?}"
    );

    let wrong = sshd.dir().join("wrong_known_hosts");
    std::fs::write(&wrong, sshd.wrong_known_hosts_line() + "\n").unwrap();
    let pin = format!("-oUserKnownHostsFile={}", wrong.display());
    let out = run(sshd.ssh_with(sshd.ed25519_key(), &[&pin], &["health", "s1"]));
    assert_eq!(out.status.code(), Some(255));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Host key verification failed"),
        "{out:?}"
    );
    assert!(sshd.invocations().is_empty());
}

#[test]
fn pty_and_remote_forwarding_are_refused_by_the_key_options() {
    let sshd = Sshd::start();
    let out = run(sshd.ssh_with(
        sshd.ed25519_key(),
        &["-tt", "-oLogLevel=INFO"],
        &["health", "s1"],
    ));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("PTY allocation request failed"),
        "{out:?}"
    );
    let forward = ["-oExitOnForwardFailure=yes", "-R", "0:127.0.0.1:1"];
    let out = run(sshd.ssh_with(sshd.ed25519_key(), &forward, &["sleep", "5"]));
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("forwarding failed"),
        "{out:?}"
    );
}

#[test]
fn stop_freezes_and_resume_thaws() {
    let sshd = Sshd::start();
    let banner = sshd.banner(Duration::from_secs(5)).expect("banner");
    assert!(banner.starts_with("SSH-2.0-OpenSSH"), "{banner}");
    sshd.stop();
    assert_eq!(sshd.banner(Duration::from_millis(300)), None);
    let started = Instant::now();
    let out = run(sshd.ssh_with(
        sshd.ed25519_key(),
        &["-oConnectTimeout=1"],
        &["health", "s1"],
    ));
    assert_eq!(out.status.code(), Some(255));
    assert!(started.elapsed() < Duration::from_secs(4));
    sshd.resume();
    assert!(sshd.banner(Duration::from_secs(5)).is_some());
    assert_eq!(ssh_ok(&sshd, &["health", "s1"]), "ok\n");
}

#[test]
fn restart_keeps_port_and_host_key() {
    let mut sshd = Sshd::start();
    let port = sshd.port();
    assert_eq!(ssh_ok(&sshd, &["health", "s1"]), "ok\n");
    sshd.kill();
    let refused = TcpStream::connect(sshd.addr()).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    sshd.restart();
    assert_eq!(sshd.port(), port);
    assert!(sshd.is_running());
    assert_eq!(ssh_ok(&sshd, &["health", "s2"]), "ok\n");
    assert_eq!(sshd.invocations(), ["health s1", "health s2"]);
}

#[test]
fn kill_sessions_drops_connections_but_keeps_listening() {
    let sshd = Sshd::start();
    let mut slow = sshd.ssh(sshd.ed25519_key(), &["sleep", "30"]);
    let mut slow = slow
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || sshd
        .count("sleep", &["30"])
        == 1));
    assert_eq!(sshd.connection_count(), 1);
    sshd.kill_sessions();
    assert!(wait_until(Duration::from_secs(5), || slow
        .try_wait()
        .unwrap()
        .is_some()));
    assert!(!slow.wait().unwrap().success());
    assert!(wait_until(Duration::from_secs(5), || sshd
        .connection_count()
        == 0));
    assert_eq!(ssh_ok(&sshd, &["health", "s1"]), "ok\n");
}

#[test]
fn builder_options_reach_sshd_config() {
    let sshd = Sshd::builder()
        .max_sessions(3)
        .max_startups("4")
        .config_line("ClientAliveInterval 7")
        .start();
    let cfg = std::fs::read_to_string(sshd.dir().join("sshd_config")).unwrap();
    for line in ["MaxSessions 3", "MaxStartups 4", "ClientAliveInterval 7"] {
        assert!(cfg.contains(line), "{line} missing from\n{cfg}");
    }
    assert_eq!(ssh_ok(&sshd, &["health", "s1"]), "ok\n");
}

#[test]
fn a_closed_port_refuses_connects_and_cannot_be_bound() {
    let closed = ClosedPort::new();
    let err = TcpStream::connect(("127.0.0.1", closed.port())).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    // The port stays taken while the value lives: nothing else can listen there.
    assert!(std::net::TcpListener::bind(("127.0.0.1", closed.port())).is_err());
}
