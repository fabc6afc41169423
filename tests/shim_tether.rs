//! tether in front of `tether shim`: whatever ends a call early on tether's side (the caller's
//! deadline, tether restarting, a cut link), the turn runs once on the laptop and sending it
//! again gets its answer (docs/shim.md, docs/rpc.md). A shim at one of its limits is `busy`
//! to the app, retryable, and the same turn sent again later runs.

mod common;

use common::shim_fixture::{Laptop, PATIENCE, b64, uuid};
use common::tether::{Tether, TetherConfig};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

fn full_answer(uuid: &str, said: &str) -> String {
    format!("first half of {uuid}\nreply to {uuid}: {said}\n")
}

/// tether for `laptop`: run-turn with a 30 s timeout (idempotent if asked), no shim probe,
/// calls on the resident shim session.
fn tether(laptop: &Laptop, idempotent: bool) -> Tether {
    tether_on(laptop, idempotent, "auto")
}

/// The same with `shim_session` set (`"off"`: one exec per call).
fn tether_on(laptop: &Laptop, idempotent: bool, shim_session: &str) -> Tether {
    TetherConfig::for_sshd(&laptop.sshd)
        .set("targets.laptop.shim_session", shim_session)
        .set("server.shutdown_grace", "1s")
        .set("targets.laptop.probe.shim_verb", "")
        .set("verbs.run-turn.timeout", "30s")
        .set("verbs.run-turn.idempotent", idempotent)
        .spawn()
}

fn turn_body(session: &str, turn: &str, said: &str) -> Value {
    json!({"verb": "run-turn", "args": [session, turn, b64(said)]})
}

/// A repeat of the turn through `tether` gets the whole answer; it ran once.
fn repeat_gets_the_answer(laptop: &Laptop, tether: &Tether, turn: &str, said: &str) {
    let (status, body) = tether.call(&turn_body("s1", turn, said));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["exit_status"], 0, "{body}");
    assert_eq!(body["stdout"], full_answer(turn, said));
    assert_eq!(body["stderr"], format!("note for {turn}\n"));
    assert_eq!(laptop.starts_of(turn), 1, "{:?}", laptop.runs());
}

#[test]
fn a_caller_whose_deadline_passed_gets_the_answer_by_sending_again() {
    let laptop = Laptop::start();
    let tether = tether(&laptop, false);
    let turn = uuid();
    laptop.hold(&turn);
    let said = "noch da?";
    let late = tether.cli(
        "call",
        &["--timeout", "1s", "run-turn", "s1", &turn, &b64(said)],
    );
    assert_eq!(late.code, Some(255), "{late:?}");
    assert!(late.stderr.starts_with("tether: timeout:"), "{late:?}");
    laptop.release(&turn);
    repeat_gets_the_answer(&laptop, &tether, &turn, said);
}

#[test]
fn a_turn_survives_tether_restarting_and_a_repeat_gets_its_answer() {
    let laptop = Laptop::start();
    let mut first = tether(&laptop, false);
    let turn = uuid();
    let said = "über den Neustart";
    laptop.hold(&turn);
    let call = first.call_in_background(turn_body("s1", &turn, said));
    laptop.wait_started(&turn);
    let exit = first.stop_with(Signal::SIGTERM);
    assert!(exit.success(), "{exit:?}");
    let (status, body) = call.join().unwrap();
    assert_eq!(
        (status, &body["error"]["code"]),
        (503, &json!("shutting_down")),
        "{body}"
    );

    let second = tether(&laptop, false);
    laptop.release(&turn);
    laptop.wait_state("run-turn", &turn, "done");
    repeat_gets_the_answer(&laptop, &second, &turn, said);
}

#[test]
fn with_idempotent_turns_one_app_call_survives_a_cut_mid_turn() {
    survives_a_cut_mid_turn("auto");
}

#[test]
fn with_idempotent_turns_one_app_call_on_exec_survives_a_cut_mid_turn() {
    survives_a_cut_mid_turn("off");
}

fn survives_a_cut_mid_turn(shim_session: &str) {
    let laptop = Laptop::start();
    let tether = tether_on(&laptop, true, shim_session);
    if shim_session == "auto" {
        tether.wait_for_session();
    }
    let turn = uuid();
    let said = "one call, one answer";
    laptop.hold(&turn);
    let call = tether.call_in_background(turn_body("s1", &turn, said));
    laptop.wait_started(&turn);
    laptop.sshd.kill_sessions();
    // tether sends the turn again on a fresh connection, where a new shim attaches to the run
    // (or, were it not sent again, the call ends).
    assert!(common::wait_until(PATIENCE, || !laptop
        .shim_pids()
        .is_empty()
        || call.is_finished()));
    laptop.release(&turn);
    let (status, body) = call.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stdout"], full_answer(&turn, said));
    assert_eq!(laptop.starts_of(&turn), 1, "{:?}", laptop.runs());
}

#[test]
fn a_shim_at_its_max_running_is_busy_to_the_app_and_the_turn_runs_when_sent_again() {
    let laptop = Laptop::with_settings("max_running = 1", "");
    let tether = tether(&laptop, false);
    let (held, refused) = (uuid(), uuid());
    laptop.hold(&held);
    let first = tether.call_in_background(turn_body("s1", &held, "first"));
    laptop.wait_started(&held);

    let (status, body) = tether.call(&turn_body("s2", &refused, "second"));
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "busy", "{body}");
    assert_eq!(body["error"]["retryable"], true, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("max_running"), "{body}");
    assert_eq!(laptop.starts_of(&refused), 0, "{:?}", laptop.runs());

    laptop.release(&held);
    let (status, body) = first.join().unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, body) = tether.call(&turn_body("s2", &refused, "second"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stdout"], full_answer(&refused, "second"));
    assert_eq!(laptop.starts_of(&refused), 1, "{:?}", laptop.runs());
}
