//! Logging in: key formats and sources, the legacy environment (docs/config.md), pinned host
//! keys, refused keys, and remotes that cannot be reached: nothing listening, a frozen laptop,
//! a peer that is not an SSH server. The private key never shows up anywhere.

mod common;

use std::io::Write;
use std::net::{Ipv4Addr, TcpListener};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::ports::ClosedPort;
use common::sshd::Sshd;
use common::tether::{Tether, TetherConfig, run_cli};
use serde_json::{Value, json};

fn health_call(tether: &Tether) -> (u16, Value) {
    tether.call(&json!({"verb": "health", "args": ["s1"]}))
}

/// The lines of base64 inside a PEM/OpenSSH key: what must never leak.
fn key_material(key: &str) -> Vec<String> {
    key.lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 20)
        .map(str::to_string)
        .collect()
}

fn assert_never_shown(key: &str, outputs: &[&str]) {
    for line in key_material(key) {
        for out in outputs {
            assert!(!out.contains(&line), "key material leaked into:\n{out}");
        }
    }
}

#[test]
fn rsa_keys_in_openssh_and_pem_form_sign_with_sha2() {
    let sshd = Sshd::start();
    let rsa = sshd.rsa_key();
    for key in [rsa.private_key.clone(), rsa.pem()] {
        let tether = TetherConfig::for_sshd(&sshd).key(&key).spawn();
        let (status, body) = health_call(&tether);
        assert_eq!(
            (status, body["stdout"].as_str()),
            (200, Some("ok\n")),
            "{body}\n{}",
            sshd.log()
        );
        assert_never_shown(&key, &[&tether.logs()]);
    }
}

#[test]
fn ecdsa_keys_log_in_too() {
    let sshd = Sshd::start();
    let ecdsa = sshd.authorized_key("client_ecdsa", "ecdsa");
    let tether = TetherConfig::for_sshd(&sshd)
        .key(&ecdsa.private_key)
        .spawn();
    let (status, body) = health_call(&tether);
    assert_eq!(
        (status, body["stdout"].as_str()),
        (200, Some("ok\n")),
        "{body}"
    );
}

#[test]
fn a_key_and_pinned_host_keys_from_files_log_in() {
    let sshd = Sshd::start();
    let tether = TetherConfig::for_sshd(&sshd)
        .unset("targets.laptop.private_key")
        .unset("targets.laptop.known_hosts")
        .set(
            "targets.laptop.private_key_file",
            sshd.ed25519_key().path.display().to_string(),
        )
        .set(
            "targets.laptop.known_hosts_file",
            sshd.known_hosts_file().display().to_string(),
        )
        .spawn();
    assert_eq!(health_call(&tether).0, 200);
}

#[test]
fn legacy_environment_with_a_base64_key_defines_target_paliadin() {
    let sshd = Sshd::start();
    let key = &sshd.ed25519_key().private_key;
    let port = sshd.port().to_string();
    let tether = TetherConfig::new()
        .without_file()
        .env("PALIADIN_REMOTE_HOST", "127.0.0.1")
        .env("PALIADIN_REMOTE_PORT", &port)
        .env("PALIADIN_REMOTE_USER", sshd.user())
        .env("PALIADIN_SSH_PRIVATE_KEY", &B64.encode(key))
        .env("PALIADIN_KNOWN_HOSTS", &sshd.known_hosts_line())
        .env("PALIADIN_TIMEOUT_S", "90")
        .spawn();
    let (status, body) = health_call(&tether);
    assert_eq!(
        (status, body["target"].as_str()),
        (200, Some("paliadin")),
        "{body}"
    );
    let msg = B64.encode("über die Brücke");
    let (_, body) = tether.call(&json!({"verb": "run-turn", "args": ["s", "u", msg]}));
    assert_eq!(body["stdout"], "reply: über die Brücke\n");
    assert_never_shown(key, &[&tether.logs()]);
    // `tether config` shows the same effective config, key redacted.
    let shown = run_cli(
        &["config"],
        &[
            ("PALIADIN_REMOTE_HOST", "127.0.0.1"),
            ("PALIADIN_REMOTE_PORT", &port),
            ("PALIADIN_REMOTE_USER", "m"),
            ("PALIADIN_SSH_PRIVATE_KEY", &key.replace('\n', "\\n")),
            ("PALIADIN_KNOWN_HOSTS", &sshd.known_hosts_line()),
            ("PALIADIN_TIMEOUT_S", "90"),
        ],
        None,
    );
    assert_eq!(shown.code, Some(0), "{shown:?}");
    assert!(
        shown.stdout.contains("[targets.paliadin]")
            && shown.stdout.contains("private_key = \"<redacted>\""),
        "{}",
        shown.stdout
    );
    assert!(
        shown.stdout.contains("timeout = \"1m 30s\""),
        "{}",
        shown.stdout
    );
    assert_never_shown(key, &[&shown.stdout, &shown.stderr]);
}

#[test]
fn a_host_key_that_is_not_pinned_is_refused_loudly() {
    let sshd = Sshd::start();
    let tether = TetherConfig::for_sshd(&sshd)
        .set("targets.laptop.known_hosts", sshd.wrong_known_hosts_line())
        .set("targets.laptop.probe.interval", "200ms")
        .spawn();
    let (status, body) = health_call(&tether);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (502, Some("host_key_mismatch")),
        "{body}"
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert_eq!(
        message.matches("SHA256:").count(),
        2,
        "names expected and received: {message}"
    );
    assert!(message.contains("known_hosts"), "{message}");
    assert!(
        sshd.invocations().is_empty(),
        "nothing may run on an unverified host"
    );
    tether.wait_target(Duration::from_secs(5), |t| {
        t["last_error"]["code"] == "host_key_mismatch"
    });
    let refused = tether
        .metrics()
        .sum("tether_connects_total", &[("result", "host_key_mismatch")]);
    assert!(refused >= 1.0, "refused connects are counted: {refused}");
}

#[test]
fn a_key_the_server_refuses_is_upstream_auth_failed() {
    let sshd = Sshd::start();
    let stranger = sshd.unauthorized_key();
    let tether = TetherConfig::for_sshd(&sshd)
        .key(&stranger.private_key)
        .spawn();
    let (status, body) = health_call(&tether);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (502, Some("upstream_auth_failed")),
        "{body}"
    );
    assert_eq!(body["error"]["retryable"], false);
    assert!(sshd.invocations().is_empty());
    assert_never_shown(&stranger.private_key, &[&tether.logs()]);
}

/// A loopback peer on the "SSH port" that sends `greeting` to every client, then closes or
/// keeps the connection open without another byte.
fn fake_ssh_peer(greeting: &'static [u8], close: bool) -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut s in listener.incoming().flatten() {
            let _ = s.write_all(greeting);
            if !close {
                held.push(s);
            }
        }
    });
    port
}

/// Whatever is (or is not) at the other end, a call that cannot get a connection answers
/// `upstream_unreachable` (503, retryable, nothing sent) within `connect_timeout`
/// (docs/config.md: it bounds TCP, banner, key exchange and authentication together).
#[test]
fn an_unreachable_remote_answers_upstream_unreachable_within_connect_timeout() {
    const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
    /// What a loaded 2-core machine adds to the bound.
    const SLACK: Duration = Duration::from_millis(600);
    let sshd = Sshd::start();
    let asleep = Sshd::start();
    asleep.stop();
    let closed = ClosedPort::new();
    let remotes: Vec<(&str, TetherConfig)> = vec![
        (
            "nothing listens",
            TetherConfig::for_sshd(&sshd).via(closed.port(), &sshd),
        ),
        (
            "a frozen laptop: TCP completes, nothing answers",
            TetherConfig::for_sshd(&asleep),
        ),
        (
            "a peer that sends garbage, then closes",
            TetherConfig::for_sshd(&sshd)
                .via(fake_ssh_peer(b"\x00\x01garbage\xff\r\n", true), &sshd),
        ),
        (
            "a peer that sends garbage, then nothing",
            TetherConfig::for_sshd(&sshd)
                .via(fake_ssh_peer(b"\x00\x01garbage\xff\r\n", false), &sshd),
        ),
        (
            "an HTTP server",
            TetherConfig::for_sshd(&sshd).via(
                fake_ssh_peer(b"HTTP/1.1 400 Bad Request\r\n\r\n", true),
                &sshd,
            ),
        ),
        (
            "a peer that sends an SSH banner, then nothing",
            TetherConfig::for_sshd(&sshd)
                .via(fake_ssh_peer(b"SSH-2.0-OpenSSH_9.9\r\n", false), &sshd),
        ),
        (
            "a peer that sends an SSH banner, then garbage",
            TetherConfig::for_sshd(&sshd).via(
                fake_ssh_peer(b"SSH-2.0-OpenSSH_9.9\r\n\x00\x00\x00\x05garbage", false),
                &sshd,
            ),
        ),
    ];
    let tethers: Vec<(&str, Tether)> = remotes
        .into_iter()
        .map(|(what, cfg)| {
            (
                what,
                cfg.set("targets.laptop.connect_timeout", "500ms").spawn(),
            )
        })
        .collect();
    // All at once: each call mostly waits on its connect, so they do not slow each other.
    let answers: Vec<_> = std::thread::scope(|scope| {
        let calls: Vec<_> = tethers
            .iter()
            .map(|(_, tether)| {
                scope.spawn(|| {
                    let started = Instant::now();
                    let answer = health_call(tether);
                    (answer, started.elapsed())
                })
            })
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    for ((what, tether), ((status, body), took)) in tethers.iter().zip(answers) {
        eprintln!("{what}: {status} in {took:?}");
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (503, Some("upstream_unreachable")),
            "{what}: {body}"
        );
        assert_eq!(body["error"]["retryable"], true, "{what}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}: {body}"
        );
        assert!(took < CONNECT_TIMEOUT + SLACK, "{what}: took {took:?}");
        assert!(
            !tether.logs().contains("panicked"),
            "{what}: {}",
            tether.logs()
        );
    }

    // The laptop wakes up: its tether finds it by itself.
    asleep.resume();
    let (_, woken) = &tethers[1];
    assert!(common::wait_until(Duration::from_secs(10), || health_call(
        woken
    )
    .0 == 200));
}
