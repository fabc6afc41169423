//! `tether shim` when things break: the link is cut or the shim is killed mid-turn (the turn
//! finishes and a repeat gets its answer, from one run), a supervisor dies, journal entries are
//! torn or corrupt (refused by name, never re-run), entries expire, and requests that must be
//! refused through plain `ssh` run nothing (docs/shim.md).

mod common;

use std::fs;

use common::procs;
use common::shim_fixture::{Laptop, PATIENCE, b64, cmdline, text, uuid};
use common::wait_until;
use nix::sys::signal::Signal;

fn full_answer(uuid: &str, said: &str) -> String {
    format!("first half of {uuid}\nreply to {uuid}: {said}\n")
}

/// Holds a turn, starts it, breaks something with `fault` once it runs, lets it finish, and
/// checks that a repeat gets the whole answer from the one run.
fn survives(fault: impl FnOnce(&Laptop)) {
    let laptop = Laptop::start();
    let turn = uuid();
    let line = format!("run-turn s1 {turn} {}", b64("still there?"));
    laptop.hold(&turn);
    let first = laptop.ssh_spawn(&line, b"");
    laptop.wait_started(&turn);
    fault(&laptop);
    let cut = first.wait();
    assert_ne!(
        cut.status.code(),
        Some(0),
        "the first caller was not cut off: {cut:?}"
    );
    laptop.release(&turn);
    laptop.wait_state("run-turn", &turn, "done");
    let repeat = laptop.ssh(&line, b"");
    assert_eq!(repeat.status.code(), Some(0), "{repeat:?}");
    assert_eq!(text(&repeat.stdout), full_answer(&turn, "still there?"));
    assert_eq!(text(&repeat.stderr), format!("note for {turn}\n"));
    assert_eq!(laptop.starts_of(&turn), 1, "{:?}", laptop.runs());
    let ends = laptop.runs().iter().filter(|r| r.event == "end").count();
    assert_eq!(ends, 1, "the turn did not run to its end");
}

#[test]
fn a_link_cut_mid_turn_still_gets_its_answer() {
    // Every sshd process of the connection dies, and everything under it: the shim too.
    survives(|laptop| laptop.sshd.kill_sessions());
}

#[test]
fn a_link_cut_that_leaves_the_shim_orphaned_still_gets_its_answer() {
    // Only the sshd processes die: the shim lives on with its channel gone.
    survives(|laptop| {
        let listener = laptop.sshd.pid() as i32;
        let sessions: Vec<i32> = procs::descendants(listener)
            .into_iter()
            .filter(|&p| cmdline(p).starts_with("sshd"))
            .collect();
        assert!(!sessions.is_empty());
        for pid in sessions {
            procs::signal(pid, Signal::SIGKILL);
        }
    });
}

#[test]
fn a_shim_killed_mid_turn_still_gets_its_answer() {
    survives(|laptop| {
        let shims = laptop.shim_pids();
        assert_eq!(shims.len(), 1, "{shims:?}");
        procs::signal(shims[0], Signal::SIGKILL);
    });
}

#[test]
fn a_supervisor_that_dies_mid_run_is_reported_never_run_again() {
    let laptop = Laptop::start();
    let turn = uuid();
    let line = format!("run-turn s1 {turn} {}", b64("x"));
    laptop.hold(&turn);
    let first = laptop.ssh_spawn(&line, b"");
    laptop.wait_started(&turn);
    let supervisor = laptop.entry("run-turn", &turn)["supervisor_pid"]
        .as_i64()
        .expect("a running entry names its supervisor") as i32;
    procs::signal(supervisor, Signal::SIGKILL);
    let orphaned = first.wait();
    assert_eq!(orphaned.status.code(), Some(2), "{orphaned:?}");
    let repeat = laptop.ssh(&line, b"");
    assert_eq!(repeat.status.code(), Some(2), "{repeat:?}");
    let err = text(&repeat.stderr);
    let dir = laptop.entry_dir("run-turn", &turn);
    assert!(
        err.contains(&dir.display().to_string()) && err.contains("abandoned"),
        "{err}"
    );
    laptop.release(&turn);
    assert_eq!(laptop.starts_of(&turn), 1);
}

#[test]
fn a_corrupt_or_torn_entry_is_refused_by_name_and_never_run_again() {
    let laptop = Laptop::start();
    let (torn_record, torn_output) = (uuid(), uuid());
    for turn in [&torn_record, &torn_output] {
        let out = laptop.ssh(&format!("run-turn s1 {turn} {}", b64("x")), b"");
        assert_eq!(out.status.code(), Some(0), "{out:?}");
    }
    let record = laptop
        .entry_dir("run-turn", &torn_record)
        .join("entry.json");
    let whole = fs::read(&record).unwrap();
    fs::write(&record, &whole[..whole.len() / 2]).unwrap();
    let output = laptop.entry_dir("run-turn", &torn_output).join("stdout");
    let whole = fs::read(&output).unwrap();
    fs::write(&output, &whole[..whole.len() - 3]).unwrap();

    for turn in [&torn_record, &torn_output] {
        let repeat = laptop.ssh(&format!("run-turn s1 {turn} {}", b64("x")), b"");
        assert_eq!(repeat.status.code(), Some(2), "{repeat:?}");
        let err = text(&repeat.stderr);
        let dir = laptop.entry_dir("run-turn", turn).display().to_string();
        assert!(err.contains(&dir) && err.contains("corrupt"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(laptop.starts_of(turn), 1);
    }
    let shown = laptop.operator(&["--journal"]);
    assert!(text(&shown.stdout).contains("corrupt"), "{shown:?}");
}

#[test]
fn expired_entries_are_removed_without_running_again() {
    let laptop = Laptop::with_retention("1s");
    let turn = uuid();
    let out = laptop.ssh(&format!("run-turn s1 {turn} {}", b64("x")), b"");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let entry = laptop.entry_dir("run-turn", &turn);
    assert!(entry.exists());
    // Garbage collection comes with keyed calls; keep making some until the entry is gone.
    let gone = wait_until(PATIENCE, || {
        let out = laptop.ssh(&format!("cat {}", uuid()), b"");
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        !entry.exists()
    });
    assert!(gone, "the expired entry {} is still there", entry.display());
    assert_eq!(laptop.starts_of(&turn), 1);
}

#[test]
fn refused_requests_through_ssh_exit_2_and_run_nothing() {
    let laptop = Laptop::start();
    let turn = uuid();
    let cases = [
        ("rm -rf /", "unknown verb: it is not in shim.toml"),
        (
            &*format!("run-turn s1 $(id) {}", b64("x")),
            "argument 2: byte 0",
        ),
        (
            &*format!("run-turn s1;id {turn} {}", b64("x")),
            "argument 1: byte 2",
        ),
        (
            &*format!("run-turn s1 {turn}"),
            "run-turn takes 3 arguments, got 2",
        ),
        ("health a b", "health takes 0 to 1 arguments, got 2"),
    ];
    for (line, why) in cases {
        let out = laptop.ssh(line, b"");
        assert_eq!(out.status.code(), Some(2), "{line}: {out:?}");
        assert!(out.stdout.is_empty(), "{line}");
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("tether shim: ") && err.contains(why),
            "{line}: {err}"
        );
    }
    // No command at all: ssh asks for a shell, sshd runs the shim without SSH_ORIGINAL_COMMAND.
    let mut shell = laptop.sshd.ssh(laptop.sshd.ed25519_key(), &[]);
    let out = shell
        .arg("-T")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        text(&out.stderr).contains("SSH_ORIGINAL_COMMAND"),
        "{out:?}"
    );

    assert!(
        laptop.runs().is_empty(),
        "something ran: {:?}",
        laptop.runs()
    );
    let audit = laptop.audit();
    assert_eq!(audit.len(), cases.len() + 1);
    assert!(
        audit
            .iter()
            .all(|l| l["outcome"] == "refused" && l["exit_status"] == 2),
        "{audit:?}"
    );
    assert!(
        audit
            .iter()
            .all(|l| !l["reason"].as_str().unwrap().is_empty())
    );
    assert!(!laptop.audit_text().contains("$(id)"));

    // A config that stops loading refuses everything, audited where it says.
    let config = fs::read_to_string(laptop.config_path()).unwrap();
    fs::write(
        laptop.config_path(),
        format!("{config}\n[verbs.broken]\nexec = []\n"),
    )
    .unwrap();
    let out = laptop.ssh("health", b"");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(text(&out.stderr).contains("verbs.broken.exec"), "{out:?}");
    assert_eq!(laptop.audit().last().unwrap()["outcome"], "refused");
    assert!(laptop.runs().is_empty());
}
