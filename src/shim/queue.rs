//! `lock_arg`: calls that share a lock value run one at a time, in arrival order.
//!
//! Each value has a directory under `<journal_dir>/locks`. Arrival is the moment a caller
//! draws a ticket: under an flock on the directory's `issue` file it takes the number in
//! `next`, creates and flock-holds its ticket file (named by that number, zero-padded so names
//! sort as numbers), and writes `next` back. A ticket's lock is held until its command has
//! ended (by the supervisor, for a keyed call); a caller's turn comes once every lower
//! ticket's lock has been released. A holder that dies releases its lock with it, so the
//! queue never wedges on a crash. A value's directory with no ticket left is removed once it
//! has been idle for the retention, under the same `issue` lock.
//!
//! A queue holds at most `max_queued` calls behind the one whose turn it is, and a call waits
//! at most `queue_wait` (and only while its caller is there, for a plain call): past either,
//! it is refused as busy.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::files::{file_name, make_dir, write_atomically};

/// A drawn ticket, its lock held by `file` (and by any process that inherits it).
pub struct Ticket {
    pub number: u64,
    pub path: PathBuf,
    pub file: File,
    /// Tickets ahead of this one when it was drawn (0: its turn is now).
    pub ahead: usize,
}

/// How waiting for a turn ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Turn {
    Mine,
    /// `queue_wait` passed first.
    TimedOut,
    /// The caller went away first.
    CallerLeft,
}

/// How often a waiting call looks at its deadline and its caller.
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// A directory removed by garbage collection meanwhile is made again this many times.
const DRAW_ATTEMPTS: usize = 3;

/// Takes the next place in the queue for `value`; `None` when `max_queued` calls already wait
/// behind the one whose turn it is.
pub fn draw(locks_dir: &Path, value: &str, max_queued: usize) -> io::Result<Option<Ticket>> {
    let dir = locks_dir.join(file_name(value));
    let mut attempt = 0;
    loop {
        attempt += 1;
        match lock_issue(&dir) {
            Ok(Some(_issue)) => return draw_locked(&dir, max_queued),
            Ok(None) if attempt < DRAW_ATTEMPTS => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < DRAW_ATTEMPTS => {}
            Ok(None) => return Err(io::Error::other("the queue's directory keeps vanishing")),
            Err(e) => return Err(e),
        }
    }
}

/// Locks `dir`'s `issue` file; `None` when the directory was removed while we waited.
fn lock_issue(dir: &Path) -> io::Result<Option<File>> {
    make_dir(dir)?;
    let path = dir.join("issue");
    let issue = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)?;
    issue.lock()?;
    Ok(same_file(&path, &issue).then_some(issue))
}

fn same_file(path: &Path, file: &File) -> bool {
    match (fs::metadata(path), file.metadata()) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// Removes the directories of values with no ticket whose counter has not moved for `idle`.
pub fn collect_garbage(locks_dir: &Path, idle: Duration) -> io::Result<()> {
    let Ok(read) = fs::read_dir(locks_dir) else {
        return Ok(());
    };
    for dir in read.flatten().map(|e| e.path()) {
        let quiet = fs::metadata(dir.join("next"))
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > idle));
        if !quiet {
            continue;
        }
        let Ok(issue) = File::open(dir.join("issue")) else {
            continue;
        };
        if issue.try_lock().is_err() || !waiting(&dir)?.is_empty() {
            continue;
        }
        // Drawers that wait on this lock see the file gone and start over.
        fs::remove_file(dir.join("next"))?;
        fs::remove_file(dir.join("issue"))?;
        fs::remove_dir(&dir)?;
    }
    Ok(())
}

/// Draws the next ticket; the caller holds the directory's `issue` lock.
fn draw_locked(dir: &Path, max_queued: usize) -> io::Result<Option<Ticket>> {
    let counted = fs::read_to_string(dir.join("next"))
        .ok()
        .and_then(|n| n.trim().parse::<u64>().ok())
        .unwrap_or(1);
    let ahead = waiting(dir)?;
    if ahead.len() > max_queued {
        return Ok(None);
    }
    // The counter is not fsynced: after a crash it may lag, and live tickets still rank first.
    let number = counted.max(ahead.last().map_or(1, |(n, _)| n + 1));
    let path = dir.join(ticket_name(number));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    file.lock()?;
    write_atomically(dir, "next", (number + 1).to_string().as_bytes())?;
    Ok(Some(Ticket {
        number,
        path,
        file,
        ahead: ahead.len(),
    }))
}

/// Waits until every ticket before the one at `path` has been released, `deadline` passes or
/// `caller_left` says so (asked every [`LOOK_EVERY`]).
pub fn wait_turn(
    path: &Path,
    deadline: Instant,
    caller_left: impl Fn() -> bool,
) -> io::Result<Turn> {
    let (done, turn) = mpsc::channel();
    let mine = path.to_path_buf();
    // Left blocked on an earlier ticket's lock when we give up; it goes when the process ends.
    std::thread::spawn(move || {
        let _ = done.send(wait_earlier(&mine));
    });
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Ok(Turn::TimedOut);
        }
        match turn.recv_timeout(LOOK_EVERY.min(deadline - now)) {
            Ok(waited) => return waited.map(|()| Turn::Mine),
            Err(mpsc::RecvTimeoutError::Timeout) if caller_left() => return Ok(Turn::CallerLeft),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(io::Error::other("the queue's waiter stopped"));
            }
        }
    }
}

/// Blocks until every ticket before the one at `path` has been released.
fn wait_earlier(path: &Path) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mine = number_of(path).ok_or_else(|| io::Error::other("not a ticket file"))?;
    for (number, earlier) in waiting(dir)? {
        if number >= mine {
            break;
        }
        let file = match File::open(&earlier) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        file.lock_shared()?;
        // Its holder is gone; a holder that ended normally removed the file already.
        let _ = fs::remove_file(&earlier);
    }
    Ok(())
}

/// Gives up the place at `path`: the next caller's turn comes once the lock goes too (when the
/// last process holding it closes it).
pub fn release(path: &Path) {
    let _ = fs::remove_file(path);
}

/// The tickets in `dir`, lowest first.
fn waiting(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut tickets: Vec<(u64, PathBuf)> = fs::read_dir(dir)?
        .filter_map(|e| {
            let path = e.ok()?.path();
            Some((number_of(&path)?, path))
        })
        .collect();
    tickets.sort();
    Ok(tickets)
}

fn ticket_name(number: u64) -> String {
    format!("{number:020}")
}

pub fn number_of(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    (name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit()))
        .then(|| name.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_count_up_and_wait_for_earlier_ones() {
        let dir = tempfile::tempdir().unwrap();
        let first = draw(dir.path(), "s1", 9).unwrap().unwrap();
        let second = draw(dir.path(), "s1", 9).unwrap().unwrap();
        let other = draw(dir.path(), "s/2", 9).unwrap().unwrap();
        assert_eq!((first.number, second.number, other.number), (1, 2, 1));
        assert_eq!((first.ahead, second.ahead), (0, 1));
        assert_eq!(wait(&first.path), Turn::Mine);
        assert_eq!(wait(&other.path), Turn::Mine);

        let (tx, rx) = mpsc::channel();
        let path = second.path.clone();
        std::thread::spawn(move || {
            tx.send(wait(&path)).unwrap();
        });
        // The second ticket waits for as long as the first is held...
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
        release(&first.path);
        drop(first);
        // ...and goes once it is released.
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)).unwrap(),
            Turn::Mine
        );
    }

    fn wait(path: &Path) -> Turn {
        wait_turn(path, Instant::now() + Duration::from_secs(60), || false).unwrap()
    }

    #[test]
    fn a_full_queue_refuses_and_a_wait_ends_at_its_deadline_or_when_the_caller_left() {
        let dir = tempfile::tempdir().unwrap();
        let running = draw(dir.path(), "s", 1).unwrap().unwrap();
        let queued = draw(dir.path(), "s", 1).unwrap().unwrap();
        assert!(
            draw(dir.path(), "s", 1).unwrap().is_none(),
            "a third was let in"
        );
        let soon = Instant::now() + Duration::from_millis(200);
        assert_eq!(
            wait_turn(&queued.path, soon, || false).unwrap(),
            Turn::TimedOut
        );
        let later = Instant::now() + Duration::from_secs(60);
        assert_eq!(
            wait_turn(&queued.path, later, || true).unwrap(),
            Turn::CallerLeft
        );
        drop(running);
    }

    #[test]
    fn idle_queues_are_removed_and_drawing_again_works() {
        let dir = tempfile::tempdir().unwrap();
        let held = draw(dir.path(), "busy", 9).unwrap().unwrap();
        let done = draw(dir.path(), "idle", 9).unwrap().unwrap();
        release(&done.path);
        drop(done);
        collect_garbage(dir.path(), Duration::ZERO).unwrap();
        assert!(!dir.path().join("idle").exists());
        assert!(
            dir.path().join("busy").exists(),
            "a queue with a ticket was removed"
        );
        assert_eq!(draw(dir.path(), "idle", 9).unwrap().unwrap().number, 1);
        drop(held);
    }

    #[test]
    fn a_dead_holder_does_not_wedge_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let crashed = draw(dir.path(), "s", 9).unwrap().unwrap();
        let path = crashed.path.clone();
        drop(crashed); // the lock goes, the file stays: a holder that died
        let next = draw(dir.path(), "s", 9).unwrap().unwrap();
        assert_eq!(next.number, 2);
        assert_eq!(wait(&next.path), Turn::Mine);
        assert!(!path.exists(), "the dead holder's ticket was cleaned up");
    }
}
