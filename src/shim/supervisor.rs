//! The detached half of a keyed call. The claiming shim re-executes this binary twice over:
//! `shim --detach --supervise ENTRY` starts `shim --supervise ENTRY` and exits at once, so the
//! supervisor is nobody's child in the SSH session's process tree and lives in its own session
//! (setsid). It gets the call through a pipe (the argv, the timeout, then the caller's stdin:
//! never on disk), holds the entry's lock (its stdout) and the queue ticket's lock (its stderr),
//! runs the command with the journal's `stdout` and `stderr` files as its output (files, not
//! pipes: nothing it starts can die writing to a closed channel) and records how it ended.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::journal::{Entry, State, now_ms};
use super::process::{self, Finished};
use super::queue::{self, Ticket};

/// What the supervisor needs to run the command; sent through a pipe, never written to disk.
#[derive(Serialize, Deserialize)]
pub struct Handoff {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub timeout_ms: Option<u64>,
    /// Followed by this many bytes of stdin; `None`: the command's stdin is empty.
    pub stdin_bytes: Option<u64>,
}

/// Starts the supervisor for `entry` and hands it the call. `lock` is the entry's held lock
/// and `ticket` the queue place; both pass to the supervisor, and ours close here.
pub fn launch(
    entry: &Entry,
    lock: File,
    ticket: Option<Ticket>,
    handoff: &Handoff,
    stdin: Option<&[u8]>,
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
    let mut header = serde_json::to_vec(handoff)?;
    header.push(b'\n');
    writer.write_all(&header)?;
    writer.write_all(stdin.unwrap_or_default())
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
    let (handoff, stdin) = receive(io::stdin().lock())?;
    let mut record = entry.read().map_err(|c| io::Error::other(c.to_string()))?;
    if let Some(ticket) = ticket {
        record.state = State::Queued;
        record.ticket = queue::number_of(ticket);
        entry.write(&record)?;
        queue::wait_turn(ticket)?;
    }
    record.state = State::Running;
    record.started_ms = Some(now_ms());
    record.supervisor_pid = Some(std::process::id());
    entry.write(&record)?;

    let out = append(&entry.stdout_path())?;
    let mut err = append(&entry.stderr_path())?;
    let mut cmd = Command::new(&handoff.program);
    cmd.args(&handoff.args)
        .stdout(out.try_clone()?)
        .stderr(err.try_clone()?);
    let timeout = handoff.timeout_ms.map(Duration::from_millis);
    let finished = process::run(&mut cmd, stdin, timeout).unwrap_or_else(|e| {
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
    record.stdout_bytes = Some(out.metadata()?.len());
    record.stderr_bytes = Some(err.metadata()?.len());
    entry.write(&record)?;
    if let Some(ticket) = ticket {
        queue::release(ticket);
    }
    Ok(())
}

/// Reads the handoff: a JSON line, then exactly `stdin_bytes` bytes.
fn receive(mut pipe: impl BufRead) -> io::Result<(Handoff, Option<Vec<u8>>)> {
    let mut line = Vec::new();
    pipe.read_until(b'\n', &mut line)?;
    let handoff: Handoff = serde_json::from_slice(&line)?;
    let stdin = match handoff.stdin_bytes {
        Some(n) => {
            let mut bytes = vec![0; usize::try_from(n).map_err(io::Error::other)?];
            pipe.read_exact(&mut bytes)?;
            Some(bytes)
        }
        None => None,
    };
    Ok((handoff, stdin))
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
            timeout_ms: Some(5),
            stdin_bytes: Some(4),
        };
        let mut wire = serde_json::to_vec(&handoff).unwrap();
        wire.push(b'\n');
        let whole = [wire.clone(), b"\0\x01\xfe\xff".to_vec()].concat();
        let (got, stdin) = receive(&whole[..]).unwrap();
        assert_eq!(
            (got.timeout_ms, stdin.as_deref()),
            (Some(5), Some(&b"\0\x01\xfe\xff"[..]))
        );
        let cut = [wire, b"\0\x01".to_vec()].concat();
        assert!(receive(&cut[..]).is_err());
    }
}
