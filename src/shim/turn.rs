//! A call's place in its lock's queue, as the call sees it: a ticket, or the refusal that
//! says why not (a full queue or a wait past `queue_wait` is busy; docs/shim.md, "Locks").

use std::os::fd::BorrowedFd;
use std::time::Instant;

use super::caller;
use super::config::Limits;
use super::journal::Journal;
use super::queue::{self, Ticket, Turn};
use super::report::Report;

/// Takes a place in the queue for lock `value`; a busy refusal when it is full.
pub fn join(journal: &Journal, value: &str, limits: &Limits) -> Result<Ticket, Report> {
    match queue::draw(&journal.locks_dir(), value, limits.max_queued) {
        Ok(Some(ticket)) => Ok(ticket),
        Ok(None) => Err(Report::busy(format!(
            "{} calls already wait for this lock, the most max_queued allows; send it again later",
            limits.max_queued
        ))),
        Err(e) => Err(Report::refused(format!("cannot join the queue: {e}"))),
    }
}

/// Waits for the turn of lock `value`, holding the ticket that comes with it; a busy refusal
/// when the queue is full or the wait passes `queue_wait`, and a silent one when the caller
/// leaves meanwhile (the other end of its `stdout` is gone).
pub fn wait(
    journal: &Journal,
    value: &str,
    limits: &Limits,
    stdout: BorrowedFd<'_>,
) -> Result<Ticket, Report> {
    let ticket = join(journal, value, limits)?;
    let deadline = Instant::now() + limits.queue_wait;
    let turn = queue::wait_turn(&ticket.path, deadline, || caller::gone(stdout));
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
