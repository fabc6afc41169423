//! Streams a journal entry's output to the caller from the start: live while the supervisor's
//! command writes it, then the rest up to the recorded sizes. A finished entry replays the same
//! way in one pass, so every caller gets byte for byte what the first one got.
//!
//! The end is not polled for: a thread waits for the entry's lock, which its supervisor holds
//! until the record is written, and wakes the copier at once.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::journal::{Corrupt, Entry, Record, State};

/// Output is looked for this often while it keeps coming, backing off to [`POLL_IDLE`].
const POLL_BUSY: Duration = Duration::from_millis(1);
const POLL_IDLE: Duration = Duration::from_millis(25);
const CHUNK: usize = 64 * 1024;

/// How following an entry ended.
#[derive(Debug)]
pub enum Ended {
    /// The command ended; its record, and all its output has been passed on.
    Done(Record),
    /// Nobody is responsible for the entry any more, yet it never finished.
    Abandoned(Record),
    /// Writing to the caller failed: the channel is gone. The run goes on without us.
    CallerLeft,
}

/// Why following failed.
#[derive(Debug)]
pub enum Failed {
    Corrupt(Corrupt),
    Io(io::Error),
}

impl From<Corrupt> for Failed {
    fn from(c: Corrupt) -> Self {
        Failed::Corrupt(c)
    }
}

/// Copies the entry's stdout and stderr to the call's (`to`) until its supervisor is done.
pub fn follow(entry: &Entry, to: [&File; 2]) -> Result<Ended, Failed> {
    let corrupt = |what: &str, e: io::Error| Corrupt {
        entry: entry.dir.clone(),
        why: format!("{what}: {e}"),
    };
    let mut streams = [
        Stream::new(
            File::open(entry.stdout_path()).map_err(|e| corrupt("stdout", e))?,
            to[0].as_fd(),
        )?,
        Stream::new(
            File::open(entry.stderr_path()).map_err(|e| corrupt("stderr", e))?,
            to[1].as_fd(),
        )?,
    ];
    let lock = File::open(entry.lock_path()).map_err(|e| corrupt("lock", e))?;
    let released = Arc::new(AtomicBool::new(false));
    let copier = std::thread::current();
    let flag = released.clone();
    std::thread::spawn(move || {
        let _ = lock.lock_shared();
        flag.store(true, Ordering::SeqCst);
        copier.unpark();
    });

    let mut poll = POLL_BUSY;
    loop {
        // Read the flag first: output written before the release is then copied below.
        let finished = released.load(Ordering::SeqCst);
        let mut moved = 0;
        for s in &mut streams {
            match s.copy(u64::MAX) {
                Ok(n) => moved += n,
                Err(Copy::Write) => return Ok(Ended::CallerLeft),
                Err(Copy::Read(e)) => return Err(Failed::Io(e)),
            }
        }
        if finished {
            break;
        }
        poll = if moved > 0 {
            POLL_BUSY
        } else {
            (poll * 2).min(POLL_IDLE)
        };
        std::thread::park_timeout(poll);
    }

    let record = entry.read()?;
    if record.state != State::Done {
        return Ok(Ended::Abandoned(record));
    }
    for (s, (name, recorded)) in streams.iter_mut().zip([
        ("stdout", record.stdout_bytes),
        ("stderr", record.stderr_bytes),
    ]) {
        let recorded = recorded.unwrap_or_default();
        match s.copy(recorded.saturating_sub(s.copied)) {
            Err(Copy::Write) => return Ok(Ended::CallerLeft),
            Err(Copy::Read(e)) => return Err(Failed::Io(e)),
            Ok(_) if s.copied < recorded => {
                return Err(Failed::Corrupt(Corrupt {
                    entry: entry.dir.clone(),
                    why: format!(
                        "{name} holds {} bytes, the record says {recorded}",
                        s.copied
                    ),
                }));
            }
            Ok(_) => {}
        }
    }
    Ok(Ended::Done(record))
}

/// One output file and where it goes.
struct Stream {
    from: File,
    to: File,
    copied: u64,
    buf: Vec<u8>,
}

enum Copy {
    Read(io::Error),
    /// The caller's side is closed.
    Write,
}

impl Stream {
    fn new(from: File, to: BorrowedFd<'_>) -> Result<Stream, Failed> {
        Ok(Stream {
            from,
            // Our own handle on the fd: unbuffered, so every chunk leaves at once.
            to: File::from(to.try_clone_to_owned().map_err(Failed::Io)?),
            copied: 0,
            buf: vec![0; CHUNK],
        })
    }

    /// Copies what the file has now, at most `limit` bytes; how many it copied.
    fn copy(&mut self, limit: u64) -> Result<u64, Copy> {
        let mut moved = 0;
        while moved < limit {
            let want = usize::try_from(limit - moved).map_or(CHUNK, |l| l.min(CHUNK));
            let n = self.from.read(&mut self.buf[..want]).map_err(Copy::Read)?;
            if n == 0 {
                break;
            }
            self.to.write_all(&self.buf[..n]).map_err(|_| Copy::Write)?;
            moved += n as u64;
            self.copied += n as u64;
        }
        Ok(moved)
    }
}
