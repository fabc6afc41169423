//! `tether shim` as sshd's forced command, driven by the plain `ssh` client: a keyed turn runs
//! exactly once however often it is sent, repeats replay or attach byte for byte, `lock_arg`
//! queues in arrival order, timeouts kill the process group, stdin round-trips, and the audit
//! log holds neither message content nor stdin (docs/shim.md).

mod common;

use std::collections::BTreeMap;

use common::shim_fixture::{Laptop, PATIENCE, b64, text, uuid};
use common::wait_until;

/// The full answer of turn `uuid` saying `said`: stdout and stderr.
fn answer(uuid: &str, said: &str) -> (String, String) {
    (
        format!("first half of {uuid}\nreply to {uuid}: {said}\n"),
        format!("note for {uuid}\n"),
    )
}

#[test]
fn a_repeat_after_success_replays_the_answer() {
    let laptop = Laptop::start();
    let turn = uuid();
    let line = format!("run-turn s1 {turn} {}", b64("Grüß dich"));
    let first = laptop.ssh(&line, b"");
    let repeat = laptop.ssh(&line, b"");
    assert_eq!(first.status.code(), Some(0), "{first:?}");
    let (out, err) = answer(&turn, "Grüß dich");
    assert_eq!((text(&first.stdout), text(&first.stderr)), (out, err));
    assert_eq!(repeat.status, first.status);
    assert_eq!(repeat.stdout, first.stdout);
    assert_eq!(repeat.stderr, first.stderr);
    assert_eq!(laptop.starts_of(&turn), 1, "{:?}", laptop.runs());
    assert_eq!(laptop.outcomes(), ["ran", "replayed"]);
}

#[test]
fn a_repeat_while_the_turn_runs_attaches_and_streams_it_from_the_start() {
    let laptop = Laptop::start();
    let turn = uuid();
    let line = format!("run-turn s1 {turn} {}", b64("hallo"));
    laptop.hold(&turn);
    let first = laptop.ssh_spawn(&line, b"");
    laptop.wait_started(&turn);
    let repeat = laptop.ssh_spawn(&line, b"");
    // The repeat gets what was written before it came, while the turn still runs.
    let head = format!("first half of {turn}\n");
    assert!(
        wait_until(PATIENCE, || repeat.stdout_so_far() == head),
        "the repeat got {:?}",
        repeat.stdout_so_far()
    );
    laptop.release(&turn);
    let (first, repeat) = (first.wait(), repeat.wait());
    let (out, err) = answer(&turn, "hallo");
    for got in [&first, &repeat] {
        assert_eq!(got.status.code(), Some(0), "{got:?}");
        assert_eq!(
            (text(&got.stdout), text(&got.stderr)),
            (out.clone(), err.clone())
        );
    }
    assert_eq!(laptop.starts_of(&turn), 1, "{:?}", laptop.runs());
    let outcomes = laptop.outcomes();
    assert!(
        outcomes.contains(&"ran".into()) && outcomes.contains(&"attached".into()),
        "{outcomes:?}"
    );
}

#[test]
fn the_same_key_with_other_arguments_is_refused() {
    let laptop = Laptop::start();
    let turn = uuid();
    let first = laptop.ssh(&format!("run-turn s1 {turn} {}", b64("one")), b"");
    assert_eq!(first.status.code(), Some(0), "{first:?}");
    let other = laptop.ssh(&format!("run-turn s1 {turn} {}", b64("two")), b"");
    assert_eq!(other.status.code(), Some(2), "{other:?}");
    assert!(other.stdout.is_empty());
    let err = text(&other.stderr);
    assert!(
        err.starts_with("tether shim: ") && err.contains("same key, other request"),
        "{err}"
    );
    assert_eq!(laptop.starts_of(&turn), 1);
    assert_eq!(laptop.audit()[1]["outcome"], "refused");
}

#[test]
fn turns_of_one_session_never_overlap_and_turns_of_others_do() {
    let laptop = Laptop::start();
    let (a, b, c) = (uuid(), uuid(), uuid());
    laptop.hold(&a);
    let first = laptop.ssh_spawn(&format!("run-turn s1 {a} {}", b64("a")), b"");
    laptop.wait_started(&a);
    // The second turn of s1 takes its place behind the first and waits there...
    let second = laptop.ssh_spawn(&format!("run-turn s1 {b} {}", b64("b")), b"");
    laptop.wait_state("run-turn", &b, "queued");
    // ...while a turn of s2 runs to its end meanwhile.
    let other = laptop.ssh(&format!("run-turn s2 {c} {}", b64("c")), b"");
    assert_eq!(other.status.code(), Some(0), "{other:?}");
    assert_eq!(
        laptop.starts_of(&b),
        0,
        "s1's second turn ran during its first"
    );
    laptop.release(&a);
    assert_eq!(first.wait().status.code(), Some(0));
    assert_eq!(second.wait().status.code(), Some(0));

    let order: Vec<(String, String)> = laptop
        .runs()
        .into_iter()
        .map(|r| (r.event, r.args[1].clone()))
        .collect();
    let at = |event: &str, id: &str| {
        order
            .iter()
            .position(|(e, u)| e == event && u == id)
            .unwrap_or_else(|| panic!("no {event} of {id} in {order:?}"))
    };
    assert!(at("end", &a) < at("start", &b), "{order:?}");
    assert!(
        at("start", &a) < at("start", &c) && at("end", &c) < at("end", &a),
        "{order:?}"
    );
    let tickets = |id: &str| laptop.entry("run-turn", id)["ticket"].as_u64().unwrap();
    assert!(tickets(&a) < tickets(&b));
}

#[test]
fn fifty_concurrent_turns_over_five_sessions_run_once_each_in_arrival_order() {
    let laptop = Laptop::start();
    let turns: Vec<(String, String)> = (0..50).map(|i| (format!("s{}", i % 5), uuid())).collect();
    // Every turn is sent twice at once: 100 callers, 50 runs.
    let callers: Vec<_> = turns
        .iter()
        .chain(turns.iter())
        .map(|(session, turn)| {
            let line = format!("run-turn {session} {turn} {}", b64(turn));
            laptop.ssh_spawn(&line, b"")
        })
        .collect();
    for (caller, (_, turn)) in callers.into_iter().zip(turns.iter().chain(turns.iter())) {
        let out = caller.wait();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        assert_eq!((text(&out.stdout), text(&out.stderr)), answer(turn, turn));
    }

    let runs = laptop.runs();
    let mut started: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut running: BTreeMap<String, usize> = BTreeMap::new();
    for run in &runs {
        let (session, turn) = (&run.args[0], &run.args[1]);
        let now = running.entry(session.clone()).or_default();
        if run.event == "start" {
            *now += 1;
            assert_eq!(*now, 1, "two turns of {session} overlapped: {runs:?}");
            started
                .entry(session.clone())
                .or_default()
                .push(turn.clone());
        } else {
            *now -= 1;
        }
    }
    for (_, turn) in &turns {
        assert_eq!(laptop.starts_of(turn), 1, "{turn} ran other than once");
    }
    for (session, order) in &started {
        let mut by_ticket = order.clone();
        by_ticket.sort_by_key(|turn| laptop.entry("run-turn", turn)["ticket"].as_u64().unwrap());
        assert_eq!(order, &by_ticket, "{session} ran out of arrival order");
        assert_eq!(order.len(), 10);
    }
}

#[test]
fn a_timeout_kills_the_process_group_and_124_is_recorded_and_replayed() {
    let laptop = Laptop::start();
    let key = uuid();
    let first = laptop.ssh(&format!("hang {key}"), b"");
    assert_eq!(first.status.code(), Some(124), "{first:?}");
    let entry = laptop.entry("hang", &key);
    assert_eq!(
        (entry["exit_status"].as_i64(), entry["timed_out"].as_bool()),
        (Some(124), Some(true)),
        "{entry}"
    );
    // The verb's background child was in its process group: killed with it.
    let pid: i32 = std::fs::read_to_string(laptop.dir().join("hang.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        wait_until(PATIENCE, || dead_or_zombie(pid)),
        "the background child {pid} survived the timeout"
    );
    let repeat = laptop.ssh(&format!("hang {key}"), b"");
    assert_eq!(repeat.status.code(), Some(124), "{repeat:?}");
    assert_eq!(laptop.starts_of(&key), 1);
    assert_eq!(laptop.audit()[1]["outcome"], "replayed");
}

fn dead_or_zombie(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn binary_stdin_replays_byte_exact_and_never_reaches_the_audit_log() {
    let laptop = Laptop::start();
    let key = uuid();
    let mut stdin: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    stdin.extend_from_slice(b"STDIN-MARKER-7f3a");
    let first = laptop.ssh(&format!("cat {key}"), &stdin);
    let repeat = laptop.ssh(&format!("cat {key}"), &stdin);
    assert_eq!(first.status.code(), Some(0), "{:?}", text(&first.stderr));
    assert!(
        first.stdout == stdin,
        "the output is not the stdin, byte for byte"
    );
    assert!(
        repeat.stdout == stdin,
        "the replay is not the stdin, byte for byte"
    );
    assert_eq!(laptop.starts_of(&key), 1);

    let secret = "Geheimnis: the message is not for the log";
    let turn = uuid();
    let out = laptop.ssh(&format!("run-turn s1 {turn} {}", b64(secret)), b"");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let audit = laptop.audit_text();
    for never in ["STDIN-MARKER", "Geheimnis", &b64(secret)] {
        assert!(
            !audit.contains(never),
            "{never:?} is in the audit log:\n{audit}"
        );
    }
    let lines = laptop.audit();
    assert_eq!(lines[0]["stdin_bytes"], stdin.len());
    assert_eq!(lines[2]["key"], turn.as_str());
    assert_eq!(lines[2]["lock"], "s1");
    assert_eq!(lines[2]["client"], "127.0.0.1");
    for field in [
        "ts",
        "verb",
        "args_bytes",
        "outcome",
        "exit_status",
        "duration_ms",
        "reason",
    ] {
        assert!(
            lines[2].get(field).is_some(),
            "{field} missing: {}",
            lines[2]
        );
    }
}

#[test]
fn the_operator_finds_a_turn_by_uuid_and_checks_the_config() {
    let laptop = Laptop::start();
    let turn = uuid();
    let out = laptop.ssh(&format!("run-turn s9 {turn} {}", b64("hi")), b"");
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    let shown = laptop.operator(&["--journal", &turn]);
    assert_eq!(shown.status.code(), Some(0), "{shown:?}");
    let shown = text(&shown.stdout);
    for needle in [
        "verb    run-turn",
        &format!("key     {turn}"),
        "lock    s9",
        "state   done",
        "exit    0",
    ] {
        assert!(shown.contains(needle), "{needle:?} missing:\n{shown}");
    }
    let stdout_bytes = answer(&turn, "hi").0.len();
    assert!(
        shown.contains(&format!("stdout  {stdout_bytes} bytes")),
        "{shown}"
    );
    let list = text(&laptop.operator(&["--journal"]).stdout);
    assert!(
        list.lines()
            .any(|l| l.starts_with("run-turn") && l.ends_with(&turn)),
        "{list}"
    );
    let missing = laptop.operator(&["--journal", "no-such-key"]);
    assert_eq!(missing.status.code(), Some(1));

    let check = laptop.operator(&["--check"]);
    assert_eq!(check.status.code(), Some(0), "{check:?}");
    assert!(text(&check.stdout).contains("is valid"));
}

#[test]
fn a_plain_verb_runs_with_the_callers_exit_status() {
    let laptop = Laptop::start();
    let out = laptop.ssh("exit 7", b"");
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    let out = laptop.ssh("health", b"");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        laptop.runs().iter().filter(|r| r.event == "start").count(),
        2
    );
    // The audit line is written before the command starts, so it has no status.
    let audit = laptop.audit();
    assert_eq!(audit.len(), 2);
    for line in &audit {
        assert_eq!(line["outcome"], "ran", "{line}");
        assert!(line["exit_status"].is_null(), "{line}");
    }
    assert_eq!(audit[0]["verb"], "exit");
}

#[test]
fn leading_trailing_or_repeated_spaces_are_refused_and_nothing_runs() {
    let laptop = Laptop::start();
    let lines = ["health  s1", " health", "health ", "exit  7"];
    for line in lines {
        let out = laptop.ssh(line, b"");
        assert_eq!(out.status.code(), Some(2), "{line:?}: {out:?}");
        let said = text(&out.stderr);
        assert!(said.starts_with("tether shim: "), "{line:?}: {said}");
        assert!(said.contains("repeated space"), "{line:?}: {said}");
    }
    assert!(laptop.runs().is_empty(), "{:?}", laptop.runs());
    assert_eq!(laptop.outcomes(), ["refused"; 4]);
    let verbs: Vec<_> = laptop.audit().iter().map(|l| l["verb"].clone()).collect();
    let (health, exit) = (serde_json::json!("health"), serde_json::json!("exit"));
    assert_eq!(
        verbs,
        [health.clone(), serde_json::Value::Null, health, exit]
    );
    let out = laptop.ssh("health s1", b"");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}
