//! A server announcing `SSH-2.0-Tailscale` (it accepts any key and runs commands in a shell,
//! ignoring the forced command) is refused before authentication, by `serve`, `call` and
//! `doctor`, unless the target sets `allow_tailscale_ssh = true` (docs/config.md,
//! docs/doctor.md). Nothing is ever executed there.

mod common;

use std::time::{Duration, Instant};

use common::fake_tailscale::FakeTailscale;
use common::sshd::Sshd;
use common::tether::{TARGET, TetherConfig};
use serde_json::json;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A config for target [`TARGET`] pointing at the stand-in, with a key it never checks.
fn config_for(fake: &FakeTailscale, sshd: &Sshd) -> TetherConfig {
    TetherConfig::for_sshd(sshd)
        .set("targets.laptop.port", i64::from(fake.port()))
        .set("targets.laptop.known_hosts", fake.known_hosts_line())
        .set("targets.laptop.connect_timeout", "2s")
}

#[test]
fn doctor_fails_the_banner_check_and_explains_and_runs_nothing() {
    let sshd = Sshd::start();
    let fake = FakeTailscale::start();
    let cfg = config_for(&fake, &sshd);
    let out = cfg.run("doctor", &[]);
    println!("{}", out.stdout);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    let banner = out
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("fail banner: "))
        .take(2)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        banner.contains("\"SSH-2.0-Tailscale\"") && banner.contains("forced command"),
        "{banner}"
    );
    assert!(
        banner.contains("fix: run OpenSSH on another port (e.g. 22022"),
        "{banner}"
    );
    assert!(banner.contains("allow_tailscale_ssh = true"), "{banner}");
    for check in ["host_key", "auth", "forced_command", "sessions", "latency"] {
        assert!(
            out.stdout.contains(&format!("\nskip {check}: ")),
            "{check}: {}",
            out.stdout
        );
    }
    assert_eq!(fake.connections(), 1, "doctor did reach the stand-in");
    assert!(fake.commands().is_empty(), "{:?}", fake.commands());
}

#[test]
fn serve_refuses_it_with_upstream_misconfigured_within_connect_timeout() {
    let sshd = Sshd::start();
    let fake = FakeTailscale::start();
    let tether = config_for(&fake, &sshd)
        .set("targets.laptop.probe.interval", "300ms")
        .spawn();
    let started = Instant::now();
    let (status, body) = tether.call(&json!({"verb": "health", "args": ["s1"]}));
    let took = started.elapsed();
    eprintln!("a Tailscale SSH server was refused in {took:?}: {status} {body}");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (502, Some("upstream_misconfigured")),
        "{body}"
    );
    assert!(took < CONNECT_TIMEOUT, "took {took:?}");
    assert_eq!(body["error"]["retryable"], false);
    let message = body["error"]["message"].as_str().unwrap();
    for words in [
        "Tailscale SSH",
        "forced command",
        "22022",
        "allow_tailscale_ssh = true",
    ] {
        assert!(message.contains(words), "{words:?} missing: {message}");
    }

    let cli = tether.cli("call", &["health", "s1"]);
    assert_eq!(cli.code, Some(255), "{cli:?}");
    assert!(
        cli.stderr.starts_with("tether: upstream_misconfigured: "),
        "{}",
        cli.stderr
    );

    tether.wait_target(Duration::from_secs(10), |t| {
        t["last_error"]["code"] == "upstream_misconfigured"
    });
    let counted = tether.metric(&format!(
        "tether_connects_total{{result=\"upstream_misconfigured\",target=\"{TARGET}\"}}"
    ));
    assert!(counted >= 1.0, "{counted}");
    let page = tether.admin_get("/").text();
    assert!(
        page.contains("upstream_misconfigured"),
        "status page: {page}"
    );
    let logs = tether.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("ERROR") && l.contains("upstream_misconfigured")),
        "{logs}"
    );

    // Known down, the target still answers with the reason, not upstream_unreachable.
    tether.wait_status("down");
    let (status, body) = tether.call(&json!({"verb": "health", "args": ["s1"]}));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (502, Some("upstream_misconfigured")),
        "{body}"
    );
    assert!(fake.connections() >= 1);
    assert!(fake.commands().is_empty(), "{:?}", fake.commands());
}

#[test]
fn allow_tailscale_ssh_lets_it_through() {
    let sshd = Sshd::start();
    let fake = FakeTailscale::start();
    let cfg = config_for(&fake, &sshd).set("targets.laptop.allow_tailscale_ssh", true);
    let out = cfg.run("doctor", &[]);
    println!("{}", out.stdout);
    assert_eq!(out.code, Some(1), "forced_command fails: {}", out.stderr);
    assert!(
        out.stdout.contains("\nwarn banner: SSH-2.0-Tailscale"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("\nfail forced_command: `health` ran in a login shell"),
        "{}",
        out.stdout
    );

    let (status, body) = cfg.spawn().call(&json!({"verb": "health", "args": ["s1"]}));
    assert_eq!(status, 200, "{body}");
    // The stand-in ran the verb in its shell, as Tailscale SSH would.
    assert_eq!(body["exit_status"], 127, "{body}");
    assert!(
        body["stderr"].as_str().unwrap().contains("not found"),
        "{body}"
    );
    assert!(
        fake.commands().contains(&"health s1".to_string()),
        "{:?}",
        fake.commands()
    );
}
