//! Configuration errors (docs/config.md, "Validation"): every problem at once, each naming its
//! key, exit 78, nothing bound.

mod common;

use common::sshd::Sshd;
use common::tether::{TetherConfig, run_cli};

fn serve_fails(cfg: TetherConfig) -> String {
    let mut tether = cfg.spawn_unready();
    let status = tether
        .wait_exit(std::time::Duration::from_secs(10))
        .expect("tether should refuse to start");
    assert_eq!(status.code(), Some(78), "{}", tether.logs());
    assert!(
        !tether.socket_path().exists(),
        "nothing may be bound on a config error"
    );
    tether.logs()
}

#[test]
fn every_problem_is_reported_at_once_naming_its_key() {
    let sshd = Sshd::start();
    let logs = serve_fails(
        TetherConfig::for_sshd(&sshd)
            .set("server.socket_mode", "rw-rw----")
            .set("server.shutdown_grace", "soon")
            .set("server.colour", "blue")
            .set("targets.laptop.port", "ssh")
            .set("targets.laptop.max_connections", 0)
            .set("targets.laptop.probe.shim_verb", "nope")
            .set("targets.Bad Name.host", "h")
            .merge("[verbs.\"rm -rf\"]\ntimeout = \"1s\"\n[verbs.health]\ntimeout = \"0s\"\n")
            .env("TETHER_SERVER__BOGUS", "1"),
    );
    for key in [
        "server.socket_mode",
        "server.shutdown_grace",
        "server.colour",
        "server.bogus",
        "targets.laptop.port",
        "targets.laptop.max_connections",
        "targets.laptop.probe.shim_verb",
        "targets.Bad Name: a target name",
        "targets.Bad Name.user: required",
        "targets.Bad Name.private_key: required",
        "verbs.rm -rf",
        "verbs.health.timeout",
        "server.default_target: required when more than one target",
    ] {
        assert!(logs.contains(key), "{key} not named in:\n{logs}");
    }
}

#[test]
fn a_passphrase_protected_key_is_a_clear_startup_error() {
    let sshd = Sshd::start();
    let key = sshd.ed25519_key();
    let locked = key.path.with_extension("locked");
    std::fs::copy(&key.path, &locked).unwrap();
    let ok = std::process::Command::new("ssh-keygen")
        .args(["-q", "-p", "-P", "", "-N", "secret-passphrase", "-f"])
        .arg(&locked)
        .status()
        .unwrap();
    assert!(ok.success());
    let text = std::fs::read_to_string(&locked).unwrap();
    let logs = serve_fails(TetherConfig::for_sshd(&sshd).key(&text));
    assert!(
        logs.contains("targets.laptop.private_key: the private key is protected by a passphrase"),
        "{logs}"
    );
}

#[test]
fn the_example_config_is_valid_with_a_target_from_the_environment() {
    let sshd = Sshd::start();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/tether.toml");
    let port = sshd.port().to_string();
    let out = run_cli(
        &["config", "--config", example],
        &[
            ("TETHER_TARGETS__MRIVER__HOST", "127.0.0.1"),
            ("TETHER_TARGETS__MRIVER__PORT", &port),
            ("TETHER_TARGETS__MRIVER__USER", "m"),
            (
                "TETHER_TARGETS__MRIVER__PRIVATE_KEY",
                &sshd.ed25519_key().private_key,
            ),
            (
                "TETHER_TARGETS__MRIVER__KNOWN_HOSTS",
                &sshd.known_hosts_line(),
            ),
        ],
        None,
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("[targets.mriver]") && out.stdout.contains("<redacted>"));
    // Its commented-out target, uncommented (one key source each), is valid as well.
    let text = std::fs::read_to_string(example).unwrap();
    let key_file = sshd.ed25519_key().path.display().to_string();
    let uncommented: String = text
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest) if rest.starts_with("[targets") || rest.split(' ').nth(1) == Some("=") => {
                rest.to_string()
            }
            _ => line.to_string(),
        })
        .filter(|l| !l.starts_with("private_key = ") && !l.starts_with("known_hosts_file = "))
        .map(|l| l.replace("/run/secrets/tether_key", &key_file))
        .collect::<Vec<_>>()
        .join("\n");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.toml");
    std::fs::write(&file, uncommented).unwrap();
    let out = run_cli(&["config", "--config", file.to_str().unwrap()], &[], None);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout.contains("host = \"100.99.98.203\""),
        "{}",
        out.stdout
    );
}

#[test]
fn a_missing_config_file_is_named() {
    let out = run_cli(
        &["serve", "--config", "/nonexistent/tether.toml"],
        &[],
        None,
    );
    assert_eq!(out.code, Some(78));
    assert!(
        out.stderr
            .contains("/nonexistent/tether.toml does not exist"),
        "{}",
        out.stderr
    );
}
