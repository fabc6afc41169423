//! Warm channels (docs/config.md, `warm_channels`): each connection keeps session channels
//! opened ahead of demand, so a call's exec goes out on a channel that is already there (one
//! round trip, not two). Counted structurally from sshd's DEBUG log (which channel each exec
//! ran on, and when that channel was opened), and by time through a latency proxy.

mod common;

use std::time::{Duration, Instant};

use common::proxy::Proxy;
use common::sshd::{Sshd, SshdBuilder};
use common::tether::{Tether, TetherConfig};
use nix::sys::signal::Signal;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

/// sshd logging every channel's open, exec and free (LogLevel in a Match block applies to
/// the per-connection process, where channels live; the fixture's own LogLevel stays first).
fn debug_sshd() -> SshdBuilder {
    debug(Sshd::builder())
}

/// `sshd` with the DEBUG log of [`debug_sshd`]; after its other lines (a Match block ends
/// the file).
fn debug(sshd: SshdBuilder) -> SshdBuilder {
    sshd.config_line("Match all\n  LogLevel DEBUG1")
}

/// tether on `sshd` with `warm` warm channels, exec per call; no shim probe, no `@hello` and
/// no `@session`, so that every channel in sshd's log is a call's or a warm one.
fn tether_config(sshd: &Sshd, warm: i64) -> TetherConfig {
    TetherConfig::for_sshd(sshd)
        .test_verbs()
        .set("targets.laptop.warm_channels", warm)
        .set("targets.laptop.probe.shim_verb", "")
        .set("targets.laptop.in_band", "off")
        .set("targets.laptop.shim_session", "off")
}

/// The number in `debug1: channel N: …` / `… channel N request exec …` lines.
fn channels_where(log: &str, marker: &str) -> Vec<u32> {
    log.lines()
        .filter(|l| l.contains(marker))
        .filter_map(|l| {
            let rest = &l[l.find("channel ")? + "channel ".len()..];
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

fn opened(log: &str) -> Vec<u32> {
    channels_where(log, ": new session [server-session]")
}

fn execs(log: &str) -> Vec<u32> {
    channels_where(log, " request exec reply")
}

fn freed(log: &str) -> Vec<u32> {
    channels_where(log, ": free: server-session")
}

/// Waits until tether has `n` warm channels ready (`tether_warm_channels`).
fn wait_for_warm(tether: &Tether, n: usize) {
    let ready = || tether.metric("tether_warm_channels{target=\"laptop\"}");
    assert!(
        common::wait_until(WAIT, || ready() >= n as f64),
        "{n} warm channel(s) ready, not {}",
        ready()
    );
}

fn seq(tether: &Tether) -> Duration {
    let start = Instant::now();
    let (status, body) = tether.call(&json!({"verb": "seq", "args": ["1"]}));
    assert_eq!(status, 200, "{body}");
    start.elapsed()
}

/// Makes one call and says whether its exec went out on a channel opened before it was made.
fn exec_on_a_channel_opened_before_the_call(warm: i64) -> bool {
    let sshd = debug_sshd().start();
    let tether = tether_config(&sshd, warm).spawn();
    tether.wait_status("up");
    if warm > 0 {
        wait_for_warm(&tether, 1);
    }
    let before = sshd.log();
    seq(&tether);
    let after = sshd.log();
    let new = &after[before.len()..];
    let [exec] = execs(new)[..] else {
        panic!("one exec:\n{new}");
    };
    opened(&before).contains(&exec)
}

#[test]
fn a_call_execs_on_a_warm_channel_and_without_them_opens_its_own() {
    assert!(exec_on_a_channel_opened_before_the_call(1));
    assert!(!exec_on_a_channel_opened_before_the_call(0));
}

#[test]
fn a_warm_call_takes_one_round_trip_through_latency_and_a_cold_one_two() {
    let each_way = Duration::from_millis(100);
    let rtt = each_way * 2;
    let timed = |warm: i64| {
        let sshd = debug_sshd().start();
        let proxy = Proxy::start(sshd.addr());
        let tether = tether_config(&sshd, warm)
            .via(proxy.port(), &sshd)
            .set("targets.laptop.connect_timeout", "10s")
            .spawn();
        tether.wait_status("up");
        proxy.set_latency(each_way);
        seq(&tether);
        if warm > 0 {
            wait_for_warm(&tether, 1);
        }
        seq(&tether)
    };
    let (warm, cold) = (timed(1), timed(0));
    eprintln!("through {each_way:?} each way: a warm call {warm:?}, a cold one {cold:?}");
    assert!(cold >= rtt * 2, "open then exec: {cold:?}");
    assert!(warm < rtt * 3 / 2, "exec on a warm channel: {warm:?}");
}

#[test]
fn warm_channels_stay_within_max_sessions_and_calls_never_see_a_refused_open() {
    let sshd = debug_sshd().max_sessions(4).start();
    let tether = tether_config(&sshd, 2)
        .set("targets.laptop.max_connections", 1)
        .set("targets.laptop.channels_per_connection", 4)
        .spawn();
    tether.wait_status("up");
    wait_for_warm(&tether, 2);
    for round in 0..3 {
        let bodies = (0..8)
            .map(|_| json!({"verb": "sleep", "args": ["0.2"]}))
            .collect();
        for (status, body, _) in tether.calls_at_once(bodies) {
            assert_eq!(status, 200, "round {round}: {body}");
            assert_eq!(body["stdout"], "slept 0.2\n", "{body}");
        }
    }
    assert!(common::wait_until(WAIT, || tether.channels_idle()));
    wait_for_warm(&tether, 1);
}

/// OpenSSH never closes a session channel that has not run anything (ChannelTimeout does
/// not fire on one), so the server's side of a stale warm channel is a connection killed
/// under it: once tether has seen the connection end, its warm channels are dead, and the
/// next calls still succeed on a new connection with a new stock.
#[test]
fn warm_channels_of_a_connection_sshd_dropped_never_fail_a_call() {
    let sshd = debug_sshd().start();
    let tether = tether_config(&sshd, 2).spawn();
    tether.wait_status("up");
    wait_for_warm(&tether, 2);
    sshd.kill_sessions();
    tether.wait_target(WAIT, |t| t["connections"] == 0);
    for _ in 0..3 {
        seq(&tether);
    }
    wait_for_warm(&tether, 2);
}

#[test]
fn drain_closes_warm_channels_before_the_connection_ends() {
    let sshd = debug_sshd().start();
    let mut tether = tether_config(&sshd, 2).spawn();
    tether.wait_status("up");
    seq(&tether);
    wait_for_warm(&tether, 2);
    let exit = tether.stop_with(Signal::SIGTERM);
    assert!(exit.success(), "{exit:?}\n{}", tether.logs());
    // tether may exit before its goodbye reaches sshd: the connection's end is then
    // "Connection closed". Either way sshd frees a channel still open only after that line.
    let end = |log: &str| {
        ["Received disconnect", "Connection closed by"]
            .iter()
            .filter_map(|marker| log.find(marker))
            .min()
    };
    assert!(
        common::wait_until(WAIT, || end(&sshd.log()).is_some()),
        "the connection ended:\n{}",
        sshd.log()
    );
    let log = sshd.log();
    let before_goodbye = &log[..end(&log).expect("the end")];
    let open_at_goodbye: Vec<u32> = opened(before_goodbye)
        .into_iter()
        .filter(|c| !freed(before_goodbye).contains(c))
        .collect();
    assert!(
        open_at_goodbye.is_empty(),
        "channels still open at the goodbye: {open_at_goodbye:?}\n{log}"
    );
}

#[test]
fn more_warm_channels_than_channels_per_connection_is_a_config_error_naming_the_key() {
    let sshd = Sshd::start();
    let mut tether = tether_config(&sshd, 5)
        .set("targets.laptop.channels_per_connection", 4)
        .spawn_unready();
    let status = tether.wait_exit(WAIT).expect("tether refuses to start");
    assert_eq!(status.code(), Some(78), "{}", tether.logs());
    let logs = tether.logs();
    assert!(
        logs.contains("targets.laptop.warm_channels: 5 is more than channels_per_connection (4)"),
        "{logs}"
    );
}
