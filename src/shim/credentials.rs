//! A call's credentials on disk, for its program only (docs/shim.md, "Credentials"): a fresh
//! directory only the user can read (0700), under `$XDG_RUNTIME_DIR/tether/credentials` when
//! that is set, else under `<journal_dir>/credentials`, with one 0400 file per credential named
//! by the credential and holding exactly its value. The program finds it as
//! `$CREDENTIALS_DIRECTORY`; the directory is removed when the program has ended (also after
//! a timeout kill). It is named by the process that owns it and the call's number in it
//! (`<pid>-<start time>-<n>`: a resident shim runs many calls at once), so a directory a crash
//! left behind (its owner killed -9) is found dead and removed at the next shim start.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::unistd::Pid;

use super::files::make_dir;
use crate::wire::in_band::Credentials;

/// The credentials directories' parent for a shim whose journal is `journal_dir`.
pub fn root(journal_dir: &Path) -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(runtime) => PathBuf::from(runtime).join("tether/credentials"),
        None => journal_dir.join("credentials"),
    }
}

/// A call's credentials directory; removed, files and all, on drop.
#[derive(Debug)]
pub struct CredentialsDir {
    path: PathBuf,
}

impl CredentialsDir {
    /// Writes `credentials` into a new directory under `root`, owned by this process.
    pub fn create(root: &Path, credentials: &Credentials) -> io::Result<CredentialsDir> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        make_dir(root)?;
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = root.join(format!("{}-{n}", owner_tag(std::process::id())));
        fs::DirBuilder::new().mode(0o700).create(&path)?;
        let dir = CredentialsDir { path };
        for (name, value) in credentials.expose() {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o400)
                .open(dir.path.join(name))?;
            file.write_all(value.as_bytes())?;
        }
        Ok(dir)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for CredentialsDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Removes the directories under `root` whose owner is gone (a shim or supervisor killed
/// before it could remove its own). Best effort: what cannot be removed now is tried again at
/// the next start.
pub fn remove_abandoned(root: &Path) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !owner_alive(&name.to_string_lossy()) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// `<pid>-<start time>`: the process and, where the system tells it, when it started (so a
/// reused pid is not taken for the owner).
fn owner_tag(pid: u32) -> String {
    let started = proc_stat(pid).map_or(0, |stat| stat.started);
    format!("{pid}-{started}")
}

/// Whether the process a directory (`<pid>-<start time>[-<n>]`) is named by still runs (a
/// zombie does not: its owner died, and nobody reaped it yet). A name that is not a tag is
/// never ours to judge: kept.
fn owner_alive(name: &str) -> bool {
    let mut parts = name.splitn(3, '-');
    let (Some(pid), Some(started)) = (parts.next(), parts.next()) else {
        return true;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return true;
    };
    let running = i32::try_from(pid).is_ok_and(|raw| {
        !matches!(
            nix::sys::signal::kill(Pid::from_raw(raw), None),
            Err(nix::errno::Errno::ESRCH)
        )
    });
    let zombie = proc_stat(pid).is_some_and(|stat| stat.state == 'Z');
    running && !zombie && owner_tag(pid) == format!("{pid}-{started}")
}

/// What Linux's /proc/PID/stat says of a process (elsewhere: nothing, and the pid alone
/// names the owner).
struct ProcStat {
    /// Field 3: `R`, `S`, … `Z` for a zombie.
    state: char,
    /// Field 22: clock ticks since boot when it started.
    started: u64,
}

fn proc_stat(pid: u32) -> Option<ProcStat> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let started = fields.nth(18)?.parse().ok()?;
    Some(ProcStat { state, started })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn files_are_private_and_removed_with_the_directory() {
        let root = tempfile::tempdir().unwrap();
        let credentials =
            Credentials::from_pairs([("PALIAD_JWT".to_string(), "eyJ0\n".to_string())]).unwrap();
        let dir = CredentialsDir::create(root.path(), &credentials).unwrap();
        // Two calls at once in one process (a resident shim) get a directory each.
        let other = CredentialsDir::create(root.path(), &credentials).unwrap();
        assert_ne!(dir.path(), other.path());
        let file = dir.path().join("PALIAD_JWT");
        assert_eq!(fs::read(&file).unwrap(), b"eyJ0\n");
        assert_eq!((mode(dir.path()), mode(&file)), (0o700, 0o400));
        assert!(owner_alive(
            &dir.path().file_name().unwrap().to_string_lossy()
        ));
        // A live owner's directory is kept by a start's clean-up.
        remove_abandoned(root.path());
        assert!(file.exists());
        let path = dir.path().to_path_buf();
        drop(dir);
        assert!(!path.exists());
    }

    #[test]
    fn a_dead_owners_directory_is_removed() {
        let root = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("/bin/true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let left = root.path().join(format!("{dead}-1-0"));
        fs::create_dir(&left).unwrap();
        fs::write(left.join("A"), "x").unwrap();
        // Our own pid with another start time: the pid was reused.
        let reused = root.path().join(format!("{}-1", std::process::id()));
        fs::create_dir(&reused).unwrap();
        let foreign = root.path().join("not-a-tag");
        fs::create_dir(&foreign).unwrap();
        remove_abandoned(root.path());
        assert!(!left.exists() && !reused.exists());
        assert!(foreign.exists());
    }
}
