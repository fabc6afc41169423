//! Calls that reach the laptop (docs/rpc.md, "POST /v1/call"): output, exit status, stdin,
//! UTF-8, size caps, the CLI as a drop-in for ssh (docs/cli.md, "tether call"), and the
//! request log (docs/cli.md, "Logs").

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::sshd::Sshd;
use common::tether::TetherConfig;
use serde_json::json;

const MIB: usize = 1 << 20;

#[test]
fn run_turn_carries_umlauts_and_runs_exactly_once() {
    let sshd = Sshd::start();
    let tether = TetherConfig::for_sshd(&sshd).spawn();
    let msg = B64.encode("Grüße aus Köln, Jürgen! ßäöü");
    let uuid = "6f1c2d3e-aaaa-4bbb-8ccc-000000000001";
    let (status, body) = tether.call(&json!({
        "verb": "run-turn", "args": ["paliad-paliadin-1a2b3c4d", uuid, msg], "request_id": "req-1"
    }));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stdout"], "reply: Grüße aus Köln, Jürgen! ßäöü\n");
    assert_eq!(body["exit_status"], 0);
    assert_eq!(body["exit_signal"], serde_json::Value::Null);
    assert_eq!(body["request_id"], "req-1");
    assert_eq!(body["target"], "laptop");
    assert_eq!(body["verb"], "run-turn");
    assert_eq!(body["cached"], false);
    assert!(body["duration_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(
        sshd.count("run-turn", &["paliad-paliadin-1a2b3c4d", uuid]),
        1
    );
}

#[test]
fn remote_exit_status_and_stderr_come_back_with_200() {
    let sshd = Sshd::start();
    let tether = TetherConfig::for_sshd(&sshd).test_verbs().spawn();
    let (status, body) = tether.call(&json!({"verb": "fail", "args": ["3"]}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["exit_status"], 3);
    assert_eq!(body["stderr"], "failing with status 3\n");
    let (_, body) = tether.call(&json!({"verb": "bogus-on-remote-only"}));
    assert_eq!(body["error"]["code"], "verb_not_allowed");
}

#[test]
fn stdin_text_and_bytes_reach_the_command() {
    let sshd = Sshd::start();
    let tether = TetherConfig::for_sshd(&sshd).test_verbs().spawn();
    let text = "Zeile 1: Grüße\nZeile 2: $(rm -rf /) `id` 'quoted'\n";
    let (status, body) = tether.call(&json!({"verb": "cat", "stdin": text}));
    assert_eq!(
        (status, body["stdout"].as_str()),
        (200, Some(text)),
        "{body}"
    );
    let bytes: Vec<u8> = (0..=255u8).filter(|b| b.is_ascii()).collect();
    let (_, body) = tether.call(&json!({"verb": "cat", "stdin_base64": B64.encode(&bytes)}));
    assert_eq!(body["stdout"].as_str().unwrap().as_bytes(), &bytes[..]);
    // Half a megabyte of stdin (the body limit is 1 MiB), echoed back: stdin and stdout
    // flow at the same time.
    let big = "x".repeat(MIB / 2);
    let (status, body) = tether.call(&json!({"verb": "cat", "stdin": big}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stdout"].as_str().unwrap().len(), MIB / 2);
}

#[test]
fn one_mebibyte_of_output_arrives_whole_and_more_is_cut_and_flagged() {
    let sshd = Sshd::start();
    let tether = TetherConfig::for_sshd(&sshd)
        .test_verbs()
        .set("targets.laptop.max_output_bytes", 2 * MIB as i64)
        .spawn();
    let (status, body) = tether.call(&json!({"verb": "big", "args": [MIB.to_string()]}));
    assert_eq!(status, 200);
    assert_eq!(body["stdout"].as_str().unwrap().len(), MIB);
    assert_eq!(body["stdout_truncated"], false);
    let (status, body) = tether.call(&json!({"verb": "big", "args": [(3 * MIB).to_string()]}));
    assert_eq!(status, 200);
    assert_eq!(body["stdout"].as_str().unwrap().len(), 2 * MIB);
    assert_eq!(body["stdout_truncated"], true);
    assert_eq!(body["exit_status"], 0);
    // The connection is still healthy after draining an over-cap stream.
    let (_, body) = tether.call(&json!({"verb": "health", "args": ["s1"]}));
    assert_eq!(body["stdout"], "ok\n");
}

#[test]
fn cli_is_a_drop_in_for_ssh() {
    let sshd = Sshd::start();
    let tether = TetherConfig::for_sshd(&sshd).test_verbs().spawn();
    let msg = B64.encode("Grüße");
    let out = tether.cli("call", &["run-turn", "s1", "u1", &msg]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (Some(0), "reply: Grüße\n"),
        "{out:?}"
    );
    let out = tether.cli("call", &["fail", "7"]);
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (Some(7), "failing with status 7\n")
    );
    let out = tether.cli("call", &["rm", "-rf"]);
    assert_eq!(out.code, Some(255));
    assert!(
        out.stderr.starts_with("tether: verb_not_allowed: "),
        "{}",
        out.stderr
    );
    let file = tether_stdin_file(&tether, "aus der Datei\n");
    let out = tether.cli("call", &["--stdin-file", &file, "cat"]);
    assert_eq!(out.stdout, "aus der Datei\n");
    let piped = common::tether::run_cli(
        &[
            "call",
            "--socket",
            tether.socket_path().to_str().unwrap(),
            "--stdin-file",
            "-",
            "cat",
        ],
        &[],
        Some("von stdin\n".as_bytes()),
    );
    assert_eq!(piped.stdout, "von stdin\n");
    let out = common::tether::run_cli(
        &["call", "--socket", "/nonexistent/t.sock", "health", "s"],
        &[],
        None,
    );
    assert_eq!(out.code, Some(255));
    assert!(
        out.stderr
            .starts_with("tether: upstream_unreachable: tether does not answer"),
        "{}",
        out.stderr
    );
}

fn tether_stdin_file(tether: &common::tether::Tether, text: &str) -> String {
    let path = tether.config_path().with_file_name("stdin.txt");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn each_call_is_logged_once_without_arguments_or_stdin() {
    let sshd = Sshd::start();
    let tether = TetherConfig::for_sshd(&sshd).test_verbs().spawn();
    let secret_msg = B64.encode("mein geheimes Anliegen");
    tether.call(
        &json!({"verb": "run-turn", "args": ["s1", "u1", secret_msg], "request_id": "log-check-1"}),
    );
    tether
        .call(&json!({"verb": "cat", "stdin": "stdin-payload-4711", "request_id": "log-check-2"}));
    let logs = tether.logs();
    // Other lines may carry the call's span (a connection the call opened, say): count the
    // call's own summary line.
    let call_lines = |id: &str| {
        logs.lines()
            .filter(|l| l.contains(" call request_id=") && l.contains(id))
            .count()
    };
    assert_eq!(call_lines("log-check-1"), 1, "{logs}");
    assert_eq!(call_lines("log-check-2"), 1, "{logs}");
    assert!(
        !logs.contains(&secret_msg) && !logs.contains("stdin-payload-4711"),
        "{logs}"
    );
}
