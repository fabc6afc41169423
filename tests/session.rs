//! tether on a resident `tether shim` session (docs/shim.md, "Session mode"), against real
//! sshd: each connection runs the shim once and every call is a request on it, with exec's
//! meanings for a lost channel (per kind of verb), a slow reader, a hang-up and a cancel; a
//! forced command without session mode gets one exec per call, said once in the log.

mod common;

use std::time::{Duration, Instant};

use common::http::{self, Streamed};
use common::shim_fixture::{Laptop, PATIENCE, b64, cmdline, uuid};
use common::sshd::Sshd;
use common::tether::{Tether, TetherConfig};
use common::wait_until;
use nix::sys::signal::Signal;
use serde_json::{Value, json};

/// A plain verb (no key) that holds mid-answer like run-turn does, and one the shim answers
/// itself.
const MORE_VERBS: &str = r#"
[verbs.plain-turn]
exec = ["{verbs}", "{dir}", "turn", "{1}", "{2}", "{3}"]
args = 3

# Answered by the shim itself: nothing runs.
[verbs.alive]
reply = "ok"
max_args = 1
"#;

fn laptop() -> Laptop {
    Laptop::with_sshd_lines("", MORE_VERBS, &["Match all", "LogLevel DEBUG1"])
}

/// tether on `laptop`'s session: `connections` × `channels`, no shim probe.
fn tether_on(laptop: &Laptop, connections: u32, channels: u32) -> TetherConfig {
    TetherConfig::for_sshd(&laptop.sshd)
        .set("targets.laptop.max_connections", connections)
        .set("targets.laptop.channels_per_connection", channels)
        .set("targets.laptop.probe.shim_verb", "")
        .set("verbs.run-turn.timeout", "30s")
        .set("verbs.plain-turn.timeout", "30s")
        .set("verbs.cat.timeout", "30s")
        .set("verbs.big.timeout", "60s")
        .set("verbs.exit.timeout", "10s")
}

fn turn(verb: &str, uuid: &str, said: &str) -> Value {
    json!({"verb": verb, "args": ["s1", uuid, b64(said)]})
}

fn answer_of(uuid: &str, said: &str) -> String {
    format!("first half of {uuid}\nreply to {uuid}: {said}\n")
}

/// sshd's exec requests so far (one per `ssh` command, one per session).
fn execs(sshd: &Sshd) -> usize {
    sshd.log()
        .lines()
        .filter(|l| l.contains("request exec"))
        .count()
}

#[test]
fn calls_are_requests_on_one_resident_shim_per_connection() {
    let laptop = laptop();
    let tether = tether_on(&laptop, 1, 32).spawn();
    tether.wait_for_session();
    let (status, body) = tether.call(&json!({"verb": "exit", "args": ["3"]}));
    assert_eq!((status, &body["exit_status"]), (200, &json!(3)), "{body}");
    let execs_before = execs(&laptop.sshd);
    let first = laptop.residents();
    assert_eq!(first.len(), 1, "{:?}", laptop.shim_pids());
    assert_eq!(
        tether.metric("tether_shim_sessions{target=\"laptop\"}"),
        1.0
    );
    // Stdin byte for byte, larger than the credit window, through a keyed verb.
    let stdin: String = (0..700_000u32)
        .map(|i| char::from(b' ' + (i * 7 % 95) as u8))
        .collect();
    let key = uuid();
    let (status, body) = tether.call(&json!({"verb": "cat", "args": [key], "stdin": stdin}));
    assert_eq!(status, 200, "{body}");
    assert!(body["stdout"] == stdin.as_str(), "stdin came back changed");
    // Many at once, keyed and plain.
    let bodies: Vec<Value> = (0..12)
        .map(|i| match i % 2 {
            0 => turn("run-turn", &format!("t-{i}-{}", uuid()), "hallo"),
            _ => turn("plain-turn", &format!("p-{i}-{}", uuid()), "hallo"),
        })
        .collect();
    for (status, body, _) in tether.calls_at_once(bodies) {
        assert_eq!(status, 200, "{body}");
        assert!(
            body["stdout"].as_str().unwrap().contains("reply to"),
            "{body}"
        );
    }
    // 64 callers at once on the one session, twice: every call answered by its own verb run
    // (requests are opened in the order of their ids, as the shim wants them).
    for round in 0..2 {
        let bodies = (0..64)
            .map(|i| json!({"verb": "exit", "args": [(i % 7).to_string()]}))
            .collect();
        for (i, (status, body, _)) in tether.calls_at_once(bodies).into_iter().enumerate() {
            assert_eq!(status, 200, "round {round}: {body}");
            assert_eq!(body["exit_status"], i % 7, "round {round}: {body}");
        }
    }
    // No exec and no new shim for any of them: the one resident served every call.
    assert_eq!(execs(&laptop.sshd), execs_before, "calls went out as execs");
    assert_eq!(laptop.residents(), first);
    let audited = laptop.outcomes();
    assert_eq!(
        audited.iter().filter(|o| *o == "ran").count(),
        14 + 128,
        "{audited:?}"
    );
}

#[test]
fn a_forced_command_without_session_mode_gets_one_exec_per_call_said_once() {
    let sshd = Sshd::start();
    let tether = TetherConfig::for_sshd(&sshd)
        .test_verbs()
        .set("targets.laptop.probe.shim_verb", "")
        .set("targets.laptop.max_connections", 2)
        .set("targets.laptop.channels_per_connection", 2)
        .spawn();
    let bodies = (0..4)
        .map(|_| json!({"verb": "sleep", "args": ["0.3"]}))
        .collect();
    for (status, body, _) in tether.calls_at_once(bodies) {
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["stdout"], "slept 0.3\n");
    }
    let log = sshd.invocation_log();
    assert_eq!(sshd.count("sleep", &["0.3"]), 4, "{log}");
    let asked = sshd.count("@session", &[]);
    assert!(
        (1..=2).contains(&asked),
        "one @session per connection:\n{log}"
    );
    assert_eq!(
        tether.metric("tether_shim_sessions{target=\"laptop\"}"),
        0.0
    );
    let logs = tether.logs();
    assert_eq!(
        logs.matches("has no session mode").count(),
        1,
        "said once per target:\n{logs}"
    );
}

/// Makes quick calls until one goes out on a session (sshd sees no exec for it): after a
/// session ended, calls run as execs until the new one is up.
fn until_calls_ride_the_session(laptop: &Laptop, tether: &Tether) {
    let on_session = || {
        let before = execs(&laptop.sshd);
        let (status, body) = tether.call(&json!({"verb": "exit", "args": ["0"]}));
        assert_eq!(status, 200, "{body}");
        execs(&laptop.sshd) == before
    };
    assert!(
        wait_until(PATIENCE, on_session),
        "calls never rode a session"
    );
}

/// Starts `body` in the background, waits until the laptop runs `uuid`, then kills the
/// resident shim (the session's channel ends; the connection stays).
fn cut_the_session_during(
    laptop: &Laptop,
    tether: &Tether,
    body: Value,
    uuid: &str,
) -> std::thread::JoinHandle<(u16, Value)> {
    until_calls_ride_the_session(laptop, tether);
    laptop.hold(uuid);
    let call = tether.call_in_background(body);
    laptop.wait_started(uuid);
    let resident = laptop.residents();
    assert_eq!(resident.len(), 1, "{:?}", laptop.shim_pids());
    common::procs::signal(resident[0], Signal::SIGKILL);
    call
}

#[test]
fn a_cut_session_means_what_a_lost_connection_means_for_each_kind_of_verb() {
    let laptop = laptop();
    let tether = tether_on(&laptop, 1, 4)
        .set("verbs.plain-turn.idempotent", false)
        .spawn();
    tether.wait_for_session();
    // A plain verb, not idempotent: connection_lost, it may have run.
    let id = uuid();
    let call = cut_the_session_during(&laptop, &tether, turn("plain-turn", &id, "eins"), &id);
    assert_error_saying(call.join().unwrap(), 503, "connection_lost", "may have run");
    laptop.release(&id);
    // A keyed verb: the caller hears connection_lost, the run goes on detached, and sending
    // the turn again (on a new session) attaches to it: one run, the whole answer.
    let id = uuid();
    let call = cut_the_session_during(&laptop, &tether, turn("run-turn", &id, "zwei"), &id);
    let (status, body) = call.join().unwrap();
    assert_eq!(
        (status, &body["error"]["code"]),
        (503, &json!("connection_lost")),
        "{body}"
    );
    let again = tether.call_in_background(turn("run-turn", &id, "zwei"));
    laptop.release(&id);
    let (status, body) = again.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stdout"], answer_of(&id, "zwei"));
    assert_eq!(laptop.starts_of(&id), 1, "{:?}", laptop.runs());
}

#[test]
fn an_idempotent_verb_on_a_cut_session_is_sent_again_and_answered() {
    let laptop = laptop();
    let tether = tether_on(&laptop, 1, 4)
        .set("verbs.plain-turn.idempotent", true)
        .set("verbs.run-turn.idempotent", true)
        .spawn();
    tether.wait_for_session();
    // A plain idempotent verb runs again on a new session.
    let id = uuid();
    let call = cut_the_session_during(&laptop, &tether, turn("plain-turn", &id, "drei"), &id);
    assert!(
        wait_until(PATIENCE, || laptop.starts_of(&id) == 2),
        "{:?}",
        laptop.runs()
    );
    laptop.release(&id);
    let (status, body) = call.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stdout"], answer_of(&id, "drei"));
    // A keyed idempotent verb is sent again and attaches: still one run.
    let id = uuid();
    let call = cut_the_session_during(&laptop, &tether, turn("run-turn", &id, "vier"), &id);
    assert!(
        wait_until(PATIENCE, || laptop.residents().len() == 1),
        "no new session"
    );
    laptop.release(&id);
    let (status, body) = call.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stdout"], answer_of(&id, "vier"));
    assert_eq!(laptop.starts_of(&id), 1, "{:?}", laptop.runs());
}

#[test]
fn a_slow_reader_stalls_only_its_own_request() {
    let laptop = laptop();
    let tether = tether_on(&laptop, 1, 8).spawn();
    tether.wait_for_session();
    let size = 16 << 20;
    let key = uuid();
    let mut slow = Streamed::start(
        tether.socket_path(),
        &json!({"verb": "big", "args": [key, size.to_string()], "stream": true}),
    );
    assert_eq!(slow.status, 200);
    // While its caller reads nothing, others come and go at once on the same session.
    for i in 0..10 {
        let start = Instant::now();
        let (status, body) = tether.call(&json!({"verb": "exit", "args": [i.to_string()]}));
        assert_eq!((status, &body["exit_status"]), (200, &json!(i)), "{body}");
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "call {i} waited {:?}",
            start.elapsed()
        );
    }
    // The slow reader then gets every byte.
    let mut bytes = 0;
    for event in slow.events() {
        if event["event"] == "stdout" {
            bytes += event["data"].as_str().unwrap().len();
        }
        if event["event"] == "exit" {
            assert_eq!(event["exit_status"], 0, "{event}");
        }
    }
    assert_eq!(bytes, size);
}

#[test]
fn a_call_cancelled_before_its_send_never_runs_and_after_it_may_have() {
    let laptop = laptop();
    let tether = tether_on(&laptop, 1, 1)
        .set("server.admin_mutations", true)
        .set("targets.laptop.queue_timeout", "30s")
        .spawn();
    tether.wait_for_session();
    let running = uuid();
    laptop.hold(&running);
    let mut first = turn("plain-turn", &running, "läuft");
    first["request_id"] = json!("running-1");
    let first = tether.call_in_background(first);
    laptop.wait_started(&running);
    // The one slot is taken: this one waits, and is cancelled before it was sent.
    let queued = uuid();
    let mut second = turn("plain-turn", &queued, "wartet");
    second["request_id"] = json!("queued-1");
    let second = tether.call_in_background(second);
    assert!(wait_until(PATIENCE, || state(&tether, "queued-1")
        .as_deref()
        == Some("queued")));
    let (status, body) = delete(&tether, "queued-1");
    assert_eq!(status, 200, "{body}");
    assert_error_saying(second.join().unwrap(), 409, "cancelled", "never sent");
    // The running one is cancelled on the session: the caller hears it may have run.
    let resident = laptop.residents();
    let (status, body) = delete(&tether, "running-1");
    assert_eq!(status, 200, "{body}");
    assert_error_saying(first.join().unwrap(), 409, "cancelled", "may have run");
    laptop.release(&running);
    // The session goes on: the next call runs on the same resident; the queued one never ran.
    let (status, body) = tether.call(&json!({"verb": "exit", "args": ["0"]}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(laptop.residents(), resident);
    assert_eq!(laptop.starts_of(&queued), 0, "{:?}", laptop.runs());
}

#[test]
fn the_resident_shim_exits_when_tether_goes_away() {
    let laptop = laptop();
    let mut tether = tether_on(&laptop, 1, 2).spawn();
    tether.wait_for_session();
    let (status, body) = tether.call(&json!({"verb": "exit", "args": ["0"]}));
    assert_eq!(status, 200, "{body}");
    let resident = laptop.residents();
    assert_eq!(resident.len(), 1);
    assert!(cmdline(resident[0]).contains("shim"));
    // A polite stop closes the session; the resident is gone at once.
    tether.stop_with(Signal::SIGTERM);
    assert!(
        wait_until(Duration::from_secs(5), || laptop.residents().is_empty()),
        "the resident outlived tether: {:?}",
        laptop.residents()
    );
}

#[test]
fn a_shim_probe_the_shim_answers_itself_costs_no_process_and_no_exec() {
    let laptop = laptop();
    let tether = tether_on(&laptop, 1, 2)
        .set("targets.laptop.probe.shim_verb", "alive")
        .set("targets.laptop.probe.shim_interval", "200ms")
        .set("verbs.alive.timeout", "5s")
        .spawn();
    tether.wait_for_session();
    let probed = || {
        laptop
            .audit()
            .iter()
            .filter(|l| l["verb"] == "alive" && l["outcome"] == "ran")
            .count()
    };
    // The first probe may have gone out as an exec while the session was being asked for.
    let (execs_before, probes_before) = (execs(&laptop.sshd), probed());
    assert!(
        wait_until(PATIENCE, || probed() >= probes_before + 3),
        "{:?}",
        laptop.audit()
    );
    let shim = &tether.target_health()["shim"];
    assert_eq!(shim["ok"], true, "{shim}");
    // Every probe since went to the one resident shim as a request (no exec), and no program
    // ran at all.
    assert_eq!(execs(&laptop.sshd), execs_before, "{}", laptop.sshd.log());
    assert_eq!(laptop.residents().len(), 1);
    assert_eq!(laptop.runs(), Vec::new());
    let (status, body) = tether.call(&json!({"verb": "alive", "args": ["s1"]}));
    assert_eq!((status, &body["stdout"]), (200, &json!("ok\n")), "{body}");
}

fn state(tether: &Tether, request_id: &str) -> Option<String> {
    let (_, listed) = http::get_json(tether.socket_path(), "/v1/calls");
    listed["calls"]
        .as_array()?
        .iter()
        .find(|c| c["request_id"] == request_id)
        .and_then(|c| c["state"].as_str().map(str::to_string))
}

fn delete(tether: &Tether, request_id: &str) -> (u16, Value) {
    let resp = http::unix(
        tether.socket_path(),
        "DELETE",
        &format!("/v1/calls/{request_id}"),
        None,
    )
    .expect("DELETE");
    (resp.status, resp.json())
}

/// Asserts that `answer` is the error `code` with HTTP `status`, its message saying `says`.
fn assert_error_saying(answer: (u16, Value), status: u16, code: &str, says: &str) {
    let (got, body) = answer;
    assert_eq!(
        (got, &body["error"]["code"]),
        (status, &json!(code)),
        "{body}"
    );
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(says), "{body}");
}
