//! One request, end to end: check it against the config and that the config can be trusted,
//! decide, write the request's one audit line for that decision before anything runs (a call
//! that cannot be audited is refused while `audit_required`), then run the verb (a child under
//! its timeout, or through the journal when it has a `key_arg`) and end with its status, or 2
//! with one `tether shim: …` line when refused. `@hello` is answered with the hello line once
//! the config is found usable and trusted; an `@in-band` call reads its frame from stdin first
//! (exactly its bytes: the rest is the caller's stdin), a session's request comes with its
//! in-band data, and either is refused when it carries a credential the verb does not list.
//!
//! [`Shim::answer`] serves both modes: an exec invocation's one request with the shim's own
//! fds, and each request of a session with its pipes: the same code checks both.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Command, Stdio};

use zeroize::Zeroizing;

use super::audit::Outcome;
use super::config::{Action, AuditConfig, ShimConfig};
use super::credentials::{self, CredentialsDir};
use super::gate::{Gate, Seen, Start};
use super::io::Io;
use super::journal::Journal;
use super::keyed::{self, Keyed};
use super::queue;
use super::report::Report;
use super::request::{Asked, Refusal, Request};
use super::spool::Spool;
use super::{env, process, strict, turn};
use crate::wire::in_band::{HELLO, Hello, InBand};
use crate::wire::session::SESSION;

/// The loaded config and where it came from: what every request is checked against.
pub struct Shim<'c> {
    pub config_path: &'c Path,
    pub config: &'c ShimConfig,
}

impl Shim<'_> {
    /// Answers one request, exec's or a session's, with its own `io`: the checks, the audit
    /// line, the run; the status the exec shim exits with.
    pub fn answer(&self, start: &Start, asked: Result<Asked, Refusal>, io: Io) -> u8 {
        let audit = self.config.audit();
        let refused = |verb: Option<&str>, reason: String| {
            let seen = Seen {
                verb,
                ..Seen::default()
            };
            start
                .gate(&audit, seen, &io.stderr)
                .finish(Report::refused(reason))
        };
        match asked {
            Ok(Asked::Call(request)) => self.call(start, &audit, &request, io),
            Ok(Asked::Hello) => self.hello(start, io),
            Ok(Asked::Session) => refused(
                Some(SESSION),
                "@session inside a session: it is a channel's command line, not a request".into(),
            ),
            Err(refusal) => refused(refusal.verb.as_deref(), refusal.reason),
        }
    }

    /// `None` when the config and its files can be trusted (strict ownership checks); else
    /// the status of the audited refusal of `verb`.
    pub fn untrusted(&self, start: &Start, verb: &str, stderr: &File) -> Option<u8> {
        let untrusted = strict::problems(self.config_path, self.config);
        if untrusted.is_empty() {
            return None;
        }
        let seen = Seen {
            verb: Some(verb),
            ..Seen::default()
        };
        let audit = self.config.audit();
        Some(
            start
                .gate(&audit, seen, stderr)
                .finish(Report::refused(untrusted.join("; "))),
        )
    }

    /// A verb to run: decide, audit, run.
    fn call(&self, start: &Start, audit: &AuditConfig, request: &Request, io: Io) -> u8 {
        let Io {
            stdin,
            stdout,
            stderr,
            in_band,
        } = io;
        let config = self.config;
        let mut gate = start.gate(
            audit,
            Seen {
                verb: Some(&request.name),
                key: request.key(),
                lock: request.lock(),
                args_bytes: request.args_bytes(),
                ..Seen::default()
            },
            &stderr,
        );
        let in_band = match in_band_of(request, &stdin, in_band) {
            Ok(in_band) => in_band,
            Err(reason) => return gate.finish(Report::refused(reason)),
        };
        if let Some(in_band) = &in_band {
            gate.saw_in_band(in_band);
        }
        // A verb without stdin never reads it (the pipe of a session's request closes now).
        let stdin = request.verb.stdin.then_some(stdin);
        let untrusted = strict::problems(self.config_path, config);
        if !untrusted.is_empty() {
            return gate.finish(Report::refused(untrusted.join("; ")));
        }
        if let Some(refusal) = in_band.as_ref().and_then(|b| undeclared(request, b)) {
            return gate.finish(refusal);
        }
        let journal = Journal::new(&config.journal_dir, config.retention);
        // A keyed verb always runs a program (a `reply` takes no key_arg).
        let Some((key, exec)) = request.key().zip(request.verb.template()) else {
            let output = [&stdout, &stderr];
            let report = plain(config, &journal, request, in_band, &gate, stdin, output);
            return gate.finish(report);
        };
        let stdin = match stdin {
            None => None,
            Some(stdin) => match Spool::read(&journal, stdin) {
                Ok(spool) => Some(spool),
                Err(reason) => return gate.finish(Report::refused(reason)),
            },
        };
        gate.saw_stdin(stdin.as_ref().map_or(0, |s| s.print.bytes));
        let call = Keyed {
            journal: &journal,
            config,
            request,
            key,
            exec,
            output: [&stdout, &stderr],
        };
        let report = keyed::run(&call, stdin, in_band, &gate);
        gate.finish(report)
    }

    /// `@hello`: one line saying what this shim can take, once the config is usable and
    /// trusted (the same checks any call passes first). It runs nothing, so it is not audited.
    fn hello(&self, start: &Start, io: Io) -> u8 {
        if let Some(refused) = self.untrusted(start, HELLO, &io.stderr) {
            return refused;
        }
        match (&io.stdout).write_all(Hello::ours().line().as_bytes()) {
            Ok(()) => 0,
            Err(_) => crate::exit::SHIM_REFUSED,
        }
    }
}

/// The request's in-band data: an exec `@in-band` call's frame read from its stdin (exactly
/// its bytes, unbuffered: the rest is the caller's stdin), or a session request frame's.
fn in_band_of(
    request: &Request,
    mut stdin: &File,
    given: Option<Zeroizing<Vec<u8>>>,
) -> Result<Option<InBand>, String> {
    match (request.in_band, given) {
        (false, None) => Ok(None),
        (true, None) => InBand::read(&mut stdin).map(Some).map_err(|e| {
            format!("{e}; nothing ran (an @in-band call's stdin begins with its frame)")
        }),
        (false, Some(payload)) => InBand::decode(&payload)
            .map(Some)
            .map_err(|e| format!("{e}; nothing ran (the request frame's in-band data)")),
        (true, Some(_)) => Err("the request frame carries in-band data and its line says \
                                @in-band: send the data once, in the frame; nothing ran"
            .into()),
    }
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
    stdin: Option<File>,
    output: [&File; 2],
) -> Report {
    let ticket = match request.lock() {
        Some(value) => match turn::wait(journal, value, &config.limits, output[0].as_fd()) {
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
                Ok(()) => run_plain(request, &vars, stdin, output),
                Err(why) => Report::refused(why),
            }
        }
    };
    if let Some(ticket) = ticket {
        queue::release(&ticket.path);
    }
    report
}

fn run_plain(
    request: &Request,
    vars: &[(String, String)],
    stdin: Option<File>,
    output: [&File; 2],
) -> Report {
    let exec = match &request.verb.action {
        Action::Exec(exec) => exec,
        Action::Reply(line) => return reply(line, output[0]),
    };
    let mut cmd = Command::new(exec.program());
    cmd.args(exec.args(&request.args));
    env::apply(&mut cmd, vars);
    let streams = output.map(File::try_clone);
    let started = match streams {
        [Ok(stdout), Ok(stderr)] => {
            cmd.stdout(stdout).stderr(stderr);
            let stdin = stdin.map_or_else(Stdio::null, Stdio::from);
            process::run(&mut cmd, stdin, request.verb.timeout)
        }
        [Err(e), _] | [_, Err(e)] => Err(e),
    };
    match started {
        Ok(finished) => Report::ran(&finished),
        Err(e) => Report {
            outcome: Outcome::Ran,
            exit_status: Some(process::not_started(&e)),
            reason: Some(format!("cannot run {}: {e}", exec.program().display())),
            tell: true,
        },
    }
}

/// A `reply` verb: the shim answers its line itself, and nothing runs.
fn reply(line: &str, mut stdout: &File) -> Report {
    let mut text = Vec::with_capacity(line.len() + 1);
    text.extend_from_slice(line.as_bytes());
    text.push(b'\n');
    let status = match stdout.write_all(&text) {
        Ok(()) => 0,
        // The caller is gone: what an exec'd program would meet as EPIPE.
        Err(_) => 141,
    };
    Report::ran(&process::Finished {
        status,
        signal: None,
        timed_out: false,
    })
}
