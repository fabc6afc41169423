//! A half-open connection: the laptop froze or the network stalled (no FIN, no RST, just
//! silence). Every live connection is pinged each probe and retired when it does not answer
//! within probe.timeout (docs/config.md, `[targets.NAME.probe]`), so the target turns `down`
//! within 3 probe intervals, calls in flight end by their deadline, new calls fail fast with
//! `upstream_unreachable`, and after the thaw the target is `up` again within 2 probe
//! intervals with no operator action.
//!
//! Timings are scaled down from the defaults (2 s probe interval, timeout and connect_timeout)
//! to 800 ms each, so "6 s" becomes 2.4 s; the bounds are counted in intervals. The tests
//! here run one at a time ([`serial`]): on 2 cores, parallel freezes and thaws stretch each
//! other's probe round trips past the probe timeout.

mod common;

use std::time::{Duration, Instant};

use common::http;
use common::proxy::Proxy;
use common::sshd::Sshd;
use common::tether::{TARGET, Tether, TetherConfig};
use common::wait_until;
use serde_json::json;

const INTERVAL: Duration = Duration::from_millis(800);
/// What the test's own observation adds: health is polled every 10 ms over HTTP, on 2 cores
/// shared with sshd and the other tests. (The worst case of "down" is 3 intervals by
/// construction: the wait for the next tick, probe.timeout, then connect_timeout.)
const SLACK: Duration = Duration::from_millis(200);
/// The deadline of the call in flight when the remote freezes.
const IN_FLIGHT_DEADLINE: Duration = Duration::from_millis(2000);

/// Held by each test for its whole run.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn scaled(cfg: TetherConfig) -> TetherConfig {
    cfg.test_verbs()
        .set("targets.laptop.probe.interval", "800ms")
        .set("targets.laptop.probe.timeout", "800ms")
        .set("targets.laptop.connect_timeout", "800ms")
}

/// Freezes the remote with `freeze`, checks each promise of the module doc, thaws with `thaw`.
fn half_open(tether: &Tether, sshd: &Sshd, freeze: impl FnOnce(), thaw: impl FnOnce()) {
    tether.wait_status("up");
    let socket = tether.socket_path().to_path_buf();
    let in_flight = std::thread::spawn(move || {
        let started = Instant::now();
        let answer = http::post_json(
            &socket,
            "/v1/call",
            &json!({"verb": "sleep", "args": ["5"], "timeout_ms": IN_FLIGHT_DEADLINE.as_millis() as u64}),
        );
        (answer, started.elapsed())
    });
    assert!(wait_until(Duration::from_secs(5), || sshd
        .count("sleep", &[])
        == 1));

    freeze();
    let down_after = tether.wait_status_within("down", Duration::from_secs(5));
    eprintln!("down {down_after:?} after the freeze (bound 3 x {INTERVAL:?})");
    assert!(down_after <= 3 * INTERVAL + SLACK, "{down_after:?}");

    let started = Instant::now();
    let (status, body) = tether.call(&json!({"verb": "reset", "args": ["s"]}));
    let took = started.elapsed();
    eprintln!("a new call while down answered {status} in {took:?}");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("upstream_unreachable")),
        "{body}"
    );
    assert!(
        took <= INTERVAL + SLACK,
        "connect_timeout bounds it: {took:?}"
    );

    let ((status, body), took) = in_flight.join().unwrap();
    let code = body["error"]["code"].as_str().unwrap_or_default();
    eprintln!(
        "the call in flight answered {code} after {took:?} (deadline {IN_FLIGHT_DEADLINE:?})"
    );
    assert!(
        matches!(code, "connection_lost" | "timeout") && status >= 500,
        "{body}"
    );
    assert!(took <= IN_FLIGHT_DEADLINE + SLACK, "{took:?}");

    thaw();
    let up_after = tether.wait_status_within("up", Duration::from_secs(5));
    eprintln!("up {up_after:?} after the thaw (bound 2 x {INTERVAL:?})");
    assert!(up_after <= 2 * INTERVAL + SLACK, "{up_after:?}");
    let (status, body) = tether.call(&json!({"verb": "reset", "args": ["s"]}));
    assert_eq!(status, 200, "{body}");
}

#[test]
fn a_black_holed_network_is_down_fast_and_heals_by_itself() {
    let _serial = serial();
    let sshd = Sshd::start();
    let proxy = Proxy::start(sshd.addr());
    let tether = scaled(TetherConfig::for_sshd(&sshd).via(proxy.port(), &sshd)).spawn();
    half_open(&tether, &sshd, || proxy.blackhole(), || proxy.resume());
}

#[test]
fn a_frozen_sshd_is_down_fast_and_heals_by_itself() {
    let _serial = serial();
    let sshd = Sshd::start();
    let tether = scaled(TetherConfig::for_sshd(&sshd)).spawn();
    half_open(&tether, &sshd, || sshd.stop(), || sshd.resume());
}

#[test]
fn a_slow_network_is_not_down() {
    let _serial = serial();
    let sshd = Sshd::start();
    let proxy = Proxy::start(sshd.addr());
    proxy.set_latency(Duration::from_millis(60));
    // The SSH handshake takes several round trips: give the connect room, not the probe.
    let tether = scaled(TetherConfig::for_sshd(&sshd).via(proxy.port(), &sshd))
        .set("targets.laptop.connect_timeout", "3s")
        .spawn();
    tether.wait_status("up");
    let (status, body) = tether.call(&json!({"verb": "reset", "args": ["s"]}));
    assert_eq!(status, 200, "{body}");
    // 60 ms each way: a probe round trip takes at least 120 ms and still counts as up.
    let (_, health) = tether.health();
    let latency = health["targets"][TARGET]["transport"]["latency_ms"]
        .as_f64()
        .unwrap();
    eprintln!("probe latency through 2 x 60 ms: {latency} ms");
    assert!(latency >= 120.0, "{health}");
    tether.wait_target(Duration::from_secs(2), |t| {
        t["consecutive_failures"] == 0 && t["status"] == "up"
    });
}

#[test]
fn a_slow_handshake_does_not_outlast_a_call_deadline() {
    let _serial = serial();
    let sshd = Sshd::start();
    let proxy = Proxy::start(sshd.addr());
    // 100 ms each way: the SSH handshake (several round trips) takes most of a second.
    proxy.set_latency(Duration::from_millis(100));
    let tether = TetherConfig::for_sshd(&sshd)
        .via(proxy.port(), &sshd)
        .test_verbs()
        .set("targets.laptop.connect_timeout", "5s")
        .spawn();
    let started = Instant::now();
    let (status, body) = tether.call(&json!({"verb": "reset", "args": ["s"], "timeout_ms": 300}));
    let took = started.elapsed();
    eprintln!(
        "a call with a 300 ms deadline during a slow handshake answered {status} in {took:?}"
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (504, Some("timeout")),
        "{body}"
    );
    assert!(took <= Duration::from_millis(400), "{took:?}");
    assert_eq!(sshd.count("reset", &[]), 0);
    // The connect was not abandoned for good: the target comes up and calls succeed.
    tether.wait_status("up");
    let (status, body) = tether.call(&json!({"verb": "reset", "args": ["s"]}));
    assert_eq!(status, 200, "{body}");
}

#[test]
fn every_frozen_connection_is_retired_at_the_first_failed_probe() {
    let _serial = serial();
    let sshd = Sshd::start();
    let tether = scaled(TetherConfig::for_sshd(&sshd))
        .set("targets.laptop.channels_per_connection", 2)
        .spawn();
    // Three calls at once on two-channel connections: a second connection opens.
    let calls: Vec<_> = (0..3)
        .map(|_| tether.call_in_background(json!({"verb": "sleep", "args": ["1"]})))
        .collect();
    for call in calls {
        assert_eq!(call.join().unwrap().0, 200);
    }
    let connections = "tether_connections{target=\"laptop\"}";
    assert!(wait_until(Duration::from_secs(5), || tether
        .metric(connections)
        == 2.0));
    let frozen = Instant::now();
    sshd.stop();
    assert!(wait_until(Duration::from_secs(5), || tether
        .metric(connections)
        == 0.0));
    let retired = frozen.elapsed();
    eprintln!("both frozen connections retired {retired:?} after the freeze");
    // One probe: at most a tick's wait plus probe.timeout (one interval each). Retiring them
    // one per probe would take two ticks and two timeouts, about 4 intervals.
    assert!(retired < 3 * INTERVAL, "{retired:?}");
    sshd.resume();
}
