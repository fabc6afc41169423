//! Where one request's stdin comes from and its stdout and stderr go, and the in-band data it
//! came with: in exec mode dups of the shim's own fds 0, 1 and 2 (sshd's channel), in session
//! mode pipes the resident shim relays as frames (docs/shim.md, "Session mode"). A request
//! touches nothing else: the same handler serves both modes.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use zeroize::Zeroizing;

/// One request's streams, owned: dropping them closes the request's side.
pub struct Io {
    pub stdin: File,
    pub stdout: File,
    pub stderr: File,
    /// A session's request frame carried an in-band frame's payload (trace context,
    /// credentials); an exec request's comes on its stdin instead (`@in-band`).
    pub in_band: Option<Zeroizing<Vec<u8>>>,
}

impl Io {
    /// The shim's own stdin, stdout and stderr (exec mode).
    pub fn inherited() -> io::Result<Io> {
        Ok(Io {
            stdin: dup(io::stdin().as_fd())?,
            stdout: dup(io::stdout().as_fd())?,
            stderr: dup(io::stderr().as_fd())?,
            in_band: None,
        })
    }
}

fn dup(fd: BorrowedFd<'_>) -> io::Result<File> {
    fd.try_clone_to_owned().map(File::from)
}
