//! Callers that hang up (docs/rpc.md, "When the caller hangs up"): a call that was sent runs on
//! to its end in the background, its channel goes back only once the server has freed it; a
//! call still queued is dropped and never sent; both are counted as abandoned and logged once;
//! a cached verb never runs twice because its first caller left.

mod common;

use std::time::Duration;

use common::http::{self, Streamed};
use common::sshd::Sshd;
use common::tether::{Tether, TetherConfig};
use common::wait_until;
use serde_json::json;

/// One connection of 8 channels against sshd's MaxSessions 10, as in the field.
fn one_connection_of_eight(sshd: &Sshd) -> Tether {
    TetherConfig::for_sshd(sshd)
        .test_verbs()
        .set("targets.laptop.max_connections", 1)
        .set("targets.laptop.channels_per_connection", 8)
        .set("targets.laptop.probe.shim_verb", "")
        .spawn()
}

/// 24 callers, each on its own thread, send `body` and hang up, the first 50 ms after sending
/// and the last `spread_ms` later.
fn hang_up_spread(
    socket: &std::path::Path,
    body: serde_json::Value,
    spread_ms: u64,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..24u64)
        .map(|i| {
            let (socket, body) = (socket.to_path_buf(), body.clone());
            std::thread::spawn(move || {
                let after = Duration::from_millis(50 + i * spread_ms / 23);
                http::hang_up(&socket, &body, after);
            })
        })
        .collect()
}

#[test]
fn callers_that_hang_up_at_any_point_leak_no_channel() {
    let sshd = Sshd::start();
    let tether = one_connection_of_eight(&sshd);
    tether.wait_status("up");
    // 24 buffered callers leave 50-300 ms after sending `sleep 1`: some while queued behind
    // the 8 channels, some while their channel opens, some while the command runs; 4
    // streaming callers of `drip` leave after reading their first output line.
    let socket = tether.socket_path().to_path_buf();
    let buffered = hang_up_spread(&socket, json!({"verb": "sleep", "args": ["1"]}), 250);
    let streamed: Vec<_> = (0..4)
        .map(|_| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let mut answer = Streamed::start(
                    &socket,
                    &json!({"verb": "drip", "args": ["5", "0.2"], "stream": true}),
                );
                assert_eq!(answer.status, 200);
                let (_, first) = answer.next_event().expect("a first event");
                assert_eq!(first["event"], "stdout", "{first}");
            })
        })
        .collect();
    for t in buffered.into_iter().chain(streamed) {
        t.join().unwrap();
    }
    let callers_gone = std::time::Instant::now();
    // Every abandoned command that was sent still runs to its end on the laptop; the queued
    // ones were never sent...
    assert!(
        wait_until(Duration::from_secs(30), || {
            abandoned(&tether, "sleep") == 24.0 && abandoned(&tether, "drip") == 4.0
        }),
        "abandoned calls counted: {}",
        tether.admin_get("/metrics").text()
    );
    let sent = abandoned_at(&tether, "sleep", "running");
    assert_eq!(sent + abandoned_at(&tether, "sleep", "queued"), 24.0);
    assert_eq!(sshd.count("sleep", &["1"]) as f64, sent);
    assert_eq!(sshd.count("drip", &["5", "0.2"]), 4);
    // ...and gives its channel back once the server has freed it.
    assert!(wait_until(Duration::from_secs(10), || tether.channels_idle()));
    let idle_after = callers_gone.elapsed();
    let logs = tether.logs();
    let abandoned_lines = logs
        .lines()
        .filter(|l| l.contains(" call request_id=") && l.contains("abandoned=true"))
        .count();
    assert_eq!(
        abandoned_lines, 28,
        "one log line per abandoned call:\n{logs}"
    );
    // The connection is healthy: 16 calls at once over 8 channels all succeed.
    let answers = tether.calls_at_once(vec![json!({"verb": "reset", "args": ["s1"]}); 16]);
    for (status, body, _) in &answers {
        assert_eq!(*status, 200, "{body}");
    }
    let slowest = answers.iter().map(|(_, _, took)| *took).max().unwrap();
    eprintln!(
        "28 callers hung up (24 buffered, 4 streamed): all counted and every channel free \
         {idle_after:?} after the last left; then 16 calls at once all 200, slowest {slowest:?}"
    );
    assert!(
        !sshd.log().contains("no more sessions"),
        "sshd refused a session:\n{}",
        sshd.log()
    );
}

#[test]
fn a_cached_verb_whose_first_caller_hangs_up_runs_once_for_everyone() {
    let sshd = Sshd::start();
    let tether = TetherConfig::for_sshd(&sshd)
        .test_verbs()
        .merge("[verbs.sleep]\ntimeout = \"10s\"\ncache_ttl = \"10s\"\n")
        .spawn();
    tether.wait_status("up");
    let body = json!({"verb": "sleep", "args": ["1"]});
    let socket = tether.socket_path().to_path_buf();
    let first = {
        let body = body.clone();
        std::thread::spawn(move || http::hang_up(&socket, &body, Duration::from_millis(300)))
    };
    assert!(wait_until(Duration::from_secs(5), || sshd
        .count("sleep", &["1"])
        == 1));
    let second = tether.call_in_background(body.clone());
    first.join().unwrap();
    let (status, answer) = second.join().unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["stdout"], "slept 1\n");
    assert_eq!(
        answer["cached"], true,
        "the second caller shared the first run"
    );
    assert_eq!(sshd.count("sleep", &["1"]), 1, "the laptop ran it once");
    assert!(wait_until(Duration::from_secs(5), || {
        abandoned_at(&tether, "sleep", "running") == 1.0
    }));
}

/// `tether_calls_abandoned_total` of target laptop for `verb`, both stages.
fn abandoned(tether: &Tether, verb: &str) -> f64 {
    abandoned_at(tether, verb, "queued") + abandoned_at(tether, verb, "running")
}

fn abandoned_at(tether: &Tether, verb: &str, stage: &str) -> f64 {
    tether.metric(&format!(
        "tether_calls_abandoned_total{{target=\"laptop\",verb=\"{verb}\",stage=\"{stage}\"}}"
    ))
}

#[test]
fn queued_calls_whose_callers_left_are_never_sent() {
    let sshd = Sshd::start();
    let tether = one_connection_of_eight(&sshd);
    tether.wait_status("up");
    // 24 callers of `sleep 2` leave 50-290 ms after sending: 8 got a channel and were sent,
    // 16 were still queued behind them.
    let socket = tether.socket_path().to_path_buf();
    let callers = hang_up_spread(&socket, json!({"verb": "sleep", "args": ["2"]}), 240);
    for caller in callers {
        caller.join().unwrap();
    }
    // Right after, 8 ordinary calls get their answers: nothing queued is left before them.
    let started = std::time::Instant::now();
    let answers = tether.calls_at_once(vec![json!({"verb": "reset", "args": ["s1"]}); 8]);
    for (status, body, _) in &answers {
        assert_eq!(*status, 200, "{body}");
    }
    let took = started.elapsed();
    assert!(
        wait_until(Duration::from_secs(10), || abandoned(&tether, "sleep")
            == 24.0),
        "abandoned calls counted: {}",
        tether.admin_get("/metrics").text()
    );
    assert_eq!(abandoned_at(&tether, "sleep", "running"), 8.0);
    assert_eq!(abandoned_at(&tether, "sleep", "queued"), 16.0);
    assert!(wait_until(Duration::from_secs(10), || tether.channels_idle()));
    assert_eq!(
        sshd.count("sleep", &["2"]),
        8,
        "the laptop ran only the calls that were sent:\n{}",
        sshd.invocation_log()
    );
    let logs = tether.logs();
    let dropped = logs
        .lines()
        .filter(|l| {
            l.contains(" call request_id=")
                && l.contains("code=\"cancelled\"")
                && l.contains("abandoned=true")
        })
        .count();
    assert_eq!(dropped, 16, "one log line per dropped call:\n{logs}");
    eprintln!(
        "16 queued callers left and were dropped; 8 ordinary calls then all 200 within {took:?}"
    );
}
