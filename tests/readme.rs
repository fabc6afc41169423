//! The README's examples run as printed: every `curl … --unix-socket …` and `tether call …`
//! line of its `sh` blocks runs in bash against a real `tether demo`, with only the socket
//! path and the path of the `tether` binary swapped in. Each must succeed: curl exits 0 with
//! an HTTP 200 JSON answer (NDJSON ending in `exit` for a streamed call) whose remote command
//! exited 0; `tether call` exits 0.

mod common;

use std::process::Command;

use common::demo::Demo;
use common::tether::BIN;
use serde_json::Value;

const README: &str = include_str!("../README.md");
/// The socket path the README's examples use.
const README_SOCKET: &str = "/run/tether/tether.sock";

/// The lines of the README's ```sh blocks, with `\`-continued lines joined.
fn shell_lines(markdown: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut in_block = false;
    let mut pending = String::new();
    for line in markdown.lines() {
        if line.starts_with("```") {
            in_block = line == "```sh";
            continue;
        }
        if !in_block {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(start) => pending.push_str(start),
            None => {
                pending.push_str(line);
                lines.push(std::mem::take(&mut pending).trim().to_string());
            }
        }
    }
    lines
}

/// `NAME=value` lines (such as `S=/run/tether/tether.sock`), which the examples rely on.
fn is_assignment(line: &str) -> bool {
    line.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
    })
}

fn is_curl_example(line: &str) -> bool {
    line.starts_with("curl ") && line.contains("--unix-socket")
}

fn is_cli_example(line: &str) -> bool {
    line.starts_with("tether call ")
}

/// What a shell run printed.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `script` in bash with the `tether` environment scrubbed. curl reads a config file
/// that makes it print the HTTP status after the body (`--write-out`) and no progress meter,
/// so the example lines themselves stay as printed.
fn bash(script: &str, curl_home: &std::path::Path) -> Run {
    let mut cmd = Command::new("bash");
    cmd.args(["-c", script]).env("CURL_HOME", curl_home);
    for (name, _) in std::env::vars() {
        if name.starts_with("TETHER_") || name.starts_with("PALIADIN_") {
            cmd.env_remove(name);
        }
    }
    let out = cmd.output().expect("run bash");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn the_readme_finds_its_examples() {
    let lines = shell_lines(README);
    let curls = lines.iter().filter(|l| is_curl_example(l)).count();
    let clis = lines.iter().filter(|l| is_cli_example(l)).count();
    assert!(
        curls >= 4 && clis >= 2,
        "{curls} curl, {clis} tether call in {lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l == &format!("S={README_SOCKET}")),
        "the examples' socket is {README_SOCKET}: {lines:#?}"
    );
}

#[test]
fn readme_examples_run_as_printed_against_tether_demo() {
    installed("curl");
    let demo = Demo::start();
    let socket = demo.socket().to_str().unwrap();
    assert!(
        !socket.contains(['\'', ' ', '"', '$']),
        "a socket path a shell would need quoted: {socket}"
    );
    let curl_home = tempfile::tempdir().unwrap();
    std::fs::write(
        curl_home.path().join(".curlrc"),
        "silent\nshow-error\nwrite-out = \"\\n%{http_code}\"\n",
    )
    .unwrap();
    let lines: Vec<String> = shell_lines(README)
        .iter()
        .map(|l| l.replace(README_SOCKET, socket))
        .collect();
    let preamble: Vec<&str> = lines
        .iter()
        .filter(|l| is_assignment(l))
        .map(String::as_str)
        .collect();
    let mut ran = 0;
    for line in &lines {
        let example = if is_curl_example(line) {
            line.clone()
        } else if is_cli_example(line) {
            format!("'{BIN}' {}", &line["tether ".len()..])
        } else {
            continue;
        };
        let script = format!("{}\n{example}", preamble.join("\n"));
        let run = bash(&script, curl_home.path());
        let shown = format!("{line}\nexit {:?}\n{}{}", run.code, run.stdout, run.stderr);
        assert_eq!(run.code, Some(0), "{shown}");
        if is_curl_example(line) {
            let (body, status) = run
                .stdout
                .rsplit_once('\n')
                .expect("a body, then the status");
            assert_eq!(status, "200", "{shown}");
            // One JSON answer, or NDJSON events of a streamed call ending with `exit`.
            let values: Vec<Value> = serde_json::Deserializer::from_str(body)
                .into_iter()
                .collect::<Result<_, _>>()
                .unwrap_or_else(|e| panic!("not JSON ({e}):\n{shown}"));
            let last = values
                .last()
                .unwrap_or_else(|| panic!("no answer:\n{shown}"));
            if values.len() > 1 || last.get("event").is_some() {
                assert_eq!(last["event"], "exit", "a stream ends with exit:\n{shown}");
            }
            if let Some(exit) = last.get("exit_status") {
                assert_eq!(exit, 0, "the remote command failed:\n{shown}");
            }
        } else {
            assert!(!run.stdout.is_empty(), "no output:\n{shown}");
        }
        eprintln!("ran as printed: {line}");
        ran += 1;
    }
    assert!(ran >= 6, "only {ran} examples ran");
}

/// Fails with the install hint when a tool the test runs is missing.
fn installed(tool: &str) {
    let found = Command::new(tool).arg("--version").output().is_ok();
    assert!(found, "{tool} is missing: run `make test-deps`");
}
