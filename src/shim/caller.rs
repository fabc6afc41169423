//! Whether the caller is still there. A call's stdout is the channel (sshd's, in exec mode) or
//! a pipe the resident shim reads (session mode); when the caller goes away (its client quit,
//! the connection dropped, tether closed the channel or cancelled the request), the other end
//! is closed and polling the call's stdout reports POLLHUP or POLLERR. stdin's EOF says
//! nothing: tether always ends stdin at once.

use std::os::fd::BorrowedFd;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// Whether the other end of the call's `stdout` is gone.
pub fn gone(stdout: BorrowedFd<'_>) -> bool {
    let mut fds = [PollFd::new(stdout, PollFlags::empty())];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(0) | Err(_) => false,
        Ok(_) => fds[0].revents().is_some_and(|r| {
            r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL)
        }),
    }
}
