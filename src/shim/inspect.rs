//! The operator's commands on the laptop, both read-only: `tether shim --check` (is the config
//! usable here?) and `tether shim --journal [KEY]` (what happened to a call?).

use std::fs;
use std::path::Path;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::config::{self, ShimConfig};
use super::journal::{Entry, Journal, Record};
use super::process;

/// sysexits' EX_CONFIG, as `tether serve` uses for an invalid config.
pub const EXIT_CONFIG: u8 = 78;

/// Validates the config and that every verb's program exists and is executable; prints every
/// problem. 0 when usable, 78 when not.
pub fn check(path: &Path) -> u8 {
    let config = match config::load(path) {
        Ok(config) => config,
        Err(problems) => return report(&problems),
    };
    let mut problems = Vec::new();
    for (name, verb) in &config.verbs {
        let program = verb.exec.program();
        if let Err(e) = process::executable(program) {
            problems.push(format!("verbs.{name}.exec: {}: {e}", program.display()));
        }
    }
    if fs::metadata(&config.journal_dir).is_ok_and(|m| !m.is_dir()) {
        problems.push(format!(
            "journal_dir: {} exists and is not a directory",
            config.journal_dir.display()
        ));
    }
    if !problems.is_empty() {
        return report(&problems);
    }
    let verbs: Vec<&str> = config.verbs.keys().map(String::as_str).collect();
    println!(
        "tether shim: {} is valid: verbs {}; journal {}; audit log {}",
        path.display(),
        verbs.join(", "),
        config.journal_dir.display(),
        config
            .audit_log
            .as_ref()
            .map_or("disabled".into(), |p| p.display().to_string()),
    );
    0
}

fn report(problems: &[String]) -> u8 {
    for problem in problems {
        eprintln!("tether shim: {problem}");
    }
    EXIT_CONFIG
}

/// Lists the journal's entries, or shows those for `key` in full (1 when there is none).
pub fn journal(path: &Path, key: Option<&str>) -> u8 {
    let config = match config::load(path) {
        Ok(config) => config,
        Err(problems) => return report(&problems),
    };
    let journal = Journal::new(&config.journal_dir, config.retention);
    let entries = match journal.entries() {
        Ok(entries) => entries,
        Err(e) => {
            eprintln!(
                "tether shim: cannot read the journal {}: {e}",
                config.journal_dir.display()
            );
            return 1;
        }
    };
    match key {
        None => {
            list(&entries);
            0
        }
        Some(key) => show(&config, &journal, &entries, key),
    }
}

fn list(entries: &[Entry]) {
    println!(
        "{:<12} {:<8} {:>4} {:>10} {:>10} {:<24} {:<24} KEY",
        "VERB", "STATE", "EXIT", "STDOUT", "STDERR", "STARTED", "ENDED"
    );
    for entry in entries {
        match entry.read() {
            Ok(r) => println!(
                "{:<12} {:<8} {:>4} {:>10} {:>10} {:<24} {:<24} {}",
                r.verb,
                r.state.as_str(),
                r.exit_status.map_or("-".into(), |s| s.to_string()),
                r.stdout_bytes.map_or("-".into(), |b| b.to_string()),
                r.stderr_bytes.map_or("-".into(), |b| b.to_string()),
                at(r.started_ms),
                at(r.ended_ms),
                r.key
            ),
            Err(corrupt) => println!("{corrupt}"),
        }
    }
}

fn show(config: &ShimConfig, journal: &Journal, entries: &[Entry], key: &str) -> u8 {
    // A corrupt entry may be this key's: its directory name says.
    let named: Vec<Entry> = config.verbs.keys().map(|v| journal.entry(v, key)).collect();
    let mut found = 0;
    for entry in entries {
        match entry.read() {
            Ok(r) if r.key == key => {
                found += 1;
                details(entry, &r);
            }
            Ok(_) => {}
            Err(corrupt) if named.iter().any(|n| n.dir == entry.dir) => {
                found += 1;
                println!("{corrupt}\n");
            }
            Err(_) => {}
        }
    }
    if found == 0 {
        eprintln!(
            "tether shim: no journal entry for key {key:?} in {} (finished entries are kept {})",
            config.journal_dir.display(),
            humantime::format_duration(config.retention)
        );
        return 1;
    }
    0
}

fn details(entry: &Entry, r: &Record) {
    let live = match entry.is_held() {
        Ok(true) => "yes (its supervisor is alive)",
        Ok(false) => "no",
        Err(_) => "unknown",
    };
    let ended = match (r.exit_status, r.signal, r.timed_out) {
        (None, _, _) => "-".to_string(),
        (Some(s), _, true) => format!("{s} (killed by its timeout)"),
        (Some(s), Some(sig), false) => format!("{s} (signal {sig})"),
        (Some(s), None, false) => s.to_string(),
    };
    let bytes = |b: Option<u64>| b.map_or("-".into(), |b| format!("{b} bytes"));
    println!("entry   {}", entry.dir.display());
    println!("verb    {}", r.verb);
    println!("key     {}", r.key);
    println!("lock    {}", r.lock.as_deref().unwrap_or("-"));
    println!("state   {}", r.state.as_str());
    println!("live    {live}");
    println!("ticket  {}", r.ticket.map_or("-".into(), |t| t.to_string()));
    println!("created {}", at(Some(r.created_ms)));
    println!("started {}", at(r.started_ms));
    println!("ended   {}", at(r.ended_ms));
    println!("exit    {ended}");
    println!("stdin   {}", bytes(Some(r.stdin_bytes)));
    println!("stdout  {}", bytes(r.stdout_bytes));
    println!("stderr  {}", bytes(r.stderr_bytes));
    println!();
}

/// Milliseconds since the epoch as RFC 3339, or "-".
fn at(ms: Option<u64>) -> String {
    ms.and_then(|ms| OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "-".into())
}
