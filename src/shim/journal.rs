//! The journal of keyed calls (docs/shim.md): one directory per verb and key under
//! `<journal_dir>/entries`, holding
//! - `entry.json`: the call's state, rewritten whole by write-then-rename at each step
//!   (claimed, queued, running, done) so a reader never sees half of one;
//! - `stdout`, `stderr`: the command's output, written by the command itself, each cut at
//!   `max_output_bytes`;
//! - `stdin`: the caller's stdin, spooled (mode 0600) until the command has opened it;
//! - `lock`: flock-held for as long as a process is responsible for the entry (the shim that
//!   claimed it, then the supervisor it handed the lock to). A free lock on an unfinished entry
//!   means that process died.
//!
//! A claim is built in `<journal_dir>/tmp` and published by renaming the directory into place,
//! which fails when the name is taken: exactly one caller claims a key.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::files::{
    MAX_NAME, create_private, file_name, hex, make_dir, sync_dir, unique, write_atomically,
};
use super::queue;

/// Garbage collection runs at most this often (or every `retention`, if shorter).
const GC_EVERY: Duration = Duration::from_secs(60);
/// A claim that never got published (its shim died while building it) is removed after this.
const STALE_TMP: Duration = Duration::from_secs(3600);

/// Where an entry is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Published by the first caller; its supervisor has not started the command.
    Claimed,
    /// Waiting for its turn behind other calls with the same lock value.
    Queued,
    /// The command has been started (or is being started).
    Running,
    /// The command ended; its exit status and output sizes are recorded.
    Done,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Claimed => "claimed",
            State::Queued => "queued",
            State::Running => "running",
            State::Done => "done",
        }
    }
}

/// `entry.json`. Never the arguments or stdin: their digest and size only. Unknown fields are
/// ignored, so an older shim still reads a newer one's entries, and fields added since are
/// optional, so this one reads an older one's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub verb: String,
    pub key: String,
    /// SHA-256 of the arguments: a repeat with other arguments is refused.
    pub args_sha256: String,
    pub lock: Option<String>,
    pub stdin_bytes: u64,
    /// SHA-256 of stdin: a repeat with other stdin is refused. `None` in an entry written by a
    /// shim from before it was recorded: then only `stdin_bytes` is compared.
    pub stdin_sha256: Option<String>,
    pub state: State,
    pub created_ms: u64,
    /// The place in the `lock_arg` queue (arrival order).
    pub ticket: Option<u64>,
    pub supervisor_pid: Option<u32>,
    pub started_ms: Option<u64>,
    pub ended_ms: Option<u64>,
    pub exit_status: Option<i32>,
    /// The signal that ended the command, if one did (its exit status is then 128 + signal).
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub stdout_bytes: Option<u64>,
    pub stderr_bytes: Option<u64>,
    /// stdout or stderr reached `max_output_bytes` and was cut there.
    #[serde(default)]
    pub output_cut: bool,
    /// Done without running: it waited longer than `queue_wait` for its turn. A repeat runs
    /// the call afresh.
    #[serde(default)]
    pub not_run: bool,
}

/// What a keyed call's stdin was: its size and digest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StdinPrint {
    pub bytes: u64,
    pub sha256: Option<String>,
}

impl Record {
    /// A new claim for `verb` and `key` with these arguments and stdin.
    pub fn claim(
        verb: &str,
        key: &str,
        args: &[String],
        lock: Option<&str>,
        stdin: &StdinPrint,
    ) -> Self {
        Record {
            verb: verb.to_string(),
            key: key.to_string(),
            args_sha256: digest(args),
            lock: lock.map(str::to_string),
            stdin_bytes: stdin.bytes,
            stdin_sha256: stdin.sha256.clone(),
            state: State::Claimed,
            created_ms: now_ms(),
            ticket: None,
            supervisor_pid: None,
            started_ms: None,
            ended_ms: None,
            exit_status: None,
            signal: None,
            timed_out: false,
            stdout_bytes: None,
            stderr_bytes: None,
            output_cut: false,
            not_run: false,
        }
    }

    /// Whether `other` is the same request: arguments and stdin. An entry from before stdin
    /// digests were kept matches a stdin of the same size.
    pub fn same_request(&self, other: &Record) -> bool {
        let same_stdin = match &self.stdin_sha256 {
            Some(digest) => other.stdin_sha256.as_ref() == Some(digest),
            None => self.stdin_bytes == other.stdin_bytes,
        };
        self.args_sha256 == other.args_sha256 && same_stdin
    }
}

/// An entry that cannot be trusted: unreadable, torn or inconsistent. Never re-run silently.
#[derive(Debug)]
pub struct Corrupt {
    pub entry: PathBuf,
    pub why: String,
}

impl std::fmt::Display for Corrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "journal entry {} is corrupt ({}): nothing was run; inspect it with \
             `tether shim --journal KEY`, and remove it to let the call run again",
            self.entry.display(),
            self.why
        )
    }
}

/// One entry directory.
#[derive(Debug, Clone)]
pub struct Entry {
    pub dir: PathBuf,
}

impl Entry {
    pub fn stdout_path(&self) -> PathBuf {
        self.dir.join("stdout")
    }

    pub fn stderr_path(&self) -> PathBuf {
        self.dir.join("stderr")
    }

    pub fn lock_path(&self) -> PathBuf {
        self.dir.join("lock")
    }

    /// The caller's stdin, spooled until the command opens it.
    pub fn stdin_path(&self) -> PathBuf {
        self.dir.join("stdin")
    }

    /// Bytes the entry's files take.
    fn size(&self) -> u64 {
        ["entry.json", "stdout", "stderr", "stdin"]
            .iter()
            .filter_map(|name| fs::metadata(self.dir.join(name)).ok())
            .map(|m| m.len())
            .sum()
    }

    pub fn read(&self) -> Result<Record, Corrupt> {
        let corrupt = |why: String| Corrupt {
            entry: self.dir.clone(),
            why,
        };
        let bytes = fs::read(self.dir.join("entry.json"))
            .map_err(|e| corrupt(format!("entry.json: {e}")))?;
        serde_json::from_slice(&bytes).map_err(|e| corrupt(format!("entry.json: {e}")))
    }

    /// Replaces `entry.json` atomically and durably.
    pub fn write(&self, record: &Record) -> io::Result<()> {
        write_atomically(&self.dir, "entry.json", &serde_json::to_vec(record)?)
    }

    /// Whether some live process holds the entry's lock (is responsible for it).
    pub fn is_held(&self) -> io::Result<bool> {
        match File::open(self.lock_path())?.try_lock_shared() {
            Ok(()) => Ok(false),
            Err(fs::TryLockError::WouldBlock) => Ok(true),
            Err(fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

/// A claim: ours (with the entry's lock held), or someone else's entry to attach to or replay.
pub enum Claim {
    Mine(Entry, File),
    Taken(Entry),
}

/// The journal under `journal_dir`.
pub struct Journal {
    root: PathBuf,
    retention: Duration,
}

impl Journal {
    pub fn new(root: &Path, retention: Duration) -> Self {
        Journal {
            root: root.to_path_buf(),
            retention,
        }
    }

    fn entries_dir(&self) -> PathBuf {
        self.root.join("entries")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Where `lock_arg` queues live.
    pub fn locks_dir(&self) -> PathBuf {
        self.root.join("locks")
    }

    /// The entry for this verb and key (it may not exist).
    pub fn entry(&self, verb: &str, key: &str) -> Entry {
        let name = format!("{}~{}", file_name(verb), file_name(key));
        let name = if name.len() > MAX_NAME {
            format!("#{}", hex(&Sha256::digest(format!("{verb}\0{key}"))))
        } else {
            name
        };
        Entry {
            dir: self.entries_dir().join(name),
        }
    }

    /// A new file for spooling stdin, private, under `tmp`.
    pub fn spool_file(&self) -> io::Result<(PathBuf, File)> {
        make_dir(&self.tmp_dir())?;
        let path = self.tmp_name("stdin");
        Ok((path.clone(), create_private(&path)?))
    }

    /// Publishes `record` as a new entry unless its verb and key already have one; `stdin` (a
    /// spooled file, see [`Journal::spool_file`]) moves into it.
    pub fn claim(&self, record: &Record, stdin: Option<&Path>) -> io::Result<Claim> {
        let entry = self.entry(&record.verb, &record.key);
        if entry.dir.exists() {
            return Ok(Claim::Taken(entry));
        }
        let tmp = self.fresh_tmp("claim")?;
        let lock = create_private(&tmp.join("lock"))?;
        lock.try_lock().map_err(io::Error::other)?;
        create_private(&tmp.join("stdout"))?;
        create_private(&tmp.join("stderr"))?;
        if let Some(spooled) = stdin {
            fs::rename(spooled, tmp.join("stdin"))?;
        }
        write_atomically(&tmp, "entry.json", &serde_json::to_vec(record)?)?;
        make_dir(&self.entries_dir())?;
        match fs::rename(&tmp, &entry.dir) {
            Ok(()) => {
                sync_dir(&self.entries_dir())?;
                Ok(Claim::Mine(entry, lock))
            }
            // Losing the race for the name is the normal way to find the key taken.
            Err(_) if entry.dir.exists() => {
                let _ = fs::remove_dir_all(&tmp);
                Ok(Claim::Taken(entry))
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                Err(e)
            }
        }
    }

    /// Removes `entry` if nobody is responsible for it and `condition` holds for its record;
    /// whether it did. The entry's lock is taken first, so a live entry, or a new one published
    /// under the same name meanwhile, is never removed.
    pub fn remove_if(
        &self,
        entry: &Entry,
        condition: impl Fn(&Record) -> bool,
    ) -> io::Result<bool> {
        let lock = match File::open(entry.lock_path()) {
            Ok(lock) => lock,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Ok(false),
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
        let same = match (fs::metadata(entry.lock_path()), lock.metadata()) {
            (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
            _ => false,
        };
        if !same || !entry.read().is_ok_and(|r| condition(&r)) {
            return Ok(false);
        }
        make_dir(&self.tmp_dir())?;
        let trash = self.tmp_name("trash");
        fs::rename(&entry.dir, &trash)?;
        fs::remove_dir_all(&trash)?;
        Ok(true)
    }

    /// Removes the entry this process claimed and still holds (`lock`): nothing ran.
    pub fn withdraw(&self, entry: &Entry, lock: File) -> io::Result<()> {
        make_dir(&self.tmp_dir())?;
        let trash = self.tmp_name("trash");
        fs::rename(&entry.dir, &trash)?;
        drop(lock);
        fs::remove_dir_all(&trash)
    }

    /// Keeps the journal within `max_bytes`: removes finished entries, oldest first, until it
    /// fits. `Err` with the bytes left when the unfinished entries alone are over it.
    pub fn make_room(&self, max_bytes: u64) -> io::Result<Result<(), u64>> {
        let entries = self.entries()?;
        let mut total: u64 = entries.iter().map(Entry::size).sum();
        if total <= max_bytes {
            return Ok(Ok(()));
        }
        let mut finished: Vec<(u64, Entry)> = entries
            .into_iter()
            .filter_map(|e| {
                let r = e.read().ok()?;
                (r.state == State::Done).then(|| (r.ended_ms.unwrap_or(0), e))
            })
            .collect();
        finished.sort_by_key(|(ended, _)| *ended);
        for (_, entry) in finished {
            if total <= max_bytes {
                break;
            }
            let size = entry.size();
            if self.remove_if(&entry, |r| r.state == State::Done)? {
                total = total.saturating_sub(size);
            }
        }
        Ok(if total <= max_bytes {
            Ok(())
        } else {
            Err(total)
        })
    }

    /// Whether a finished entry is past its retention (and so forgotten).
    pub fn expired(&self, record: &Record) -> bool {
        record.state == State::Done
            && record
                .ended_ms
                .is_some_and(|end| end + whole_millis(self.retention) <= now_ms())
    }

    /// Every entry directory, in name order.
    pub fn entries(&self) -> io::Result<Vec<Entry>> {
        let mut dirs: Vec<PathBuf> = match fs::read_dir(self.entries_dir()) {
            Ok(read) => read.filter_map(|e| Some(e.ok()?.path())).collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        dirs.sort();
        Ok(dirs.into_iter().map(|dir| Entry { dir }).collect())
    }

    /// Removes expired entries, unfinished ones abandoned longer than the retention, stale
    /// claims and stdin spools, and lock queues idle for the retention; at most once per [`GC_EVERY`] (or per
    /// retention, if shorter). Corrupt entries stay for an operator to look at.
    pub fn collect_garbage(&self) -> io::Result<()> {
        let stamp = self.root.join("gc.stamp");
        let every = self.retention.min(GC_EVERY);
        let recent = fs::metadata(&stamp)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age < every));
        if recent {
            return Ok(());
        }
        make_dir(&self.root)?;
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&stamp)?
            .set_modified(SystemTime::now())?;
        let abandoned_before = now_ms().saturating_sub(whole_millis(self.retention));
        for entry in self.entries()? {
            self.remove_if(&entry, |r| {
                self.expired(r) || (r.state != State::Done && r.created_ms < abandoned_before)
            })?;
        }
        queue::collect_garbage(&self.locks_dir(), self.retention)?;
        if let Ok(read) = fs::read_dir(self.tmp_dir()) {
            for tmp in read.flatten() {
                let old = tmp
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > STALE_TMP));
                // Claims being built are directories; stdin spools are files.
                if old && fs::remove_dir_all(tmp.path()).is_err() {
                    let _ = fs::remove_file(tmp.path());
                }
            }
        }
        Ok(())
    }

    /// A new, empty, private directory under `tmp`.
    fn fresh_tmp(&self, what: &str) -> io::Result<PathBuf> {
        make_dir(&self.tmp_dir())?;
        let dir = self.tmp_name(what);
        fs::DirBuilder::new().mode(0o700).create(&dir)?;
        Ok(dir)
    }

    /// A name under `tmp` that no other process or thread uses.
    fn tmp_name(&self, what: &str) -> PathBuf {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        self.tmp_dir().join(format!("{what}.{}.{nanos}", unique()))
    }
}

/// The journal root of the entry in `dir` (`<root>/entries/<name>`).
pub fn root_of(dir: &Path) -> &Path {
    dir.parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("/"))
}

fn digest(args: &[String]) -> String {
    let mut hasher = Sha256::new();
    for arg in args {
        hasher.update(arg.as_bytes());
        hasher.update([0]);
    }
    hex(&hasher.finalize())
}

pub fn now_ms() -> u64 {
    whole_millis(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default(),
    )
}

/// `d` in whole milliseconds, as the journal and the supervisor's handoff record times;
/// saturating at `u64::MAX`.
pub fn whole_millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal(dir: &Path) -> Journal {
        Journal::new(dir, Duration::from_secs(3600))
    }

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn none() -> StdinPrint {
        StdinPrint::default()
    }

    #[test]
    fn stdin_is_part_of_the_request_and_old_entries_compare_by_size() {
        let print = |bytes, hash: Option<&str>| StdinPrint {
            bytes,
            sha256: hash.map(str::to_string),
        };
        let first = Record::claim("v", "k", &args(&["k"]), None, &print(2, Some("aa")));
        let same = Record::claim("v", "k", &args(&["k"]), None, &print(2, Some("aa")));
        let other = Record::claim("v", "k", &args(&["k"]), None, &print(2, Some("bb")));
        assert!(first.same_request(&same));
        assert!(!first.same_request(&other));
        // An entry written before stdin digests were kept: entry.json without the field.
        let mut old = serde_json::to_value(&first).unwrap();
        old.as_object_mut().unwrap().remove("stdin_sha256");
        old.as_object_mut().unwrap().remove("output_cut");
        let old: Record = serde_json::from_value(old).unwrap();
        assert!(old.same_request(&other));
        let longer = Record::claim("v", "k", &args(&["k"]), None, &print(3, Some("aa")));
        assert!(!old.same_request(&longer));
    }

    #[test]
    fn a_stale_stdin_spool_is_collected() {
        let dir = tempfile::tempdir().unwrap();
        let j = journal(dir.path());
        let (path, file) = j.spool_file().unwrap();
        file.set_modified(SystemTime::now() - 2 * STALE_TMP)
            .unwrap();
        j.collect_garbage().unwrap();
        assert!(!path.exists(), "a spool left by a killed shim stayed");
    }

    #[test]
    fn room_is_made_by_removing_the_oldest_finished_entries() {
        let dir = tempfile::tempdir().unwrap();
        let j = journal(dir.path());
        let mut made = Vec::new();
        for (key, ended) in [("old", 1), ("new", 2), ("live", 0)] {
            let record = Record::claim("v", key, &args(&[key]), None, &none());
            let Claim::Mine(entry, lock) = j.claim(&record, None).unwrap() else {
                panic!()
            };
            fs::write(entry.stdout_path(), vec![b'x'; 10_000]).unwrap();
            if ended > 0 {
                let mut done = record.clone();
                done.state = State::Done;
                done.ended_ms = Some(ended);
                entry.write(&done).unwrap();
                drop(lock);
            } else {
                made.push(lock);
            }
        }
        assert_eq!(j.make_room(25_000).unwrap(), Ok(()));
        let left: Vec<String> = j
            .entries()
            .unwrap()
            .iter()
            .map(|e| e.read().unwrap().key)
            .collect();
        assert_eq!(left, ["live", "new"]);
        let over = j.make_room(5_000).unwrap().unwrap_err();
        assert!(over > 10_000, "{over}");
        assert_eq!(
            j.entries().unwrap().len(),
            1,
            "the running entry was removed"
        );
    }

    #[test]
    fn one_claim_per_verb_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let j = journal(dir.path());
        let record = Record::claim(
            "run-turn",
            "k1",
            &args(&["s", "k1", "m"]),
            Some("s"),
            &none(),
        );
        let Claim::Mine(entry, _lock) = j.claim(&record, None).unwrap() else {
            panic!("the first claim was not ours");
        };
        assert!(entry.is_held().unwrap());
        assert!(matches!(j.claim(&record, None).unwrap(), Claim::Taken(_)));
        let other_verb = Record::claim("reset", "k1", &args(&["k1"]), None, &none());
        assert!(matches!(
            j.claim(&other_verb, None).unwrap(),
            Claim::Mine(..)
        ));
        assert_eq!(entry.read().unwrap().state, State::Claimed);
    }

    #[test]
    fn a_held_entry_is_never_removed() {
        let dir = tempfile::tempdir().unwrap();
        let j = journal(dir.path());
        let record = Record::claim("v", "k", &args(&["k"]), None, &none());
        let Claim::Mine(entry, lock) = j.claim(&record, None).unwrap() else {
            panic!()
        };
        assert!(!j.remove_if(&entry, |_| true).unwrap());
        drop(lock);
        assert!(!entry.is_held().unwrap());
        assert!(j.remove_if(&entry, |r| r.state == State::Claimed).unwrap());
        assert!(!entry.dir.exists());
    }

    #[test]
    fn a_torn_record_is_corrupt_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let j = journal(dir.path());
        let record = Record::claim("v", "k", &args(&["k"]), None, &none());
        let Claim::Mine(entry, _) = j.claim(&record, None).unwrap() else {
            panic!()
        };
        let text = fs::read(entry.dir.join("entry.json")).unwrap();
        fs::write(entry.dir.join("entry.json"), &text[..text.len() / 2]).unwrap();
        let err = entry.read().unwrap_err();
        assert_eq!(err.entry, entry.dir);
        assert!(err.to_string().contains("is corrupt"), "{err}");
    }

    #[test]
    fn names_are_safe_file_names() {
        assert_eq!(file_name("a/b%c"), "a%2Fb%25c");
        assert_eq!(file_name(".."), "%2E.");
        assert!(file_name(&"x".repeat(300)).starts_with('#'));
        let j = journal(Path::new("/j"));
        let e = j.entry("run-turn", "6f1c2d3e-0a4b-4c5d-9e8f-112233445566");
        assert_eq!(
            e.dir,
            Path::new("/j/entries/run-turn~6f1c2d3e-0a4b-4c5d-9e8f-112233445566")
        );
    }

    #[test]
    fn expiry_follows_retention() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::new(dir.path(), Duration::from_millis(10));
        let mut r = Record::claim("v", "k", &[], None, &none());
        assert!(!j.expired(&r));
        r.state = State::Done;
        r.ended_ms = Some(now_ms() - 20);
        assert!(j.expired(&r));
        r.ended_ms = Some(now_ms() + 1000);
        assert!(!j.expired(&r));
    }
}
