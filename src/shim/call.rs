//! One invocation by sshd: load the config and check that it can be trusted, check
//! `SSH_ORIGINAL_COMMAND`, decide, write the invocation's one audit line for that decision
//! before anything runs (a call that cannot be audited is refused while `audit_required`),
//! then run the verb (a child under its timeout, or through the journal when it has a
//! `key_arg`) and exit with its status, or 2 with one `tether shim: …` line when refused.

use std::cell::Cell;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::audit::{self, Outcome};
use super::config::{self, AuditConfig, DEFAULT_AUDIT_MAX_BYTES, Limits, ShimConfig};
use super::journal::{Journal, Record};
use super::keyed::{self, Keyed};
use super::queue::{self, Ticket, Turn};
use super::request::{self, Request};
use super::spool::Spool;
use super::{caller, env, process, strict};

/// The exit status of a refused call.
pub const REFUSED: u8 = 2;
/// The audit's reason for a command that ran out of time.
const TIMED_OUT: &str = "the command's timeout passed; its process group was killed";

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

    /// Refused because a limit is reached: `busy: …`, which tether answers as `busy`,
    /// retryable.
    pub fn busy(reason: String) -> Report {
        Report::refused(format!("busy: {reason}"))
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
    stdin_bytes: u64,
}

/// When and from where the invocation came.
struct Start {
    ts: String,
    client: Option<String>,
    at: Instant,
}

impl Start {
    fn now() -> Start {
        let ssh_client = std::env::var("SSH_CLIENT").ok();
        Start {
            ts: OffsetDateTime::now_utc()
                .format(&Rfc3339)
                .unwrap_or_default(),
            client: audit::client(ssh_client.as_deref()).map(str::to_string),
            at: Instant::now(),
        }
    }

    fn gate<'a>(&'a self, audit: &'a AuditConfig, seen: Seen<'a>) -> Gate<'a> {
        Gate {
            start: self,
            audit,
            seen,
            written: Cell::new(false),
        }
    }
}

/// Writes the invocation's one audit line, at the moment the shim decides what the call gets.
pub struct Gate<'a> {
    start: &'a Start,
    audit: &'a AuditConfig,
    seen: Seen<'a>,
    written: Cell<bool>,
}

impl Gate<'_> {
    /// Audits the decision to run, attach or replay; `Err` (a refusal: nothing may run) when
    /// the line cannot be written and the audit is required.
    pub fn decide(&self, outcome: Outcome, exit_status: Option<i32>) -> Result<(), String> {
        self.write(outcome, exit_status, None)
    }

    fn write(
        &self,
        outcome: Outcome,
        exit_status: Option<i32>,
        reason: Option<&str>,
    ) -> Result<(), String> {
        let Some(path) = &self.audit.path else {
            return Ok(());
        };
        if self.written.replace(true) {
            return Ok(());
        }
        let line = audit::Line {
            ts: &self.start.ts,
            client: self.start.client.as_deref(),
            verb: self.seen.verb,
            key: self.seen.key,
            lock: self.seen.lock,
            args_bytes: self.seen.args_bytes,
            stdin_bytes: self.seen.stdin_bytes,
            outcome,
            exit_status,
            duration_ms: (self.start.at.elapsed().as_secs_f64() * 1e6).round() / 1e3,
            reason,
        };
        let Err(e) = audit::append(path, self.audit.max_bytes, &line) else {
            return Ok(());
        };
        let why = format!("cannot write the audit log {}: {e}", path.display());
        if self.audit.required {
            Err(format!("{why}; nothing ran (audit_required)"))
        } else {
            eprintln!("tether shim: {why}");
            Ok(())
        }
    }

    /// Ends the call: a refusal is audited (unless a decision was already), the caller told.
    fn finish(&self, report: Report) -> u8 {
        if report.outcome == Outcome::Refused {
            let _ = self.write(report.outcome, report.exit_status, report.reason.as_deref());
        }
        if report.tell
            && let Some(reason) = &report.reason
        {
            eprintln!("tether shim: {reason}");
        }
        report.exit_code()
    }
}

/// Handles the call sshd gave us; the process's exit status.
pub fn run(config_path: &Path) -> u8 {
    let start = Start::now();
    let config = match config::load(config_path) {
        Ok(config) => config,
        Err(problems) => {
            let reason = format!("the shim's config is unusable: {}", problems.join("; "));
            let audit = AuditConfig {
                path: config::audit_log_hint(config_path),
                max_bytes: DEFAULT_AUDIT_MAX_BYTES,
                required: true,
            };
            return start
                .gate(&audit, Seen::default())
                .finish(Report::refused(reason));
        }
    };
    let audit = config.audit();
    let command = std::env::var_os("SSH_ORIGINAL_COMMAND");
    let request = match request::parse(command.as_deref(), &config) {
        Ok(request) => request,
        Err(refusal) => {
            let seen = Seen {
                verb: refusal.verb.as_deref(),
                ..Seen::default()
            };
            return start
                .gate(&audit, seen)
                .finish(Report::refused(refusal.reason));
        }
    };
    let mut gate = start.gate(
        &audit,
        Seen {
            verb: Some(&request.name),
            key: request.key(),
            lock: request.lock(),
            args_bytes: request.args_bytes(),
            stdin_bytes: 0,
        },
    );
    let untrusted = strict::problems(config_path, &config);
    if !untrusted.is_empty() {
        return gate.finish(Report::refused(untrusted.join("; ")));
    }
    let journal = Journal::new(&config.journal_dir, config.retention);
    let Some(key) = request.key() else {
        let report = plain(&config, &journal, &request, &gate);
        return gate.finish(report);
    };
    let stdin = match request.verb.stdin {
        false => None,
        true => match Spool::read(&journal, std::io::stdin().lock()) {
            Ok(spool) => Some(spool),
            Err(reason) => return gate.finish(Report::refused(reason)),
        },
    };
    gate.seen.stdin_bytes = stdin.as_ref().map_or(0, |s| s.print.bytes);
    let call = Keyed {
        journal: &journal,
        config: &config,
        request: &request,
        key,
    };
    let report = keyed::run(&call, stdin, &gate);
    gate.finish(report)
}

/// Takes a place in the queue for lock `value`; a busy refusal when it is full.
pub fn join_queue(journal: &Journal, value: &str, limits: &Limits) -> Result<Ticket, Report> {
    match queue::draw(&journal.locks_dir(), value, limits.max_queued) {
        Ok(Some(ticket)) => Ok(ticket),
        Ok(None) => Err(Report::busy(format!(
            "{} calls already wait for this lock, the most max_queued allows; send it again later",
            limits.max_queued
        ))),
        Err(e) => Err(Report::refused(format!("cannot join the queue: {e}"))),
    }
}

/// A verb without `key_arg`: runs under its timeout with the caller's stdin (if it takes it),
/// stdout and stderr, after its turn when it has a `lock_arg`. A caller that leaves while it
/// waits for its turn is dropped: nothing runs.
fn plain(config: &ShimConfig, journal: &Journal, request: &Request, gate: &Gate) -> Report {
    let ticket = match request.lock() {
        Some(value) => match wait_for_turn(journal, value, &config.limits) {
            Ok(ticket) => Some(ticket),
            Err(refusal) => return refusal,
        },
        None => None,
    };
    let report = match gate.decide(Outcome::Ran, None) {
        Ok(()) => run_plain(config, request),
        Err(why) => Report::refused(why),
    };
    if let Some(ticket) = ticket {
        queue::release(&ticket.path);
    }
    report
}

fn wait_for_turn(journal: &Journal, value: &str, limits: &Limits) -> Result<Ticket, Report> {
    let ticket = join_queue(journal, value, limits)?;
    let deadline = Instant::now() + limits.queue_wait;
    let turn = queue::wait_turn(&ticket.path, deadline, caller::gone);
    if !matches!(turn, Ok(Turn::Mine)) {
        queue::release(&ticket.path);
    }
    match turn {
        Ok(Turn::Mine) => Ok(ticket),
        Ok(Turn::TimedOut) => Err(Report::busy(format!(
            "waited {} (queue_wait) for its turn and nothing ran; send it again",
            humantime::format_duration(limits.queue_wait)
        ))),
        Ok(Turn::CallerLeft) => Err(Report {
            tell: false,
            ..Report::refused("the caller left while it waited for its turn; nothing ran".into())
        }),
        Err(e) => Err(Report::refused(format!("cannot wait for its turn: {e}"))),
    }
}

fn run_plain(config: &ShimConfig, request: &Request) -> Report {
    let verb = request.verb;
    let exec = &verb.exec;
    let mut cmd = Command::new(exec.program());
    cmd.args(exec.args(&request.args));
    env::apply(&mut cmd, &env::for_verb(&config.path, &verb.pass_env));
    let stdin = if verb.stdin {
        Stdio::inherit()
    } else {
        Stdio::null()
    };
    match process::run(&mut cmd, stdin, verb.timeout) {
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
