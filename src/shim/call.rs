//! One invocation by sshd: load the config, check `SSH_ORIGINAL_COMMAND`, run the verb (in
//! place of this process when there is nothing to wait for, as a child, or through the journal
//! when it has a `key_arg`), write the audit line, exit with the command's status, or 2 with
//! one `tether shim: …` line when refused.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::audit::{self, Outcome};
use super::config;
use super::journal::{Journal, Record};
use super::keyed;
use super::process;
use super::queue;
use super::request::{self, Request};

/// The exit status of a refused call.
pub const REFUSED: u8 = 2;
/// The audit's reason for a command that ran out of time.
const TIMED_OUT: &str = "the command's timeout passed; its process group was killed";
/// The most stdin a verb with `stdin = true` accepts (it is held in memory).
pub const MAX_STDIN: usize = 64 << 20;

/// How a call ended, for the exit status and the audit line.
#[derive(Debug)]
pub struct Report {
    pub outcome: Outcome,
    pub exit_status: Option<i32>,
    pub reason: Option<String>,
    /// Whether the caller is told the reason on stderr.
    pub tell: bool,
}

impl Report {
    pub fn refused(reason: String) -> Report {
        Report {
            outcome: Outcome::Refused,
            exit_status: Some(i32::from(REFUSED)),
            reason: Some(reason),
            tell: true,
        }
    }

    /// A keyed run that ended, as `record` says.
    pub fn ended(outcome: Outcome, record: &Record) -> Report {
        Report {
            outcome,
            exit_status: record.exit_status,
            reason: record.timed_out.then(|| TIMED_OUT.to_string()),
            tell: false,
        }
    }

    /// A plain command this process became: how it ends is the caller's to see.
    fn ended_elsewhere() -> Report {
        Report {
            outcome: Outcome::Ran,
            exit_status: None,
            reason: None,
            tell: false,
        }
    }

    pub fn caller_left(outcome: Outcome) -> Report {
        Report {
            outcome,
            exit_status: None,
            reason: Some("the caller went away; the run goes on and is kept".into()),
            tell: false,
        }
    }

    fn exit_code(&self) -> u8 {
        self.exit_status
            .and_then(|s| u8::try_from(s).ok())
            .unwrap_or(255)
    }
}

/// What the audit line says about the request, beyond its outcome.
#[derive(Default)]
struct Seen<'r> {
    verb: Option<&'r str>,
    key: Option<&'r str>,
    lock: Option<&'r str>,
    args_bytes: usize,
    stdin_bytes: usize,
}

/// Handles the call sshd gave us; the process's exit status.
pub fn run(config_path: &Path) -> u8 {
    let started = Instant::now();
    let ts = OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default();
    let ssh_client = std::env::var("SSH_CLIENT").ok();
    let client = audit::client(ssh_client.as_deref());
    let finish = |audit_log: Option<&Path>, seen: &Seen, report: Report| -> u8 {
        if report.tell
            && let Some(reason) = &report.reason
        {
            eprintln!("tether shim: {reason}");
        }
        if let Some(path) = audit_log {
            let line = audit::Line {
                ts: ts.clone(),
                client,
                verb: seen.verb,
                key: seen.key,
                lock: seen.lock,
                args_bytes: seen.args_bytes,
                stdin_bytes: seen.stdin_bytes,
                outcome: report.outcome,
                exit_status: report.exit_status,
                duration_ms: (started.elapsed().as_secs_f64() * 1e6).round() / 1e3,
                reason: report.reason.as_deref(),
            };
            if let Err(e) = audit::append(path, &line) {
                eprintln!(
                    "tether shim: cannot write the audit log {}: {e}",
                    path.display()
                );
            }
        }
        report.exit_code()
    };

    let config = match config::load(config_path) {
        Ok(config) => config,
        Err(problems) => {
            let reason = format!("the shim's config is unusable: {}", problems.join("; "));
            let hint = config::audit_log_hint(config_path);
            return finish(hint.as_deref(), &Seen::default(), Report::refused(reason));
        }
    };
    let audit_log = config.audit_log.as_deref();
    let command = std::env::var_os("SSH_ORIGINAL_COMMAND");
    let request = match request::parse(command.as_deref(), &config) {
        Ok(request) => request,
        Err(refusal) => {
            let seen = Seen {
                verb: refusal.verb.as_deref(),
                ..Seen::default()
            };
            return finish(audit_log, &seen, Report::refused(refusal.reason));
        }
    };
    let mut seen = Seen {
        verb: Some(&request.name),
        key: request.key(),
        lock: request.lock(),
        args_bytes: request.args_bytes(),
        stdin_bytes: 0,
    };
    let stdin = match read_stdin(&request) {
        Ok(stdin) => stdin,
        Err(reason) => return finish(audit_log, &seen, Report::refused(reason)),
    };
    seen.stdin_bytes = stdin.as_ref().map_or(0, Vec::len);
    let verb = request.verb;
    if verb.key_arg.is_none() && verb.lock_arg.is_none() && verb.timeout.is_none() && !verb.stdin {
        return hand_over(&request, |report| finish(audit_log, &seen, report));
    }
    let journal = Journal::new(&config.journal_dir, config.retention);
    let report = match request.key() {
        Some(key) => keyed::run(&journal, &request, key, stdin),
        None => plain(&journal, &request, stdin),
    };
    finish(audit_log, &seen, report)
}

/// The caller's stdin, for a verb that takes it (tether always ends it with EOF).
fn read_stdin(request: &Request) -> Result<Option<Vec<u8>>, String> {
    if !request.verb.stdin {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .take(MAX_STDIN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read stdin: {e}"))?;
    if bytes.len() > MAX_STDIN {
        return Err(format!("stdin is over {MAX_STDIN} bytes"));
    }
    Ok(Some(bytes))
}

/// A plain verb with nothing to wait for (no lock, timeout or stdin) becomes the command:
/// one process less per call. Its audit line is written as it starts, so its exit status
/// there is null (the caller gets it from the command itself). Returns only if that fails.
fn hand_over(request: &Request, audit: impl FnOnce(Report) -> u8) -> u8 {
    let exec = &request.verb.exec;
    let cannot = |e: std::io::Error| Report {
        outcome: Outcome::Ran,
        exit_status: Some(process::not_started(&e)),
        reason: Some(format!("cannot run {}: {e}", exec.program().display())),
        tell: true,
    };
    if let Err(e) = process::executable(exec.program()) {
        return audit(cannot(e));
    }
    audit(Report::ended_elsewhere());
    let e = Command::new(exec.program())
        .args(exec.args(&request.args))
        .exec();
    eprintln!("tether shim: cannot run {}: {e}", exec.program().display());
    cannot(e).exit_code()
}

/// A verb without `key_arg`: runs with the caller's stdout and stderr, after its turn when it
/// has a `lock_arg`.
fn plain(journal: &Journal, request: &Request, stdin: Option<Vec<u8>>) -> Report {
    let ticket = match request.lock() {
        Some(value) => {
            let turn = queue::draw(&journal.locks_dir(), value)
                .and_then(|t| queue::wait_turn(&t.path).map(|()| t));
            match turn {
                Ok(ticket) => Some(ticket),
                Err(e) => return Report::refused(format!("cannot join the queue: {e}")),
            }
        }
        None => None,
    };
    let exec = &request.verb.exec;
    let mut cmd = Command::new(exec.program());
    cmd.args(exec.args(&request.args));
    let result = process::run(&mut cmd, stdin, request.verb.timeout);
    if let Some(ticket) = ticket {
        queue::release(&ticket.path);
    }
    match result {
        Ok(finished) => Report {
            outcome: Outcome::Ran,
            exit_status: Some(finished.status),
            reason: finished.timed_out.then(|| TIMED_OUT.to_string()),
            tell: false,
        },
        Err(e) => Report {
            outcome: Outcome::Ran,
            exit_status: Some(process::not_started(&e)),
            reason: Some(format!("cannot run {}: {e}", exec.program().display())),
            tell: true,
        },
    }
}
