//! The checks on the authenticated connection: the shim probe verb through the forced
//! command (the one command doctor ever runs), the server's real MaxSessions, and latency.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::report::TargetReport;
use super::subject::Subject;
use crate::call::buffer::{Buffer, Output};
use crate::ssh::connection::Connection;
use crate::ssh::exec;
use crate::transport::interest::Interest;
use crate::transport::output::Budget;
use crate::transport::{Limits, Ran, Request};
use crate::wire;

/// The checks this module runs, in order.
pub const CHECKS: [&str; 3] = ["forced_command", "sessions", "latency"];
/// Round trips the latency check makes.
const ROUND_TRIPS: usize = 10;
/// The most channels the sessions check opens at once.
const MAX_CHANNELS: usize = 64;
/// Output of the probe verb kept; it is small.
const OUTPUT_CAP: usize = 64 * 1024;

pub async fn run(r: &mut TargetReport, s: &Subject<'_>, conn: &Arc<Connection>) {
    forced_command(r, s, conn).await;
    sessions(r, s, conn).await;
    latency(r, s, conn).await;
}

/// Milliseconds with one decimal, as findings show times.
pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// Runs probe.shim_verb once and judges whether the laptop ran it through the forced command.
async fn forced_command(r: &mut TargetReport, s: &Subject<'_>, conn: &Arc<Connection>) {
    let probe = &s.target.probe;
    if probe.shim_verb.is_empty() {
        r.skip_because(
            "forced_command",
            "probe.shim_verb is \"\" (the shim probe is disabled), so whether the laptop \
             applies command= is not checked",
        );
        return;
    }
    let line = match wire::encode(&probe.shim_verb, &probe.shim_args) {
        Ok(line) => line,
        Err(e) => {
            r.fail(
                "forced_command",
                e.to_string(),
                format!("change {}", s.where_set(&["probe.shim_args"])),
            );
            return;
        }
    };
    let timeout = s
        .verbs
        .get(&probe.shim_verb)
        .map_or(probe.timeout, |v| v.timeout);
    let mut buffer = Buffer::new(OUTPUT_CAP, Budget::unmetered(2 * OUTPUT_CAP));
    let request = Request {
        line: line.clone(),
        stdin: None,
        in_band: None,
    };
    let cmd = exec::Command::plain(&request);
    let started = Instant::now();
    let stop = CancellationToken::new();
    let deadline = started + timeout;
    let limits = Limits {
        deadline,
        stuck_after: s.target.stuck_after,
        drain_cap: OUTPUT_CAP,
    };
    let mut interest = Interest::lasting();
    let Ran { result, release } = exec::run(
        exec::On::new_channel(conn),
        &cmd,
        limits,
        &stop,
        &mut interest,
        (),
        &mut buffer,
    )
    .await;
    let took = started.elapsed();
    // The release (a round trip after the server's Close) ends before sessions are counted.
    // A command still running past its deadline keeps its channel until doctor disconnects.
    let _ = tokio::time::timeout(probe.timeout, release).await;
    match result {
        Ok(exit) => judge(r, s, &line, &buffer.finish(exit), took),
        Err(e) => r.fail(
            "forced_command",
            format!("`{line}` did not complete: {}", e.into_error()),
            "see the message; the laptop's sshd log tells what it did (`journalctl -u ssh`)",
        ),
    }
}

fn judge(r: &mut TargetReport, s: &Subject<'_>, line: &str, out: &Output, took: Duration) {
    let stderr = out.stderr.text();
    let first = |text: &str| text.lines().next().unwrap_or_default().trim().to_string();
    let verb = &s.target.probe.shim_verb;
    let shell = out.exit.status == Some(127)
        || stderr.contains("Unknown command")
        || (stderr.contains("not found") && stderr.contains(verb.as_str()));
    let ended = match (out.exit.status, &out.exit.signal) {
        (Some(status), _) => format!("exit {status}"),
        (None, Some(signal)) => format!("killed by SIG{signal}"),
        (None, None) => "no exit status".into(),
    };
    if shell {
        r.fail(
            "forced_command",
            format!(
                "`{line}` ran in a login shell, not through the forced command: {ended}, \
                 stderr {:?}; the laptop does not apply command= for this key",
                first(&stderr)
            ),
            "make the laptop run `tether shim` for this key: Tailscale SSH never does (see the \
             banner check), and a plain authorized_keys line does not either; use exactly the \
             key check's line in ~/.ssh/authorized_keys, and no other line with this key",
        );
    } else if out.exit.status == Some(0) {
        r.ok(
            "forced_command",
            format!(
                "`{line}` answered {ended} in {}: {:?}",
                ms(took),
                first(&out.stdout.text())
            ),
        );
    } else {
        r.fail(
            "forced_command",
            format!(
                "`{line}` reached the shim but ended with {ended}: {:?}",
                first(&stderr)
            ),
            format!(
                "check the shim's config on the laptop (`tether shim --check`) and {}",
                s.where_set(&["probe.shim_args"])
            ),
        );
    }
}

/// Opens channels until the server refuses one (its MaxSessions), then closes them all.
async fn sessions(r: &mut TargetReport, s: &Subject<'_>, conn: &Arc<Connection>) {
    let bound = s.target.probe.timeout;
    let per_connection = s.target.channels_per_connection;
    let mut open = Vec::new();
    let stopped = loop {
        if open.len() == MAX_CHANNELS {
            break None;
        }
        match tokio::time::timeout(bound, conn.handle().channel_open_session()).await {
            Ok(Ok(channel)) => open.push(channel),
            Ok(Err(_)) if !conn.is_closed() => break None,
            Ok(Err(e)) => {
                break Some(format!(
                    "the connection closed while opening channels ({e})"
                ));
            }
            Err(_) => break Some(format!("a channel open got no answer within {bound:?}")),
        }
    };
    let opened = open.len();
    for channel in &open {
        let _ = channel.close().await;
    }
    // One round trip after the CLOSEs: the server has freed every channel.
    let _ = conn.ping(bound).await;
    let fix_ssh = "see sshd's log on the laptop (`journalctl -u ssh`)";
    match stopped {
        Some(problem) => r.fail("sessions", problem, fix_ssh),
        None if opened == MAX_CHANNELS => r.ok(
            "sessions",
            format!(
                "the server accepted {MAX_CHANNELS} channels on one connection without \
                 refusing one; channels_per_connection = {per_connection}"
            ),
        ),
        None if opened == 0 => r.fail(
            "sessions",
            "the server refused the first session channel",
            "the laptop's sshd_config allows no sessions for this account (MaxSessions 0?)",
        ),
        None if per_connection >= opened => r.warn(
            "sessions",
            format!(
                "the server's MaxSessions is {opened}; channels_per_connection = \
                 {per_connection} is not below it, so calls would wait for refused channels"
            ),
            match opened {
                1 => "raise MaxSessions in the laptop's sshd_config".to_string(),
                _ => format!(
                    "set {} (MaxSessions - 1, so one channel stays free for the probes)",
                    s.assignment("channels_per_connection", &(opened - 1).to_string())
                ),
            },
        ),
        None => r.ok(
            "sessions",
            format!(
                "the server's MaxSessions is {opened}; channels_per_connection = \
                 {per_connection} is below it"
            ),
        ),
    }
}

/// Four times the slowest round trip, in whole milliseconds, as a config value.
fn suggested_timeout(max: Duration) -> String {
    let millis = (max * 4).as_millis().max(1) as u64;
    format!(
        "\"{}\"",
        humantime::format_duration(Duration::from_millis(millis))
    )
}

/// Ten SSH round trips on the connection: p50 and max.
async fn latency(r: &mut TargetReport, s: &Subject<'_>, conn: &Arc<Connection>) {
    let t = s.target;
    let bound = t.probe.timeout;
    let mut times = Vec::with_capacity(ROUND_TRIPS);
    for n in 1..=ROUND_TRIPS {
        match conn.ping(bound).await {
            Ok(took) => times.push(took),
            Err(e) => {
                r.fail(
                    "latency",
                    format!("round trip {n} of {ROUND_TRIPS} failed: {e}"),
                    format!(
                        "the path to the laptop is unreliable: `tailscale ping {}` shows \
                         whether it is direct or relayed (DERP)",
                        t.host
                    ),
                );
                return;
            }
        }
    }
    times.sort();
    let (p50, max) = (times[ROUND_TRIPS.div_ceil(2) - 1], times[ROUND_TRIPS - 1]);
    let finding = format!(
        "{ROUND_TRIPS} SSH round trips: p50 {}, max {}",
        ms(p50),
        ms(max)
    );
    if max * 2 > bound {
        r.warn(
            "latency",
            format!("{finding}, close to probe.timeout ({bound:?})"),
            format!(
                "set {}, or find the slow hop (`tailscale ping {}`: direct or via DERP?)",
                s.assignment("probe.timeout", &suggested_timeout(max)),
                t.host
            ),
        );
    } else {
        r.ok("latency", finding);
    }
}
