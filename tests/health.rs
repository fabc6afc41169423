//! `/v1/health` against a real sshd: status unknown → up, every field of the SPEC example with
//! real values on the socket and the admin port, reads that never reach the laptop, and the
//! shim probe (its interval, and a failing shim making the target degraded).

mod common;

use std::time::{Duration, Instant, SystemTime};

use common::sshd::Sshd;
use common::tether::{TARGET, Tether, TetherConfig};
use common::wait_until;
use serde_json::Value;

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

fn status(tether: &Tether) -> String {
    let (code, health) = tether.health();
    assert_eq!(code, 200, "{health}");
    target(&health)["status"]
        .as_str()
        .unwrap_or("?")
        .to_string()
}

/// Waits (bounded) until the target's health satisfies `cond`; returns that health.
fn wait_for(tether: &Tether, within: Duration, cond: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let held = wait_until(within, || {
        last = target(&tether.health().1);
        cond(&last)
    });
    assert!(
        held,
        "condition not met within {within:?}; last health: {last:#}"
    );
    last
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
    wait_for(&tether, Duration::from_secs(10), |t| t["status"] == "up");
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
    wait_for(&tether, Duration::from_secs(10), |t| t["status"] == "up");
}

#[test]
fn health_has_every_spec_field_with_real_values_on_socket_and_admin() {
    let mut sshd = Sshd::start();
    let tether = fast(&sshd)
        .set(&format!("{T}.max_connections"), 3_i64)
        .set(&format!("{T}.channels_per_connection"), 5_i64)
        .spawn();
    wait_for(&tether, Duration::from_secs(10), |t| {
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
    let before = target(&tether.health().1)["shim"].clone();
    let held = wait_until(Duration::from_secs(5), || {
        let now = target(&tether.health().1)["shim"].clone();
        now["age_ms"].as_u64().unwrap() >= before["age_ms"].as_u64().unwrap() + 300
    });
    assert!(held, "shim age_ms did not grow");
    let after = target(&tether.health().1)["shim"].clone();
    assert_eq!(after["checked_at"], before["checked_at"]);

    // A failure: last_error becomes an object with code, message and time.
    sshd.kill();
    let t = wait_for(&tether, Duration::from_secs(10), |t| {
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

/// Every field of the SPEC's example, with the types and values of a healthy target.
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
    wait_for(&tether, Duration::from_secs(10), |t| {
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
    wait_for(&tether, Duration::from_secs(10), |t| t["status"] == "up");
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
    let t = wait_for(&tether, Duration::from_secs(10), |t| {
        t["status"] == "degraded"
    });
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

    let metrics = tether.admin_get("/metrics").text();
    let line = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{target=\"{TARGET}\"}}")))
            .unwrap_or_else(|| panic!("{name} missing:\n{metrics}"))
            .to_string()
    };
    assert!(
        line("tether_target_shim_up").ends_with(" 0"),
        "{}",
        line("tether_target_shim_up")
    );
    assert!(
        line("tether_target_up").ends_with(" 1"),
        "{}",
        line("tether_target_up")
    );

    // Calls still work: degraded is about the shim probe, not the connection.
    let (code, body) = tether.call(&serde_json::json!({"verb": "health", "args": ["s1"]}));
    assert_eq!(
        (code, body["stdout"].as_str()),
        (200, Some("ok\n")),
        "{body}"
    );
    assert_eq!(status(&tether), "degraded");
}

/// Parses `2026-11-21T10:00:00.123Z` (or with an offset) strictly, checks it lies within a
/// minute of now, and returns it as Unix seconds.
fn assert_recent_rfc3339(v: &Value) -> f64 {
    let s = v.as_str().unwrap_or_else(|| panic!("not a string: {v}"));
    let t = parse_rfc3339(s).unwrap_or_else(|| panic!("not RFC 3339: {s:?}"));
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

fn parse_rfc3339(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut frac = 0.0;
    if let Some(r) = rest.strip_prefix('.') {
        let digits = r.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        frac = format!("0.{}", &r[..digits]).parse().ok()?;
        rest = &r[digits..];
    }
    let offset = match rest.as_bytes() {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let digits = [*h1, *h2, *m1, *m2];
            if !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let d = |i: usize| i64::from(digits[i] - b'0');
            let m = (d(0) * 10 + d(1)) * 60 + d(2) * 10 + d(3);
            if *sign == b'-' { -m } else { m }
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + mi * 60 + sec - offset * 60) as f64 + frac)
}

#[test]
fn rfc3339_parser_accepts_what_it_should() {
    assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0.0));
    assert_eq!(parse_rfc3339("2026-11-21T10:00:00Z"), Some(1_795_255_200.0));
    assert_eq!(
        parse_rfc3339("2026-11-21T10:00:00.5Z"),
        Some(1_795_255_200.5)
    );
    assert_eq!(
        parse_rfc3339("2026-11-21T11:00:00+01:00"),
        Some(1_795_255_200.0)
    );
    for bad in [
        "2026-11-21 10:00:00Z",
        "2026-11-21T10:00:00",
        "2026-13-21T10:00:00Z",
        "x",
    ] {
        assert_eq!(parse_rfc3339(bad), None, "{bad}");
    }
}
