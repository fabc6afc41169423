//! `tether demo` as a newcomer runs it (docs/cli.md, "tether demo"): the real binary, its
//! socket, its CLI, its admin port, and SIGTERM. The demo's SSH server is not a fixture for
//! other tests (see the sshd fixture).

mod common;

use base64::Engine;
use common::demo::{DEMO_TARGET, Demo};
use common::http;
use common::tether::{CliOutput, run_cli};
use nix::sys::signal::Signal;
use serde_json::json;

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn reply(said: &str) -> String {
    format!("paliadin (demo): you said \"{said}\"\n")
}

/// `tether call --socket SOCKET VERB ARGS…` against the demo.
fn cli(demo: &Demo, verb: &str, args: &[&str]) -> CliOutput {
    let socket = demo.socket().display().to_string();
    let mut all = vec!["call", "--socket", &socket, verb];
    all.extend_from_slice(args);
    run_cli(&all, &[], None)
}

#[test]
fn demo_serves_the_seed_verbs_and_drains_on_sigterm() {
    let mut demo = Demo::start();

    // Over the socket, as the app does: umlauts survive the base64 round trip.
    let said = "Grüß dich, Ärger über Öl? ✓";
    let turn = uuid::Uuid::new_v4().to_string();
    let (status, body) = demo.call("run-turn", &["demo-session", &turn, &b64(said)]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["exit_status"], 0, "{body}");
    assert_eq!(body["target"], DEMO_TARGET);
    assert_eq!(body["stdout"], reply(said));
    assert_eq!(body["stderr"], "");

    let (status, body) = demo.call("health", &["demo-session"]);
    assert_eq!((status, &body["stdout"]), (200, &json!("ok\n")), "{body}");
    let (status, body) = demo.call("reset", &["demo-session"]);
    assert_eq!(
        (status, &body["stdout"]),
        (200, &json!("reset demo-session\n")),
        "{body}"
    );

    // The allowlist still applies: the shim never sees a verb outside it.
    let (status, body) = demo.call("sleep", &["1"]);
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "verb_not_allowed");

    // Through the CLI, which stands in for ssh.
    let out = cli(&demo, "run-turn", &["demo-session", &turn, &b64(said)]);
    assert_eq!((out.code, out.stdout), (Some(0), reply(said)));
    let out = cli(&demo, "health", &["demo-session"]);
    assert_eq!((out.code, out.stdout.as_str()), (Some(0), "ok\n"));
    let out = cli(&demo, "sleep", &["1"]);
    assert_eq!(out.code, Some(255), "{out:?}");
    assert!(
        out.stderr.starts_with("tether: verb_not_allowed: "),
        "{out:?}"
    );

    // More calls at once than one connection has channels: every one gets its own answer.
    std::thread::scope(|scope| {
        for i in 0..24 {
            let demo = &demo;
            scope.spawn(move || {
                let said = format!("Nachricht Nr. {i} für dich");
                let turn = uuid::Uuid::new_v4().to_string();
                let (status, body) = demo.call("run-turn", &["demo-session", &turn, &b64(&said)]);
                assert_eq!(status, 200, "{body}");
                assert_eq!(body["stdout"], reply(&said));
            });
        }
    });

    // The banner names the socket and admin URLs that really answer.
    let banner = demo.banner();
    let socket = demo.socket().to_str().unwrap();
    assert!(
        banner.contains(&format!(
            "curl -s --unix-socket {socket} http://tether/v1/call"
        )),
        "{banner}"
    );
    assert!(
        banner.contains(&format!("call --socket {socket} run-turn demo-session")),
        "{banner}"
    );
    let admin = banner
        .split("Status page  http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no status page URL in {banner}"));
    let health = http::tcp(admin, "GET", "/v1/health", None).unwrap();
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "up", "{}", health.text());

    // SIGTERM: drain, exit 0, socket removed.
    demo.signal(Signal::SIGTERM);
    let exit = demo.wait_exit();
    assert_eq!(exit.code(), Some(0), "{exit:?}");
    assert!(!demo.socket().exists(), "the socket file is still there");
}
