//! `tether shim` defends the laptop against whoever holds tether's key, driven through a real
//! sshd: the audit log stays bounded, whole and required; keyed runs, queues, output and the
//! journal have limits, over which a call is refused as `busy`; stdin is part of a keyed
//! call's identity; arguments are not options unless a verb says so; verb programs get a clean
//! environment; a config, journal or program others can write is refused; a queued call whose
//! caller left is dropped (docs/shim.md).

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::shim_fixture::{Laptop, PATIENCE, b64, text, uuid};
use common::tether::BIN;
use common::wait_until;

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Refused as over a limit: exit 2 and exactly one line, `tether shim: busy: …`.
fn assert_busy(out: &Output, why: &str) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("tether shim: busy: ") && err.contains(why),
        "{err}"
    );
}

fn turn(session: &str, uuid: &str) -> String {
    format!("run-turn {session} {uuid} {}", b64("x"))
}

#[test]
fn a_refused_huge_verb_costs_the_audit_log_one_short_line() {
    let laptop = Laptop::start();
    let out = laptop.ssh(&"a".repeat(131_000), b"");
    assert_eq!(out.status.code(), Some(2), "{:?}", out.status);
    let err = text(&out.stderr);
    assert!(
        err.starts_with("tether shim: unknown verb") && err.len() < 200,
        "{err:.300}"
    );
    let written = laptop.audit_text().len();
    eprintln!("audit bytes for one refused 131000-byte verb: {written}");
    assert!(written < 1024, "{written} bytes written to the audit log");
    let line = &laptop.audit()[0];
    let verb = line["verb"].as_str().unwrap();
    assert!(verb.starts_with("<131000 bytes, sha256 "), "{verb}");
    assert!(!laptop.audit_text().contains("aaaaaaaa"));
}

#[test]
fn the_audit_log_is_rotated_at_audit_max_bytes_keeping_three() {
    let laptop = Laptop::with_settings("audit_max_bytes = 65536", "");
    let path = laptop.dir().join("audit.jsonl");
    // One line short of the cap: the next line rotates it.
    let full = "{\"outcome\":\"refused\"}\n".repeat(65_400 / 22);
    fs::write(&path, &full).unwrap();
    let rotated = |n: usize| laptop.dir().join(format!("audit.jsonl.{n}"));
    for n in 1..=3 {
        fs::write(rotated(n), format!("old {n}\n")).unwrap();
    }
    let out = laptop.ssh("health", b"");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let audit = laptop.audit();
    assert_eq!(audit.len(), 1, "the log was not rotated");
    assert_eq!(audit[0]["verb"], "health");
    assert!(fs::read_to_string(rotated(1)).unwrap() == full);
    assert_eq!(fs::read_to_string(rotated(2)).unwrap(), "old 1\n");
    assert_eq!(fs::read_to_string(rotated(3)).unwrap(), "old 2\n");
    assert!(
        !rotated(4).exists(),
        "more than three rotated files are kept"
    );
}

#[test]
fn a_torn_audit_line_is_ended_before_the_next_record() {
    let laptop = Laptop::start();
    let torn = "{\"ts\":\"2026-11-21T10:0";
    fs::write(laptop.dir().join("audit.jsonl"), torn).unwrap();
    let out = laptop.ssh("health", b"");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = laptop.audit_text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.first(), Some(&torn), "{text}");
    let next: serde_json::Value = serde_json::from_str(lines.get(1).copied().unwrap_or(""))
        .unwrap_or_else(|e| panic!("the record after the torn line does not parse ({e}): {text}"));
    assert_eq!(next["verb"], "health");
}

#[test]
fn a_call_that_cannot_be_audited_runs_nothing_unless_the_audit_is_optional() {
    let laptop = Laptop::start();
    // Nothing can be appended to a directory, not even by root.
    fs::create_dir(laptop.dir().join("audit.jsonl")).unwrap();
    let t = uuid();
    for line in ["health".to_string(), turn("s1", &t), format!("cat {t}")] {
        let out = laptop.ssh(&line, b"in");
        assert_eq!(out.status.code(), Some(2), "{line}: {out:?}");
        let err = text(&out.stderr);
        assert!(err.contains("cannot write the audit log"), "{err}");
    }
    assert!(
        laptop.runs().is_empty(),
        "ran unaudited: {:?}",
        laptop.runs()
    );
    assert!(
        !laptop.entry_dir("run-turn", &t).exists(),
        "the refused turn left its claim behind"
    );

    let optional = Laptop::with_settings("audit_required = false", "");
    fs::create_dir(optional.dir().join("audit.jsonl")).unwrap();
    let out = optional.ssh("health", b"");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(optional.runs().len(), 2, "{:?}", optional.runs());
}

#[test]
fn keyed_runs_over_max_running_are_busy_and_run_when_sent_again() {
    let laptop = Laptop::with_settings("max_running = 2", "");
    let (a, b, c) = (uuid(), uuid(), uuid());
    laptop.hold(&a);
    laptop.hold(&b);
    let first = laptop.ssh_spawn(&turn("s1", &a), b"");
    let second = laptop.ssh_spawn(&turn("s2", &b), b"");
    laptop.wait_started(&a);
    laptop.wait_started(&b);
    assert_busy(&laptop.ssh(&turn("s3", &c), b""), "max_running");
    assert_eq!(laptop.starts_of(&c), 0);
    assert_eq!(laptop.audit().last().unwrap()["outcome"], "refused");
    laptop.release(&a);
    laptop.release(&b);
    assert_eq!(first.wait().status.code(), Some(0));
    assert_eq!(second.wait().status.code(), Some(0));
    // Nothing of the refused call was kept: sent again, it runs.
    let again = laptop.ssh(&turn("s3", &c), b"");
    assert_eq!(again.status.code(), Some(0), "{again:?}");
    assert_eq!(laptop.starts_of(&c), 1);
}

#[test]
fn a_full_queue_is_busy_and_a_wait_past_queue_wait_is_busy_with_nothing_run() {
    let laptop = Laptop::with_settings("max_queued = 1\nqueue_wait = \"5s\"", "");
    let (a, b, c) = (uuid(), uuid(), uuid());
    laptop.hold(&a);
    let first = laptop.ssh_spawn(&turn("s1", &a), b"");
    laptop.wait_started(&a);
    let second = laptop.ssh_spawn(&turn("s1", &b), b"");
    laptop.wait_state("run-turn", &b, "queued");
    assert_busy(&laptop.ssh(&turn("s1", &c), b""), "max_queued");
    assert_busy(&laptop.ssh("reset s1", b""), "max_queued");
    // The queued turn gives up after queue_wait; its caller is told, and nothing ran.
    assert_busy(&second.wait(), "queue_wait");
    assert_eq!(laptop.entry("run-turn", &b)["not_run"], true);
    assert_busy(&laptop.ssh("reset s1", b""), "queue_wait");
    laptop.release(&a);
    assert_eq!(first.wait().status.code(), Some(0));
    assert_eq!(laptop.starts_of(&b) + laptop.starts_of(&c), 0);
    assert!(!laptop.runs().iter().any(|r| r.verb == "reset"));
    // Sent again, the turn that never ran runs now.
    let again = laptop.ssh(&turn("s1", &b), b"");
    assert_eq!(again.status.code(), Some(0), "{again:?}");
    assert_eq!(laptop.starts_of(&b), 1);
}

#[test]
fn output_is_cut_at_max_output_bytes_and_flagged() {
    let laptop = Laptop::with_settings("max_output_bytes = 100000", "");
    let key = uuid();
    let first = laptop.ssh(&format!("big {key} 300000"), b"");
    assert_eq!(first.stdout.len(), 100_000, "{:?}", text(&first.stderr));
    assert_eq!(laptop.entry("big", &key)["output_cut"], true);
    let repeat = laptop.ssh(&format!("big {key} 300000"), b"");
    assert_eq!(repeat.stdout, first.stdout);
    let shown = text(&laptop.operator(&["--journal", &key]).stdout);
    assert!(shown.contains("cut     yes"), "{shown}");
}

#[test]
fn the_journal_keeps_to_max_journal_bytes_oldest_finished_first() {
    let laptop = Laptop::with_settings("max_journal_bytes = 300000", "");
    // Room is made when a run is claimed: the fourth claim finds three finished entries.
    let keys: Vec<String> = (0..4).map(|_| uuid()).collect();
    for key in &keys {
        let out = laptop.ssh(&format!("big {key} 140000"), b"");
        assert_eq!(out.stdout.len(), 140_000, "{:?}", out.status);
    }
    assert!(
        !laptop.entry_dir("big", &keys[0]).exists(),
        "the oldest was kept"
    );
    for key in &keys[1..] {
        assert!(laptop.entry_dir("big", key).exists(), "a newer one went");
    }
    // A call that alone is over the cap (its stdin is spooled in its entry) is busy.
    let key = uuid();
    assert_busy(
        &laptop.ssh(&format!("cat {key}"), &[b'x'; 400_000]),
        "max_journal_bytes",
    );
    assert_eq!(laptop.starts_of(&key), 0);
    let spools = fs::read_dir(laptop.dir().join("journal/tmp"))
        .unwrap()
        .count();
    assert_eq!(spools, 0, "a refused call's stdin was left in the journal");
}

#[test]
fn a_flood_of_keyed_calls_whose_callers_quit_leaves_at_most_max_running_supervisors() {
    let laptop = Laptop::start();
    let turns: Vec<String> = (0..30).map(|_| uuid()).collect();
    for t in &turns {
        laptop.hold(t);
    }
    let callers: Vec<_> = (0..30)
        .map(|i| laptop.ssh_spawn(&turn(&format!("s{i}"), &turns[i]), b""))
        .collect();
    let settled = || {
        let refused = laptop.outcomes().iter().filter(|o| *o == "refused").count();
        turns.iter().map(|t| laptop.starts_of(t)).sum::<usize>() + refused
    };
    assert!(wait_until(PATIENCE, || settled() == 30), "{}", settled());
    for caller in callers {
        caller.kill();
    }
    let supervisors = laptop.supervisors();
    let rss: u64 = supervisors.iter().map(|(_, rss)| rss).sum();
    eprintln!(
        "30 keyed calls whose callers quit: {} supervisors, {:.1} MB resident together",
        supervisors.len(),
        rss as f64 / 1e6
    );
    assert!(supervisors.len() <= 8, "{supervisors:?}");
    for t in &turns {
        laptop.release(t);
    }
    assert!(wait_until(PATIENCE, || laptop.supervisors().is_empty()));
}

#[test]
fn queued_turns_spool_their_stdin_to_disk_not_memory() {
    let laptop = Laptop::start();
    let head = uuid();
    laptop.hold(&head);
    let running = laptop.ssh_spawn(&format!("turn-in s1 {head}"), b"hi");
    laptop.wait_started(&head);
    let stdin = vec![b'm'; 64 << 20];
    let queued: Vec<(String, _)> = (0..3)
        .map(|_| {
            let t = uuid();
            let caller = laptop.ssh_spawn(&format!("turn-in s1 {t}"), &stdin);
            (t, caller)
        })
        .collect();
    for (t, _) in &queued {
        laptop.wait_state("turn-in", t, "queued");
    }
    let supervisors = laptop.supervisors();
    eprintln!(
        "3 queued turns with 64 MiB stdin: {} supervisors, resident {:?} MB",
        supervisors.len(),
        supervisors
            .iter()
            .map(|(_, rss)| rss / 1_000_000)
            .collect::<Vec<_>>()
    );
    assert_eq!(supervisors.len(), 4, "{supervisors:?}");
    for (pid, rss) in &supervisors {
        assert!(*rss < 32 << 20, "supervisor {pid} holds {rss} bytes");
    }
    for (t, _) in &queued {
        let spooled = laptop.entry_dir("turn-in", t).join("stdin");
        let meta = fs::metadata(&spooled).unwrap();
        assert_eq!(meta.len(), 64 << 20);
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
    for (_, caller) in queued {
        caller.kill();
    }
    laptop.release(&head);
    assert_eq!(running.wait().status.code(), Some(0));
}

#[test]
fn the_same_key_with_other_stdin_is_another_request() {
    let laptop = Laptop::start();
    let key = uuid();
    let first = laptop.ssh(&format!("cat {key}"), b"the first message");
    assert_eq!(text(&first.stdout), "the first message");
    for other in [&b"another message"[..], b""] {
        let out = laptop.ssh(&format!("cat {key}"), other);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert!(
            out.stdout.is_empty(),
            "another request read the first answer"
        );
        assert!(
            text(&out.stderr).contains("same key, other request"),
            "{out:?}"
        );
    }
    let same = laptop.ssh(&format!("cat {key}"), b"the first message");
    assert_eq!(same.status.code(), Some(0), "{same:?}");
    assert_eq!(same.stdout, first.stdout);
    assert_eq!(laptop.starts_of(&key), 1);
}

#[test]
fn arguments_are_never_options_unless_the_verb_allows_it_and_patterns_hold() {
    let laptop = Laptop::with_settings(
        "",
        r#"
[verbs.dash]
exec = ["{verbs}", "{dir}", "argv", "{1}"]
args = 1
allow_dash = true

[verbs.named]
exec = ["{verbs}", "{dir}", "argv", "--", "{1}"]
args = 1
arg_patterns = {1 = "^[a-z0-9-]+$"}
"#,
    );
    for (line, why) in [
        ("argv --output=/tmp/x", "argument 1: starts with '-'"),
        ("health -h", "argument 1: starts with '-'"),
        ("named UPPER", "arg_patterns.1"),
        ("named ok/x", "arg_patterns.1"),
    ] {
        let out = laptop.ssh(line, b"");
        assert_eq!(out.status.code(), Some(2), "{line}: {out:?}");
        assert!(text(&out.stderr).contains(why), "{line}: {out:?}");
    }
    assert!(laptop.runs().is_empty(), "{:?}", laptop.runs());
    let out = laptop.ssh("dash --verbose", b"");
    assert_eq!(text(&out.stdout), "[--verbose]\n", "{out:?}");
    let out = laptop.ssh("named ok-1", b"");
    assert_eq!(text(&out.stdout), "[--]\n[ok-1]\n", "{out:?}");
}

#[test]
fn verb_programs_get_a_clean_environment() {
    let laptop = Laptop::with_settings(
        "path = \"/usr/bin:/bin\"",
        r#"
[verbs.env-passing]
exec = ["{verbs}", "{dir}", "env"]
pass_env = ["TETHER_TEST_PASSED"]
"#,
    );
    let sent = [("TETHER_TEST_PASSED", "yes"), ("TETHER_TEST_OTHER", "no")];
    for line in ["env".to_string(), format!("env-keyed {}", uuid())] {
        let out = laptop.ssh_sending_env(&line, &sent);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let env = text(&out.stdout);
        let names: Vec<&str> = env.lines().filter_map(|l| l.split('=').next()).collect();
        for never in [
            "SSH_ORIGINAL_COMMAND",
            "SSH_CLIENT",
            "SSH_CONNECTION",
            "TETHER_TEST_OTHER",
        ] {
            assert!(
                !names.contains(&never),
                "{line}: {never} reached the program:\n{env}"
            );
        }
        assert!(
            env.lines().any(|l| l == "PATH=/usr/bin:/bin"),
            "{line}:\n{env}"
        );
        assert!(
            names.contains(&"HOME") && names.contains(&"USER"),
            "{line}:\n{env}"
        );
    }
    let out = laptop.ssh_sending_env("env-passing", &sent);
    let env = text(&out.stdout);
    assert!(env.lines().any(|l| l == "TETHER_TEST_PASSED=yes"), "{env}");
    assert!(!env.contains("TETHER_TEST_OTHER"), "{env}");
}

#[test]
fn a_config_journal_or_program_others_can_write_is_refused_naming_the_fix() {
    let laptop = Laptop::start();
    let journal = laptop.dir().join("journal");
    fs::create_dir_all(&journal).unwrap();
    let program = laptop.dir().join("verbs.sh");
    let config = laptop.config_path();
    for (path, loose, tight) in [
        (&config, 0o666, 0o600),
        (&journal, 0o777, 0o700),
        (&program, 0o775, 0o755),
    ] {
        chmod(path, loose);
        let check = laptop.operator(&["--check"]);
        assert_eq!(
            check.status.code(),
            Some(78),
            "{}: {check:?}",
            path.display()
        );
        let fix = format!("chmod go-w {}", path.display());
        assert!(text(&check.stderr).contains(&fix), "{check:?}");
        let out = laptop.ssh("health", b"");
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert!(text(&out.stderr).contains(&fix), "{out:?}");
        chmod(path, tight);
    }
    assert!(laptop.runs().is_empty(), "{:?}", laptop.runs());
    let check = laptop.operator(&["--check"]);
    assert_eq!(check.status.code(), Some(0), "{check:?}");
    // Every verb's effective timeout is shown: plain verbs have the default too.
    assert!(
        text(&check.stdout).contains("health (timeout 10m)"),
        "{check:?}"
    );
}

#[test]
fn a_queued_plain_call_whose_caller_left_is_dropped() {
    let laptop = Laptop::start();
    let a = uuid();
    laptop.hold(&a);
    let first = laptop.ssh_spawn(&turn("s1", &a), b"");
    laptop.wait_started(&a);
    let tickets = || {
        fs::read_dir(laptop.dir().join("journal/locks/s1"))
            .map(|d| d.flatten().filter(|e| e.file_name().len() == 20).count())
            .unwrap_or(0)
    };
    let reset = laptop.ssh_spawn("reset s1", b"");
    assert!(
        wait_until(PATIENCE, || tickets() == 2),
        "reset never queued"
    );
    reset.kill();
    assert!(
        wait_until(PATIENCE, || tickets() == 1),
        "the reset whose caller left kept its place"
    );
    laptop.release(&a);
    assert_eq!(first.wait().status.code(), Some(0));
    assert!(
        !laptop.runs().iter().any(|r| r.verb == "reset"),
        "{:?}",
        laptop.runs()
    );
}

#[test]
fn the_journal_listing_into_a_closed_pipe_ends_quietly() {
    let laptop = Laptop::start();
    let out = laptop.ssh(&format!("cat {}", uuid()), b"x");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader); // `| head` that has already gone
    let listed = Command::new(BIN)
        .args(["shim", "--config"])
        .arg(laptop.config_path())
        .arg("--journal")
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(listed.status.code(), Some(0), "{listed:?}");
    assert!(listed.stderr.is_empty(), "{}", text(&listed.stderr));
}
