//! Streamed calls (docs/rpc.md, "Streamed calls"): events leave tether as the remote writes
//! them, one terminal event ends every stream, errors before the command was sent keep their
//! status, and `tether call` prints output as it arrives.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use common::http::Streamed;
use common::sshd::Sshd;
use common::tether::{Tether, TetherConfig, cli_command};
use common::wait_until;
use serde_json::{Value, json};

fn tether(sshd: &Sshd) -> Tether {
    let tether = TetherConfig::for_sshd(sshd).test_verbs().spawn();
    tether.wait_status("up");
    tether
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The remote's stamp in a `drip` line: "line I UNIXTIME".
fn stamp(line: &str) -> f64 {
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

#[test]
fn each_line_reaches_the_caller_before_the_remote_writes_the_next() {
    let sshd = Sshd::start();
    let tether = tether(&sshd);
    let mut answer = Streamed::start(
        tether.socket_path(),
        &json!({"verb": "drip", "args": ["5", "0.3"], "stream": true, "request_id": "drip-1"}),
    );
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), Some("application/x-ndjson"));
    let mut lines = Vec::new();
    let mut events = Vec::new();
    while let Some((_, event)) = answer.next_event() {
        if event["event"] == "stdout" {
            lines.push((unix_now(), event["data"].as_str().unwrap().to_string()));
        }
        events.push(event);
    }
    let text: String = lines.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(text.lines().count(), 5, "{text}");
    for pair in lines.windows(2) {
        let ((arrived, _), (_, next)) = (&pair[0], &pair[1]);
        assert!(
            *arrived < stamp(next),
            "a line arrived at {arrived}, after the next was written at {}",
            stamp(next)
        );
    }
    let last = events.last().unwrap();
    assert_eq!(
        last["event"], "exit",
        "the terminal event comes last: {events:?}"
    );
    assert_eq!(last["exit_status"], 0);
    assert_eq!(last["request_id"], "drip-1");
    assert_eq!(
        (last["target"].as_str(), last["verb"].as_str()),
        (Some("laptop"), Some("drip"))
    );
    assert_eq!(events.iter().filter(|e| e["event"] == "exit").count(), 1);
}

#[test]
fn errors_before_the_command_was_sent_keep_their_status() {
    let sshd = Sshd::start();
    let tether = tether(&sshd);
    let answer = Streamed::start(tether.socket_path(), &json!({"verb": "rm", "stream": true}));
    assert_eq!(answer.status, 403);
    assert_eq!(answer.body_json()["error"]["code"], "verb_not_allowed");
    let answer = Streamed::start(
        tether.socket_path(),
        &json!({"verb": "reset", "args": ["a b"], "stream": true}),
    );
    assert_eq!(answer.status, 400);
    assert_eq!(answer.body_json()["error"]["code"], "bad_request");
}

#[test]
fn a_connection_killed_mid_stream_ends_with_a_connection_lost_event() {
    let sshd = Sshd::start();
    let tether = tether(&sshd);
    let mut answer = Streamed::start(
        tether.socket_path(),
        &json!({"verb": "drip", "args": ["50", "0.2"], "stream": true}),
    );
    let (_, first) = answer.next_event().expect("first line");
    assert_eq!(first["event"], "stdout");
    sshd.kill_sessions();
    let events = answer.events();
    let last: &Value = events.last().expect("a terminal event");
    assert_eq!(last["event"], "error", "{events:?}");
    assert_eq!(last["error"]["code"], "connection_lost");
    assert_eq!(last["error"]["retryable"], false);
    assert!(events.iter().all(|e| e["event"] != "exit"));
}

#[test]
fn a_cached_result_streams_as_one_stdout_event_and_its_exit() {
    let sshd = Sshd::start();
    let tether = tether(&sshd);
    let body = json!({"verb": "health", "args": ["s1"], "stream": true});
    for cached in [false, true] {
        let events = Streamed::start(tether.socket_path(), &body).events();
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(
            (events[0]["event"].as_str(), events[0]["data"].as_str()),
            (Some("stdout"), Some("ok\n"))
        );
        assert_eq!(
            (events[1]["event"].as_str(), events[1]["cached"].as_bool()),
            (Some("exit"), Some(cached))
        );
    }
    assert_eq!(sshd.count("health", &["s1"]), 1);
}

#[test]
fn tether_call_prints_lines_as_the_remote_writes_them() {
    let sshd = Sshd::start();
    let tether = tether(&sshd);
    let socket = tether.socket_path().display().to_string();
    let mut child = cli_command(&["call", "--socket", &socket, "drip", "4", "0.3"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut arrivals = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        arrivals.push((unix_now(), line.unwrap()));
    }
    assert!(child.wait().unwrap().success());
    assert_eq!(arrivals.len(), 4, "{arrivals:?}");
    for pair in arrivals.windows(2) {
        assert!(pair[0].0 < stamp(&pair[1].1), "{arrivals:?}");
    }
}

#[test]
fn a_streamed_answer_arrives_complete_byte_for_byte() {
    let sshd = Sshd::start();
    let tether = tether(&sshd);
    let mut answer = Streamed::start(
        tether.socket_path(),
        &json!({"verb": "seq", "args": ["400000"], "stream": true}),
    );
    let mut text = String::new();
    let mut last = Value::Null;
    while let Some((_, event)) = answer.next_event() {
        match event["event"].as_str() {
            Some("stdout") => text.push_str(event["data"].as_str().unwrap()),
            _ => last = event,
        }
    }
    let expected: String = (1..=400_000).map(|i| format!("{i}\n")).collect();
    assert!(
        text == expected,
        "{} bytes, expected {}",
        text.len(),
        expected.len()
    );
    assert_eq!(
        (last["event"].as_str(), last["stdout_truncated"].as_bool()),
        (Some("exit"), Some(false))
    );
    assert!(wait_until(Duration::from_secs(5), || tether.channels_idle()));
}
