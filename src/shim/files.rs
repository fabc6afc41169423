//! Private files of the shim's state (journal entries, lock queues, the audit log's
//! directory): created for the user only, replaced whole by write-then-rename, and named
//! safely whatever verb, key or lock value the caller sent.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

/// File names longer than this are replaced by a hash (most file systems allow 255 bytes).
pub const MAX_NAME: usize = 200;

/// Creates `dir` and its parents, private to the user.
pub fn make_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Creates a new file that only the user may read and write.
pub fn create_private(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Writes `name` in `dir` by write, fsync, rename, fsync of the directory.
pub fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!(".{name}.{}", unique()));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

/// `<pid>.<n>`: a name part no other process, and no other thread of this one, uses at the
/// same time (a resident shim handles many requests at once; docs/shim.md, "Session mode").
pub fn unique() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}.{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Makes a rename or creation in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A verb, key or lock value as one file name: `/` and `%` are escaped, and a leading `.`.
pub fn file_name(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.char_indices() {
        match c {
            '/' => out.push_str("%2F"),
            '%' => out.push_str("%25"),
            '.' if i == 0 => out.push_str("%2E"),
            c => out.push(c),
        }
    }
    if out.len() > MAX_NAME {
        return format!("#{}", hex(&Sha256::digest(value)));
    }
    out
}

/// Lower-case hex of `bytes` (digests in file names and entries).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
