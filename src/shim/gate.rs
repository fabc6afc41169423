//! The invocation's one audit line, written at the moment the shim decides what the call
//! gets and before anything runs: a call that cannot be audited is refused while
//! `audit_required` (docs/shim.md, "Audit log"). What the caller is told goes to the call's
//! own stderr.

use std::cell::Cell;
use std::fs::File;
use std::io::Write;
use std::time::Instant;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::audit::{self, Outcome};
use super::config::AuditConfig;
use super::report::Report;
use crate::wire::in_band::InBand;

/// What the audit line says about the request, beyond its outcome.
#[derive(Default)]
pub struct Seen<'r> {
    pub verb: Option<&'r str>,
    pub key: Option<&'r str>,
    pub lock: Option<&'r str>,
    pub args_bytes: usize,
    pub stdin_bytes: u64,
    /// An in-band call's trace id and credential names (docs/shim.md, "In-band data").
    pub trace_id: Option<String>,
    pub credentials: Vec<String>,
}

/// When and from where the invocation came.
pub struct Start {
    ts: String,
    client: Option<String>,
    at: Instant,
}

impl Start {
    /// The invocation starts now, from the client `SSH_CLIENT` names.
    pub fn now() -> Start {
        let ssh_client = std::env::var("SSH_CLIENT").ok();
        Start {
            ts: OffsetDateTime::now_utc()
                .format(&Rfc3339)
                .unwrap_or_default(),
            client: audit::client(ssh_client.as_deref()).map(str::to_string),
            at: Instant::now(),
        }
    }

    /// The gate that audits this invocation's decision about the request `seen`, and tells
    /// the caller on `stderr`.
    pub fn gate<'a>(
        &'a self,
        audit: &'a AuditConfig,
        seen: Seen<'a>,
        stderr: &'a File,
    ) -> Gate<'a> {
        Gate {
            start: self,
            audit,
            seen,
            stderr,
            written: Cell::new(false),
        }
    }
}

/// Writes the invocation's one audit line, at the moment the shim decides what the call gets.
pub struct Gate<'a> {
    start: &'a Start,
    audit: &'a AuditConfig,
    seen: Seen<'a>,
    stderr: &'a File,
    written: Cell<bool>,
}

impl Gate<'_> {
    /// Records how many bytes of stdin a keyed call spooled.
    pub fn saw_stdin(&mut self, bytes: u64) {
        self.seen.stdin_bytes = bytes;
    }

    /// Records what an in-band call's frame carried: its trace id and credential names.
    pub fn saw_in_band(&mut self, in_band: &InBand) {
        self.seen.trace_id = in_band.trace_id().map(str::to_string);
        self.seen.credentials = in_band.credentials.names().map(str::to_string).collect();
    }

    /// Audits the decision to run, attach or replay; `Err` (a refusal: nothing may run) when
    /// the line cannot be written and the audit is required.
    pub fn decide(&self, outcome: Outcome, exit_status: Option<i32>) -> Result<(), String> {
        self.write(outcome, exit_status, None)
    }

    fn write(
        &self,
        outcome: Outcome,
        exit_status: Option<i32>,
        reason: Option<&str>,
    ) -> Result<(), String> {
        let Some(path) = &self.audit.path else {
            return Ok(());
        };
        if self.written.replace(true) {
            return Ok(());
        }
        let line = audit::Line {
            ts: &self.start.ts,
            client: self.start.client.as_deref(),
            verb: self.seen.verb,
            key: self.seen.key,
            lock: self.seen.lock,
            args_bytes: self.seen.args_bytes,
            stdin_bytes: self.seen.stdin_bytes,
            trace_id: self.seen.trace_id.as_deref(),
            credentials: &self.seen.credentials,
            outcome,
            exit_status,
            duration_ms: (self.start.at.elapsed().as_secs_f64() * 1e6).round() / 1e3,
            reason,
        };
        let Err(e) = audit::append(path, self.audit.max_bytes, &line) else {
            return Ok(());
        };
        let why = format!("cannot write the audit log {}: {e}", path.display());
        if self.audit.required {
            Err(format!("{why}; nothing ran (audit_required)"))
        } else {
            self.tell(&why);
            Ok(())
        }
    }

    /// Ends the call: a refusal is audited (unless a decision was already), the caller told.
    pub fn finish(&self, report: Report) -> u8 {
        if report.outcome == Outcome::Refused {
            let _ = self.write(report.outcome, report.exit_status, report.reason.as_deref());
        }
        if report.tell
            && let Some(reason) = &report.reason
        {
            self.tell(reason);
        }
        report.exit_code()
    }

    /// One `tether shim: …` line to the caller; a caller gone already is not told.
    fn tell(&self, what: &str) {
        let _ = (&mut &*self.stderr).write_all(format!("tether shim: {what}\n").as_bytes());
    }
}
