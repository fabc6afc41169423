//! One invocation by sshd: load the config and check that it can be trusted, check
//! `SSH_ORIGINAL_COMMAND`, decide, write the invocation's one audit line for that decision
//! before anything runs (a call that cannot be audited is refused while `audit_required`),
//! then run the verb (a child under its timeout, or through the journal when it has a
//! `key_arg`) and exit with its status, or 2 with one `tether shim: …` line when refused.

use std::path::Path;
use std::process::{Command, Stdio};

use super::audit::Outcome;
use super::config::{self, AuditConfig, DEFAULT_AUDIT_MAX_BYTES, ShimConfig};
use super::gate::{Gate, Seen, Start};
use super::journal::Journal;
use super::keyed::{self, Keyed};
use super::queue;
use super::report::Report;
use super::request::{self, Request};
use super::spool::Spool;
use super::{env, process, strict, turn};

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
    gate.saw_stdin(stdin.as_ref().map_or(0, |s| s.print.bytes));
    let call = Keyed {
        journal: &journal,
        config: &config,
        request: &request,
        key,
    };
    let report = keyed::run(&call, stdin, &gate);
    gate.finish(report)
}

/// A verb without `key_arg`: runs under its timeout with the caller's stdin (if it takes it),
/// stdout and stderr, after its turn when it has a `lock_arg`. A caller that leaves while it
/// waits for its turn is dropped: nothing runs.
fn plain(config: &ShimConfig, journal: &Journal, request: &Request, gate: &Gate) -> Report {
    let ticket = match request.lock() {
        Some(value) => match turn::wait(journal, value, &config.limits) {
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
        Ok(finished) => Report::ran(&finished),
        Err(e) => Report {
            outcome: Outcome::Ran,
            exit_status: Some(process::not_started(&e)),
            reason: Some(format!("cannot run {}: {e}", exec.program().display())),
            tell: true,
        },
    }
}
