//! `tether doctor` against a real OpenSSH sshd: the good setup, and each misconfiguration
//! of the original rollout, found by its own check with a fix that names what to change
//! (docs/doctor.md).

mod common;

use std::process::Command;

use common::ports::ClosedPort;
use common::sshd::Sshd;
use common::tether::{CliOutput, TARGET, TetherConfig};
use serde_json::Value;

/// Every check, in the order doctor runs and prints them.
const CHECKS: [&str; 9] = [
    "config",
    "key",
    "tcp",
    "banner",
    "host_key",
    "auth",
    "forced_command",
    "sessions",
    "latency",
];

/// Runs `tether doctor --json` and returns its exit code and findings.
fn doctor_json(cfg: &TetherConfig) -> (Option<i32>, Vec<Value>) {
    let out = cfg.run("doctor", &["--json"]);
    let findings: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", out.stdout, out.stderr));
    (out.code, findings.as_array().expect("an array").clone())
}

fn finding<'a>(findings: &'a [Value], check: &str) -> &'a Value {
    findings
        .iter()
        .find(|f| f["check"] == check)
        .unwrap_or_else(|| panic!("no {check} finding in {findings:#?}"))
}

fn statuses(findings: &[Value]) -> Vec<(String, String)> {
    findings
        .iter()
        .map(|f| {
            (
                f["check"].as_str().unwrap().to_string(),
                f["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The `STATUS CHECK:` line of `check` in text output, and the lines under it.
fn text_block<'a>(out: &'a CliOutput, check: &str) -> Vec<&'a str> {
    let mut lines = out.stdout.lines().skip_while(|l| {
        !l.split_once(' ')
            .is_some_and(|(_, rest)| rest.starts_with(&format!("{check}:")))
    });
    let first = lines
        .next()
        .unwrap_or_else(|| panic!("no {check} line in:\n{}", out.stdout));
    let mut block = vec![first];
    block.extend(lines.take_while(|l| l.starts_with("  ")));
    block
}

/// `SHA256:…` of a public key file, as ssh-keygen prints it.
fn ssh_keygen_fingerprint(pub_file: &std::path::Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(pub_file)
        .output()
        .expect("ssh-keygen -lf");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .nth(1)
        .expect("a fingerprint")
        .to_string()
}

#[test]
fn a_good_setup_passes_every_check_and_finds_max_sessions_10() {
    let sshd = Sshd::start();
    let cfg = TetherConfig::for_sshd(&sshd);
    let out = cfg.run("doctor", &[]);
    println!("{}", out.stdout);
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.starts_with(&format!(
            "target {TARGET} ({}@127.0.0.1:{})\n",
            sshd.user(),
            sshd.port()
        )),
        "{}",
        out.stdout
    );
    for check in CHECKS {
        let line = text_block(&out, check)[0];
        assert!(line.starts_with(&format!("ok {check}: ")), "{line}");
    }
    assert!(!out.stdout.contains("fix:"), "{}", out.stdout);
    let sessions = text_block(&out, "sessions")[0];
    assert!(sessions.contains("MaxSessions is 10"), "{sessions}");
    let latency = text_block(&out, "latency")[0];
    assert!(
        latency.contains("p50") && latency.contains("max"),
        "{latency}"
    );

    // The key line to paste, complete: forced command, every restriction, our public key.
    let key = text_block(&out, "key");
    let public = sshd.ed25519_key().public_key.clone();
    // OpenSSH's `restrict`, an absolute path to tether (sshd runs the forced command through
    // the account's shell, with whatever PATH that has), and how to find the real path.
    let line = format!(
        "restrict,command=\"/usr/local/bin/tether shim\",from=\"127.0.0.1\",no-pty,\
         no-port-forwarding,no-agent-forwarding,no-X11-forwarding,no-user-rc {public}"
    );
    assert_eq!(key[1].trim(), line, "{key:?}");
    assert!(
        key.iter().any(|l| l.contains("command -v tether")),
        "{key:?}"
    );
    // The one command doctor runs: the probe verb, once, through the forced command.
    assert_eq!(sshd.invocations(), ["health"]);

    let (code, findings) = doctor_json(&cfg);
    assert_eq!(code, Some(0));
    let expected: Vec<(String, String)> = CHECKS
        .iter()
        .map(|c| (c.to_string(), "ok".to_string()))
        .collect();
    assert_eq!(statuses(&findings), expected);
    for f in &findings {
        let mut fields: Vec<&String> = f.as_object().unwrap().keys().collect();
        fields.sort();
        assert_eq!(
            fields,
            ["check", "finding", "fix", "status", "target"],
            "{f}"
        );
        assert_eq!(f["target"], TARGET);
        assert!(f["fix"].is_null(), "{f}");
    }
    assert!(
        finding(&findings, "key")["finding"]
            .as_str()
            .unwrap()
            .contains(&line)
    );
}

#[test]
fn a_wrong_pinned_host_key_fails_host_key_and_prints_the_servers_key_to_pin() {
    let sshd = Sshd::start();
    let cfg = TetherConfig::for_sshd(&sshd)
        .set("targets.laptop.known_hosts", sshd.wrong_known_hosts_line());
    let out = cfg.run("doctor", &[]);
    println!("{}", out.stdout);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    let block = text_block(&out, "host_key").join("\n");
    assert!(block.starts_with("fail host_key: "), "{block}");
    assert_eq!(
        block.matches("SHA256:").count(),
        3,
        "both fingerprints, then the one to verify: {block}"
    );
    assert!(
        block.contains(&sshd.known_hosts_line()),
        "the server's key as a known_hosts line: {block}"
    );
    let (_, findings) = doctor_json(&cfg);
    for check in ["auth", "forced_command", "sessions", "latency"] {
        assert_eq!(finding(&findings, check)["status"], "skip", "{check}");
    }
    assert!(
        sshd.invocations().is_empty(),
        "nothing runs on an unverified host"
    );
}

#[test]
fn a_key_the_laptop_does_not_know_fails_auth_with_its_fingerprint_and_the_from_hint() {
    let sshd = Sshd::start();
    let stranger = sshd.unauthorized_key();
    let cfg = TetherConfig::for_sshd(&sshd).key(&stranger.private_key);
    let out = cfg.run("doctor", &[]);
    println!("{}", out.stdout);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    let block = text_block(&out, "auth").join("\n");
    assert!(block.starts_with("fail auth: "), "{block}");
    let fp = ssh_keygen_fingerprint(&stranger.path.with_extension("pub"));
    assert!(block.contains(&fp), "{fp} missing: {block}");
    assert!(
        block.contains("from=") && block.contains("Docker"),
        "{block}"
    );
    assert!(block.contains("authorized_keys"), "{block}");
    let (_, findings) = doctor_json(&cfg);
    assert_eq!(finding(&findings, "host_key")["status"], "ok");
    assert_eq!(finding(&findings, "forced_command")["status"], "skip");
    let key_text = format!("{}{}", out.stdout, out.stderr);
    for secret_line in stranger
        .private_key
        .lines()
        .filter(|l| !l.starts_with("-----"))
    {
        assert!(!key_text.contains(secret_line), "the private key leaked");
    }
}

#[test]
fn a_plain_authorized_keys_line_fails_forced_command() {
    let sshd = Sshd::start();
    let plain = sshd.unrestricted_key("plain");
    let cfg = TetherConfig::for_sshd(&sshd).key(&plain.private_key);
    let out = cfg.run("doctor", &[]);
    println!("{}", out.stdout);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    let block = text_block(&out, "forced_command").join("\n");
    assert!(block.starts_with("fail forced_command: "), "{block}");
    assert!(
        block.contains("exit 127") && block.contains("not found"),
        "{block}"
    );
    assert!(block.contains("command="), "{block}");
    assert!(sshd.invocations().is_empty(), "the shim never ran");
    let (_, findings) = doctor_json(&cfg);
    assert_eq!(finding(&findings, "auth")["status"], "ok");
    assert_eq!(finding(&findings, "sessions")["status"], "ok");
}

#[test]
fn max_sessions_4_with_8_channels_per_connection_warns_with_the_fix_3() {
    let sshd = Sshd::builder().max_sessions(4).start();
    let cfg = TetherConfig::for_sshd(&sshd).set("targets.laptop.channels_per_connection", 8);
    let out = cfg.run("doctor", &[]);
    println!("{}", out.stdout);
    assert_eq!(
        out.code,
        Some(0),
        "a warning is not a failure: {}",
        out.stderr
    );
    let block = text_block(&out, "sessions");
    assert!(
        block[0].starts_with("warn sessions: the server's MaxSessions is 4"),
        "{block:?}"
    );
    assert!(
        block[1].starts_with("  fix: set channels_per_connection = 3 in [targets.laptop] of "),
        "{block:?}"
    );
}

#[test]
fn nothing_listening_fails_tcp_and_skips_what_depends_on_it() {
    let sshd = Sshd::start();
    let closed = ClosedPort::new();
    let cfg = TetherConfig::for_sshd(&sshd).via(closed.port(), &sshd);
    let out = cfg.run("doctor", &[]);
    println!("{}", out.stdout);
    assert_eq!(out.code, Some(1));
    let tcp = text_block(&out, "tcp");
    assert!(
        tcp[0].starts_with("fail tcp: ") && tcp[0].contains("refused"),
        "{tcp:?}"
    );
    assert!(tcp[1].contains("tailscale status"), "{tcp:?}");
    let key = text_block(&out, "key").join("\n");
    assert!(key.starts_with("ok key: "), "{key}");
    assert!(
        key.contains("from=\"<this host's tailnet address>\""),
        "a placeholder: {key}"
    );
    assert!(key.contains("tailscale ip -4"), "and a note: {key}");
    let (_, findings) = doctor_json(&cfg);
    let got = statuses(&findings);
    let want: Vec<(String, String)> = CHECKS
        .iter()
        .zip([
            "ok", "ok", "fail", "skip", "skip", "skip", "skip", "skip", "skip",
        ])
        .map(|(c, s)| (c.to_string(), s.to_string()))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn a_pem_key_cut_to_its_begin_line_by_an_env_loader_fails_key_and_says_so() {
    let sshd = Sshd::start();
    let key = &sshd.ed25519_key().private_key;
    let begin_line = key.lines().next().unwrap();
    let port = sshd.port().to_string();
    let known_hosts = sshd.known_hosts_line();
    let cfg = TetherConfig::new()
        .without_file()
        .env("PALIADIN_REMOTE_HOST", "127.0.0.1")
        .env("PALIADIN_REMOTE_PORT", &port)
        .env("PALIADIN_REMOTE_USER", sshd.user())
        .env("PALIADIN_KNOWN_HOSTS", &known_hosts)
        .env("PALIADIN_SSH_PRIVATE_KEY", begin_line);
    let out = cfg.run("doctor", &[]);
    println!("{}", out.stdout);
    assert_eq!(
        out.code,
        Some(1),
        "a key problem is the key check's, not exit 78: {}",
        out.stderr
    );
    let block = text_block(&out, "key").join("\n");
    assert!(block.starts_with("fail key: "), "{block}");
    assert!(
        block.contains("PEM/OpenSSH text") && block.contains("only its BEGIN line"),
        "{block}"
    );
    assert!(block.contains(".env"), "{block}");
    assert!(
        block.contains("fix: set PALIADIN_SSH_PRIVATE_KEY") && block.contains("base64 -w0"),
        "{block}"
    );
    let config = text_block(&out, "config")[0];
    assert!(
        config.contains("PALIADIN_SSH_PRIVATE_KEY"),
        "the sources are named: {config}"
    );
    let (_, findings) = doctor_json(&cfg);
    for (check, status) in [
        ("tcp", "ok"),
        ("banner", "ok"),
        ("host_key", "ok"),
        ("auth", "skip"),
    ] {
        assert_eq!(finding(&findings, check)["status"], status, "{check}");
    }
    assert!(
        finding(&findings, "auth")["finding"]
            .as_str()
            .unwrap()
            .contains("key")
    );

    // serve and config refuse the same value with the same explanation, as exit 78.
    let shown = cfg.run("config", &[]);
    assert_eq!(shown.code, Some(78));
    assert!(
        shown.stderr.contains("only its BEGIN line"),
        "{}",
        shown.stderr
    );
}

#[test]
fn an_invalid_config_is_exit_78_with_each_problem_as_a_config_finding() {
    let sshd = Sshd::start();
    let cfg = TetherConfig::for_sshd(&sshd)
        .set("targets.laptop.port", "twenty-two")
        .set("targets.laptop.colour", "red");
    let out = cfg.run("doctor", &[]);
    println!("{}", out.stdout);
    assert_eq!(out.code, Some(78), "{}", out.stderr);
    for key in ["targets.laptop.port", "targets.laptop.colour"] {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.starts_with(&format!("fail config: {key}"))),
            "{key}: {}",
            out.stdout
        );
        assert!(
            out.stdout.contains(&format!("fix: correct {key}")),
            "{}",
            out.stdout
        );
    }
    assert!(sshd.connection_count() == 0 && sshd.invocations().is_empty());
}

#[test]
fn a_target_that_is_not_configured_is_exit_78() {
    let sshd = Sshd::start();
    let out = TetherConfig::for_sshd(&sshd).run("doctor", &["--target", "nope"]);
    assert_eq!(out.code, Some(78), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("fail config: --target: no target named \"nope\"; configured: laptop"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_disabled_shim_probe_skips_forced_command_and_runs_nothing() {
    let sshd = Sshd::start();
    let cfg = TetherConfig::for_sshd(&sshd).set("targets.laptop.probe.shim_verb", "");
    let (code, findings) = doctor_json(&cfg);
    assert_eq!(code, Some(0));
    let forced = finding(&findings, "forced_command");
    assert_eq!(forced["status"], "skip", "{forced}");
    assert!(forced["finding"].as_str().unwrap().contains("shim_verb"));
    assert_eq!(finding(&findings, "sessions")["status"], "ok");
    assert!(sshd.invocations().is_empty());
}
