//! What `tether doctor` found, and how it is printed: `STATUS CHECK: finding` lines under a
//! header per target, each warn or fail followed by an indented `fix:` line; or, with
//! `--json`, one array of `{"target","check","status","finding","fix"}` (docs/doctor.md).

use serde::Serialize;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
    /// Not run: a check it depends on failed.
    Skip,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
            Status::Skip => "skip",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub target: String,
    pub check: &'static str,
    pub status: Status,
    /// What was found; may span lines (the `key` check's authorized_keys line).
    pub finding: String,
    /// What to change, where; set for warn and fail.
    pub fix: Option<String>,
}

/// The findings for one target, in check order.
pub struct TargetReport {
    pub target: String,
    /// The line printed above the findings.
    pub header: String,
    pub findings: Vec<Finding>,
}

impl TargetReport {
    pub fn new(target: &str, header: String) -> Self {
        TargetReport {
            target: target.to_string(),
            header,
            findings: Vec::new(),
        }
    }

    pub fn ok(&mut self, check: &'static str, finding: impl Into<String>) {
        self.push(check, Status::Ok, finding.into(), None);
    }

    pub fn warn(
        &mut self,
        check: &'static str,
        finding: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.push(check, Status::Warn, finding.into(), Some(fix.into()));
    }

    pub fn fail(
        &mut self,
        check: &'static str,
        finding: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.push(check, Status::Fail, finding.into(), Some(fix.into()));
    }

    /// Records that `check` did not run because `needs` did not pass.
    pub fn skip(&mut self, check: &'static str, needs: &str) {
        self.skip_because(check, &format!("needs {needs}"));
    }

    /// Records that `check` did not run, and why.
    pub fn skip_because(&mut self, check: &'static str, why: &str) {
        self.push(check, Status::Skip, format!("not run: {why}"), None);
    }

    fn push(&mut self, check: &'static str, status: Status, finding: String, fix: Option<String>) {
        self.findings.push(Finding {
            target: self.target.clone(),
            check,
            status,
            finding,
            fix,
        });
    }
}

/// The report as text: a header per target, then one line per check.
pub fn text(reports: &[TargetReport]) -> String {
    let mut out = String::new();
    for report in reports {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&report.header);
        out.push('\n');
        for f in &report.findings {
            let mut lines = f.finding.lines();
            let first = lines.next().unwrap_or_default();
            out.push_str(&format!("{} {}: {first}\n", f.status.as_str(), f.check));
            for more in lines {
                out.push_str(&format!("    {more}\n"));
            }
            if let Some(fix) = &f.fix {
                let mut lines = fix.lines();
                out.push_str(&format!("  fix: {}\n", lines.next().unwrap_or_default()));
                for more in lines {
                    out.push_str(&format!("    {more}\n"));
                }
            }
        }
    }
    let all = || reports.iter().flat_map(|r| &r.findings);
    let count = |s: Status| all().filter(|f| f.status == s).count();
    out.push_str(&format!(
        "\n{} ok, {} warn, {} fail, {} skip\n",
        count(Status::Ok),
        count(Status::Warn),
        count(Status::Fail),
        count(Status::Skip)
    ));
    out
}

/// The report as one JSON array of findings.
pub fn json(reports: &[TargetReport]) -> String {
    let all: Vec<&Finding> = reports.iter().flat_map(|r| &r.findings).collect();
    serde_json::to_string_pretty(&all).expect("findings serialize")
}

/// Whether any check failed.
pub fn failed(reports: &[TargetReport]) -> bool {
    reports
        .iter()
        .flat_map(|r| &r.findings)
        .any(|f| f.status == Status::Fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warn_and_fail_lines_carry_their_fix_and_long_findings_indent() {
        let mut r = TargetReport::new("mriver", "target mriver (m@h:22022)".into());
        r.ok(
            "key",
            "ssh-ed25519 SHA256:x\ncommand=\"tether shim\" ssh-ed25519 AAAA",
        );
        r.fail("tcp", "refused", "start sshd");
        r.skip("banner", "tcp");
        let text = text(&[r]);
        assert!(
            text.starts_with(
                "target mriver (m@h:22022)\nok key: ssh-ed25519 SHA256:x\n    command="
            )
        );
        assert!(
            text.contains(
                "fail tcp: refused\n  fix: start sshd\nskip banner: not run: needs tcp\n"
            )
        );
        assert!(text.ends_with("1 ok, 0 warn, 1 fail, 1 skip\n"), "{text}");
    }

    #[test]
    fn json_is_one_array_with_every_field() {
        let mut r = TargetReport::new("a", "u@h:1".into());
        r.warn("sessions", "MaxSessions 4", "channels_per_connection = 3");
        let v: serde_json::Value = serde_json::from_str(&json(&[r])).unwrap();
        assert_eq!(
            v,
            serde_json::json!([{"target": "a", "check": "sessions", "status": "warn",
                "finding": "MaxSessions 4", "fix": "channels_per_connection = 3"}])
        );
    }
}
