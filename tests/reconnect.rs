//! Connections that go away. A laptop that reboots (sshd killed, then back on the same port) is
//! not stormed with connects while away and is found within 2 probe intervals when back
//! (docs/metrics.md, `tether_connects_total`); a call whose connection dies, before or after
//! its exec request left, is sent again once on a fresh connection when (and only when) its
//! verb is idempotent (docs/rpc.md, "Idempotent verbs and re-sends").

mod common;

use std::time::{Duration, Instant};

use common::http;
use common::proxy::Proxy;
use common::sshd::Sshd;
use common::tether::{Tether, TetherConfig};
use common::wait_until;
use serde_json::{Value, json};

/// docs/metrics.md (`tether_connects_total`): while a laptop sleeps, failed attempts back off,
/// capped below probe.interval, "so this grows by about one per probe interval, not per
/// call". Read as a bound, with room for the back-off's jitter (an attempt may come up to a
/// quarter early, so that several sidecars do not knock in step): at most 1.5 per interval,
/// whoever asks, since probes and callers share the back-off.
const MOST_ATTEMPTS_PER_INTERVAL: f64 = 1.5;

/// All connection attempts so far, whatever their result.
fn connect_attempts(tether: &Tether) -> f64 {
    tether.metrics().sum("tether_connects_total", &[])
}

/// The laptop is away for 6 probe intervals (500 ms each here, scaled down from the default
/// 2 s), with four callers hammering tether the whole time: a busy app must not cause a
/// connect storm either (thousands of calls, a dozen attempts at most).
#[test]
fn a_rebooting_laptop_is_not_stormed_and_is_found_within_2_intervals() {
    const INTERVAL: Duration = Duration::from_millis(500);
    const WINDOW: Duration = Duration::from_secs(3);
    let mut sshd = Sshd::start();
    let tether = TetherConfig::for_sshd(&sshd)
        .test_verbs()
        .set("targets.laptop.probe.interval", "500ms")
        .set("targets.laptop.probe.timeout", "500ms")
        .set("targets.laptop.connect_timeout", "500ms")
        .spawn();
    tether.wait_status("up");
    sshd.kill();
    tether.wait_status("down");

    let before = connect_attempts(&tether);
    let started = Instant::now();
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let socket = tether.socket_path().to_path_buf();
            std::thread::spawn(move || {
                let mut answers = Vec::new();
                while started.elapsed() < WINDOW {
                    let t = Instant::now();
                    let (status, body) = http::post_json(
                        &socket,
                        "/v1/call",
                        &json!({"verb": "reset", "args": ["s"]}),
                    );
                    answers.push((status, body, t.elapsed()));
                }
                answers
            })
        })
        .collect();
    let answers: Vec<(u16, Value, Duration)> = callers
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    let attempts = connect_attempts(&tether) - before;
    let window = started.elapsed();
    // +1 for an attempt in flight at each end of the window.
    let intervals = window.as_secs_f64() / INTERVAL.as_secs_f64();
    let bound = (intervals * MOST_ATTEMPTS_PER_INTERVAL).floor() + 2.0;
    let slowest = answers.iter().map(|a| a.2).max().unwrap();
    eprintln!(
        "{attempts} connect attempts in {window:?} ({intervals:.1} intervals) while {} calls \
         were answered (slowest {slowest:?}); bound {bound}",
        answers.len()
    );
    assert!(attempts <= bound, "{attempts} attempts, bound {bound}");
    assert!(attempts >= 3.0, "tether must keep looking: {attempts}");
    for (status, body, took) in &answers {
        assert_eq!(
            body["error"]["code"], "upstream_unreachable",
            "{status} {body}"
        );
        assert!(*took < Duration::from_millis(600), "{took:?}: {body}");
    }

    sshd.restart();
    let found = tether.wait_status_within("up", Duration::from_secs(5));
    eprintln!(
        "the returning laptop was up {found:?} after sshd listened again (bound 2 x {INTERVAL:?})"
    );
    assert!(
        found <= 2 * INTERVAL + Duration::from_millis(100),
        "{found:?}"
    );
    let (status, body) = tether.call(&json!({"verb": "reset", "args": ["s"]}));
    assert_eq!(status, 200, "{body}");
}

/// The connection is cut while a call holds its slot but its channel open has no
/// answer yet (the proxy black-holes, then resets): nothing has been sent. Deterministic: the
/// call cannot get past the open while the proxy is silent.
fn cut_before_the_exec_left(idempotent: bool) -> (Sshd, Tether, (u16, Value)) {
    let sshd = Sshd::start();
    let proxy = Proxy::start(sshd.addr());
    let tether = TetherConfig::for_sshd(&sshd)
        .via(proxy.port(), &sshd)
        .test_verbs()
        .merge(&format!(
            "[verbs.reset]\ntimeout = \"10s\"\nidempotent = {idempotent}\n"
        ))
        // Only the first probe (at start) may touch the connection; none during the test.
        .set("targets.laptop.probe.interval", "1h")
        .set("targets.laptop.probe.shim_verb", "")
        .spawn();
    tether.wait_status("up");
    proxy.blackhole();
    let socket = tether.socket_path().to_path_buf();
    let call = std::thread::spawn(move || {
        http::post_json(
            &socket,
            "/v1/call",
            &json!({"verb": "reset", "args": ["s1"]}),
        )
    });
    tether.wait_target(Duration::from_secs(5), |t| t["channels_in_use"] == 1);
    proxy.cut();
    proxy.resume();
    let answer = call.join().unwrap();
    (sshd, tether, answer)
}

#[test]
fn an_idempotent_verb_is_retried_once_when_nothing_was_sent() {
    let (sshd, tether, (status, body)) = cut_before_the_exec_left(true);
    assert_eq!(status, 200, "{body}\n{}", tether.logs());
    assert_eq!(sshd.count("reset", &["s1"]), 1);
    assert_eq!(
        tether.metric("tether_connects_total{result=\"ok\",target=\"laptop\"}"),
        2.0,
        "the retry ran on a fresh connection"
    );
}

#[test]
fn a_verb_that_is_not_idempotent_is_never_resent_even_when_nothing_was_sent() {
    let (sshd, _tether, (status, body)) = cut_before_the_exec_left(false);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("upstream_unreachable")),
        "{body}"
    );
    assert_eq!(body["error"]["retryable"], true, "{body}");
    assert_eq!(sshd.count("reset", &[]), 0);
}

/// A connection lost while an idempotent verb ran (the laptop's sshd sessions are killed
/// mid-command): tether sends it again on a fresh connection, and the app's one call gets
/// its answer.
#[test]
fn an_idempotent_verb_cut_mid_command_is_sent_again_and_answers_200() {
    let sshd = Sshd::start();
    let tether = TetherConfig::for_sshd(&sshd)
        .test_verbs()
        .merge("[verbs.sleep]\ntimeout = \"20s\"\nidempotent = true\n")
        .set("targets.laptop.probe.shim_verb", "")
        .spawn();
    tether.wait_status("up");
    let call = tether.call_in_background(json!({"verb": "sleep", "args": ["1"]}));
    assert!(wait_until(Duration::from_secs(5), || sshd
        .count("sleep", &["1"])
        == 1));
    sshd.kill_sessions();
    let (status, body) = call.join().unwrap();
    assert_eq!(status, 200, "{body}\n{}", tether.logs());
    assert_eq!(body["stdout"], "slept 1\n");
    assert_eq!(
        sshd.count("sleep", &["1"]),
        2,
        "sent once more after the cut"
    );
    assert_eq!(
        tether.metric("tether_connects_total{result=\"ok\",target=\"laptop\"}"),
        2.0,
        "the second run used a fresh connection"
    );
}
