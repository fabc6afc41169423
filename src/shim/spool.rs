//! A keyed call's stdin, spooled to a private file (mode 0600) as it is read, with its size
//! and SHA-256, so nothing holds it in memory: not the shim, not a supervisor that waits in a
//! queue. The file moves into the call's journal entry and is removed once the command has
//! opened it; a spool left behind (its call refused) is removed on drop.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::files::hex;
use super::journal::{Journal, StdinPrint};

/// The most stdin a verb with `stdin = true` accepts.
pub const MAX_STDIN: u64 = 64 << 20;

/// Spooled stdin; the file is removed on drop unless it was moved away.
pub struct Spool {
    path: PathBuf,
    pub print: StdinPrint,
}

impl Spool {
    /// Reads all of `input` (tether always ends it with EOF) into a new spool file.
    pub fn read(journal: &Journal, mut input: impl Read) -> Result<Spool, String> {
        let (path, mut file) = journal
            .spool_file()
            .map_err(|e| format!("cannot spool stdin in the journal: {e}"))?;
        let mut spool = Spool {
            path,
            print: StdinPrint::default(),
        };
        let mut hasher = Sha256::new();
        let mut buf = vec![0; 64 << 10];
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("cannot read stdin: {e}")),
            };
            spool.print.bytes += n as u64;
            if spool.print.bytes > MAX_STDIN {
                return Err(format!("stdin is over {MAX_STDIN} bytes"));
            }
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n])
                .map_err(|e| format!("cannot spool stdin in the journal: {e}"))?;
        }
        spool.print.sha256 = Some(hex(&hasher.finalize()));
        Ok(spool)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stdin_is_spooled_private_with_its_digest_and_removed_on_drop() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::new(dir.path(), Duration::from_secs(60));
        let spool = Spool::read(&j, &b"hello"[..]).unwrap();
        assert_eq!(spool.print.bytes, 5);
        assert_eq!(
            spool.print.sha256.as_deref(),
            Some("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")
        );
        let meta = std::fs::metadata(spool.path()).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(spool.path()).unwrap(), b"hello");
        let path = spool.path().to_path_buf();
        drop(spool);
        assert!(!path.exists());
    }
}
