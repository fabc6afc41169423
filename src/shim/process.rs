//! Running one command: in its own process group, a timeout that kills the whole group, and the
//! exit status as a shell reports it (124 after a timeout, 128 + N after signal N).

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::exit;

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    pub status: i32,
    pub signal: Option<i32>,
    pub timed_out: bool,
}

/// Runs `cmd` with `stdin` to its end or its `timeout`.
pub fn run(cmd: &mut Command, stdin: Stdio, timeout: Duration) -> io::Result<Finished> {
    let mut child = cmd.process_group(0).stdin(stdin).spawn()?;
    let group = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let (done, ended) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || match ended.recv_timeout(timeout) {
        Err(mpsc::RecvTimeoutError::Timeout) => {
            let _ = killpg(group, Signal::SIGKILL);
            true
        }
        _ => false,
    });
    let status = child.wait()?;
    drop(done);
    let timed_out = watchdog.join().unwrap_or(false);
    let signal = status.signal();
    Ok(Finished {
        status: match (timed_out, status.code(), signal) {
            (true, _, _) => i32::from(exit::TIMED_OUT),
            (false, Some(code), _) => code,
            (false, None, Some(sig)) => 128 + sig,
            (false, None, None) => 255,
        },
        signal,
        timed_out,
    })
}

/// Whether `path` is a file with an execute bit (what `--check` and a call look for).
pub fn executable(path: &Path) -> io::Result<()> {
    let meta = std::fs::metadata(path)?;
    if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "not an executable file",
        ))
    }
}

/// The status a shell gives a command it could not start: 127 when not found, else 126.
pub fn not_started(e: &io::Error) -> i32 {
    if e.kind() == io::ErrorKind::NotFound {
        127
    } else {
        126
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", script]).stdout(Stdio::null());
        cmd
    }

    const LONG: Duration = Duration::from_secs(60);

    #[test]
    fn statuses_as_a_shell_reports_them() {
        let f = run(&mut sh("exit 3"), Stdio::null(), LONG).unwrap();
        assert_eq!((f.status, f.signal, f.timed_out), (3, None, false));
        let f = run(&mut sh("kill -TERM $$"), Stdio::null(), LONG).unwrap();
        assert_eq!((f.status, f.signal), (128 + 15, Some(15)));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("in"), "hi\n").unwrap();
        let input = std::fs::File::open(dir.path().join("in")).unwrap();
        let f = run(&mut sh("read line; [ \"$line\" = hi ]"), input.into(), LONG).unwrap();
        assert_eq!(f.status, 0);
        let missing = run(&mut Command::new("/nonexistent/x"), Stdio::null(), LONG).unwrap_err();
        assert_eq!(not_started(&missing), 127);
    }

    #[test]
    fn a_timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("bg.pid");
        let script = format!("sleep 600 & echo $! > {}; wait", pid_file.display());
        let f = run(&mut sh(&script), Stdio::null(), Duration::from_secs(2)).unwrap();
        assert_eq!((f.status, f.timed_out), (i32::from(exit::TIMED_OUT), true));
        let bg: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The background sleep was in the group: it is gone (or a zombie awaiting its reaper).
        assert!(
            dead_or_zombie(bg),
            "the background child {bg} survived the timeout"
        );
    }

    fn dead_or_zombie(pid: i32) -> bool {
        for _ in 0..500 {
            match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                Err(_) => return true,
                Ok(stat)
                    if stat
                        .rsplit(')')
                        .next()
                        .is_some_and(|r| r.trim_start().starts_with('Z')) =>
                {
                    return true;
                }
                Ok(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        false
    }
}
