//! A call with a `key_arg`: the first call with a verb and key runs the command detached and
//! streams it; every later call within the retention runs nothing and gets the same output and
//! exit status, attached while the run goes on or replayed after (docs/shim.md). A first run is
//! admitted only within the limits (`max_running`, `max_queued`, `max_journal_bytes`), and
//! every decision is audited before anything runs. The first call's in-band data goes with
//! its run (the trace context into the program's environment, the credentials to the
//! supervisor, which writes them for the program); a later call's is dropped unused.

use std::fs::File;

use super::audit::{Outcome, abbreviate};
use super::config::ShimConfig;
use super::gate::Gate;
use super::journal::{Claim, Entry, Journal, Record, State, whole_millis};
use super::queue::{self, Ticket};
use super::report::Report;
use super::request::Request;
use super::running::{self, Caps};
use super::spool::Spool;
use super::supervisor::{self, Handoff};
use super::tail::{self, Ended, Failed};
use super::template::Template;
use super::{credentials, env, turn};
use crate::wire::in_band::InBand;

/// Claims are retried when the entry found goes away meanwhile (expired, or never started).
const ATTEMPTS: usize = 3;

/// One keyed call: what it asks for and under which rules.
pub struct Keyed<'a> {
    pub journal: &'a Journal,
    pub config: &'a ShimConfig,
    pub request: &'a Request<'a>,
    pub key: &'a str,
    /// The program's argv template.
    pub exec: &'a Template,
    /// The caller's stdout and stderr, where the run's output is streamed.
    pub output: [&'a File; 2],
}

/// Runs, attaches to or replays the call named by `key`; `gate` audits the decision first.
/// `in_band` is used only when this call runs the key, and zeroed when dropped.
pub fn run(call: &Keyed, stdin: Option<Spool>, mut in_band: Option<InBand>, gate: &Gate) -> Report {
    let (journal, request, key) = (call.journal, call.request, abbreviate(call.key));
    // Best effort: a journal that cannot be cleaned can still be used.
    let _ = journal.collect_garbage();
    let print = stdin.as_ref().map(|s| s.print.clone()).unwrap_or_default();
    let claim = Record::claim(
        &request.name,
        call.key,
        &request.args,
        request.lock(),
        &print,
    );
    for _ in 0..ATTEMPTS {
        let spooled = stdin.as_ref().map(Spool::path);
        let report = match journal.claim(&claim, spooled) {
            Ok(Claim::Mine(entry, lock)) => Some(first(call, &entry, lock, in_band.take(), gate)),
            Ok(Claim::Taken(entry)) => repeat(call, &claim, &entry, gate),
            Err(e) => Some(Report::refused(format!(
                "cannot write a journal entry for {key:?}: {e}"
            ))),
        };
        if let Some(report) = report {
            return report;
        }
    }
    Report::refused(format!(
        "the journal entry for {key:?} kept changing under us; send the call again"
    ))
}

/// This call claimed the key: within the limits, hand it to a supervisor and stream the run;
/// else withdraw the claim (nothing ran) and refuse.
fn first(call: &Keyed, entry: &Entry, lock: File, in_band: Option<InBand>, gate: &Gate) -> Report {
    let (ticket, admit_later) = match admit(call, entry) {
        Ok(admitted) => admitted,
        Err(refusal) => {
            running::leave(&entry.dir);
            let _ = call.journal.withdraw(entry, lock);
            return refusal;
        }
    };
    if let Err(why) = gate.decide(Outcome::Ran, None) {
        if let Some(t) = &ticket {
            queue::release(&t.path);
        }
        running::leave(&entry.dir);
        let _ = call.journal.withdraw(entry, lock);
        return Report::refused(why);
    }
    let (verb, limits) = (call.request.verb, &call.config.limits);
    let handoff = Handoff {
        program: call.exec.program().clone(),
        args: call.exec.args(&call.request.args),
        env: env::for_verb(&call.config.path, &verb.pass_env, in_band.as_ref()),
        timeout_ms: whole_millis(verb.timeout),
        stdin: verb.stdin,
        max_output_bytes: limits.max_output_bytes,
        queue_wait_ms: whole_millis(limits.queue_wait),
        admit_later,
        credentials: in_band.map(|b| b.credentials).unwrap_or_default(),
        credentials_root: credentials::root(&call.config.journal_dir),
    };
    if let Err(e) = supervisor::launch(entry, lock, ticket, &handoff) {
        // Our lock is gone with the failed launch; the next call runs the key.
        running::leave(&entry.dir);
        return Report::refused(format!("cannot start the supervisor: {e}; nothing ran"));
    }
    follow(call, entry, Outcome::Ran).unwrap_or_else(|| {
        Report::refused("the supervisor ended before it started the command; nothing ran".into())
    })
}

/// The limits a first run must be within: room in the journal, a place in its lock's queue,
/// and a place under `max_running` now (or, when it queues, once its turn comes).
fn admit(call: &Keyed, entry: &Entry) -> Result<(Option<Ticket>, Option<Caps>), Report> {
    let limits = &call.config.limits;
    let io = |what: &str, e: std::io::Error| Report::refused(format!("cannot {what}: {e}"));
    if let Err(held) = call
        .journal
        .make_room(limits.max_journal_bytes)
        .map_err(|e| io("measure the journal", e))?
    {
        return Err(Report::busy(format!(
            "the journal's unfinished entries hold {held} bytes, over max_journal_bytes ({}); \
             send it again once runs have ended",
            limits.max_journal_bytes
        )));
    }
    let ticket = match call.request.lock() {
        None => None,
        Some(value) => Some(turn::join(call.journal, value, limits)?),
    };
    let caps = Caps {
        verb: call.request.name.clone(),
        overall: limits.max_running,
        per_verb: call.request.verb.max_running,
    };
    if ticket.as_ref().is_some_and(|t| t.ahead > 0) {
        return Ok((ticket, Some(caps)));
    }
    match running::admit(entry, &caps).map_err(|e| io("count the runs under way", e))? {
        Ok(()) => Ok((ticket, None)),
        Err(full) => {
            if let Some(t) = &ticket {
                queue::release(&t.path);
            }
            Err(Report::busy(full))
        }
    }
}

/// The key has an entry: replay it, attach to it, or say why not. `None`: the entry went away
/// (or was removed here because it is expired, never started or never ran), so claim again.
fn repeat(call: &Keyed, claim: &Record, entry: &Entry, gate: &Gate) -> Option<Report> {
    let journal = call.journal;
    let found = match entry.read() {
        Ok(found) => found,
        Err(_) if !entry.dir.exists() => return None,
        Err(corrupt) => return Some(Report::refused(corrupt.to_string())),
    };
    if journal.expired(&found) || found.not_run {
        let _ = journal.remove_if(entry, |r| journal.expired(r) || r.not_run);
        return None;
    }
    if !found.same_request(claim) {
        return Some(Report::refused(format!(
            "same key, other request: {} {:?} was first called with other arguments or \
             other stdin; a repeat must send the same request",
            claim.verb,
            abbreviate(&claim.key)
        )));
    }
    let held = match entry.is_held() {
        Ok(held) => held,
        Err(e) => {
            return Some(Report::refused(format!(
                "cannot read the lock of journal entry {}: {e}",
                entry.dir.display()
            )));
        }
    };
    let outcome = match (found.state, held) {
        (State::Claimed, false) => {
            let _ = journal.remove_if(entry, |r| r.state == State::Claimed);
            return None;
        }
        (State::Done, _) => Outcome::Replayed,
        (_, false) => return Some(abandoned(entry, &found)),
        (_, true) => Outcome::Attached,
    };
    let status = (outcome == Outcome::Replayed)
        .then_some(found.exit_status)
        .flatten();
    if let Err(why) = gate.decide(outcome, status) {
        return Some(Report::refused(why));
    }
    follow(call, entry, outcome)
}

fn follow(call: &Keyed, entry: &Entry, outcome: Outcome) -> Option<Report> {
    let journal = call.journal;
    match tail::follow(entry, call.output) {
        Ok(Ended::Done(record)) => Some(Report::ended(outcome, &record)),
        Ok(Ended::Abandoned(record)) if record.state == State::Claimed => {
            // Its supervisor died before starting the command: nothing ran.
            let _ = journal.remove_if(entry, |r| r.state == State::Claimed);
            None
        }
        Ok(Ended::Abandoned(record)) => Some(abandoned(entry, &record)),
        Ok(Ended::CallerLeft) => Some(Report::caller_left(outcome)),
        Err(Failed::Corrupt(corrupt)) => Some(Report::refused(corrupt.to_string())),
        Err(Failed::Io(e)) => Some(Report::refused(format!(
            "cannot read journal entry {}: {e}",
            entry.dir.display()
        ))),
    }
}

/// The supervisor died after the command may have started: report, never re-run.
fn abandoned(entry: &Entry, record: &Record) -> Report {
    Report::refused(format!(
        "journal entry {} was abandoned while {} (its supervisor died): the command may \
         have run, so it is not run again; inspect it with `tether shim --journal {}`, and \
         remove the entry to let the call run again",
        entry.dir.display(),
        record.state.as_str(),
        record.key
    ))
}
