//! `shim.toml`: where the journal and audit log live, how long finished entries are kept, and
//! the verbs the shim runs (docs/shim.md). [`load`] reports every problem at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::template::Template;
use crate::args::check_arg;

/// Keyed calls' state and output, unless configured.
pub const DEFAULT_JOURNAL_DIR: &str = "~/.local/state/tether/journal";
/// One JSON line per invocation, unless configured ("" disables).
pub const DEFAULT_AUDIT_LOG: &str = "~/.local/state/tether/audit.jsonl";
/// How long a finished journal entry is kept (and replayed).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// The checked configuration.
#[derive(Debug)]
pub struct ShimConfig {
    pub journal_dir: PathBuf,
    /// `None` when disabled.
    pub audit_log: Option<PathBuf>,
    pub retention: Duration,
    pub verbs: BTreeMap<String, Verb>,
}

/// One allowed verb.
#[derive(Debug)]
pub struct Verb {
    pub exec: Template,
    pub min_args: usize,
    pub max_args: usize,
    /// 1-based index of the argument that names the call; a repeat replays it.
    pub key_arg: Option<usize>,
    /// 1-based index of the argument whose calls run one at a time.
    pub lock_arg: Option<usize>,
    pub stdin: bool,
    pub timeout: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    journal_dir: Option<String>,
    audit_log: Option<String>,
    #[serde(default, with = "humantime_serde")]
    retention: Option<Duration>,
    #[serde(default)]
    verbs: BTreeMap<String, RawVerb>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVerb {
    exec: Vec<String>,
    args: Option<usize>,
    min_args: Option<usize>,
    max_args: Option<usize>,
    key_arg: Option<usize>,
    lock_arg: Option<usize>,
    #[serde(default)]
    stdin: bool,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
}

/// The config file: `--config`, else `$XDG_CONFIG_HOME/tether/shim.toml`, else
/// `~/.config/tether/shim.toml`.
pub fn path(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(xdg) => PathBuf::from(xdg).join("tether/shim.toml"),
        None => expand_home("~/.config/tether/shim.toml").unwrap_or_default(),
    }
}

/// Reads and checks the config at `path`; every problem found, on failure.
pub fn load(path: &Path) -> Result<ShimConfig, Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("cannot read {}: {e}", path.display())])?;
    let raw: RawConfig = toml::from_str(&text)
        .map_err(|e| vec![format!("{}: {}", path.display(), e.message().trim_end())])?;
    check(raw)
}

/// Where a refusal is audited when the config itself is unusable: its `audit_log` if it can be
/// read at all, else the default.
pub fn audit_log_hint(path: &Path) -> Option<PathBuf> {
    let configured = std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|t| t.get("audit_log")?.as_str().map(str::to_string));
    audit_path(configured.as_deref().unwrap_or(DEFAULT_AUDIT_LOG))
        .ok()
        .flatten()
}

fn check(raw: RawConfig) -> Result<ShimConfig, Vec<String>> {
    let mut errors = Vec::new();
    let journal_dir = expand_home(raw.journal_dir.as_deref().unwrap_or(DEFAULT_JOURNAL_DIR))
        .unwrap_or_else(|e| {
            errors.push(format!("journal_dir: {e}"));
            PathBuf::new()
        });
    let audit_log = audit_path(raw.audit_log.as_deref().unwrap_or(DEFAULT_AUDIT_LOG))
        .unwrap_or_else(|e| {
            errors.push(format!("audit_log: {e}"));
            None
        });
    let retention = raw.retention.unwrap_or(DEFAULT_RETENTION);
    if retention.is_zero() {
        errors.push("retention: must be more than 0".into());
    }
    if raw.verbs.is_empty() {
        errors.push("[verbs]: no verb is configured, so every call would be refused".into());
    }
    let mut verbs = BTreeMap::new();
    for (name, v) in raw.verbs {
        let at = format!("verbs.{name}");
        if check_arg(&name).is_err() {
            errors.push(format!("{at}: a verb name uses only [A-Za-z0-9._:,=+/@%-]"));
        }
        if let Some(verb) = check_verb(&at, v, &mut errors) {
            verbs.insert(name, verb);
        }
    }
    if errors.is_empty() {
        Ok(ShimConfig {
            journal_dir,
            audit_log,
            retention,
            verbs,
        })
    } else {
        Err(errors)
    }
}

fn check_verb(at: &str, v: RawVerb, errors: &mut Vec<String>) -> Option<Verb> {
    let before = errors.len();
    let (min_args, max_args) = match (v.args, v.min_args, v.max_args) {
        (Some(n), None, None) => (n, n),
        (Some(_), _, _) => {
            errors.push(format!("{at}: set args, or min_args/max_args, not both"));
            (0, 0)
        }
        (None, min, max) => {
            let min = min.unwrap_or(0);
            (min, max.unwrap_or(min))
        }
    };
    if min_args > max_args {
        errors.push(format!(
            "{at}: min_args ({min_args}) is more than max_args ({max_args})"
        ));
    }
    let exec = Template::parse(&v.exec)
        .map_err(|e| errors.push(format!("{at}.exec: {e}")))
        .ok();
    if let Some(n) = exec.as_ref().and_then(Template::highest_placeholder)
        && n > max_args
    {
        errors.push(format!(
            "{at}.exec: {{{n}}} needs max_args (or args) of at least {n}"
        ));
    }
    for (name, index) in [("key_arg", v.key_arg), ("lock_arg", v.lock_arg)] {
        if let Some(i) = index
            && !(1..=min_args).contains(&i)
        {
            errors.push(format!(
                "{at}.{name}: {i} is not an argument every call has (1 to {min_args})"
            ));
        }
    }
    if v.timeout.is_some_and(|t| t.is_zero()) {
        errors.push(format!("{at}.timeout: must be more than 0"));
    }
    if errors.len() > before {
        return None;
    }
    Some(Verb {
        exec: exec?,
        min_args,
        max_args,
        key_arg: v.key_arg,
        lock_arg: v.lock_arg,
        stdin: v.stdin,
        timeout: v.timeout,
    })
}

/// `""` disables the audit log; anything else is a path.
fn audit_path(value: &str) -> Result<Option<PathBuf>, String> {
    if value.is_empty() {
        Ok(None)
    } else {
        expand_home(value).map(Some)
    }
}

/// Expands a leading `~` or `$HOME`; the result must be absolute.
pub fn expand_home(value: &str) -> Result<PathBuf, String> {
    let rest = ["~", "$HOME"]
        .iter()
        .find_map(|prefix| match value.strip_prefix(prefix) {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => Some(rest),
            _ => None,
        });
    let path = match rest {
        Some(rest) => {
            let home = std::env::var("HOME")
                .ok()
                .filter(|h| !h.is_empty())
                .ok_or_else(|| format!("{value:?} needs $HOME, which is not set"))?;
            PathBuf::from(format!("{home}{rest}"))
        }
        None => PathBuf::from(value),
    };
    if path.is_absolute() {
        Ok(path)
    } else {
        Err(format!(
            "{value:?} is not an absolute path (sshd's working directory and PATH are not yours)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ShimConfig, Vec<String>> {
        check(toml::from_str(text).map_err(|e| vec![e.to_string()])?)
    }

    #[test]
    fn the_documented_example_loads() {
        let config = parse(
            r#"
            journal_dir = "/var/lib/j"
            audit_log = ""
            retention = "1h"
            [verbs.run-turn]
            exec = ["/bin/p", "run-turn", "{1}", "{2}", "{3}"]
            args = 3
            key_arg = 2
            lock_arg = 1
            stdin = true
            timeout = "10m"
            [verbs.health]
            exec = ["/bin/p", "health", "{1}"]
            max_args = 1
            "#,
        )
        .unwrap();
        assert_eq!(config.audit_log, None);
        assert_eq!(config.retention, Duration::from_secs(3600));
        let turn = &config.verbs["run-turn"];
        assert_eq!((turn.min_args, turn.max_args), (3, 3));
        assert_eq!((turn.key_arg, turn.lock_arg), (Some(2), Some(1)));
        assert_eq!(turn.timeout, Some(Duration::from_secs(600)));
        let health = &config.verbs["health"];
        assert_eq!((health.min_args, health.max_args), (0, 1));
        assert!(!health.stdin && health.key_arg.is_none());
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let errors = parse(
            r#"
            journal_dir = "relative/dir"
            [verbs."bad verb"]
            exec = ["/bin/x"]
            [verbs.a]
            exec = ["/bin/x", "{2}"]
            max_args = 1
            key_arg = 1
            [verbs.b]
            exec = ["/bin/x", "{one}"]
            args = 1
            min_args = 1
            "#,
        )
        .unwrap_err();
        let all = errors.join("\n");
        for needle in [
            "journal_dir: \"relative/dir\" is not an absolute path",
            "verbs.bad verb: a verb name",
            "verbs.a.exec: {2} needs max_args",
            "verbs.a.key_arg: 1 is not an argument every call has",
            "verbs.b: set args, or min_args/max_args, not both",
            "verbs.b.exec:",
        ] {
            assert!(all.contains(needle), "{needle:?} missing from:\n{all}");
        }
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = toml::from_str::<RawConfig>("[verbs.a]\nexec = [\"/x\"]\nkey = 1\n")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("unknown field `key`"), "{err}");
    }

    #[test]
    fn home_expands_in_paths() {
        let home = std::env::var("HOME").unwrap();
        assert_eq!(
            expand_home("~/.local/x").unwrap(),
            PathBuf::from(format!("{home}/.local/x"))
        );
        assert_eq!(
            expand_home("$HOME/x").unwrap(),
            PathBuf::from(format!("{home}/x"))
        );
        assert_eq!(expand_home("/abs").unwrap(), PathBuf::from("/abs"));
        assert!(expand_home("~user/x").is_err());
    }
}
