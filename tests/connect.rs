//! Logging in: key formats and sources, the legacy environment, pinned host keys, refused
//! keys, and remotes that are not there or frozen. The private key never shows up anywhere.

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::ports::silent_listener;
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
fn key_and_known_hosts_from_files() {
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
    assert!(common::wait_until(Duration::from_secs(5), || {
        let (_, h) = tether.health();
        h["targets"]["laptop"]["last_error"]["code"] == "host_key_mismatch"
    }));
    let metrics = tether.admin_get("/metrics").text();
    assert!(
        metrics.contains("tether_connects_total{result=\"host_key_mismatch\",target=\"laptop\"}"),
        "{metrics}"
    );
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

#[test]
fn a_frozen_laptop_answers_within_connect_timeout() {
    let sshd = Sshd::start();
    sshd.stop();
    let tether = TetherConfig::for_sshd(&sshd)
        .set("targets.laptop.connect_timeout", "700ms")
        .spawn();
    let started = Instant::now();
    let (status, body) = health_call(&tether);
    let took = started.elapsed();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("upstream_unreachable")),
        "{body}"
    );
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    sshd.resume();
    assert!(common::wait_until(Duration::from_secs(10), || health_call(
        &tether
    )
    .0 == 200));
}

#[test]
fn a_peer_that_accepts_tcp_but_never_speaks_is_bounded_too() {
    let sshd = Sshd::start();
    let (_listener, port) = silent_listener();
    let tether = TetherConfig::for_sshd(&sshd)
        .set("targets.laptop.port", i64::from(port))
        .set(
            "targets.laptop.known_hosts",
            sshd.known_hosts_line()
                .replace(&sshd.port().to_string(), &port.to_string()),
        )
        .set("targets.laptop.connect_timeout", "500ms")
        .spawn();
    let started = Instant::now();
    let (status, body) = health_call(&tether);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("upstream_unreachable")),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1200),
        "{:?}",
        started.elapsed()
    );
}
