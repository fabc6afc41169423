//! The resident shim (docs/shim.md, "Session mode"): the real `tether shim` asked for
//! `@session`, spoken to in frames (`tether::wire::session`), started directly with pipes and
//! through real sshd. Every request is answered as exec answers it (output, status, refusals,
//! audit lines, the journal, credentials), many at once under per-request credit; cancel
//! closes a request's pipes; a broken frame ends the session with one audit line; the end of
//! the channel ends the resident. Refused requests and broken frames go through real sshd.
//! (The 20 s silence timeout itself is covered by a unit test with a short one.)

mod common;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::in_band::{laptop_with, places_holding, seen, token};
use common::shim_fixture::{Laptop, PATIENCE, text, uuid};
use common::tether::BIN;
use common::wait_until;
use serde_json::Value;
use tether::wire::in_band::{Credentials, InBand};
use tether::wire::session::{FEATURE_IN_BAND, Frame, MAX_DATA, SESSION, VERSION, WINDOW};
use zeroize::Zeroizing;

/// Verbs for these tests beside the fixture's: plain programs that write both streams, echo
/// their stdin, write a lot, or tick until their stdout closes.
const VERBS: &str = r#"
[verbs.both]
exec = ["/bin/sh", "-c", "echo out; echo err >&2; exit 5"]

[verbs.echo]
exec = ["/bin/cat"]
stdin = true

[verbs.lots]
exec = ["/bin/sh", "-c", "head -c 1000000 /dev/zero"]

[verbs.deaf]
exec = ["/bin/sh", "-c", "sleep 600"]
stdin = true
timeout = "2s"

[verbs.ticker]
exec = ["/bin/sh", "-c", "echo $$ > {dir}/ticker.pid; while echo tick; do sleep 0.02; done"]
"#;

fn laptop() -> Laptop {
    Laptop::with_settings("", VERBS)
}

/// What one request got: its output and its exit status.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Answer {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    status: Option<u32>,
}

/// tether's end of a session: frames out to the shim's stdin, frames in from its stdout
/// (read by a thread), output credit granted as it arrives except for `withheld` requests.
struct Session {
    child: Child,
    input: Option<ChildStdin>,
    frames: mpsc::Receiver<Frame>,
    answers: HashMap<u32, Answer>,
    withheld: HashSet<u32>,
    /// Stdin credit the shim granted, per request, not yet used.
    stdin_credit: HashMap<u32, u64>,
    pongs: Vec<u64>,
    /// What the shim wrote to its own stderr (its `tether shim: …` lines), for messages.
    stderr: tempfile::NamedTempFile,
}

impl Session {
    /// `tether shim` asked for `@session` directly, as sshd would run it.
    fn direct(laptop: &Laptop) -> Session {
        let mut cmd = Command::new(BIN);
        cmd.args(["shim", "--config"])
            .arg(laptop.config_path())
            .env("SSH_ORIGINAL_COMMAND", SESSION);
        Session::spawn(cmd)
    }

    /// Through real sshd: OpenSSH's client runs `@session` under the forced command.
    fn through_sshd(laptop: &Laptop) -> Session {
        Session::spawn(laptop.sshd.ssh(laptop.sshd.ed25519_key(), &[SESSION]))
    }

    fn spawn(mut cmd: Command) -> Session {
        let stderr = tempfile::NamedTempFile::new().expect("stderr file");
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr.reopen().expect("stderr file"))
            .spawn()
            .expect("spawn the shim");
        let mut out = child.stdout.take().expect("stdout");
        let (tx, frames) = mpsc::channel();
        std::thread::spawn(move || {
            while let Ok(frame) = Frame::read(&mut out) {
                if tx.send(frame).is_err() {
                    return;
                }
            }
        });
        Session {
            input: child.stdin.take(),
            child,
            frames,
            answers: HashMap::new(),
            withheld: HashSet::new(),
            stdin_credit: HashMap::new(),
            pongs: Vec::new(),
            stderr,
        }
    }

    /// A session after both hellos.
    fn started(mut self) -> Session {
        self.send(&hello());
        let answer = self
            .frames
            .recv_timeout(PATIENCE)
            .expect("the shim's hello");
        assert_eq!(
            answer,
            Frame::Hello {
                version: VERSION,
                features: vec![FEATURE_IN_BAND.to_string()]
            }
        );
        self
    }

    fn send(&mut self, frame: &Frame) {
        let mut bytes = Vec::new();
        frame.encode(&mut bytes).expect("encode");
        self.send_raw(&bytes);
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        let input = self.input.as_mut().expect("stdin open");
        // The shim may have ended the session already: what it does then is the test's.
        let _ = input.write_all(bytes).and_then(|()| input.flush());
    }

    fn open(&mut self, id: u32, line: &str) {
        self.open_with(id, line, None);
    }

    fn open_with(&mut self, id: u32, line: &str, in_band: Option<Vec<u8>>) {
        self.stdin_credit.insert(id, u64::from(WINDOW));
        self.send(&Frame::Open {
            id,
            line: line.to_string(),
            in_band: in_band.map(Zeroizing::new),
        });
    }

    /// Takes one frame in (within `wait`); `false` when none came.
    fn take(&mut self, wait: Duration) -> bool {
        let Ok(frame) = self.frames.recv_timeout(wait) else {
            return false;
        };
        let grant = |s: &mut Session, id: u32, data: &Bytes| {
            if !s.withheld.contains(&id) {
                let bytes = data.len() as u32;
                s.send(&Frame::Credit { id, bytes });
            }
        };
        match frame {
            Frame::Stdout { id, data } => {
                let answer = self.answers.entry(id).or_default();
                assert!(answer.status.is_none(), "stdout for {id} after its exit");
                answer.stdout.extend_from_slice(&data);
                grant(self, id, &data);
            }
            Frame::Stderr { id, data } => {
                let answer = self.answers.entry(id).or_default();
                assert!(answer.status.is_none(), "stderr for {id} after its exit");
                answer.stderr.extend_from_slice(&data);
                grant(self, id, &data);
            }
            Frame::Exit { id, status, signal } => {
                assert_eq!(signal, None, "request {id}");
                let answer = self.answers.entry(id).or_default();
                assert!(answer.status.is_none(), "a second exit for {id}");
                answer.status = Some(status.expect("a status"));
            }
            Frame::Credit { id, bytes } => {
                *self.stdin_credit.entry(id).or_default() += u64::from(bytes);
            }
            Frame::Pong(nonce) => self.pongs.push(nonce),
            other => panic!("the shim sent {other:?}"),
        }
        true
    }

    /// Takes frames in until `done` holds (at most [`PATIENCE`]).
    fn until(&mut self, what: &str, done: impl Fn(&Session) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !done(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero() && self.take(left),
                "{what}: never came; so far {:?}",
                self.answers
            );
        }
    }

    /// Request `id`'s whole answer.
    fn answer(&mut self, id: u32) -> Answer {
        self.until(&format!("the exit of request {id}"), |s| {
            s.answers.get(&id).is_some_and(|a| a.status.is_some())
        });
        self.answers[&id].clone()
    }

    /// Sends `data` as request `id`'s stdin within the credit the shim grants, then its end.
    fn stdin(&mut self, id: u32, data: &[u8]) {
        for chunk in data.chunks(MAX_DATA) {
            self.until("stdin credit", |s| {
                s.stdin_credit[&id] >= chunk.len() as u64
            });
            *self.stdin_credit.get_mut(&id).unwrap() -= chunk.len() as u64;
            let data = Bytes::copy_from_slice(chunk);
            self.send(&Frame::Stdin { id, data });
        }
        self.send(&Frame::StdinEnd { id });
    }

    /// Closes the channel (tether went away politely): the shim's exit status.
    fn close(mut self) -> Option<i32> {
        self.input = None;
        self.exit_status()
    }

    /// Waits for the shim (or ssh) to exit; its exit status.
    /// What the shim said on its own stderr so far.
    fn said(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
    }

    fn exit_status(&mut self) -> Option<i32> {
        let mut status = None;
        let ended = wait_until(PATIENCE, || {
            status = self.child.try_wait().expect("try_wait");
            status.is_some()
        });
        assert!(ended, "the resident shim did not exit");
        status.and_then(|s| s.code())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hello() -> Frame {
    Frame::Hello {
        version: VERSION,
        features: vec![FEATURE_IN_BAND.to_string()],
    }
}

fn answered(stdout: &[u8], stderr: &[u8], status: u32) -> Answer {
    Answer {
        stdout: stdout.to_vec(),
        stderr: stderr.to_vec(),
        status: Some(status),
    }
}

fn audit_lines(laptop: &Laptop) -> Vec<Value> {
    if !laptop.dir().join("audit.jsonl").exists() {
        return Vec::new();
    }
    laptop.audit()
}

#[test]
fn hellos_both_ways_a_ping_and_the_channels_end_ends_the_resident() {
    let laptop = laptop();
    let mut session = Session::direct(&laptop).started();
    session.send(&Frame::Ping(7));
    session.until("the pong", |s| s.pongs == [7]);
    assert_eq!(session.close(), Some(0));
    // A session that ran nothing left no audit line.
    assert_eq!(audit_lines(&laptop), Vec::<Value>::new());
}

#[test]
fn a_plain_verb_answers_as_exec_does() {
    let laptop = laptop();
    let mut session = Session::direct(&laptop).started();
    session.open(1, "both");
    session.open(2, "argv a-b");
    session.open(3, "exit 3");
    assert_eq!(session.answer(1), answered(b"out\n", b"err\n", 5));
    assert_eq!(session.answer(2), answered(b"[a-b]\n", b"", 0));
    assert_eq!(session.answer(3), answered(b"", b"", 3));
    // Byte for byte what an exec call through sshd gets.
    for (id, line) in [(1, "both"), (2, "argv a-b"), (3, "exit 3")] {
        let exec = laptop.ssh(line, b"");
        let answer = &session.answers[&id];
        assert_eq!(
            (&exec.stdout, &exec.stderr, exec.status.code()),
            (
                &answer.stdout,
                &answer.stderr,
                answer.status.map(|s| s as i32)
            ),
            "{line}"
        );
    }
    let outcomes: Vec<String> = laptop.outcomes();
    assert_eq!(outcomes, ["ran"; 6]);
}

#[test]
fn stdin_arrives_byte_for_byte_under_credit() {
    let laptop = laptop();
    let mut session = Session::direct(&laptop).started();
    // Binary, every byte value, over twice the window: only credit lets it through.
    let data: Vec<u8> = (0..(WINDOW as usize * 2 + 12_345))
        .map(|i| (i * 7 % 256) as u8)
        .collect();
    session.open(1, "echo");
    session.stdin(1, &data);
    let answer = session.answer(1);
    assert_eq!(answer.status, Some(0), "{:?}", text(&answer.stderr));
    assert!(answer.stdout == data, "stdout is not stdin");
}

#[test]
fn a_request_without_credit_stalls_alone() {
    let laptop = laptop();
    let mut session = Session::direct(&laptop).started();
    session.withheld.insert(1);
    session.open(1, "lots");
    session.until("the first window of output", |s| {
        s.answers
            .get(&1)
            .is_some_and(|a| a.stdout.len() == WINDOW as usize)
    });
    // Others start and finish while request 1 waits for credit.
    for id in 2..6 {
        session.open(id, &format!("argv n{id}"));
    }
    for id in 2..6 {
        assert_eq!(
            session.answer(id),
            answered(format!("[n{id}]\n").as_bytes(), b"", 0)
        );
    }
    let stalled = &session.answers[&1];
    assert_eq!(
        (stalled.stdout.len(), stalled.status),
        (WINDOW as usize, None)
    );
    session.withheld.clear();
    session.send(&Frame::Credit {
        id: 1,
        bytes: 1 << 20,
    });
    let answer = session.answer(1);
    assert_eq!((answer.stdout.len(), answer.status), (1_000_000, Some(0)));
    assert!(answer.stdout.iter().all(|&b| b == 0));
}

fn pid_in(path: &Path) -> i32 {
    assert!(
        wait_until(PATIENCE, || std::fs::read_to_string(path)
            .is_ok_and(|p| p.ends_with('\n'))),
        "{} never written",
        path.display()
    );
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

#[test]
fn cancel_closes_the_requests_pipes_and_the_others_go_on() {
    let laptop = laptop();
    let mut session = Session::direct(&laptop).started();
    session.open(1, "ticker");
    session.until("ticks", |s| {
        s.answers
            .get(&1)
            .is_some_and(|a| a.stdout.starts_with(b"tick\ntick\n"))
    });
    let ticker = pid_in(&laptop.dir().join("ticker.pid"));
    session.send(&Frame::Cancel { id: 1 });
    // Its stdout is closed: the program's next write fails, and it ends.
    assert!(
        wait_until(PATIENCE, || !running(ticker)),
        "the cancelled program still runs"
    );
    // Its pump closed the pipe before the program died: whatever it sent is in by the pong.
    session.send(&Frame::Ping(9));
    session.until("the pong", |s| s.pongs == [9]);
    let sent = session.answers[&1].stdout.len();
    session.open(2, "argv after");
    assert_eq!(session.answer(2), answered(b"[after]\n", b"", 0));
    assert_eq!(
        session.answers[&1].stdout.len(),
        sent,
        "output after the cancel"
    );
    assert_eq!(
        session.answers[&1].status, None,
        "an exit for a cancelled request"
    );
    // Its audit line was written when it ran; nothing more came of it.
    assert_eq!(laptop.outcomes(), ["ran", "ran"]);
    assert_eq!(session.close(), Some(0));
}

#[test]
fn a_keyed_verb_runs_once_and_replays_identically() {
    let laptop = laptop();
    let mut session = Session::direct(&laptop).started();
    let key = uuid();
    let line = format!("run-turn s1 {key} aGk=");
    session.open(1, &line);
    let first = session.answer(1);
    session.open(2, &line);
    let second = session.answer(2);
    assert_eq!(first.status, Some(0), "{:?}", text(&first.stderr));
    assert_eq!(
        text(&first.stdout),
        format!("first half of {key}\nreply to {key}: hi\n")
    );
    assert_eq!(text(&first.stderr), format!("note for {key}\n"));
    assert_eq!(first, second);
    assert_eq!(laptop.starts_of(&key), 1);
    assert_eq!(laptop.outcomes(), ["ran", "replayed"]);
    // An exec call with the same key replays it too: one journal for both modes.
    let exec = laptop.ssh(&line, b"");
    assert_eq!(exec.stdout, first.stdout);
    assert_eq!(laptop.starts_of(&key), 1);
}

#[test]
fn credentials_in_the_request_frame_reach_only_the_program() {
    let laptop = laptop_with(&[]);
    let mut session = Session::direct(&laptop).started();
    let secret = token();
    let in_band = InBand {
        credentials: Credentials::from_pairs([("TOKEN".to_string(), secret.clone())]).unwrap(),
        ..InBand::default()
    };
    let payload = in_band.encode().unwrap()[4..].to_vec();
    let name = uuid();
    session.open_with(1, &format!("creds {name}"), Some(payload));
    session.stdin(1, b"");
    let answer = session.answer(1);
    assert_eq!(answer.status, Some(0), "{:?}", text(&answer.stderr));
    assert_eq!(seen(&laptop, &name, "value.TOKEN"), secret);
    assert_eq!(seen(&laptop, &name, "mode.TOKEN"), "400\n");
    let dir = seen(&laptop, &name, "dir");
    assert!(!Path::new(&dir).exists(), "{dir} outlived its program");
    assert_eq!(
        places_holding(&laptop, &secret, &[]),
        [format!("seen/{name}/value.TOKEN")]
    );
    let audit = laptop.audit();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0]["credentials"], serde_json::json!(["TOKEN"]));
    // A credential the verb does not list is refused as exec refuses it: nothing ran.
    let other = InBand {
        credentials: Credentials::from_pairs([("OTHER".to_string(), secret.clone())]).unwrap(),
        ..InBand::default()
    };
    let refused = uuid();
    let payload = other.encode().unwrap()[4..].to_vec();
    session.open_with(2, &format!("creds {refused}"), Some(payload));
    let answer = session.answer(2);
    assert_eq!(answer.status, Some(2));
    assert!(
        text(&answer.stderr).starts_with("tether shim: credential OTHER is not accepted"),
        "{}",
        text(&answer.stderr)
    );
    assert!(!laptop.dir().join("seen").join(&refused).exists());
}

#[test]
fn refused_requests_run_nothing_and_are_audited_each() {
    let laptop = laptop();
    let mut session = Session::through_sshd(&laptop).started();
    session.open(1, "rm -rf x");
    session.open(2, "argv $(id)");
    session.open_with(3, "argv ok", Some(b"{not json".to_vec()));
    let unknown = session.answer(1);
    assert_eq!(unknown.status, Some(2));
    assert_eq!(
        text(&unknown.stderr),
        "tether shim: unknown verb: it is not in shim.toml\n"
    );
    let charset = session.answer(2);
    assert_eq!(charset.status, Some(2));
    assert!(
        text(&charset.stderr).starts_with("tether shim: argument 1: byte 0"),
        "{}",
        text(&charset.stderr)
    );
    let in_band = session.answer(3);
    assert_eq!(in_band.status, Some(2));
    assert!(
        text(&in_band.stderr).contains("nothing ran (the request frame's in-band data)"),
        "{}",
        text(&in_band.stderr)
    );
    assert!(unknown.stdout.is_empty() && charset.stdout.is_empty());
    assert_eq!(laptop.runs(), Vec::new());
    let audit = laptop.audit();
    // One line each, in whichever order their threads got there.
    let mut verbs: Vec<&str> = audit
        .iter()
        .map(|l| l["verb"].as_str().unwrap_or(""))
        .collect();
    verbs.sort();
    assert_eq!(verbs, ["argv", "argv", "rm"]);
    assert!(audit.iter().all(|l| l["outcome"] == "refused"));
    // The same line through exec: the same refusal.
    let exec = laptop.ssh("argv $(id)", b"");
    assert_eq!(exec.stderr, charset.stderr);
    assert_eq!(session.close(), Some(0));
}

#[test]
fn a_broken_frame_ends_the_session_with_one_audit_line() {
    let laptop = laptop();
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("oversized", vec![0xff, 0xff, 0xff, 0xff], "over the"),
        (
            "unknown type",
            vec![0, 0, 0, 1, 0x7f],
            "unknown frame type 0x7f",
        ),
        (
            "shim's frame",
            {
                let mut b = Vec::new();
                Frame::Exit {
                    id: 1,
                    status: Some(0),
                    signal: None,
                }
                .encode(&mut b)
                .unwrap();
                b
            },
            "only the shim sends",
        ),
        (
            "unopened id",
            {
                let mut b = Vec::new();
                Frame::Credit { id: 9, bytes: 1 }.encode(&mut b).unwrap();
                b
            },
            "never opened",
        ),
    ];
    for (i, (case, bytes, rule)) in cases.into_iter().enumerate() {
        let mut session = Session::through_sshd(&laptop).started();
        session.send_raw(&bytes);
        assert_eq!(session.exit_status(), Some(2), "{case}");
        let audit = laptop.audit();
        assert_eq!(audit.len(), i + 1, "{case}: {audit:?}");
        let line = &audit[i];
        assert_eq!(
            (&line["verb"], &line["outcome"]),
            (&Value::from(SESSION), &Value::from("refused")),
            "{case}"
        );
        let reason = line["reason"].as_str().unwrap_or_default();
        assert!(reason.contains(rule), "{case}: {reason}");
    }
    // A first frame that is not tether's hello.
    let mut session = Session::through_sshd(&laptop);
    session.send(&Frame::Ping(1));
    assert_eq!(session.exit_status(), Some(2));
    let audit = laptop.audit();
    assert!(
        audit[4]["reason"]
            .as_str()
            .unwrap()
            .contains("first frame must be tether's hello")
    );
    assert_eq!(laptop.runs(), Vec::new());
}

#[test]
fn stdin_beyond_the_credit_is_a_broken_session() {
    let laptop = laptop();
    let mut session = Session::direct(&laptop).started();
    // A program that takes stdin and never reads it: past what its pipe holds, the shim
    // grants no credit, and tether must not send more than the window beyond that.
    session.open(1, "deaf");
    let chunk = Bytes::from(vec![b'x'; MAX_DATA]);
    let pipe_holds = 64 << 10;
    for _ in 0..(WINDOW as usize + pipe_holds) / MAX_DATA + 2 {
        session.send(&Frame::Stdin {
            id: 1,
            data: chunk.clone(),
        });
    }
    assert_eq!(session.exit_status(), Some(2), "{}", session.said());
    let audit = laptop.audit();
    let last = audit
        .last()
        .unwrap_or_else(|| panic!("no audit line; the shim said: {}", session.said()));
    assert!(
        last["reason"].as_str().unwrap().contains("beyond the"),
        "{last}; the shim said: {}",
        session.said()
    );
}

#[test]
fn a_session_through_sshd_and_exec_beside_it() {
    let laptop = laptop();
    let mut session = Session::through_sshd(&laptop).started();
    session.open(1, "both");
    let key = uuid();
    session.open(2, &format!("run-turn s1 {key} aGk="));
    session.open(3, "echo");
    session.stdin(3, b"through sshd\n");
    assert_eq!(session.answer(1), answered(b"out\n", b"err\n", 5));
    assert_eq!(session.answer(3), answered(b"through sshd\n", b"", 0));
    let keyed = session.answer(2);
    assert_eq!(keyed.status, Some(0));
    // An exec call still works beside the session, and replays the session's keyed run.
    let exec = laptop.ssh(&format!("run-turn s1 {key} aGk="), b"");
    assert_eq!((exec.stdout, exec.status.code()), (keyed.stdout, Some(0)));
    assert_eq!(laptop.starts_of(&key), 1);
    // ssh's stdin closed: sshd closes the channel and the resident exits.
    assert_eq!(session.close(), Some(0));
    assert!(
        wait_until(PATIENCE, || laptop.shim_pids().is_empty()),
        "a shim outlived its session"
    );
}

#[test]
fn requests_beyond_the_most_in_flight_are_busy() {
    let laptop = laptop();
    let mut session = Session::direct(&laptop).started();
    // Held open: a program that waits for stdin that does not end.
    for id in 1..=64 {
        session.open(id, "echo");
    }
    session.open(65, "argv late");
    let busy = session.answer(65);
    assert_eq!(busy.status, Some(2));
    assert!(
        text(&busy.stderr).starts_with("tether shim: busy: 64 requests"),
        "{}",
        text(&busy.stderr)
    );
    for id in 1..=64 {
        session.send(&Frame::StdinEnd { id });
    }
    for id in 1..=64 {
        assert_eq!(session.answer(id), answered(b"", b"", 0));
    }
    session.open(66, "argv late");
    assert_eq!(session.answer(66), answered(b"[late]\n", b"", 0));
    let refusals: Vec<String> = laptop
        .audit()
        .iter()
        .filter(|l| l["outcome"] == "refused")
        .map(|l| l["reason"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
}

#[test]
fn a_call_cancelled_while_it_waits_for_its_lock_never_runs() {
    let laptop = laptop();
    let mut session = Session::direct(&laptop).started();
    // A turn holds lock s1 mid-answer.
    let holder = uuid();
    laptop.hold(&holder);
    session.open(1, &format!("run-turn s1 {holder} aGk="));
    laptop.wait_started(&holder);
    // A plain call on the same lock queues behind it (queue_wait is 10 minutes)...
    session.open(2, "reset s1");
    session.send(&Frame::Ping(1));
    session.until("the pong", |s| s.pongs == [1]);
    // ...and its caller goes: it is dropped from the queue, audited, and nothing runs.
    session.send(&Frame::Cancel { id: 2 });
    assert!(
        wait_until(PATIENCE, || laptop.outcomes().len() == 2),
        "the cancelled call was not audited: {:?}",
        laptop.outcomes()
    );
    let audit = laptop.audit();
    let dropped = audit.iter().find(|l| l["verb"] == "reset").unwrap();
    assert_eq!(dropped["outcome"], "refused");
    assert!(
        dropped["reason"]
            .as_str()
            .unwrap()
            .contains("left while it waited"),
        "{dropped}"
    );
    laptop.release(&holder);
    assert_eq!(session.answer(1).status, Some(0));
    assert_eq!(laptop.starts_of("s1"), 1, "{:?}", laptop.runs());
    assert!(laptop.runs().iter().all(|r| r.verb != "reset"));
    assert_eq!(session.answers.get(&2).and_then(|a| a.status), None);
}
