//! Every error code a caller can provoke (docs/rpc.md, "Errors"), with its HTTP status,
//! envelope and retry hint, and proof that refused calls never reach the laptop. A remote that
//! cannot be reached (`upstream_unreachable`) is in connect.rs.

mod common;

use std::time::{Duration, Instant};

use common::http;
use common::sshd::Sshd;
use common::tether::{Tether, TetherConfig};
use serde_json::{Value, json};

fn assert_error(answer: (u16, Value), status: u16, code: &str, retryable: bool) -> Value {
    let (got, body) = answer;
    assert_eq!(got, status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert_eq!(body["error"]["retryable"], retryable, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    body
}

/// Nothing but tether's own shim probe (`health` without arguments) reached the laptop.
fn assert_only_probes_ran(sshd: &Sshd) {
    let calls = sshd.invocations();
    assert!(calls.iter().all(|i| i == "health"), "{calls:?}");
}

fn raw(tether: &Tether, body: &[u8]) -> (u16, Value) {
    let r = http::unix(tether.socket_path(), "POST", "/v1/call", Some(body)).expect("answer");
    (r.status, r.json())
}

#[test]
fn bad_requests_are_refused_before_anything_is_sent() {
    let sshd = Sshd::start();
    let tether = TetherConfig::for_sshd(&sshd).test_verbs().spawn();
    for body in [
        &b"{not json"[..],
        br#"{"args": ["s1"]}"#,
        br#"{"verb": "health", "args": ["s1"], "surprise": 1}"#,
        br#"{"verb": "health", "args": "s1"}"#,
        br#"{"verb": "cat", "stdin": "a", "stdin_base64": "YQ=="}"#,
        br#"{"verb": "cat", "stdin_base64": "not base64!"}"#,
        br#"{"verb": "health", "args": ["s1"], "timeout_ms": 0}"#,
        br#"{"verb": "health", "args": ["s1"], "request_id": "no spaces please"}"#,
    ] {
        assert_error(raw(&tether, body), 400, "bad_request", false);
    }
    for arg in [
        "a b", "$(id)", "`id`", "a;b", "a|b", "x\ny", "Grüße", "", "*",
    ] {
        let body = assert_error(
            tether.call(&json!({"verb": "health", "args": [arg], "request_id": "r-42"})),
            400,
            "bad_request",
            false,
        );
        assert_eq!(body["request_id"], "r-42");
    }
    let r = http::unix(tether.socket_path(), "GET", "/v1/nothing", None).unwrap();
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );
    assert_only_probes_ran(&sshd);
}

#[test]
fn unknown_verbs_unknown_targets_and_oversized_bodies_are_refused() {
    let sshd = Sshd::start();
    let tether = TetherConfig::for_sshd(&sshd)
        .set("server.max_request_bytes", 4096)
        .spawn();
    assert_error(
        tether.call(&json!({"verb": "sleep", "args": ["1"]})),
        403,
        "verb_not_allowed",
        false,
    );
    assert_error(
        tether.call(&json!({"target": "elsewhere", "verb": "health", "args": ["s"]})),
        404,
        "unknown_target",
        false,
    );
    let big = "a".repeat(5000);
    assert_error(
        raw(
            &tether,
            json!({"verb": "health", "args": [big]})
                .to_string()
                .as_bytes(),
        ),
        413,
        "payload_too_large",
        false,
    );
    assert_only_probes_ran(&sshd);
}

#[test]
fn command_line_over_128_kib_is_payload_too_large() {
    let sshd = Sshd::start();
    let tether = TetherConfig::for_sshd(&sshd).spawn();
    let arg = "a".repeat(70_000);
    assert_error(
        tether.call(&json!({"verb": "run-turn", "args": ["s", arg, arg]})),
        413,
        "payload_too_large",
        false,
    );
}

#[test]
fn a_full_pool_answers_busy_after_queue_timeout() {
    let sshd = Sshd::start();
    let tether = TetherConfig::for_sshd(&sshd)
        .test_verbs()
        .set("targets.laptop.max_connections", 1)
        .set("targets.laptop.channels_per_connection", 1)
        .set("targets.laptop.queue_timeout", "300ms")
        .spawn();
    let long = tether.call_in_background(json!({"verb": "sleep", "args": ["2"]}));
    assert!(common::wait_until(Duration::from_secs(5), || sshd
        .count("sleep", &[])
        == 1));
    let started = Instant::now();
    assert_error(
        tether.call(&json!({"verb": "reset", "args": ["s"]})),
        429,
        "busy",
        true,
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(290) && waited < Duration::from_millis(1500),
        "{waited:?}"
    );
    assert_eq!(long.join().unwrap().0, 200);
    assert_eq!(sshd.count("reset", &[]), 0);
}

#[test]
fn deadlines_answer_timeout_and_leave_no_slot_behind() {
    let sshd = Sshd::start();
    let tether = TetherConfig::for_sshd(&sshd)
        .test_verbs()
        .set("targets.laptop.max_connections", 1)
        .set("targets.laptop.channels_per_connection", 2)
        .spawn();
    for _ in 0..6 {
        let started = Instant::now();
        let body = assert_error(
            tether.call(&json!({"verb": "sleep", "args": ["1"], "timeout_ms": 150})),
            504,
            "timeout",
            false,
        );
        assert!(started.elapsed() < Duration::from_millis(600), "{body}");
    }
    // A deadline shorter than one round trip is a timeout too.
    assert_error(
        tether.call(&json!({"verb": "sleep", "args": ["1"], "timeout_ms": 1})),
        504,
        "timeout",
        false,
    );
    // Once the sleeps end, the two slots are free again: calls succeed without waiting.
    assert!(common::wait_until(Duration::from_secs(5), || tether.channels_idle()));
    for _ in 0..4 {
        let (status, body) = tether.call(&json!({"verb": "reset", "args": ["s"]}));
        assert_eq!(status, 200, "{body}");
    }
}

#[test]
fn idempotent_verbs_say_timeouts_are_retryable() {
    let sshd = Sshd::start();
    let tether = TetherConfig::for_sshd(&sshd)
        .test_verbs()
        .merge("[verbs.sleep]\ntimeout = \"20s\"\nidempotent = true\n")
        .spawn();
    assert_error(
        tether.call(&json!({"verb": "sleep", "args": ["1"], "timeout_ms": 100})),
        504,
        "timeout",
        true,
    );
}

#[test]
fn connection_lost_mid_turn_is_not_retryable_and_the_turn_ran_once() {
    let sshd = Sshd::start();
    let tether = TetherConfig::for_sshd(&sshd)
        .test_verbs()
        .merge("[verbs.sleep]\ntimeout = \"20s\"\nidempotent = false\n")
        .spawn();
    let call = tether.call_in_background(json!({"verb": "sleep", "args": ["5"]}));
    assert!(common::wait_until(Duration::from_secs(5), || sshd
        .count("sleep", &[])
        == 1));
    sshd.kill_sessions();
    let body = assert_error(call.join().unwrap(), 503, "connection_lost", false);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("may have run"),
        "{body}"
    );
    assert_eq!(sshd.count("sleep", &[]), 1);
    // tether heals: the next call runs on a fresh connection.
    assert!(common::wait_until(Duration::from_secs(10), || tether
        .call(&json!({"verb": "reset", "args": ["s"]}))
        .0
        == 200));
}

#[test]
fn callers_outside_allowed_uids_are_forbidden() {
    let sshd = Sshd::start();
    let me = nix::unistd::getuid().as_raw();
    let tether = TetherConfig::for_sshd(&sshd)
        .set(
            "server.allowed_uids",
            toml::Value::Array(vec![toml::Value::Integer(i64::from(me) + 4242)]),
        )
        .spawn();
    assert_error(
        tether.call(&json!({"verb": "health", "args": ["s"]})),
        403,
        "forbidden",
        false,
    );
    let allowed = TetherConfig::for_sshd(&sshd)
        .set(
            "server.allowed_uids",
            toml::Value::Array(vec![toml::Value::Integer(i64::from(me))]),
        )
        .spawn();
    assert_eq!(
        allowed.call(&json!({"verb": "health", "args": ["s"]})).0,
        200
    );
}
