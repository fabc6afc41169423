//! `max_running`: keyed runs under way at once, overall and per verb. A run counts from its
//! claim to its end, queued or running, because each is a supervisor process on the laptop.
//!
//! Each run under way has a marker `<journal_dir>/running/<entry name>` holding its verb. A
//! marker counts while its entry's lock is held (by the claiming shim, then the supervisor);
//! one whose holder died is removed when next counted. Counting and adding a marker happen
//! under an flock on `running/.lock`, so two callers never both take the last place.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::files::make_dir;
use super::journal::{Entry, root_of};

/// The caps a run is admitted under.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Caps {
    pub verb: String,
    pub overall: usize,
    pub per_verb: Option<usize>,
}

/// Adds `entry` (claimed, its lock held by this process) to the runs under way, unless its verb
/// already has `per_verb` or all verbs `overall`: then `Ok(Err(why))`, for a `busy` refusal.
pub fn admit(entry: &Entry, caps: &Caps) -> io::Result<Result<(), String>> {
    let root = root_of(&entry.dir);
    let dir = root.join("running");
    make_dir(&dir)?;
    let guard = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(dir.join(".lock"))?;
    guard.lock()?;
    let (mut all, mut same) = (0, 0);
    for marker in fs::read_dir(&dir)?.flatten().map(|e| e.path()) {
        if marker.file_name().is_some_and(|n| n == ".lock") {
            continue;
        }
        let of = Entry {
            dir: root
                .join("entries")
                .join(marker.file_name().unwrap_or_default()),
        };
        if !of.is_held().unwrap_or(false) {
            let _ = fs::remove_file(&marker);
            continue;
        }
        all += 1;
        if fs::read_to_string(&marker).is_ok_and(|v| v == caps.verb) {
            same += 1;
        }
    }
    if all >= caps.overall {
        return Ok(Err(format!(
            "{all} keyed runs are under way, the most max_running allows; send it again later"
        )));
    }
    if let Some(cap) = caps.per_verb.filter(|&cap| same >= cap) {
        return Ok(Err(format!(
            "{same} runs of this verb are under way, the most its max_running ({cap}) allows; \
             send it again later"
        )));
    }
    fs::write(marker_of(&entry.dir), &caps.verb)?;
    Ok(Ok(()))
}

/// Takes the run in entry `dir` off the runs under way (its end, or its withdrawal).
pub fn leave(dir: &Path) {
    let _ = fs::remove_file(marker_of(dir));
}

fn marker_of(dir: &Path) -> PathBuf {
    root_of(dir)
        .join("running")
        .join(dir.file_name().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shim::journal::{Claim, Journal, Record, StdinPrint};
    use std::fs::File;
    use std::time::Duration;

    fn claim(j: &Journal, verb: &str, key: &str) -> (Entry, File) {
        let record = Record::claim(verb, key, &[key.to_string()], None, &StdinPrint::default());
        match j.claim(&record, None).unwrap() {
            Claim::Mine(entry, lock) => (entry, lock),
            Claim::Taken(_) => panic!("taken"),
        }
    }

    #[test]
    fn runs_are_counted_overall_and_per_verb_and_dead_ones_do_not_count() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::new(dir.path(), Duration::from_secs(60));
        let (a, a_lock) = claim(&j, "turn", "a");
        let (b, b_lock) = claim(&j, "turn", "b");
        let (c, _c_lock) = claim(&j, "other", "c");
        let caps = |verb: &str, per_verb| Caps {
            verb: verb.into(),
            overall: 2,
            per_verb,
        };
        assert_eq!(admit(&a, &caps("turn", Some(1))).unwrap(), Ok(()));
        let per_verb = admit(&b, &caps("turn", Some(1))).unwrap().unwrap_err();
        assert!(per_verb.contains("its max_running (1)"), "{per_verb}");
        assert_eq!(admit(&b, &caps("turn", None)).unwrap(), Ok(()));
        let overall = admit(&c, &caps("other", None)).unwrap().unwrap_err();
        assert!(
            overall.starts_with("2 keyed runs are under way"),
            "{overall}"
        );
        // A holder that died (its lock gone) no longer counts.
        drop(a_lock);
        assert_eq!(admit(&c, &caps("other", None)).unwrap(), Ok(()));
        leave(&b.dir);
        drop(b_lock);
        assert!(!marker_of(&b.dir).exists());
        let guard = File::open(dir.path().join("running/.lock")).unwrap();
        assert!(guard.try_lock().is_ok(), "the guard stayed locked");
    }
}
