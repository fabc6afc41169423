//! The detached half of a keyed call. The claiming shim re-executes this binary twice over:
//! `shim --detach --supervise ENTRY` starts `shim --supervise ENTRY` and exits at once, so the
//! supervisor is nobody's child in the SSH session's process tree and lives in its own session
//! (setsid). It gets the call through a pipe (the argv, the environment, the limits: never on
//! disk), holds the entry's lock (its stdout) and the queue ticket's lock (its stderr), waits
//! for its turn and a place under `max_running` (at most `queue_wait`), runs the command with
//! the entry's spooled `stdin` and its `stdout` and `stderr` files (files, not pipes: nothing
//! it starts can die writing to a closed channel; each cut at `max_output_bytes` by
//! RLIMIT_FSIZE) and records how it ended. A call's credentials come in the handoff too; the
//! supervisor writes them to a credentials directory it owns just before the command starts
//! and removes it when the command has ended.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::credentials::CredentialsDir;
use super::env;
use super::journal::{Entry, Record, State, now_ms};
use super::process::{self, Finished};
use super::queue::{self, Ticket, Turn};
use super::running::{self, Caps};
use crate::wire::in_band::{Credentials, secret_json};

/// Room reserved for the handoff as it is read, so the buffer holding credentials is never
/// reallocated (which would leave copies behind).
const HANDOFF_ROOM: usize = 1 << 20;

/// How often a run whose turn came looks for a place under `max_running`.
const PLACE_EVERY: Duration = Duration::from_millis(50);

/// What the supervisor needs to run the command; sent through a pipe, never written to disk.
#[derive(Serialize, Deserialize)]
pub struct Handoff {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub timeout_ms: u64,
    /// The entry holds the caller's stdin, spooled; else the command's stdin is empty.
    pub stdin: bool,
    pub max_output_bytes: u64,
    pub queue_wait_ms: u64,
    /// A run that was queued at its claim finds its place under `max_running` when its turn
    /// comes; `None`: it has its place already.
    pub admit_later: Option<Caps>,
    /// The first caller's credentials (zeroed on drop; Debug and logs show names only).
    #[serde(default)]
    pub credentials: Credentials,
    /// Where the credentials directory is made.
    pub credentials_root: PathBuf,
}

/// Starts the supervisor for `entry` and hands it the call. `lock` is the entry's held lock
/// and `ticket` the queue place; both pass to the supervisor, and ours close here.
pub fn launch(
    entry: &Entry,
    lock: File,
    ticket: Option<Ticket>,
    handoff: &Handoff,
) -> io::Result<()> {
    let (reader, mut writer) = io::pipe()?;
    let mut cmd = self_command(&entry.dir, ticket.as_ref().map(|t| t.path.as_path()))?;
    cmd.arg("--detach")
        .stdin(reader)
        .stdout(lock)
        .stderr(ticket.map_or_else(Stdio::null, |t| Stdio::from(t.file)));
    let launched = cmd.spawn()?.wait()?;
    drop(cmd);
    if !launched.success() {
        return Err(io::Error::other(format!(
            "the supervisor could not be started ({launched})"
        )));
    }
    let header = secret_json(handoff)?;
    writer.write_all(&header)?;
    writer.write_all(b"\n")
}

/// `shim --detach --supervise ENTRY`: starts the supervisor with the same stdio and exits.
pub fn detach(dir: &Path, ticket: Option<&Path>) -> u8 {
    match self_command(dir, ticket).and_then(|mut cmd| cmd.spawn()) {
        Ok(_) => 0,
        Err(_) => 1,
    }
}

/// `shim --supervise ENTRY`: runs the call and records it. A handoff cut short (the shim died
/// while sending it) leaves the entry claimed and unrun; the lock goes with us, and the next
/// call with the key runs it.
pub fn supervise(dir: &Path, ticket: Option<&Path>) -> u8 {
    let _ = nix::unistd::setsid();
    let entry = Entry {
        dir: dir.to_path_buf(),
    };
    match run(&entry, ticket) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

fn self_command(dir: &Path, ticket: Option<&Path>) -> io::Result<Command> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("shim").arg("--supervise").arg(dir);
    if let Some(ticket) = ticket {
        cmd.arg("--ticket").arg(ticket);
    }
    Ok(cmd)
}

fn run(entry: &Entry, ticket: Option<&Path>) -> io::Result<()> {
    let handoff = receive(File::from(io::stdin().as_fd().try_clone_to_owned()?))?;
    let mut record = entry.read().map_err(|c| io::Error::other(c.to_string()))?;
    record.supervisor_pid = Some(std::process::id());
    let deadline = Instant::now() + Duration::from_millis(handoff.queue_wait_ms);
    let mut turn = Turn::Mine;
    if let Some(ticket) = ticket {
        record.state = State::Queued;
        record.ticket = queue::number_of(ticket);
        entry.write(&record)?;
        turn = queue::wait_turn(ticket, deadline, || false)?;
    }
    if let (Turn::Mine, Some(caps)) = (&turn, &handoff.admit_later) {
        turn = find_place(entry, caps, deadline)?;
    }
    let ended = if turn == Turn::Mine {
        run_command(entry, &handoff, &mut record)
    } else {
        give_up(entry, &handoff, &mut record)
    };
    running::leave(&entry.dir);
    if let Some(ticket) = ticket {
        queue::release(ticket);
    }
    ended
}

/// Waits until the run has a place under `max_running`, or `deadline` passes.
fn find_place(entry: &Entry, caps: &Caps, deadline: Instant) -> io::Result<Turn> {
    loop {
        if running::admit(entry, caps)?.is_ok() {
            return Ok(Turn::Mine);
        }
        if Instant::now() + PLACE_EVERY >= deadline {
            return Ok(Turn::TimedOut);
        }
        std::thread::sleep(PLACE_EVERY);
    }
}

/// Its turn did not come within `queue_wait`: recorded as done, with nothing run, and the
/// busy refusal as its output, so its callers are told; a repeat runs it afresh.
fn give_up(entry: &Entry, handoff: &Handoff, record: &mut Record) -> io::Result<()> {
    not_run(
        entry,
        record,
        &format!(
            "busy: waited {} (queue_wait) for its turn and nothing ran; send it again",
            humantime::format_duration(Duration::from_millis(handoff.queue_wait_ms))
        ),
    )
}

/// Records the run as done with nothing run and `why` as its output, so its callers are told;
/// a repeat runs it afresh.
fn not_run(entry: &Entry, record: &mut Record, why: &str) -> io::Result<()> {
    let _ = fs::remove_file(entry.stdin_path());
    let mut err = append(&entry.stderr_path())?;
    writeln!(err, "tether shim: {why}")?;
    err.sync_all()?;
    record.state = State::Done;
    record.not_run = true;
    record.ended_ms = Some(now_ms());
    record.exit_status = Some(2);
    record.stdout_bytes = Some(fs::metadata(entry.stdout_path())?.len());
    record.stderr_bytes = Some(err.metadata()?.len());
    entry.write(record)
}

fn run_command(entry: &Entry, handoff: &Handoff, record: &mut Record) -> io::Result<()> {
    let root = &handoff.credentials_root;
    let credentials = match handoff.credentials.is_empty() {
        true => None,
        false => match CredentialsDir::create(root, &handoff.credentials) {
            Ok(dir) => Some(dir),
            Err(e) => {
                let why = format!(
                    "cannot write the call's credentials under {}: {e}; nothing ran",
                    root.display()
                );
                return not_run(entry, record, &why);
            }
        },
    };
    let vars = match &credentials {
        Some(dir) => env::with_credentials(handoff.env.clone(), dir.path()),
        None => handoff.env.clone(),
    };
    record.state = State::Running;
    record.started_ms = Some(now_ms());
    entry.write(record)?;

    let out = append(&entry.stdout_path())?;
    let mut err = append(&entry.stderr_path())?;
    let stdin = if handoff.stdin {
        let file = File::open(entry.stdin_path())?;
        // The command reads it through its descriptor; on disk it is gone at once.
        fs::remove_file(entry.stdin_path())?;
        Stdio::from(file)
    } else {
        Stdio::null()
    };
    let mut cmd = Command::new(&handoff.program);
    cmd.args(&handoff.args)
        .stdout(out.try_clone()?)
        .stderr(err.try_clone()?);
    env::apply(&mut cmd, &vars);
    // Inherited by the command: a write past the cap fails (SIGXFSZ, or EFBIG if ignored).
    let (_, hard) = getrlimit(Resource::RLIMIT_FSIZE)?;
    setrlimit(
        Resource::RLIMIT_FSIZE,
        handoff.max_output_bytes.min(hard),
        hard,
    )?;
    let timeout = Duration::from_millis(handoff.timeout_ms);
    let finished = process::run(&mut cmd, stdin, timeout);
    drop(credentials);
    let finished = finished.unwrap_or_else(|e| {
        let _ = writeln!(
            err,
            "tether shim: cannot run {}: {e}",
            handoff.program.display()
        );
        Finished {
            status: process::not_started(&e),
            signal: None,
            timed_out: false,
        }
    });
    out.sync_all()?;
    err.sync_all()?;
    record.state = State::Done;
    record.ended_ms = Some(now_ms());
    record.exit_status = Some(finished.status);
    record.signal = finished.signal;
    record.timed_out = finished.timed_out;
    let (stdout_bytes, stderr_bytes) = (out.metadata()?.len(), err.metadata()?.len());
    record.stdout_bytes = Some(stdout_bytes);
    record.stderr_bytes = Some(stderr_bytes);
    record.output_cut = stdout_bytes.max(stderr_bytes) >= handoff.max_output_bytes;
    entry.write(record)
}

/// Reads the handoff: one JSON line, whole (a line cut short is an error). Read straight from
/// the pipe into buffers zeroed on drop (std's stdin would keep a copy in its own buffer).
fn receive(mut pipe: impl Read) -> io::Result<Handoff> {
    let mut line = Zeroizing::new(Vec::with_capacity(HANDOFF_ROOM));
    let mut chunk = Zeroizing::new([0u8; 8192]);
    while line.last() != Some(&b'\n') {
        let n = match pipe.read(&mut chunk[..]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        line.extend_from_slice(&chunk[..n]);
    }
    if line.pop() != Some(b'\n') {
        return Err(io::Error::other("the handoff was cut short"));
    }
    Ok(serde_json::from_slice(&line)?)
}

fn append(path: &Path) -> io::Result<File> {
    OpenOptions::new().append(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handoff_cut_short_is_an_error() {
        let handoff = Handoff {
            program: "/bin/cat".into(),
            args: vec![],
            env: vec![("PATH".into(), "/bin".into())],
            timeout_ms: 5,
            stdin: true,
            max_output_bytes: 10,
            queue_wait_ms: 10,
            admit_later: None,
            credentials: Credentials::from_pairs([("A".to_string(), "v".to_string())]).unwrap(),
            credentials_root: "/run/user/1/tether/credentials".into(),
        };
        let mut wire = serde_json::to_vec(&handoff).unwrap();
        wire.push(b'\n');
        let got = receive(&wire[..]).unwrap();
        assert_eq!((got.timeout_ms, got.stdin), (5, true));
        assert_eq!(got.credentials, handoff.credentials);
        assert!(receive(&wire[..wire.len() - 1]).is_err());
        assert!(receive(&wire[..wire.len() / 2]).is_err());
    }
}
