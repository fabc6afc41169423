//! The demo's built-in shim: what the forced command on the laptop would do, as a pure
//! function from a command line and its stdin to stdout, stderr and an exit status.
//!
//! It knows the seed verbs (`health <session>`, `run-turn <session> <uuid> <msg-base64>`,
//! `reset <session>`); anything else exits 2 with a message on stderr, as the real shim does.

use base64::Engine;

/// The exit status of a command the shim does not understand.
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

/// Runs one command line. The seed verbs take no stdin; it is accepted and ignored.
pub fn run(line: &str, _stdin: &[u8]) -> Output {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
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
        assert_eq!(stdout(&run("health s1", b"")), "ok\n");
        assert_eq!(stdout(&run("reset s1", b"")), "reset s1\n");
        let turn = uuid::Uuid::new_v4().to_string();
        let out = run(&format!("run-turn s1 {turn} {}", b64("Grüß dich")), b"");
        assert_eq!(out.status, 0);
        assert_eq!(stdout(&out), "paliadin (demo): you said \"Grüß dich\"\n");
    }

    #[test]
    fn anything_else_exits_2_with_a_reason() {
        let unknown = run("sleep 10", b"");
        assert_eq!(unknown.status, USAGE);
        assert_eq!(unknown.stderr, b"unknown verb: sleep\n");
        for line in ["", "health", "reset a b", "run-turn s1 not-a-uuid aGk="] {
            let out = run(line, b"");
            assert_eq!(out.status, USAGE, "{line:?}");
            assert!(out.stdout.is_empty() && !out.stderr.is_empty(), "{line:?}");
        }
        let turn = uuid::Uuid::new_v4().to_string();
        assert_eq!(run(&format!("run-turn s {turn} %%%"), b"").status, USAGE);
    }
}
