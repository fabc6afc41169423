//! A hundred calls whose verb sleeps past their deadline all answer `timeout` on time, and
//! afterwards the pool has its full capacity again: the slot of a command still running is
//! freed once the server closes its channel (docs/rpc.md, "Deadlines"). (A binary of its own
//! so that the 500-caller burst of load.rs does not share the 2 cores with it.)

mod common;

use std::time::{Duration, Instant};

use common::sshd::Sshd;
use common::tether::{Tether, TetherConfig};
use serde_json::json;

/// tether's own `duration_ms` of every call that answered `code`, from its log.
fn logged_durations(tether: &Tether, code: &str) -> Vec<Duration> {
    let code = format!("code=\"{code}\"");
    tether
        .logs()
        .lines()
        .filter(|l| l.contains(&code))
        .filter_map(|l| {
            l.split("duration_ms=")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<f64>()
                .ok()
        })
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        .collect()
}

#[test]
fn a_hundred_deadlines_answer_timeout_on_time_and_leak_no_slot() {
    const DEADLINE: Duration = Duration::from_millis(300);
    let sshd = Sshd::start();
    let tether = TetherConfig::for_sshd(&sshd).test_verbs().spawn();
    tether.wait_status("up");
    let body = json!({"verb": "sleep", "args": ["2"], "timeout_ms": DEADLINE.as_millis() as u64});
    let answers = tether.calls_at_once(vec![body; 100]);
    for (status, body, _) in &answers {
        assert_eq!(
            (*status, body["error"]["code"].as_str()),
            (504, Some("timeout")),
            "{body}"
        );
    }
    let slowest = answers.iter().map(|a| a.2).max().unwrap();
    let fastest = answers.iter().map(|a| a.2).min().unwrap();
    eprintln!(
        "100 calls with a {DEADLINE:?} deadline answered timeout in {fastest:?} to \
         {slowest:?} (bound deadline + 100 ms); {} reached the laptop",
        sshd.count("sleep", &[])
    );
    let inside = logged_durations(&tether, "timeout");
    let inside_slowest = inside.iter().max().copied().unwrap_or_default();
    eprintln!("inside tether (request parsed to answer) the slowest took {inside_slowest:?}");
    assert_eq!(inside.len(), 100);
    assert!(
        inside_slowest <= DEADLINE + Duration::from_millis(100),
        "{inside_slowest:?}"
    );
    // As the test's clients see it, with their own thread scheduling on 2 cores while 16 sshd
    // sessions fork their shells: usually within 100 ms too, but not reliably so.
    assert!(
        slowest <= DEADLINE + Duration::from_millis(250),
        "{slowest:?}"
    );
    assert!(
        fastest >= DEADLINE - Duration::from_millis(5),
        "{fastest:?}"
    );
    // The sleeps that started go on for 2 s and keep their slots until then; after that the
    // whole capacity (2 x 8) is back.
    let ended = Instant::now();
    assert!(common::wait_until(Duration::from_secs(10), || {
        tether.channels_idle()
    }));
    eprintln!(
        "tether_channels_in_use back to 0 {:?} after the last timeout",
        ended.elapsed()
    );
    let answers = tether.calls_at_once(vec![json!({"verb": "sleep", "args": ["0.3"]}); 16]);
    for (status, body, took) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert!(
            *took < Duration::from_secs(2),
            "full capacity, no queueing: {took:?}"
        );
    }
    assert!(common::wait_until(Duration::from_secs(5), || {
        tether.channels_idle()
    }));
}
