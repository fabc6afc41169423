//! `tether demo` as a newcomer runs it (docs/cli.md, "tether demo"): the real binary, its
//! socket, its CLI, its admin port, and SIGTERM. The demo's SSH server is not a fixture for
//! other tests (see the sshd fixture).

mod common;

use base64::Engine;
use common::demo::{DEMO_TARGET, Demo};
use common::http;
use common::tether::{CliOutput, run_cli};
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use std::path::Path;

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

#[test]
fn the_demo_sends_one_turn_twice_and_its_shim_runs_it_once() {
    let demo = Demo::start();
    let banner = demo.banner();
    let shim_config = banner
        .lines()
        .find_map(|l| l.trim().strip_prefix("shim     "))
        .unwrap_or_else(|| panic!("no shim config in {banner}"))
        .trim_matches('\'')
        .to_string();
    // The banner sends its turn twice: once over the socket, once through the CLI.
    let printed = banner
        .split("run-turn demo-session ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("no CLI turn in {banner}"));
    assert!(uuid::Uuid::parse_str(printed).is_ok(), "{printed}");
    let curl = format!(r#""args":["demo-session","{printed}","#);
    assert!(banner.contains(&curl), "{banner}");
    assert!(banner.contains(&format!("--journal {printed}")), "{banner}");

    let turn = "6f1c2d3e-0a4b-4c5d-9e8f-112233445566";
    let said = "zweimal gesendet, einmal gelaufen";
    let first = demo.call("run-turn", &["demo-session", turn, &b64(said)]);
    let again = demo.call("run-turn", &["demo-session", turn, &b64(said)]);
    assert_eq!(first.0, 200, "{}", first.1);
    assert_eq!(again.1["stdout"], reply(said));
    assert_eq!(first.1["stdout"], again.1["stdout"]);

    let audit_path = Path::new(&shim_config).with_file_name("audit.jsonl");
    let audit = std::fs::read_to_string(&audit_path).unwrap();
    let outcomes: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["key"] == turn)
        .map(|l| l["outcome"].clone())
        .collect();
    assert_eq!(outcomes, ["ran", "replayed"], "{audit}");
    let journal = run_cli(
        &["shim", "--config", &shim_config, "--journal", turn],
        &[],
        None,
    );
    let shown = &journal.stdout;
    assert!(
        shown.contains("state   done") && shown.contains("lock    demo-session"),
        "{shown}"
    );
}
