//! A command whose background child holds stdout open after the verb itself exited keeps
//! its channel after the deadline: tether closes that channel `stuck_after` past the
//! deadline, or sooner once it printed `max_output_bytes` more (docs/config.md,
//! "[targets.NAME]"), and the connection goes on serving other calls. A binary of its own: the second test keeps a core busy, which would
//! disturb the timing assertions of deadlines.rs.

mod common;

use std::time::{Duration, Instant};

use common::sshd::Sshd;
use common::tether::{Tether, TetherConfig};
use serde_json::json;

/// User and system CPU time of a process so far, from /proc/PID/stat (in clock ticks of 10 ms).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// Calls `verb` with a 1 s deadline, expects `timeout`, and returns how long after that
/// answer the channel was free again (None: not within `within`).
fn channel_freed_after_timeout(tether: &Tether, verb: &str, within: Duration) -> Option<Duration> {
    let (status, body) = tether.call(&json!({"verb": verb, "args": ["30"], "timeout_ms": 1000}));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (504, Some("timeout")),
        "{body}"
    );
    let answered = Instant::now();
    common::wait_until(within, || tether.channels_idle()).then(|| answered.elapsed())
}

#[test]
fn a_command_whose_child_holds_stdout_is_closed_stuck_after_its_deadline() {
    let sshd = Sshd::start();
    let tether = TetherConfig::for_sshd(&sshd)
        .test_verbs()
        .merge("[verbs.linger]\ntimeout = \"10s\"\n")
        .set("targets.laptop.stuck_after", "2s")
        .set("targets.laptop.probe.shim_verb", "")
        .spawn();
    tether.wait_status("up");
    let freed = channel_freed_after_timeout(&tether, "linger", Duration::from_secs(10))
        .expect("the channel is closed stuck_after past the deadline");
    eprintln!(
        "a silent command holding stdout: its channel was closed {freed:?} after its timeout (stuck_after 2s)"
    );
    assert!(freed >= Duration::from_millis(1500), "{freed:?}");
    assert!(tether.logs().contains("stuck_after"), "the close is logged");
}

#[test]
fn a_command_that_prints_on_after_its_deadline_is_closed_at_the_output_cap() {
    let sshd = Sshd::start();
    let tether = TetherConfig::for_sshd(&sshd)
        .test_verbs()
        .merge("[verbs.spew]\ntimeout = \"10s\"\n")
        .set("targets.laptop.max_output_bytes", 1 << 20)
        .set("targets.laptop.probe.shim_verb", "")
        .spawn();
    tether.wait_status("up");
    let cpu_before = cpu_time(tether.pid());
    let freed = channel_freed_after_timeout(&tether, "spew", Duration::from_secs(10));
    let cpu = cpu_time(tether.pid()) - cpu_before;
    eprintln!(
        "a command printing without pause past its deadline: channel freed {freed:?} after \
         its timeout; tether used {cpu:?} of CPU meanwhile"
    );
    assert!(
        freed.is_some(),
        "the channel is closed once max_output_bytes more were drained, not after 300 s"
    );
    // Closing it must not freeze the connection it shares with every other call: the same
    // connection still answers, and none had to replace it.
    let (status, body) = tether.call(&json!({"verb": "health", "args": []}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        tether.metric("tether_connects_total{result=\"ok\",target=\"laptop\"}"),
        1.0,
        "{}",
        tether.logs()
    );
}
