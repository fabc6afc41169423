//! The laptop's `tether shim` refuses a call when one of its limits is reached: exit 2 and
//! `tether shim: busy: …` on stderr, nothing run. tether answers that as its own `busy`
//! (429, retryable), buffered or streamed, while a verb's ordinary exit 2 stays the verb's
//! answer (docs/rpc.md, "Errors" and "Streamed calls").

mod common;

use common::http::Streamed;
use common::sshd::Sshd;
use common::tether::{Tether, TetherConfig};
use common::wait_until;
use serde_json::json;
use std::time::Duration;

const SHIM_SAID: &str = "8 keyed runs already (max_running = 8); try again later";

fn tether(sshd: &Sshd) -> Tether {
    let tether = TetherConfig::for_sshd(sshd)
        .test_verbs()
        .merge("[verbs.busy]\ntimeout = \"5s\"\n")
        .set("targets.laptop.probe.shim_verb", "")
        .spawn();
    tether.wait_status("up");
    tether
}

#[test]
fn the_shims_busy_refusal_is_answered_busy_and_retryable() {
    let sshd = Sshd::start();
    let tether = tether(&sshd);
    let (status, body) = tether.call(&json!({"verb": "busy", "request_id": "b-1"}));
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "busy");
    assert_eq!(body["error"]["retryable"], true);
    assert_eq!(body["request_id"], "b-1");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(SHIM_SAID),
        "the shim's own words: {message}"
    );

    // Streamed: the 200 has gone out when the exec left; the stream is one `error` event,
    // busy and retryable, with no stderr event before it (nothing ran).
    let mut answer = Streamed::start(
        tether.socket_path(),
        &json!({"verb": "busy", "stream": true}),
    );
    assert_eq!(answer.status, 200);
    let events = answer.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["event"], "error");
    assert_eq!(events[0]["error"]["code"], "busy");
    assert_eq!(events[0]["error"]["retryable"], true);
    assert!(
        events[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains(SHIM_SAID)
    );
    // Counted once the stream has ended, a moment after its last event.
    assert!(wait_until(Duration::from_secs(5), || {
        tether.metric("tether_calls_total{target=\"laptop\",verb=\"busy\",code=\"busy\"}") == 2.0
    }));
}

#[test]
fn a_verbs_own_exit_2_stays_its_answer() {
    let sshd = Sshd::start();
    let tether = tether(&sshd);
    let (status, body) = tether.call(&json!({"verb": "fail", "args": ["2"]}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["exit_status"], 2);
    assert_eq!(body["stderr"], "failing with status 2\n");

    // A stderr that begins like the refusal, but another exit status, is output too.
    let (status, body) =
        tether.call(&json!({"verb": "stderr", "args": ["tether", "shim:", "busy:", "no"]}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stderr"], "tether shim: busy: no\n");

    let mut answer = Streamed::start(
        tether.socket_path(),
        &json!({"verb": "fail", "args": ["2"], "stream": true}),
    );
    assert_eq!(answer.status, 200);
    let events = answer.events();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["stderr", "exit"], "{events:?}");
    assert_eq!(events[0]["data"], "failing with status 2\n");
    assert_eq!(events[1]["exit_status"], 2);
}
