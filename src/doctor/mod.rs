//! `tether doctor`: the operator's preflight against the real remote (docs/doctor.md). Every
//! check is read-only, except that the `forced_command` check runs the shim probe verb once.
//!
//! # Layout
//! - [`checks`]: one target's checks in order: config, key, tcp, banner, host_key, auth.
//! - [`key`]: the `key` check's authorized_keys line and its `from=` address.
//! - [`remote`]: the checks on the authenticated connection: forced_command, sessions,
//!   latency.
//! - [`report`]: findings, printed as text or JSON.
//! - [`subject`]: a target's config and where each key was set, for fixes that name it.

mod checks;
mod key;
mod remote;
mod report;
mod subject;

use std::collections::BTreeMap;
use std::path::PathBuf;

use report::TargetReport;
use subject::Subject;

use crate::config::{self, Origins, credential_parts};
use crate::exit;

/// Some check failed.
const EXIT_FAILED: u8 = 1;

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// TOML config file (else $TETHER_CONFIG, else /etc/tether/tether.toml if it exists).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Check only this target.
    #[arg(long)]
    pub target: Option<String>,
    /// Print one JSON array of {"target","check","status","finding","fix"} instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs the checks, prints the report on stdout and returns the exit status: 0 when nothing
/// failed, 1 otherwise, 78 when the configuration is invalid or `--target` names no target.
pub async fn run(args: DoctorArgs) -> u8 {
    let (reports, code) = match diagnose(&args).await {
        Ok(reports) if report::failed(&reports) => (reports, EXIT_FAILED),
        Ok(reports) => (reports, 0),
        Err(reports) => (reports, exit::CONFIG_UNUSABLE),
    };
    if args.json {
        println!("{}", report::json(&reports));
    } else {
        print!("{}", report::text(&reports));
    }
    code
}

/// The reports of the chosen targets; `Err` with the config's problems when it is invalid
/// or `--target` names no configured target.
/// A target's key and known_hosts are not part of that: their problems are the `key` and
/// `host_key` checks' findings.
async fn diagnose(args: &DoctorArgs) -> Result<Vec<TargetReport>, Vec<TargetReport>> {
    let read = config::read(args.config.as_deref()).map_err(|e| invalid(e.0, &Origins::new()))?;
    let mut problems = read.errors.clone();
    problems.extend(config::check(&read.config));
    if !problems.is_empty() {
        for (name, target) in &read.config.targets {
            let parts = credential_parts(name, target);
            problems.extend(parts.key.err());
            problems.extend(parts.host_keys.err());
        }
        return Err(invalid(problems, &read.origins));
    }
    let targets = &read.config.targets;
    let names: Vec<&String> = match &args.target {
        Some(name) if !targets.contains_key(name) => {
            let known: Vec<&str> = targets.keys().map(String::as_str).collect();
            let problem = format!(
                "--target: no target named {name:?}; configured: {}",
                known.join(", ")
            );
            return Err(invalid(vec![problem], &read.origins));
        }
        Some(name) => vec![name],
        None => targets.keys().collect(),
    };
    let no_origins = BTreeMap::new();
    let mut reports = Vec::new();
    for name in names {
        let subject = Subject {
            name,
            target: &targets[name],
            origins: read.origins.get(name).unwrap_or(&no_origins),
            verbs: &read.config.verbs,
        };
        reports.push(checks::run(&subject).await);
    }
    Ok(reports)
}

/// An invalid config as `config` findings, grouped by the target each problem names.
fn invalid(problems: Vec<String>, origins: &Origins) -> Vec<TargetReport> {
    let mut reports: BTreeMap<String, TargetReport> = BTreeMap::new();
    for problem in problems {
        let key = problem.split(": ").next().unwrap_or_default();
        let key = key.split(" (").next().unwrap_or_default().to_string();
        let (target, below) = key
            .strip_prefix("targets.")
            .and_then(|rest| rest.split_once('.'))
            .unwrap_or(("", ""));
        let source = origins
            .get(target)
            .and_then(|keys| keys.get(below))
            .map(|s| format!(" (set in {s})"))
            .unwrap_or_default();
        let fix = match key.contains(char::is_whitespace) {
            true => "see the message".to_string(),
            false => format!("correct {key}{source}"),
        };
        let header = match target {
            "" => "configuration (invalid)".to_string(),
            name => format!("target {name} (invalid configuration)"),
        };
        reports
            .entry(target.to_string())
            .or_insert_with(|| TargetReport::new(target, header))
            .fail("config", problem, fix);
    }
    reports.into_values().collect()
}
