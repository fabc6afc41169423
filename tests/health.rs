//! `/v1/health` against a real sshd (docs/rpc.md, "GET /v1/health"): status unknown → up,
//! every field of the documented example with real values on the socket and the admin port,
//! reads that never reach the laptop, and the shim probe (its interval, and a failing shim
//! making the target degraded).

mod common;

use std::time::{Duration, Instant, SystemTime};

use common::sshd::Sshd;
use common::tether::{TARGET, TetherConfig};
use common::wait_until;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const T: &str = "targets.laptop";

/// Probes every 200 ms; the shim probe once at start, then not again for an hour.
fn fast(sshd: &Sshd) -> TetherConfig {
    TetherConfig::for_sshd(sshd)
        .set(&format!("{T}.probe.interval"), "200ms")
        .set(&format!("{T}.probe.shim_interval"), "1h")
}

fn target(health: &Value) -> Value {
    health["targets"][TARGET].clone()
}

#[test]
fn status_starts_unknown_or_up_and_becomes_up() {
    let sshd = Sshd::start();
    let tether = fast(&sshd).spawn();
    let (_, first) = tether.health();
    let first_status = target(&first)["status"].as_str().unwrap().to_string();
    assert!(
        ["unknown", "up"].contains(&first_status.as_str()),
        "first status {first_status}: {first:#}"
    );
    if first_status == "unknown" {
        assert_eq!(target(&first)["transport"], Value::Null, "{first:#}");
        assert_eq!(target(&first)["last_ok_at"], Value::Null, "{first:#}");
    }
    tether.wait_target(Duration::from_secs(10), |t| t["status"] == "up");
    assert_eq!(tether.health().1["status"], "up");
}

/// With the laptop frozen, the first probe hangs for connect_timeout: the status is unknown
/// until a probe has an answer, and one failure below fail_threshold does not decide it.
#[test]
fn status_is_unknown_until_a_probe_answers() {
    let sshd = Sshd::start();
    sshd.stop();
    let started = Instant::now();
    let tether = fast(&sshd)
        .set(&format!("{T}.connect_timeout"), "1s")
        .set(&format!("{T}.probe.fail_threshold"), 5_i64)
        .spawn();
    let (_, health) = tether.health();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "spawn too slow to see the first probe pending"
    );
    let t = target(&health);
    assert_eq!(t["status"], "unknown", "{health:#}");
    assert_eq!(health["status"], "unknown", "{health:#}");
    assert_eq!(t["transport"], Value::Null);
    assert_eq!(t["shim"], Value::Null);
    assert_eq!(t["last_ok_at"], Value::Null);
    sshd.resume();
    tether.wait_target(Duration::from_secs(10), |t| t["status"] == "up");
}

#[test]
fn health_has_every_documented_field_with_real_values_on_socket_and_admin() {
    let mut sshd = Sshd::start();
    let tether = fast(&sshd)
        .set(&format!("{T}.max_connections"), 3_i64)
        .set(&format!("{T}.channels_per_connection"), 5_i64)
        .spawn();
    tether.wait_target(Duration::from_secs(10), |t| {
        t["status"] == "up" && t["shim"].is_object()
    });

    let (code, socket) = tether.health();
    assert_eq!(code, 200);
    let admin = tether.admin_get("/v1/health");
    assert_eq!(admin.status, 200);
    assert!(
        admin
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{:?}",
        admin.headers
    );
    for (place, health) in [("socket", &socket), ("admin", &admin.json())] {
        check_up_shape(place, health, 15);
    }

    // The shim ran once at start (shim_interval 1h): its checked_at stays, its age grows.
    let before = tether.target_health()["shim"].clone();
    let after = tether.wait_target(Duration::from_secs(5), |t| {
        t["shim"]["age_ms"].as_u64().unwrap() >= before["age_ms"].as_u64().unwrap() + 300
    })["shim"]
        .clone();
    assert_eq!(after["checked_at"], before["checked_at"]);

    // A failure: last_error becomes an object with code, message and time.
    sshd.kill();
    let t = tether.wait_target(Duration::from_secs(10), |t| {
        t["last_error"].is_object() && t["consecutive_failures"].as_u64() >= Some(1)
    });
    let err = &t["last_error"];
    let keys: Vec<&str> = err
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["at", "code", "message"], "{err}");
    // The first failure is the live connection dying under a ping, or the reconnect refused.
    assert!(
        ["connection_lost", "upstream_unreachable"].contains(&err["code"].as_str().unwrap()),
        "{err}"
    );
    assert!(!err["message"].as_str().unwrap().is_empty(), "{err}");
    assert_recent_rfc3339(&err["at"]);
    assert_eq!(t["transport"]["ok"], false, "{t:#}");
    assert!(t["last_ok_at"].is_string(), "last_ok_at kept: {t:#}");
    let admin = target(&tether.admin_get("/v1/health").json());
    assert!(admin["last_error"]["code"].is_string(), "{admin:#}");
}

/// Every field of the example in docs/rpc.md, with the types and values of a healthy target.
fn check_up_shape(place: &str, health: &Value, capacity: u64) {
    let top: Vec<&str> = health
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(top, ["status", "targets"], "{place}: {health:#}");
    assert_eq!(health["status"], "up", "{place}");
    let t = target(health);
    let mut keys: Vec<&str> = t.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "channels_capacity",
            "channels_in_use",
            "connections",
            "consecutive_failures",
            "last_error",
            "last_ok_at",
            "shim",
            "status",
            "transport",
            "waiting"
        ],
        "{place}"
    );
    assert_eq!(t["status"], "up", "{place}");
    assert!(t["connections"].as_u64() >= Some(1), "{place}: {t:#}");
    assert!(t["connections"].as_u64() <= Some(3), "{place}: {t:#}");
    assert_eq!(t["channels_in_use"].as_u64(), Some(0), "{place}");
    assert_eq!(t["channels_capacity"].as_u64(), Some(capacity), "{place}");
    assert_eq!(t["waiting"].as_u64(), Some(0), "{place}");
    assert_eq!(t["consecutive_failures"].as_u64(), Some(0), "{place}");
    assert_eq!(t["last_error"], Value::Null, "{place}");
    assert_recent_rfc3339(&t["last_ok_at"]);
    for kind in ["transport", "shim"] {
        let p = &t[kind];
        let mut keys: Vec<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["age_ms", "checked_at", "latency_ms", "ok"],
            "{place} {kind}"
        );
        assert_eq!(p["ok"], true, "{place} {kind}");
        let latency = p["latency_ms"].as_f64().expect("latency_ms is a number");
        assert!(latency > 0.0 && latency < 5000.0, "{place} {kind}: {p}");
        assert!(p["age_ms"].is_u64(), "{place} {kind}: {p}");
        let checked = assert_recent_rfc3339(&p["checked_at"]);
        // age_ms agrees with checked_at (to the clock's and rounding's slack).
        let by_clock = unix_now() - checked;
        let age = p["age_ms"].as_u64().unwrap() as f64 / 1000.0;
        assert!(
            (by_clock - age).abs() < 1.0,
            "{place} {kind}: {p}, clock says {by_clock}s"
        );
    }
    // The transport probe runs every 200 ms: its age stays small.
    assert!(
        t["transport"]["age_ms"].as_u64() < Some(2000),
        "{place}: {t:#}"
    );
}

#[test]
fn a_thousand_health_reads_never_reach_the_laptop() {
    let sshd = Sshd::start();
    let tether = fast(&sshd).spawn();
    tether.wait_target(Duration::from_secs(10), |t| {
        t["status"] == "up" && t["shim"].is_object()
    });
    let before = sshd.invocations();
    let connections = sshd.connection_count();
    let mut took = Vec::with_capacity(1000);
    for i in 0..1000 {
        let started = Instant::now();
        let (code, health) = if i % 2 == 0 {
            tether.health()
        } else {
            let r = tether.admin_get("/v1/health");
            (r.status, r.json())
        };
        took.push(started.elapsed());
        assert_eq!(code, 200);
        assert_eq!(health["status"], "up");
    }
    assert_eq!(
        sshd.invocations(),
        before,
        "health reads ran something remotely"
    );
    assert_eq!(
        sshd.connection_count(),
        connections,
        "health reads opened connections"
    );
    took.sort_unstable();
    let (p50, p99) = (took[499], took[989]);
    eprintln!(
        "health read (request + response, new connection each): p50 {p50:?}, p99 {p99:?}, max {:?}",
        took[999]
    );
    // Loose: a read is answered from memory; only a gross regression fails this.
    assert!(p50 < Duration::from_millis(50), "p50 {p50:?}");
}

#[test]
fn shim_probe_runs_at_its_interval() {
    let sshd = Sshd::start();
    let tether = TetherConfig::for_sshd(&sshd)
        .set(&format!("{T}.probe.interval"), "250ms")
        .set(&format!("{T}.probe.shim_interval"), "500ms")
        .spawn();
    tether.wait_target(Duration::from_secs(10), |t| t["status"] == "up");
    let first = sshd.count("health", &[]);
    let started = Instant::now();
    let six = wait_until(Duration::from_secs(8), || {
        sshd.count("health", &[]) >= first + 6
    });
    let elapsed = started.elapsed();
    assert!(
        six,
        "fewer than 6 shim probes in {elapsed:?}: {:?}",
        sshd.invocations()
    );
    eprintln!("6 shim probes took {elapsed:?}");

    let times: Vec<f64> = sshd
        .invocation_log()
        .lines()
        .filter(|l| l.split(' ').nth(1) == Some("health") && l.split(' ').count() == 2)
        .map(|l| l.split(' ').next().unwrap().parse().unwrap())
        .collect();
    // The first shim probe waits for the first connection; the schedule counts from its tick.
    let mut gaps: Vec<f64> = times[1..].windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort_by(f64::total_cmp);
    let median = gaps[gaps.len() / 2];
    eprintln!("shim probe gaps (s): {gaps:.3?}");
    assert!(gaps[0] > 0.4, "a shim probe came early: {gaps:.3?}");
    // probe.interval 250 ms divides shim_interval 500 ms: the shim should not slip a tick.
    assert!(
        median < 0.65,
        "median gap {median:.3} s for shim_interval 500ms: {gaps:.3?}"
    );
}

#[test]
fn failing_shim_makes_the_target_degraded() {
    let sshd = Sshd::start();
    let tether = TetherConfig::for_sshd(&sshd)
        .set(&format!("{T}.probe.interval"), "200ms")
        .set(&format!("{T}.probe.shim_interval"), "300ms")
        .set(&format!("{T}.probe.shim_verb"), "fail")
        .set(&format!("{T}.probe.shim_args"), vec!["3"])
        .merge("[verbs.health]\ncache_ttl = \"2s\"\n[verbs.fail]\ntimeout = \"5s\"")
        .spawn();
    let t = tether.wait_target(Duration::from_secs(10), |t| t["status"] == "degraded");
    assert_eq!(tether.health().1["status"], "degraded");
    assert_eq!(t["transport"]["ok"], true, "{t:#}");
    assert_eq!(t["shim"]["ok"], false, "{t:#}");
    assert_eq!(t["consecutive_failures"], 0, "transport is fine: {t:#}");
    let err = &t["last_error"];
    assert!(err["code"].is_string(), "{t:#}");
    let message = err["message"].as_str().unwrap();
    assert!(
        message.contains("fail"),
        "message names the shim verb: {message}"
    );
    assert!(
        message.contains('3'),
        "message gives the exit status: {message}"
    );
    assert!(sshd.count("fail", &["3"]) >= 1);

    let metrics = tether.metrics();
    let target = [("target", TARGET)];
    assert_eq!(metrics.value("tether_target_shim_up", &target), 0.0);
    assert_eq!(metrics.value("tether_target_up", &target), 1.0);

    // Calls still work: degraded is about the shim probe, not the connection.
    let (code, body) = tether.call(&serde_json::json!({"verb": "health", "args": ["s1"]}));
    assert_eq!(
        (code, body["stdout"].as_str()),
        (200, Some("ok\n")),
        "{body}"
    );
    assert_eq!(tether.status(), "degraded");
}

/// Parses an RFC 3339 time (`2026-11-21T10:00:00.123Z`), checks it lies within a minute of
/// now, and returns it as Unix seconds.
fn assert_recent_rfc3339(v: &Value) -> f64 {
    let s = v.as_str().unwrap_or_else(|| panic!("not a string: {v}"));
    let t = OffsetDateTime::parse(s, &Rfc3339).unwrap_or_else(|e| panic!("{s:?}: {e}"));
    let t = t.unix_timestamp_nanos() as f64 / 1e9;
    let now = unix_now();
    assert!((now - t).abs() < 60.0, "{s} is not near now ({now})");
    t
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}
