//! How a shim call ended: its outcome, exit status and reason, for the exit status, the
//! caller's `tether shim: …` line and the audit line (docs/shim.md, "Refusals: exit 2").

use super::audit::Outcome;
use super::journal::Record;
use super::process::Finished;
use crate::exit;

/// The audit's reason for a command that ran out of time.
const KILLED_BY_TIMEOUT: &str = "the command's timeout passed; its process group was killed";

/// How a call ended, for the exit status and the audit line.
#[derive(Debug)]
pub struct Report {
    pub outcome: Outcome,
    pub exit_status: Option<i32>,
    pub reason: Option<String>,
    /// Whether the caller is told the reason on stderr.
    pub tell: bool,
}

impl Report {
    pub fn refused(reason: String) -> Report {
        Report {
            outcome: Outcome::Refused,
            exit_status: Some(i32::from(exit::SHIM_REFUSED)),
            reason: Some(reason),
            tell: true,
        }
    }

    /// Refused because a limit is reached: `busy: …`, which tether answers as `busy`,
    /// retryable.
    pub fn busy(reason: String) -> Report {
        Report::refused(format!("busy: {reason}"))
    }

    /// A keyed run that ended, as `record` says.
    pub fn ended(outcome: Outcome, record: &Record) -> Report {
        Report {
            outcome,
            exit_status: record.exit_status,
            reason: record.timed_out.then(|| KILLED_BY_TIMEOUT.to_string()),
            tell: false,
        }
    }

    pub fn caller_left(outcome: Outcome) -> Report {
        Report {
            outcome,
            exit_status: None,
            reason: Some("the caller went away; the run goes on and is kept".into()),
            tell: false,
        }
    }

    /// A command that ran to its end (or its timeout) as the shim's child.
    pub fn ran(finished: &Finished) -> Report {
        Report {
            outcome: Outcome::Ran,
            exit_status: Some(finished.status),
            reason: finished.timed_out.then(|| KILLED_BY_TIMEOUT.to_string()),
            tell: false,
        }
    }

    /// The process's exit status for this report.
    pub fn exit_code(&self) -> u8 {
        self.exit_status
            .and_then(|s| u8::try_from(s).ok())
            .unwrap_or(255)
    }
}
