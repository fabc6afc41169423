//! The audit log: one JSON line per invocation (docs/shim.md). It names the verb, the key and
//! the lock value, and counts bytes; it never holds other arguments' content or stdin.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::Serialize;

use super::journal::make_dir;

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
    pub ts: String,
    pub client: Option<&'a str>,
    pub verb: Option<&'a str>,
    pub key: Option<&'a str>,
    pub lock: Option<&'a str>,
    pub args_bytes: usize,
    pub stdin_bytes: usize,
    pub outcome: Outcome,
    pub exit_status: Option<i32>,
    pub duration_ms: f64,
    pub reason: Option<&'a str>,
}

/// Appends `line` to the log at `path` with one write (O_APPEND keeps concurrent lines whole),
/// creating its directory the first time.
pub fn append(path: &Path, line: &Line) -> io::Result<()> {
    let mut bytes = serde_json::to_vec(line)?;
    bytes.push(b'\n');
    let open = || {
        OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
    };
    let mut file = match open() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            make_dir(path.parent().unwrap_or(Path::new("/")))?;
            open()?
        }
        other => other?,
    };
    file.write_all(&bytes)
}

/// `SSH_CLIENT` is "ADDRESS PORT LOCAL_PORT": the caller is the address.
pub fn client(ssh_client: Option<&str>) -> Option<&str> {
    ssh_client?.split(' ').next().filter(|a| !a.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_append_as_json() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/audit.jsonl");
        for outcome in [Outcome::Ran, Outcome::Refused] {
            let line = Line {
                ts: "2026-01-01T00:00:00Z".into(),
                client: client(Some("100.1.2.3 50000 22022")),
                verb: Some("run-turn"),
                key: Some("k"),
                lock: None,
                args_bytes: 10,
                stdin_bytes: 0,
                outcome,
                exit_status: Some(0),
                duration_ms: 1.5,
                reason: None,
            };
            append(&path, &line).unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["client"], "100.1.2.3");
        assert_eq!(lines[0]["outcome"], "ran");
        assert_eq!(lines[1]["outcome"], "refused");
        assert_eq!(lines[1]["lock"], serde_json::Value::Null);
    }
}
