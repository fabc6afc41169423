//! In-band data through sshd to the real `tether shim` (docs/shim.md, "In-band data"): `@hello`
//! answers its line; an `@in-band` call's frame is read exactly, so the program gets the
//! caller's stdin byte for byte; credentials reach the program as private files in
//! `$CREDENTIALS_DIRECTORY`, removed when it ends (after a timeout kill, and after a crash at
//! the next start), only for verbs that list them, and nowhere else; a keyed run keeps the
//! first caller's; trace context reaches the environment and the audit line; bad frames run
//! nothing.

mod common;

use std::fs;
use std::path::PathBuf;
use std::process::Output;

use common::in_band::{laptop_with, places_holding, seen, token, wait_ready};
use common::shim_fixture::{Laptop, PATIENCE, text, uuid};
use common::sshd::Sshd;
use common::wait_until;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use tether::wire::in_band::{Credentials, Hello, InBand, in_band_line};

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn laptop() -> Laptop {
    laptop_with(&[])
}

fn credentials(pairs: &[(&str, &str)]) -> Credentials {
    Credentials::from_pairs(pairs.iter().map(|(n, v)| (n.to_string(), v.to_string()))).unwrap()
}

/// An in-band call's stdin: its frame, then `stdin`.
fn stdin_for(in_band: &InBand, stdin: &[u8]) -> Vec<u8> {
    let mut wire = in_band.encode().unwrap().to_vec();
    wire.extend_from_slice(stdin);
    wire
}

/// `@in-band VERB NAME` with this frame and stdin after it.
fn call(laptop: &Laptop, verb: &str, name: &str, in_band: &InBand, stdin: &[u8]) -> Output {
    let line = in_band_line(verb, &[name.to_string()]).unwrap();
    laptop.ssh(&line, &stdin_for(in_band, stdin))
}

fn with_token(token: &str) -> InBand {
    InBand {
        traceparent: Some(PARENT.into()),
        tracestate: Some("congo=t61rcWkgMzE".into()),
        credentials: credentials(&[("TOKEN", token)]),
    }
}

#[test]
fn hello_answers_its_line_and_runs_nothing() {
    let laptop = laptop();
    let out = laptop.ssh("@hello", b"");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(text(&out.stdout), Hello::ours().line());
    let hello = Hello::parse(&out.stdout).expect("a hello line");
    assert!(hello.supports_in_band());
    assert_eq!(hello.version, env!("CARGO_PKG_VERSION"));
    assert!(
        laptop.audit().is_empty(),
        "@hello was audited: {:?}",
        laptop.audit()
    );
    // A plain forced command (the fixture's shell shim) answers no hello line.
    let plain = Sshd::start();
    let other = plain
        .ssh(plain.ed25519_key(), &["@hello"])
        .output()
        .unwrap();
    assert_eq!(Hello::parse(&other.stdout), None, "{other:?}");
}

#[test]
fn the_program_gets_the_callers_stdin_after_the_frame_byte_for_byte() {
    let laptop = laptop();
    // Binary, with bytes that look like frames (a whole one, and a huge length prefix).
    let mut stdin = InBand::default().encode().unwrap().to_vec();
    stdin.extend_from_slice(b"\xff\xff\xff\xff");
    stdin.extend((0..=255u8).cycle().take(300_000));
    stdin.extend_from_slice(&with_token("not-a-frame").encode().unwrap());
    for verb in ["creds", "creds-keyed"] {
        let name = uuid();
        let out = call(&laptop, verb, &name, &InBand::default(), &stdin);
        assert_eq!(out.status.code(), Some(0), "{verb}: {out:?}");
        let got = fs::read(laptop.dir().join("seen").join(&name).join("stdin")).unwrap();
        assert_eq!(got.len(), stdin.len(), "{verb}");
        assert!(got == stdin, "{verb}: the program got other bytes");
        // Without credentials, no directory and no variable.
        assert!(!seen(&laptop, &name, "env").contains("CREDENTIALS_DIRECTORY"));
    }
}

#[test]
fn credentials_are_private_files_gone_when_the_program_ends_and_trace_context_is_passed() {
    let laptop = laptop();
    let name = uuid();
    let in_band = InBand {
        credentials: credentials(&[("TOKEN", "tok\n\"en"), ("PALIAD_JWT", "eyJhbGciOi")]),
        ..with_token("")
    };
    let out = call(&laptop, "creds", &name, &in_band, b"");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(seen(&laptop, &name, "value.TOKEN"), "tok\n\"en");
    assert_eq!(seen(&laptop, &name, "value.PALIAD_JWT"), "eyJhbGciOi");
    assert_eq!(seen(&laptop, &name, "dir_mode").trim(), "700");
    assert_eq!(seen(&laptop, &name, "mode.TOKEN").trim(), "400");
    let dir = PathBuf::from(seen(&laptop, &name, "dir"));
    // sshd without PAM sets no XDG_RUNTIME_DIR: the directory is under the journal's.
    assert!(
        dir.starts_with(laptop.dir().join("journal/credentials")),
        "{}",
        dir.display()
    );
    assert!(!dir.exists(), "{} is left after the program", dir.display());
    let env = seen(&laptop, &name, "env");
    for line in [
        format!("TRACEPARENT={PARENT}"),
        "TRACESTATE=congo=t61rcWkgMzE".into(),
        format!("CREDENTIALS_DIRECTORY={}", dir.display()),
    ] {
        assert!(env.lines().any(|l| l == line), "{line} missing:\n{env}");
    }
    assert!(
        !env.contains("SSH_"),
        "sshd's variables reached the program:\n{env}"
    );
    let line = &laptop.audit()[0];
    assert_eq!(line["outcome"], "ran");
    assert_eq!(line["trace_id"], TRACE_ID);
    assert_eq!(
        line["credentials"],
        serde_json::json!(["PALIAD_JWT", "TOKEN"])
    );
    // A plain call's line says it carried no trace.
    laptop.ssh("health", b"");
    assert_eq!(laptop.audit()[1]["trace_id"], Value::Null);
    assert_eq!(laptop.audit()[1].get("credentials"), None);
}

#[test]
fn a_timeout_kill_removes_the_credentials() {
    let laptop = laptop();
    let name = uuid();
    let out = call(&laptop, "creds-hang", &name, &with_token("x"), b"");
    assert_eq!(out.status.code(), Some(124), "{out:?}");
    let dir = PathBuf::from(seen(&laptop, &name, "dir"));
    assert_eq!(seen(&laptop, &name, "value.TOKEN"), "x");
    assert!(!dir.exists(), "{} is left after the timeout", dir.display());
}

#[test]
fn a_credential_the_verb_does_not_list_is_refused_and_audited_by_name() {
    let laptop = laptop();
    let name = uuid();
    let secret = token();
    let in_band = InBand {
        credentials: credentials(&[("TOKEN", "ok"), ("OTHER", &secret)]),
        ..InBand::default()
    };
    let out = call(&laptop, "creds", &name, &in_band, b"");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.starts_with("tether shim: credential OTHER is not accepted by verb creds"),
        "{err}"
    );
    assert!(!err.contains(&secret), "{err}");
    assert!(!laptop.dir().join("seen").join(&name).exists(), "it ran");
    let line = &laptop.audit()[0];
    assert_eq!(line["outcome"], "refused");
    assert_eq!(line["credentials"], serde_json::json!(["OTHER", "TOKEN"]));
    assert!(!laptop.audit_text().contains(&secret));
}

#[test]
fn a_keyed_run_keeps_the_first_callers_credentials() {
    let laptop = laptop();
    let key = uuid();
    let line = in_band_line("creds-keyed", std::slice::from_ref(&key)).unwrap();
    let tokens = [token(), token(), token()];
    fs::write(laptop.dir().join("hold").join(&key), "").unwrap();
    let first = laptop.ssh_spawn(&line, &stdin_for(&with_token(&tokens[0]), b"same stdin"));
    wait_ready(&laptop, &key);
    let attached = laptop.ssh_spawn(&line, &stdin_for(&with_token(&tokens[1]), b"same stdin"));
    assert!(
        wait_until(PATIENCE, || laptop.outcomes().len() == 2),
        "{:?}",
        laptop.outcomes()
    );
    fs::remove_file(laptop.dir().join("hold").join(&key)).unwrap();
    let (first, attached) = (first.wait(), attached.wait());
    let replayed = laptop.ssh(&line, &stdin_for(&with_token(&tokens[2]), b"same stdin"));
    for out in [&first, &attached, &replayed] {
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        assert_eq!(text(&out.stdout), format!("done {key}\n"));
    }
    assert_eq!(laptop.outcomes(), ["ran", "attached", "replayed"]);
    assert_eq!(seen(&laptop, &key, "starts"), "start\n");
    assert_eq!(seen(&laptop, &key, "value.TOKEN"), tokens[0]);
    assert_eq!(seen(&laptop, &key, "stdin"), "same stdin");
    let dir = PathBuf::from(seen(&laptop, &key, "dir"));
    assert!(!dir.exists(), "{} is left after the run", dir.display());
    // Every caller's line has its trace id and names.
    for line in laptop.audit() {
        assert_eq!(line["trace_id"], TRACE_ID, "{line}");
        assert_eq!(line["credentials"], serde_json::json!(["TOKEN"]), "{line}");
    }
    // The later callers' tokens were never seen anywhere.
    for later in &tokens[1..] {
        assert_eq!(places_holding(&laptop, later, &[]), Vec::<String>::new());
    }
}

#[test]
fn a_credential_is_found_only_where_the_program_read_it() {
    // sshd's LogLevel is raised for every connection (a Match block overrides the global one).
    let laptop = laptop_with(&["Match all", "LogLevel DEBUG3"]);
    let secret = token();
    let (plain, keyed) = (uuid(), uuid());
    let out = call(&laptop, "creds", &plain, &with_token(&secret), b"stdin");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = call(
        &laptop,
        "creds-keyed",
        &keyed,
        &with_token(&secret),
        b"stdin",
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        laptop.sshd.log().contains("debug3:"),
        "sshd did not log at DEBUG3"
    );
    let mut found = places_holding(&laptop, &secret, &[&keyed]);
    found.sort();
    let mut expected = [
        format!("seen/{keyed}/value.TOKEN"),
        format!("seen/{plain}/value.TOKEN"),
    ];
    expected.sort();
    assert_eq!(
        found, expected,
        "the credential is found beyond what the program read"
    );
    // The program's own cmdline and environ were among the files searched.
    for name in [&plain, &keyed] {
        assert!(!seen(&laptop, name, "environ").is_empty());
        assert!(seen(&laptop, name, "cmdline").contains("inband.sh"));
    }
}

/// The processes that own a run's credentials directory.
type Owners = fn(&Laptop) -> Vec<i32>;

#[test]
fn a_directory_left_by_a_killed_shim_or_supervisor_is_removed_at_the_next_start() {
    let laptop = laptop();
    let owners: [(&str, Owners); 2] = [
        ("creds-hold", Laptop::shim_pids),
        ("creds-keyed", |laptop| {
            laptop
                .supervisors()
                .into_iter()
                .map(|(pid, _)| pid)
                .collect()
        }),
    ];
    for (verb, owner) in owners {
        let name = uuid();
        let line = in_band_line(verb, std::slice::from_ref(&name)).unwrap();
        fs::write(laptop.dir().join("hold").join(&name), "").unwrap();
        let caller = laptop.ssh_spawn(&line, &stdin_for(&with_token("left"), b""));
        wait_ready(&laptop, &name);
        let dir = PathBuf::from(seen(&laptop, &name, "dir"));
        let pids = owner(&laptop);
        assert!(!pids.is_empty(), "{verb}: no owner found");
        for pid in pids {
            kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
        }
        // The program runs on (its own process group); let it end.
        fs::remove_file(laptop.dir().join("hold").join(&name)).unwrap();
        let _ = caller.wait();
        assert!(dir.exists(), "{verb}: a process killed -9 cannot clean up");
        let out = laptop.ssh("health", b"");
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        assert!(
            !dir.exists(),
            "{verb}: {} survived the next start",
            dir.display()
        );
    }
}

#[test]
fn bad_frames_run_nothing_and_are_audited_as_refused() {
    let laptop = laptop();
    let json_frame = |json: &str| {
        let mut wire = (json.len() as u32).to_be_bytes().to_vec();
        wire.extend_from_slice(json.as_bytes());
        wire
    };
    let oversized = ((192u32 << 10) + 1).to_be_bytes().to_vec();
    let cases: [(&str, Vec<u8>, &str); 6] = [
        ("oversized", oversized, "at most 196608 are accepted"),
        (
            "bad name",
            json_frame(r#"{"v":1,"credentials":{"bad-name":"s3cr3t"}}"#),
            "credential name \"bad-name\"",
        ),
        ("bad JSON", json_frame(r#"{"v":1,"#), "JSON cut short"),
        (
            "unknown field",
            json_frame(r#"{"v":1,"x":"s3cr3t"}"#),
            "a field is unknown",
        ),
        ("version", json_frame(r#"{"v":2}"#), "version 2"),
        ("cut short", b"\0\0\0\x10{}".to_vec(), "the stream ended"),
    ];
    for (i, (case, stdin, needle)) in cases.iter().enumerate() {
        let name = uuid();
        let line = in_band_line("creds", std::slice::from_ref(&name)).unwrap();
        let out = laptop.ssh(&line, stdin);
        assert_eq!(out.status.code(), Some(2), "{case}: {out:?}");
        let err = text(&out.stderr);
        assert!(
            err.starts_with("tether shim: the in-band frame"),
            "{case}: {err}"
        );
        assert!(err.contains(needle), "{case}: {err}");
        assert!(!err.contains("s3cr3t"), "{case}: {err}");
        assert!(
            !laptop.dir().join("seen").join(&name).exists(),
            "{case}: it ran"
        );
        let audit = laptop.audit();
        assert_eq!(audit[i]["outcome"], "refused", "{case}");
        assert_eq!(audit[i]["verb"], "creds", "{case}");
    }
    assert!(!laptop.audit_text().contains("s3cr3t"));
}

#[test]
fn check_lists_the_credentials_each_verb_accepts() {
    let laptop = laptop();
    let out = laptop.operator(&["--check"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let summary = text(&out.stdout);
    assert!(
        summary.contains("creds (timeout 10m, credentials TOKEN PALIAD_JWT)"),
        "{summary}"
    );
    assert!(summary.contains("health (timeout 10m)"), "{summary}");
}
