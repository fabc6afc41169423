//! One invocation by sshd: load the config and check that it can be trusted, check
//! `SSH_ORIGINAL_COMMAND`, decide, write the invocation's one audit line for that decision
//! before anything runs (a call that cannot be audited is refused while `audit_required`),
//! then run the verb (a child under its timeout, or through the journal when it has a
//! `key_arg`) and exit with its status, or 2 with one `tether shim: …` line when refused.
//! `@hello` is answered with the hello line once the config is found usable and trusted; an
//! `@in-band` call reads its frame from stdin first (exactly its bytes: the rest is the
//! caller's stdin) and is refused when it carries a credential the verb does not list.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Command, Stdio};

use super::audit::Outcome;
use super::config::{self, AuditConfig, DEFAULT_AUDIT_MAX_BYTES, ShimConfig};
use super::credentials::{self, CredentialsDir};
use super::gate::{Gate, Seen, Start};
use super::journal::Journal;
use super::keyed::{self, Keyed};
use super::queue;
use super::report::Report;
use super::request::{self, Asked, Request};
use super::spool::Spool;
use super::{env, process, strict, turn};
use crate::wire::in_band::{HELLO, Hello, InBand};

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
    remove_abandoned_credentials(&config);
    let command = std::env::var_os("SSH_ORIGINAL_COMMAND");
    let request = match request::parse(command.as_deref(), &config) {
        Ok(Asked::Call(request)) => request,
        Ok(Asked::Hello) => return hello(config_path, &config, &start),
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
            ..Seen::default()
        },
    );
    let in_band = match request.in_band {
        false => None,
        true => match read_in_band() {
            Ok(in_band) => {
                gate.saw_in_band(&in_band);
                Some(in_band)
            }
            Err(reason) => return gate.finish(Report::refused(reason)),
        },
    };
    let untrusted = strict::problems(config_path, &config);
    if !untrusted.is_empty() {
        return gate.finish(Report::refused(untrusted.join("; ")));
    }
    if let Some(refusal) = in_band.as_ref().and_then(|b| undeclared(&request, b)) {
        return gate.finish(refusal);
    }
    let journal = Journal::new(&config.journal_dir, config.retention);
    let Some(key) = request.key() else {
        let report = plain(&config, &journal, &request, in_band, &gate);
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
    let report = keyed::run(&call, stdin, in_band, &gate);
    gate.finish(report)
}

/// `@hello`: one line saying what this shim can take, once the config is usable and trusted
/// (the same checks any call passes first). It runs nothing, so it is not audited.
fn hello(config_path: &Path, config: &ShimConfig, start: &Start) -> u8 {
    let untrusted = strict::problems(config_path, config);
    if !untrusted.is_empty() {
        let seen = Seen {
            verb: Some(HELLO),
            ..Seen::default()
        };
        let audit = config.audit();
        return start
            .gate(&audit, seen)
            .finish(Report::refused(untrusted.join("; ")));
    }
    let mut out = std::io::stdout().lock();
    match out
        .write_all(Hello::ours().line().as_bytes())
        .and_then(|()| out.flush())
    {
        Ok(()) => 0,
        Err(_) => crate::exit::SHIM_REFUSED,
    }
}

/// Reads the in-band frame from fd 0 itself, unbuffered, so not one byte of the caller's stdin
/// after it is taken: a plain verb's program inherits fd 0 from there, a keyed call spools it.
fn read_in_band() -> Result<InBand, String> {
    let fd0 = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| format!("cannot read stdin: {e}"))?;
    InBand::read(&mut File::from(fd0))
        .map_err(|e| format!("{e}; nothing ran (an @in-band call's stdin begins with its frame)"))
}

/// A refusal when the call carries a credential its verb does not list (names only).
fn undeclared(request: &Request, in_band: &InBand) -> Option<Report> {
    let names: Vec<&str> = in_band
        .credentials
        .names()
        .filter(|name| !request.verb.credentials.iter().any(|c| c == name))
        .collect();
    let (first, more) = names.split_first()?;
    let listed = match more.is_empty() {
        true => format!("credential {first} is"),
        false => format!("credentials {} are", names.join(", ")),
    };
    Some(Report::refused(format!(
        "{listed} not accepted by verb {}: add the name to its `credentials` in shim.toml, or \
         do not send it; nothing ran",
        request.name
    )))
}

/// Removes the credentials directories of shims and supervisors that died before they could
/// (under both roots a shim may have used).
fn remove_abandoned_credentials(config: &ShimConfig) {
    let root = credentials::root(&config.journal_dir);
    credentials::remove_abandoned(&root);
    let fallback = config.journal_dir.join("credentials");
    if fallback != root {
        credentials::remove_abandoned(&fallback);
    }
}

/// The credentials directory for the program, when the call carried any.
fn credentials_dir(
    root: &Path,
    in_band: Option<&InBand>,
) -> Result<Option<CredentialsDir>, String> {
    let Some(in_band) = in_band.filter(|b| !b.credentials.is_empty()) else {
        return Ok(None);
    };
    CredentialsDir::create(root, &in_band.credentials)
        .map(Some)
        .map_err(|e| {
            format!(
                "cannot write the call's credentials under {}: {e}; nothing ran",
                root.display()
            )
        })
}

/// A verb without `key_arg`: runs under its timeout with the caller's stdin (if it takes it),
/// stdout and stderr, after its turn when it has a `lock_arg`. A caller that leaves while it
/// waits for its turn is dropped: nothing runs.
fn plain(
    config: &ShimConfig,
    journal: &Journal,
    request: &Request,
    in_band: Option<InBand>,
    gate: &Gate,
) -> Report {
    let ticket = match request.lock() {
        Some(value) => match turn::wait(journal, value, &config.limits) {
            Ok(ticket) => Some(ticket),
            Err(refusal) => return refusal,
        },
        None => None,
    };
    let vars = env::for_verb(&config.path, &request.verb.pass_env, in_band.as_ref());
    let root = credentials::root(&config.journal_dir);
    let report = match credentials_dir(&root, in_band.as_ref()) {
        Err(why) => Report::refused(why),
        Ok(dir) => {
            drop(in_band);
            let vars = match &dir {
                Some(dir) => env::with_credentials(vars, dir.path()),
                None => vars,
            };
            match gate.decide(Outcome::Ran, None) {
                Ok(()) => run_plain(request, &vars),
                Err(why) => Report::refused(why),
            }
        }
    };
    if let Some(ticket) = ticket {
        queue::release(&ticket.path);
    }
    report
}

fn run_plain(request: &Request, vars: &[(String, String)]) -> Report {
    let verb = request.verb;
    let exec = &verb.exec;
    let mut cmd = Command::new(exec.program());
    cmd.args(exec.args(&request.args));
    env::apply(&mut cmd, vars);
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
