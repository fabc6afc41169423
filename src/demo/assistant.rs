//! The demo's stand-in for the assistant on the laptop (`paliadin-shim` in production): the
//! program the demo's real `tether shim` runs for each verb, as `tether demo-assistant VERB
//! ARG…`. [`run`] is a pure function from the words to stdout, stderr and an exit
//! status.
//!
//! It knows the seed verbs (`health <session>`, `run-turn <session> <uuid> <msg-base64>`,
//! `reset <session>`); anything else exits 2 with a message on stderr.

use std::io::Write;
use std::process::ExitCode;

use base64::Engine;

/// The exit status of a command the assistant does not understand.
pub const USAGE: u32 = 2;

/// What one run of the shim produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub status: u32,
}

impl Output {
    fn ok(stdout: String) -> Self {
        Output {
            stdout: stdout.into_bytes(),
            stderr: Vec::new(),
            status: 0,
        }
    }

    fn fail(stderr: String) -> Self {
        Output {
            stdout: Vec::new(),
            stderr: stderr.into_bytes(),
            status: USAGE,
        }
    }
}

/// `tether demo-assistant VERB ARG…`: prints what [`run`] says and exits with its status.
pub fn main(words: &[String]) -> ExitCode {
    let out = run(&words.iter().map(String::as_str).collect::<Vec<_>>());
    let _ = std::io::stdout().write_all(&out.stdout);
    let _ = std::io::stderr().write_all(&out.stderr);
    ExitCode::from(u8::try_from(out.status).unwrap_or(u8::MAX))
}

/// Runs one command. The seed verbs take no stdin.
pub fn run(words: &[&str]) -> Output {
    match words {
        ["health", _session] => Output::ok("ok\n".into()),
        ["health", ..] => usage("health <session>"),
        ["run-turn", session, turn, message] => run_turn(session, turn, message),
        ["run-turn", ..] => usage("run-turn <session> <uuid> <msg-base64>"),
        ["reset", session] => Output::ok(format!("reset {session}\n")),
        ["reset", ..] => usage("reset <session>"),
        [] => usage("health|run-turn|reset ARGS…"),
        [verb, ..] => Output::fail(format!("unknown verb: {verb}\n")),
    }
}

fn run_turn(_session: &str, turn: &str, message: &str) -> Output {
    if uuid::Uuid::parse_str(turn).is_err() {
        return Output::fail(format!("run-turn: {turn:?} is not a UUID\n"));
    }
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(message) else {
        return Output::fail("run-turn: the message is not valid base64\n".into());
    };
    let said = String::from_utf8_lossy(&bytes);
    Output::ok(format!("paliadin (demo): you said \"{said}\"\n"))
}

fn usage(form: &str) -> Output {
    Output::fail(format!("usage: {form}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    fn stdout(o: &Output) -> &str {
        std::str::from_utf8(&o.stdout).unwrap()
    }

    #[test]
    fn seed_verbs_answer() {
        assert_eq!(stdout(&run(&["health", "s1"])), "ok\n");
        assert_eq!(stdout(&run(&["reset", "s1"])), "reset s1\n");
        let turn = uuid::Uuid::new_v4().to_string();
        let out = run(&["run-turn", "s1", &turn, &b64("Grüß dich")]);
        assert_eq!(out.status, 0);
        assert_eq!(stdout(&out), "paliadin (demo): you said \"Grüß dich\"\n");
    }

    #[test]
    fn anything_else_exits_2_with_a_reason() {
        let unknown = run(&["sleep", "10"]);
        assert_eq!(unknown.status, USAGE);
        assert_eq!(unknown.stderr, b"unknown verb: sleep\n");
        for words in [
            &[][..],
            &["health"],
            &["reset", "a", "b"],
            &["run-turn", "s1", "not-a-uuid", "aGk="],
        ] {
            let out = run(words);
            assert_eq!(out.status, USAGE, "{words:?}");
            assert!(out.stdout.is_empty() && !out.stderr.is_empty(), "{words:?}");
        }
        let turn = uuid::Uuid::new_v4().to_string();
        assert_eq!(run(&["run-turn", "s", &turn, "%%%"]).status, USAGE);
    }
}
