//! Whether the caller is still there. sshd gives the shim the channel as its stdout; when the
//! caller goes away (its client quit, the connection dropped, tether closed the channel), sshd
//! closes its end and polling our stdout reports POLLHUP or POLLERR. stdin's EOF says nothing:
//! tether always ends stdin at once.

use std::os::fd::AsFd;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// Whether the other end of our stdout is gone.
pub fn gone() -> bool {
    let stdout = std::io::stdout();
    let mut fds = [PollFd::new(stdout.as_fd(), PollFlags::empty())];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(0) | Err(_) => false,
        Ok(_) => fds[0].revents().is_some_and(|r| {
            r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL)
        }),
    }
}
