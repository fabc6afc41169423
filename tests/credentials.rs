//! Per-turn credentials through tether (docs/rpc.md, "Credentials"; docs/shim.md, "In-band
//! data"): a secret the app sends reaches the laptop's verb program as a file in
//! `$CREDENTIALS_DIRECTORY`, and nowhere else: not tether's log at debug level, `/metrics`,
//! `/v1/calls`, the status page, the answer, the shim's journal or audit log, the program's
//! argv or environment, sshd's log at DEBUG3, or any file left on the laptop. A remote that
//! cannot take credentials gets nothing; bad credentials are refused before anything is sent.

mod common;

use std::fs;

use common::http;
use common::in_band::{contains, laptop_with, places_holding, seen, token, wait_ready};
use common::shim_fixture::{Laptop, uuid};
use common::sshd::Sshd;
use common::tether::{Tether, TetherConfig};
use serde_json::{Value, json};

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// tether in front of `laptop`, logging at debug level, with the laptop's in-band verbs.
fn tether(laptop: &Laptop, in_band: &str) -> Tether {
    tether_with_session(laptop, in_band, "auto")
}

/// The same, with `shim_session` set: `"auto"` sends calls on the resident shim session
/// (credentials in the request frame), `"off"` one exec per call (credentials before stdin).
fn tether_with_session(laptop: &Laptop, in_band: &str, shim_session: &str) -> Tether {
    TetherConfig::for_sshd(&laptop.sshd)
        .set("targets.laptop.shim_session", shim_session)
        .env("RUST_LOG", "debug")
        .set("targets.laptop.probe.shim_verb", "")
        .set("targets.laptop.in_band", in_band)
        .set("verbs.creds.timeout", "30s")
        .set("verbs.creds-hold.timeout", "30s")
        .set("verbs.creds-cached.cache_ttl", "10s")
        .spawn()
}

fn creds_call(verb: &str, name: &str, credentials: Value) -> Value {
    json!({"verb": verb, "args": [name], "stdin": "in", "credentials": credentials})
}

#[test]
fn a_credential_on_the_shim_session_reaches_the_program_and_nowhere_else() {
    reaches_the_program_and_nowhere_else("auto");
}

#[test]
fn a_credential_on_exec_reaches_the_program_and_nowhere_else() {
    reaches_the_program_and_nowhere_else("off");
}

fn reaches_the_program_and_nowhere_else(shim_session: &str) {
    let laptop = laptop_with(&["Match all", "LogLevel DEBUG3"]);
    let tether = tether_with_session(&laptop, "auto", shim_session);
    if shim_session == "auto" {
        tether.wait_for_session();
    }
    let secret = token();
    let name = uuid();
    fs::create_dir_all(laptop.dir().join("hold")).unwrap();
    fs::write(laptop.dir().join("hold").join(&name), "").unwrap();
    let mut body = creds_call("creds-hold", &name, json!({"TOKEN": secret}));
    body["trace"] = json!(PARENT);
    let call = tether.call_in_background(body);
    wait_ready(&laptop, &name);
    // While it runs: everything an operator can look at.
    let mut looked_at = vec![
        (
            "/v1/calls",
            http::get_json(tether.socket_path(), "/v1/calls")
                .1
                .to_string(),
        ),
        ("/metrics", tether.admin_get("/metrics").text()),
        ("the status page", tether.admin_get("/").text()),
    ];
    let listed = &looked_at[0].1;
    assert!(
        listed.contains("creds-hold"),
        "the call is not listed: {listed}"
    );
    // The call went the way asked: on the resident session, or as an exec.
    let residents = laptop.residents();
    assert_eq!(
        residents.len(),
        usize::from(shim_session == "auto"),
        "{residents:?}"
    );
    fs::remove_file(laptop.dir().join("hold").join(&name)).unwrap();
    let (status, answer) = call.join().unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(seen(&laptop, &name, "value.TOKEN"), secret);
    assert_eq!(seen(&laptop, &name, "mode.TOKEN").trim(), "400");
    assert_eq!(seen(&laptop, &name, "dir_mode").trim(), "700");
    // The caller's trace, continued: in the answer, the program's environment (tether's
    // own span as the parent) and the shim's audit line.
    assert_eq!(answer["trace_id"], TRACE_ID, "{answer}");
    let env = seen(&laptop, &name, "env");
    assert!(
        env.contains(&format!("TRACEPARENT=00-{TRACE_ID}-")),
        "{env}"
    );
    assert!(
        !env.contains(PARENT),
        "tether passes on its own span: {env}"
    );
    let audited = laptop.audit();
    assert!(
        audited.iter().any(|line| line["trace_id"] == TRACE_ID),
        "{audited:?}"
    );
    let dir = seen(&laptop, &name, "dir");
    assert!(
        !std::path::Path::new(&dir).exists(),
        "{dir} outlived the run"
    );
    looked_at.push(("the answer", answer.to_string()));
    looked_at.push(("/metrics after", tether.admin_get("/metrics").text()));
    looked_at.push(("tether's log", tether.logs()));
    assert!(
        tether.logs().contains("DEBUG"),
        "tether did not log at debug level"
    );
    for (place, text) in &looked_at {
        assert!(
            !contains(text.as_bytes(), &secret),
            "the credential is in {place}"
        );
    }
    let found = places_holding(&laptop, &secret, &[]);
    assert_eq!(
        found,
        vec![format!("seen/{name}/value.TOKEN")],
        "the credential is found beyond what the program read"
    );
    for what in ["cmdline", "environ", "env"] {
        assert!(!seen(&laptop, &name, what).contains(&secret), "{what}");
    }
    assert!(
        laptop.sshd.log().contains("debug3:"),
        "sshd did not log at DEBUG3"
    );
}

#[test]
fn credentials_for_a_remote_that_cannot_take_them_are_refused_before_the_send() {
    // A plain forced command, not tether shim: it does not answer @hello.
    let sshd = Sshd::start();
    let plain = TetherConfig::for_sshd(&sshd)
        .set("targets.laptop.probe.shim_verb", "")
        .test_verbs()
        .spawn();
    let (status, body) = plain.call(&json!({
        "verb": "cat", "stdin": "x", "credentials": {"TOKEN": token()},
    }));
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "upstream_misconfigured", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("@hello") && message.contains("nothing was sent"),
        "{message}"
    );
    assert_eq!(sshd.count("cat", &[]), 0, "{:?}", sshd.invocations());
    // Without credentials the same call runs, its trace context kept in tether.
    let (status, body) = plain.call(&json!({"verb": "cat", "stdin": "x"}));
    assert_eq!(
        (status, body["stdout"].as_str()),
        (200, Some("x")),
        "{body}"
    );
    assert!(
        sshd.raw_commands()
            .iter()
            .all(|c| !c.starts_with(b"@in-band"))
    );

    // A laptop with tether shim, but in_band is off for the target.
    let laptop = laptop_with(&[]);
    let tether = tether(&laptop, "off");
    let name = uuid();
    let (status, body) = tether.call(&creds_call("creds", &name, json!({"TOKEN": token()})));
    assert_eq!(
        (status, &body["error"]["code"]),
        (502, &json!("upstream_misconfigured")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("in_band"),
        "{body}"
    );
    assert!(
        !laptop.dir().join("seen").join(&name).exists(),
        "the verb ran"
    );
}

#[test]
fn bad_credentials_are_refused_naming_the_rule_and_never_the_value() {
    let laptop = laptop_with(&[]);
    let tether = tether(&laptop, "auto");
    let secret = token();
    let cases = [
        (json!({"token": secret}), 400, "bad_request", "\"token\""),
        (
            json!({"TOKEN": "x".repeat(16 * 1024 + 1)}),
            413,
            "payload_too_large",
            "TOKEN",
        ),
        (json!({"TOKEN": 7}), 400, "bad_request", "expected a string"),
        (json!(secret), 400, "bad_request", "expected"),
    ];
    for (credentials, code, error, named) in cases {
        let (status, body) = tether.call(&creds_call("creds", &uuid(), credentials));
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (code, Some(error)),
            "{body}"
        );
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(named), "{message}");
        assert!(!message.contains(&secret), "{message}");
    }
    // A cached verb's shared result cannot depend on a secret.
    let (status, body) = tether.call(&creds_call(
        "creds-cached",
        &uuid(),
        json!({"TOKEN": secret}),
    ));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_request")),
        "{body}"
    );
    assert!(
        body["error"]["message"].as_str().unwrap().contains("cache"),
        "{body}"
    );
    assert!(!laptop.dir().join("seen").exists(), "a refused call ran");
    assert!(!tether.logs().contains(&secret));
}
