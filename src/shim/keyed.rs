//! A call with a `key_arg`: the first call with a verb and key runs the command detached and
//! streams it; every later call within the retention runs nothing and gets the same output and
//! exit status, attached while the run goes on or replayed after (docs/shim.md).

use super::audit::Outcome;
use super::call::Report;
use super::journal::{Claim, Entry, Journal, Record, State};
use super::queue;
use super::request::Request;
use super::supervisor::{self, Handoff};
use super::tail::{self, Ended, Failed};

/// Claims are retried when the entry found goes away meanwhile (expired, or never started).
const ATTEMPTS: usize = 3;

/// Runs, attaches to or replays the call named by `key`.
pub fn run(journal: &Journal, request: &Request, key: &str, stdin: Option<Vec<u8>>) -> Report {
    // Best effort: a journal that cannot be cleaned can still be used.
    let _ = journal.collect_garbage();
    let stdin_bytes = stdin.as_ref().map_or(0, |s| s.len() as u64);
    let claim = Record::claim(
        &request.name,
        key,
        &request.args,
        request.lock(),
        stdin_bytes,
    );
    for _ in 0..ATTEMPTS {
        let report = match journal.claim(&claim) {
            Ok(Claim::Mine(entry, lock)) => first(journal, request, &entry, lock, stdin.as_deref()),
            Ok(Claim::Taken(entry)) => repeat(journal, &claim, &entry),
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

/// This call claimed the key: hand it to a supervisor and stream the run.
fn first(
    journal: &Journal,
    request: &Request,
    entry: &Entry,
    lock: std::fs::File,
    stdin: Option<&[u8]>,
) -> Option<Report> {
    let ticket = match request.lock().map(|v| queue::draw(&journal.locks_dir(), v)) {
        Some(Err(e)) => return Some(Report::refused(format!("cannot join the queue: {e}"))),
        Some(Ok(ticket)) => Some(ticket),
        None => None,
    };
    let handoff = Handoff {
        program: request.verb.exec.program().clone(),
        args: request.verb.exec.args(&request.args),
        timeout_ms: request
            .verb
            .timeout
            .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
        stdin_bytes: stdin.map(|s| s.len() as u64),
    };
    if let Err(e) = supervisor::launch(entry, lock, ticket, &handoff, stdin) {
        // Our lock is gone with the failed launch; the next call runs the key.
        return Some(Report::refused(format!(
            "cannot start the supervisor: {e}; nothing ran"
        )));
    }
    follow(journal, entry, Outcome::Ran)
}

/// The key has an entry: replay it, attach to it, or say why not. `None`: the entry went away
/// (or was removed here because it is expired or never started), so claim again.
fn repeat(journal: &Journal, claim: &Record, entry: &Entry) -> Option<Report> {
    let found = match entry.read() {
        Ok(found) => found,
        Err(_) if !entry.dir.exists() => return None,
        Err(corrupt) => return Some(Report::refused(corrupt.to_string())),
    };
    if journal.expired(&found) {
        let _ = journal.remove_if(entry, |r| journal.expired(r));
        return None;
    }
    if found.args_sha256 != claim.args_sha256 {
        return Some(Report::refused(format!(
            "{} {:?} was first called with other arguments; a repeat must send the same ones",
            claim.verb, claim.key
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
    match (found.state, held) {
        (State::Claimed, false) => {
            let _ = journal.remove_if(entry, |r| r.state == State::Claimed);
            None
        }
        (State::Done, _) => follow(journal, entry, Outcome::Replayed),
        (_, false) => Some(abandoned(entry, &found)),
        (_, true) => follow(journal, entry, Outcome::Attached),
    }
}

fn follow(journal: &Journal, entry: &Entry, outcome: Outcome) -> Option<Report> {
    match tail::follow(entry) {
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
