//! The operator's commands on the laptop, both read-only: `tether shim --check` (is the config
//! usable and safe here?) and `tether shim --journal [KEY]` (what happened to a call?), whose
//! reader may stop early (`| head`): a closed pipe ends it quietly.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::config::{self, ShimConfig};
use super::journal::{Entry, Journal, Record};
use super::{process, strict};
use crate::exit;

/// Validates the config, that every verb's program exists and is executable, and that nobody
/// else can write them; prints every problem. 0 when usable, 78 when not.
pub fn check(path: &Path) -> u8 {
    let config = match config::load(path) {
        Ok(config) => config,
        Err(problems) => return report(&problems),
    };
    let mut problems = strict::problems(path, &config);
    for (name, verb) in &config.verbs {
        let Some(program) = verb.program() else {
            continue;
        };
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
    let verbs: Vec<String> = config
        .verbs
        .iter()
        .map(|(name, verb)| {
            let credentials = match verb.credentials.is_empty() {
                true => String::new(),
                false => format!(", credentials {}", verb.credentials.join(" ")),
            };
            format!(
                "{name} (timeout {}{credentials})",
                humantime::format_duration(verb.timeout)
            )
        })
        .collect();
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
    exit::CONFIG_UNUSABLE
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
    let mut out = io::stdout().lock();
    let shown = match key {
        None => list(&mut out, &entries).map(|()| 0),
        Some(key) => show(&mut out, &config, &journal, &entries, key),
    };
    match shown.and_then(|code| out.flush().map(|()| code)) {
        Ok(code) => code,
        // The reader has what it wanted (`| head`).
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            eprintln!("tether shim: cannot write the listing: {e}");
            1
        }
    }
}

fn list(out: &mut impl Write, entries: &[Entry]) -> io::Result<()> {
    writeln!(
        out,
        "{:<12} {:<8} {:>4} {:>10} {:>10} {:<24} {:<24} KEY",
        "VERB", "STATE", "EXIT", "STDOUT", "STDERR", "STARTED", "ENDED"
    )?;
    for entry in entries {
        match entry.read() {
            Ok(r) => writeln!(
                out,
                "{:<12} {:<8} {:>4} {:>10} {:>10} {:<24} {:<24} {}",
                r.verb,
                r.state.as_str(),
                r.exit_status.map_or("-".into(), |s| s.to_string()),
                r.stdout_bytes.map_or("-".into(), |b| b.to_string()),
                r.stderr_bytes.map_or("-".into(), |b| b.to_string()),
                at(r.started_ms),
                at(r.ended_ms),
                r.key
            )?,
            Err(corrupt) => writeln!(out, "{corrupt}")?,
        }
    }
    Ok(())
}

fn show(
    out: &mut impl Write,
    config: &ShimConfig,
    journal: &Journal,
    entries: &[Entry],
    key: &str,
) -> io::Result<u8> {
    // A corrupt entry may be this key's: its directory name says.
    let named: Vec<Entry> = config.verbs.keys().map(|v| journal.entry(v, key)).collect();
    let mut found = 0;
    for entry in entries {
        match entry.read() {
            Ok(r) if r.key == key => {
                found += 1;
                details(out, entry, &r)?;
            }
            Ok(_) => {}
            Err(corrupt) if named.iter().any(|n| n.dir == entry.dir) => {
                found += 1;
                writeln!(out, "{corrupt}\n")?;
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
        return Ok(1);
    }
    Ok(0)
}

fn details(out: &mut impl Write, entry: &Entry, r: &Record) -> io::Result<()> {
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
    writeln!(out, "entry   {}", entry.dir.display())?;
    writeln!(out, "verb    {}", r.verb)?;
    writeln!(out, "key     {}", r.key)?;
    writeln!(out, "lock    {}", r.lock.as_deref().unwrap_or("-"))?;
    writeln!(out, "state   {}", r.state.as_str())?;
    writeln!(out, "live    {live}")?;
    writeln!(
        out,
        "ticket  {}",
        r.ticket.map_or("-".into(), |t| t.to_string())
    )?;
    writeln!(out, "created {}", at(Some(r.created_ms)))?;
    writeln!(out, "started {}", at(r.started_ms))?;
    writeln!(out, "ended   {}", at(r.ended_ms))?;
    writeln!(out, "exit    {ended}")?;
    if r.not_run {
        writeln!(
            out,
            "ran     no (it waited longer than queue_wait for its turn)"
        )?;
    }
    writeln!(out, "stdin   {}", bytes(Some(r.stdin_bytes)))?;
    writeln!(out, "stdout  {}", bytes(r.stdout_bytes))?;
    writeln!(out, "stderr  {}", bytes(r.stderr_bytes))?;
    if r.output_cut {
        writeln!(out, "cut     yes (output reached max_output_bytes)")?;
    }
    writeln!(out)
}

/// Milliseconds since the epoch as RFC 3339, or "-".
fn at(ms: Option<u64>) -> String {
    ms.and_then(|ms| OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "-".into())
}
