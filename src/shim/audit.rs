//! The audit log: one JSON line per invocation (docs/shim.md, "Audit log"). It names the verb,
//! the key and the lock value, and counts bytes; it never holds other arguments' content or
//! stdin. Whoever holds tether's key chooses what is written here, so the log is bounded: a
//! long field is written as its length and hash, a line is at most [`MAX_LINE`] bytes, and the
//! file is rotated at `audit_max_bytes` with [`KEPT`] old files kept.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Serialize, Serializer};
use sha2::{Digest, Sha256};

use super::files::make_dir;

/// A verb, key, lock or client longer than this is written as its length and SHA-256.
pub const MAX_FIELD: usize = 128;
/// A reason longer than this is cut.
const MAX_REASON: usize = 512;
/// No line is longer than this (a reason that would make it so is replaced).
pub const MAX_LINE: usize = 4096;
/// Rotated files kept: `audit.jsonl.1` (newest) to `audit.jsonl.3`.
pub const KEPT: usize = 3;
/// Opening the file again after another shim rotated it under us.
const ATTEMPTS: usize = 4;

/// How an invocation ended, as the audit names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// This call ran the command.
    Ran,
    /// The key's run had ended; its recorded output and status were sent.
    Replayed,
    /// The key's run was under way; its output was streamed from the start.
    Attached,
    /// Nothing ran: see `reason`.
    Refused,
}

/// One line of the audit log.
#[derive(Debug, Serialize)]
pub struct Line<'a> {
    pub ts: &'a str,
    #[serde(serialize_with = "short")]
    pub client: Option<&'a str>,
    #[serde(serialize_with = "short")]
    pub verb: Option<&'a str>,
    #[serde(serialize_with = "short")]
    pub key: Option<&'a str>,
    #[serde(serialize_with = "short")]
    pub lock: Option<&'a str>,
    pub args_bytes: usize,
    pub stdin_bytes: u64,
    /// The 32-hex trace id an in-band call carried, else null.
    pub trace_id: Option<&'a str>,
    /// The names (never the values) of an in-band call's credentials; absent when none.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub credentials: &'a [String],
    pub outcome: Outcome,
    pub exit_status: Option<i32>,
    pub duration_ms: f64,
    #[serde(serialize_with = "cut")]
    pub reason: Option<&'a str>,
}

/// A field as written: itself when short, else `<N bytes, sha256 HEX>` (never a valid
/// argument, so it cannot be mistaken for one).
pub fn abbreviate(value: &str) -> std::borrow::Cow<'_, str> {
    if value.len() <= MAX_FIELD {
        return value.into();
    }
    let hash: String = Sha256::digest(value)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("<{} bytes, sha256 {hash}>", value.len()).into()
}

fn short<S: Serializer>(value: &Option<&str>, s: S) -> Result<S::Ok, S::Error> {
    value.map(abbreviate).serialize(s)
}

fn cut<S: Serializer>(value: &Option<&str>, s: S) -> Result<S::Ok, S::Error> {
    value
        .map(|reason| match reason.len() {
            n if n <= MAX_REASON => reason.to_string(),
            n => {
                let end = (0..=MAX_REASON)
                    .rev()
                    .find(|&i| reason.is_char_boundary(i))
                    .unwrap_or(0);
                format!("{}… ({n} bytes, cut)", &reason[..end])
            }
        })
        .serialize(s)
}

/// The line as written: JSON, at most [`MAX_LINE`] bytes with its newline.
fn encode(line: &Line) -> io::Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec(line)?;
    if bytes.len() >= MAX_LINE {
        let shorter = Line {
            reason: Some("(the reason was too long to log)"),
            ..*line
        };
        bytes = serde_json::to_vec(&shorter)?;
        if bytes.len() >= MAX_LINE {
            // Up to 64 long credential names: their count and hash instead.
            let names = [abbreviate(&line.credentials.join(",")).into_owned()];
            let shortest = Line {
                credentials: &names,
                ..shorter
            };
            bytes = serde_json::to_vec(&shortest)?;
        }
    }
    bytes.push(b'\n');
    Ok(bytes)
}

/// Appends `line` to the log at `path` under an flock on the file, rotating it first when the
/// line would take it over `max_bytes`, and starting a new line first when the last one was
/// left torn (a write cut short, e.g. by a full disk). A write that fails is undone.
pub fn append(path: &Path, max_bytes: u64, line: &Line) -> io::Result<()> {
    let bytes = encode(line)?;
    for _ in 0..ATTEMPTS {
        let file = open(path)?;
        file.lock()?;
        if !is_at(&file, path) {
            continue; // rotated while we waited for the lock
        }
        let len = file.metadata()?.len();
        if len > 0 && len + bytes.len() as u64 > max_bytes {
            rotate(path)?;
            continue;
        }
        let torn = len > 0 && {
            let mut last = [0u8];
            file.read_exact_at(&mut last, len - 1)?;
            last[0] != b'\n'
        };
        let written = if torn {
            (&file).write_all(&[b"\n", &bytes[..]].concat())
        } else {
            (&file).write_all(&bytes)
        };
        if written.is_err() {
            let _ = file.set_len(len);
        }
        return written;
    }
    Err(io::Error::other("the file kept being rotated under us"))
}

fn open(path: &Path) -> io::Result<File> {
    let open = || {
        OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
    };
    match open() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            make_dir(path.parent().unwrap_or(Path::new("/")))?;
            open()
        }
        other => other,
    }
}

fn is_at(file: &File, path: &Path) -> bool {
    match (fs::metadata(path), file.metadata()) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// `audit.jsonl` becomes `audit.jsonl.1`, `.1` becomes `.2`, …; the oldest is dropped.
fn rotate(path: &Path) -> io::Result<()> {
    for n in (1..KEPT).rev() {
        match fs::rename(rotated(path, n), rotated(path, n + 1)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    fs::rename(path, rotated(path, 1))
}

/// The `n`th rotated file of the log at `path`.
pub fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// `SSH_CLIENT` is "ADDRESS PORT LOCAL_PORT": the caller is the address.
pub fn client(ssh_client: Option<&str>) -> Option<&str> {
    ssh_client?.split(' ').next().filter(|a| !a.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(verb: &'a str, reason: Option<&'a str>) -> Line<'a> {
        Line {
            ts: "2026-01-01T00:00:00Z",
            client: client(Some("100.1.2.3 50000 22022")),
            verb: Some(verb),
            key: Some("k"),
            lock: None,
            args_bytes: 10,
            stdin_bytes: 0,
            trace_id: None,
            credentials: &[],
            outcome: Outcome::Refused,
            exit_status: Some(2),
            duration_ms: 1.5,
            reason,
        }
    }

    fn lines(path: &Path) -> Vec<serde_json::Value> {
        fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn lines_append_as_json() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/audit.jsonl");
        append(&path, 1 << 20, &line("run-turn", None)).unwrap();
        append(&path, 1 << 20, &line("rm", Some("unknown verb"))).unwrap();
        let got = lines(&path);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0]["client"], "100.1.2.3");
        assert_eq!(got[0]["verb"], "run-turn");
        assert_eq!(got[1]["outcome"], "refused");
        assert_eq!(got[1]["lock"], serde_json::Value::Null);
    }

    #[test]
    fn long_fields_are_a_length_and_a_hash_and_lines_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let verb = "v".repeat(131_000);
        let reason = "r\u{1}".repeat(100_000);
        append(&path, 1 << 20, &line(&verb, Some(&reason))).unwrap();
        let names: Vec<String> = (0..64).map(|i| format!("{i:A<64}")).collect();
        let many = Line {
            credentials: &names,
            ..line("v", Some(&reason))
        };
        append(&path, 1 << 20, &many).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        for line in text.lines() {
            assert!(line.len() < MAX_LINE, "{} bytes", line.len());
        }
        assert!(
            text.contains("\"credentials\":[\"<4159 bytes, sha256 "),
            "{text}"
        );
        let got = lines(&path);
        let written = got[0]["verb"].as_str().unwrap();
        assert!(
            written.starts_with("<131000 bytes, sha256 ") && written.len() < 100,
            "{written}"
        );
    }

    #[test]
    fn the_log_rotates_and_keeps_three() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let one = encode(&line("health", None)).unwrap().len() as u64;
        for _ in 0..20 {
            append(&path, one * 2, &line("health", None)).unwrap();
        }
        for n in 1..=KEPT {
            assert_eq!(lines(&rotated(&path, n)).len(), 2, "file .{n}");
        }
        assert!(!rotated(&path, KEPT + 1).exists());
        assert!(fs::metadata(&path).unwrap().len() <= one * 2);
    }

    #[test]
    fn a_torn_last_line_is_ended_before_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        fs::write(&path, "{\"ts\":\"2026-01-01T0").unwrap();
        append(&path, 1 << 20, &line("health", None)).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(last["verb"], "health");
    }
}
