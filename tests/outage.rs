//! The laptop is switched off and on again (sshd killed: connects are refused, then
//! restarted). The target turns `down` after fail_threshold failed probes (docs/rpc.md,
//! "Status meanings"), calls to it fail fast with `upstream_unreachable` (the CLI exits 255),
//! and tether finds the laptop again by itself. A laptop that freezes instead (asleep: no FIN,
//! no RST) is in half_open.rs.

mod common;

use std::time::{Duration, Instant};

use common::sshd::Sshd;
use common::tether::{TARGET, Tether, TetherConfig};
use common::wait_until;
use serde_json::{Value, json};

const T: &str = "targets.laptop";
const INTERVAL: Duration = Duration::from_millis(200);
const TIMEOUT: Duration = Duration::from_millis(500);
const FAIL_THRESHOLD: u32 = 2;

fn spawn(sshd: &Sshd) -> Tether {
    TetherConfig::for_sshd(sshd)
        .set(&format!("{T}.probe.interval"), "200ms")
        .set(&format!("{T}.probe.timeout"), "500ms")
        .set(&format!("{T}.connect_timeout"), "500ms")
        .set(
            &format!("{T}.probe.fail_threshold"),
            i64::from(FAIL_THRESHOLD),
        )
        // These tests are about the transport: no shim probe (a slow one under load would
        // make the target degraded, not up).
        .set(&format!("{T}.probe.shim_verb"), "")
        .spawn()
}

/// fail_threshold failed probes, each up to an interval plus the longer of probe.timeout and
/// connect_timeout (both 500 ms here), plus slack for a loaded machine.
fn down_bound() -> Duration {
    (INTERVAL + TIMEOUT) * FAIL_THRESHOLD + Duration::from_millis(1500)
}

/// `reset` has no cache_ttl, so every call really tries the laptop.
fn reset(tether: &Tether) -> (u16, Value, Duration) {
    let started = Instant::now();
    let (code, body) = tether.call(&json!({"verb": "reset", "args": ["s1"]}));
    (code, body, started.elapsed())
}

fn assert_calls_fail_fast(tether: &Tether) -> Duration {
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let (code, body, took) = reset(tether);
        assert_eq!(code, 503, "{body}");
        assert_eq!(body["error"]["code"], "upstream_unreachable", "{body}");
        assert_eq!(body["error"]["retryable"], true, "{body}");
        // The verb's timeout is 15 s; a call to a down target must not wait for it.
        assert!(took < Duration::from_secs(1), "call took {took:?}: {body}");
        slowest = slowest.max(took);
    }
    let cli = tether.cli("call", &["reset", "s1"]);
    assert_eq!(cli.code, Some(255), "{cli:?}");
    assert!(
        cli.stderr.starts_with("tether: upstream_unreachable: "),
        "{cli:?}"
    );
    slowest
}

fn assert_call_works(tether: &Tether) {
    let (code, body, _) = reset(tether);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["exit_status"], 0, "{body}");
    assert_eq!(body["stdout"], "reset s1\n", "{body}");
}

#[test]
fn killed_laptop_goes_down_fails_fast_and_comes_back_after_restart() {
    let mut sshd = Sshd::start();
    let tether = spawn(&sshd);
    tether.wait_status("up");
    assert_call_works(&tether);

    sshd.kill();
    let to_down = tether.wait_status_within("down", down_bound());
    let slowest = assert_calls_fail_fast(&tether);
    let health = tether.health().1;
    assert_eq!(health["status"], "down");
    let t = &health["targets"][TARGET];
    assert!(t["consecutive_failures"].as_u64() >= Some(u64::from(FAIL_THRESHOLD)));
    assert_eq!(t["connections"], 0, "{t:#}");

    let invocations = sshd.count("reset", &["s1"]);
    sshd.restart();
    let to_up = tether.wait_status("up");
    assert_call_works(&tether);
    assert_eq!(
        sshd.count("reset", &["s1"]),
        invocations + 1,
        "failed calls ran nothing"
    );
    eprintln!(
        "kill: down after {to_down:?} (bound {:?}), slowest fail-fast call {slowest:?}, up {to_up:?} after restart",
        down_bound()
    );
}

/// A shim probe cut off by the outage fails; once the laptop is back that verdict is stale,
/// and must not keep the target degraded until the next shim_interval (1 h here).
#[test]
fn a_shim_probe_failed_by_the_outage_does_not_outlive_it() {
    let mut sshd = Sshd::start();
    let tether = TetherConfig::for_sshd(&sshd)
        .set(&format!("{T}.probe.interval"), "200ms")
        .set(&format!("{T}.probe.timeout"), "2s")
        .set(&format!("{T}.connect_timeout"), "500ms")
        .set(&format!("{T}.probe.shim_interval"), "1h")
        .set(&format!("{T}.probe.shim_verb"), "sleep")
        .set(&format!("{T}.probe.shim_args"), vec!["0.5"])
        .merge("[verbs.sleep]\ntimeout = \"5s\"\n[verbs.reset]\ntimeout = \"5s\"")
        .spawn();
    // The first shim probe is running on the laptop: switch the laptop off under it.
    assert!(wait_until(Duration::from_secs(10), || sshd
        .count("sleep", &["0.5"])
        == 1));
    sshd.kill();
    let t = tether.wait_target(Duration::from_secs(10), |t| t["status"] == "down");
    assert_eq!(t["shim"]["ok"], false, "the shim probe was cut off: {t:#}");

    sshd.restart();
    let to_up = tether.wait_status("up");
    let t = tether.target_health();
    assert_eq!(t["shim"]["ok"], true, "{t:#}");
    assert_call_works(&tether);
    eprintln!("up {to_up:?} after restart, shim re-checked");
}
