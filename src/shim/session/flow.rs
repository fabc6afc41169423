//! One session request's flow control and cancellation, shared by the reader and the
//! request's threads: the output credit tether granted (both of stdout and stderr draw on it),
//! the stdin tether sent that is not yet written to the request's pipe (at most
//! [`WINDOW`]), and whether the request was cancelled. A cancel wakes every thread of the
//! request: those waiting for credit through a condvar, those waiting for output through a
//! pipe whose write end the cancel closes (they poll it beside their data).

use std::io::{self, PipeReader, PipeWriter};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Condvar, Mutex, MutexGuard};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::wire::session::WINDOW;

/// A request's credit and cancellation.
pub struct Flow {
    state: Mutex<State>,
    changed: Condvar,
    /// Dropped at cancel, so that `cancelled_rx` polls readable (POLLHUP).
    cancel_tx: Mutex<Option<PipeWriter>>,
    cancelled_rx: PipeReader,
}

struct State {
    /// Output bytes the request may still send.
    credit: u64,
    /// Stdin bytes received and not yet written to the request's pipe.
    stdin_queued: u32,
    cancelled: bool,
}

impl Flow {
    /// A request's flow: [`WINDOW`] of output credit to start with.
    pub fn new() -> io::Result<Flow> {
        let (cancelled_rx, cancel_tx) = io::pipe()?;
        Ok(Flow {
            state: Mutex::new(State {
                credit: u64::from(WINDOW),
                stdin_queued: 0,
                cancelled: false,
            }),
            changed: Condvar::new(),
            cancel_tx: Mutex::new(Some(cancel_tx)),
            cancelled_rx,
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// tether granted `bytes` more of output.
    pub fn grant(&self, bytes: u32) {
        let mut state = self.state();
        state.credit = state.credit.saturating_add(u64::from(bytes));
        self.changed.notify_all();
    }

    /// Takes up to `most` bytes of credit, waiting while there is none; `None` once cancelled.
    pub fn reserve(&self, most: usize) -> Option<usize> {
        let mut state = self.state();
        while state.credit == 0 && !state.cancelled {
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        if state.cancelled {
            return None;
        }
        let taken = usize::try_from(state.credit).map_or(most, |c| c.min(most));
        state.credit -= taken as u64;
        Some(taken)
    }

    /// Gives back credit reserved and not used.
    pub fn refund(&self, bytes: usize) {
        if bytes > 0 {
            self.grant(u32::try_from(bytes).unwrap_or(u32::MAX));
        }
    }

    /// tether sent `bytes` of stdin; `false` when that is more than [`WINDOW`] unwritten.
    pub fn queue_stdin(&self, bytes: usize) -> bool {
        let mut state = self.state();
        match u32::try_from(bytes)
            .ok()
            .and_then(|b| state.stdin_queued.checked_add(b))
        {
            Some(queued) if queued <= WINDOW => {
                state.stdin_queued = queued;
                true
            }
            _ => false,
        }
    }

    /// `bytes` of stdin left the queue (written to the request's pipe, or dropped).
    pub fn stdin_taken(&self, bytes: usize) {
        let mut state = self.state();
        let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
        state.stdin_queued = state.stdin_queued.saturating_sub(bytes);
    }

    /// The caller is gone: wake and stop every thread of the request.
    pub fn cancel(&self) {
        self.state().cancelled = true;
        self.changed.notify_all();
        drop(
            self.cancel_tx
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
    }

    pub fn cancelled(&self) -> bool {
        self.state().cancelled
    }

    /// Waits until `fd` can be read (data, or its end); `false` when cancelled first.
    pub fn readable(&self, fd: BorrowedFd<'_>) -> bool {
        loop {
            let mut fds = [
                PollFd::new(fd, PollFlags::POLLIN),
                PollFd::new(self.cancelled_rx.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Err(Errno::EINTR) => continue,
                Err(_) => return false,
                Ok(_) if fds[1].any().unwrap_or(true) => return false,
                Ok(_) => return !self.cancelled(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::Arc;

    #[test]
    fn credit_is_shared_waited_for_and_refunded() {
        let flow = Arc::new(Flow::new().unwrap());
        assert_eq!(flow.reserve(usize::MAX), Some(WINDOW as usize));
        flow.refund(10);
        assert_eq!(flow.reserve(100), Some(10));
        let waiter = {
            let flow = flow.clone();
            std::thread::spawn(move || flow.reserve(100))
        };
        flow.grant(7);
        assert_eq!(waiter.join().unwrap(), Some(7));
    }

    #[test]
    fn stdin_beyond_the_window_is_refused() {
        let flow = Flow::new().unwrap();
        assert!(flow.queue_stdin(WINDOW as usize));
        assert!(!flow.queue_stdin(1));
        flow.stdin_taken(5);
        assert!(flow.queue_stdin(5));
        assert!(!flow.queue_stdin(1));
    }

    #[test]
    fn cancel_wakes_credit_and_output_waiters() {
        let flow = Arc::new(Flow::new().unwrap());
        flow.reserve(usize::MAX);
        let (pipe, _open) = io::pipe().unwrap();
        let waiters = {
            let flow = flow.clone();
            std::thread::spawn(move || (flow.reserve(1), flow.readable(pipe.as_fd())))
        };
        flow.cancel();
        assert_eq!(waiters.join().unwrap(), (None, false));
        // Without a cancel, data makes the pipe readable.
        let flow = Flow::new().unwrap();
        let (pipe, mut tx) = io::pipe().unwrap();
        tx.write_all(b"x").unwrap();
        assert!(flow.readable(pipe.as_fd()));
    }
}
